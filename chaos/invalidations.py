"""`make chaos`, the invalidation phase: updates and invalidations during each outage, read by other processes.

One invalidating process updates the source of truth (shared memory, standing for the database) and invalidates
the cached copies while Redis is healthy, paused and killed: ``remove`` / ``aremove`` of one entry, and
``flush_namespace`` / ``aflush_namespace`` (``scan`` and ``versioned``) after updating several. It reads too (its
event loop after each invalidation, and threads). Two reader processes, each with its own manager (one sync with
threads, one async with tasks), keep reading the same entries through ``@cached`` functions.

What is checked, per read, against the floors read before the call starts:

- ``stale reads after an invalidation``: in any process, a read that starts once an invalidation reached Redis
  (at once, or by the journal's replay, which the invalidating process sees as ``pending_invalidations == 0``)
  returns an older version. Must be 0.
- ``stale reads in the invalidating process``: there, a read that starts once the invalidation call returned
  returns an older version, whether Redis heard of it or not. Must be 0, at any time.
- ``invalidations lost``: each time the replay completes (and at the end) every entry in Redis is audited by a
  separate manager; an entry older than the last invalidation of its item is lost. Must be 0.

Reads in other processes that return an old value after the update but before the replay reached Redis are
counted too, as what the guarantee allows (Redis had not heard yet).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stashly import Cached, CacheManager

KEYS = 50
REMOVED = 40
"""Items ``0..REMOVED-1`` live in :data:`NS` and are invalidated one by one (``remove``); the others live in
:data:`FLUSHED` and are invalidated by flushing that namespace. Two namespaces, so a pending flush (which
subsumes its namespace's pending keys) leaves the per-key journal entries to replay."""
NS, FLUSHED = "chaos-inv", "chaos-inv-flush"
TEMPLATE = "item:{k}"
"""One key template for every ``@cached`` function: sync and async share the entries, and the invalidating
process removes one with ``manager.remove(f"item:{k}")``."""
PHASES = ["healthy", "outage: paused", "healthy", "outage: killed", "healthy"]
OPERATIONS = ["remove", "aremove"] * 6 + ["flush scan"] + ["remove", "aremove"] * 6 + ["aflush versioned"]
BATCH = 5  # items of FLUSHED updated before one flush
STEP = 0.01  # seconds between two invalidations
THINK = 0.001  # a reader's pause between two reads
SETTLE = 15.0  # seconds the invalidating process gives its last replay after the run
AUDIT = {"socket_timeout": 5.0, "connect_timeout": 5.0}  # the auditor waits rather than miss an entry

_source: Any = None  # this process's view of the source of truth (set in each worker process)


def load(k: int) -> dict[str, int]:
    """The item as the source of truth has it now."""
    return {"k": k, "version": _source[k]}


async def aload(k: int) -> dict[str, int]:
    return load(k)


def namespace_of(k: int) -> str:
    return NS if k < REMOVED else FLUSHED


def cached_items(manager: CacheManager, body: Callable[[int], Any]) -> Callable[[int], Any]:
    """``body`` cached in both namespaces, called in the namespace of its item (a coroutine if ``body`` is one)."""
    by_namespace = {
        namespace: Cached(namespace, manager=manager).cached(key=TEMPLATE)(body) for namespace in (NS, FLUSHED)
    }
    return lambda k: by_namespace[namespace_of(k)](k)


@dataclass
class Shared:
    """What the processes share: versions by item, in shared memory, and the run's phase and stop flag."""

    source: Any
    """The source of truth: each item's current version."""
    issued: Any
    """The version whose invalidation call returned (journaled or delivered)."""
    delivered: Any
    """The version whose invalidation reached Redis (published when nothing is pending)."""
    phase: Any
    stop: Any

    @classmethod
    def create(cls, context: Any, phase: Any, stop: Any) -> Shared:
        arrays = [context.RawArray("q", KEYS) for _ in range(3)]
        return cls(*arrays, phase=phase, stop=stop)


@dataclass
class Reads:
    """What the reads of one process returned, against the floors read before each started."""

    reads: int = 0
    stale: int = 0
    """Older than an invalidation that had reached Redis."""
    own_stale: int = 0
    """Older than an invalidation whose call had returned (only meaningful in the invalidating process)."""
    before_replay: int = 0
    """Older than an invalidation Redis had not heard of yet (allowed in other processes)."""
    wrong: int = 0
    exceptions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, k: int, delivered: int, issued: int, result: Any) -> None:
        version = result.get("version", -1) if isinstance(result, dict) else -1
        with self.lock:
            self.reads += 1
            self.wrong += not isinstance(result, dict) or result.get("k") != k
            self.stale += version < delivered
            self.own_stale += version < issued
            self.before_replay += delivered <= version < issued

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {name: getattr(self, name) for name in ("reads", "stale", "own_stale", "before_replay", "wrong")} | {
                "exceptions": self.exceptions
            }


def _read(reads: Reads, shared: Shared, fn: Any, k: int) -> None:
    delivered, issued = shared.delivered[k], shared.issued[k]  # before the call: the floors it must meet
    try:
        result = fn(k)
    except Exception:
        with reads.lock:
            reads.exceptions += 1
        return
    reads.check(k, delivered, issued, result)


async def _aread(reads: Reads, shared: Shared, fn: Any, k: int) -> None:
    delivered, issued = shared.delivered[k], shared.issued[k]
    try:
        result = await fn(k)
    except Exception:
        reads.exceptions += 1
        return
    reads.check(k, delivered, issued, result)


def _reader_threads(reads: Reads, shared: Shared, fn: Any, count: int, seed: int) -> list[threading.Thread]:
    def worker(rng: random.Random) -> None:
        while not shared.stop.is_set():
            _read(reads, shared, fn, rng.randrange(KEYS))
            time.sleep(THINK)

    threads = [threading.Thread(target=worker, args=(random.Random(seed + i),)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def run_reader(url: str, shared: Shared, mode: str, width: int, out: Any) -> None:
    """A reader process: its own manager, ``width`` threads (sync) or tasks (async) reading random items."""
    global _source
    _source = shared.source
    reads = Reads()
    with CacheManager(url=url, namespace=NS, default_ttl=60) as manager:
        if mode == "sync":
            for thread in _reader_threads(reads, shared, cached_items(manager, load), width, 100):
                thread.join()
        else:
            aitem = cached_items(manager, aload)

            async def worker(rng: random.Random) -> None:
                while not shared.stop.is_set():
                    await _aread(reads, shared, aitem, rng.randrange(KEYS))
                    await asyncio.sleep(THINK)

            async def main() -> None:
                await asyncio.gather(*(worker(random.Random(200 + i)) for i in range(width)))

            asyncio.run(main())
    shape = f"{width} threads" if mode == "sync" else f"{width} asyncio tasks"
    out.put(("reader", f"reader ({mode}, {shape})", reads.counts()))


@dataclass
class Invalidations:
    """What the invalidating process did and found."""

    issued: int = 0
    during_outages: int = 0
    exceptions: int = 0
    audits: int = 0
    lost: int = 0
    audit_errors: int = 0
    settled_at: list[float] = field(default_factory=list)
    """When, after each outage, nothing was pending any more (the replay completed)."""


class Invalidator:
    """The invalidating process's loop: update the source, invalidate, read back, publish what was delivered."""

    def __init__(self, manager: CacheManager, auditor: CacheManager, shared: Shared, reads: Reads) -> None:
        self.manager, self.auditor, self.shared, self.reads = manager, auditor, shared, reads
        self.aitem = cached_items(manager, aload)
        self.done = Invalidations()
        self._in_outage = False
        self._returned = False  # Redis came back and its replay has not been audited yet

    async def run(self) -> None:
        rng = random.Random(7)
        step = 0
        while not self.shared.stop.is_set():
            await self.step(OPERATIONS[step % len(OPERATIONS)], rng)
            step += 1
            await asyncio.sleep(STEP)
        await self.settle()

    async def step(self, operation: str, rng: random.Random) -> None:
        shared = self.shared
        single = operation.endswith("remove")
        items = [rng.randrange(REMOVED)] if single else rng.sample(range(REMOVED, KEYS), BATCH)
        for k in items:
            shared.source[k] += 1  # the database changed: now the cached copies must go
        versions = [shared.source[k] for k in items]
        outage = PHASES[shared.phase.value].startswith("outage")  # the phase is set once Redis is back
        self._returned |= self._in_outage and not outage
        self._in_outage = outage
        self.done.during_outages += outage
        try:
            await self.invalidate(operation, items[0])
        except Exception:
            self.done.exceptions += 1
        self.done.issued += 1
        for k, version in zip(items, versions, strict=True):
            shared.issued[k] = version  # the call returned: from now on this process must not see older
        for k in items:
            await _aread(self.reads, shared, self.aitem, k)
        self.publish()

    async def invalidate(self, operation: str, k: int) -> None:
        key, manager = TEMPLATE.format(k=k), self.manager
        if operation == "remove":
            manager.remove(key, namespace=NS)
        elif operation == "aremove":
            await manager.aremove(key, namespace=NS)
        elif operation == "flush scan":
            manager.flush_namespace(FLUSHED, mode="scan")
        else:
            await manager.aflush_namespace(FLUSHED, mode="versioned")

    def publish(self) -> None:
        """Nothing pending: every invalidation issued so far reached Redis. Once per outage, audit Redis then."""
        if self.manager.stats().pending_invalidations:
            return
        self.shared.delivered[:] = self.shared.issued[:]
        if self._returned:
            self._returned = False
            self.done.settled_at.append(time.monotonic())
            self.audit()

    def audit(self) -> None:
        """Count the entries Redis still holds from before their item's last invalidation (``auditor``: a manager
        of its own, no journal, generous timeouts; ``get`` reads an entry without computing anything)."""
        errors = self.auditor.stats().errors
        for k in range(KEYS):
            entry = self.auditor.get(TEMPLATE.format(k=k), namespace=namespace_of(k))
            if isinstance(entry, dict) and entry.get("version", -1) < self.shared.issued[k]:
                self.done.lost += 1
        self.done.audits += 1
        self.done.audit_errors += self.auditor.stats().errors - errors

    async def settle(self) -> None:
        """After the run: read until the replay went through (or ``SETTLE`` passed), then audit once more."""
        deadline = time.monotonic() + SETTLE
        while self.manager.stats().pending_invalidations and time.monotonic() < deadline:
            await _aread(self.reads, self.shared, self.aitem, 0)  # an operation that reaches Redis replays first
            await asyncio.sleep(0.05)
        self.publish()
        self.audit()


def run_invalidator(url: str, shared: Shared, threads: int, out: Any) -> None:
    """The invalidating process: the loop above, plus ``threads`` reader threads on a sync ``@cached`` function."""
    global _source
    _source = shared.source
    reads = Reads()
    with (
        CacheManager(url=url, namespace=NS, default_ttl=60) as manager,
        CacheManager(url=url, namespace=NS, default_ttl=60, **AUDIT) as auditor,
    ):
        invalidator = Invalidator(manager, auditor, shared, reads)
        item = cached_items(manager, load)
        pool = _reader_threads(reads, shared, item, threads, 300)
        asyncio.run(invalidator.run())
        for thread in pool:
            thread.join()
        stats = manager.stats()
    journal = {
        "pending": stats.pending_invalidations,
        "replayed": stats.replayed_invalidations,
        "escalated": stats.escalated_invalidations,
        "dropped": stats.dropped_invalidations,
    }
    out.put(
        (
            "invalidator",
            f"invalidating process (event loop + {threads} threads)",
            reads.counts(),
            invalidator.done,
            journal,
        )
    )


def report(results: list[tuple[Any, ...]], returns: list[tuple[str, float]]) -> bool:
    """Print the phase's figures; whether every must-be-0 is 0 (and the outages were met by invalidations)."""
    (_, shape, own, done, journal) = next(r for r in results if r[0] == "invalidator")
    readers = sorted((r for r in results if r[0] == "reader"), key=lambda r: str(r[1]))
    stale_after = own["stale"] + sum(r[2]["stale"] for r in readers)
    exceptions = own["exceptions"] + sum(r[2]["exceptions"] for r in readers) + done.exceptions
    wrong = own["wrong"] + sum(r[2]["wrong"] for r in readers)
    print(f"\n== invalidations during outages: {shape}; {', '.join(r[1] for r in readers)}")
    print(f"invalidations issued                 {done.issued:>8}   (remove, aremove, flush_namespace scan/versioned)")
    print(f"  while Redis was down               {done.during_outages:>8}")
    print(f"replayed from the journal            {journal['replayed']:>8}   (deduplicated per key)")
    print(f"escalated / dropped at close         {journal['escalated']:>4} / {journal['dropped']}")
    print(f"still pending at the end             {journal['pending']:>8}   (must be 0)")
    print(f"outages replayed (pending -> 0)      {len(done.settled_at):>8}   (each followed by an audit of Redis)")
    print(f"audits of every entry / read errors  {done.audits:>4} / {done.audit_errors}   (must be 0 errors)")
    print(f"invalidations lost                   {done.lost:>8}   (must be 0)")
    print(f"stale reads after an invalidation    {stale_after:>8}   (must be 0; any process, once Redis heard)")
    print(f"stale reads in the invalidating process {own['own_stale']:>5}   (must be 0; at any time)")
    print(f"exceptions to callers / wrong items  {exceptions:>4} / {wrong}   (must be 0)")
    print(f"{'reads':<37}{'checked':>8}{'old value before the replay (allowed)':>40}")
    for name, counts in [("invalidating process", own), *((r[1], r[2]) for r in readers)]:
        print(f"  {name:<35}{counts['reads']:>8}{counts['before_replay']:>40}")
    for label, at in returns:
        settled = min((t for t in done.settled_at if t >= at), default=None)
        shown = "never" if settled is None else f"{(settled - at) * 1000:.0f} ms"
        print(f"replay completed after {label:<39} {shown}")
    exercised = done.during_outages > 0 and journal["replayed"] > 0
    if not exercised:
        print("no invalidation was journaled and replayed: the phase proved nothing (must be some)")
    must_be_zero = (done.lost, stale_after, own["own_stale"], journal["pending"], exceptions, wrong, done.audit_errors)
    return exercised and not any(must_be_zero)
