"""refresh_ahead: hits near expiry are served at once and recomputed in the background.

No test sleeps against the TTL: entries live 60 s, and a test moves one close to expiry by hand (``PEXPIRE`` on
Redis, the injected clock of the memory backend), so a busy machine can neither expire it early nor make a
"fresh" hit look due.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stashly import Cached, CacheManager
from stashly.backends.memory import MemoryStore

from tests.support import BACKENDS, aeventually, backend_url, eventually

pytestmark = pytest.mark.timeout(60)

TTL = 60.0
DUE = 0.5  # refresh_ahead: a hit with less than half the TTL left starts a refresh
NEAR_EXPIRY = 35.0  # seconds taken off an entry's life: 25 s left of 60, due but far from expiring


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Setup:
    """A Cached on one backend, and ``age(key, seconds)``: take ``seconds`` off the entry's remaining life."""

    def __init__(self, cache: Cached, age: Callable[[str, float], None]) -> None:
        self.cache = cache
        self.age = age


@pytest.fixture(params=BACKENDS)
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    backend = request.param
    manager = CacheManager(url=backend_url(request, backend), ttl_jitter=0)
    cache = Cached(manager=manager, namespace="refresh", ttl=TTL)
    if backend == "memory":
        store = manager._backend
        assert isinstance(store, MemoryStore)
        clock = Clock(100.0)
        store._clock = clock  # the store's injected clock, swapped before anything is stored

        def age_in_memory(key: str, seconds: float) -> None:
            clock.now += seconds

        yield Setup(cache, age_in_memory)
        manager.close()
        return
    raw = _raw_client(request, backend)

    def age_in_redis(key: str, seconds: float) -> None:
        left = raw.pttl(key)
        assert left > seconds * 1000, f"{key} has {left} ms left"
        assert raw.pexpire(key, left - int(seconds * 1000))

    yield Setup(cache, age_in_redis)
    raw.close()
    manager.close()


def _raw_client(request: pytest.FixtureRequest, backend: str) -> Any:
    """An unrestricted client of the server holding the entries (the primary behind Sentinel)."""
    if backend == "redis":
        return redis.Redis.from_url(request.getfixturevalue("redis_url"))
    if backend == "cluster":
        first_node = request.getfixturevalue("cluster_url").replace("redis+cluster", "redis").split(",")[0]
        return redis.RedisCluster.from_url(first_node)
    request.getfixturevalue("sentinel_url")
    return request.getfixturevalue("redis_sentinel").primary_server().client()


def _join_refreshes() -> None:
    """Wait for every background refresh thread to finish (stored or refused)."""
    for thread in threading.enumerate():
        if thread.name.startswith("stashly-refresh"):
            thread.join(10)
            assert not thread.is_alive(), f"{thread.name} still running"


class Source:
    def __init__(self) -> None:
        self.version = 1
        self.computed_in: list[str] = []

    def read(self) -> int:
        self.computed_in.append(threading.current_thread().name)
        return self.version


def test_a_hit_near_expiry_is_refreshed_in_the_background(setup: Setup) -> None:
    source = Source()

    @setup.cache.cached(refresh_ahead=DUE)
    def value(n: int) -> int:
        return source.read()

    assert value(1) == 1
    source.version = 2
    assert value(1) == 1  # fresh: no refresh yet
    setup.age(value.cache_key(1), NEAR_EXPIRY)  # less than half the TTL left
    assert value(1) == 1  # served at once, the refresh starts behind it
    assert eventually(lambda: value(1) == 2), "the background refresh never landed"
    assert source.computed_in[0] == "MainThread"
    assert all(name.startswith("stashly-refresh") for name in source.computed_in[1:])
    assert len(source.computed_in) == 2  # one refresh, however many hits saw the entry near expiry


async def test_async_refresh_runs_as_a_task(setup: Setup) -> None:
    source = Source()
    refreshed = asyncio.Event()

    @setup.cache.cached(refresh_ahead=DUE)
    async def value(n: int) -> int:
        result = source.read()
        if len(source.computed_in) > 1:
            refreshed.set()
        return result

    assert await value(1) == 1
    source.version = 2
    assert await value(1) == 1  # fresh: no refresh yet
    setup.age(value.cache_key(1), NEAR_EXPIRY)
    assert await value(1) == 1
    await asyncio.wait_for(refreshed.wait(), 10)
    assert await aeventually(lambda: _is(value(1), 2)), "the refreshed value was never served"
    assert source.computed_in == ["MainThread", "MainThread"]  # the refresh ran as a task of this loop
    assert len(source.computed_in) == 2


def test_an_invalidation_during_a_refresh_wins(setup: Setup) -> None:
    source = Source()
    started, release = threading.Event(), threading.Event()

    @setup.cache.cached(refresh_ahead=DUE)
    def value(n: int) -> int:
        result = source.read()
        if threading.current_thread().name.startswith("stashly-refresh"):
            started.set()
            release.wait(10)
        return result

    assert value(1) == 1
    setup.age(value.cache_key(1), NEAR_EXPIRY)
    source.version = 2
    assert value(1) == 1  # triggers the refresh, which reads version 2 and blocks
    assert started.wait(10)
    source.version = 3
    value.invalidate(1)
    release.set()
    _join_refreshes()  # its store was attempted, and refused
    assert value(1) == 3  # the refresh's version 2 was not stored over the invalidation
    assert source.computed_in[-1] == "MainThread"


def test_refresh_ahead_is_validated(setup: Setup) -> None:
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="refresh_ahead"):
            setup.cache.cached(refresh_ahead=bad)(_identity)


def _identity(n: int) -> Any:
    return n


async def _is(result: Any, expected: int) -> bool:
    return bool(await result == expected)
