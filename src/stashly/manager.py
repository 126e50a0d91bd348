"""CacheManager: joins settings, keys, codec, TTL and a backend, and applies the fail-open policy."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterable
from datetime import timedelta
from time import perf_counter_ns
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypeAlias, TypeVar, overload

import pydantic

from . import keys
from .backends import create as create_backends
from .backends.base import Lock, Read
from .backends.layers.local import LocalTier
from .config.settings import Settings, parse_name, resolve
from .errors import CacheUnavailableError, ValueTooLargeError
from .failures import FailurePolicy
from .sentinels import MISSING, NOT_SET, Missing, NotSet
from .stats import SAMPLED, CacheStats, Site, Sites, combine
from .storage import codec
from .storage.codec import Serializer
from .storage.pickle import SignedPickle
from .ttl import TTL, check_ttl, resolve_ttl

__all__ = ["CacheManager", "default_manager", "set_default_manager"]

T = TypeVar("T")
D = TypeVar("D")
_HEADS = 1024  # validated namespace heads remembered per manager
Token: TypeAlias = bytes | Missing | None
"""A guard's value read before a computation; MISSING when the read failed (then nothing is stored)."""
FlushMode: TypeAlias = Literal["scan", "versioned"]
"""How ``flush_namespace`` drops a namespace: remove its keys, or retire its generation in O(1)."""


def _flush_mode(mode: object) -> FlushMode:
    if mode == "scan" or mode == "versioned":
        return mode
    raise ValueError(f"flush_namespace mode must be 'scan' or 'versioned', got {mode!r}")


class Lookup(NamedTuple):
    """One read for a fill: the value (or MISSING), its stored bytes, the guard token, the remaining TTL."""

    value: Any
    raw: bytes
    token: Token
    ttl: float | None


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
        README's settings table); an unknown name raises ``TypeError``. ``settings`` bypasses resolution.
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
        self._serializer: Serializer = SignedPickle(settings.secrets) if settings.serializer == "pickle" else codec.JSON
        self._failures = FailurePolicy()
        if tier is None and settings.local:
            tier = LocalTier(settings.local_max_entries, settings.local_max_bytes, settings.local_ttl)
        if tier is not None:
            tier.claim()
        self.local = None if settings.url.startswith("memory:") else tier  # the memory backend is local already
        self._backend, self._abackend, self._breaker = create_backends(settings, tier, self._failures.local_suspended)
        self._sites = Sites(settings.stats_max_names)
        self._sites_lock = threading.Lock()  # guards the baseline of stats(reset=True)
        # namespace argument (None: the manager's) -> (validated key head, counters); cleared when it grows
        self._namespaces: dict[str | None, tuple[str, Site]] = {}
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
        if type(key) is not str or not key:
            raise TypeError(f"cache keys are non-empty strings, got {key!r}")
        if not key.isascii():
            try:
                key.encode()
            except UnicodeEncodeError:
                raise ValueError("cache keys must be valid Unicode (a lone surrogate cannot be stored)") from None
        try:
            return self._namespaces[namespace][0] + key
        except (KeyError, TypeError):  # first use of this namespace, or not a name at all (_resolve says why)
            return self._resolve(namespace)[0] + key

    def _head(self, namespace: str | None) -> str:
        """What every key of ``namespace`` starts with: ``<prefix>:<namespace>:``."""
        return self._resolve(namespace)[0]

    def _site(self, namespace: str | None) -> Site:
        """The counters of ``namespace`` (this manager's by default)."""
        return self._resolve(namespace)[1]

    def _resolve(self, namespace: str | None) -> tuple[str, Site]:
        """The key head and the counters of a namespace argument, validated once and then remembered."""
        if namespace is None or type(namespace) is str:
            found = self._namespaces.get(namespace)
            if found is not None:
                return found
        name = self._namespace(namespace)
        resolved = keys.namespace_prefix(self.settings.prefix, name), self._sites.namespace(name)
        if len(self._namespaces) >= _HEADS:
            self._namespaces.clear()
        self._namespaces[namespace] = resolved
        return resolved

    def _namespace(self, namespace: str | None) -> str:
        if namespace is None:
            return self.settings.namespace
        return parse_name(namespace, "argument namespace")

    # -- the shared core: everything but the I/O ------------------------------------------------------------

    def _read(self, raw: bytes | None, key: str, reader: codec.Reader, site: Site) -> Any:
        """A stored entry turned into the caller's value, or MISSING (absent, unreadable, wrong shape)."""
        if raw is None:
            site.misses += 1
            return MISSING
        site.bytes_read += len(raw)
        if len(raw) > self.settings.max_value_bytes:  # bounded decoding: never parse a huge foreign value
            self._failures.unreadable(key, f"{len(raw)} bytes, over max_value_bytes")
            site.misses += 1
            return MISSING
        value = self._serializer.decode(raw, key)
        if value is MISSING:
            self._failures.unreadable(key, "not a stashly entry for this key (corrupt, foreign, copied or unsigned)")
        else:
            try:
                value = reader(value)
            except pydantic.ValidationError as exc:
                self._failures.unreadable(key, f"does not validate as the expected type ({exc.error_count()} errors)")
                value = MISSING
        if value is MISSING:
            site.misses += 1
        else:
            site.hits += 1
        return value

    def _lookup(self, read: Read, key: str, reader: codec.Reader, site: Site, started: int) -> Lookup:
        raw, token, ttl = read
        value = self._read(raw, key, reader, site)
        if started and value is not MISSING:
            site.hit_ns[(perf_counter_ns() - started).bit_length()] += 1
        return Lookup(value, raw or b"", token, ttl)

    def _expiry(self, ttl: TTL | NotSet, key: str) -> float | None:
        s = self.settings
        return resolve_ttl(check_ttl(ttl, f"key {key!r}"), s.default_ttl, s.allow_no_expiry, f"key {key!r}")

    def _jittered(self, expiry: float | None) -> float | None:
        """Shorten each TTL by up to ``ttl_jitter`` so entries written together do not all expire together."""
        jitter = self.settings.ttl_jitter
        return expiry if expiry is None or not jitter else expiry * (1.0 - jitter * random.random())

    def _encode(self, value: object, key: str) -> bytes:
        return self._serializer.encode(value, key)

    def _too_large(self, payload: bytes, key: str) -> bool:
        """Whether a computed value is too large to store: it is then returned uncached, and logged."""
        if len(payload) <= self.settings.max_value_bytes:
            return False
        self._failures.not_stored(key, f"{len(payload)} bytes, over max_value_bytes={self.settings.max_value_bytes}")
        return True

    def _payload(self, value: object, key: str) -> bytes:
        """``set``'s encoding: raises rather than drop the user's own write silently."""
        payload = self._serializer.encode(value, key)
        if len(payload) > self.settings.max_value_bytes:
            raise ValueTooLargeError(
                f"value for key {key!r} encodes to {len(payload)} bytes, over max_value_bytes="
                f"{self.settings.max_value_bytes}: nothing was stored"
            )
        return payload

    def _guard(self, namespace: str | None) -> str:
        return keys.guard_key(self.settings.prefix, self._namespace(namespace))

    def _failed(self, exc: CacheUnavailableError, operation: str, key: str, strict: bool | None, site: Site) -> None:
        site.errors += 1
        self._failures.backend_failed(exc, operation, key, self.settings.strict if strict is None else strict)

    # -- sync driver ----------------------------------------------------------------------------------------

    def _load(self, key: str, reader: codec.Reader, site: Site) -> Any:
        started = 0 if site.hits & SAMPLED else perf_counter_ns()  # one hit in 16 is timed
        try:
            raw = self._backend.get(key)
        except CacheUnavailableError as exc:
            self._failed(exc, "get", key, None, site)
            return MISSING
        value = self._read(raw, key, reader, site)
        if started and value is not MISSING:
            site.hit_ns[(perf_counter_ns() - started).bit_length()] += 1
        return value

    def _lookup_sync(
        self, key: str, guard: str, reader: codec.Reader, strict: bool, site: Site, with_ttl: bool = False
    ) -> Lookup:
        """The entry, and the guard token a fill for this key must present (``UNKNOWN`` if the read failed)."""
        started = 0 if site.hits & SAMPLED else perf_counter_ns()  # one hit in 16 is timed
        try:
            read = self._backend.read(key, guard, with_ttl)
        except CacheUnavailableError as exc:
            self._failed(exc, "get", key, strict, site)
            return Lookup(MISSING, b"", MISSING, None)
        return self._lookup(read, key, reader, site, started)

    def _fill(
        self,
        key: str,
        payload: bytes,
        expiry: float | None,
        guard: str,
        token: Token,
        strict: bool,
        site: Site,
        lock: Lock = None,
    ) -> None:
        """Store a computed value unless an invalidation happened since ``token`` was read (or ``lock`` was lost)."""
        if token is MISSING:
            return  # the read before the computation failed: no proof the value is still current
        if self._too_large(payload, key):
            return
        try:
            stored = self._backend.fill(key, payload, self._jittered(expiry), guard, token, lock)
        except CacheUnavailableError as exc:
            self._failed(exc, "set", key, strict, site)
        else:
            site.stores += stored
            site.bytes_written += len(payload) if stored else 0

    def _acquire(self, lock_key: str, owner: bytes, lease: float, site: Site, strict: bool | None) -> bool | None:
        """Take a stampede lock: ``True`` if taken, ``False`` if another holds it, ``None`` if the backend failed.

        A failure (a timeout, or a refusal such as ``NOPERM``) raises in strict mode; otherwise it is logged and
        counted, and the caller computes without the lock (its store still fenced by the guard token).
        """
        try:
            return self._backend.acquire(lock_key, owner, lease)
        except CacheUnavailableError as exc:
            self._failed(exc, "lock", lock_key, strict, site)
            return None

    def _release(self, lock_key: str, owner: bytes, site: Site) -> None:
        try:
            self._backend.release(lock_key, owner)
        except CacheUnavailableError as exc:  # the lease runs out by itself
            self._failed(exc, "unlock", lock_key, False, site)

    def _delete(self, key: str, guard: str, site: Site, strict: bool | None = None) -> bool:
        site.invalidations += 1
        try:
            return self._backend.delete(key, guard)
        except CacheUnavailableError as exc:
            self._failed(exc, "remove", key, strict, site)
            return False

    @overload
    def get(self, key: str, default: Any = None, *, type: None = None, namespace: str | None = None) -> Any: ...
    @overload
    def get(self, key: str, default: D = None, *, type: type[T], namespace: str | None = None) -> T | D: ...  # type: ignore[assignment]

    def get(self, key: str, default: Any = None, *, type: Any = None, namespace: str | None = None) -> Any:
        """The value stored under ``key``, or ``default`` when absent (or unreadable, or the backend failed).

        With ``type=`` the JSON is validated into that type (``type=UserRead`` returns a ``UserRead``); an entry
        that does not validate counts as absent.
        """
        value = self._load(self.key(key, namespace), codec.reader_for(type), self._site(namespace))
        return default if value is MISSING else value

    def get_many(self, keys: Iterable[str], *, type: Any = None, namespace: str | None = None) -> dict[str, Any]:
        """The entries that exist among ``keys``, as ``{key: value}``, in one round trip (``MGET``).

        Absent, unreadable and wrongly shaped entries are left out; so is everything if the backend fails
        (unless strict).
        """
        names, full = self._many_keys(keys, namespace)
        site = self._site(namespace)
        try:
            raws = self._backend.get_many(full)
        except CacheUnavailableError as exc:
            self._failed(exc, "get_many", full[0] if full else "", None, site)
            return {}
        return self._many(names, full, raws, codec.reader_for(type), site)

    def _many_keys(self, keys: Iterable[str], namespace: str | None) -> tuple[list[str], list[str]]:
        """The names and their full keys; the namespace is checked once, not per key."""
        names = list(keys)
        head = self._head(namespace)
        for name in names:
            if type(name) is not str or not name or not name.isascii():
                self.key(name, namespace)  # the slow path raises the right error (or accepts valid Unicode)
        return names, [head + name for name in names]

    def _many(
        self, names: list[str], full: list[str], raws: list[bytes | None], reader: codec.Reader, site: Site
    ) -> dict[str, Any]:
        found = {}
        for name, key, raw in zip(names, full, raws, strict=True):
            value = self._read(raw, key, reader, site)
            if value is not MISSING:
                found[name] = value
        return found

    def set(self, key: str, value: object, ttl: TTL | NotSet = NOT_SET, *, namespace: str | None = None) -> None:
        """Store ``value`` (anything JSON-able, Pydantic models included) for ``ttl`` seconds or the default TTL.

        Raises :class:`~stashly.SerializationError` before writing anything when the value is not JSON.
        """
        full = self.key(key, namespace)
        expiry = self._jittered(self._expiry(ttl, full))
        payload = self._payload(value, full)
        site = self._site(namespace)
        try:
            self._backend.set(full, payload, expiry)
        except CacheUnavailableError as exc:
            self._failed(exc, "set", full, None, site)
        else:
            site.stores += 1
            site.bytes_written += len(payload)

    def remove(self, key: str, *, namespace: str | None = None) -> bool:
        """Drop ``key``; ``True`` when something was removed.

        A value being computed for this namespace at that moment (by ``@cached``, in any process) is not
        stored afterwards, so a removal is never undone by a computation that started before it.
        """
        return self._delete(self.key(key, namespace), self._guard(namespace), self._site(namespace))

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
        site.invalidations += 1
        try:
            if _flush_mode(mode) == "versioned":
                self._backend.retire_prefix(head, self._guard(namespace))
                return 0
            return self._backend.delete_prefix(head, self._guard(namespace))
        except CacheUnavailableError as exc:
            self._failed(exc, "flush_namespace", head, None, site)
            return 0

    def count(self, namespace: str | None = None) -> int:
        """How many entries ``namespace`` (this manager's by default) holds; 0 if the backend fails.

        On Redis this walks the namespace with ``SCAN``: fine for dashboards, not for a hot path.
        """
        head, site = self._resolve(namespace)
        try:
            return self._backend.count_prefix(head)
        except CacheUnavailableError as exc:
            self._failed(exc, "count", head, None, site)
            return 0

    def close(self) -> None:
        """Release the backend's connections (the manager reconnects if used again)."""
        self._backend.close()

    def __enter__(self) -> CacheManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- async driver ---------------------------------------------------------------------------------------

    async def _aload(self, key: str, reader: codec.Reader, site: Site) -> Any:
        started = 0 if site.hits & SAMPLED else perf_counter_ns()  # one hit in 16 is timed
        try:
            raw = await self._abackend.get(key)
        except CacheUnavailableError as exc:
            self._failed(exc, "get", key, None, site)
            return MISSING
        value = self._read(raw, key, reader, site)
        if started and value is not MISSING:
            site.hit_ns[(perf_counter_ns() - started).bit_length()] += 1
        return value

    async def _alookup(
        self, key: str, guard: str, reader: codec.Reader, strict: bool, site: Site, with_ttl: bool = False
    ) -> Lookup:
        started = 0 if site.hits & SAMPLED else perf_counter_ns()  # one hit in 16 is timed
        try:
            read = await self._abackend.read(key, guard, with_ttl)
        except CacheUnavailableError as exc:
            self._failed(exc, "get", key, strict, site)
            return Lookup(MISSING, b"", MISSING, None)
        return self._lookup(read, key, reader, site, started)

    async def _afill(
        self,
        key: str,
        payload: bytes,
        expiry: float | None,
        guard: str,
        token: Token,
        strict: bool,
        site: Site,
        lock: Lock = None,
    ) -> None:
        if token is MISSING or self._too_large(payload, key):
            return
        try:
            stored = await self._abackend.fill(key, payload, self._jittered(expiry), guard, token, lock)
        except CacheUnavailableError as exc:
            self._failed(exc, "set", key, strict, site)
        else:
            site.stores += stored
            site.bytes_written += len(payload) if stored else 0

    async def _aacquire(
        self, lock_key: str, owner: bytes, lease: float, site: Site, strict: bool | None
    ) -> bool | None:
        """Async :meth:`_acquire`."""
        try:
            return await self._abackend.acquire(lock_key, owner, lease)
        except CacheUnavailableError as exc:
            self._failed(exc, "lock", lock_key, strict, site)
            return None

    async def _arelease(self, lock_key: str, owner: bytes, site: Site) -> None:
        try:
            await self._abackend.release(lock_key, owner)
        except CacheUnavailableError as exc:
            self._failed(exc, "unlock", lock_key, False, site)

    async def _adelete(self, key: str, guard: str, site: Site, strict: bool | None = None) -> bool:
        site.invalidations += 1
        try:
            return await self._abackend.delete(key, guard)
        except CacheUnavailableError as exc:
            self._failed(exc, "remove", key, strict, site)
            return False

    async def aget(self, key: str, default: Any = None, *, type: Any = None, namespace: str | None = None) -> Any:
        """Async :meth:`get`."""
        value = await self._aload(self.key(key, namespace), codec.reader_for(type), self._site(namespace))
        return default if value is MISSING else value

    async def aget_many(self, keys: Iterable[str], *, type: Any = None, namespace: str | None = None) -> dict[str, Any]:
        """Async :meth:`get_many`."""
        names, full = self._many_keys(keys, namespace)
        site = self._site(namespace)
        try:
            raws = await self._abackend.get_many(full)
        except CacheUnavailableError as exc:
            self._failed(exc, "get_many", full[0] if full else "", None, site)
            return {}
        return self._many(names, full, raws, codec.reader_for(type), site)

    async def aset(self, key: str, value: object, ttl: TTL | NotSet = NOT_SET, *, namespace: str | None = None) -> None:
        """Async :meth:`set`."""
        full = self.key(key, namespace)
        expiry = self._jittered(self._expiry(ttl, full))
        payload = self._payload(value, full)
        site = self._site(namespace)
        try:
            await self._abackend.set(full, payload, expiry)
        except CacheUnavailableError as exc:
            self._failed(exc, "set", full, None, site)
        else:
            site.stores += 1
            site.bytes_written += len(payload)

    async def aremove(self, key: str, *, namespace: str | None = None) -> bool:
        """Async :meth:`remove`."""
        return await self._adelete(self.key(key, namespace), self._guard(namespace), self._site(namespace))

    async def aflush_namespace(self, namespace: str | None = None, *, mode: FlushMode = "scan") -> int:
        """Async :meth:`flush_namespace`."""
        head, site = self._resolve(namespace)
        site.invalidations += 1
        try:
            if _flush_mode(mode) == "versioned":
                await self._abackend.retire_prefix(head, self._guard(namespace))
                return 0
            return await self._abackend.delete_prefix(head, self._guard(namespace))
        except CacheUnavailableError as exc:
            self._failed(exc, "flush_namespace", head, None, site)
            return 0

    async def acount(self, namespace: str | None = None) -> int:
        """Async :meth:`count`."""
        head, site = self._resolve(namespace)
        try:
            return await self._abackend.count_prefix(head)
        except CacheUnavailableError as exc:
            self._failed(exc, "count", head, None, site)
            return 0

    async def aclose(self) -> None:
        """Async :meth:`close` (closes the connections of the running event loop)."""
        await self._abackend.close()

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
        tier, breaker = self.local, self._breaker
        return combine(
            self._sites,
            local_hits=0 if tier is None else tier.hits,
            breaker_changes=0 if breaker is None else breaker.changes,
        )

    def _function_site(self, namespace: str, function: str) -> Site:
        """The counters of a cached function in ``namespace`` (shared by every binding of it to this manager)."""
        return self._sites.function(namespace, function)


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
