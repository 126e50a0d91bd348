"""Which scenarios run, and which contestant families take part in each."""

from __future__ import annotations

from collections.abc import Callable

from . import baseline, floors, peers_aiocache, peers_cashews, peers_dogpile, peers_fastapi_cache, stashly_cases
from .cases import LARGE, LARGE_KEYS, MANY_KEYS, Case, Entry, Env, ExternalCase, Scenario, Unavailable

__all__ = ["FAMILIES", "collect", "scenarios"]

Family = Callable[[Scenario, Env], list[Entry]]

FAMILIES: list[tuple[str, Family]] = [
    ("redis-py baseline", baseline.cases),
    ("stashly", stashly_cases.cases),
    ("dogpile.cache", peers_dogpile.cases),
    ("aiocache", peers_aiocache.cases),
    ("cashews", peers_cashews.cases),
    ("fastapi-cache2", peers_fastapi_cache.cases),
    ("floors", floors.cases),
]


ALONG_MANY_KEYS = ("redis-py baseline", "stashly")
"""The families of the large key set's HIT: its target compares stashly with itself over 100 keys, through the
paired ratios to the baseline; priming 100,000 entries for every peer would add minutes and measure nothing asked."""


def scenarios() -> list[Scenario]:
    """HIT and MISS for both sizes, both shapes, sync and async; HIT over a large key set; HIT of 100 KB and 1 MB
    values in process; concurrency; get_many of 100 and 1,000 keys."""
    found = [
        Scenario(op, mode, size, shape)
        for op in ("hit", "miss")
        for size in ("300B", "10KB")
        for shape in ("dict", "model")
        for mode in ("sync", "async")
    ]
    found.extend(Scenario("hit", mode, keys=MANY_KEYS) for mode in ("sync", "async"))
    found.extend(Scenario("hit", mode, size, keys=LARGE_KEYS) for size in LARGE for mode in ("sync", "async"))
    found.append(Scenario("tasks", "async", keys=100))
    found.append(Scenario("tasks", "async", keys=1))
    found.extend(Scenario("get_many", mode, keys=keys) for keys in (100, 1000) for mode in ("sync", "async"))
    return found


def collect(scenario: Scenario, env: Env) -> tuple[list[Case | ExternalCase], list[Unavailable]]:
    """The contestants of ``scenario``, and the ones that cannot run here (with why)."""
    runnable: list[Case | ExternalCase] = []
    unavailable: list[Unavailable] = []
    for family, make in FAMILIES:
        if scenario.keys == MANY_KEYS and family not in ALONG_MANY_KEYS:
            continue
        try:
            entries = make(scenario, env)
        except Exception as exc:  # a peer that cannot even be set up is reported, never aborts the run
            unavailable.append(Unavailable(family, "peer", f"setup failed: {type(exc).__name__}: {exc}"))
            continue
        for entry in entries:
            if scenario.size in LARGE and entry.role not in ("baseline", "floor") and _over_the_network(entry):
                continue  # the large HITs compare what a process holds: a Redis peer there measures the network
            if isinstance(entry, Unavailable):
                unavailable.append(entry)
            else:
                runnable.append(entry)
    return runnable, unavailable


def _over_the_network(entry: Entry) -> bool:
    return isinstance(entry, ExternalCase) or (isinstance(entry, Case) and entry.storage in ("redis", "cluster"))
