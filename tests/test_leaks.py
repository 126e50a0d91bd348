"""A manager that is closed leaves no socket for the garbage collector, on every topology, sync and asyncio.

The rest of the suite reports a ``ResourceWarning`` instead of failing on it (pyproject: the collector runs when
it likes, so such a warning lands in whichever test is running then); these tests own the question, each in a
lifecycle of its own with the collector run at a known point.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from stashly import Cached, CacheManager

TOPOLOGIES = ["redis", "cluster"]


@pytest.fixture(params=TOPOLOGIES)
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("cluster_url"))


@pytest.fixture
def unclosed() -> Iterator[list[str]]:
    """What the collector finds unclosed after the test's own work, collected before the test ends."""
    gc.collect()
    found: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        found.append(f"{unraisable.exc_value!r} in {unraisable.object!r}")

    sys.unraisablehook = hook
    try:
        yield found
    finally:
        sys.unraisablehook = previous


def _collect(found: list[str]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
        gc.collect()
    return found + [str(warning.message) for warning in caught if issubclass(warning.category, ResourceWarning)]


def _sync_lifecycle(url: str) -> None:
    cm = CacheManager(url=url, namespace="leaks")
    cache = Cached(manager=cm)

    @cache.cached(lock=True)
    def double(n: int) -> int:
        return 2 * n

    assert [double(n) for n in range(50)] == [2 * n for n in range(50)]
    assert [double(n) for n in range(50)] == [2 * n for n in range(50)]
    for n in range(20):
        cm.set(f"k{n}", n, tags=[f"t{n % 3}"])
    assert cm.get_many([f"k{n}" for n in range(20)])["k3"] == 3
    assert cm.remove("k3") is True
    cm.close()


def _async_lifecycle(url: str, loops: int, threads: int) -> None:
    cm = CacheManager(url=url, namespace="leaks")
    cache = Cached(manager=cm)

    @cache.cached(lock=True)
    async def double(n: int) -> int:
        return 2 * n

    async def work(own: int) -> None:  # ``own``: the thread's keys, which no other thread removes
        for _ in range(2):
            assert await asyncio.gather(*(double(n) for n in range(50))) == [2 * n for n in range(50)]
        for n in range(20):
            await cm.aset(f"k{own}:{n}", n, tags=[f"t{n % 3}"])
        assert (await cm.aget_many([f"k{own}:{n}" for n in range(20)]))[f"k{own}:3"] == 3
        assert await cm.aremove(f"k{own}:3") is True

    async def at_once() -> None:
        await asyncio.gather(*(asyncio.to_thread(asyncio.run, work(own)) for own in range(threads)))

    for _ in range(loops):  # a loop's clients close with it; the next loop makes its own
        asyncio.run(at_once() if threads else work(0))


def test_a_closed_sync_manager_leaves_nothing_open(url: str, unclosed: list[str]) -> None:
    _sync_lifecycle(url)
    assert _collect(unclosed) == []


def test_an_asyncio_manager_leaves_nothing_open_when_its_loops_end(url: str, unclosed: list[str]) -> None:
    _async_lifecycle(url, loops=2, threads=0)
    assert _collect(unclosed) == []


def test_an_asyncio_manager_on_loops_in_two_threads_at_once_leaves_nothing_open(url: str, unclosed: list[str]) -> None:
    """Each thread's loop has its own client (on Cluster, down to the nodes it starts from)."""
    _async_lifecycle(url, loops=1, threads=2)
    assert _collect(unclosed) == []
