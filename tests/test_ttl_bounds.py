"""A TTL too large for Redis is refused where it is given, not accepted and then failing every write."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stashly import Cached, CacheManager

from tests.support import BACKENDS, backend_url

TOO_LONG = [1e17, 10**12, timedelta(days=365 * 1000)]


@pytest.fixture(params=BACKENDS)
def manager(request: pytest.FixtureRequest) -> CacheManager:
    return CacheManager(url=backend_url(request, request.param), strict=True)


@pytest.mark.parametrize("ttl", TOO_LONG, ids=str)
def test_set_refuses_a_ttl_redis_cannot_store(manager: CacheManager, ttl: float | timedelta) -> None:
    with pytest.raises(ValueError, match=r"at most 1e\+09"):
        manager.set("k", 1, ttl=ttl)
    assert manager.get("k") is None


def identity(n: int) -> int:
    return n


@pytest.mark.parametrize("ttl", TOO_LONG, ids=str)
def test_cached_refuses_it_when_decorating(manager: CacheManager, ttl: float | timedelta) -> None:
    with pytest.raises(ValueError, match=r"at most 1e\+09"):
        Cached(manager=manager, namespace="ttl").cached(ttl=ttl)(identity)


def test_the_longest_ttl_allowed_is_stored(manager: CacheManager) -> None:
    manager.set("k", 1, ttl=1e9)  # strict: a write Redis refused would raise
    assert manager.get("k") == 1
