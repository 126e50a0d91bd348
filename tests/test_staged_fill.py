"""The guarded store on one server (and Sentinel) keeps the value out of its script: the value is SET under a
staging key in the same write, and the script moves it onto the entry only if no invalidation ran meanwhile."""

from __future__ import annotations

import logging
import threading

import pytest

from stashly import Cached, CacheManager

from tests.harness.server import HOST, RedisServer


def staging_keys(server: RedisServer) -> list[bytes]:
    with server.client() as client:
        return list(client.scan_iter(match="stashly::fill:*"))


def test_a_fill_lands_through_its_staging_key_and_leaves_none_behind(redis_server: RedisServer) -> None:
    with CacheManager(redis_server.url, namespace="sf") as manager:
        cache = Cached("sf", ttl=60, manager=manager)

        @cache.cached
        def big(n: int) -> str:
            return "x" * 200_000

        assert big(1) == "x" * 200_000
        with redis_server.client() as client:
            assert client.pttl(big.cache_key(1)) > 0  # the TTL of the staged SET came with the value
            assert client.info("commandstats").get("cmdstat_rename", {}).get("calls", 0) >= 1
        assert big(1) == "x" * 200_000
        assert manager.stats().hits == 1
        assert staging_keys(redis_server) == []


def test_an_invalidation_during_the_computation_drops_the_staged_value(redis_server: RedisServer) -> None:
    with CacheManager(redis_server.url, namespace="sf") as manager:
        cache = Cached("sf", ttl=60, manager=manager)
        calls = []

        @cache.cached
        def value(n: int) -> int:
            calls.append(n)
            if len(calls) == 1:
                value.invalidate(n)  # as another process would, mid-computation
            return len(calls)

        assert value(2) == 1
        assert value(2) == 2  # the first result was not stored
        assert value(2) == 2
        assert staging_keys(redis_server) == []


def test_an_acl_without_rename_falls_back_to_the_value_inside_the_script(
    disposable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with disposable_redis.client() as admin:
        admin.execute_command("ACL", "SETUSER", "norename", "on", ">norename-pw", "+@all", "-rename", "~*", "&*")
    url = f"redis://norename:norename-pw@{HOST}:{disposable_redis.port}/0"
    with caplog.at_level(logging.WARNING, "stashly.redis"), CacheManager(url, namespace="sf") as manager:
        cache = Cached("sf", ttl=60, manager=manager)
        threads: list[int] = []

        @cache.cached
        def value(n: int) -> int:
            threads.append(threading.get_ident())
            return n * 10

        assert value(3) == 30
        assert value(3) == 30  # stored the old way: a hit
        assert value(4) == 40
        assert value(4) == 40
    assert len(threads) == 2
    assert "refused RENAME" in caplog.text
    assert staging_keys(disposable_redis) == []
