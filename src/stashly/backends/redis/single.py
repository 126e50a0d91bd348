"""The backends for one Redis server (or the primary Sentinel names), over redis-py's sync and asyncio clients.

Composition, never subclassing: each backend holds a client, and sends its reads on connections of its own
(:mod:`~stashly.backends.redis.direct`). What it sends is in :mod:`~stashly.backends.redis.commands`; its
connection policy is :class:`~stashly.backends.redis.options.RedisOptions`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError, RedisError

from ...keys.layout import generation_key
from ...storage.stamps import unstamp
from ..base import Lock, Read
from .commands import (
    FILL_SCRIPT,
    FILL_SHA,
    RELEASE_SCRIPT,
    SCAN_COUNT,
    SET_SCRIPT,
    SET_SHA,
    abatches_of,
    batches_of,
    escape_glob,
    expiry_ms,
    fill_call,
    many_command,
    many_result,
    read_commands,
    read_result,
    unavailable,
)
from .direct import LoopConnections, ThreadConnections
from .loops import PerLoop
from .options import RedisOptions

__all__ = ["AsyncRedisBackend", "RedisBackend"]


class RedisBackend:
    """The synchronous backend over ``redis.Redis``; connects on first use.

    redis-py's pool notices a ``fork()`` (it compares pids) and opens fresh sockets in the child, so a
    backend created before gunicorn forks its workers is safe to use in them.
    """

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._client: redis.Redis | None = None
        self._connections: ThreadConnections | None = None
        self._release: Script | None = None
        self._lock = threading.Lock()

    def _redis(self) -> redis.Redis:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    pool = self.options.pool()
                    client = redis.Redis(connection_pool=pool)
                    self._connections = ThreadConnections(pool)
                    self._release = client.register_script(RELEASE_SCRIPT)
                    self._client = client
        return client

    def _direct(self) -> ThreadConnections:
        direct = self._connections
        if direct is None:
            self._redis()
            direct = self._connections
            assert direct is not None
        return direct

    def get(self, key: str) -> bytes | None:
        try:
            raw, generation = self._direct().execute(("MGET", key, generation_key(key)))[0]
        except (RedisError, OSError) as exc:
            raise unavailable("GET", exc) from exc
        return unstamp(raw, generation)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        command, generations = many_command(keys)
        try:
            replies = self._direct().execute(command)[0]
        except (RedisError, OSError) as exc:
            raise unavailable("MGET", exc) from exc
        return many_result(keys, replies, generations)

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        try:
            replies = self._direct().execute(*read_commands(key, guard, with_ttl))
        except (RedisError, OSError) as exc:
            raise unavailable("MGET", exc) from exc
        return read_result(replies, guard, with_ttl)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        arguments = [value, "" if ttl is None else expiry_ms(ttl)]
        try:
            self._script(SET_SCRIPT, SET_SHA, [key, generation_key(key)], arguments)
        except (RedisError, OSError) as exc:
            raise unavailable("EVALSHA (SET)", exc) from exc

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        keys, arguments = fill_call(key, value, ttl, guard, token, lock)
        try:
            return bool(self._script(FILL_SCRIPT, FILL_SHA, keys, arguments))
        except (RedisError, OSError) as exc:
            raise unavailable("EVALSHA (guarded SET)", exc) from exc

    def _script(self, script: str, sha: str, keys: list[str], arguments: list[bytes | int | str]) -> Any:
        direct = self._direct()
        evalsha = ("EVALSHA", sha, len(keys), *keys, *arguments)
        try:
            return direct.execute(evalsha)[0]
        except NoScriptError:  # a new or restarted server: load the script once, then run it
            direct.execute(("SCRIPT", "LOAD", script))
            return direct.execute(evalsha)[0]

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        try:
            return bool(self._redis().set(lock_key, owner, nx=True, px=expiry_ms(lease)))
        except (RedisError, OSError) as exc:
            raise unavailable("SET NX (lock)", exc) from exc

    def release(self, lock_key: str, owner: bytes) -> None:
        self._redis()
        try:
            assert self._release is not None
            self._release(keys=[lock_key], args=[owner])
        except (RedisError, OSError) as exc:
            raise unavailable("EVALSHA (lock release)", exc) from exc

    def delete(self, key: str, guard: str | None = None) -> bool:
        try:
            if guard is None:
                return bool(self._redis().unlink(key))
            with self._redis().pipeline(transaction=False) as pipe:
                pipe.unlink(key)
                pipe.incr(guard)
                removed, _ = pipe.execute()
            return bool(removed)
        except (RedisError, OSError) as exc:
            raise unavailable("UNLINK/INCR", exc) from exc

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        client = self._redis()
        removed = 0
        try:
            if guard is not None:
                client.incr(guard)
            for batch in batches_of(client.scan_iter(match=escape_glob(prefix) + "*", count=SCAN_COUNT)):
                removed += client.unlink(*batch)
        except (RedisError, OSError) as exc:
            raise unavailable("SCAN/UNLINK", exc) from exc
        return removed

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            self._redis().incr(generation_key(prefix))
        except (RedisError, OSError) as exc:
            raise unavailable("INCR (generation)", exc) from exc

    def count_prefix(self, prefix: str) -> int:
        try:
            return sum(1 for _ in self._redis().scan_iter(match=escape_glob(prefix) + "*", count=SCAN_COUNT))
        except (RedisError, OSError) as exc:
            raise unavailable("SCAN", exc) from exc

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            direct, self._connections = self._connections, None
        if direct is not None:
            direct.close()
        if client is not None:
            client.connection_pool.disconnect()
            client.close()
            for sentinel in _sentinels(client.connection_pool):
                sentinel.close()


class _LoopClient:
    """One asyncio client with its read connections and its release script."""

    __slots__ = ("client", "reads", "release")

    def __init__(self, client: redis.asyncio.Redis, options: RedisOptions) -> None:
        self.client = client
        self.reads = LoopConnections(client.connection_pool, options.max_connections, options.pool_wait)
        self.release: AsyncScript = client.register_script(RELEASE_SCRIPT)


class AsyncRedisBackend:
    """The asyncio backend over ``redis.asyncio.Redis``, with one client per running event loop (``PerLoop``)."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._loops = PerLoop(self._connect, _disconnect)

    def _connect(self) -> _LoopClient:
        return _LoopClient(redis.asyncio.Redis.from_pool(self.options.async_pool()), self.options)

    async def _entry(self) -> _LoopClient:
        return await self._loops.get()

    async def _redis(self) -> redis.asyncio.Redis:
        return (await self._loops.get()).client

    async def get(self, key: str) -> bytes | None:
        try:
            replies = await (await self._entry()).reads.execute(("MGET", key, generation_key(key)))
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("GET", exc) from exc
        raw, generation = replies[0]
        return unstamp(raw, generation)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        command, generations = many_command(keys)
        try:
            replies = (await (await self._entry()).reads.execute(command))[0]
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("MGET", exc) from exc
        return many_result(keys, replies, generations)

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        try:
            replies = await (await self._entry()).reads.execute(*read_commands(key, guard, with_ttl))
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("MGET", exc) from exc
        return read_result(replies, guard, with_ttl)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        arguments = [value, "" if ttl is None else expiry_ms(ttl)]
        try:
            await self._script(SET_SCRIPT, SET_SHA, [key, generation_key(key)], arguments)
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("EVALSHA (SET)", exc) from exc

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        keys, arguments = fill_call(key, value, ttl, guard, token, lock)
        try:
            return bool(await self._script(FILL_SCRIPT, FILL_SHA, keys, arguments))
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("EVALSHA (guarded SET)", exc) from exc

    async def _script(self, script: str, sha: str, keys: list[str], arguments: list[bytes | int | str]) -> Any:
        reads = (await self._entry()).reads
        evalsha = ("EVALSHA", sha, len(keys), *keys, *arguments)
        try:
            return (await reads.execute(evalsha))[0]
        except NoScriptError:  # a new or restarted server: load the script once, then run it
            await reads.execute(("SCRIPT", "LOAD", script))
            return (await reads.execute(evalsha))[0]

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        try:
            return bool(await (await self._redis()).set(lock_key, owner, nx=True, px=expiry_ms(lease)))
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("SET NX (lock)", exc) from exc

    async def release(self, lock_key: str, owner: bytes) -> None:
        try:
            await (await self._entry()).release(keys=[lock_key], args=[owner])
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("EVALSHA (lock release)", exc) from exc

    async def delete(self, key: str, guard: str | None = None) -> bool:
        try:
            client = await self._redis()
            if guard is None:
                return bool(await client.unlink(key))
            async with client.pipeline(transaction=False) as pipe:
                pipe.unlink(key)
                pipe.incr(guard)
                removed, _ = await pipe.execute()
            return bool(removed)
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("UNLINK/INCR", exc) from exc

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        removed = 0
        try:
            client = await self._redis()
            if guard is not None:
                await client.incr(guard)
            async for batch in abatches_of(client.scan_iter(match=escape_glob(prefix) + "*", count=SCAN_COUNT)):
                removed += await client.unlink(*batch)
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("SCAN/UNLINK", exc) from exc
        return removed

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            await (await self._redis()).incr(generation_key(prefix))
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("INCR (generation)", exc) from exc

    async def count_prefix(self, prefix: str) -> int:
        count = 0
        try:
            async for _ in (await self._redis()).scan_iter(match=escape_glob(prefix) + "*", count=SCAN_COUNT):
                count += 1
        except (TimeoutError, RedisError, OSError) as exc:
            raise unavailable("SCAN", exc) from exc
        return count

    async def close(self) -> None:
        """Close the client of the running event loop (clients of other loops close with their loops)."""
        await self._loops.close()


async def _disconnect(entry: _LoopClient) -> None:
    await entry.reads.close()
    await entry.client.aclose()
    for sentinel in _sentinels(entry.client.connection_pool):
        await sentinel.aclose()


def _sentinels(pool: Any) -> list[Any]:
    """The clients a Sentinel pool asks the sentinels with (closing the pool leaves them open)."""
    manager = getattr(pool, "sentinel_manager", None)
    return list(manager.sentinels) if manager is not None else []
