"""The guarded store on one server (and Sentinel) keeps a value over ``STAGE_ABOVE`` bytes out of its script: the
value is SET under a staging key in the same write, and the script moves it onto the entry only if no invalidation
ran meanwhile. A smaller value goes inside the script, which writes only the entry."""

from __future__ import annotations

import logging
import threading

import pytest

from stashly import Cached, CacheManager
from stashly.backends.redis.commands import STAGE_ABOVE

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


@pytest.mark.parametrize("size", [10, STAGE_ABOVE + 1], ids=["inside the script", "staged"])
def test_an_invalidation_during_the_computation_drops_the_value(redis_server: RedisServer, size: int) -> None:
    with CacheManager(redis_server.url, namespace=f"sf-{size}") as manager:
        cache = Cached(f"sf-{size}", ttl=60, manager=manager)
        calls = []

        @cache.cached
        def value(n: int) -> str:
            calls.append(n)
            if len(calls) == 1:
                value.invalidate(n)  # as another process would, mid-computation
            return f"{len(calls)}".ljust(size, "x")

        assert value(2).startswith("1")
        assert value(2).startswith("2")  # the first result was not stored
        assert value(2).startswith("2")
        assert staging_keys(redis_server) == []


def test_a_small_fill_writes_only_its_entry(redis_server: RedisServer) -> None:
    with CacheManager(redis_server.url, namespace="sf-small") as manager, redis_server.client() as client:
        cache = Cached("sf-small", ttl=60, manager=manager)

        @cache.cached
        def small(n: int) -> str:
            return "x" * 300

        renames = client.info("commandstats").get("cmdstat_rename", {}).get("calls", 0)
        assert small(1) == "x" * 300
        assert small(1) == "x" * 300
        assert client.pttl(small.cache_key(1)) > 0
        assert client.info("commandstats").get("cmdstat_rename", {}).get("calls", 0) == renames
        assert manager.stats().hits == 1


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
        def value(n: int) -> str:
            threads.append(threading.get_ident())
            return str(n) * (STAGE_ABOVE + 1)  # staged, were RENAME granted

        assert value(3) == "3" * (STAGE_ABOVE + 1)
        assert value(3) == "3" * (STAGE_ABOVE + 1)  # stored the old way: a hit
        assert value(4) == "4" * (STAGE_ABOVE + 1)
        assert value(4) == "4" * (STAGE_ABOVE + 1)
    assert len(threads) == 2
    assert "refused RENAME" in caplog.text
    assert staging_keys(disposable_redis) == []
