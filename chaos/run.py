"""`make chaos`: cached workloads against a Redis that is paused, killed and restarted while they run.

Two worker processes share one private redis-server on loopback: one calls a sync cached function from
several threads, the other an async one from many asyncio tasks (separate processes, as in a deployment,
so neither measures the other's hold on the GIL). The parent steps through the faults and prints
operations, exceptions that reached callers (must be 0), wrong results (must be 0), p50/p99/max call
latency while Redis is healthy and during each outage, and the time to the first hit after Redis returns.
Then the invalidation phase (:mod:`chaos.invalidations`): one process updates and invalidates during a pause
and a kill, others keep reading; it prints ``invalidations lost`` and ``stale reads after an invalidation``
(both must be 0). The run is bounded in time (about 35 s) and stops by itself; it exits non-zero when a
must-be-0 figure is not 0.

Run it from the repository root as ``python -m chaos.run`` (``make chaos`` does): its redis-server comes from the
test harness, ``tests.harness``, importable from the root.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import statistics
import sys
import threading
import time
from typing import Any

from stashly import Cached, CacheManager

from . import fail_safe, invalidations

try:
    from tests.harness.server import RedisServer
except ModuleNotFoundError as missing:
    if missing.name != "tests":
        raise
    # Run as a file (python chaos/run.py): the repository root, where the harness lives, is not on sys.path.
    raise SystemExit("run it from the repository root as: python -m chaos.run") from missing

KEYS = 200
PHASES = ["healthy", "outage: paused", "healthy", "outage: killed", "healthy", "restart", "healthy"]
# Each simulated request does a little work of its own between cache calls, as a web handler would.
THINK = 0.0005

Call = tuple[float, int, float, bool]  # (monotonic start, phase index, seconds, hit)


def expected(k: int) -> dict[str, int]:
    return {"k": k, "square": k * k}


class Tally:
    """What the callers saw. Each computation stamps its result with a serial number and notes when it ran,
    so a call knows it was answered without computing when it got a result computed before it started (from
    Redis, or from a concurrent caller's computation through single-flight)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.exceptions = 0
        self.wrong = 0
        self.lock = threading.Lock()
        self.computed_at: dict[int, float] = {}

    def compute(self, k: int) -> dict[str, int]:
        with self.lock:
            serial = len(self.computed_at)
            self.computed_at[serial] = time.monotonic()
        return {**expected(k), "serial": serial}

    def record(self, k: int, started: float, phase: int, result: dict[str, int]) -> None:
        hit = self.computed_at.get(result.get("serial", -1), float("inf")) < started
        with self.lock:
            self.calls.append((started, phase, time.monotonic() - started, hit))
            self.wrong += {"k": result.get("k"), "square": result.get("square")} != expected(k)


def run_sync(url: str, phase: Any, stop: Any, threads: int, out: Any) -> None:
    tally = Tally()
    manager = CacheManager(url=url, namespace="chaos-sync", default_ttl=30)

    @Cached(manager=manager).cached
    def square(k: int) -> dict[str, int]:
        return tally.compute(k)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            k = rng.randrange(KEYS)
            started = time.monotonic()
            try:
                result = square(k)
            except Exception:
                with tally.lock:
                    tally.exceptions += 1
                continue
            tally.record(k, started, phase.value, result)
            time.sleep(THINK)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(("sync", f"{threads} threads", tally.calls, tally.exceptions, tally.wrong, manager.stats().errors))


def run_async(url: str, phase: Any, stop: Any, tasks: int, out: Any) -> None:
    tally = Tally()
    manager = CacheManager(url=url, namespace="chaos-async", default_ttl=30)

    @Cached(manager=manager).cached
    async def square(k: int) -> dict[str, int]:
        return tally.compute(k)

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            k = rng.randrange(KEYS)
            started = time.monotonic()
            try:
                result = await square(k)
            except Exception:
                tally.exceptions += 1
                continue
            tally.record(k, started, phase.value, result)
            await asyncio.sleep(THINK)

    async def main() -> None:
        await asyncio.gather(*(worker(1000 + i) for i in range(tasks)))

    asyncio.run(main())
    out.put(("async", f"{tasks} asyncio tasks", tally.calls, tally.exceptions, tally.wrong, manager.stats().errors))


def drive(server: RedisServer, phase: Any, seconds: float, phases: list[str]) -> list[tuple[str, float]]:
    """Step through ``phases``; the moments Redis came back."""
    returns: list[tuple[str, float]] = []
    for index, name in enumerate(phases):
        if name == "outage: paused":
            server.pause()
        elif name == "outage: killed":
            server.kill()
        elif name == "restart":
            server.restart()
            returns.append(("a quick restart (data lost)", time.monotonic()))
        elif phases[index - 1] == "outage: paused":
            server.resume()
            returns.append(("SIGCONT", time.monotonic()))
        elif phases[index - 1] == "outage: killed":
            server.start()
            returns.append(("a restart after 'killed' (data lost)", time.monotonic()))
        phase.value = index
        time.sleep(seconds)
    return returns


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(result: tuple[Any, ...], returns: list[tuple[str, float]]) -> bool:
    mode, shape, calls, exceptions, wrong, errors = result
    hits = sum(1 for call in calls if call[3])
    print(f"\n== {mode}: {shape}")
    print(f"operations                 {len(calls):>10}")
    print(f"exceptions to callers      {exceptions:>10}   (must be 0)")
    print(f"wrong results              {wrong:>10}   (must be 0)")
    print(f"backend errors absorbed    {errors:>10}")
    print(f"answered without computing {hits / max(1, len(calls)):>10.1%}")
    print(f"{'phase':<18}{'calls':>9}{'cached':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name in ["healthy", "outage: paused", "outage: killed", "restart"]:
        in_phase = [c for c in calls if PHASES[c[1]] == name]
        latencies = [c[2] * 1000 for c in in_phase]
        median = statistics.median(latencies) if latencies else float("nan")
        ratio = sum(c[3] for c in in_phase) / max(1, len(in_phase))
        print(
            f"{name:<18}{len(latencies):>9}{ratio:>8.1%}{median:>10.3f}{percentile(latencies, 0.99):>10.3f}"
            f"{max(latencies, default=float('nan')):>10.3f}"
        )
    for label, at in returns:
        first = min((c[0] for c in calls if c[3] and c[0] >= at), default=None)
        shown = "never" if first is None else f"{(first - at) * 1000:.0f} ms"
        print(f"first cached answer after {label:<36} {shown}")
    return exceptions == 0 and wrong == 0


def workload(server: RedisServer, args: argparse.Namespace) -> bool:
    """The cached workloads through PHASES; whether no caller saw an exception or a wrong result."""
    context = mp.get_context("fork")
    phase, stop, out = context.Value("i", 0), context.Event(), context.Queue()
    workers = [
        context.Process(target=run_sync, args=(server.url, phase, stop, args.threads, out)),
        context.Process(target=run_async, args=(server.url, phase, stop, args.tasks, out)),
    ]
    for worker in workers:
        worker.start()
    returns = drive(server, phase, args.seconds, PHASES)
    stop.set()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    print(
        f"stashly chaos: phases of {args.seconds:g}s: {', '.join(PHASES)}; default settings "
        "(0.25 s timeouts, breaker after 5 failures, probe every 1 s)"
    )
    return all([report(result, returns) for result in sorted(results)])


def invalidating(server: RedisServer, args: argparse.Namespace) -> bool:
    """Invalidations during each outage, read by other processes; whether none was lost or served stale."""
    context = mp.get_context("fork")
    phase, stop, out = context.Value("i", 0), context.Event(), context.Queue()
    shared = invalidations.Shared.create(context, phase, stop)
    workers = [
        context.Process(target=invalidations.run_invalidator, args=(server.url, shared, 2, out)),
        context.Process(target=invalidations.run_reader, args=(server.url, shared, "sync", 4, out)),
        context.Process(target=invalidations.run_reader, args=(server.url, shared, "async", 20, out)),
    ]
    for worker in workers:
        worker.start()
    returns = drive(server, phase, args.invalidation_seconds, invalidations.PHASES)
    stop.set()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    print(
        f"\nstashly chaos, invalidations: phases of {args.invalidation_seconds:g}s: "
        f"{', '.join(invalidations.PHASES)}; default settings"
    )
    return invalidations.report(results, returns)


def failing_source(server: RedisServer, args: argparse.Namespace) -> bool:
    """A fail-safe function whose source fails, then turns slow, under sync and async load in two processes."""
    context = mp.get_context("fork")
    version, phase, stop, out = context.Value("i", 0), context.Value("i", 0), context.Event(), context.Queue()
    source = fail_safe.Source(version, phase)
    workers = [
        context.Process(target=fail_safe.run_sync, args=(server.url, source, stop, 4, out)),
        context.Process(target=fail_safe.run_async, args=(server.url, source, stop, 20, out)),
    ]
    for worker in workers:
        worker.start()
    spans = fail_safe.drive(version, phase)
    stop.set()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    return fail_safe.report(results, spans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each of the 7 workload phases")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument(
        "--invalidation-seconds", type=float, default=2.5, help="length of each of the 5 invalidation phases"
    )
    parser.add_argument(
        "--only", choices=["workload", "invalidations", "fail-safe"], help="run one part (default: all three)"
    )
    args = parser.parse_args()

    ok = True
    with RedisServer() as server:
        if args.only in (None, "workload"):
            ok &= workload(server, args)
        if args.only in (None, "invalidations"):
            ok &= invalidating(server, args)
        if args.only in (None, "fail-safe"):
            ok &= failing_source(server, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
