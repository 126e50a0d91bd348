"""Fail-safe serving and factory timeouts: the last good value instead of an exception, never after an invalidation.

No test sleeps against a TTL: an entry past its logical expiry is written as such (the envelope's ``"fresh"`` in the
past), which is exactly what a reader finds once the TTL has run out. Timeouts are tested with functions blocked on
an event until the test releases them, so a deadline can only pass, never be beaten by a busy machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from stashly import Cached, CacheManager, ConfigError, FactoryTimeoutError
from stashly.storage import codec

from tests.support import aeventually, backend_url, eventually

pytestmark = pytest.mark.timeout(60)

TTL = 60.0
GRACE = 600.0


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    with CacheManager(backend_url(request, request.param), namespace="fs", ttl_jitter=0) as manager:
        yield manager


def plant_stale(manager: CacheManager, key: str, value: Any) -> None:
    """Store ``value`` under ``key`` as it is once its TTL ran out: logically expired, still in the fail-safe window."""
    raw = codec.encode(value, key, fresh_until=int(time.time() * 1000) - 1000)
    manager._backend.set(key, raw, GRACE)


class Source:
    """A function's source of truth: returns ``value``, or raises while ``failing``; counts its calls."""

    def __init__(self) -> None:
        self.value = "fresh"
        self.failing = False
        self.calls = 0

    def __call__(self, n: int) -> str:
        self.calls += 1
        if self.failing:
            raise ConnectionError("the database is down")
        return f"{self.value} {n}"


def cached(manager: CacheManager, source: Source, **options: Any) -> Any:
    def lookup(n: int) -> str:
        return source(n)

    return Cached("fs", ttl=TTL, manager=manager).cached(fail_safe=timedelta(seconds=GRACE), **options)(lookup)


def test_a_fill_stores_the_logical_expiry_and_keeps_the_entry_through_the_grace(manager: CacheManager) -> None:
    lookup = cached(manager, Source())
    before = time.time() * 1000
    assert lookup(1) == "fresh 1"
    raw = manager._backend.get(lookup.cache_key(1))
    assert raw is not None
    fresh = orjson.loads(raw)["fresh"]
    assert before + TTL * 1000 - 1 <= fresh <= time.time() * 1000 + TTL * 1000
    if not manager.settings.url.startswith("memory"):
        remaining = manager._backend.read(lookup.cache_key(1), None, True)[2]
        assert remaining is not None
        assert TTL < remaining <= TTL + GRACE


def test_a_fresh_entry_is_a_plain_hit(manager: CacheManager) -> None:
    source = Source()
    lookup = cached(manager, source)
    lookup(1)
    source.value = "newer"
    assert lookup(1) == "fresh 1"
    assert source.calls == 1


def test_past_its_ttl_it_is_recomputed_as_usual(manager: CacheManager) -> None:
    source = Source()
    lookup = cached(manager, source)
    plant_stale(manager, lookup.cache_key(1), "old 1")
    assert lookup(1) == "fresh 1"
    assert lookup(1) == "fresh 1"  # stored fresh
    assert source.calls == 1
    assert manager.stats().stale_serves == 0


def test_when_the_recomputation_raises_the_last_good_value_is_served(manager: CacheManager) -> None:
    source = Source()
    lookup = cached(manager, source, fail_safe_throttle=None)
    plant_stale(manager, lookup.cache_key(1), "old 1")
    source.failing = True
    assert lookup(1) == "old 1"
    assert lookup(1) == "old 1"
    assert source.calls == 2  # the exception is never cached: without a throttle each call tries again
    assert manager.stats().stale_serves == 2
    source.failing = False
    assert lookup(1) == "fresh 1"


def test_after_a_failure_the_last_good_value_is_kept_fresh_for_the_throttle(manager: CacheManager) -> None:
    source = Source()
    lookup = cached(manager, source)  # fail_safe_throttle: 5 s by default
    plant_stale(manager, lookup.cache_key(1), "old 1")
    source.failing = True
    for _ in range(5):
        assert lookup(1) == "old 1"
    assert source.calls == 1  # the failing source was asked once, not on every call
    assert manager.stats().stale_serves == 1
    assert manager.get(lookup.cache_key(1).removeprefix("stashly:fs:"), namespace="fs") == "old 1"  # fresh again
    lookup.invalidate(1)  # an invalidation still removes it, throttle or not
    with pytest.raises(ConnectionError):
        lookup(1)


def test_without_a_last_good_value_the_exception_reaches_the_caller(manager: CacheManager) -> None:
    source = Source()
    source.failing = True
    with pytest.raises(ConnectionError):
        cached(manager, source)(1)


@pytest.mark.parametrize("how", ["invalidate", "flush-scan", "flush-versioned"])
def test_an_invalidation_removes_the_fail_safe_copy_too(manager: CacheManager, how: str) -> None:
    source = Source()
    lookup = cached(manager, source)
    plant_stale(manager, lookup.cache_key(1), "old 1")
    if how == "invalidate":
        lookup.invalidate(1)
    else:
        manager.flush_namespace("fs", mode="scan" if how == "flush-scan" else "versioned")
    source.failing = True
    with pytest.raises(ConnectionError):  # fail-safe never resurrects invalidated data
        lookup(1)


def test_other_readers_treat_an_expired_entry_as_a_miss(manager: CacheManager) -> None:
    key = manager.key("k", namespace="fs")
    plant_stale(manager, key, "old")
    assert manager.get("k", "absent", namespace="fs") == "absent"
    assert manager.get_many(["k"], namespace="fs") == {}
    plain = Cached("fs", ttl=TTL, manager=manager).cached(lambda n: "recomputed", key="k")
    assert plain(1) == "recomputed"  # a function without fail_safe recomputes it, as at any expiry


def test_fail_safe_composes_with_the_stampede_lock(manager: CacheManager) -> None:
    source = Source()
    lookup = cached(manager, source, lock=True)
    plant_stale(manager, lookup.cache_key(1), "old 1")
    source.failing = True
    assert lookup(1) == "old 1"
    assert manager.stats().stale_serves == 1


def test_soft_timeout_serves_the_last_good_value_and_stores_the_late_result(manager: CacheManager) -> None:
    release = threading.Event()

    def slow(n: int) -> str:
        release.wait(30)
        return f"late {n}"

    lookup = Cached("fs", ttl=TTL, manager=manager).cached(fail_safe=GRACE, soft_timeout=0.05)(slow)
    plant_stale(manager, lookup.cache_key(1), "old 1")
    assert lookup(1) == "old 1"  # the function is still blocked: only the deadline can have passed
    release.set()
    assert eventually(lambda: manager._backend.get(lookup.cache_key(1)) is not None and lookup(1) == "late 1")
    assert manager.stats().stale_serves == 1


def test_hard_timeout_raises_a_typed_error_and_the_result_is_still_stored(manager: CacheManager) -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow(n: int) -> str:
        calls.append(n)
        release.wait(30)
        return f"late {n}"

    lookup = Cached("fs", ttl=TTL, manager=manager).cached(hard_timeout=timedelta(milliseconds=50))(slow)
    with pytest.raises(FactoryTimeoutError, match="hard_timeout"):
        lookup(1)
    release.set()
    assert eventually(lambda: lookup(1) == "late 1")
    assert calls == [1]  # the background computation was the only one, and it stored its result


async def test_async_fail_safe_and_timeouts(manager: CacheManager) -> None:
    release = asyncio.Event()
    failing = True

    async def lookup(n: int) -> str:
        if failing:
            raise ConnectionError("down")
        await release.wait()
        return f"late {n}"

    cache = Cached("fs", ttl=TTL, manager=manager)
    safe = cache.cached(fail_safe=GRACE, fail_safe_throttle=None, soft_timeout=0.05)(lookup)
    plant_stale(manager, safe.cache_key(1), "old 1")
    assert await safe(1) == "old 1"  # raised: the last good value
    failing = False
    assert await safe(1) == "old 1"  # blocked past soft_timeout: the last good value, the task goes on
    release.set()
    assert await aeventually(lambda: _is(safe(1), "late 1"))
    hard = cache.cached(hard_timeout=0.05, key="hard:{n}")(lookup)
    release.clear()
    with pytest.raises(FactoryTimeoutError):
        await hard(2)
    release.set()
    assert await aeventually(lambda: _is(hard(2), "late 2"))
    assert manager.stats().stale_serves == 2


async def _is(result: Any, expected: str) -> bool:
    return bool(await result == expected)


def identity(n: int) -> int:
    return n


def test_options_are_checked_at_decoration(manager: CacheManager) -> None:
    cache = Cached("fs", manager=manager)
    with pytest.raises(ValueError, match="soft_timeout needs fail_safe"):
        cache.cached(soft_timeout=1)(identity)
    for option in ("fail_safe", "fail_safe_throttle", "soft_timeout", "hard_timeout"):
        for bad in (0, -1, float("inf"), True, "1"):
            with pytest.raises(ValueError, match=option):
                cache.cached(**{option: bad, "fail_safe": 10} if option == "soft_timeout" else {option: bad})(identity)


def test_fail_safe_needs_the_json_serializer() -> None:
    secret = "a-pickle-signing-secret-of-32-bytes-or-more"
    with CacheManager("memory://", serializer="pickle", secrets=[secret]) as manager:
        lookup = Cached("fs", manager=manager).cached(fail_safe=60)(identity)
        with pytest.raises(ConfigError, match="fail_safe needs the JSON serializer"):
            lookup(1)


async def test_an_http_endpoint_says_stale(manager: CacheManager) -> None:
    source = Source()
    app = FastAPI()
    cache = Cached("fs", ttl=TTL, manager=manager)

    @app.get("/rate/{n}")
    @cache.cached(http=True, fail_safe=GRACE)
    async def rate(n: int) -> dict[str, str]:
        return {"rate": source(n)}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        first = await http.get("/rate/1")
        assert (first.json(), first.headers["x-cache"]) == ({"rate": "fresh 1"}, "MISS")
        key = rate.cache_key(1)
        entry = orjson.loads(manager._backend.get(key) or b"{}")["value"]
        plant_stale(manager, key, entry)
        source.failing = True
        stale = await http.get("/rate/1")
    assert (stale.status_code, stale.json(), stale.headers["x-cache"]) == (200, {"rate": "fresh 1"}, "STALE")
    assert stale.headers["cache-control"].endswith("max-age=0")


def test_fail_safe_through_the_local_tier(redis_url: str) -> None:
    from stashly import LocalTier

    with CacheManager(redis_url, namespace="fs", ttl_jitter=0, local=LocalTier(clock=lambda: 0.0)) as manager:
        source = Source()
        lookup = cached(manager, source, fail_safe_throttle=None)
        plant_stale(manager, lookup.cache_key(1), "old 1")
        source.failing = True
        for _ in range(3):  # whether the tier or Redis answers, the entry is past its TTL: the fallback
            assert lookup(1) == "old 1"
        source.failing = False
        assert lookup(1) == "fresh 1"
        assert eventually(lambda: lookup(1) == "fresh 1" and source.calls == 4)


def test_refresh_ahead_is_due_against_the_logical_ttl(manager: CacheManager) -> None:
    source = Source()
    lookup = cached(manager, source, refresh_ahead=0.5)
    lookup(1)
    assert lookup(1) == "fresh 1"
    assert manager.stats().stale == 0  # 60 s fresh of 60 (the 600 s grace does not count): not due


def test_callers_waiting_with_a_deadline_share_one_worker_thread(manager: CacheManager) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(n: int) -> str:
        started.set()
        release.wait(30)
        return f"late {n}"

    lookup = Cached("fs", ttl=TTL, manager=manager).cached(hard_timeout=0.05)(slow)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            lookup(1)
        except FactoryTimeoutError as exc:
            errors.append(exc)

    callers = [threading.Thread(target=call) for _ in range(5)]
    for caller in callers:
        caller.start()
    assert started.wait(10)
    workers = [t for t in threading.enumerate() if t.name == "stashly-fill"]
    release.set()
    for caller in callers:
        caller.join(10)
    assert len(workers) == 1  # one computation in flight, one thread for it


def test_the_throttle_never_extends_an_entry_past_its_own_end(manager: CacheManager) -> None:
    source = Source()
    lookup = cached(manager, source)  # throttle 5 s, grace 600 s: a re-store would outlive the entry by far
    key = lookup.cache_key(1)
    raw = codec.encode("old 1", key, fresh_until=int(time.time() * 1000) - 1000)
    manager._backend.set(key, raw, 100.0)  # past its TTL, 100 s left of its fail-safe window
    source.failing = True
    assert lookup(1) == "old 1"
    remaining = manager._backend.read(key, None, True)[2]
    assert remaining is not None
    assert remaining <= 100.0  # re-stored for the throttle, but never beyond ttl + fail_safe of the original
