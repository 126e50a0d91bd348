"""The engine (``AsyncEngine``): every cache operation of a manager, failing open, over its backend stack.

Written once, for asyncio, in ``engine_async.py``; ``engine_sync.py`` is generated from it by
``scripts/unasync.py`` (``make unasync``). What the two share without I/O lives in :class:`~.core.EngineCore`.

A backend failure is counted and logged and the operation answers as if the cache were empty (``MISSING``, a
failed :class:`~.core.Lookup`, ``False``, ``0``), unless strict mode, where it raises
:class:`~stashly.CacheUnavailableError`. An invalidation (or a ``set``) that fails is kept in the manager's
:class:`~.journal.Journal` and replayed before the next operation that reaches the backend; meanwhile reads of
what it covers bypass the shared entry.
"""

from __future__ import annotations

import typing
from time import perf_counter_ns
from typing import Any

from .. import keys
from ..backends.base import AsyncBackend, Lock
from ..config.settings import Settings
from ..errors import CacheUnavailableError
from ..failures import FailurePolicy
from ..sentinels import MISSING
from ..stats import SAMPLED, Site
from ..storage import codec
from ..storage.codec import Serializer, Stale
from ..tags import core as tags
from ..tags import uncommitted
from .core import FAILED, EngineCore, Hooks, Lookup, Token, stored_tags
from .journal import Journal
from .replay_async import new_tag_epoch, replay

__all__ = ["AsyncEngine"]


class AsyncEngine(EngineCore):
    """Reads, fills, locks and invalidations of one manager, through its async backend stack."""

    def __init__(
        self,
        settings: Settings,
        serializer: Serializer,
        failures: FailurePolicy,
        hooks: Hooks,
        journal: Journal,
        backend: AsyncBackend,
    ) -> None:
        super().__init__(settings, serializer, failures, hooks, journal)
        self.backend = backend
        self.hits_in_process(backend)

    async def replay(self) -> CacheUnavailableError | None:
        """Deliver the pending invalidations (:mod:`.replay_async`); the first refusal, if any (``None`` also when
        another thread or task is replaying)."""
        delivered, failure = await replay(self.journal, self.backend, self.settings.prefix)
        if delivered:
            self.failures.replayed(delivered, len(self.journal))
        return failure

    async def _replayed(self, key: str, strict: bool | None, site: Site) -> bool:
        """Replay what is pending; ``False`` when the backend as a whole refused (handled as a failure of ``key``'s
        read). One Cluster node's refusal leaves the other nodes' reads alone: the keys still pending are kept off
        the backend by :meth:`~.journal.Journal.blocks`, whoever asks."""
        failure = await self.replay()
        if failure is not None and failure.node is None:
            self.failed(failure, "replay", key, strict, site)
            return False
        return True

    async def _settled(self, key: str, strict: bool | None, site: Site) -> bool:
        """Replay what is pending; whether ``key`` may be read from the backend now (not pending, backend up)."""
        return await self._replayed(key, strict, site) and not self.journal.blocks(key)

    async def load(self, key: str, reader: codec.Reader, site: Site) -> Any:
        """The value under ``key``, or MISSING."""
        if self.journal.active and not await self._settled(key, None, site):
            return MISSING  # an invalidation of it is pending: the shared entry may be stale
        started = 0 if site.hits & SAMPLED else perf_counter_ns()  # one hit in 16 is timed
        try:
            raw = await self.backend.get(key)
        except CacheUnavailableError as exc:
            self.failed(exc, "get", key, None, site)
            return MISSING
        value = self.decode(raw, key, reader, site)
        if value is MISSING or type(value) is Stale:
            return MISSING
        tagged = raw is not None and raw.startswith(codec.TAGGED, codec.TAGS_AT)
        if tagged and not await self.tags_current(raw, key, site):  # type: ignore[arg-type]  # not None: a hit
            return MISSING
        if started:
            site.hit_ns[(perf_counter_ns() - started).bit_length()] += 1
        return value

    async def load_many(self, names: list[str], full: list[str], reader: codec.Reader, site: Site) -> dict[str, Any]:
        """``{name: value}`` for the entries that exist among the full keys, in one round trip."""
        if self.journal.active:
            if not await self._replayed(full[0] if full else "", None, site):
                return {}
            if self.journal.active:  # still pending (another replayer is at it): leave those keys out
                names, full = self._unblocked(names, full)
        try:
            raws = await self.backend.get_many(full) if full else []
        except CacheUnavailableError as exc:
            self.failed(exc, "get_many", full[0] if full else "", None, site)
            return {}
        tagged: list[tuple[str, bytes]] = []
        found = self.decode_many(names, full, raws, reader, site, tagged)
        if tagged:  # every tag of every tagged hit in one more read
            every = sorted({tag for _, raw in tagged for tag in stored_tags(raw)})
            tag_keys = [keys.tag_key(self.settings.prefix, tag) for tag in every]
            tokens = await self.read_tokens(tag_keys, site, None) if every else []
            current = None if tokens is None else dict(zip(every, tokens, strict=True))
            self.drop_stale_tagged(found, tagged, current, site)
        return found

    async def tags_current(self, raw: bytes, key: str, site: Site) -> bool:
        """Whether every tag of the entry in ``raw`` still has the token it was stored with (else: a miss)."""
        stored = stored_tags(raw)  # none: '"tags":' was part of the value, an untagged entry
        names = tuple(stored)
        if not names:
            return True
        if not uncommitted.current().isdisjoint(names):
            return False  # read-your-writes: written by this context's open transaction
        tokens = await self.tag_tokens([keys.tag_key(self.settings.prefix, name) for name in names], site, None)
        if tokens is not None and tokens == [stored[name] for name in names]:
            return True
        site.unhit()  # a tag of it was invalidated
        return False

    async def tag_tokens(
        self, tag_keys: list[str], site: Site, strict: bool | None, create: bool = False
    ) -> list[bytes] | None:
        """The current tokens under ``tag_keys``, in order, new ones drawn for absent keys when ``create`` (a fill
        about to compute); ``None`` when one is absent (not ``create``), its invalidation is pending, or the
        backend failed: a miss, and a computation that must not be stored."""
        found = await self.read_tokens(tag_keys, site, strict)
        if found is None:
            return None
        if create:
            return await self.draw_tokens(tag_keys, found, site, strict)
        return None if None in found else typing.cast(list[bytes], found)

    async def read_tokens(self, tag_keys: list[str], site: Site, strict: bool | None) -> list[bytes | None] | None:
        """The tokens under ``tag_keys`` (``None`` for an absent one); ``None`` when one's invalidation is pending
        or the backend failed."""
        journal = self.journal
        if journal.active and not (
            await self._replayed(tag_keys[0], strict, site) and not any(journal.blocks(k) for k in tag_keys)
        ):
            return None
        try:
            return await self.backend.get_many(tag_keys)
        except CacheUnavailableError as exc:
            self.failed(exc, "get (tags)", tag_keys[0], strict, site)
            return None

    async def draw_tokens(
        self, tag_keys: list[str], found: list[bytes | None], site: Site, strict: bool | None
    ) -> list[bytes] | None:
        """``found`` (the tokens just read under ``tag_keys``) with a new token drawn and stored for each absent one
        (first use, or invalidated since); ``None`` when the backend failed."""
        drawn = list(found)
        try:
            for i, token in enumerate(drawn):
                if token is None:  # whoever draws first sets it; the others, in any process, get that one
                    drawn[i] = await self.backend.draw(tag_keys[i], tags.new_token(), tags.TAG_TTL)
        except CacheUnavailableError as exc:
            self.failed(exc, "set (tags)", tag_keys[0], strict, site)
            return None
        return typing.cast(list[bytes], drawn)

    async def delete_tags(self, names: tuple[str, ...], site: Site, strict: bool | None = None) -> int:
        """Drop the tokens of the tags ``names``: every entry stored under one of them becomes a miss everywhere.
        The number that were in use; the rest journaled when the backend is down."""
        tag_keys = [keys.tag_key(self.settings.prefix, name) for name in names]
        site.tag_invalidations += len(tag_keys)
        if self.journal.active:
            await self.replay()
        removed = 0
        for done, tag_key in enumerate(tag_keys):
            try:
                if not done:
                    await new_tag_epoch(self.backend, self.settings.prefix)
                removed += await self.backend.delete(tag_key)
            except CacheUnavailableError as exc:
                for pending in tag_keys[done:]:
                    self.journal.record_tag(pending)
                self.failed(exc, "invalidate_tags", tag_key, strict, site)
                break
        return removed

    async def lookup(
        self, key: str, guard: str, reader: codec.Reader, strict: bool, site: Site, with_ttl: bool = False
    ) -> Lookup:
        """The entry, and the guard token a fill for this key must present (MISSING if the read failed).

        While an invalidation of ``key`` (or its namespace) is pending, the entry is not read: a miss whose
        computation is not stored.
        """
        if self.journal.active and not await self._settled(key, strict, site):
            return FAILED
        started = 0 if site.hits & SAMPLED else perf_counter_ns()  # one hit in 16 is timed
        try:
            read = await self.backend.read(key, guard, with_ttl)
        except CacheUnavailableError as exc:
            self.failed(exc, "get", key, strict, site)
            return FAILED
        return self.looked_up(read, key, reader, site, started)

    async def lookup_tagged(
        self,
        key: str,
        guard: str,
        reader: codec.Reader,
        strict: bool,
        site: Site,
        with_ttl: bool,
        tag_keys: list[str],
    ) -> tuple[Lookup, list[bytes | None]] | None:
        """:meth:`lookup`, and the tokens under ``tag_keys``, in the same round trip where the backend can;
        ``None`` when the entry or a tag has an invalidation pending, or the read failed: the call bypasses the
        cache."""
        journal = self.journal
        if journal.active and not (await self._settled(key, strict, site) and not any(map(journal.blocks, tag_keys))):
            return None
        started = 0 if site.hits & SAMPLED else perf_counter_ns()
        try:
            read, tokens = await self.backend.read_with(key, guard, with_ttl, tag_keys)
        except CacheUnavailableError as exc:
            self.failed(exc, "get", key, strict, site)
            return None
        return self.looked_up(read, key, reader, site, started), tokens

    async def fill(
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
        """Store a computed value for ``expiry`` seconds (as given: the caller jitters it) unless an invalidation
        happened since ``token`` was read (or ``lock`` was lost)."""
        if token is MISSING:
            return  # the read before the computation failed: no proof the value is still current
        if self.journal.active and self.journal.blocks(key):
            return  # invalidated since (the backend has not heard yet): the value may predate it
        if self.too_large(payload, key):
            return
        try:
            stored = await self.backend.fill(key, payload, expiry, guard, token, lock)
        except CacheUnavailableError as exc:
            self.failed(exc, "set", key, strict, site)
        else:
            site.stores += stored
            site.bytes_written += len(payload) if stored else 0

    async def store(self, key: str, payload: bytes, expiry: float | None, site: Site) -> None:
        """``set``: store ``payload`` (already jittered ``expiry``), unguarded.

        A write that fails is journaled as an invalidation of ``key``: the old entry must not outlive it.
        """
        journal = self.journal
        if journal.active:
            await self.replay()  # what was invalidated before this write reaches the backend before it
        try:
            await self.backend.set(key, payload, expiry)
        except CacheUnavailableError as exc:
            journal.record_key(key, keys.guard_of(key))
            self.failed(exc, "set", key, None, site)
        else:
            site.stores += 1
            site.bytes_written += len(payload)
            if journal.active and journal.blocks(key):  # an older invalidation is still pending: it wins
                journal.record_key(key, keys.guard_of(key))

    async def store_tagged(
        self, key: str, value: object, expiry: float | None, names: tuple[str, ...], site: Site
    ) -> None:
        """``set(..., tags=...)``: store ``value`` filed under the tags ``names``. When their tokens cannot be
        read (backend down, or an invalidation of one pending) the write is journaled as an invalidation of ``key``,
        like any failed ``set``: the old entry must not outlive it."""
        tag_keys = [keys.tag_key(self.settings.prefix, name) for name in names]
        tokens = await self.tag_tokens(tag_keys, site, None, create=True)
        if tokens is None:
            self.journal.record_key(key, keys.guard_of(key))
            return
        payload = self.payload(value, key, tags.fragment(dict(zip(names, tokens, strict=True))))
        await self.store(key, payload, expiry, site)

    async def acquire(self, lock_key: str, owner: bytes, lease: float, site: Site, strict: bool | None) -> bool | None:
        """Take a stampede lock: ``True`` if taken, ``False`` if another holds it, ``None`` if the backend failed.

        A failure (a timeout, or a refusal such as ``NOPERM``) raises in strict mode; otherwise it is logged and
        counted, and the caller computes without the lock (its store still fenced by the guard token).
        """
        try:
            return await self.backend.acquire(lock_key, owner, lease)
        except CacheUnavailableError as exc:
            self.failed(exc, "lock", lock_key, strict, site)
            return None

    async def release(self, lock_key: str, owner: bytes, site: Site) -> None:
        """Free a stampede lock if still ours; a failure is only logged (the lease runs out by itself)."""
        try:
            await self.backend.release(lock_key, owner)
        except CacheUnavailableError as exc:
            self.failed(exc, "unlock", lock_key, False, site)

    async def delete(self, key: str, guard: str, site: Site, strict: bool | None = None) -> bool:
        """Drop ``key`` and bump ``guard``; whether something was removed. ``False`` also when the backend is
        down: the invalidation is then journaled and replayed as soon as it answers."""
        site.invalidations += 1
        if self.journal.active:
            await self.replay()
        try:
            return await self.backend.delete(key, guard)
        except CacheUnavailableError as exc:
            self.journal.record_key(key, guard)
            self.failed(exc, "remove", key, strict, site)
            return False

    async def delete_namespace(self, head: str, guard: str, site: Site) -> int:
        """Bump ``guard``, then remove every key starting with ``head``; the number removed (0 and journaled
        when the backend is down)."""
        site.invalidations += 1
        if self.journal.active:
            await self.replay()
        try:
            return await self.backend.delete_prefix(head, guard)
        except CacheUnavailableError as exc:
            self.journal.record_namespace(head, guard, "scan")
            self.failed(exc, "flush_namespace", head, None, site)
            return 0

    async def retire_namespace(self, head: str, guard: str, site: Site) -> None:
        """Make every entry under ``head`` unreachable at once (a new generation); journaled if the backend is down."""
        site.invalidations += 1
        if self.journal.active:
            await self.replay()
        try:
            await self.backend.retire_prefix(head, guard)
        except CacheUnavailableError as exc:
            self.journal.record_namespace(head, guard, "versioned")
            self.failed(exc, "flush_namespace", head, None, site)

    async def count_namespace(self, head: str, site: Site) -> int:
        """How many keys start with ``head``; 0 if the backend fails."""
        try:
            return await self.backend.count_prefix(head)
        except CacheUnavailableError as exc:
            self.failed(exc, "count", head, None, site)
            return 0

    async def close(self) -> None:
        """Release the backend's connections (it reconnects if used again), after a last attempt to deliver
        the pending invalidations; what could not be delivered is logged by key description and forgotten."""
        if self.journal.active:
            await self.replay()
            if self.journal.active:
                self.failures.not_delivered([pending.target for pending in self.journal.clear()])
        await self.backend.close()

    def _unblocked(self, names: list[str], full: list[str]) -> tuple[list[str], list[str]]:
        """The names and keys of a batch whose invalidation is not pending (those are left out: misses)."""
        kept = [(name, key) for name, key in zip(names, full, strict=True) if not self.journal.blocks(key)]
        return [name for name, _ in kept], [key for _, key in kept]
