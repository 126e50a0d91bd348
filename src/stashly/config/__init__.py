"""Configuration: settings from arguments, the environment and ``config.json``; URLs; the shared value checks."""
