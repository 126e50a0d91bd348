"""Faults against real redis-server processes: stopped, paused, restarted, idle connections killed, forks,
event loops, cancellation, bursts, and invalidations racing fills."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stashly import Cached, CacheManager
from stashly.backends.layers.breaker import CircuitBreaker

from tests.harness.proxy import SlowProxy
from tests.harness.server import RedisServer
from tests.support import BACKENDS, aeventually, backend_url, eventually

pytestmark = pytest.mark.timeout(90)


class Source:
    """The data behind a cached function: a version number that writes bump, and a call counter."""

    def __init__(self) -> None:
        self.version = 0
        self.calls = 0
        self.lock = threading.Lock()

    def read(self) -> int:
        with self.lock:
            self.calls += 1
            return self.version


# -- invalidation racing a fill ----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    return backend_url(request, request.param)


@pytest.mark.parametrize(
    "invalidation", ["invalidate", "remove", "flush_namespace", "versioned_flush", "other_manager", "other_versioned"]
)
def test_invalidation_during_a_sync_fill_wins(url: str, invalidation: str) -> None:
    cm = CacheManager(url=url, namespace="race")
    cache = Cached(manager=cm)
    source, started, release = Source(), threading.Event(), threading.Event()

    @cache.cached(key="item:{item_id}")
    def item(item_id: int) -> int:
        value = source.read()  # reads the old data...
        started.set()
        release.wait(10)  # ...and is slow to finish
        return value

    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(item(1)))
    slow.start()
    assert started.wait(10)
    source.version = 1  # the write
    _invalidate(cm, item, invalidation, url)
    release.set()
    slow.join(10)
    assert results == [0]  # the slow caller gets what it computed...
    assert item(1) == 1  # ...but it was not stored: the next call recomputes
    assert item(1) == 1
    assert source.calls == 2


def _invalidate(cm: CacheManager, fn: Any, how: str, url: str) -> None:
    if how == "invalidate":
        fn.invalidate(1)
    elif how == "remove":
        cm.remove("item:1")
    elif how == "flush_namespace":
        cm.flush_namespace()
    elif how == "versioned_flush":
        cm.flush_namespace(mode="versioned")
    elif url != "memory://":  # another process's manager: its own connections, the same Redis
        with CacheManager(url=url, namespace="race") as other:
            if how == "other_versioned":
                other.flush_namespace(mode="versioned")
            else:
                other.remove("item:1")
    else:
        cm.remove("item:1")


@pytest.mark.parametrize("invalidation", ["invalidate", "flush_namespace", "versioned_flush"])
async def test_invalidation_during_an_async_fill_wins(url: str, invalidation: str) -> None:
    cm = CacheManager(url=url, namespace="race")
    cache = Cached(manager=cm)
    source, started, release = Source(), asyncio.Event(), asyncio.Event()

    @cache.cached
    async def item(item_id: int) -> int:
        value = source.read()
        started.set()
        await release.wait()
        return value

    slow = asyncio.create_task(item(1))
    await started.wait()
    source.version = 1
    if invalidation == "invalidate":
        await item.invalidate(1)
    else:
        await cm.aflush_namespace(mode="versioned" if invalidation == "versioned_flush" else "scan")
    fresh = asyncio.create_task(item(1))  # after the invalidation: must not join the slow computation
    await asyncio.sleep(0.05)
    release.set()
    assert await slow == 0
    assert await fresh == 1
    assert await item(1) == 1
    assert source.calls == 2
    await cm.aclose()


# -- the circuit breaker -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_probes_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=1.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    breaker.succeeded()  # a success in between resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()
    assert breaker.is_open
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()  # one probe per cool-down...
    assert not breaker.allow()  # ...only one
    breaker.failed()
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()
    breaker.succeeded()
    assert not breaker.is_open
    assert all(breaker.allow() for _ in range(10))


def test_breaker_ignores_successes_of_operations_begun_before_it_opened() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    in_flight = breaker.epoch
    breaker.failed()
    breaker.succeeded(in_flight)  # a slow call that started while the backend was still fine
    assert breaker.is_open
    clock.now += 1.0
    assert breaker.allow()
    breaker.succeeded(breaker.epoch)  # the probe
    assert not breaker.is_open


def test_breaker_probe_that_never_reports_does_not_wedge_it() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failed()
    clock.now += 1.0
    assert breaker.allow()  # the probe's caller is cancelled and never reports
    clock.now += 1.0
    assert breaker.allow()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_dead_redis_is_skipped_then_recovered_without_restart(disposable_redis: RedisServer, mode: str) -> None:
    cm = CacheManager(url=disposable_redis.url, namespace="t", breaker_threshold=3, breaker_cooldown=0.2)
    source = Source()
    fn = _counted(cm, mode, source)
    assert await _call(fn, 1) == 1
    disposable_redis.stop()
    for _ in range(20):
        assert await _call(fn, 1) == 1
    assert cm._backend.breaker.is_open  # type: ignore[attr-defined]
    assert cm.stats().errors == 20
    disposable_redis.start()
    assert await _eventually_hit(fn, 1, source) == 1
    assert not cm._backend.breaker.is_open  # type: ignore[attr-defined]
    await _close(cm)


def _counted(cm: CacheManager, mode: str, source: Source, result: Callable[[int], int] = int) -> Any:
    """A cached function of ``n`` whose computations ``source`` counts, as a sync or an async function."""

    def value(n: int) -> int:
        source.read()
        return result(n)

    cache = Cached(manager=cm)
    return cache.cached(value) if mode == "sync" else cache.cached(_async_version(value))


def _async_version(fn: Any) -> Any:
    async def wrapper(n: int) -> int:
        return int(fn(n))

    wrapper.__qualname__ = fn.__qualname__ + "_async"
    return wrapper


async def _call(fn: Any, *args: Any) -> Any:
    result = fn(*args)
    return await result if asyncio.iscoroutine(result) else result


async def _eventually_hit(fn: Any, argument: int, source: Source, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        before = source.calls
        result = await _call(fn, argument)
        if source.calls == before:
            return result
        assert asyncio.get_running_loop().time() < deadline, "no hit after Redis came back"
        await asyncio.sleep(0.05)


async def _close(cm: CacheManager) -> None:
    cm.close()
    await cm.aclose()


# -- hung, restarted, idle-killed ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_hung_redis_keeps_answering_correctly(disposable_redis: RedisServer, mode: str) -> None:
    # Short timeouts, as a hung server is what is tested; 0.5 s rather than less, so that the calls before the
    # pause and after the resume are not timed out by a busy machine as well (that would only slow the test).
    cm = CacheManager(url=disposable_redis.url, namespace="t", socket_timeout=0.5, connect_timeout=0.5)
    source = Source()
    fn = _counted(cm, mode, source, lambda n: n * 10)
    for n in range(3):
        await _call(fn, n)
    disposable_redis.pause()
    try:
        for n in range(10):
            assert await _call(fn, n % 3) == (n % 3) * 10
        assert cm.stats().errors >= 1
    finally:
        disposable_redis.resume()
    assert await _eventually_hit(fn, 1, source, timeout=30) == 10
    await _close(cm)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_restart_on_the_same_port_recomputes_without_errors(disposable_redis: RedisServer, mode: str) -> None:
    cm = CacheManager(url=disposable_redis.url, namespace="t", breaker_cooldown=0.1)
    source = Source()
    fn = _counted(cm, mode, source)
    assert [await _call(fn, n) for n in range(5)] == list(range(5))
    disposable_redis.kill()
    disposable_redis.start()  # same port, data gone
    assert [await _call(fn, n) for n in range(5)] == list(range(5))
    assert source.calls == 10  # the entries were recomputed
    assert await _eventually_hit(fn, 4, source) == 4
    await _close(cm)


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_idle_connections_killed_by_the_server(
    redis_url: str, redis_server: RedisServer, mode: str, protocol: int
) -> None:
    cm = CacheManager(url=redis_url, namespace="idle", protocol=protocol)
    source = Source()
    fn = _counted(cm, mode, source)
    for n in range(10):
        await _call(fn, n)
    with redis_server.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    results = [await _call(fn, n % 10) for n in range(100)]
    assert results == [n % 10 for n in range(100)]
    assert source.calls == 10  # all 100 were hits
    assert cm.stats().errors == 0
    await _close(cm)


def _idle_connections_closed(server: RedisServer) -> bool:
    """Whether the server has closed every connection but the one asking (its ``timeout`` ran out on them)."""
    with server.client() as admin:
        return len(admin.client_list(_type="normal")) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_idle_connections_closed_by_server_timeout(disposable_redis: RedisServer, mode: str) -> None:
    with disposable_redis.client() as admin:
        admin.config_set("timeout", 1)
    cm = CacheManager(url=disposable_redis.url, namespace="idle", protocol=3)
    cache = Cached(manager=cm)
    source = Source()

    def value(n: int) -> int:
        source.read()
        return n

    if mode == "sync":
        fn = cache.cached(value)
        fn(1)
        assert eventually(lambda: _idle_connections_closed(disposable_redis))  # idle past the server's timeout
        assert [fn(1) for _ in range(100)] == [1] * 100
    else:
        afn = cache.cached(_async_version(value))

        async def run() -> list[int]:
            await afn(1)
            assert await aeventually(lambda: _idle_connections_closed(disposable_redis))
            return [await afn(1) for _ in range(100)]

        assert asyncio.run(run()) == [1] * 100
    assert source.calls == 1
    assert cm.stats().errors == 0
    cm.close()


# -- pool, fork, event loops, cancellation -------------------------------------------------------------------


async def test_burst_of_500_concurrent_calls_on_warm_keys(redis_url: str) -> None:
    # The suite's generous timeouts: what is tested is that 500 callers wait for 50 connections instead of failing
    # (the pool's wait is the two timeouts added); on a loaded 2-core machine, opening 50 connections at once can
    # itself take well over the default 0.25 s.
    cm = CacheManager(url=redis_url, namespace="burst")
    cache = Cached(manager=cm)
    source = Source()

    @cache.cached
    async def value(n: int) -> int:
        source.read()
        return n

    for n in range(50):
        await value(n)
    warm = source.calls
    results = await asyncio.gather(*(value(i % 50) for i in range(500)))
    assert results == [i % 50 for i in range(500)]
    assert source.calls == warm  # every one a hit: the pool made callers wait, never fail
    assert cm.stats().errors == 0
    await cm.aclose()


def test_manager_created_before_fork_works_in_the_child(redis_url: str) -> None:
    cm = CacheManager(url=redis_url, namespace="fork")
    cache = Cached(manager=cm)

    @cache.cached
    def value(n: int) -> int:
        return n * 2

    assert value(1) == 2
    backend = cm._backend.backend  # type: ignore[attr-defined]
    parent_socket = backend._direct()._connection()._sock  # the parent's own socket, used by reads and fills
    assert parent_socket is not None
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = value(1) == 2 and value(2) == 4 and cm.stats().errors == 0
            child_socket = backend._direct()._connection()._sock
            code = 0 if ok and child_socket is not None and child_socket is not parent_socket else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert value(2) == 4  # stored by the child, readable by the parent
    assert backend._direct()._connection()._sock is parent_socket  # the parent's socket was left alone
    cm.close()


def test_async_api_from_many_event_loops(redis_url: str) -> None:
    cm = CacheManager(url=redis_url, namespace="loops")
    cache = Cached(manager=cm)

    @cache.cached
    async def value(n: int) -> int:
        return n

    async def work(base: int) -> list[int]:
        return [await value(base + i % 5) for i in range(20)]

    for run in range(5):
        assert asyncio.run(work(run)) == [run + i % 5 for i in range(20)]
    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda b=b: results.__setitem__(b, asyncio.run(work(b)))) for b in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {b: [b + i % 5 for i in range(20)] for b in range(4)}
    assert cm.stats().errors == 0


async def test_cancelled_callers_never_corrupt_other_callers(redis_server: RedisServer, redis_url: str) -> None:
    with SlowProxy(redis_server.port, delay=0.004) as proxy:
        cm = CacheManager(url=proxy.url, namespace="cancel")
        cache = Cached(manager=cm)

        @cache.cached
        async def value(n: int) -> dict[str, int]:
            return {"n": n}

        rng = random.Random(7)
        for round_ in range(5):
            calls = [asyncio.wait_for(value(rng.randrange(40)), rng.uniform(0.001, 0.02)) for _ in range(60)]
            for outcome in await asyncio.gather(*calls, return_exceptions=True):
                assert isinstance(outcome, TimeoutError) or (isinstance(outcome, dict) and "n" in outcome), round_
        for n in range(40):  # every connection left behind is clean: each answer is its own key's
            assert await value(n) == {"n": n}
        await cm.aclose()


async def test_cancelling_the_first_caller_does_not_cancel_the_shared_computation(url: str) -> None:
    cm = CacheManager(url=url, namespace="shared")
    cache = Cached(manager=cm)
    release = asyncio.Event()
    runs = 0

    @cache.cached
    async def value(n: int) -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return n

    first = asyncio.create_task(value(1))
    assert await aeventually(lambda: runs == 1)  # first leads: the computation has started
    second = asyncio.create_task(value(1))
    # Its miss is counted just before it joins the flight, with no await in between: it waits on that computation.
    assert await aeventually(lambda: cm.stats().misses == 2)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await second == 1
    assert first.cancelled()
    assert runs == 1
    assert await value(1) == 1
    assert runs == 1
    await cm.aclose()


# -- TTL jitter --------------------------------------------------------------------------------------------


@pytest.fixture
def raw(redis_server: RedisServer, redis_url: str) -> Iterator[Any]:
    with redis_server.client() as client:
        yield client


def test_ttl_jitter_spreads_expiries_within_bounds(redis_url: str, raw: Any) -> None:
    cm = CacheManager(url=redis_url, namespace="jitter", ttl_jitter=0.2)
    began = time.monotonic()
    for n in range(50):
        cm.set(f"k{n}", n, ttl=100)
    ttls = [raw.pttl(f"stashly:jitter:k{n}") for n in range(50)]
    elapsed_ms = (time.monotonic() - began) * 1000 + 1  # what the entries aged before they were read (+ rounding)
    assert all(80_000 - elapsed_ms <= t <= 100_000 for t in ttls), (ttls, elapsed_ms)
    assert len(set(ttls)) > 10
    exact = CacheManager(url=redis_url, namespace="exact", ttl_jitter=0)
    began = time.monotonic()
    exact.set("k", 1, ttl=100)
    left = raw.pttl("stashly:exact:k")
    assert 100_000 - (time.monotonic() - began) * 1000 - 1 <= left <= 100_000
