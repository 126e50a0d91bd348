"""The exceptions stashly raises. Every one is a :class:`StashlyError`."""

from __future__ import annotations

__all__ = [
    "CacheUnavailableError",
    "ConfigError",
    "SerializationError",
    "StashlyError",
    "UnstableKeyError",
]


class StashlyError(Exception):
    """Base class of every error stashly raises on purpose."""


class ConfigError(StashlyError, ValueError):
    """A setting is malformed: names the source (argument, env variable or file), the field and what was expected."""


class SerializationError(StashlyError, TypeError):
    """A value cannot be encoded as JSON; names the offending type and the cache key."""


class UnstableKeyError(StashlyError, TypeError):
    """An argument has no stable representation to build a cache key from.

    Pass ``key=`` or ``ignore=`` to the decorator, or give the type a ``__cache_key__()`` method.
    """


class CacheUnavailableError(StashlyError):
    """The backend failed (connection refused, timeout, protocol error).

    Raised to callers only in strict mode; otherwise stashly logs it, counts it and carries on without the cache.
    """
