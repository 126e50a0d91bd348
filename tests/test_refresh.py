"""refresh_ahead: hits near expiry are served at once and recomputed in the background."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from stashly import Cached, CacheManager

from support import BACKENDS, backend_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=BACKENDS)
def cache(request: pytest.FixtureRequest) -> Cached:
    url = backend_url(request, request.param)
    return Cached(manager=CacheManager(url=url, ttl_jitter=0), namespace="refresh", ttl=1.0)


class Source:
    def __init__(self) -> None:
        self.version = 1
        self.computed_in: list[str] = []

    def read(self) -> int:
        self.computed_in.append(threading.current_thread().name)
        return self.version


def test_a_hit_near_expiry_is_refreshed_in_the_background(cache: Cached) -> None:
    source = Source()

    @cache.cached(refresh_ahead=0.5)
    def value(n: int) -> int:
        return source.read()

    assert value(1) == 1
    source.version = 2
    assert value(1) == 1  # fresh: no refresh yet
    time.sleep(0.6)  # less than half the TTL left
    assert value(1) == 1  # served at once, the refresh starts behind it
    deadline = time.monotonic() + 5
    while value(1) != 2:
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.02)
    assert source.computed_in[0] == "MainThread"
    assert all(name.startswith("stashly-refresh") for name in source.computed_in[1:])
    assert len(source.computed_in) == 2  # one refresh, however many hits saw the entry near expiry


async def test_async_refresh_runs_as_a_task(cache: Cached) -> None:
    source = Source()
    refreshed = asyncio.Event()

    @cache.cached(refresh_ahead=0.5)
    async def value(n: int) -> int:
        result = source.read()
        if len(source.computed_in) > 1:
            refreshed.set()
        return result

    assert await value(1) == 1
    source.version = 2
    await asyncio.sleep(0.6)
    assert await value(1) == 1
    await asyncio.wait_for(refreshed.wait(), 5)
    deadline = time.monotonic() + 5
    while await value(1) != 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert len(source.computed_in) == 2


def test_an_invalidation_during_a_refresh_wins(cache: Cached) -> None:
    source = Source()
    started, release = threading.Event(), threading.Event()

    @cache.cached(refresh_ahead=0.5)
    def value(n: int) -> int:
        result = source.read()
        if threading.current_thread().name.startswith("stashly-refresh"):
            started.set()
            release.wait(5)
        return result

    assert value(1) == 1
    time.sleep(0.6)
    source.version = 2
    assert value(1) == 1  # triggers the refresh, which reads version 2 and blocks
    assert started.wait(5)
    source.version = 3
    value.invalidate(1)
    release.set()
    time.sleep(0.2)
    assert value(1) == 3  # the refresh's version 2 was not stored over the invalidation


def test_refresh_ahead_is_validated(cache: Cached) -> None:
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="refresh_ahead"):
            cache.cached(refresh_ahead=bad)(_identity)


def _identity(n: int) -> Any:
    return n
