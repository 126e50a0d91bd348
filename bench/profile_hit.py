"""Profile stashly's decorator HIT: where does a hit spend its time?

    python bench/profile_hit.py [--async] [--memory] [--model] [--size 300B|10KB] [--seconds S]
                                [--baseline] [--tagged] [--cprofile] [--top N]

Starts a private redis-server (as the bench does), decorates a function with ``Cached(...).cached`` exactly as
the bench does, primes it, then calls it in a loop for a few seconds under pyinstrument (or cProfile with
``--cprofile``) and prints the call tree and the functions with the most time of their own. ``--baseline``
profiles the hand-written redis-py baseline instead, to compare with. The figures under a profiler are slower
than the bench's; compare shares of time, not microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import baseline, measure, stashly_cases
from bench.cases import Case, Env, Scenario
from bench.server import PrivateRedis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--async", dest="is_async", action="store_true", help="an async def function (asyncio)")
    parser.add_argument("--memory", action="store_true", help="CacheManager(url='memory://') instead of Redis")
    parser.add_argument("--model", action="store_true", help="return a Pydantic model (-> UserRead), not a dict")
    parser.add_argument("--size", choices=("300B", "10KB"), default="300B", help="value size (default 300B)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to profile (default 5)")
    parser.add_argument("--baseline", action="store_true", help="profile the raw redis-py baseline instead")
    parser.add_argument("--tagged", action="store_true", help="the @cached function with 3 tags (300B dict only)")
    parser.add_argument("--cprofile", action="store_true", help="use cProfile instead of pyinstrument")
    parser.add_argument("--top", type=int, default=25, help="functions listed by own time (default 25)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    scenario = Scenario("hit", "async" if args.is_async else "sync", args.size, "model" if args.model else "dict")

    with PrivateRedis() as server, asyncio.Runner() as runner:
        env = Env(server, runner)
        try:
            case = _contestant(scenario, env, baseline_instead=args.baseline, memory=args.memory, tagged=args.tagged)
            trial = measure.Trial(scenario, case)
            measure.prepare(trial, env, warmup_seconds=0.2)  # primes the entries, checks a result, warms up
            if trial.failure is not None:
                raise SystemExit(f"{case.name} failed before profiling: {trial.failure}")
            loop = _loop(case, trial.next_arg, args.seconds, env)
            print(f"profiling {case.name} · {scenario.title} · {args.seconds:g} s", file=sys.stderr)
            report = _cprofile(loop, args.top) if args.cprofile else _pyinstrument(loop, args.top)
        finally:
            env.close()
    print(report)
    return 0


def _contestant(scenario: Scenario, env: Env, *, baseline_instead: bool, memory: bool, tagged: bool) -> Case:
    if baseline_instead:
        wanted, found = baseline.BASELINE, baseline.cases(scenario, env)
    else:
        wanted = stashly_cases.MEMORY if memory else stashly_cases.TAGGED if tagged else stashly_cases.DECORATOR
        found = stashly_cases.cases(scenario, env)
    for entry in found:
        if isinstance(entry, Case) and entry.name == wanted:
            return entry
    raise SystemExit(f"no contestant named {wanted!r} in {scenario.title}")


def _loop(case: Case, next_arg: Callable[[], int], seconds: float, env: Env) -> Callable[[], tuple[int, float]]:
    """A function that calls ``case`` for ``seconds`` and returns (calls, elapsed seconds)."""
    call = case.call

    def run_sync() -> tuple[int, float]:
        calls, start = 0, time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(100):
                call(next_arg())
            calls += 100
        return calls, time.perf_counter() - start

    async def run_async() -> tuple[int, float]:
        calls, start = 0, time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(100):
                await call(next_arg())
            calls += 100
        return calls, time.perf_counter() - start

    if case.is_async:
        return lambda: env.run(run_async())
    return run_sync


def _rate(calls: int, elapsed: float) -> str:
    return f"{calls} calls in {elapsed:.2f} s under the profiler: {elapsed / calls * 1e6:.1f} µs per call"


def _pyinstrument(loop: Callable[[], tuple[int, float]], top: int) -> str:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed (pip install -e '.[bench]'): using cProfile", file=sys.stderr)
        return _cprofile(loop, top)
    # async_mode="disabled": time the event loop spends waiting for Redis shows up as select(), not hidden.
    profiler = Profiler(interval=0.0001, async_mode="disabled")
    profiler.start()
    calls, elapsed = loop()
    profiler.stop()
    tree = profiler.output_text(unicode=True, color=False, show_all=False)
    flat = profiler.output_text(unicode=True, color=False, flat=True, flat_time="self")
    rows = [line for line in flat.splitlines() if line.split(" ", 1)[0].replace(".", "", 1).isdigit()]
    return "\n".join([_rate(calls, elapsed), "", tree, f"Top {top} by own time (seconds):", *rows[:top]])


def _cprofile(loop: Callable[[], tuple[int, float]], top: int) -> str:
    profiler = cProfile.Profile()
    result: dict[str, Any] = {}
    profiler.runcall(lambda: result.setdefault("run", loop()))
    calls, elapsed = result["run"]
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)
    return "\n".join([_rate(calls, elapsed), out.getvalue()])


if __name__ == "__main__":
    sys.exit(main())
