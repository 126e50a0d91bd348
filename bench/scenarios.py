"""Which scenarios run, and which contestant families take part in each."""

from __future__ import annotations

from collections.abc import Callable

from . import baseline, floors, peers_aiocache, peers_cashews, peers_dogpile, peers_fastapi_cache, stashly_cases
from .cases import Case, Entry, Env, ExternalCase, Scenario, Unavailable

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


def scenarios() -> list[Scenario]:
    """HIT and MISS for both sizes, both shapes, sync and async; concurrency; get_many of 100 keys."""
    found = [
        Scenario(op, mode, size, shape)
        for op in ("hit", "miss")
        for size in ("300B", "10KB")
        for shape in ("dict", "model")
        for mode in ("sync", "async")
    ]
    found.append(Scenario("tasks", "async", keys=100))
    found.append(Scenario("tasks", "async", keys=1))
    found.append(Scenario("get_many", "sync"))
    found.append(Scenario("get_many", "async"))
    return found


def collect(scenario: Scenario, env: Env) -> tuple[list[Case | ExternalCase], list[Unavailable]]:
    """The contestants of ``scenario``, and the ones that cannot run here (with why)."""
    runnable: list[Case | ExternalCase] = []
    unavailable: list[Unavailable] = []
    for family, make in FAMILIES:
        try:
            entries = make(scenario, env)
        except Exception as exc:  # a peer that cannot even be set up is reported, never aborts the run
            unavailable.append(Unavailable(family, "peer", f"setup failed: {type(exc).__name__}: {exc}"))
            continue
        for entry in entries:
            if isinstance(entry, Unavailable):
                unavailable.append(entry)
            else:
                runnable.append(entry)
    return runnable, unavailable
