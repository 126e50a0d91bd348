"""The app's routers, each built by a function taking the caches it uses (no global cache, no import-time state)."""
