"""The backend contract, one suite over memory|redis x sync|async, plus each backend's own guarantees.

Every key lives under ``stashly:``, the only keys the least-privilege ACL user may touch (``STASHLY_TEST_ACL=1``).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import os
import threading
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from stashly import CacheUnavailableError
from stashly.backends.memory import AsyncMemoryBackend, MemoryStore
from stashly.backends.redis import AsyncRedisBackend, RedisBackend, RedisOptions, escape_glob
from stashly.backends.redis.commands import unavailable

from tests.harness.server import RedisServer
from tests.support import GENEROUS, aeventually, pttl_after_store

pytestmark = pytest.mark.timeout(60)

K = "stashly:"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Both:
    """A sync or an async backend behind one awaitable face, with what a test needs to inspect it."""

    def __init__(self, backend: Any, clock: FakeClock | None = None, admin: redis.Redis | None = None) -> None:
        self.backend = backend
        self.clock = clock  # memory: time is moved by hand
        self.admin = admin  # redis: an unrestricted client of the same server

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        async def call(*args: Any) -> Any:
            result = method(*args)
            return await result if inspect.isawaitable(result) else result

        return call


@pytest.fixture(params=["memory-sync", "memory-async", "redis-sync", "redis-async"])
def backend(request: pytest.FixtureRequest) -> Iterator[Both]:
    kind, mode = str(request.param).split("-")
    if kind == "memory":
        clock = FakeClock()
        store = MemoryStore(max_entries=100_000, clock=clock)
        yield Both(store if mode == "sync" else AsyncMemoryBackend(store), clock=clock)
        return
    options = RedisOptions(url=request.getfixturevalue("redis_url"), **GENEROUS)
    server: RedisServer = request.getfixturevalue("redis_server")
    with server.client() as admin:
        if mode == "sync":
            sync = RedisBackend(options)
            yield Both(sync, admin=admin)
            sync.close()
        else:
            # closed by its event loop's shutdown (pytest-asyncio runs each test in an asyncio.Runner)
            yield Both(AsyncRedisBackend(options), admin=admin)


async def _absent(backend: Both, key: str) -> bool:
    return await backend.get(key) is None


async def test_roundtrip_overwrite_delete(backend: Both) -> None:
    assert await backend.get(K + "k") is None
    for value in [b"", b"\x00\xff not utf-8", b"x" * 100_000, b"last"]:
        await backend.set(K + "k", value, 60)
        assert await backend.get(K + "k") == value
    assert await backend.delete(K + "k") is True
    assert await backend.delete(K + "k") is False
    assert await backend.get(K + "k") is None


async def test_expiry(backend: Both) -> None:
    await backend.set(K + "short", b"v", 0.05)
    await backend.set(K + "forever", b"v", None)
    if backend.clock is not None:
        backend.clock.now += 0.049
        assert await backend.get(K + "short") == b"v"
        backend.clock.now += 1e9
        assert await backend.get(K + "short") is None
    else:
        assert await aeventually(lambda: _absent(backend, K + "short"))
    assert await backend.get(K + "forever") == b"v"
    if backend.admin is not None:
        assert backend.admin.ttl(K + "forever") == -1


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf])
async def test_ttl_must_be_positive_and_finite(backend: Both, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await backend.set(K + "k", b"v", ttl)
    assert await backend.get(K + "k") is None


async def test_delete_prefix_is_literal_and_exact(backend: Both) -> None:
    glob_prefix = K + "n*s?[x]\\:"
    # Matched by the *unescaped* pattern glob_prefix + "*", so they survive only if the prefix is taken literally.
    decoys = [K + "nAAsBx:k", K + "nsQx:k"]
    keep = [K + "ns10:x", K + "ns2:x", K + "other", K + "ns1", K + "n*s?[x]:k", *decoys]
    doomed = [K + "ns1:a", K + "ns1:b:c"]
    glob_doomed = [glob_prefix + "k1", glob_prefix + "k2"]
    for key in keep + doomed + glob_doomed:
        await backend.set(key, b"v", 60)
    if backend.admin is not None:
        unescaped = {key.decode() for key in backend.admin.scan_iter(match=glob_prefix + "*")}
        assert set(decoys) <= unescaped
    assert await backend.delete_prefix(K + "ns1:") == 2
    assert await backend.delete_prefix(glob_prefix) == 2
    assert await backend.delete_prefix(K + "nothing:") == 0
    for key in keep:
        assert await backend.get(key) == b"v", key
    for key in doomed + glob_doomed:
        assert await backend.get(key) is None, key


async def test_delete_prefix_10000_keys(backend: Both) -> None:
    if backend.admin is not None:
        backend.admin.mset({f"{K}big:{i}": b"v" for i in range(10_000)})
    else:
        for i in range(10_000):
            await backend.set(f"{K}big:{i}", b"v", 60)
    await backend.set(K + "bigger", b"v", 60)
    assert await backend.delete_prefix(K + "big:") == 10_000
    assert await backend.get(K + "big:5") is None
    assert await backend.get(K + "bigger") == b"v"


def test_escape_glob() -> None:
    assert escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"


# -- memory ------------------------------------------------------------------------------------------------


def test_memory_locks_released_after_their_lease_are_not_kept() -> None:
    """A holder slower than its lease releases a lock that ran out: nothing of it stays behind."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for n in range(1000):
        assert store.acquire(f"lock:{n}", b"me", 1)
        clock.now += 2
        store.release(f"lock:{n}", b"me")
        assert store.acquire(f"other:{n}", b"me", 1)
        clock.now += 2
        assert store.fill(f"k:{n}", b"v", 10, "g", None, (f"other:{n}", b"me")) is False  # fenced off, and forgotten
    assert store._locks == {}


def test_memory_expired_entries_are_not_counted_as_removed() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set("p:a", b"v", 1)
    store.set("p:b", b"v", 10)
    store.set("gone", b"v", 1)
    clock.now += 5
    assert store.delete_prefix("p:") == 1
    assert len(store) == 1  # "gone" is dropped when next met, not on a timer
    assert store.get("gone") is None
    assert len(store) == 0
    store.set("gone", b"v", 1)
    clock.now += 5
    assert store.delete("gone") is False


def test_memory_lru_eviction() -> None:
    store = MemoryStore(max_entries=3)
    for key in "abc":
        store.set(key, b"v", 60)
    assert store.get("a") == b"v"  # a is now the most recently used
    store.set("d", b"v", 60)
    assert store.get("b") is None
    assert [store.get(k) for k in "acd"] == [b"v"] * 3
    assert len(store) == 3
    store.set("c", b"new", 60)  # an overwrite counts as a use
    store.set("e", b"v", 60)
    assert [store.get(k) for k in "acde"] == [None, b"new", b"v", b"v"]


async def test_memory_sync_and_async_share_entries() -> None:
    store = MemoryStore()
    async_store = AsyncMemoryBackend(store)
    store.set("k", b"sync", 60)
    assert await async_store.get("k") == b"sync"
    await async_store.set("k", b"async", 60)
    assert store.get("k") == b"async"
    assert await async_store.delete_prefix("") == 1
    assert len(store) == 0


def test_memory_is_safe_under_threads() -> None:
    store = MemoryStore(max_entries=500)

    def hammer(n: int) -> None:
        for i in range(2000):
            store.set(f"{n}:{i % 700}", b"v", 60)
            store.get(f"{(n + 1) % 8}:{i % 700}")
            if i % 100 == 0:
                store.delete_prefix(f"{n}:1")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) <= 500


# -- redis ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_subsecond_ttl_is_px(redis_url: str, redis_server: RedisServer, mode: str) -> None:
    options = RedisOptions(url=redis_url, **GENEROUS)
    backend = Both(RedisBackend(options) if mode == "sync" else AsyncRedisBackend(options))
    await backend.set(K + "forever", b"v", None)
    with redis_server.client() as client:
        assert 0 < await pttl_after_store(lambda: backend.set(K + "k", b"v", 0.5), lambda: client.pttl(K + "k")) <= 500
        assert client.ttl(K + "forever") == -1
    await backend.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_stopped_and_started_again(disposable_redis: RedisServer, mode: str) -> None:
    options = RedisOptions(url=disposable_redis.url, **GENEROUS)
    backend = Both(RedisBackend(options) if mode == "sync" else AsyncRedisBackend(options))
    await backend.set(K + "k", b"v", 60)
    disposable_redis.stop()
    operations: list[tuple[str, tuple[Any, ...]]] = [
        ("get", (K + "k",)),
        ("set", (K + "k", b"v", 60)),
        ("delete", (K + "k",)),
        ("delete_prefix", (K,)),
    ]
    for operation, args in operations:
        with pytest.raises(CacheUnavailableError, match="redis") as caught:
            await getattr(backend, operation)(*args)
        assert isinstance(caught.value.__cause__, redis.RedisError | OSError)
    disposable_redis.start()
    assert await backend.get(K + "k") is None  # a new server: data gone, connection re-established
    await backend.set(K + "k", b"again", 60)
    assert await backend.get(K + "k") == b"again"
    await backend.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_restart_under_idle_connections(disposable_redis: RedisServer, mode: str) -> None:
    """Pooled connections die with the server; the first call after a restart succeeds (one immediate resend)."""
    options = RedisOptions(url=disposable_redis.url, **GENEROUS)
    backend = Both(RedisBackend(options) if mode == "sync" else AsyncRedisBackend(options))
    await backend.set(K + "k", b"v", 60)
    assert await backend.get(K + "k") == b"v"
    disposable_redis.restart()
    assert await backend.get(K + "k") is None
    await backend.set(K + "k", b"again", None)
    assert await backend.delete_prefix(K) == 1
    await backend.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_paused_is_an_error_not_a_hang(disposable_redis: RedisServer, mode: str) -> None:
    options = RedisOptions(url=disposable_redis.url, socket_timeout=0.2, connect_timeout=0.2)
    backend = Both(RedisBackend(options) if mode == "sync" else AsyncRedisBackend(options))
    with disposable_redis.client() as admin:  # not through the 0.2 s backend: a busy machine could time it out
        admin.set(K + "k", b"v", ex=60)
    disposable_redis.pause()
    try:
        for operation, args in [("get", (K + "k",)), ("set", (K + "k", b"w", 60)), ("delete_prefix", (K,))]:
            with pytest.raises(CacheUnavailableError):
                await getattr(backend, operation)(*args)
    finally:
        disposable_redis.resume()
    assert await aeventually(lambda: _holds(backend, K + "k"))
    await backend.close()


async def _holds(backend: Both, key: str) -> bool:
    try:
        return await backend.get(key) is not None
    except CacheUnavailableError:
        return False


def test_error_messages_carry_no_credentials() -> None:
    # Not the shared server: a failed login would be an ACL refusal there under STASHLY_TEST_ACL=1.
    with RedisServer() as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        options = RedisOptions(url=url, username="nobody", password="s3cret-pw", **GENEROUS)
        assert "s3cret-pw" not in repr(options)
        backend = RedisBackend(options)
        with pytest.raises(CacheUnavailableError) as caught:
            backend.get(K + "k")
        assert isinstance(caught.value.__cause__, redis.AuthenticationError)
        assert "s3cret-pw" not in str(caught.value)
        backend.close()
    quoting = redis.ConnectionError("cannot reach redis://nobody:s3cret-pw@127.0.0.1:1/0 (refused)")
    message = str(unavailable("GET", quoting))
    assert message == "redis GET failed: ConnectionError: cannot reach redis://***@127.0.0.1:1/0 (refused)"


def test_async_backend_across_event_loops(redis_url: str) -> None:
    backend = AsyncRedisBackend(RedisOptions(url=redis_url, **GENEROUS))

    async def roundtrip(n: int) -> bytes | None:
        await backend.set(f"{K}k{n}", b"%d" % n, 60)
        return await backend.get(f"{K}k{n}")

    for n in range(5):
        assert asyncio.run(roundtrip(n)) == b"%d" % n
    assert backend._loops.clients == {}  # each loop's client was closed as its loop shut down


def test_async_backend_on_a_loop_closed_without_finalising(redis_url: str) -> None:
    """A loop closed by hand, skipping ``shutdown_asyncgens``: its client is dropped, not kept forever."""
    backend = AsyncRedisBackend(RedisOptions(url=redis_url, **GENEROUS))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(backend.set(K + "k", b"v", 60))
    loop.close()
    gone = weakref.ref(loop)
    del loop
    with warnings.catch_warnings():
        # its sockets can no longer be closed through their loop: dropped when the next loop asks, they are
        # closed by the collector (and it says so)
        warnings.simplefilter("ignore", ResourceWarning)
        assert asyncio.run(backend.get(K + "k")) == b"v"
        assert backend._loops.clients == {}
        gc.collect()
    assert gone() is None


def test_async_backend_in_threads_with_their_own_loops(redis_url: str) -> None:
    backend = AsyncRedisBackend(RedisOptions(url=redis_url, **GENEROUS))
    results: list[bytes | None] = []

    async def work(n: int) -> None:
        for i in range(20):
            await backend.set(f"{K}t{n}:{i}", b"v", 60)
            results.append(await backend.get(f"{K}t{n}:{i}"))

    threads = [threading.Thread(target=asyncio.run, args=(work(n),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"v"] * 80
    assert backend._loops.clients == {}


def test_redis_backend_survives_fork(redis_url: str) -> None:
    backend = RedisBackend(RedisOptions(url=redis_url, **GENEROUS))
    backend.set(K + "parent", b"v", 60)
    pid = os.fork()
    if pid == 0:  # the child: use the inherited backend, report through the exit status
        code = 1
        try:
            backend.set(K + "child", b"c", 60)
            code = 0 if backend.get(K + "parent") == b"v" and backend.get(K + "child") == b"c" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend.get(K + "child") == b"c"
    backend.set(K + "parent", b"still works", 60)
    assert backend.get(K + "parent") == b"still works"
    backend.close()


def test_creating_backends_connects_nowhere() -> None:
    # port 1 on loopback: nothing listens, so any connection attempt would fail loudly
    options = RedisOptions(url="redis://127.0.0.1:1/0")
    RedisBackend(options).close()
    AsyncRedisBackend(options)
    with pytest.raises(CacheUnavailableError, match="ConnectionError"):
        RedisBackend(options).get(K + "k")
