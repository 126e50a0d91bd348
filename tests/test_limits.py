"""max_value_bytes: too large to store is an error for set, an uncached result for the decorator, a miss on read."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stashly import Cached, CacheManager, ValueTooLargeError


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    with CacheManager(url=url, namespace="limits", max_value_bytes=1000) as cm:
        yield cm


def test_set_refuses_a_value_over_the_limit(manager: CacheManager) -> None:
    manager.set("k", "old")
    with pytest.raises(ValueTooLargeError, match=r"stashly:limits:k.*max_value_bytes=1000"):
        manager.set("k", "x" * 2000)
    assert manager.get("k") == "old"
    manager.set("k", "x" * 900)
    assert manager.get("k") == "x" * 900


async def test_async_set_refuses_too(manager: CacheManager) -> None:
    with pytest.raises(ValueTooLargeError):
        await manager.aset("k", ["y" * 100] * 20)


def test_decorator_returns_a_large_result_uncached(manager: CacheManager, caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    @Cached(manager=manager).cached
    def big(n: int) -> str:
        nonlocal calls
        calls += 1
        return "z" * n

    with caplog.at_level(logging.WARNING, logger="stashly"):
        assert big(5000) == "z" * 5000
        assert big(5000) == "z" * 5000
    assert calls == 2
    assert "not cached" in caplog.text
    assert big(10) == big(10)
    assert calls == 3


def test_an_oversized_stored_value_is_a_miss(redis_url: str) -> None:
    with CacheManager(url=redis_url, namespace="limits") as writer:
        writer.set("k", "w" * 5000)
    with CacheManager(url=redis_url, namespace="limits", max_value_bytes=1000) as reader:
        assert reader.get("k", "absent") == "absent"
