"""lock=True: across processes one computes a missing entry, the others wait; dead and slow holders."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stashly import Cached, CacheManager, CacheUnavailableError

from tests.harness.server import RedisServer
from tests.support import BACKENDS, backend_url

pytestmark = pytest.mark.timeout(60)


def decorate_like_a_process(manager: CacheManager, body: Callable[[int], Any], **options: Any) -> Any:
    """A fresh decoration of the same function: its own single-flight, as in another process."""

    def report(n: int) -> Any:
        return body(n)

    report.__qualname__ = "report"
    return Cached(manager=manager, namespace="stampede").cached(lock=True, **options)(report)


@pytest.fixture(params=BACKENDS)
def manager(request: pytest.FixtureRequest) -> CacheManager:
    url = backend_url(request, request.param)
    return CacheManager(url=url)


def test_one_computes_the_others_wait(manager: CacheManager) -> None:
    computed: list[int] = []

    def body(n: int) -> dict[str, int]:
        computed.append(n)
        time.sleep(0.3)
        return {"n": n}

    callers = [decorate_like_a_process(manager, body) for _ in range(6)]
    results: list[Any] = []
    threads = [threading.Thread(target=lambda f=f: results.append(f(7))) for f in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [{"n": 7}] * 6
    assert computed == [7]


async def test_async_one_computes_the_others_wait(manager: CacheManager) -> None:
    computed: list[int] = []

    def make() -> Any:
        async def report(n: int) -> dict[str, int]:
            computed.append(n)
            await asyncio.sleep(0.3)
            return {"n": n}

        report.__qualname__ = "areport"
        return Cached(manager=manager, namespace="stampede").cached(lock=True)(report)

    results = await asyncio.gather(*(make()(3) for _ in range(6)))
    assert results == [{"n": 3}] * 6
    assert computed == [3]


def test_a_dead_holder_is_taken_over_after_its_lease(redis_url: str) -> None:
    manager = CacheManager(url=redis_url)
    marker = redis.Redis.from_url(redis_url)

    def body(n: int) -> int:
        marker.incr("computations")
        if os.environ.get("STASHLY_TEST_DIE"):
            os._exit(3)  # the holder dies mid-computation, lock held
        return n * 2

    holder = decorate_like_a_process(manager, body, lock_lease=0.5)
    pid = os.fork()
    if pid == 0:
        os.environ["STASHLY_TEST_DIE"] = "1"
        holder(21)
        os._exit(0)
    deadline = time.monotonic() + 10
    while marker.get("computations") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    waiter = decorate_like_a_process(manager, body, lock_lease=0.5)
    assert waiter(21) == 42  # waited for the dead holder's lease, then computed itself
    assert int(marker.get("computations") or 0) == 2
    assert waiter(21) == 42
    assert int(marker.get("computations") or 0) == 2
    marker.close()
    manager.close()


def test_a_holder_slower_than_its_lease_cannot_overwrite_the_takeover(manager: CacheManager) -> None:
    release_slow, slow_started = threading.Event(), threading.Event()
    versions = iter(["slow holder's stale value", "takeover value"])
    lock = threading.Lock()

    def body(n: int) -> str:
        with lock:
            mine = next(versions)
        if mine.startswith("slow"):
            slow_started.set()
            release_slow.wait(10)
        return mine

    slow = decorate_like_a_process(manager, body, lock_lease=0.2)
    fast = decorate_like_a_process(manager, body, lock_lease=30)  # however busy the machine, its lease holds
    slow_result: list[str] = []
    slow_thread = threading.Thread(target=lambda: slow_result.append(slow(1)))
    slow_thread.start()
    assert slow_started.wait(10)  # the slow holder has the lock and is computing
    assert fast(1) == "takeover value"  # waited out the 0.2 s lease, then computed and stored
    release_slow.set()
    slow_thread.join(10)
    assert slow_result == ["slow holder's stale value"]
    assert fast(1) == "takeover value"  # the slow holder's late store was fenced off


def test_lock_lease_is_validated(manager: CacheManager) -> None:
    with pytest.raises(ValueError, match="lock_lease"):
        decorate_like_a_process(manager, lambda n: n, lock_lease=0)


# -- a backend that refuses the lock ------------------------------------------------------------------------

NO_LOCK_USER, NO_LOCK_PASSWORD = "nolock", "nolock-pw"


@pytest.fixture
def lock_refusing_url() -> Iterator[str]:
    """A server whose user may do everything stashly does except write a stampede lock (``SET NX`` gets
    ``NOPERM``): entries, guards and generations are writable, ``stashly::lock:*`` keys only readable."""
    with RedisServer() as server:
        with server.client() as admin:
            admin.execute_command(
                "ACL", "SETUSER", NO_LOCK_USER, "reset", "on", f">{NO_LOCK_PASSWORD}", "+@all",
                "~stashly:[^:]*", "~stashly::[^l]*", "%R~stashly::lock:*",
            )  # fmt: skip
        yield f"redis://{NO_LOCK_USER}:{NO_LOCK_PASSWORD}@127.0.0.1:{server.port}/0"


def test_a_refused_lock_raises_in_strict_mode(lock_refusing_url: str) -> None:
    computed: list[int] = []

    def body(n: int) -> int:
        computed.append(n)
        return n

    with CacheManager(url=lock_refusing_url, strict=True) as manager:
        f = decorate_like_a_process(manager, body)
        with pytest.raises(CacheUnavailableError, match="SET NX"):
            f(1)
    assert computed == []


async def test_a_refused_lock_raises_in_strict_mode_async(lock_refusing_url: str) -> None:
    async def report(n: int) -> int:
        return n

    async with CacheManager(url=lock_refusing_url, strict=True) as manager:
        f = Cached(manager=manager, namespace="stampede").cached(lock=True)(report)
        with pytest.raises(CacheUnavailableError, match="SET NX"):
            await f(1)


def test_a_refused_lock_is_logged_and_counted_and_the_value_still_cached(
    lock_refusing_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not strict: the caller gets its value, the refusal is a logged, counted error, and the store (fenced by
    the guard token as without ``lock=True``) still happens: the function is not run uncached forever."""
    computed: list[int] = []

    def body(n: int) -> int:
        computed.append(n)
        return n * 2

    with CacheManager(url=lock_refusing_url) as manager:
        f = decorate_like_a_process(manager, body)
        with caplog.at_level(logging.WARNING, logger="stashly"):
            assert f(4) == 8
        assert "lock" in caplog.text
        assert "NOPERM" in caplog.text or "permission" in caplog.text
        assert manager.stats().errors == 1
        assert f(4) == 8
        assert computed == [4]  # the second call was a hit


async def test_a_refused_lock_still_caches_async(lock_refusing_url: str) -> None:
    computed: list[int] = []

    async def report(n: int) -> int:
        computed.append(n)
        return n * 2

    async with CacheManager(url=lock_refusing_url) as manager:
        f = Cached(manager=manager, namespace="stampede").cached(lock=True)(report)
        assert await f(4) == 8
        assert await f(4) == 8
        assert computed == [4]
        assert manager.stats().errors == 1
