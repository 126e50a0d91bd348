"""manager.stats(): totals, by namespace and by cached function, latency histograms, intervals."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import redis

from stashly import Cached, CacheManager, CacheStats, LocalTier
from stashly.backends.memory import MemoryStore
from stashly.stats import BUCKETS, Histogram

from tests.harness.server import RedisServer
from tests.support import eventually


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> CacheManager:
    if request.param == "memory":
        return CacheManager("memory://", namespace="app")
    url = request.getfixturevalue("redis_url")
    return CacheManager(url, namespace="app")


def test_counts_by_namespace_and_function(manager: CacheManager) -> None:
    cache = Cached("auth", manager=manager)
    calls = 0

    @cache.cached
    def me(user_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"id": user_id}

    @cache.cached
    def broken(user_id: int) -> int:
        raise RuntimeError("database down")

    me(1)
    me(1)
    me(1)
    with pytest.raises(RuntimeError):
        broken(1)
    me.invalidate(1)
    manager.set("k", "v")
    manager.get("k")
    manager.get("absent")
    manager.flush_namespace("auth")

    stats = manager.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.hits, stats.misses, stats.fills, stats.fill_errors) == (3, 3, 2, 1)
    assert stats.stores == 2
    assert stats.invalidations == 2
    assert stats.bytes_written > 0
    assert stats.bytes_read > 0
    auth, app = stats.namespaces["auth"], stats.namespaces["app"]
    assert (auth.hits, auth.misses, auth.fills, auth.invalidations) == (2, 2, 2, 2)
    assert (app.hits, app.misses, app.stores) == (1, 1, 1)
    name = f"{me.__module__}.{me.__qualname__}"
    assert (stats.functions[name].hits, stats.functions[name].misses) == (2, 1)
    assert stats.functions[f"{broken.__module__}.{broken.__qualname__}"].fill_errors == 1
    assert stats.hit_latency.count == 2  # sampled: each site's first hit, then one in 16
    assert stats.fill_latency.count == 1  # the failed computation is counted as an error, not timed
    assert stats.hit_latency.quantile(0.5) is not None
    assert stats.hit_latency.total > 0


def test_reset_starts_a_new_interval(manager: CacheManager) -> None:
    manager.set("k", 1)
    manager.get("k")
    first = manager.stats(reset=True)
    assert first.hits == 1
    manager.get("k")
    second = manager.stats()
    assert (second.hits, second.stores, second.hit_latency.count) == (1, 0, 0)  # the second hit is not sampled
    assert manager.totals().hits == 2  # exporters' counters never go down


async def test_async_calls_count_the_same(manager: CacheManager) -> None:
    cache = Cached("auth", manager=manager)

    @cache.cached
    async def me(user_id: int) -> int:
        return user_id

    assert await me(1) == 1
    assert await me(1) == 1
    await manager.aset("k", 1)
    assert await manager.aget("k") == 1
    stats = manager.stats()
    assert (stats.hits, stats.misses, stats.fills, stats.stores) == (2, 1, 1, 2)
    assert stats.namespaces["auth"].hit_latency.count == 1


def test_backend_errors_and_breaker_changes(disposable_redis: RedisServer) -> None:
    with CacheManager(disposable_redis.url, namespace="down", breaker_threshold=2, breaker_cooldown=1.0) as cm:
        clock = [0.0]
        cm._breaker._clock = lambda: clock[0]  # type: ignore[union-attr]  # no cooldown can pass between the gets
        cm.set("k", 1)
        disposable_redis.stop()
        for _ in range(3):
            assert cm.get("k", "fallback") == "fallback"
        stats = cm.stats()
        assert stats.errors == 3
        assert stats.namespaces["down"].errors == 3
        assert stats.breaker_changes == 1  # opened
        disposable_redis.start()
        clock[0] += 2.0  # the cooldown is over: the next get probes
        assert eventually(lambda: cm.get("k") is None and not cm._breaker.is_open)  # type: ignore[union-attr]
        assert cm.stats().breaker_changes == 2  # and closed


def test_local_hits_are_counted_apart(redis_url: str) -> None:
    # A frozen clock: the tier's trust in its invalidation connection cannot lapse between the reads on a busy machine.
    with CacheManager(redis_url, namespace="lt", local=LocalTier(clock=lambda: 0.0)) as cm:
        cm.set("k", 1)
        assert eventually(lambda: cm.get("k") == 1 and cm.local is not None and len(cm.local) == 1)
        cm.stats(reset=True)
        for _ in range(5):
            cm.get("k")
        stats = cm.stats()
        assert (stats.hits, stats.local_hits) == (5, 5)


def test_refresh_ahead_serves_are_counted_as_stale(manager: CacheManager) -> None:
    manager = CacheManager(settings=dataclasses.replace(manager.settings, ttl_jitter=0.0))  # TTLs exactly as set
    age = _ager(manager)
    cache = Cached("r", manager=manager, ttl=60)

    @cache.cached(refresh_ahead=0.5)
    def value(n: int) -> int:
        return n

    value(1)
    assert value(1) == 1  # just stored: over half the TTL left, a plain hit
    assert manager.stats().stale == 0
    age(35.0)  # 25 s of 60 left: due, far from expiring
    assert value(1) == 1  # served, and recomputed in the background
    assert manager.stats().stale == 1


def _ager(manager: CacheManager) -> Callable[[float], None]:
    """``age(seconds)`` takes ``seconds`` off every entry's remaining life: the memory store's injected clock, or
    ``PEXPIRE`` on Redis (no test sleeps against a TTL)."""
    store = manager._backend
    if isinstance(store, MemoryStore):
        clock = [100.0]
        store._clock = lambda: clock[0]  # swapped before anything is stored

        def age_in_memory(seconds: float) -> None:
            clock[0] += seconds

        return age_in_memory
    raw = redis.Redis.from_url(manager.settings.url)

    def age_in_redis(seconds: float) -> None:
        for key in raw.scan_iter("stashly:r:*"):
            left = raw.pttl(key)
            if left > seconds * 1000:
                assert raw.pexpire(key, left - int(seconds * 1000))

    return age_in_redis


def test_hit_latency_is_sampled_one_in_sixteen(manager: CacheManager) -> None:
    manager.set("k", 1)
    for _ in range(32):
        manager.get("k")
    stats = manager.stats()
    assert (stats.hits, stats.hit_latency.count) == (32, 2)


def test_histogram_quantiles_and_sums() -> None:
    counts = [0] * BUCKETS
    counts[10], counts[20] = 99, 1  # 99 calls under ~1 µs, one under ~1 ms
    histogram = Histogram(counts=tuple(counts), total=0.002)
    assert histogram.count == 100
    assert histogram.quantile(0.5) == pytest.approx(2**10 / 1e9)
    assert histogram.quantile(1.0) == pytest.approx(2**20 / 1e9)
    assert Histogram().quantile(0.5) is None
    assert (histogram + histogram).count == 200


def test_stats_are_immutable(manager: CacheManager) -> None:
    stats = manager.stats()
    with pytest.raises(AttributeError):
        stats.hits = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.namespaces["x"] = stats  # type: ignore[index]


def test_every_backend_error_counts_against_its_own_namespace(disposable_redis: RedisServer) -> None:
    with CacheManager(disposable_redis.url, namespace="default-ns") as cm:

        @Cached("auth", manager=cm).cached(lock=True)
        def profile(user_id: int) -> int:
            return user_id

        disposable_redis.stop()
        assert profile(1) == 1  # the read, the lock and its release all fail, and the call goes on
        assert cm.count("reports") == 0
        stats = cm.stats()
    assert stats.errors >= 3
    assert {name: s.errors for name, s in stats.namespaces.items() if s.errors} == {
        "auth": stats.errors - 1,
        "reports": 1,
    }
