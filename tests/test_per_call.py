"""Per-call control: ``fn.refresh(...)`` recomputes and stores one entry now, ``fn.bypass(...)`` skips the cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stashly import Cached, CacheManager

from tests.support import backend_url


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    with CacheManager(backend_url(request, request.param), namespace="pc") as manager:
        yield manager


class Source:
    def __init__(self) -> None:
        self.version = 0
        self.calls = 0

    def read(self, n: int) -> dict[str, int]:
        self.calls += 1
        return {"n": n, "v": self.version}


def test_refresh_recomputes_and_stores_whatever_is_stored(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=60, manager=manager)

    @cache.cached
    def lookup(n: int) -> dict[str, int]:
        return source.read(n)

    assert lookup(1) == {"n": 1, "v": 0}
    source.version = 1
    assert lookup(1) == {"n": 1, "v": 0}  # a hit: the entry is still the old one
    assert lookup.refresh(1) == {"n": 1, "v": 1}
    assert lookup(1) == {"n": 1, "v": 1}  # stored: a hit with the new value
    assert source.calls == 2
    assert lookup.refresh(2) == {"n": 2, "v": 1}  # no entry yet: it is stored all the same
    assert lookup(2) == {"n": 2, "v": 1}
    assert source.calls == 3


def test_bypass_neither_reads_nor_stores(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=60, manager=manager)

    @cache.cached
    def lookup(n: int) -> dict[str, int]:
        return source.read(n)

    assert lookup(1) == {"n": 1, "v": 0}
    source.version = 1
    assert lookup.bypass(1) == {"n": 1, "v": 1}  # computed, though a hit was there
    assert lookup(1) == {"n": 1, "v": 0}  # and not stored
    assert lookup.bypass(3) == {"n": 3, "v": 1}
    assert manager._backend.get(lookup.cache_key(3)) is None
    assert source.calls == 3


async def test_async_refresh_and_bypass(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=60, manager=manager)

    @cache.cached
    async def lookup(n: int) -> dict[str, int]:
        return source.read(n)

    assert await lookup(1) == {"n": 1, "v": 0}
    source.version = 1
    assert await lookup.bypass(1) == {"n": 1, "v": 1}
    assert await lookup(1) == {"n": 1, "v": 0}
    assert await lookup.refresh(1) == {"n": 1, "v": 1}
    assert await lookup(1) == {"n": 1, "v": 1}
    assert source.calls == 3


def test_methods_take_self_as_invalidate_does(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=60, manager=manager)

    class Service:
        def __cache_key__(self) -> str:
            return "service"

        @cache.cached
        def lookup(self, n: int) -> dict[str, int]:
            return source.read(n)

    service = Service()
    assert service.lookup(1) == {"n": 1, "v": 0}
    source.version = 1
    assert service.lookup.refresh(service, 1) == {"n": 1, "v": 1}
    assert service.lookup(1) == {"n": 1, "v": 1}
    assert Service.lookup.bypass(service, 1) == {"n": 1, "v": 1}
