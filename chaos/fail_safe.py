"""`make chaos`, the fail-safe phase: a cached function whose source fails, then turns slow, under sync and async load.

The function (``ttl=0.4`` s, ``fail_safe=30`` s, ``soft_timeout=0.05`` s) reads a source of truth shared by the
processes: a version number the driver bumps while the source is healthy. The phases:

- ``healthy``: every key is computed and stored;
- ``failing``: the source raises. A call for a key that had a good value must get that value, not the exception
  (``exceptions to callers`` must be 0 for such keys); expired entries are served from their fail-safe copies;
- ``healthy``: fresh values are back (``fresh again after``: from the end of the failure to the first call that
  returns the source's current version);
- ``slow``: the source takes 1 s; a call must not wait for it past ``soft_timeout`` when a last good value exists
  (p99 call latency is printed next to the slowness); the slow computations finish in the background and store;
- ``healthy``.

Every value returned must be one the source gave (its version at most the current one): ``wrong values`` must be 0.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

from stashly import Cached, CacheManager

KEYS = 20
TTL, FAIL_SAFE, SOFT, SLOW = 0.4, 30.0, 0.05, 1.0
PHASES = ["healthy", "failing", "healthy", "slow", "healthy"]
_FAILING, _SLOW = 1, 3  # phase indexes


class Source:
    """The source of truth, shared across processes: the current version and the phase (failing or slow)."""

    def __init__(self, version: Any, phase: Any) -> None:
        self.version, self.phase = version, phase

    def read(self, k: int) -> dict[str, int]:
        phase = self.phase.value
        if phase == _FAILING:
            raise ConnectionError("the source is down")
        if phase == _SLOW:
            time.sleep(SLOW)
        return {"k": k, "v": self.version.value}


class Tally:
    """What one process saw: per call (phase, key, started, seconds, version or None for an exception)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls: list[tuple[int, int, float, float, int | None]] = []
        self.wrong = 0
        self.lock = threading.Lock()

    def record(self, source: Source, k: int, phase: int, started: float, result: Any) -> None:
        seconds = time.monotonic() - started
        version = None
        if isinstance(result, dict):
            version = result["v"]
            if result["k"] != k or not 0 <= version <= source.version.value:
                self.wrong += 1
        with self.lock:
            self.calls.append((phase, k, started, seconds, version))


def _cached(manager: CacheManager, function: Any) -> Any:
    cache = Cached("chaos-fail-safe", ttl=TTL, manager=manager)
    return cache.cached(fail_safe=FAIL_SAFE, soft_timeout=SOFT)(function)


def run_sync(url: str, source: Source, stop: Any, threads: int, out: Any) -> None:
    tally = Tally(f"sync, {threads} threads")
    with CacheManager(url, namespace="chaos") as manager:

        def lookup(k: int) -> dict[str, int]:
            return source.read(k)

        cached = _cached(manager, lookup)

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                k, phase, started = rng.randrange(KEYS), source.phase.value, time.monotonic()
                try:
                    result: Any = cached(k)
                except ConnectionError:
                    result = None
                tally.record(source, k, phase, started, result)

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        out.put((tally.mode, tally.calls, tally.wrong, manager.stats().stale_serves))


def run_async(url: str, source: Source, stop: Any, tasks: int, out: Any) -> None:
    tally = Tally(f"async, {tasks} tasks")

    async def main() -> int:
        async with CacheManager(url, namespace="chaos") as manager:

            async def lookup(k: int) -> dict[str, int]:
                if source.phase.value == _SLOW:
                    await asyncio.sleep(SLOW)
                    return {"k": k, "v": source.version.value}
                return source.read(k)

            cached = _cached(manager, lookup)

            async def worker(seed: int) -> None:
                rng = random.Random(seed)
                while not stop.is_set():
                    k, phase, started = rng.randrange(KEYS), source.phase.value, time.monotonic()
                    try:
                        result: Any = await cached(k)
                    except ConnectionError:
                        result = None
                    tally.record(source, k, phase, started, result)

            await asyncio.gather(*(worker(i) for i in range(tasks)))
            return manager.stats().stale_serves

    stale = asyncio.run(main())
    out.put((tally.mode, tally.calls, tally.wrong, stale))


def report(results: list[tuple[Any, ...]], ends: list[tuple[int, float, int]]) -> bool:
    """Print the figures; whether every must-be-0 figure is 0. ``ends``: (phase, monotonic end, version then)."""
    failing_end = next(end for phase, end, _ in ends if phase == _FAILING)
    version_at = next(version for phase, _, version in ends if phase == _FAILING)
    ok = True
    print(f"\nstashly chaos, fail-safe: ttl={TTL} s, fail_safe={FAIL_SAFE:g} s, soft_timeout={SOFT} s, slow={SLOW} s")
    print(
        f"{'workload':<22} {'calls':>8} {'exc (had value)':>16} {'exc (never had)':>16} {'stale serves':>13} "
        f"{'wrong':>6} {'fresh again':>12} {'slow p99':>9}"
    )
    for mode, calls, wrong, stale in sorted(results):
        good: set[int] = set()
        exceptions_with = exceptions_without = 0
        slow_latencies = []
        fresh_again = None
        for phase, k, started, seconds, version in sorted(calls, key=lambda call: call[2]):
            if version is None:
                if k in good:
                    exceptions_with += 1
                else:
                    exceptions_without += 1
            else:
                good.add(k)
            if phase == _SLOW:
                slow_latencies.append(seconds)
            if fresh_again is None and started >= failing_end and version is not None and version >= version_at:
                fresh_again = started - failing_end
        slow_latencies.sort()
        p99 = slow_latencies[int(0.99 * (len(slow_latencies) - 1))] if slow_latencies else 0.0
        fresh = "never" if fresh_again is None else f"{fresh_again * 1000:.0f} ms"
        print(
            f"{mode:<22} {len(calls):>8} {exceptions_with:>16} {exceptions_without:>16} {stale:>13} "
            f"{wrong:>6} {fresh:>12} {p99 * 1000:>6.0f} ms"
        )
        ok &= exceptions_with == 0 and wrong == 0 and fresh_again is not None and stale > 0
    print(
        "must be 0: exceptions for keys that had a good value, wrong values; stale serves must be > 0; "
        f"slow p99 is to compare with the source's {SLOW * 1000:.0f} ms"
    )
    return ok
