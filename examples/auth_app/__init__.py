"""An example FastAPI service cached with stashly: bearer-token login and a per-user cached ``GET /auth/me``.

``python -m examples.auth_app`` seeds two demo users and serves on 127.0.0.1:8000; ``create_app()`` builds an
app for tests or ``uvicorn --factory examples.auth_app.app:create_app``. Importing this package creates nothing.
"""
