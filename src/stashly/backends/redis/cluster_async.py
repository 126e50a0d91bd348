"""The asyncio backend for Redis Cluster: one cluster client per running event loop (see :mod:`.cluster`).

Reads go straight to the primaries on idle connections of each loop's own (:class:`.cluster_reads.AsyncNodeReads`);
everything else, and any read that meets a redirection, through redis-py's asyncio cluster client, whose slot map
is re-read in the background after a node failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio.cluster

from ...keys.layout import generation_key
from ...keys.slots import lock_in_slot, slot_of
from ...sentinels import MISSING
from ..base import Lock, Read
from .cluster import SCRIPTS, Generations, Others, client_arguments, primary_of
from .cluster import failures as _Failure
from .cluster_reads import REDIRECTED, AsyncNodeReads
from .commands import (
    SCAN_COUNT,
    Command,
    abatches_of,
    cluster_fill_call,
    cluster_many_plan,
    cluster_many_result,
    cluster_read_batches,
    cluster_read_result,
    cluster_set_batches,
    cluster_set_command,
    escape_glob,
    expiry_ms,
    unavailable,
)
from .loops import PerLoop
from .replicas import (
    FROM_REPLICA,
    replica_guard,
    replica_read_batches,
    replica_read_result,
    replica_set_command,
    replica_stamp_batches,
)

if TYPE_CHECKING:
    from .options import RedisOptions

__all__ = ["AsyncClusterBackend"]


class AsyncClusterBackend:
    """The asyncio Cluster backend, with one cluster client per running event loop."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._loops = PerLoop(self._loop_cluster, _close)
        self._generations = Generations()  # shared by the loops: a namespace's generation is the same for all
        self._from_replicas = options.read_from_replicas  # entries from replicas: see .replicas

    def _loop_cluster(self) -> _LoopCluster:
        # Arguments made afresh for each loop: the startup nodes hold connections, which belong to one loop.
        return _LoopCluster(redis.asyncio.cluster.RedisCluster(**client_arguments(self.options, asynchronous=True)))

    async def _redis(self) -> redis.asyncio.cluster.RedisCluster:
        return (await self._loops.get()).client

    async def _script(self, which: int, keys: list[str], arguments: list[Any], operation: str) -> Any:
        entry = await self._loops.get()
        try:
            return await entry.scripts[which](keys=keys, args=arguments)
        except _Failure as exc:
            entry.relearn(exc)
            raise unavailable(operation, exc) from exc

    async def _pipeline(self, commands: Iterable[Command], operation: str) -> list[Any]:
        entry = await self._loops.get()
        try:
            pipe = entry.client.pipeline()
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute()
        except _Failure as exc:
            entry.relearn(exc)
            raise unavailable(operation, exc) from exc

    async def _call(self, command: Command, operation: str) -> Any:
        entry = await self._loops.get()
        try:
            return await entry.client.execute_command(*command)
        except _Failure as exc:
            entry.relearn(exc)
            raise unavailable(operation, exc) from exc

    def node_of(self, key: str) -> str | None:
        """The primary serving ``key`` now, by this loop's client's slot map (``None`` before it is known, or
        while its slot migrates, as on the sync backend)."""
        entry = self._loops.current()
        if entry is None or (entry.reads.migrations and entry.reads.migrations.covers(slot_of(key))):
            return None
        return primary_of(entry.client.nodes_manager.slots_cache, key)

    async def get(self, key: str) -> bytes | None:
        return (await self.read(key, None))[0]  # GET of the entry and of its generation

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        commands, groups, per_key = cluster_many_plan(keys)
        return cluster_many_result(keys, await self._pipeline(commands, "MGET"), groups, per_key)

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        if self._from_replicas:
            replies = await self._fetch(replica_read_batches(key, guard, with_ttl), "GET (replica)", FROM_REPLICA)
            return replica_read_result(replies, with_ttl)
        batches = cluster_read_batches(key, guard, with_ttl)
        return cluster_read_result(await self._fetch(batches, "GET" if guard is None else "MGET"), guard, with_ttl)

    async def read_with(self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]) -> tuple[Read, Others]:
        if self._from_replicas:
            batches = replica_read_batches(key, guard, with_ttl, extra)
            replies = await self._fetch(batches, "GET (replica)", FROM_REPLICA)
            split = len(replies) - len(extra)
            return replica_read_result(replies[:split], with_ttl), replies[split:]
        replies = await self._fetch(cluster_read_batches(key, guard, with_ttl, extra), "MGET")
        split = len(replies) - len(extra)
        return cluster_read_result(replies[:split], guard, with_ttl), replies[split:]

    async def _fetch(
        self, batches: tuple[tuple[int, list[Command]], ...], operation: str, replica: int | None = None
    ) -> list[Any]:
        """The replies to the batches' commands: straight from the primaries (batch ``replica`` from a replica)
        when it can, else all through redis-py (from the primaries)."""
        entry = await self._loops.get()
        if not entry.degraded:  # straight to the primaries, as the sync backend (see .cluster_reads)
            try:
                replies = await entry.reads.execute(batches, replica)
            except _Failure as exc:
                entry.degraded = True  # read through redis-py until it succeeds: it re-learns the slot map
                entry.relearn(exc)
                raise unavailable(operation, exc) from exc
            if replica is not None and entry.reads.replicas.relearn_due():
                entry.relearn_now()
            if replies is not REDIRECTED:
                return replies
        replies = await self._pipeline([command for _, commands in batches for command in commands], operation)
        entry.degraded = False
        return replies

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        if self._from_replicas:  # as the sync backend: stamped with the entry's guard too
            counters = await self._fetch(replica_stamp_batches(key), "GET (guard, generation)")
            await self._call(replica_set_command(key, value, ttl, counters), "SET")
            return
        where = generation_key(key)
        guess = self._generations.guess(where)
        if guess is not MISSING:  # as the sync backend: one round trip (see .cluster.Generations)
            current = (await self._fetch(cluster_set_batches(key, value, ttl, where, guess), "SET"))[1]
            if current == guess:
                return
        else:
            current = await self._call(("GET", where), "GET (generation)")
        self._generations.seen(where, current)
        await self._call(cluster_set_command(key, value, ttl, current), "SET")

    async def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        return bytes(await self._script(2, [key], [value, expiry_ms(ttl)], "EVALSHA (SET NX)"))

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        keys, arguments = cluster_fill_call(key, value, ttl, guard, token, lock, self._from_replicas)
        return bool(await self._script(0, keys, arguments, "EVALSHA (guarded SET)"))

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        command = ("SET", lock_in_slot(lock_key), owner, "NX", "PX", expiry_ms(lease))
        return bool(await self._call(command, "SET NX (lock)"))

    async def release(self, lock_key: str, owner: bytes) -> None:
        await self._script(1, [lock_in_slot(lock_key)], [owner], "EVALSHA (lock release)")

    async def delete(self, key: str, guard: str | None = None) -> bool:
        if guard is None and not self._from_replicas:  # as the sync backend: a replica's copy is told by its guard
            return bool(await self._call(("UNLINK", key), "UNLINK"))
        command = ("INCRBY", replica_guard(key, guard), 1)
        removed, _ = await self._pipeline([("UNLINK", key), command], "UNLINK/INCRBY")
        return bool(removed)

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        await self.retire_prefix(prefix, guard)  # fills in flight land in the old generation: unreachable
        removed = 0
        try:
            client = await self._redis()
            async for batch in abatches_of(_ascan(client, prefix)):
                removed += await client.unlink(*batch)
        except _Failure as exc:
            raise unavailable("SCAN/UNLINK", exc) from exc
        return removed

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        await self._call(("INCRBY", generation_key(prefix), 1), "INCRBY (generation)")

    async def count_prefix(self, prefix: str) -> int:
        count = 0
        try:
            async for _ in _ascan(await self._redis(), prefix):
                count += 1
        except _Failure as exc:
            raise unavailable("SCAN", exc) from exc
        return count

    async def close(self) -> None:
        await self._loops.close()


class _LoopCluster:
    """One event loop's cluster client, its scripts (the guarded store, the lock release), and its re-reading of
    the slot map after a failure."""

    __slots__ = ("client", "degraded", "reads", "relearning", "scripts")

    def __init__(self, client: redis.asyncio.cluster.RedisCluster) -> None:
        self.client = client
        self.reads = AsyncNodeReads(client)
        self.degraded = False  # read through redis-py until it succeeds (see .cluster_reads)
        self.scripts = tuple(map(client.register_script, SCRIPTS))
        self.relearning: asyncio.Task[None] | None = None

    def relearn(self, exc: BaseException) -> None:
        """After a node failed, re-read the slot map in the background (one re-read at a time).

        The asyncio client's pipelines, unlike its single commands, keep a slot map that points at a dead
        primary unless they may retry, and stashly's calls do not. The map is refreshed in place: closing the
        client instead would cut the other tasks' commands on healthy nodes too.
        """
        if isinstance(exc, redis.asyncio.cluster.RedisCluster.ERRORS_ALLOW_RETRY):
            self.relearn_now()

    def relearn_now(self) -> None:
        if self.relearning is None or self.relearning.done():
            self.relearning = asyncio.get_running_loop().create_task(_refresh(self.client))


async def _refresh(client: redis.asyncio.cluster.RedisCluster) -> None:
    with contextlib.suppress(Exception):  # the next failure tries again
        await client.nodes_manager.initialize()


async def _close(entry: _LoopCluster) -> None:
    await entry.reads.close()
    if entry.relearning is not None:
        entry.relearning.cancel()
        with contextlib.suppress(BaseException):
            await entry.relearning
    await entry.client.aclose()


async def _ascan(client: redis.asyncio.cluster.RedisCluster, prefix: str) -> AsyncIterator[bytes]:
    """Every key under ``prefix``, primary by primary (``SCAN`` is per node)."""
    match = escape_glob(prefix) + "*"
    for node in client.get_primaries():
        cursor = -1
        while cursor:
            reply = await client.scan(max(cursor, 0), match=match, count=SCAN_COUNT, target_nodes=node)
            cursors, keys = cast("tuple[dict[str, int], list[bytes]]", reply)
            cursor = cursors[node.name]
            for key in keys:
                yield key
