"""The local tier: entries kept in this process, in front of Redis, dropped the moment Redis says they changed.

A local entry is only as good as the news about it. The tier serves entries only while an invalidation
connection (:mod:`stashly.backends.layers.tracking`) is known to be alive: it extends :meth:`LocalTier.keep_alive`
on every reply from Redis, and the tier stops serving by itself when those stop. A read that will store its
result first takes a *ticket*; any invalidation of that key arriving before the result is offered voids the
ticket, so a value read just before a write can never be stored just after its invalidation went by. Concurrent
reads of one key hold tickets of one *cohort*, which an invalidation voids as a whole: any of them may store its
answer (coalesced asyncio reads overlap, and the first to return fills the tier), and none read before the
invalidation can. A cohort is forgotten when its last ticket is offered or abandoned (a failed read).

The tier also refuses hits while its invalidation connection has news it has not applied yet (see
:meth:`LocalTier.listen`): a process busy serving hits starves that connection's thread of the GIL, and the
reads it would serve stale go to Redis instead, which lets the thread run.

Entries are the bytes Redis returned: every hit is decoded afresh, so nothing a caller does to a returned
value changes what the next caller gets.

On Redis Cluster each primary has its own invalidation connection, and each entry remembers its *source*, the
node it was read from: the liveness, the news not yet applied and the suspension are each source's own
(``source=None`` is the one server), so a silent node suspends its own entries and the others are served on.
Invalidations of keys apply whatever their source (a key moved by a reshard is written on another node).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ...config import checks
from ...forks import ForkWatch
from ...sentinels import Missing

__all__ = ["LocalTier"]

HEED_EVERY = 0.001
"""Seconds between two looks at the invalidation connection for news not yet applied (see ``LocalTier.heed``)."""


class Life:
    """Until when one invalidation connection vouches for its entries (monotonic); a suspended connection's
    ``Life`` never comes back (a new one stands for the reconnected connection), so what it vouched for is dead."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until: float = -math.inf


class Cohort:
    """The tickets of one key taken since its last invalidation; the table holds it while it is current."""

    __slots__ = ("life", "live", "source")

    def __init__(self, source: str | None, life: Life) -> None:
        self.live: int = 0  # tickets neither offered nor abandoned yet
        self.source: str | None = source  # the node its reads go to (None: the one server)
        self.life: Life = life  # its connection's, when the tickets were taken


Ticket = tuple[Cohort, float]
"""A read's ticket: its cohort and when it was taken (the local deadlines count from then)."""


class Entry(NamedTuple):
    """One local entry: the stored bytes, the guard token read with them, two deadlines (monotonic), and the
    life of the invalidation connection of the node it was read from."""

    raw: bytes
    token: bytes | Missing | None  # MISSING when read without the guard (``get``): ``read`` then asks Redis
    local_deadline: float
    redis_deadline: float | None  # None: the Redis entry never expires
    life: Life


class LocalTier:
    """An in-process tier in front of Redis that stays coherent across processes (opt-in).

    >>> cache = CacheManager("redis://127.0.0.1:6379/0", local=LocalTier(max_entries=10_000, ttl=30))  # doctest: +SKIP

    Hits on hot keys then cost a dictionary lookup and a decode instead of a round trip. Coherence comes from
    Redis (``CLIENT TRACKING ... BCAST``): a write to a key, from any process, drops it here within a
    network hop. If that connection is lost, or stops answering for ``1 s``, the whole tier is dropped and
    reads go to Redis until it is back. No local entry outlives ``ttl`` or its remaining TTL in Redis.
    ``max_entries`` and ``max_bytes`` bound it (least recently used first out). A tier belongs to one manager.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The settings' own parsers: the same rules (and ConfigError, a ValueError) as the local_* settings.
        self.max_entries: int = checks.positive_int(max_entries, "LocalTier max_entries")
        self.max_bytes: int = checks.positive_int(max_bytes, "LocalTier max_bytes")
        self.ttl: float = checks.positive_float(ttl, "LocalTier ttl")
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._tickets: dict[str, Cohort] = {}
        self._bytes = 0
        self._life = Life()  # serve nothing until the invalidation connection says it is listening
        self._sources: dict[str, Life] = {}  # on Cluster: each node's own
        self._wake: Callable[[str | None], None] | None = None
        self._unapplied: Callable[[], bool] | None = None
        self._heeds: dict[str, Callable[[], bool]] = {}  # on Cluster: each node's own _unapplied
        self._heeded_until = -math.inf
        self._claimed = False
        self.hits: int = 0
        """Reads this tier answered (approximate under threads: plain counters, no lock)."""
        self.misses: int = 0
        """Reads it passed on to Redis."""
        _forks.add(self)

    def __repr__(self) -> str:
        return f"LocalTier(max_entries={self.max_entries}, max_bytes={self.max_bytes}, ttl={self.ttl})"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """The bytes held by local entries."""
        return self._bytes

    @property
    def serving(self) -> bool:
        """Whether the tier serves entries now (its invalidation connection answered within the last second; on
        Cluster, one node's at least)."""
        now = self._clock()
        return now < self._life.until or any(now < life.until for life in list(self._sources.values()))

    def _life_of(self, source: str | None) -> Life:
        if source is None:
            return self._life
        life = self._sources.get(source)
        if life is None:
            life = self._sources.setdefault(source, Life())
        return life

    # -- the hit path -------------------------------------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        """The live entry for ``key``, or ``None`` (absent, expired, or the tier is not serving)."""
        entry = self._served(key)
        if entry is None:
            self.misses += 1
        return entry

    def peek(self, key: str) -> bytes | None:
        """:meth:`lookup`'s bytes, a miss not counted (the read that follows counts it): the in-process hit path
        (:data:`~stashly.backends.base.Peek`)."""
        entry = self._served(key)
        return None if entry is None else entry.raw

    def _served(self, key: str) -> Entry | None:
        """The entry for ``key`` if the tier may serve it now (counted as a hit), else ``None``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.local_deadline or now >= entry.life.until or (now >= self._heeded_until and self._news(now)):
            return None
        self.hits += 1
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager on every hit)
            self._entries.move_to_end(key)
        except KeyError:  # invalidated this instant by the tracking thread: the entry we hold was current
            pass
        return entry

    def _news(self, now: float) -> bool:
        """Whether the invalidation connection holds news not applied yet; if not, trust it for ``HEED_EVERY``."""
        unapplied = self._unapplied
        if unapplied is not None and unapplied():
            return True
        if self._heeds and any(heard() for heard in list(self._heeds.values())):  # any node's news: keys move
            return True
        self._heeded_until = now + HEED_EVERY
        return False

    def remaining(self, entry: Entry) -> float | None:
        """The entry's remaining TTL in Redis, in seconds (``None``: never expires)."""
        return None if entry.redis_deadline is None else max(0.0, entry.redis_deadline - self._clock())

    # -- filling from Redis -------------------------------------------------------------------------------

    def ticket(self, key: str, source: str | None = None) -> Ticket | None:
        """Announce a read of ``key`` (from node ``source`` on Cluster) whose result may be stored: a ticket and
        the time, or ``None`` (not serving, or not from that node).

        Take it *before* sending the read: an invalidation that arrives while the read is in flight voids it.
        Hand every ticket back, through :meth:`offer` or, if the read failed, :meth:`abandon`.
        """
        now = self._clock()
        life = self._life_of(source)
        if now >= life.until:
            wake = self._wake
            if wake is not None:
                wake(source)  # (re)start the invalidation connection: after a fork, a close, or at first use
            return None
        with self._lock:
            cohort = self._tickets.get(key)
            if cohort is None or cohort.life is not life:
                cohort = self._tickets[key] = Cohort(source, life)
            cohort.live += 1
        return cohort, now

    def offer(
        self,
        key: str,
        ticket: Ticket,
        raw: bytes | None,
        token: bytes | Missing | None,
        ttl: float | None,
    ) -> None:
        """Store what a read returned, unless its ticket was voided (``ttl``: remaining seconds in Redis)."""
        cohort, started = ticket
        if raw is None or len(raw) > self.max_bytes:
            self.abandon(key, ticket)
            return
        redis_deadline = None if ttl is None else started + ttl
        local_deadline = started + (self.ttl if ttl is None else min(self.ttl, ttl))
        entry = Entry(raw, token, local_deadline, redis_deadline, cohort.life)
        with self._lock:
            cohort.live -= 1
            if self._tickets.get(key) is not cohort:
                return  # voided: an invalidation of the key arrived after this ticket was taken
            if cohort.live <= 0:
                del self._tickets[key]
            if self._clock() >= cohort.life.until:  # its connection was lost since, or is silent
                return
            self._discard(key)
            self._entries[key] = entry
            self._bytes += len(raw)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.raw)

    def abandon(self, key: str, ticket: Ticket) -> None:
        """Hand back the ticket of a read that stores nothing (it failed, or found no entry)."""
        cohort = ticket[0]
        with self._lock:
            cohort.live -= 1
            if cohort.live <= 0 and self._tickets.get(key) is cohort:
                del self._tickets[key]

    # -- invalidation -------------------------------------------------------------------------------------

    def invalidate(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` and void their tickets (a write here, or a message from Redis)."""
        with self._lock:
            for key in keys:
                self._tickets.pop(key, None)
                self._discard(key)

    def _discard(self, key: str) -> None:
        """Drop ``key``'s entry and its bytes; the caller holds the lock."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.raw)

    def invalidate_prefix(self, prefix: str) -> None:
        """Drop every key starting with ``prefix`` (a namespace flushed here)."""
        with self._lock:
            doomed = [key for key in (*self._entries, *self._tickets) if key.startswith(prefix)]
        self.invalidate(doomed)

    def clear(self, source: str | None = None) -> None:
        """Drop everything and void every ticket; on Cluster with ``source``, only what that node answered."""
        with self._lock:
            if source is None:
                self._entries.clear()
                self._tickets.clear()
                self._bytes = 0
                return
            for key in [key for key, entry in list(self._entries.items()) if entry.life is self._sources.get(source)]:
                self._discard(key)
            for key in [key for key, cohort in self._tickets.items() if cohort.source == source]:
                del self._tickets[key]

    # -- driven by the invalidation connection -------------------------------------------------------------

    def keep_alive(self, until: float, source: str | None = None) -> None:
        """Serve entries (of node ``source`` on Cluster) until ``until`` (monotonic), unless told again before."""
        self._life_of(source).until = until

    def suspend(self, source: str | None = None) -> None:
        """Stop serving and drop everything (on Cluster with ``source``, that node's): invalidations may have
        been missed."""
        if source is None:
            lives = [self._life, *self._sources.values()]
            self._life, self._unapplied = Life(), None
            self._sources.clear()
            self._heeds.clear()
        else:
            lives = [self._life_of(source)]
            self._heeds.pop(source, None)
        for life in lives:  # what they vouched for is dead for good: a reconnection brings a new one
            life.until = -math.inf
        self.clear(source)
        if source is not None:
            self._sources.pop(source, None)

    def heed(self, unapplied: Callable[[], bool], source: str | None = None) -> None:
        """Refuse hits whenever ``unapplied()`` says the invalidation connection has news it has not applied yet.

        Asked at most once per ``HEED_EVERY`` (a millisecond): that bounds how long this process serves an entry
        whose invalidation has reached it, even while its listener thread waits for the GIL behind a loop that
        serves only hits. The refused reads go to Redis, and their waits let that thread run. ``suspend`` forgets it.
        On Cluster each node's connection (``source``) is asked, and news on any refuses every hit.
        """
        if source is None:
            self._unapplied = unapplied
        else:
            self._heeds[source] = unapplied
        self._heeded_until = -math.inf

    def claim(self) -> None:
        """Mark the tier as one manager's; a second manager raises ``ValueError`` (one Redis per tier)."""
        if self._claimed:
            raise ValueError(f"{self!r} already belongs to a manager: give each manager its own LocalTier")
        self._claimed = True

    def on_wake(self, wake: Callable[[str | None], None] | None) -> None:
        """What to call when a read finds the tier not serving, with the node it would read from (``None``: the
        one server): the tracker starts its connection there."""
        self._wake = wake

    def _forked(self) -> None:
        # The child has none of the parent's threads (a lock held by one stays held): no invalidation connection
        # until a read wakes one.
        self._lock = threading.Lock()
        self.suspend()


_forks: ForkWatch[LocalTier] = ForkWatch(LocalTier._forked)
