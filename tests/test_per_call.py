"""Per-call control: ``fn.refresh(...)`` recomputes and stores one entry now, ``fn.bypass(...)`` skips the cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stashly import Cached, CacheManager, LocalTier
from stashly.storage import codec

from tests.support import backend_url, eventually


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


def _age(manager: CacheManager, key: str, seconds: float) -> None:
    """Make the stored entry under ``key`` look ``seconds`` older: its ``"at"`` stamp rewritten (TTL kept long)."""
    raw = manager._backend.get(key)
    assert raw is not None
    at = codec.born(raw)
    assert at is not None
    older = raw.replace(b'"at":%d,' % at, b'"at":%d,' % (at - int(seconds * 1000)), 1)
    manager._backend.set(key, older, 60)


def test_max_age_accepts_a_young_entry_and_recomputes_an_old_one(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=600, manager=manager)

    @cache.cached
    def lookup(n: int) -> dict[str, int]:
        return source.read(n)

    assert lookup(1) == {"n": 1, "v": 0}
    source.version = 1
    assert lookup.max_age(300)(1) == {"n": 1, "v": 0}  # young enough: the hit
    _age(manager, lookup.cache_key(1), 120)
    assert lookup.max_age(300)(1) == {"n": 1, "v": 0}  # 120 s old, 300 s allowed
    assert lookup(1) == {"n": 1, "v": 0}  # a plain call takes any live entry
    assert lookup.max_age(60)(1) == {"n": 1, "v": 1}  # too old: recomputed...
    assert lookup(1) == {"n": 1, "v": 1}  # ...and stored
    assert source.calls == 2
    assert lookup.max_age(60)(2) == {"n": 2, "v": 1}  # no entry: an ordinary miss, stored
    assert lookup(2) == {"n": 2, "v": 1}
    assert source.calls == 3


def test_an_entry_without_a_stamp_is_too_old_for_any_max_age(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=600, manager=manager)

    @cache.cached
    def lookup(n: int) -> dict[str, int]:
        return source.read(n)

    key = lookup.cache_key(1)
    manager._backend.set(key, b'{"stashly":1,"key":"%b","value":{"n":1,"v":-1}}' % codec.binding(key), 60)
    assert lookup(1) == {"n": 1, "v": -1}  # a valid entry of the format before stamps
    assert lookup.max_age(3600)(1) == {"n": 1, "v": 0}
    assert lookup(1) == {"n": 1, "v": 0}


def test_max_age_counts_a_rejected_entry_as_a_miss(manager: CacheManager) -> None:
    cache = Cached("pc", ttl=600, manager=manager)

    @cache.cached
    def lookup(n: int) -> int:
        return n

    lookup(1)
    _age(manager, lookup.cache_key(1), 30)
    before = manager.stats()
    lookup.max_age(10)(1)
    after = manager.stats()
    assert after.hits == before.hits
    assert after.misses == before.misses + 1


async def test_async_max_age(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=600, manager=manager)

    @cache.cached
    async def lookup(n: int) -> dict[str, int]:
        return source.read(n)

    assert await lookup(1) == {"n": 1, "v": 0}
    source.version = 1
    assert await lookup.max_age(300)(1) == {"n": 1, "v": 0}
    _age(manager, lookup.cache_key(1), 120)
    assert await lookup.max_age(60)(1) == {"n": 1, "v": 1}
    assert await lookup(1) == {"n": 1, "v": 1}
    assert source.calls == 2


def test_max_age_on_methods_takes_self_first(manager: CacheManager) -> None:
    source = Source()
    cache = Cached("pc", ttl=600, manager=manager)

    class Service:
        def __cache_key__(self) -> str:
            return "service"

        @cache.cached
        def lookup(self, n: int) -> dict[str, int]:
            return source.read(n)

        @classmethod
        @cache.cached
        def shared(cls, n: int) -> dict[str, int]:
            return source.read(n)

    service = Service()
    assert service.lookup(1) == {"n": 1, "v": 0}
    assert Service.shared(1) == {"n": 1, "v": 0}
    source.version = 1
    _age(manager, Service.lookup.cache_key(service, 1), 120)
    assert service.lookup.max_age(60)(service, 1) == {"n": 1, "v": 1}
    assert service.lookup(1) == {"n": 1, "v": 1}
    _age(manager, Service.shared.cache_key(Service, 1), 120)
    assert Service.shared.max_age(60)(Service, 1) == {"n": 1, "v": 1}


def test_max_age_is_checked(manager: CacheManager) -> None:
    cache = Cached("pc", ttl=600, manager=manager)

    @cache.cached
    def lookup(n: int) -> int:
        return n

    for bad in [-1, float("inf"), float("nan"), True, "5"]:
        with pytest.raises(ValueError, match="max_age must be a number of seconds"):
            lookup.max_age(bad)  # type: ignore[arg-type]
    assert lookup.max_age(0)(3) == 3


def test_max_age_never_serves_an_older_fail_safe_fallback(manager: CacheManager) -> None:
    cache = Cached("pc", ttl=600, manager=manager)
    failing = False

    @cache.cached(fail_safe=600)
    def lookup(n: int) -> int:
        if failing:
            raise RuntimeError("source down")
        return n

    assert lookup(1) == 1
    _age(manager, lookup.cache_key(1), 120)
    failing = True
    with pytest.raises(RuntimeError, match="source down"):
        lookup.max_age(60)(1)
    assert lookup(1) == 1  # the plain call still has its live entry


def test_max_age_reads_the_stamp_of_a_local_tier_copy(redis_url: str) -> None:
    source = Source()
    with CacheManager(redis_url, namespace="pc", local=LocalTier(ttl=60)) as manager:
        cache = Cached("pc", ttl=600, manager=manager)

        @cache.cached
        def lookup(n: int) -> dict[str, int]:
            return source.read(n)

        tier, key = manager.local, lookup.cache_key(1)
        assert tier is not None
        assert eventually(lambda: lookup(1) == {"n": 1, "v": 0} and tier.lookup(key) is not None)
        source.version = 1
        assert lookup.max_age(300)(1) == {"n": 1, "v": 0}  # the tier's copy is young: no recomputation
        assert source.calls == 1
        _age(manager, key, 120)  # written through the tier: Redis and the tier hold the older stamp
        assert eventually(lambda: lookup(1) == {"n": 1, "v": 0} and tier.lookup(key) is not None)
        assert lookup.max_age(60)(1) == {"n": 1, "v": 1}
        assert source.calls == 2
