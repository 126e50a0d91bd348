"""The app's settings: the ``app`` section of ``config.json`` and ``AUTH_APP_*`` variables, parsed once.

``config.json`` is the file the application already had: its ``redis`` section configures the cache (read by
:meth:`stashly.CacheManager.from_config`), its ``app`` section is read here. Environment variables win over
the file. Without a file the app runs on whatever ``CacheManager()`` resolves to: ``STASHLY_URL``, or an
in-memory cache.

| setting | environment | ``app`` key | default |
|---|---|---|---|
| file | ``AUTH_APP_CONFIG`` | — | ``examples/auth_app/config.json`` (optional) |
| token signing key | ``AUTH_APP_SECRET_KEY`` | ``secret_key`` | random per start (tokens die with the process) |
| token lifetime, s | ``AUTH_APP_TOKEN_TTL`` | ``token_ttl`` | ``3600`` |
| PBKDF2 iterations | ``AUTH_APP_PASSWORD_ITERATIONS`` | ``password_iterations`` | ``600000`` |
| ``/auth/me`` cache TTL, s | ``AUTH_APP_CACHE_TTL`` | ``auth_cache_ttl`` | ``60`` |
| admin key (``X-Admin-Key``) | ``AUTH_APP_ADMIN_KEY`` | ``admin_key`` | none: ``/admin`` answers 404 |
| database | ``DATABASE_URL`` | — | SQLite in ``AUTH_APP_DATA_DIR`` or a temp dir |
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONFIG", "AppSettings", "load_settings"]

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config.json"
PRODUCTION_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    """Everything the app needs besides the cache manager, already validated.

    Tests build one directly, with a fixed key and a cheap hash:
    ``AppSettings(secret_key="test-secret-key", password_iterations=1_000)``.
    """

    secret_key: str = field(repr=False)
    token_ttl: int = 3600
    password_iterations: int = PRODUCTION_ITERATIONS
    auth_cache_ttl: float = 60.0
    admin_key: str | None = field(default=None, repr=False)
    """The key ``/admin`` requests send in ``X-Admin-Key``; ``None`` turns the admin routes off."""
    database_url: str | None = None
    data_dir: Path | None = None
    config_path: Path | None = None
    """The ``config.json`` the cache manager is built from; ``None`` when there is none."""
    secret_source: str = "argument"
    """Where ``secret_key`` came from, for the start-up banner."""

    def __post_init__(self) -> None:
        _check_secret(self.secret_key, "AppSettings(secret_key=...)")
        _positive_int(self.token_ttl, "AppSettings(token_ttl=...)")
        _positive_int(self.password_iterations, "AppSettings(password_iterations=...)")
        _positive_number(self.auth_cache_ttl, "AppSettings(auth_cache_ttl=...)")
        if self.admin_key is not None:
            _check_secret(self.admin_key, "AppSettings(admin_key=...)")


def load_settings(environ: Mapping[str, str] | None = None) -> AppSettings:
    """Settings from the environment, then the config file's ``app`` section, then defaults.

    A file named by ``AUTH_APP_CONFIG`` must exist; the default ``examples/auth_app/config.json`` may be absent.
    Errors name the source, the key and what was expected.
    """
    env = os.environ if environ is None else environ
    path, section = _read_config(env)
    values: dict[str, Any] = {"config_path": path}
    sources = {name: f"{path} app.{name}" for name in section}
    values.update(section)
    for name, variable in _ENVIRONMENT.items():
        if env.get(variable):
            values[name], sources[name] = env[variable], f"environment {variable}"
    for name, value in list(values.items()):
        parser = _PARSERS.get(name)
        if parser is not None:
            values[name] = parser(value, sources[name])
    if "secret_key" in values:
        values["secret_source"] = sources["secret_key"]
    else:
        values["secret_key"], values["secret_source"] = secrets.token_urlsafe(32), "generated at start"
    if env.get("DATABASE_URL"):
        values["database_url"] = env["DATABASE_URL"]
    if env.get("AUTH_APP_DATA_DIR"):
        values["data_dir"] = Path(env["AUTH_APP_DATA_DIR"])
    return AppSettings(**values)


def _read_config(env: Mapping[str, str]) -> tuple[Path | None, dict[str, Any]]:
    named = env.get("AUTH_APP_CONFIG")
    path = Path(named) if named else DEFAULT_CONFIG
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if named:
            raise ValueError(f"{path}: file not found (named by environment AUTH_APP_CONFIG)") from None
        return None, {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it as JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    section = document.get("app", {})
    if not isinstance(section, dict):
        raise ValueError(f"{path} app: expected an object, found {type(section).__name__}")
    unknown = set(section).difference(_PARSERS)
    if unknown:
        raise ValueError(f"{path} app: unknown keys {sorted(unknown)}; expected some of {sorted(_PARSERS)}")
    return path, section


def _check_secret(value: object, source: str) -> str:
    if not isinstance(value, str) or len(value) < 8:
        raise ValueError(f"{source}: expected a string of at least 8 characters (value not shown)")
    return value


def _positive_int(value: object, source: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: expected a positive integer, found {value!r}")
    return value


def _positive_number(value: object, source: str) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{source}: expected a positive number of seconds, found {value!r}")
    return float(value)


_PARSERS: dict[str, Callable[[object, str], object]] = {
    "secret_key": _check_secret,
    "token_ttl": _positive_int,
    "password_iterations": _positive_int,
    "auth_cache_ttl": _positive_number,
    "admin_key": _check_secret,
}
_ENVIRONMENT = {
    "secret_key": "AUTH_APP_SECRET_KEY",
    "token_ttl": "AUTH_APP_TOKEN_TTL",
    "password_iterations": "AUTH_APP_PASSWORD_ITERATIONS",
    "auth_cache_ttl": "AUTH_APP_CACHE_TTL",
    "admin_key": "AUTH_APP_ADMIN_KEY",
}
