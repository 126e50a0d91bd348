"""A reader process for the local tier's coherence test: reads one key flat out through a local tier.

Usage: ``python local_tier_reader.py REDIS_URL SECONDS``. Prints ``ready`` once its tier serves, then, after
SECONDS, one JSON line: how many reads, how many the tier answered, and the runs of equal answers, each as
``[value, start of its last read, end of its last read]`` (monotonic clock, shared by every process here).
"""

from __future__ import annotations

import json
import sys
import time

from stashly import CacheManager, LocalTier


def main(url: str, seconds: float) -> None:
    tier = LocalTier()
    with CacheManager(url, namespace="coherence", local=tier) as cm:
        while not (tier.serving and tier.lookup(cm.key("k")) is not None):
            cm.get("k")
            time.sleep(0.001)
        print("ready", flush=True)
        hits, reads = tier.hits, 0
        runs: list[list[object]] = []
        clock = time.monotonic
        deadline = clock() + seconds
        value: object = object()
        while True:
            start = clock()
            if start >= deadline:
                break
            seen = cm.get("k")
            end = clock()
            reads += 1
            if runs and seen == value:
                runs[-1][1], runs[-1][2] = start, end
            else:
                value = seen
                runs.append([seen, start, end])
        print(json.dumps({"reads": reads, "hits": tier.hits - hits, "runs": runs}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
