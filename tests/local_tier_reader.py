"""A reader process for the local tier's coherence tests: reads one key flat out through a local tier.

Usage: ``python local_tier_reader.py REDIS_URL SECONDS [TASKS [KEY]]``. With TASKS (default 0) above 0, that many
asyncio tasks read the key (default ``k``) in one event loop; otherwise one thread does. The manager is strict: a
read Redis could not answer (a failover under way) raises and is left out, rather than read as a miss. Prints
``ready`` once its tier serves, then, after SECONDS, one JSON line: how many reads, how many the tier answered,
and the runs of equal answers (one list per reader), each as ``[value, start of its last read, end of its last
read, whether the tier answered that read]`` (monotonic clock, shared by every process here; the last item is
``null`` for asyncio readers, whose tasks share the tier's hit counter).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from stashly import CacheManager, CacheUnavailableError, LocalTier


class Runs:
    """The runs of equal answers one reader saw."""

    def __init__(self) -> None:
        self.runs: list[list[Any]] = []
        self.value: object = object()
        self.reads = 0

    def add(self, seen: object, start: float, end: float, local: bool | None = None) -> None:
        self.reads += 1
        if self.runs and seen == self.value:
            self.runs[-1][1:] = start, end, local
        else:
            self.value = seen
            self.runs.append([seen, start, end, local])


KEY = sys.argv[4] if len(sys.argv) > 4 else "k"


def read_sync(cm: CacheManager, tier: LocalTier, deadline: float) -> list[Runs]:
    runs, clock = Runs(), time.monotonic
    while (start := clock()) < deadline:
        hits = tier.hits
        try:
            seen = cm.get(KEY)
        except CacheUnavailableError:
            continue
        runs.add(seen, start, clock(), tier.hits > hits)
    return [runs]


async def read_async(cm: CacheManager, deadline: float, tasks: int) -> list[Runs]:
    async def reader() -> Runs:
        runs, clock = Runs(), time.monotonic
        while (start := clock()) < deadline:
            try:
                seen = await cm.aget(KEY)
            except CacheUnavailableError:
                continue
            runs.add(seen, start, clock())
        return runs

    return list(await asyncio.gather(*(reader() for _ in range(tasks))))


async def serve_async(cm: CacheManager, tier: LocalTier, seconds: float, tasks: int) -> list[Runs]:
    while not (tier.serving and tier.lookup(cm.key(KEY)) is not None):
        await cm.aget(KEY)
        await asyncio.sleep(0.001)
    tier.hits = 0  # count the hits of the measured reads only
    print("ready", flush=True)
    return await read_async(cm, time.monotonic() + seconds, tasks)


def serve_sync(cm: CacheManager, tier: LocalTier, seconds: float) -> list[Runs]:
    while not (tier.serving and tier.lookup(cm.key(KEY)) is not None):
        cm.get(KEY)
        time.sleep(0.001)
    tier.hits = 0  # count the hits of the measured reads only
    print("ready", flush=True)
    return read_sync(cm, tier, time.monotonic() + seconds)


def main(url: str, seconds: float, tasks: int) -> None:
    tier = LocalTier()
    with CacheManager(url, namespace="coherence", local=tier, strict=True) as cm:
        readers = asyncio.run(serve_async(cm, tier, seconds, tasks)) if tasks else serve_sync(cm, tier, seconds)
        report = {
            "reads": sum(runs.reads for runs in readers),
            "hits": tier.hits,
            "runs": [runs.runs for runs in readers],
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
