"""The backend for one Redis server (or the primary Sentinel names), over redis-py's client.

Composition, never subclassing: a backend holds a client, made on first use, and sends its reads and scripts on
connections of its own (:mod:`~stashly.backends.redis.direct`). What it sends is in
:mod:`~stashly.backends.redis.commands`; how it connects is :class:`~stashly.backends.redis.options.RedisOptions`.
redis-py's pool notices a ``fork()`` (it compares pids) and opens fresh sockets in the child, as do the read
connections, so a backend created before gunicorn forks its workers is safe to use in them.

``scripts/unasync.py`` derives the other mode's twin from this module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis  # unasync: from redis import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoPermissionError, NoScriptError, RedisError

from ...keys.layout import generation_key
from ...storage.stamps import unstamp
from ..base import Lock, Read
from .commands import (
    DRAW_SCRIPT,
    DRAW_SHA,
    FILL_SCRIPT,
    FILL_SHA,
    RELEASE_SCRIPT,
    SCAN_COUNT,
    SET_SCRIPT,
    SET_SHA,
    STAGE_ABOVE,
    STAGED_FILL_SCRIPT,
    STAGED_FILL_SHA,
    abatches_of,
    escape_glob,
    expiry_ms,
    fill_call,
    many_command,
    many_result,
    read_commands,
    read_result,
    staged_fill_call,
    unavailable,
)
from .direct import LoopConnections
from .loops import PerLoop
from .options import RedisOptions

__all__ = ["AsyncRedisBackend"]

_FAILURES = (RedisError, OSError)  # OSError includes TimeoutError, asyncio's too
_log = logging.getLogger("stashly.redis")


class _Client:
    """A client with its read connections and its lock-release script."""

    __slots__ = ("client", "reads", "release")

    def __init__(self, client: Redis, options: RedisOptions) -> None:
        self.client = client
        pool = client.connection_pool
        self.reads = LoopConnections(pool, options.max_connections, options.pool_wait)  # unasync: drop
        # unasync: self.reads = ThreadConnections(pool)
        self.release: AsyncScript = client.register_script(RELEASE_SCRIPT)


class AsyncRedisBackend:
    """The backend over redis-py's client, which connects on first use (in asyncio, in each event loop)."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._loops = PerLoop(self._connect, _disconnect)
        self.staged: bool = True  # fills send their value beside the script (False once an ACL refused RENAME)

    def _connect(self) -> _Client:
        return _Client(Redis.from_pool(self.options.async_pool()), self.options)

    async def _redis(self) -> Redis:
        return (await self._loops.get()).client

    async def _direct(self) -> LoopConnections:
        return (await self._loops.get()).reads

    async def get(self, key: str) -> bytes | None:
        try:
            replies = await (await self._loops.get()).reads.execute(("MGET", key, generation_key(key)))
        except _FAILURES as exc:
            raise unavailable("GET", exc) from exc
        raw, generation = replies[0]
        return unstamp(raw, generation)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        command, generations = many_command(keys)
        try:
            replies = (await (await self._loops.get()).reads.execute(command))[0]
        except _FAILURES as exc:
            raise unavailable("MGET", exc) from exc
        return many_result(keys, replies, generations)

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        try:
            replies = await (await self._loops.get()).reads.execute(*read_commands(key, guard, with_ttl))
        except _FAILURES as exc:
            raise unavailable("MGET", exc) from exc
        return read_result(replies, guard, with_ttl)

    async def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        try:
            replies = await (await self._loops.get()).reads.execute(*read_commands(key, guard, with_ttl, extra))
        except _FAILURES as exc:
            raise unavailable("MGET", exc) from exc
        values = replies[0]  # the extra keys' values end the MGET
        return read_result(replies, guard, with_ttl), values[len(values) - len(extra) :]

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        arguments = [value, "" if ttl is None else expiry_ms(ttl)]
        try:
            await self._script(SET_SCRIPT, SET_SHA, [key, generation_key(key)], arguments)
        except _FAILURES as exc:
            raise unavailable("EVALSHA (SET)", exc) from exc

    async def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        try:
            return bytes(await self._script(DRAW_SCRIPT, DRAW_SHA, [key], [value, expiry_ms(ttl)]))
        except _FAILURES as exc:
            raise unavailable("EVALSHA (SET NX)", exc) from exc

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        try:
            if self.staged and len(value) > STAGE_ABOVE:  # the value beside the script: its cost stays flat
                first, keys, staged_arguments = staged_fill_call(key, value, ttl, guard, token, lock)
                try:
                    return bool(await self._script(STAGED_FILL_SCRIPT, STAGED_FILL_SHA, keys, staged_arguments, first))
                except NoPermissionError:  # an ACL without RENAME (granted before it was needed): the old way
                    self.staged = False
                    _log.warning("redis refused RENAME to this user: fills carry the value inside their script")
            keys, arguments = fill_call(key, value, ttl, guard, token, lock)
            return bool(await self._script(FILL_SCRIPT, FILL_SHA, keys, arguments))
        except _FAILURES as exc:
            raise unavailable("EVALSHA (guarded SET)", exc) from exc

    async def _script(
        self,
        script: str,
        sha: str,
        keys: list[str],
        arguments: Sequence[bytes | int | str],
        first: tuple[Any, ...] | None = None,
    ) -> Any:
        """Run ``script`` by its SHA (after ``first``, in the same write, when given); its reply."""
        reads = await self._direct()
        evalsha = ("EVALSHA", sha, len(keys), *keys, *arguments)
        commands = (evalsha,) if first is None else (first, evalsha)
        try:
            return (await reads.execute(*commands))[-1]
        except NoScriptError:  # a new or restarted server: load the script once, then run it
            await reads.execute(("SCRIPT", "LOAD", script))
            return (await reads.execute(*commands))[-1]

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        try:
            return bool(await (await self._redis()).set(lock_key, owner, nx=True, px=expiry_ms(lease)))
        except _FAILURES as exc:
            raise unavailable("SET NX (lock)", exc) from exc

    async def release(self, lock_key: str, owner: bytes) -> None:
        try:
            await (await self._loops.get()).release(keys=[lock_key], args=[owner])
        except _FAILURES as exc:
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
        except _FAILURES as exc:
            raise unavailable("UNLINK/INCR", exc) from exc

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        removed = 0
        try:
            client = await self._redis()
            if guard is not None:
                await client.incr(guard)
            async for batch in abatches_of(client.scan_iter(match=escape_glob(prefix) + "*", count=SCAN_COUNT)):
                removed += await client.unlink(*batch)
        except _FAILURES as exc:
            raise unavailable("SCAN/UNLINK", exc) from exc
        return removed

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            await (await self._redis()).incr(generation_key(prefix))
        except _FAILURES as exc:
            raise unavailable("INCR (generation)", exc) from exc

    async def count_prefix(self, prefix: str) -> int:
        count = 0
        try:
            async for _ in (await self._redis()).scan_iter(match=escape_glob(prefix) + "*", count=SCAN_COUNT):
                count += 1
        except _FAILURES as exc:
            raise unavailable("SCAN", exc) from exc
        return count

    async def close(self) -> None:
        """Close the client (in asyncio, the running event loop's: the others close with their loops)."""
        await self._loops.close()


async def _disconnect(entry: _Client) -> None:
    await entry.reads.close()
    await entry.client.aclose()  # its pool too: the client owns it (from_pool)
    for sentinel in _sentinels(entry.client.connection_pool):
        await sentinel.aclose()


def _sentinels(pool: Any) -> list[Any]:
    """The clients a Sentinel pool asks the sentinels with (closing the pool leaves them open)."""
    manager = getattr(pool, "sentinel_manager", None)
    return list(manager.sentinels) if manager is not None else []
