"""The engine's shared core: everything a cache operation does but the I/O, for the sync and the async engine.

Decoding with its bounds and checks (a huge, foreign, unsigned or wrongly shaped entry is a miss, logged),
encoding with its size limit, TTL jitter, the counters of each operation and the fail-open decision. The two
engines (:mod:`.engine_async` and its generated twin :mod:`.engine_sync`) only add the backend call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from time import perf_counter_ns
from typing import Any, Literal, NamedTuple, TypeAlias

import orjson
import pydantic

from ..backends.base import Peek, Read, peek_of
from ..config.settings import Settings
from ..errors import CacheUnavailableError, ValueTooLargeError
from ..failures import FailurePolicy
from ..sentinels import MISSING, Missing
from ..stats import SAMPLED, Site
from ..storage import codec
from ..storage.codec import Serializer, Stale
from ..tags import core as tags
from ..tags import uncommitted
from .journal import Journal
from .shared import SharedValues

__all__ = [
    "EngineCore",
    "FillSpan",
    "FlushMode",
    "Hooks",
    "Lookup",
    "Token",
    "current",
    "flush_mode",
    "stored_tags",
]

Token: TypeAlias = bytes | Missing | None
"""A guard's value read before a computation; MISSING when the read failed (then nothing is stored)."""
FlushMode: TypeAlias = Literal["scan", "versioned"]
"""How ``flush_namespace`` drops a namespace: remove its keys, or retire its generation in O(1)."""
FillSpan: TypeAlias = Callable[[str, str], AbstractContextManager[object]]
"""A fill hook: called with the namespace and the function's name, it opens a context around one fill."""


_VERSION: Any = codec.FORMAT_VERSION
# The hit path's names, looked up once here rather than as attributes of codec on every hit.
_PLAIN, _PLAIN_AT, _VALUE_AT, _STAMP_AT = codec.PLAIN, codec.PLAIN_AT, codec.VALUE_AT, codec.STAMP_AT
_header, _loads, _identity, _Native = codec.header, orjson.loads, codec.identity, codec.Native


def _documents(raws: list[bytes | None], limit: int) -> list[Any]:
    """The JSON document of each entry (``None``: absent, over ``limit``, or not JSON); when all are present,
    parsed in one call.

    One ``orjson.loads`` of them all as one array costs less than one call per entry (get_many's cost). Should
    an entry not be exactly one JSON document, the array does not parse, or parses into another count, and each
    is parsed alone; an entry whose bytes parse into fragments that line up anyway yields documents the caller's
    envelope checks refuse (each must be an envelope bound to its own key), and those take the full path."""
    if raws and None not in raws and max(map(len, raws)) <= limit:  # type: ignore[arg-type]  # no None: checked
        try:
            parsed: list[Any] = orjson.loads(b"[%b]" % b",".join(raws))  # type: ignore[arg-type]
        except orjson.JSONDecodeError:
            pass
        else:
            if len(parsed) == len(raws):
                return parsed
    return [_document(raw, limit) for raw in raws]


def _document(raw: bytes | None, limit: int) -> Any:
    if raw is None or len(raw) > limit:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def stored_tags(raw: bytes) -> dict[str, bytes]:
    """The tags an entry was stored with and their tokens then (none for an untagged entry)."""
    fragment = codec.tags_of(raw)
    return {} if fragment is None else tags.parse_fragment(fragment)


def flush_mode(mode: object) -> FlushMode:
    if mode == "scan" or mode == "versioned":
        return mode
    raise ValueError(f"flush_namespace mode must be 'scan' or 'versioned', got {mode!r}")


class Lookup(NamedTuple):
    """One read for a fill: the value (or MISSING), its stored bytes, the guard token, the remaining TTL, and the
    value of an entry past its logical expiry (``fail_safe``: the fallback if its recomputation fails)."""

    value: Any
    raw: bytes
    token: Token
    ttl: float | None
    stale: Any = MISSING


def current(found: Lookup, tags: bytes | None, site: Site) -> Lookup:
    """``found``, or a miss when its entry does not carry ``tags`` — the tokens the caller's tags have now (read
    before it looks up): one of them was invalidated since the entry was stored. Its fail-safe copy goes too."""
    if tags is None or (found.value is MISSING and found.stale is MISSING) or codec.carries_tags(found.raw, tags):
        return found
    if found.value is not MISSING:
        site.unhit()
    return found._replace(value=MISSING, stale=MISSING)


FAILED = Lookup(MISSING, b"", MISSING, None)
"""The lookup of a read that failed: a miss whose fill must not be stored (no proof it is current)."""


class Hooks:
    """What integrations hand in, shared by a manager's two engines (``stashly.integrations.otel``'s spans)."""

    __slots__ = ("fill_span",)

    def __init__(self) -> None:
        self.fill_span: FillSpan | None = None


class EngineCore:
    """Decoding, encoding, expiry, counters and the fail-open decision: the engine minus the backend."""

    def __init__(
        self, settings: Settings, serializer: Serializer, failures: FailurePolicy, hooks: Hooks, journal: Journal
    ) -> None:
        self.peek: Peek | None = None
        """The backend's in-process hit path (:meth:`hit`), if it has one and entries are the JSON envelope (each
        engine sets it for its backend: :meth:`hits_in_process`)."""
        self.shared: SharedValues = SharedValues()
        """The values its ``share=True`` hits hand out (:mod:`.shared`)."""
        self.settings = settings
        self.serializer = serializer
        self.failures = failures
        self.hooks = hooks
        self.journal = journal
        self._max_bytes = settings.max_value_bytes
        self._jitter = settings.ttl_jitter

    def on_fill(self, hook: FillSpan | None) -> None:
        """Open ``hook(namespace, function)`` around every fill of the manager's cached functions (``None``: stop)."""
        self.hooks.fill_span = hook

    def decode(self, raw: bytes | None, key: str, reader: codec.Reader, site: Site) -> Any:
        """A stored entry turned into the caller's value, or MISSING (absent, unreadable, wrong shape), or a
        :class:`~stashly.storage.codec.Stale` value (past its logical expiry: a miss, kept for fail-safe)."""
        if raw is None:
            site.misses += 1
            return MISSING
        site.bytes_read += len(raw)
        if len(raw) > self._max_bytes:  # bounded decoding: never parse a huge foreign value
            self.failures.unreadable(key, f"{len(raw)} bytes, over max_value_bytes")
            site.misses += 1
            return MISSING
        value = self.serializer.decode(raw, key)
        if value is MISSING:
            self.failures.unreadable(key, "not a stashly entry for this key (corrupt, foreign, copied or unsigned)")
            site.misses += 1
            return MISSING
        if type(value) is Stale:
            site.misses += 1  # past its logical expiry: a miss, kept as the fail-safe fallback
            value = self._validated(value.value, key, reader)
            return MISSING if value is MISSING else Stale(value)
        if reader is not codec.identity:  # untyped reads (the common get) skip the call
            try:
                value = reader(value)
            except pydantic.ValidationError as exc:
                self.failures.unreadable(key, f"does not validate as the expected type ({exc.error_count()} errors)")
                site.misses += 1
                return MISSING
        site.hits += 1
        return value

    def hits_in_process(self, backend: object) -> None:
        """Answer hits through ``backend``'s :data:`~stashly.backends.base.Peek`, if it has one (JSON entries only)."""
        self.peek = peek_of(backend) if self.serializer is codec.JSON else None

    def hit(self, key: str, reader: codec.Reader, site: Site, share: bool = False) -> Any:
        """The value of an entry this process holds (memory store, local tier), read in one frame, or MISSING: the
        caller then reads as usual (:meth:`decode` counts the miss, logs why, and serves what the slow path can).

        The common entry only (see :data:`~stashly.storage.codec.VALUE_AT`: no tags, no ``"fresh"``), its value
        parsed alone, a JSON-native annotation checked by type (:class:`~stashly.storage.codec.Native`); while an
        invalidation is pending, nothing (the slow path bypasses the entry). ``share``: the value decoded from
        these very bytes before, if any, read-only and the same for every caller (:mod:`.shared`)."""
        peek = self.peek
        if peek is None or self.journal.active:
            return MISSING
        raw = peek(key)
        if raw is None:
            return MISSING
        started = 0 if site.hits & SAMPLED else perf_counter_ns()
        value = self.shared.get(key, raw, reader) if share else MISSING
        if value is MISSING:
            if (
                len(raw) > self._max_bytes
                or not raw.startswith(_PLAIN, _PLAIN_AT)
                or raw[-1] != 125  # b"}"
                or not raw.startswith(_header(key))
                or not raw[_STAMP_AT:_PLAIN_AT].isdigit()
            ):
                return MISSING
            try:
                value = _loads(raw[_VALUE_AT:-1])
            except orjson.JSONDecodeError:
                return MISSING
            if reader is not _identity:
                if type(reader) is _Native:
                    if type(value) is not reader.kind:
                        return MISSING
                else:
                    try:
                        value = reader(value)
                    except pydantic.ValidationError:
                        return MISSING
            if share:
                value = self.shared.put(key, raw, reader, value)
        site.hits += 1
        site.bytes_read += len(raw)
        if started:
            site.hit_ns[(perf_counter_ns() - started).bit_length()] += 1
        return value

    def _validated(self, value: object, key: str, reader: codec.Reader) -> Any:
        try:
            return reader(value)
        except pydantic.ValidationError as exc:
            self.failures.unreadable(key, f"does not validate as the expected type ({exc.error_count()} errors)")
            return MISSING

    def looked_up(self, read: Read, key: str, reader: codec.Reader, site: Site, started: int) -> Lookup:
        """A backend ``read`` decoded; a hit's latency recorded when ``started`` (one hit in 16 is timed)."""
        raw, token, ttl = read
        value = self.decode(raw, key, reader, site)
        if type(value) is Stale:
            return Lookup(MISSING, raw or b"", token, ttl, value.value)
        if started and value is not MISSING:
            site.hit_ns[(perf_counter_ns() - started).bit_length()] += 1
        return Lookup(value, raw or b"", token, ttl)

    def decode_many(
        self,
        names: list[str],
        full: list[str],
        raws: list[bytes | None],
        reader: codec.Reader,
        site: Site,
        tagged: list[tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """``{name: value}`` of the entries that decode, as :meth:`decode` would, in one loop: the common entry of the
        JSON serializer takes an inlined path, anything else (and every entry of another serializer) the full one.
        The tagged hits go to ``tagged``, as ``(name, raw)``, for the caller to check their tags."""
        found = {}
        binding, identity = codec.binding_text, reader is codec.identity
        limit = self._max_bytes if self.serializer is codec.JSON else -1  # another serializer: the full path always
        hits = misses = size = 0
        for name, key, raw, document in zip(names, full, raws, _documents(raws, limit), strict=True):
            if raw is None:
                misses += 1
                continue
            # codec.decode inlined for the common entry (this loop is get_many's cost); anything else: the full path
            if (
                type(document) is not dict
                or document.get("stashly") is not _VERSION  # the cached int 1 (never True, 1.0); else the full path
                or "fresh" in document
                or "value" not in document
                or document.get("key") != binding(key)
            ):
                value = self.decode(raw, key, reader, site)  # counts, logs why, and keeps what it can
                if value is not MISSING and type(value) is not Stale:
                    found[name] = value
                    if tagged is not None and raw.startswith(codec.TAGGED, codec.TAGS_AT):
                        tagged.append((name, raw))
                continue
            value = document["value"]
            if not identity:
                try:
                    value = reader(value)
                except pydantic.ValidationError:
                    self._validated(value, key, reader)  # logs it
                    misses += 1
                    continue
            size += len(raw)
            hits += 1
            found[name] = value
            if tagged is not None and "tags" in document:
                tagged.append((name, raw))
        site.hits += hits
        site.misses += misses
        site.bytes_read += size
        return found

    def drop_stale_tagged(
        self,
        found: dict[str, Any],
        tagged: list[tuple[str, bytes]],
        tokens: dict[str, bytes | None] | None,
        site: Site,
    ) -> None:
        """Drop from ``found`` the tagged hits a tag of which has another token now (``tokens``: every tag's current
        token, ``None`` when they could not be read) or was written by this context's open transaction."""
        written = uncommitted.current()
        for name, raw in tagged:
            stored = stored_tags(raw)
            if stored and (
                tokens is None
                or not written.isdisjoint(stored)
                or any(tokens.get(tag) != token for tag, token in stored.items())
            ):
                del found[name]
                site.unhit()

    def jittered(self, expiry: float | None) -> float | None:
        """Shorten each TTL by up to ``ttl_jitter`` so entries written together do not all expire together."""
        jitter = self._jitter
        return expiry if expiry is None or not jitter else expiry * (1.0 - jitter * random.random())

    def encode(self, value: object, key: str, fresh_for: float | None = None, tags: bytes | None = None) -> bytes:
        """A computed value's bytes (its size is checked by the fill: too large is returned uncached).
        ``fresh_for`` seconds from now is its logical expiry (``fail_safe``), ``tags`` the fragment of its tags'
        tokens: both for the JSON serializer only (checked when decorating)."""
        if fresh_for is None and tags is None:
            return self.serializer.encode(value, key)
        return codec.encode(value, key, None if fresh_for is None else int((time.time() + fresh_for) * 1000), tags)

    def too_large(self, payload: bytes, key: str) -> bool:
        """Whether a computed value is too large to store: it is then returned uncached, and logged."""
        if len(payload) <= self._max_bytes:
            return False
        self.failures.not_stored(key, f"{len(payload)} bytes, over max_value_bytes={self._max_bytes}")
        return True

    def payload(self, value: object, key: str, tags: bytes | None = None) -> bytes:
        """``set``'s encoding: raises rather than drop the user's own write silently."""
        if tags is not None and self.serializer is not codec.JSON:
            raise TypeError(
                f"set(..., tags=...) needs the JSON serializer (entries carry their tags), not {self.serializer!r}"
            )
        payload = self.serializer.encode(value, key) if tags is None else codec.encode(value, key, None, tags)
        if len(payload) > self._max_bytes:
            raise ValueTooLargeError(
                f"value for key {key!r} encodes to {len(payload)} bytes, over max_value_bytes="
                f"{self._max_bytes}: nothing was stored"
            )
        return payload

    def failed(self, exc: CacheUnavailableError, operation: str, key: str, strict: bool | None, site: Site) -> None:
        """Count a backend failure; raise it in strict mode (``strict=None``: the manager's setting), else log."""
        site.errors += 1
        self.failures.backend_failed(exc, operation, key, self.settings.strict if strict is None else strict)
