"""Adapters over redis-py's sync and asyncio clients (composition, never subclassing), for one server or the
primary Sentinel names. Their connection policy is :class:`~stashly.backends.options.RedisOptions`.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError, RedisError

from ..errors import CacheUnavailableError
from ..keys.layout import generation_key, generation_keys
from ..storage.stamps import fill_token, split_token, stamp, unstamp, unstamp_all
from .base import Lock, Read
from .direct import LoopConnections, ThreadConnections
from .loops import PerLoop
from .options import RedisOptions

__all__ = ["AsyncRedisBackend", "RedisBackend", "escape_glob"]

_SCAN_COUNT = 1000
# Store only if the guard (KEYS[2]) and the generation (KEYS[3]) still hold the token read before computing,
# ``<guard>/<generation>`` with absent counters empty. With a stampede lock (KEYS[4], owner ARGV[4]), also only
# while the lock is still ours; then release it. The value comes stamped with the token's generation.
FILL_SCRIPT = """
local now = (redis.call('GET', KEYS[2]) or '') .. '/' .. (redis.call('GET', KEYS[3]) or '')
if now ~= ARGV[2] then return 0 end
if KEYS[4] and redis.call('GET', KEYS[4]) ~= ARGV[4] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
if KEYS[4] then redis.call('DEL', KEYS[4]) end
return 1
"""
FILL_SHA = hashlib.sha1(FILL_SCRIPT.encode()).hexdigest()  # what EVALSHA names it (not for security)
# A plain write, stamped with the namespace's generation (KEYS[2]) as it is when the write lands.
SET_SCRIPT = """
local generation = redis.call('GET', KEYS[2])
local value = ARGV[1]
if generation or string.byte(value, 1) == 0 then value = '\\0' .. (generation or '') .. '\\0' .. value end
if ARGV[2] == '' then redis.call('SET', KEYS[1], value) else redis.call('SET', KEYS[1], value, 'PX', ARGV[2]) end
return 1
"""
SET_SHA = hashlib.sha1(SET_SCRIPT.encode()).hexdigest()
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_GLOB_SPECIALS = str.maketrans({c: "\\" + c for c in "*?[]\\"})
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")


def escape_glob(text: str) -> str:
    """``text`` as a literal for ``SCAN MATCH``: every glob character is backslash-escaped."""
    return text.translate(_GLOB_SPECIALS)


def _unavailable(operation: str, exc: BaseException) -> CacheUnavailableError:
    # redis-py's messages name host and port, not credentials; should one ever quote a URL, drop its userinfo.
    detail = _USERINFO.sub("***@", str(exc))
    return CacheUnavailableError(f"redis {operation} failed: {type(exc).__name__}: {detail}")


def _expiry_ms(ttl: float) -> int:
    if not 0 < ttl < math.inf:  # also refuses NaN
        raise ValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


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
            raise _unavailable("GET", exc) from exc
        return unstamp(raw, generation)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        command, generations = _many_command(keys)
        try:
            replies = self._direct().execute(command)[0]
        except (RedisError, OSError) as exc:
            raise _unavailable("MGET", exc) from exc
        return _many_result(keys, replies, generations)

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        try:
            replies = self._direct().execute(*_read_commands(key, guard, with_ttl))
        except (RedisError, OSError) as exc:
            raise _unavailable("MGET", exc) from exc
        return _read_result(replies, guard, with_ttl)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        arguments = [value, "" if ttl is None else _expiry_ms(ttl)]
        try:
            self._script(SET_SCRIPT, SET_SHA, [key, generation_key(key)], arguments)
        except (RedisError, OSError) as exc:
            raise _unavailable("EVALSHA (SET)", exc) from exc

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        keys, arguments = _fill_call(key, value, ttl, guard, token, lock)
        try:
            return bool(self._script(FILL_SCRIPT, FILL_SHA, keys, arguments))
        except (RedisError, OSError) as exc:
            raise _unavailable("EVALSHA (guarded SET)", exc) from exc

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
            return bool(self._redis().set(lock_key, owner, nx=True, px=_expiry_ms(lease)))
        except (RedisError, OSError) as exc:
            raise _unavailable("SET NX (lock)", exc) from exc

    def release(self, lock_key: str, owner: bytes) -> None:
        self._redis()
        try:
            assert self._release is not None
            self._release(keys=[lock_key], args=[owner])
        except (RedisError, OSError) as exc:
            raise _unavailable("EVALSHA (lock release)", exc) from exc

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
            raise _unavailable("UNLINK/INCR", exc) from exc

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        client = self._redis()
        removed = 0
        try:
            if guard is not None:
                client.incr(guard)
            for batch in _batches(client.scan_iter(match=escape_glob(prefix) + "*", count=_SCAN_COUNT)):
                removed += client.unlink(*batch)
        except (RedisError, OSError) as exc:
            raise _unavailable("SCAN/UNLINK", exc) from exc
        return removed

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            self._redis().incr(generation_key(prefix))
        except (RedisError, OSError) as exc:
            raise _unavailable("INCR (generation)", exc) from exc

    def count_prefix(self, prefix: str) -> int:
        try:
            return sum(1 for _ in self._redis().scan_iter(match=escape_glob(prefix) + "*", count=_SCAN_COUNT))
        except (RedisError, OSError) as exc:
            raise _unavailable("SCAN", exc) from exc

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


def _read_commands(key: str, guard: str | None, with_ttl: bool) -> tuple[tuple[str, ...], ...]:
    """``read`` in one round trip: the entry with its generation and guard (``MGET``), then maybe ``PTTL``."""
    first = ("MGET", key, generation_key(key)) if guard is None else ("MGET", key, generation_key(key), guard)
    return (first, ("PTTL", key)) if with_ttl else (first,)


def _read_result(replies: list[Any], guard: str | None, with_ttl: bool) -> Read:
    raw, generation, *rest = replies[0]
    value = unstamp(raw, generation)
    return value, fill_token(rest[0] if rest else None, generation), _seconds(value, replies[1]) if with_ttl else None


def _many_command(keys: Sequence[str]) -> tuple[tuple[str, ...], list[str] | str]:
    """One ``MGET`` of ``keys`` and the generations of their namespaces (usually one); see ``generation_keys``."""
    generations = generation_keys(keys)
    if isinstance(generations, str):
        return ("MGET", *keys, generations), generations
    return ("MGET", *keys, *dict.fromkeys(generations)), generations


def _many_result(keys: Sequence[str], replies: list[bytes | None], generations: list[str] | str) -> list[bytes | None]:
    if isinstance(generations, str):
        return unstamp_all(replies[: len(keys)], replies[-1])
    current = dict(zip(dict.fromkeys(generations), replies[len(keys) :], strict=True))
    return [unstamp(raw, current[generation]) for raw, generation in zip(replies, generations, strict=False)]


def _seconds(value: bytes | None, pttl: int) -> float | None:
    """PTTL in seconds: -1 means "no expiry" and -2 "absent", both ``None``."""
    return None if value is None or pttl < 0 else pttl / 1000


def _fill_call(
    key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock
) -> tuple[list[str], list[bytes | int | str]]:
    """KEYS and ARGV of FILL_SCRIPT: the value stamped with the generation its computation started in."""
    generation = split_token(token)[1]
    arguments: list[bytes | int | str] = [
        stamp(value, generation),
        token or b"/",
        "" if ttl is None else _expiry_ms(ttl),
    ]
    keys = [key, guard, generation_key(key)]
    if lock is None:
        return keys, arguments
    return [*keys, lock[0]], [*arguments, lock[1]]


async def abatches(keys: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The asyncio twin of ``_batches``: scanned keys in lists of up to ``_SCAN_COUNT``, to ``UNLINK``."""
    batch: list[bytes] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= _SCAN_COUNT:
            yield batch
            batch = []
    if batch:
        yield batch


def _batches(keys: Iterable[bytes]) -> Iterable[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= _SCAN_COUNT:
            yield batch
            batch = []
    if batch:
        yield batch


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
            raise _unavailable("GET", exc) from exc
        raw, generation = replies[0]
        return unstamp(raw, generation)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        command, generations = _many_command(keys)
        try:
            replies = (await (await self._entry()).reads.execute(command))[0]
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("MGET", exc) from exc
        return _many_result(keys, replies, generations)

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        try:
            replies = await (await self._entry()).reads.execute(*_read_commands(key, guard, with_ttl))
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("MGET", exc) from exc
        return _read_result(replies, guard, with_ttl)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        arguments = [value, "" if ttl is None else _expiry_ms(ttl)]
        try:
            await self._script(SET_SCRIPT, SET_SHA, [key, generation_key(key)], arguments)
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("EVALSHA (SET)", exc) from exc

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        keys, arguments = _fill_call(key, value, ttl, guard, token, lock)
        try:
            return bool(await self._script(FILL_SCRIPT, FILL_SHA, keys, arguments))
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("EVALSHA (guarded SET)", exc) from exc

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
            return bool(await (await self._redis()).set(lock_key, owner, nx=True, px=_expiry_ms(lease)))
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("SET NX (lock)", exc) from exc

    async def release(self, lock_key: str, owner: bytes) -> None:
        try:
            await (await self._entry()).release(keys=[lock_key], args=[owner])
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("EVALSHA (lock release)", exc) from exc

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
            raise _unavailable("UNLINK/INCR", exc) from exc

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        removed = 0
        try:
            client = await self._redis()
            if guard is not None:
                await client.incr(guard)
            async for batch in abatches(client.scan_iter(match=escape_glob(prefix) + "*", count=_SCAN_COUNT)):
                removed += await client.unlink(*batch)
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("SCAN/UNLINK", exc) from exc
        return removed

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            await (await self._redis()).incr(generation_key(prefix))
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("INCR (generation)", exc) from exc

    async def count_prefix(self, prefix: str) -> int:
        count = 0
        try:
            async for _ in (await self._redis()).scan_iter(match=escape_glob(prefix) + "*", count=_SCAN_COUNT):
                count += 1
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable("SCAN", exc) from exc
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
