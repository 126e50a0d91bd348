"""`make chaos`, the fail-safe phase: a cached function whose source fails, then turns slow, under sync and async load.

Two functions read a source of truth shared by the processes (a version number the driver bumps while the source
is healthy; each value is stamped with the version and the moment it was computed):

- ``main``: ``ttl=1`` s, ``fail_safe=30`` s, ``soft_timeout=0.05`` s, ``fail_safe_throttle`` left at its default;
- ``bounded``: the same with ``fail_safe=1`` s, shorter than the failing window, so its bound is reached.

The phases (:data:`PHASES`, seconds): ``healthy`` (every key is computed and stored); ``failing`` (the source
raises); ``healthy`` again, long enough for the throttle to run out (``fresh again``: per key, from the end of the
failure to the first call that returns a value computed after it); ``slow`` (the source takes 1 s: a call must not
wait past ``soft_timeout`` when a last good value exists; the p99 call latency is printed next to the slowness);
``healthy``.

Must be 0 (else the run exits 1): ``main``'s exceptions for keys that had a good value before the call started,
``wrong values`` (a value the source never gave: another key's, a version from the future, a broken checksum),
keys of ``main`` not fresh again, and ``bounded``'s values served older than ``ttl + fail_safe``. ``bounded``
raising once past its bound is expected (and counted).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

from stashly import Cached, CacheManager

KEYS = 20
BOUNDED_KEYS = 5
TTL, FAIL_SAFE, BOUND, SOFT, SLOW = 1.0, 30.0, 1.0, 0.05, 1.0
THROTTLE = 5.0  # fail_safe_throttle's default: after a failed recomputation, the last good value is fresh this long
SLACK = 0.25  # seconds of clock and scheduling slack allowed on the bound
PHASES = [("healthy", 2.0), ("failing", 3.0), ("healthy", THROTTLE + TTL + 2.0), ("slow", 3.0), ("healthy", 1.0)]
_FAILING, _SLOW = 1, 3  # phase indexes
THINK = 0.0005  # a caller's own work between two calls

Call = tuple[str, int, int, float, float, Any]  # (function, phase, key, started, seconds, value or None)


class Source:
    """The source of truth, shared across processes: the current version and the phase (failing or slow)."""

    def __init__(self, version: Any, phase: Any) -> None:
        self.version, self.phase = version, phase

    def value(self, k: int) -> dict[str, Any]:
        v = self.version.value
        return {"k": k, "v": v, "sum": k * 100_003 + v, "t": time.monotonic()}

    def read(self, k: int) -> dict[str, Any]:
        phase = self.phase.value
        if phase == _FAILING:
            raise ConnectionError("the source is down")
        if phase == _SLOW:
            time.sleep(SLOW)
        return self.value(k)

    async def aread(self, k: int) -> dict[str, Any]:
        phase = self.phase.value
        if phase == _FAILING:
            raise ConnectionError("the source is down")
        if phase == _SLOW:
            await asyncio.sleep(SLOW)
        return self.value(k)

    def wrong(self, k: int, value: Any, now: float) -> bool:
        """Whether ``value`` is one the source never gave for ``k``."""
        try:
            v, t = value["v"], value["t"]
            return bool(value["k"] != k or value["sum"] != k * 100_003 + v or not 0 <= v <= self.version.value) or (
                t > now
            )
        except (KeyError, TypeError):
            return True


class Tally:
    """What one process saw, per call; wrong values are counted as they come (against the version then)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.calls: list[Call] = []
        self.wrong = 0
        self.lock = threading.Lock()

    def record(self, function: str, k: int, phase: int, started: float, value: Any) -> None:
        now = time.monotonic()
        wrong = value is not None and self.source.wrong(k, value, now)
        with self.lock:
            self.calls.append((function, phase, k, started, now - started, value))
            self.wrong += wrong


def _functions(manager: CacheManager, source: Source, mode: str) -> dict[str, Any]:
    """``main`` and ``bounded`` (two names, so two sets of entries) reading the source, sync or async."""
    cache = Cached("chaos-fail-safe", ttl=TTL, manager=manager)
    if mode == "sync":

        def main(k: int) -> dict[str, Any]:
            return source.read(k)

        def bounded(k: int) -> dict[str, Any]:
            return source.read(k)

        functions: dict[str, Any] = {"main": main, "bounded": bounded}
    else:

        async def amain(k: int) -> dict[str, Any]:
            return await source.aread(k)

        async def abounded(k: int) -> dict[str, Any]:
            return await source.aread(k)

        functions = {"main": amain, "bounded": abounded}
    return {
        "main": cache.cached(key="main:{k}", fail_safe=FAIL_SAFE, soft_timeout=SOFT)(functions["main"]),
        "bounded": cache.cached(key="bounded:{k}", fail_safe=BOUND, soft_timeout=SOFT)(functions["bounded"]),
    }


def _pick(rng: random.Random) -> tuple[str, int]:
    """Three calls in four to ``main``, one to ``bounded``."""
    if rng.random() < 0.75:
        return "main", rng.randrange(KEYS)
    return "bounded", rng.randrange(BOUNDED_KEYS)


def run_sync(url: str, source: Source, stop: Any, threads: int, out: Any) -> None:
    tally = Tally(source)
    most_fill_threads = 0
    serves: dict[int, int] = {}  # stats().stale_serves, last seen in each phase
    with CacheManager(url, namespace="chaos") as manager:
        functions = _functions(manager, source, "sync")

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                (function, k), phase, started = _pick(rng), source.phase.value, time.monotonic()
                try:
                    value: Any = functions[function](k)
                except ConnectionError:
                    value = None
                tally.record(function, k, phase, started, value)
                time.sleep(THINK)

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        while not stop.wait(0.01):  # "never more threads than computations in flight": watch them
            fills = sum(thread.name == "stashly-fill" for thread in threading.enumerate())
            most_fill_threads = max(most_fill_threads, fills)
            serves[source.phase.value] = manager.stats().stale_serves
        for thread in pool:
            thread.join()
    out.put((f"sync, {threads} threads", tally.calls, tally.wrong, serves, most_fill_threads))


def run_async(url: str, source: Source, stop: Any, tasks: int, out: Any) -> None:
    tally = Tally(source)

    async def main() -> None:
        async with CacheManager(url, namespace="chaos") as manager:
            functions = _functions(manager, source, "async")

            async def worker(seed: int) -> None:
                rng = random.Random(seed)
                while not stop.is_set():
                    (function, k), phase, started = _pick(rng), source.phase.value, time.monotonic()
                    try:
                        value: Any = await functions[function](k)
                    except ConnectionError:
                        value = None
                    tally.record(function, k, phase, started, value)
                    await asyncio.sleep(THINK)

            async def watch() -> None:
                while not stop.is_set():
                    serves[source.phase.value] = manager.stats().stale_serves
                    await asyncio.sleep(0.01)

            await asyncio.gather(watch(), *(worker(1000 + i) for i in range(tasks)))

    serves: dict[int, int] = {}  # stats().stale_serves, last seen in each phase
    asyncio.run(main())
    out.put((f"async, {tasks} tasks", tally.calls, tally.wrong, serves, None))


def drive(version: Any, phase: Any) -> dict[int, tuple[float, float]]:
    """Step through :data:`PHASES`, bumping the version every 50 ms while healthy; each phase's (start, end)."""
    spans: dict[int, tuple[float, float]] = {}
    for index, (name, seconds) in enumerate(PHASES):
        phase.value = index
        start = time.monotonic()
        while time.monotonic() < start + seconds:
            if name == "healthy":
                with version.get_lock():
                    version.value += 1  # the data changes while the source answers
            time.sleep(0.05)
        spans[index] = (start, time.monotonic())
    return spans


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _good_since(results: list[tuple[Any, ...]]) -> dict[tuple[str, int], float]:
    """Per (function, key), when a caller in any process first had a good value: the cache held one from then."""
    since: dict[tuple[str, int], float] = {}
    for _, calls, *_ in results:
        for function, _, k, started, seconds, value in calls:
            if value is not None:
                done = started + seconds
                since[(function, k)] = min(done, since.get((function, k), done))
    return since


def report(results: list[tuple[Any, ...]], spans: dict[int, tuple[float, float]]) -> bool:
    """Print the figures; whether every must-be-0 figure is 0."""
    fail_start, fail_end = spans[_FAILING]
    since = _good_since(results)
    ok = True
    print(
        f"\nstashly chaos, fail-safe: phases {', '.join(f'{name} {s:g}s' for name, s in PHASES)}; "
        f"main: ttl={TTL:g} s, fail_safe={FAIL_SAFE:g} s, soft_timeout={SOFT:g} s, fail_safe_throttle default "
        f"({THROTTLE:g} s); bounded: fail_safe={BOUND:g} s; the source fails for {fail_end - fail_start:.1f} s, "
        f"then takes {SLOW:g} s per call"
    )
    for mode, calls, wrong, serves, fill_threads in sorted(results):
        stale = [serves.get(index, 0) - serves.get(index - 1, 0) if index else serves.get(0, 0) for index in range(5)]
        main = [c for c in calls if c[0] == "main"]
        bounded = [c for c in calls if c[0] == "bounded"]
        window = [c for c in main if c[1] == _FAILING]
        had = [c for c in main if c[5] is None and since.get(("main", c[2]), float("inf")) < c[3]]
        never = sum(1 for c in main if c[5] is None) - len(had)
        past_ttl = sum(1 for c in window if c[5] is not None and c[3] + c[4] - c[5]["t"] > TTL)
        back: dict[int, float] = {}
        for _, _, k, started, _, value in sorted(main, key=lambda c: c[3]):
            if k not in back and value is not None and value["t"] >= fail_end:
                back[k] = started - fail_end
        delays = sorted(back.values())
        not_back = KEYS - len(back)
        slow = [c[4] * 1000 for c in main if c[1] == _SLOW]
        too_old = [c for c in bounded if c[5] is not None and c[3] + c[4] - c[5]["t"] > TTL + BOUND + SLACK]
        bounded_exceptions = sum(1 for c in bounded if c[5] is None)
        print(f"\n== {mode}")
        print(f"calls                                         {len(calls):>8}")
        print(f"calls while the source fails (main)           {len(window):>8}")
        print(f"  answered past their ttl by fail-safe        {past_ttl:>8}")
        print(f"exceptions, key had a good value (main)       {len(had):>8}   (must be 0)")
        print(f"exceptions, no good value yet (main)          {never:>8}")
        by_phase = " / ".join(f"{name} {n}" for (name, _), n in zip(PHASES, stale, strict=True))
        print(f"fail-safe serves (stats().stale_serves)       {sum(stale):>8}   ({by_phase}; both functions)")
        print(f"wrong values                                  {wrong:>8}   (must be 0)")
        shown = (
            f"median {_percentile(delays, 0.5) * 1000:.0f} ms, last key {delays[-1] * 1000:.0f} ms"
            if delays
            else "never"
        )
        print(f"fresh again after the failure (main, per key) {shown}")
        print(f"  keys never fresh again                      {not_back:>8}   (must be 0)")
        print(
            f"slow source, main p50/p99/max ms              {_percentile(slow, 0.5):.0f}/{_percentile(slow, 0.99):.0f}/"
            f"{max(slow, default=float('nan')):.0f}  (the source takes {SLOW * 1000:.0f} ms; soft_timeout "
            f"{SOFT * 1000:.0f} ms)"
        )
        if fill_threads is not None:
            print(f"fill threads at most (soft_timeout workers)   {fill_threads:>8}   (keys: {KEYS + BOUNDED_KEYS})")
        print(f"bounded: calls {len(bounded)}, exceptions past its bound {bounded_exceptions} (expected)")
        oldest = max((c[3] + c[4] - c[5]["t"] for c in too_old), default=0.0)
        print(
            f"bounded: served older than ttl+fail_safe     {len(too_old):>8}   (must be 0; oldest {oldest:.1f} s, "
            f"bound {TTL + BOUND:g} s)"
        )
        ok &= not had and wrong == 0 and not_back == 0 and not too_old
    return ok
