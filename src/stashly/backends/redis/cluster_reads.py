"""The Cluster hit path: reads sent straight to each primary, on connections of the calling thread (or task).

redis-py's cluster pipeline spends more in Python than a single server's whole read. A cached read needs two
things in two known slots, the entry (with its guard) and the namespace's generation, so this sends each
primary its share on a thread-local connection, from the client's own slot map, before reading any reply:
one round trip of wall time, none of the pipeline's layers. A tagged read adds its tags' tokens, and a ``set``
sends its write beside the read of the generation it is stamped with (:class:`.cluster.Generations`), the same way.

It never handles the unusual. A redirection (``MOVED``, ``ASK``, ``TRYAGAIN``) or a slot the map does not cover
answers ``REDIRECTED``: the caller sends the read through redis-py, which follows it and updates the map. A
failed connection is dropped (never reused with an unread reply) and its error raised: the caller then reads
through redis-py until a read succeeds there, since redis-py is what re-learns the slot map after a failover.

:class:`AsyncNodeReads` is the asyncio twin, for one event loop: each read takes an idle connection of its own
(never one of redis-py's, which it may tear down under a read), so concurrent tasks never share one mid-reply.

Reading from replicas (:mod:`.replicas`), one batch of a read goes to a replica of its slot instead, on a
connection that said ``READONLY`` when it connected. A replica that fails or redirects a read rests for
:data:`REST` seconds: its slots' entries are read from their primaries meanwhile.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Generic, TypeVar

import redis
import redis.cluster
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError

from .direct import pack, send

__all__ = ["MIGRATING", "REDIRECTED", "REST", "AsyncNodeReads", "Migrations", "NodeReads", "Replicas"]

REDIRECTED: Final = None
"""What :meth:`NodeReads.execute` answers when redis-py has to take the read."""
REST: Final = 5.0
"""Seconds a replica that failed a read is passed over (its primary answers instead)."""
MIGRATING: Final = 10.0
"""Seconds a slot counts as migrating after a read of it was redirected with ``ASK`` or ``TRYAGAIN``."""
_REDIRECTIONS = (MovedError, AskError, TryAgainError, ClusterDownError)
_Name = TypeVar("_Name", int, str)


class Marked(Generic[_Name]):
    """Names (slots, nodes) marked for ``seconds``: false while none is."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._until: dict[_Name, float] = {}

    def __bool__(self) -> bool:
        return bool(self._until)

    def mark(self, names: Iterable[_Name]) -> None:
        until = time.monotonic() + self._seconds
        for name in names:
            self._until[name] = until

    def covers(self, name: _Name) -> bool:
        """Whether ``name`` was marked less than ``seconds`` ago."""
        until = self._until.get(name)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        self._until.pop(name, None)
        return False


class Migrations(Marked[int]):
    """The slots whose reads were lately redirected mid-migration (``ASK``, ``TRYAGAIN``): while one migrates, a
    key of it may live on a node the slot map does not name yet, whose writes a local tier may not hear, so the
    backend names no node for those keys (``node_of`` answers ``None``) and the tier keeps none of them."""

    def __init__(self) -> None:
        super().__init__(MIGRATING)


class Replicas:
    """Which replica answers a slot's read, in turn, passing over the ones resting after a failure; and whether
    the slot map should be read again because a slot listed none (a replica only appears in ``CLUSTER SLOTS``
    once it has synced, and redis-py re-reads the map only after an error)."""

    def __init__(self) -> None:
        self._resting: Marked[str] = Marked(REST)
        self._turn = itertools.count()
        self._unlisted = False
        self._relearned = -REST

    def pick(self, nodes: Sequence[Any]) -> Any:
        """A replica among a slot's ``nodes`` (its primary first), or the primary when none may answer."""
        replicas = nodes[1:]
        if not replicas:
            self._unlisted = True
            return nodes[0]
        if self._resting:
            replicas = [node for node in replicas if not self._resting.covers(node.name)]
        return replicas[next(self._turn) % len(replicas)] if replicas else nodes[0]

    def rest(self, node: Any) -> None:
        self._resting.mark((node.name,))

    def relearn_due(self) -> bool:
        """Whether to read the slot map again now: a slot listed no replica, and the last re-read is
        :data:`REST` seconds old."""
        if not self._unlisted or time.monotonic() - self._relearned < REST:
            return False
        self._unlisted, self._relearned = False, time.monotonic()
        return True


class NodeReads:
    """Thread-local connections to the primaries of one cluster client, for reads."""

    def __init__(self, client: RedisCluster) -> None:
        self._nodes = client.nodes_manager  # its slot map is replaced, not updated, when re-read: look it up
        self.replicas: Replicas = Replicas()
        self.migrations: Migrations = Migrations()
        self._local = threading.local()
        self._all: weakref.WeakSet[redis.Connection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _connection(self, node: redis.cluster.ClusterNode) -> redis.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # a forked child opens its own
            local.pid, local.nodes = os.getpid(), {}
        connection: redis.Connection | None = local.nodes.get(node.name)
        if connection is None:
            pool = node.redis_connection.connection_pool
            connection = local.nodes[node.name] = pool.connection_class(**pool.connection_kwargs)
            with self._lock:
                self._all.add(connection)
        return connection

    def execute(
        self, batches: Sequence[tuple[int, Sequence[tuple[Any, ...]]]], replica: int | None = None
    ) -> list[Any] | None:
        """The replies to each ``(slot, commands)`` batch, in order, or ``REDIRECTED``; batch ``replica`` (if
        given) is read from a replica of its slot."""
        try:
            nodes, on_replica = _nodes(self._nodes.slots_cache, batches, replica, self.replicas)
            plan: dict[str, tuple[redis.Connection, list[tuple[Any, ...]]]] = _by_node(nodes, batches, self._connection)
        except Exception:  # a slot not covered, a node redis-py is still setting up: its own path will tell
            return REDIRECTED
        try:
            for name, (connection, commands) in plan.items():
                if connection._sock is None:
                    connection.connect()  # type: ignore[no-untyped-call]
                    if on_replica is not None and name == on_replica.name:
                        connection.send_command("READONLY")  # type: ignore[no-untyped-call]
                        connection.read_response()
                connection.send_packed_command(pack(connection, commands), check_health=False)  # type: ignore[no-untyped-call]
            replies = {
                name: [connection.read_response() for _ in commands] for name, (connection, commands) in plan.items()
            }
        except BaseException as exc:
            for connection, _ in plan.values():  # some replies may be unread
                connection.disconnect()  # type: ignore[no-untyped-call]
            if on_replica is not None:
                self.replicas.rest(on_replica)
            if isinstance(exc, _REDIRECTIONS):
                _migrating(self.migrations, exc, batches)
                return REDIRECTED
            raise
        return _in_batch_order(nodes, batches, replies)

    def close(self) -> None:
        with self._lock:
            connections = list(self._all)
        for connection in connections:
            connection.disconnect()  # type: ignore[no-untyped-call]


class AsyncNodeReads:
    """:class:`NodeReads` for one event loop's cluster client, on idle connections of its own per node (made like
    the node's; redis-py never disconnects them under a read), so concurrent tasks never share one mid-reply."""

    def __init__(self, client: AsyncRedisCluster) -> None:
        self._nodes = client.nodes_manager  # its slot map is replaced, not updated, when re-read: look it up
        self.replicas: Replicas = Replicas()
        self.migrations: Migrations = Migrations()
        self._idle: dict[str, list[Any]] = {}

    def _connection(self, node: AsyncClusterNode) -> Any:
        idle = self._idle.get(node.name)
        return idle.pop() if idle else node.connection_class(**node.connection_kwargs)

    def _release(self, plan: dict[str, tuple[Any, Any]]) -> None:
        # As many stay idle as were ever in flight at once on this loop (a disconnected one reconnects on use).
        for name, (connection, _) in plan.items():
            self._idle.setdefault(name, []).append(connection)

    async def execute(
        self, batches: Sequence[tuple[int, Sequence[tuple[Any, ...]]]], replica: int | None = None
    ) -> list[Any] | None:
        """The replies to each ``(slot, commands)`` batch, in order, or ``REDIRECTED``; batch ``replica`` (if
        given) is read from a replica of its slot."""
        try:
            nodes, on_replica = _nodes(self._nodes.slots_cache, batches, replica, self.replicas)
        except (KeyError, IndexError):  # a slot not covered: redis-py's own path will tell
            return REDIRECTED
        plan: dict[str, tuple[Any, list[tuple[Any, ...]]]] = _by_node(nodes, batches, self._connection)
        try:
            for name, (connection, commands) in plan.items():
                if not connection.is_connected:
                    await connection.connect()
                    if on_replica is not None and name == on_replica.name:
                        await connection.send_command("READONLY")
                        await connection.read_response()
                await send(connection, pack(connection, commands))
            replies = {
                name: [await connection.read_response() for _ in commands]
                for name, (connection, commands) in plan.items()
            }
        except BaseException as exc:
            for connection, _ in plan.values():  # some replies may be unread
                await connection.disconnect(nowait=True)
            if on_replica is not None:
                self.replicas.rest(on_replica)
            if isinstance(exc, _REDIRECTIONS):
                _migrating(self.migrations, exc, batches)
                return REDIRECTED
            raise
        finally:
            self._release(plan)
        return _in_batch_order(nodes, batches, replies)

    async def close(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.disconnect(nowait=True)


def _migrating(migrations: Migrations, exc: BaseException, batches: Sequence[tuple[int, Sequence[Any]]]) -> None:
    """Mark the slot an ``ASK`` names, or every slot of a read ``TRYAGAIN`` refused, as migrating."""
    if isinstance(exc, AskError):
        migrations.mark((exc.slot_id,))
    elif isinstance(exc, TryAgainError):
        migrations.mark(slot for slot, _ in batches)


def _nodes(
    slots: Any, batches: Sequence[tuple[int, Sequence[Any]]], replica: int | None, replicas: Replicas
) -> tuple[list[Any], Any]:
    """The primary serving each batch's slot, by a client's slot map (``KeyError``/``IndexError``: not covered),
    but for batch ``replica``, which a replica of its slot serves if one may; and that replica (``None``: none)."""
    nodes = [slots[slot][0] for slot, _ in batches]
    if replica is None:
        return nodes, None
    chosen = replicas.pick(slots[batches[replica][0]])
    if chosen is nodes[replica]:  # no replica may answer: its primary does
        return nodes, None
    nodes[replica] = chosen
    return nodes, chosen


def _by_node(
    nodes: Sequence[Any], batches: Sequence[tuple[int, Sequence[tuple[Any, ...]]]], connection_for: Callable[[Any], Any]
) -> dict[str, tuple[Any, list[tuple[Any, ...]]]]:
    """Each node's connection and the commands of every batch it serves, in order: one write per node."""
    plan: dict[str, tuple[Any, list[tuple[Any, ...]]]] = {}
    for node, (_, commands) in zip(nodes, batches, strict=True):
        if node.name not in plan:
            plan[node.name] = (connection_for(node), [])
        plan[node.name][1].extend(commands)
    return plan


def _in_batch_order(
    nodes: Sequence[Any], batches: Sequence[tuple[int, Sequence[Any]]], replies: dict[str, list[Any]]
) -> list[Any]:
    """Each node's replies handed back in the order of the batches that asked (a node may serve several)."""
    found: list[Any] = []
    taken = dict.fromkeys(replies, 0)
    for node, (_, commands) in zip(nodes, batches, strict=True):
        start = taken[node.name]
        found += replies[node.name][start : start + len(commands)]
        taken[node.name] = start + len(commands)
    return found
