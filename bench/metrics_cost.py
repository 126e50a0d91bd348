"""What counting costs a hit: the exact work the manager adds per hit for ``stats()``, timed against a bare loop.

Per hit the manager bumps ``hits`` and ``bytes_read`` on the call's site and, for one hit in 16, reads the clock
twice and drops the duration into a power-of-two histogram bucket. This times that sequence on a real
:class:`stashly.stats.Site` (median of interleaved rounds, minus the same loop doing nothing), so the figure is
the price of metrics alone.
"""

from __future__ import annotations

import statistics
from time import perf_counter, perf_counter_ns

from stashly.stats import SAMPLED, Site

TARGET_US = 0.2


def measure(rounds: int = 21, calls: int = 200_000) -> float:
    """Microseconds that counting adds to one hit."""
    site = Site("bench", "bench.function")
    raw = b"x" * 300
    costs = []
    for _ in range(rounds):
        bare, counted = _bare(calls), _counted(site, raw, calls)
        costs.append((counted - bare) / calls * 1e6)
    return max(0.0, statistics.median(costs))


def _bare(calls: int) -> float:
    started = perf_counter()
    for _ in range(calls):
        pass
    return perf_counter() - started


def _counted(site: Site, raw: bytes, calls: int) -> float:
    started = perf_counter()
    for _ in range(calls):
        began = 0 if site.hits & SAMPLED else perf_counter_ns()
        site.bytes_read += len(raw)
        site.hits += 1
        if began:
            site.hit_ns[(perf_counter_ns() - began).bit_length()] += 1
    return perf_counter() - started


def render(cost: float) -> str:
    verdict = "met" if cost < TARGET_US else "MISSED"
    return f"  stashly metrics: counting adds {cost:.3f} µs to a hit (target < {TARGET_US} µs) — {verdict}"


if __name__ == "__main__":
    print(render(measure()))
