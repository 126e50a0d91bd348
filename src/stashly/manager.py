"""CacheManager: the public key/value facade — keys and namespaces in, the engine does the rest."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar, overload

from . import keys
from .backends.layers.local import LocalTier
from .config.settings import Settings, resolve
from .engine import AsyncEngine, Engine, FlushMode, build, flush_mode
from .keys.namespaces import Namespaces
from .sentinels import MISSING, NOT_SET, NotSet
from .stats import CacheStats, Site, Sites, combine
from .storage import codec
from .tags.core import checked_tags
from .ttl import TTL, check_ttl, resolve_ttl

__all__ = ["CacheManager", "default_manager", "set_default_manager"]

T = TypeVar("T")
D = TypeVar("D")


class CacheManager:
    """A cache of JSON values under ``<prefix>:<namespace>:<key>``, on Redis or in memory.

    Settings come from the arguments, then the ``STASHLY_*`` environment, then ``config.json``, then defaults
    (an in-memory cache). Creating a manager opens no connection.

    >>> cm = CacheManager(url="memory://", namespace="app", default_ttl=300)
    >>> cm.set("user:1", {"id": 1, "email": "a@example.com"}, ttl=60)
    >>> cm.get("user:1")
    {'id': 1, 'email': 'a@example.com'}
    >>> cm.remove("user:1")
    True

    If the backend fails, ``get`` returns ``default`` and ``set`` logs, unless ``strict=True``, which raises
    :class:`~stashly.CacheUnavailableError` instead. Every method has an ``async`` twin (``aget``, ``aset``, …).
    """

    local: LocalTier | None
    """The local tier in front of Redis, if any (``None`` on the memory backend, which is local already)."""
    engine: Engine
    aengine: AsyncEngine

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        default_ttl: float | timedelta | None = None,
        strict: bool | None = None,
        config_path: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        local: LocalTier | bool | None = None,
        **options: Any,
    ) -> None:
        """``options`` are the other settings by name (``prefix``, ``socket_timeout``, ``max_entries``, …: the
        settings reference); an unknown name raises ``TypeError``. ``settings`` bypasses resolution.
        ``local`` puts a :class:`~stashly.LocalTier` in front of Redis: a tier, or ``True`` for one built from
        the ``local_*`` settings."""
        tier = local if isinstance(local, LocalTier) else None
        if settings is None:
            if isinstance(default_ttl, timedelta):
                default_ttl = default_ttl.total_seconds()
            settings = resolve(
                config_path=config_path,
                url=url,
                namespace=namespace,
                default_ttl=default_ttl,
                strict=strict,
                local=None if tier is not None else local,
                **options,
            )
        self.settings = settings
        if tier is None and settings.local:
            tier = LocalTier(settings.local_max_entries, settings.local_max_bytes, settings.local_ttl)
        if tier is not None:
            tier.claim()
        self.local = None if settings.url.startswith("memory:") else tier  # the memory backend is local already
        self.engine, self.aengine, self._breaker = build(settings, tier)
        """The engines this manager's operations run on (the decorator and integrations drive them directly)."""
        self._backend, self._abackend = self.engine.backend, self.aengine.backend
        self._sites = Sites(settings.stats_max_names)
        self._sites_lock = threading.Lock()  # guards the baseline of stats(reset=True)
        self._names = Namespaces(settings, self._sites)
        self._full, self._resolve = self._names.full, self._names.resolve  # bound once: the hit path calls _full
        self._baseline = CacheStats()

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **arguments: Any) -> CacheManager:
        """A manager configured by the ``redis`` section of the JSON file at ``path`` (arguments and env still win)."""
        return cls(config_path=path, **arguments)

    def __repr__(self) -> str:
        s = self.settings
        return f"CacheManager(url={s.url!r}, namespace={s.namespace!r}, prefix={s.prefix!r})"

    # -- keys ---------------------------------------------------------------------------------------------

    def key(self, key: str, namespace: str | None = None) -> str:
        """The full backend key for an application key: ``<prefix>:<namespace>:<key>``."""
        return self._full(key, namespace)[0]

    def _head(self, namespace: str | None) -> str:
        """What every key of ``namespace`` starts with: ``<prefix>:<namespace>:``."""
        return self._resolve(namespace)[0]

    def _site(self, namespace: str | None) -> Site:
        """The counters of ``namespace`` (this manager's by default)."""
        return self._resolve(namespace)[1]

    def guard(self, namespace: str | None) -> str:
        """The guard key of ``namespace``: every invalidation bumps it, every fill checks it."""
        return keys.guard_key(self.settings.prefix, self._names.name(namespace))

    def expiry(self, ttl: TTL | NotSet, key: str) -> float | None:
        """``set``'s TTL in seconds for ``key`` (``NOT_SET``: the default TTL), jittered."""
        s = self.settings
        expiry = resolve_ttl(check_ttl(ttl, f"key {key!r}"), s.default_ttl, s.allow_no_expiry, f"key {key!r}")
        return self.engine.jittered(expiry)

    def function_site(self, namespace: str, function: str) -> Site:
        """The counters of a cached function in ``namespace`` (shared by every binding of it to this manager)."""
        return self._sites.function(namespace, function)

    @overload
    def get(self, key: str, default: None = None, *, type: type[T], namespace: str | None = None) -> T | None: ...
    @overload
    def get(self, key: str, default: D, *, type: type[T], namespace: str | None = None) -> T | D: ...
    @overload
    def get(self, key: str, default: Any = None, *, type: None = None, namespace: str | None = None) -> Any: ...

    def get(self, key: str, default: Any = None, *, type: Any = None, namespace: str | None = None) -> Any:
        """The value stored under ``key``, or ``default`` when absent (or unreadable, or the backend failed).

        With ``type=`` the JSON is validated into that type (``type=UserRead`` returns a ``UserRead``); an entry
        that does not validate counts as absent.
        """
        reader = codec.identity if type is None else codec.reader_for(type)  # untyped: no cache lookup to pay
        full, site = self._full(key, namespace)
        value = self.engine.hit(full, reader, site)
        if value is MISSING:
            value = self.engine.load(full, reader, site)
        return default if value is MISSING else value

    @overload
    def get_many(self, keys: Iterable[str], *, type: type[T], namespace: str | None = None) -> dict[str, T]: ...
    @overload
    def get_many(self, keys: Iterable[str], *, type: None = None, namespace: str | None = None) -> dict[str, Any]: ...

    def get_many(self, keys: Iterable[str], *, type: Any = None, namespace: str | None = None) -> dict[str, Any]:
        """The entries that exist among ``keys``, as ``{key: value}``, in one round trip (``MGET``).

        Absent, unreadable and wrongly shaped entries are left out; so is everything if the backend fails
        (unless strict).
        """
        names, full = self._many_keys(keys, namespace)
        return self.engine.load_many(names, full, codec.reader_for(type), self._site(namespace))

    def _many_keys(self, keys: Iterable[str], namespace: str | None) -> tuple[list[str], list[str]]:
        """The names and their full keys; the namespace is checked once, not per key."""
        names = list(keys)
        head = self._head(namespace)
        for name in names:
            if type(name) is not str or not name or not name.isascii():
                self.key(name, namespace)  # the slow path raises the right error (or accepts valid Unicode)
        return names, [head + name for name in names]

    def set(
        self,
        key: str,
        value: object,
        ttl: TTL | NotSet = NOT_SET,
        *,
        namespace: str | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Store ``value`` (anything JSON-able, Pydantic models included) for ``ttl`` seconds or the default TTL,
        filed under ``tags`` (see :meth:`invalidate_tags`). Raises :class:`~stashly.SerializationError` before
        writing anything when the value is not JSON."""
        full = self.key(key, namespace)
        expiry = self.expiry(ttl, full)
        if tags:
            self.engine.store_tagged(full, value, expiry, checked_tags(tags, "set"), self._site(namespace))
            return
        self.engine.store(full, self.engine.payload(value, full), expiry, self._site(namespace))

    def invalidate_tags(self, *tags: str) -> int:
        """Make every entry filed under any of ``tags`` a miss, in every namespace and process (one key per tag,
        whatever the number of entries); the number of tags that were in use.

        >>> cm = CacheManager("memory://")
        >>> cm.set("user:5", {"id": 5}, tags=["user:5"])
        >>> cm.invalidate_tags("user:5"), cm.get("user:5")
        (1, None)
        """
        return self.engine.delete_tags(checked_tags(tags, "invalidate_tags"), self._site(None))

    def remove(self, key: str, *, namespace: str | None = None) -> bool:
        """Drop ``key``; ``True`` when something was removed.

        A value being computed for this namespace at that moment (by ``@cached``, in any process) is not
        stored afterwards, so a removal is never undone by a computation that started before it.
        """
        return self.engine.delete(self.key(key, namespace), self.guard(namespace), self._site(namespace))

    def flush_namespace(self, namespace: str | None = None, *, mode: FlushMode = "scan") -> int:
        """Drop every entry of ``namespace`` (this manager's by default); the number of keys removed.

        ``mode="scan"`` (the default) removes them: on Redis an incremental ``SCAN``/``UNLINK`` over
        ``<prefix>:<namespace>:*`` on every primary — never ``KEYS`` or ``FLUSHDB`` — so other namespaces and
        keys stashly did not write are untouched. Its time grows with the whole keyspace.

        ``mode="versioned"`` makes them unreachable at once, in one ``INCR`` of the namespace's generation,
        whatever the namespace's size; the old entries stay in Redis until their TTLs run out, and it returns 0.

        Either way, values being computed at that moment are not stored afterwards.

        Example::

            cache.flush_namespace("catalog", mode="versioned")  # a million entries, one round trip
        """
        head, site = self._resolve(namespace)
        if flush_mode(mode) == "versioned":
            self.engine.retire_namespace(head, self.guard(namespace), site)
            return 0
        return self.engine.delete_namespace(head, self.guard(namespace), site)

    def count(self, namespace: str | None = None) -> int:
        """How many entries ``namespace`` (this manager's by default) holds; 0 if the backend fails.

        On Redis this walks the namespace with ``SCAN``: fine for dashboards, not for a hot path.
        """
        head, site = self._resolve(namespace)
        return self.engine.count_namespace(head, site)

    def close(self) -> None:
        """Release the backend's connections (the manager reconnects if used again)."""
        self.engine.close()

    def __enter__(self) -> CacheManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the async twins: the same steps, awaiting the async engine -----------------------------------------

    @overload
    async def aget(
        self, key: str, default: None = None, *, type: type[T], namespace: str | None = None
    ) -> T | None: ...
    @overload
    async def aget(self, key: str, default: D, *, type: type[T], namespace: str | None = None) -> T | D: ...
    @overload
    async def aget(self, key: str, default: Any = None, *, type: None = None, namespace: str | None = None) -> Any: ...

    async def aget(self, key: str, default: Any = None, *, type: Any = None, namespace: str | None = None) -> Any:
        """Async :meth:`get`."""
        reader = codec.identity if type is None else codec.reader_for(type)
        full, site = self._full(key, namespace)
        value = self.aengine.hit(full, reader, site)
        if value is MISSING:
            value = await self.aengine.load(full, reader, site)
        return default if value is MISSING else value

    @overload
    async def aget_many(self, keys: Iterable[str], *, type: type[T], namespace: str | None = None) -> dict[str, T]: ...
    @overload
    async def aget_many(
        self, keys: Iterable[str], *, type: None = None, namespace: str | None = None
    ) -> dict[str, Any]: ...

    async def aget_many(self, keys: Iterable[str], *, type: Any = None, namespace: str | None = None) -> dict[str, Any]:
        """Async :meth:`get_many`."""
        names, full = self._many_keys(keys, namespace)
        return await self.aengine.load_many(names, full, codec.reader_for(type), self._site(namespace))

    async def aset(
        self,
        key: str,
        value: object,
        ttl: TTL | NotSet = NOT_SET,
        *,
        namespace: str | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Async :meth:`set`."""
        full = self.key(key, namespace)
        expiry = self.expiry(ttl, full)
        if tags:
            await self.aengine.store_tagged(full, value, expiry, checked_tags(tags, "aset"), self._site(namespace))
            return
        await self.aengine.store(full, self.aengine.payload(value, full), expiry, self._site(namespace))

    async def ainvalidate_tags(self, *tags: str) -> int:
        """Async :meth:`invalidate_tags`."""
        return await self.aengine.delete_tags(checked_tags(tags, "ainvalidate_tags"), self._site(None))

    async def aremove(self, key: str, *, namespace: str | None = None) -> bool:
        """Async :meth:`remove`."""
        return await self.aengine.delete(self.key(key, namespace), self.guard(namespace), self._site(namespace))

    async def aflush_namespace(self, namespace: str | None = None, *, mode: FlushMode = "scan") -> int:
        """Async :meth:`flush_namespace`."""
        head, site = self._resolve(namespace)
        if flush_mode(mode) == "versioned":
            await self.aengine.retire_namespace(head, self.guard(namespace), site)
            return 0
        return await self.aengine.delete_namespace(head, self.guard(namespace), site)

    async def acount(self, namespace: str | None = None) -> int:
        """Async :meth:`count`."""
        head, site = self._resolve(namespace)
        return await self.aengine.count_namespace(head, site)

    async def aclose(self) -> None:
        """Async :meth:`close` (closes the connections of the running event loop)."""
        await self.aengine.close()

    async def __aenter__(self) -> CacheManager:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- observability --------------------------------------------------------------------------------------

    def stats(self, reset: bool = False) -> CacheStats:
        """What this manager has seen since it was created, or since the last ``stats(reset=True)``: in total,
        by namespace and by cached function (see :class:`~stashly.CacheStats`). ``reset=True`` starts a new
        interval; exporters (Prometheus, OpenTelemetry) read :meth:`totals`, which resets never touch."""
        totals = self.totals()
        with self._sites_lock:
            interval = totals.since(self._baseline)
            if reset:
                self._baseline = totals
        return interval

    def totals(self) -> CacheStats:
        """Everything counted since this manager was created (counters that only grow)."""
        tier, breaker, journal = self.local, self._breaker, self.engine.journal
        return combine(
            self._sites,
            local_hits=0 if tier is None else tier.hits,
            breaker_changes=0 if breaker is None else breaker.changes,
            pending_invalidations=len(journal),
            replayed_invalidations=journal.replayed,
            escalated_invalidations=journal.escalated,
            dropped_invalidations=journal.dropped,
        )


_default: CacheManager | None = None
_default_lock = threading.Lock()


def default_manager() -> CacheManager:
    """The process-wide manager used by ``Cached`` without ``manager=``; built from settings on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = CacheManager()
    return _default


def set_default_manager(manager: CacheManager | None) -> None:
    """Replace the default manager (``None`` drops it; the next use builds a new one from settings)."""
    global _default
    with _default_lock:
        _default = manager
