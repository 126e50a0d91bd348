"""Concurrent async reads of one key share round trips, on a real redis-server, and stay fresh."""

from __future__ import annotations

import asyncio

import pytest

from stashly import Cached, CacheManager

from tests.harness.proxy import SlowProxy
from tests.harness.server import RedisServer
from tests.support import aeventually

pytestmark = pytest.mark.timeout(60)


def reads_sent(server: RedisServer) -> int:
    with server.client() as admin:
        stats = admin.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


async def test_a_hundred_callers_of_one_hot_key_cost_a_couple_of_reads(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with CacheManager(redis_url, namespace="hot") as cm:
        await cm.aset("k", {"id": 1})
        await cm.aget("k")  # connected
        before = reads_sent(redis_server)
        answers = await asyncio.gather(*(cm.aget("k") for _ in range(100)))
        assert answers == [{"id": 1}] * 100
        assert reads_sent(redis_server) - before <= 3
        answers[0]["id"] = 2  # each caller decoded its own copy
        assert answers[1] == {"id": 1}


async def test_decorated_hits_on_a_hot_key_are_coalesced_too(redis_url: str, redis_server: RedisServer) -> None:
    calls = 0
    async with CacheManager(redis_url, namespace="hot") as cm:

        @Cached(manager=cm).cached
        async def profile(user_id: int) -> dict[str, int]:
            nonlocal calls
            calls += 1
            return {"id": user_id}

        assert await profile(1) == {"id": 1}
        before = reads_sent(redis_server)
        assert await asyncio.gather(*(profile(1) for _ in range(100))) == [{"id": 1}] * 100
        assert reads_sent(redis_server) - before <= 3
        assert calls == 1


async def test_a_caller_arriving_after_a_write_never_gets_the_read_already_in_flight(
    redis_url: str, redis_server: RedisServer
) -> None:
    with SlowProxy(redis_server.port) as proxy:
        async with CacheManager(proxy.url, namespace="fresh") as reader:
            with CacheManager(redis_url, namespace="fresh", strict=True) as writer:
                writer.set("k", "old")
                assert await reader.aget("k") == "old"  # connected through the proxy
                proxy.hold()
                sent = reads_sent(redis_server)
                first = asyncio.create_task(reader.aget("k"))
                assert await aeventually(lambda: reads_sent(redis_server) > sent)  # Redis answered it; the proxy holds
                writer.set("k", "new")
                second = asyncio.create_task(reader.aget("k"))
                await asyncio.sleep(0)  # it has asked, and waits behind the read in flight
                proxy.release()
                assert await first == "old"
                assert await second == "new"  # never the answer of the read sent before it came


async def test_cancelled_waiters_leave_the_shared_read_alone(redis_url: str, redis_server: RedisServer) -> None:
    with SlowProxy(redis_server.port) as proxy:
        async with CacheManager(proxy.url, namespace="cancel") as cm:
            await cm.aset("k", "v")
            await cm.aget("k")
            proxy.hold()
            sent = reads_sent(redis_server)
            tasks = [asyncio.create_task(cm.aget("k")) for _ in range(20)]
            assert await aeventually(lambda: reads_sent(redis_server) > sent)  # the shared read is in flight, held
            for task in tasks[::2]:
                task.cancel()
            proxy.release()
            results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])
    assert results[1::2] == ["v"] * 10


async def test_a_dead_server_fails_every_waiter_open(disposable_redis: RedisServer) -> None:
    async with CacheManager(disposable_redis.url, namespace="dead") as cm:
        await cm.aset("k", "v")
        disposable_redis.stop()
        answers = await asyncio.gather(*(cm.aget("k", "fallback") for _ in range(50)))
    assert answers == ["fallback"] * 50
