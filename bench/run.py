"""`make bench`: stashly, hand-written redis-py code and the peers, side by side in one process on one private
redis-server, interleaved in rounds so machine drift cancels.

    python bench/run.py [--quick] [--json PATH] [--markdown PATH] [--rounds N] [--only PATTERN]

Prints one table per scenario (median and p99 µs per call, or ops/s; the ratio to the baseline measured next to
it in the same rounds; Redis commands and round trips per call) and the issue's targets next to the measured
figures. Exits 0 whatever the figures are: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import redis.utils

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import commands, markdown, measure, metrics_cost, report, scenarios, targets, values
from bench.cases import Env, Scenario, Unavailable
from bench.server import PrivateRedis

PACKAGES = ["stashly", "redis", "hiredis", "orjson", "pydantic", "aiocache", "cashews", "dogpile.cache"]
PACKAGES += ["fastapi-cache2", "cachetools", "pyinstrument"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds: under a minute")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write a Markdown summary")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved batches (default: 8 quick, 20 full)")
    parser.add_argument("--batch", type=float, help="seconds per contestant per round (default: 0.01 quick, 0.04)")
    parser.add_argument(
        "--only",
        metavar="PATTERN",
        help="only scenarios whose slug matches this regular expression somewhere (e.g. hit-300B, or -100$ to "
        "leave out the 100,000-key HIT)",
    )
    parser.add_argument("--seed", type=int, help="seed of the round order (default: random, printed)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (8 if args.quick else 20)
    seconds = args.batch or (0.01 if args.quick else 0.04)
    warmup = 0.03 if args.quick else 0.06
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    # Peers call redis-py methods it deprecates (setex, ...); the warnings say nothing about speed.
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    chosen = [s for s in scenarios.scenarios() if not args.only or re.search(args.only, s.slug)]
    if not chosen:
        parser.error(f"no scenario slug matches {args.only!r}")
    started = time.monotonic()
    with PrivateRedis() as server, asyncio.Runner() as runner:
        env = Env(server, runner, benchmark_requests=5_000 if args.quick else 20_000)
        try:
            tables, outcomes, meta = _run(env, chosen, rounds, seconds, warmup, seed)
        finally:
            close_failures = env.close()
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["close_failures"] = close_failures

    print(_header(meta))
    for table in tables:
        print()
        print(report.render(table))
    print()
    print("Targets (issue 6), from the ratios of this run:")
    print(targets.render(outcomes))
    counting = metrics_cost.measure()
    meta["metrics_cost_us"] = round(counting, 4)
    print()
    print("Target (issue 8), measured in the same process:")
    print(metrics_cost.render(counting))
    for failure in close_failures:
        print(f"note: closing failed: {failure}")
    if args.json:
        document = {
            "meta": meta,
            "tables": [report.to_json(table) for table in tables],
            "targets": [outcome.to_json() for outcome in outcomes],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        print(f"\nJSON written to {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown.render(tables, outcomes, meta))
        print(f"Markdown summary written to {args.markdown}")
    return 0


def _run(
    env: Env, chosen: list[Scenario], rounds: int, seconds: float, warmup: float, seed: int
) -> tuple[list[report.Table], list[targets.Outcome], dict[str, Any]]:
    plan: list[tuple[Scenario, list[measure.Trial], list[Unavailable]]] = []
    for scenario in chosen:
        runnable, unavailable = scenarios.collect(scenario, env)
        plan.append((scenario, [measure.Trial(scenario, entry) for entry in runnable], unavailable))
    trials = [trial for _, found, _ in plan for trial in found]

    _progress(f"preparing {len(trials)} contestants in {len(plan)} scenarios (prime, check, warm up)")
    for trial in trials:
        measure.prepare(trial, env, warmup)
    _progress("counting Redis commands per call")
    counted: dict[measure.Trial, commands.Commands] = {}
    for trial in trials:
        try:
            found_commands = None if trial.scenario.throughput else commands.count(trial, env)
        except Exception as exc:
            trial.failure = f"failed while counting commands: {type(exc).__name__}: {exc}"
            continue
        if found_commands is not None:
            counted[trial] = found_commands
    _progress(f"{rounds} rounds of {seconds * 1000:.0f} ms per contestant, shuffled (seed {seed})")
    measure.interleave(trials, rounds, seconds, env, random.Random(seed))
    _progress("re-reading every HIT entry (a contestant that lost one would not have measured HITs)")
    for trial in trials:
        measure.recheck(trial, env)

    tables = [report.build(scenario, found, unavailable, counted) for scenario, found, unavailable in plan]
    by_scenario = {table.scenario: table for table in tables}
    outcomes = [targets.evaluate(t, by_scenario) for t in targets.targets() if t.scenario in by_scenario]
    meta = _meta(env, rounds, seconds, seed)
    return tables, outcomes, meta


_STARTED = time.monotonic()


def _progress(message: str) -> None:
    print(f"bench [{time.monotonic() - _STARTED:5.1f} s]: {message}", file=sys.stderr, flush=True)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _meta(env: Env, rounds: int, seconds: float, seed: int) -> dict[str, Any]:
    server_version = subprocess.run([env.server.binary, "--version"], capture_output=True, text=True).stdout
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "redis_server": server_version.split(" v=")[1].split()[0] if " v=" in server_version else server_version,
        "hiredis_parser": bool(redis.utils.HIREDIS_AVAILABLE),
        "packages": {package: _version(package) for package in PACKAGES},
        "value_bytes": {size: values.encoded_size(size) for size in ("300B", "10KB")},
        "rounds": rounds,
        "batch_seconds": seconds,
        "seed": seed,
        "tasks": measure.TASKS,
        "calls_per_task": measure.CALLS_PER_TASK,
    }


def _header(meta: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in meta["packages"].items())
    return "\n".join(
        [
            f"stashly bench · {meta['when']} · Python {meta['python']} · {meta['cpus']} CPUs · "
            f"redis-server {meta['redis_server']} (private, loopback) · hiredis parser: {meta['hiredis_parser']}",
            f"packages: {packages}",
            f"values: {meta['value_bytes']['300B']} B and {meta['value_bytes']['10KB']} B of JSON · "
            f"{meta['rounds']} rounds × {meta['batch_seconds'] * 1000:.0f} ms per contestant, scenarios and "
            f"contestants shuffled each round (seed {meta['seed']}) · {meta['seconds']} s",
            "columns: median and p99 of per-call latency over all rounds (µs); ×base and p99×b = the ratio to the"
            " baseline, paired: median over rounds of (this batch's median or p99 / the baseline's batch of the same"
            " round, run next to it); cmds = Redis commands the client sends per call, trips = round trips per"
            " call (counted apart, on the private server); concurrency: ops/s of 100 asyncio tasks (median batch,"
            " slowest batch, paired ratio to the baseline).",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
