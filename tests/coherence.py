"""The local tier's coherence run, shared by the single-server and the Cluster tests.

A writer updates or removes one key every 200 ms for 10 s while 3 reader processes (``local_tier_reader.py``)
read it flat out through a local tier, each one thread or several asyncio tasks. ``fault`` (a failover, a
reshard) runs in a thread meanwhile; the writer retries a write the fault refused until it lands (strict mode: a
write that fails raises, never lies), and a step is counted from its first attempt to its landing.

What the design guarantees, and so what is asserted: no read returns a value that was superseded ``SILENCE``
(1 s) before the read began (a silent invalidation connection stops its node's entries by then). How stale reads
really were and the share of local hits are returned for the run's summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stashly import CacheManager, CacheUnavailableError
from stashly.backends.layers.tracking import SILENCE

from tests.support import GENEROUS_ENV

READER = Path(__file__).with_name("local_tier_reader.py")
SECONDS = 10


@dataclass
class Coherence:
    stalest: float  # seconds: the stalest answer, counted from when the step replacing it returned
    ratios: list[float]  # each reader's local hits over its reads
    retried: int  # writes the fault refused at first
    by_source: dict[str, float]  # the stalest answer of the tier ("local") and of Redis ("redis"), when known

    def describe(self) -> str:
        """The stalest answer in ms, and where it came from when the readers could tell."""
        sources = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in sorted(self.by_source.items()))
        return f"{self.stalest * 1000:.0f} ms" + (f" (stalest {sources})" if sources else "")


def run(url: str, tasks: int, key: str = "k", fault: Callable[[], None] | None = None) -> Coherence:
    """Run the writer and the readers on ``url`` (with ``fault`` 2 s in), assert the bound, return the figures."""
    with CacheManager(url, namespace="coherence", strict=True) as cm:
        cm.set(key, 0)
        steps: list[tuple[float, float, int | None]] = [(0.0, time.monotonic(), 0)]  # (start, end, state)
        readers = [
            subprocess.Popen(
                [sys.executable, str(READER), url, str(SECONDS), str(tasks), key],
                stdout=subprocess.PIPE,
                text=True,
                env=child_env(),
            )
            for _ in range(3)
        ]
        faults: list[threading.Thread] = []
        retried = 0
        try:
            for reader in readers:
                assert reader.stdout is not None
                assert reader.stdout.readline().strip() == "ready"
            version = 0
            began = time.monotonic()
            deadline = began + SECONDS + 0.5
            while time.monotonic() < deadline:
                time.sleep(0.2)
                if fault is not None and not faults and time.monotonic() > began + 2:
                    faults.append(threading.Thread(target=fault, daemon=True))
                    faults[0].start()
                version += 1
                start = time.monotonic()
                state = None if version % 5 == 0 else version
                while True:
                    try:
                        if state is None:
                            cm.remove(key)
                        else:
                            cm.set(key, state)
                        break
                    except CacheUnavailableError:
                        retried += 1
                        time.sleep(0.05)
                steps.append((start, time.monotonic(), state))
            reports = [json.loads(reader.communicate(timeout=60)[0]) for reader in readers]
        finally:
            for reader in readers:
                reader.kill()
            for thread in faults:
                thread.join(120)
    stalest, ratios, by_source = 0.0, [], {}
    for report in reports:
        for state, last_start, last_end, local in (run for runs in report["runs"] for run in runs):
            # The newest step that could have produced this answer (started before the read ended)...
            sources = [m for m, step in enumerate(steps) if step[2] == state and step[0] <= last_end]
            assert sources, f"a reader returned {state!r}, which no step wrote before {last_end:.3f}"
            superseded = sources[-1] + 1
            if superseded < len(steps):  # ...and how long before the read began the step replacing it returned
                staleness = last_start - steps[superseded][1]
                stalest = max(stalest, staleness)
                if local is not None:  # a sync reader knows whether the tier answered
                    source = "local" if local else "redis"
                    by_source[source] = max(by_source.get(source, 0.0), staleness)
                assert staleness < SILENCE, (
                    f"a reader returned {state!r} at {last_start:.3f}, {staleness:.3f} s after step {superseded} "
                    f"replaced it: {steps[superseded]}"
                )
        ratios.append(report["hits"] / max(report["reads"], 1))
        assert report["hits"] > 0, report  # the tiers served
    return Coherence(max(stalest, 0.0), ratios, retried, {name: max(value, 0.0) for name, value in by_source.items()})


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHLY_")} | GENEROUS_ENV
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH", "")]))
    return env
