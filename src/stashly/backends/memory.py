"""The in-process backend: a bounded LRU of bytes with per-entry expiry, safe under threads and asyncio."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ..forks import ForkWatch
from .base import Lock, Peek, Read

__all__ = ["EXACT_COUNT", "SWEEP", "AsyncMemoryBackend", "MemoryStore"]

SWEEP = 1024
"""Entries a namespace flush removes per hold of the store's lock."""
EXACT_COUNT = 20_000
"""Above this many entries, a namespace's count is what it holds, entries past their TTL that no read has met yet
included: checking each would hold the lock (and every reader) for about a microsecond per entry."""


class MemoryStore:
    """A synchronous :class:`~stashly.backends.base.Backend` kept in this process.

    Entries are bytes, so nothing a caller does to a returned value can change what the next caller reads.
    Beyond ``max_entries`` the least recently used entry is evicted; expired entries are dropped when met.
    Guards live apart from the entries (one small counter per namespace) and are never evicted. The clock is
    injectable so tests never sleep.

    Each namespace's keys are also indexed by its head (``<prefix>:<namespace>:``), so that flushing a namespace
    finds its keys without a scan of all of them, and removes them :data:`SWEEP` at a time: readers wait for one
    batch at most (about a millisecond), not for the whole namespace. What is written into the namespace while
    the flush runs stays.

    A process forked after the store was made keeps a copy of its entries, no longer shared with the parent; its
    first operation calls ``on_forked`` with the pid of the process that made the store.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        on_forked: Callable[[int], None] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()
        self._heads: dict[str, set[str]] = {}  # namespace head -> its keys (see _head)
        self._guards: dict[str, int] = {}
        self._locks: dict[str, tuple[bytes, float]] = {}  # lock key -> (owner, deadline)
        self._creator = os.getpid()
        self._on_forked = on_forked
        self._forked = False  # set in a forked child until its first operation
        _forks.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def _after_fork(self) -> None:
        # A parent's thread may have held the lock at the fork: the child has the lock, not the thread.
        self._lock = threading.Lock()
        self._forked = self._on_forked is not None

    def _first_use_after_fork(self) -> None:
        self._forked = False
        if self._on_forked is not None:
            self._on_forked(self._creator)

    def get(self, key: str) -> bytes | None:
        if self._forked:
            self._first_use_after_fork()
        with self._lock:
            return self._live(key, self._clock())[0]

    def peek(self, key: str) -> bytes | None:
        """The live entry for ``key`` without the lock (the hit path; ``None``: ask :meth:`get`, which also drops an
        expired entry). Each dictionary operation is atomic, and entries are immutable tuples: a read that races a
        write sees the old entry or the new one. What walks the entries walks a snapshot of them."""
        entry = self._entries.get(key)
        if entry is None or self._forked:
            return None
        deadline = entry[0]
        if deadline is not None and deadline <= self._clock():
            return None
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager on every hit)
            self._entries.move_to_end(key)
        except KeyError:  # removed this instant: the entry we hold was current when read
            pass
        return entry[1]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        with self._lock:
            return [self._live(key, now)[0] for key in keys]

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        with self._lock:
            value, deadline = self._live(key, now)
            token = None if guard is None else self._guards.get(guard)
        ttl = None if deadline is None or not with_ttl else deadline - now
        return value, None if token is None else b"%d" % token, ttl

    def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        with self._lock:  # one lock for the entry and the extra keys: one consistent view, as one MGET gives
            value, deadline = self._live(key, now)
            token = None if guard is None else self._guards.get(guard)
            others = [self._live(other, now)[0] for other in extra]
        ttl = None if deadline is None or not with_ttl else deadline - now
        return (value, None if token is None else b"%d" % token, ttl), others

    def _live(self, key: str, now: float) -> tuple[bytes | None, float | None]:
        """The entry and its deadline, dropping it if expired; the caller holds the lock."""
        entry = self._entries.get(key)
        if entry is None:
            return None, None
        deadline, value = entry
        if deadline is not None and deadline <= now:
            del self._entries[key]
            self._unindex(key)
            return None, None
        self._entries.move_to_end(key)
        return value, deadline

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        if self._forked:
            self._first_use_after_fork()
        deadline = _deadline(self._clock(), ttl)
        with self._lock:
            self._put(key, value, deadline)

    def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        with self._lock:
            found = self._live(key, now)[0]
            if found is not None:
                return found
            self._put(key, value, _deadline(now, ttl))
            return value

    def _put(self, key: str, value: bytes, deadline: float | None) -> None:
        self._entries[key] = (deadline, value)
        self._entries.move_to_end(key)
        head = _head(key)
        if head is not None:  # always, even if present: a flush under way keeps what is in its namespace's new set
            found = self._heads.get(head)
            if found is None:
                found = self._heads[head] = set()
            found.add(key)
        while len(self._entries) > self.max_entries:
            self._unindex(self._entries.popitem(last=False)[0])

    def _unindex(self, key: str) -> None:
        """Forget ``key`` in its namespace's index; the caller holds the lock and has removed its entry."""
        head = _head(key)
        if head is None:
            return
        found = self._heads.get(head)
        if found is not None:
            found.discard(key)
            if not found:
                del self._heads[head]

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        deadline = _deadline(now, ttl)
        with self._lock:
            current = self._guards.get(guard)
            if (None if current is None else b"%d" % current) != token:
                return False
            if lock is not None:
                if self._owner(lock[0], now) != lock[1]:
                    return False
                del self._locks[lock[0]]
            self._put(key, value, deadline)
            return True

    def _owner(self, lock_key: str, now: float) -> bytes | None:
        held = self._locks.get(lock_key)
        if held is None:
            return None
        if held[1] <= now:  # a lease that ran out: forget it, or a holder slower than its lease leaks the entry
            del self._locks[lock_key]
            return None
        return held[0]

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        with self._lock:
            if self._owner(lock_key, now) is not None:
                return False
            self._locks[lock_key] = (owner, now + lease)
            return True

    def release(self, lock_key: str, owner: bytes) -> None:
        if self._forked:
            self._first_use_after_fork()
        with self._lock:
            if self._owner(lock_key, self._clock()) == owner:
                del self._locks[lock_key]

    def delete(self, key: str, guard: str | None = None) -> bool:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        with self._lock:
            live = self._remove(now, [key])
            self._bump(guard)
        return bool(live)

    def _bump(self, guard: str | None) -> None:
        if guard is not None:
            self._guards[guard] = self._guards.get(guard, 0) + 1

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        with self._lock:
            self._bump(guard)  # first: a fill that read the guard before the flush stores nothing
            if _head(prefix) != prefix:  # not a namespace: a scan of every key
                return self._remove(now, [key for key in list(self._entries) if key.startswith(prefix)])
            doomed = self._heads.pop(prefix, None) or set()  # from now on, the namespace's writes go to a new set
        live = 0
        while doomed:  # popped batch by batch (one list of them all would hold the GIL for tens of ms)
            batch = [doomed.pop() for _ in range(min(SWEEP, len(doomed)))]
            with self._lock:
                fresh = self._heads.get(prefix, ())  # written since the flush began: theirs, not the flush's
                live += self._remove(now, [key for key in batch if key not in fresh])
            time.sleep(0)  # hand the GIL over: a reader waits for one batch at most
        return live

    def _remove(self, now: float, keys: list[str]) -> int:
        """Remove ``keys`` (some may be gone already); how many were live. The caller holds the lock."""
        live = 0
        for key in keys:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._unindex(key)
                live += entry[0] is None or entry[0] > now
        return live

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        self.delete_prefix(prefix, guard)

    def count_prefix(self, prefix: str) -> int:
        if self._forked:
            self._first_use_after_fork()
        now = self._clock()
        entries = self._entries
        with self._lock:
            if _head(prefix) == prefix:  # a namespace: only its own keys, by the index
                keys = self._heads.get(prefix, ())
                if len(keys) > EXACT_COUNT:  # what it holds, without a walk that would stall every reader
                    return len(keys)
                found = (entries.get(key) for key in keys)
                return sum(1 for entry in found if entry is not None and (entry[0] is None or entry[0] > now))
            return sum(
                1
                for key, (deadline, _) in list(entries.items())  # a snapshot: peek reorders without the lock
                if key.startswith(prefix) and (deadline is None or deadline > now)
            )

    def close(self) -> None:
        """Nothing to release: the entries stay (a closed manager's memory cache is still the same cache)."""


_forks: ForkWatch[MemoryStore] = ForkWatch(MemoryStore._after_fork)


def _head(key: str) -> str | None:
    """The namespace head a key starts with, ``<prefix>:<namespace>:`` (neither holds a ``:``), or ``None``."""
    first = key.find(":")
    second = key.find(":", first + 1) if first >= 0 else -1
    return None if second < 0 else key[: second + 1]


def _deadline(now: float, ttl: float | None) -> float | None:
    if ttl is None:
        return None
    if not 0 < ttl < math.inf:  # also refuses NaN; the same rule as the Redis backend
        raise ValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    return now + ttl


class AsyncMemoryBackend:
    """The asyncio face of a :class:`MemoryStore`: same entries, no executor (each operation is microseconds)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.peek: Peek = store.peek  # the store's own: no await, no frame of ours

    async def get(self, key: str) -> bytes | None:
        return self.store.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.store.get_many(keys)

    async def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        return self.store.draw(key, value, ttl)

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        return self.store.read(key, guard, with_ttl)

    async def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        return self.store.read_with(key, guard, with_ttl, extra)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.store.set(key, value, ttl)

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        return self.store.fill(key, value, ttl, guard, token, lock)

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        return self.store.acquire(lock_key, owner, lease)

    async def release(self, lock_key: str, owner: bytes) -> None:
        self.store.release(lock_key, owner)

    async def delete(self, key: str, guard: str | None = None) -> bool:
        return self.store.delete(key, guard)

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        return self.store.delete_prefix(prefix, guard)

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        self.store.retire_prefix(prefix, guard)

    async def count_prefix(self, prefix: str) -> int:
        return self.store.count_prefix(prefix)

    async def close(self) -> None:
        self.store.close()
