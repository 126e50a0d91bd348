"""The exceptions stashly raises (every one is a :class:`StashlyError`), and the warning it gives."""

from __future__ import annotations

__all__ = [
    "CacheUnavailableError",
    "ConfigError",
    "FactoryTimeoutError",
    "MemoryBackendWarning",
    "SerializationError",
    "StashlyError",
    "UnstableKeyError",
    "ValueTooLargeError",
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

    node: str | None = None
    """On Redis Cluster, the node (``host:port``) that failed when the others may still answer; ``None`` when the
    failure is the backend's as a whole."""


class FactoryTimeoutError(StashlyError, TimeoutError):
    """A cached function did not return within its ``hard_timeout`` and there was no stale value to serve.

    The computation is not abandoned: it finishes in the background (a worker thread, or a task) and its result is
    stored, as any fill, unless an invalidation happened meanwhile.
    """


class ValueTooLargeError(StashlyError, ValueError):
    """``set`` was given a value whose encoding exceeds ``max_value_bytes``; names the key, the size and the limit.

    The decorator never raises it: a result too large to cache is returned uncached (and logged).
    """


class MemoryBackendWarning(UserWarning):
    """The ``memory://`` backend serves a process that is one of several (server workers, a forked child).

    Each process then has a cache of its own: an invalidation in one is not seen by the others, which serve stale
    entries until they expire. Given once per process. Use Redis to share one cache; if per-process entries are
    what you want, ``warnings.filterwarnings("ignore", category=stashly.MemoryBackendWarning)``.
    """
