"""Namespace invalidation at scale: ``flush_namespace(mode="scan")`` against ``mode="versioned"``.

    python bench/flush_namespace.py [--keys N] [--ttl S] [--json PATH]

For each mode, on a fresh private redis-server: fills a namespace of N real stashly entries (default 1,000,000,
about 100 bytes each, TTL S seconds) next to a namespace of 10,000 that must survive, flushes the first, checks
that a sample of its keys now misses and that the other is intact, then polls until the memory is reclaimed.
A background thread keeps reading the surviving namespace meanwhile and reports its slowest get.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import PrivateRedis
from stashly import CacheManager, keys
from stashly.storage import codec

Mode = Literal["scan", "versioned"]
MODES: tuple[Mode, ...] = ("scan", "versioned")
FLUSHED, KEPT = "flushed", "kept"
KEPT_KEYS, KEPT_TTL = 10_000, 3600
BATCH, SAMPLE, POLL = 10_000, 1000, 0.1
MB = 1024 * 1024
_ABSENT = object()
BEFORE, FLUSH, CHECK, RECLAIM, AFTER = range(5)  # the phases of a run, as the reader sees them


@dataclass
class Result:
    mode: Mode
    keys: int
    stored_bytes: int  # one entry as stored in Redis, envelope included
    memory_before: int  # used_memory with only the surviving namespace
    memory_filled: int
    memory_after: int  # at the end, once reclaimed
    dbsize_before: int
    dbsize_filled: int
    invalidate_ms: float
    reclaim_s: float | None  # None: not reclaimed within ttl + 60 s
    peak_mb: float
    get_max_ms_flush: float  # the slowest get on the surviving namespace overlapping the flush call
    get_max_ms_reclaim: float  # ... while waiting for the memory


def _value(i: int) -> dict[str, object]:
    return {"id": i, "name": f"item {i:07d}", "pad": "x" * 20}


def _fill(manager: CacheManager, client: redis.Redis, namespace: str, count: int, ttl_ms: int) -> None:
    """Plain ``SET ... PX`` of the library's own envelope, one round trip per batch instead of one per entry."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, BATCH):
        for i in range(start, min(start + BATCH, count)):
            key = manager.key(f"item:{i}", namespace)
            pipe.set(key, codec.encode(_value(i), key), px=ttl_ms)
        pipe.execute()


def _check_format(manager: CacheManager, client: redis.Redis) -> int:
    """Fail unless ``manager.set`` stores exactly what ``_fill`` writes; the stored size."""
    key = manager.key("probe", FLUSHED)
    manager.set("probe", _value(0), ttl=60, namespace=FLUSHED)
    stored, expected = client.get(key), codec.encode(_value(0), key)
    client.delete(key)
    if stored != expected:
        raise SystemExit(f"stashly's stored format changed: {stored!r} is not {expected!r}")
    return len(expected)


def _check_entries(manager: CacheManager, namespace: str, indexes: list[int], present: bool) -> None:
    for i in indexes:
        found = manager.get(f"item:{i}", _ABSENT, namespace=namespace)
        if found != (_value(i) if present else _ABSENT):
            state = "missing or wrong" if present else "still readable"
            raise SystemExit(f"{namespace}:item:{i} is {state} ({found!r})")


def _check_kept(manager: CacheManager) -> None:
    names = [f"item:{i}" for i in range(KEPT_KEYS)]
    found = {}
    for start in range(0, KEPT_KEYS, 1000):
        found.update(manager.get_many(names[start : start + 1000], namespace=KEPT))
    if found != {f"item:{i}": _value(i) for i in range(KEPT_KEYS)}:
        raise SystemExit(f"the surviving namespace lost entries: {KEPT_KEYS - len(found)} of {KEPT_KEYS} missing")


class Reader(threading.Thread):
    """Gets the surviving namespace in a loop; the slowest get of each phase."""

    def __init__(self, manager: CacheManager) -> None:
        super().__init__(daemon=True)
        self.manager, self.phase, self.misses = manager, BEFORE, 0
        self.slowest = [0.0] * (AFTER + 1)
        self._halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self._halt.is_set():
            first, started = self.phase, time.perf_counter()
            self.misses += self.manager.get(f"item:{i % KEPT_KEYS}", namespace=KEPT) is None
            elapsed, last = time.perf_counter() - started, self.phase
            # A get overlapping the flush counts for it; any other get spanning two phases counts for neither,
            # so that its wait for the GIL behind our own checks is not blamed on Redis.
            for phase in [first] if first == last else [FLUSH] if first <= FLUSH <= last else []:
                self.slowest[phase] = max(self.slowest[phase], elapsed)
            i += 1

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:
            self.join()


class Poller(threading.Thread):
    """``(perf_counter, used_memory, DBSIZE)`` every 100 ms until back at ``target`` (set later) or the cap."""

    def __init__(self, client: redis.Redis, cap: float) -> None:
        super().__init__(daemon=True)
        self.client, self.deadline = client, time.perf_counter() + cap
        self.target: tuple[int, int] | None = None
        self.samples: list[tuple[float, int, int]] = []

    def run(self) -> None:
        while (at := time.perf_counter()) <= self.deadline:
            self.samples.append((at, _used_memory(self.client), self.client.dbsize()))
            if self.reached() is not None:
                return
            time.sleep(max(0.0, at + POLL - time.perf_counter()))

    def reached(self) -> float | None:
        """When a sample was first within 10% of the target memory, or at the target DBSIZE."""
        if self.target is None:
            return None
        memory, dbsize = self.target
        return next((at for at, used, size in self.samples if used <= memory * 1.1 or size <= dbsize), None)


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _run(mode: Mode, count: int, ttl: float) -> Result:
    with PrivateRedis() as server:
        client = server.admin
        manager = CacheManager(url=server.url, strict=True)
        reader = Reader(CacheManager(url=server.url, strict=True))
        try:
            _fill(manager, client, KEPT, KEPT_KEYS, KEPT_TTL * 1000)
            stored = _check_format(manager, client)
            if manager.count(KEPT) != KEPT_KEYS:  # also opens the connection the flush uses, outside its timing
                raise SystemExit("the surviving namespace was not filled")
            before = _used_memory(client), client.dbsize()
            _fill(manager, client, FLUSHED, count, int(ttl * 1000))
            filled = _used_memory(client), client.dbsize()
            reader.start()
            invalidated, reclaimed = _flush(manager, client, reader, mode, count, ttl, before)
            _check_kept(manager)
            stats, memory = client.info("stats"), client.info("memory")
        finally:
            reader.stop()
            reader.manager.close()
            manager.close()
    if reader.misses or int(stats["evicted_keys"]):
        raise SystemExit(f"{reader.misses} surviving gets missed, {stats['evicted_keys']} keys evicted")
    return Result(
        mode, count, stored, before[0], filled[0], int(memory["used_memory"]), before[1], filled[1],
        invalidated * 1000, reclaimed, int(memory["used_memory_peak"]) / MB,
        reader.slowest[FLUSH] * 1000, reader.slowest[RECLAIM] * 1000,
    )  # fmt: skip


def _flush(
    manager: CacheManager,
    client: redis.Redis,
    reader: Reader,
    mode: Mode,
    count: int,
    ttl: float,
    before: tuple[int, int],
) -> tuple[float, float | None]:
    """Seconds to invalidate, then to get back near ``before`` (used_memory, DBSIZE), both from the flush call."""
    sample = random.sample(range(count), min(SAMPLE, count))
    _check_entries(manager, FLUSHED, sample, present=True)
    poller = Poller(client, ttl + 60)
    poller.start()
    reader.phase, started = FLUSH, time.perf_counter()
    manager.flush_namespace(FLUSHED, mode=mode)
    invalidated = time.perf_counter() - started
    reader.phase = CHECK
    _check_entries(manager, FLUSHED, sample, present=False)
    _check_kept(manager)
    reader.phase = RECLAIM
    prefix = manager.settings.prefix
    counters = client.exists(keys.guard_key(prefix, FLUSHED), f"{prefix}::gen:{FLUSHED}")  # the flush's own keys
    poller.target = before[0], before[1] + counters
    poller.join()
    reader.phase = AFTER
    reached = poller.reached()
    return invalidated, None if reached is None else reached - started


def _table(results: list[Result], ttl: float) -> str:
    head = ("mode", "keys", "invalidate ms", "reclaimed s", "peak MB", "fill MB", "max get ms (flush/reclaim)")
    rows = [head]
    for r in results:
        reclaim = f"{r.reclaim_s:.1f}" if r.reclaim_s is not None else f"not reclaimed within {ttl + 60:g} s"
        filled = f"{(r.memory_filled - r.memory_before) / MB:.0f}"
        gets = f"{r.get_max_ms_flush:.2f} / {r.get_max_ms_reclaim:.2f}"
        rows.append((r.mode, f"{r.keys:,}", f"{r.invalidate_ms:,.1f}", reclaim, f"{r.peak_mb:.0f}", filled, gets))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000, help="entries in the flushed namespace")
    parser.add_argument("--ttl", type=float, default=20.0, help="their TTL in seconds (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.keys < 1 or args.ttl <= 0:
        parser.error("--keys and --ttl must be positive")
    began, results = time.perf_counter(), []
    for mode in MODES:
        print(f"{mode}: filling {args.keys:,} keys, flushing, waiting for the memory…", file=sys.stderr, flush=True)
        results.append(_run(mode, args.keys, args.ttl))
    print(f"one entry stored: {results[0].stored_bytes} bytes; TTL {args.ttl:g} s; kept namespace {KEPT_KEYS:,} keys")
    print(_table(results, args.ttl))
    ratio = results[0].invalidate_ms / results[1].invalidate_ms
    print(f"versioned invalidates {ratio:,.0f}× faster than scan")
    print(f"total {time.perf_counter() - began:.0f} s", file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"ttl": args.ttl, "kept_keys": KEPT_KEYS, "ratio": ratio, "modes": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
