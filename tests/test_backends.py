"""The backend contract, one suite over memory|redis x sync|async, plus each backend's own guarantees."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Iterator
from typing import Any

import pytest

from stashly import CacheUnavailableError
from stashly.backends.memory import AsyncMemoryBackend, MemoryStore
from stashly.backends.redis import AsyncRedisBackend, RedisBackend, RedisOptions, escape_glob

from redis_server import RedisServer
from support import aeventually

pytestmark = pytest.mark.timeout(60)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Both:
    """A sync or an async backend behind one awaitable face."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

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
        store = MemoryStore(max_entries=100_000)
        yield Both(store if mode == "sync" else AsyncMemoryBackend(store))
        return
    options = RedisOptions(url=request.getfixturevalue("redis_url"))
    if mode == "sync":
        sync = RedisBackend(options)
        yield Both(sync)
        sync.close()
    else:
        yield Both(AsyncRedisBackend(options))


async def test_roundtrip_overwrite_delete(backend: Both) -> None:
    assert await backend.get("k") is None
    for value in [b"", b"\x00\xff not utf-8", b"x" * 100_000]:
        await backend.set("k", value, 60)
        assert await backend.get("k") == value
    assert await backend.delete("k") is True
    assert await backend.delete("k") is False
    assert await backend.get("k") is None


async def test_expiry(backend: Both) -> None:
    await backend.set("short", b"v", 0.05)
    await backend.set("forever", b"v", None)
    assert await aeventually(lambda: _absent(backend, "short"))
    assert await backend.get("forever") == b"v"


async def _absent(backend: Both, key: str) -> bool:
    return await backend.get(key) is None


async def test_delete_prefix_is_literal_and_exact(backend: Both) -> None:
    keep = ["p:ns10:x", "p:ns2:x", "other", "p:ns1", "p:nX*s?[x]\\:k", "p:n*s?[x]:k"]
    doomed = ["p:ns1:a", "p:ns1:b:c"]
    glob_doomed = ["p:n*s?[x]\\:k1", "p:n*s?[x]\\:k2"]
    for key in keep + doomed + glob_doomed:
        await backend.set(key, b"v", 60)
    assert await backend.delete_prefix("p:ns1:") == 2
    assert await backend.delete_prefix("p:n*s?[x]\\:") == 2
    for key in keep:
        assert await backend.get(key) == b"v", key
    for key in doomed + glob_doomed:
        assert await backend.get(key) is None, key


async def test_delete_prefix_10000_keys(backend: Both) -> None:
    if isinstance(backend.backend, RedisBackend | AsyncRedisBackend):
        client = RedisBackend(backend.backend.options)._redis()
        client.mset({f"big:{i}": b"v" for i in range(10_000)})
        client.set("bigger", b"v")
    else:
        for i in range(10_000):
            await backend.set(f"big:{i}", b"v", 60)
        await backend.set("bigger", b"v", 60)
    assert await backend.delete_prefix("big:") == 10_000
    assert await backend.get("big:5") is None
    assert await backend.get("bigger") == b"v"


def test_escape_glob() -> None:
    assert escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"


# -- memory ------------------------------------------------------------------------------------------------


def test_memory_ttl_with_an_injected_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set("k", b"v", 0.5)
    clock.now += 0.49
    assert store.get("k") == b"v"
    clock.now += 0.02
    assert store.get("k") is None
    assert store.delete("k") is False


def test_memory_expired_entries_are_not_counted_as_removed() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set("p:a", b"v", 1)
    store.set("p:b", b"v", 10)
    clock.now += 5
    assert store.delete_prefix("p:") == 1
    assert len(store) == 0


def test_memory_lru_eviction() -> None:
    store = MemoryStore(max_entries=3)
    for key in "abc":
        store.set(key, b"v", 60)
    assert store.get("a") == b"v"  # a is now the most recently used
    store.set("d", b"v", 60)
    assert store.get("b") is None
    assert [store.get(k) for k in "acd"] == [b"v"] * 3
    assert len(store) == 3


async def test_memory_sync_and_async_share_entries() -> None:
    store = MemoryStore()
    async_store = AsyncMemoryBackend(store)
    store.set("k", b"sync", 60)
    assert await async_store.get("k") == b"sync"
    await async_store.set("k", b"async", 60)
    assert store.get("k") == b"async"


def test_memory_is_safe_under_threads() -> None:
    import threading

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


def test_redis_subsecond_ttl_is_px(redis_url: str, redis_server: RedisServer) -> None:
    backend = RedisBackend(RedisOptions(url=redis_url))
    backend.set("k", b"v", 0.5)
    backend.set("forever", b"v", None)
    with redis_server.client() as client:
        assert 0 < client.pttl("k") <= 500
        assert client.ttl("forever") == -1
    backend.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_stopped_and_restarted(disposable_redis: RedisServer, mode: str) -> None:
    options = RedisOptions(url=disposable_redis.url)
    backend = Both(RedisBackend(options) if mode == "sync" else AsyncRedisBackend(options))
    await backend.set("k", b"v", 60)
    disposable_redis.stop()
    for operation, args in [("get", ("k",)), ("set", ("k", b"v", 60)), ("delete", ("k",)), ("delete_prefix", ("",))]:
        with pytest.raises(CacheUnavailableError, match="redis"):
            await getattr(backend, operation)(*args)
    disposable_redis.start()
    assert await backend.get("k") is None  # a new server: data gone, connection re-established
    await backend.set("k", b"again", 60)
    assert await backend.get("k") == b"again"
    await backend.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_paused_is_an_error_not_a_hang(disposable_redis: RedisServer, mode: str) -> None:
    options = RedisOptions(url=disposable_redis.url, socket_timeout=0.2, connect_timeout=0.2)
    backend = Both(RedisBackend(options) if mode == "sync" else AsyncRedisBackend(options))
    await backend.set("k", b"v", 60)
    disposable_redis.pause()
    try:
        with pytest.raises(CacheUnavailableError):
            await backend.get("k")
    finally:
        disposable_redis.resume()
    assert await aeventually(lambda: _is_value(backend, "k", b"v"))
    await backend.close()


async def _is_value(backend: Both, key: str, value: bytes) -> bool:
    try:
        return await backend.get(key) == value
    except CacheUnavailableError:
        return False


def test_async_backend_across_event_loops(redis_url: str) -> None:
    backend = AsyncRedisBackend(RedisOptions(url=redis_url))

    async def roundtrip(n: int) -> bytes | None:
        await backend.set(f"k{n}", b"%d" % n, 60)
        return await backend.get(f"k{n}")

    for n in range(5):
        assert asyncio.run(roundtrip(n)) == b"%d" % n
    assert backend._clients == {}  # each loop's client was closed as its loop shut down


def test_async_backend_in_threads_with_their_own_loops(redis_url: str) -> None:
    import threading

    backend = AsyncRedisBackend(RedisOptions(url=redis_url))
    results: list[bytes | None] = []

    async def work(n: int) -> None:
        for i in range(20):
            await backend.set(f"t{n}:{i}", b"v", 60)
            results.append(await backend.get(f"t{n}:{i}"))

    threads = [threading.Thread(target=asyncio.run, args=(work(n),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"v"] * 80


def test_redis_backend_survives_fork(redis_url: str) -> None:
    backend = RedisBackend(RedisOptions(url=redis_url))
    backend.set("parent", b"v", 60)
    pid = os.fork()
    if pid == 0:  # the child: use the inherited backend, report through the exit status
        code = 1
        try:
            backend.set("child", b"c", 60)
            code = 0 if backend.get("parent") == b"v" and backend.get("child") == b"c" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend.get("child") == b"c"
    backend.set("parent", b"still works", 60)
    assert backend.get("parent") == b"still works"
    backend.close()


def test_options_repr_redacts_the_password() -> None:
    options = RedisOptions(url="redis://127.0.0.1:1/0", password="s3cret")
    assert "s3cret" not in repr(options)
