"""How stale the local tier's answers get: reader processes read one hot key flat out while a writer updates it.

    python bench/local_staleness.py [--seconds S] [--write-every S] [--tasks N] [--json PATH]

On a private redis-server: one reader process reads through a ``LocalTier`` from one thread, another from N
asyncio tasks on one event loop (default 5), at the same time, for S seconds (default 30), while this process
updates or removes the key every ``--write-every`` seconds (default 0.05) through a manager without a tier. The
readers are ``tests/local_tier_reader.py``, the coherence tests' own. For each reader it prints the reads, the
share the tier answered (the async one is the "hot key under asyncio" hit ratio the issue asked for) and how long
after a write returned a read that began could still answer the value it replaced: the worst, and the 99th
percentile over every superseded value. The tier's documented bound is the trust window, 1 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import PrivateRedis
from stashly import CacheManager

READER = Path(__file__).resolve().parent.parent / "tests" / "local_tier_reader.py"

Step = tuple[float, float, int | None]  # (start, end, state written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--write-every", type=float, default=0.05)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    with PrivateRedis() as server:
        results = run(server.server.url, arguments.seconds, arguments.write_every, arguments.tasks)
    for result in results:
        print(
            f"{result['reader']:<26} {result['reads']:>10,} reads  local hits {result['hit_ratio']:7.2%}  "
            f"stalest {result['stalest_ms']:6.1f} ms  p99 {result['p99_ms']:5.1f} ms  "
            f"({result['superseded']} values superseded)"
        )
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(results, indent=2))


def run(url: str, seconds: float, write_every: float, tasks: int) -> list[dict[str, Any]]:
    """Run the readers against a writer; one result per reader."""
    kinds = {"sync, one thread": 0, f"async, {tasks} tasks": tasks}
    with CacheManager(url, namespace="coherence", strict=True) as cm:
        cm.set("k", 0)
        steps: list[Step] = [(0.0, time.monotonic(), 0)]
        readers = {
            name: subprocess.Popen(
                [sys.executable, str(READER), url, str(seconds), str(count)], stdout=subprocess.PIPE, text=True
            )
            for name, count in kinds.items()
        }
        try:
            for reader in readers.values():
                assert reader.stdout is not None
                if reader.stdout.readline().strip() != "ready":
                    raise SystemExit("a reader did not start")
            version = 0
            deadline = time.monotonic() + seconds + 0.5
            while time.monotonic() < deadline:
                time.sleep(write_every)
                version += 1
                start = time.monotonic()
                state = None if version % 5 == 0 else version
                if state is None:
                    cm.remove("k")
                else:
                    cm.set("k", state)
                steps.append((start, time.monotonic(), state))
            reports = {name: json.loads(reader.communicate(timeout=60)[0]) for name, reader in readers.items()}
        finally:
            for reader in readers.values():
                reader.kill()
    return [summarize(name, report, steps) for name, report in reports.items()]


def summarize(name: str, report: dict[str, Any], steps: list[Step]) -> dict[str, Any]:
    """A reader's reads, hit ratio and staleness: for each value it saw, how long after the write replacing it
    returned its last read of that value began (negative: the read began before the write returned)."""
    lags: list[float] = []
    for state, last_start, last_end, *_ in (run for runs in report["runs"] for run in runs):  # and where from
        # The newest step that could have produced this answer (it started before the read ended)...
        sources = [n for n, step in enumerate(steps) if step[2] == state and step[0] <= last_end]
        if not sources:
            raise SystemExit(f"{name} read {state!r}, which no write had begun to write by {last_end:.3f}")
        if sources[-1] + 1 < len(steps):  # ...and the write that replaced it
            lags.append(last_start - steps[sources[-1] + 1][1])
    lags.sort()
    return {
        "reader": name,
        "reads": report["reads"],
        "hit_ratio": report["hits"] / max(1, report["reads"]),
        "stalest_ms": max(0.0, lags[-1] * 1000) if lags else 0.0,
        "p99_ms": max(0.0, lags[int(len(lags) * 0.99)] * 1000) if lags else 0.0,
        "superseded": len(lags),
    }


if __name__ == "__main__":
    main()
