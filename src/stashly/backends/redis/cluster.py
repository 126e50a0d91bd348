"""The backend for Redis Cluster, over redis-py's cluster client (its asyncio twin: :mod:`.cluster_async`).

redis-py routes each command to the primary of its key's slot and follows ``MOVED``/``ASK`` while slots move.
What stashly adds is placement: a command or script over several keys needs them in one slot, so an entry's
guard and stampede lock are *colocated* with it (:func:`~stashly.keys.slots.colocated`), and
everything else is grouped by slot. The guard is so per slot and per namespace: ``remove`` bumps the one beside
the entry, while flushes bump the namespace's generation, which every entry is stamped with and every read
fetches in the same round trip (a pipeline over the two nodes concerned).

A cluster-wide write cannot be atomic, and none is needed: a plain ``set`` reads the generation and then
writes; a flush landing between the two is simply ordered after the write.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisError
from redis.retry import Retry

from ...errors import ConfigError
from ...keys.layout import generation_key
from ...keys.slots import lock_in_slot, slot_of
from ...memo import remember
from ...sentinels import MISSING, Missing
from ..base import Lock, Read
from .cluster_reads import REDIRECTED, NodeReads
from .commands import (
    DRAW_SCRIPT,
    GUARDED_SET_SCRIPT,
    RELEASE_SCRIPT,
    SCAN_COUNT,
    Command,
    batches_of,
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

__all__ = ["ClusterBackend", "Others", "check_prefix", "client_arguments", "failures", "primary_of"]

Others = list[bytes | None]
SCRIPTS = (GUARDED_SET_SCRIPT, RELEASE_SCRIPT, DRAW_SCRIPT)
"""The Cluster backends' scripts, registered with each client, by index: guarded store, lock release, draw."""

failures: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)
"""What a failed Cluster call raises: redis-py's errors and the socket's."""
_Failure = failures


def client_arguments(options: RedisOptions, asynchronous: bool = False) -> dict[str, Any]:
    """redis-py cluster client arguments with stashly's policy: short timeouts, no full-coverage requirement (a
    cluster with a primary down still serves the other slots), and no retry: the client re-reads the slot map
    after a failure, so a node that stops answering costs the first call about three socket timeouts and the
    next ones one each, until the circuit breaker opens. ``MOVED``/``ASK`` are followed regardless."""
    topology = options.topology
    node_class = redis.asyncio.cluster.ClusterNode if asynchronous else redis.cluster.ClusterNode
    retry_class = AsyncRetry if asynchronous else Retry
    return options.tls_files() | {
        "startup_nodes": [node_class(host, port) for host, port in topology.nodes],
        "username": options.username,
        "password": options.password,
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.connect_timeout,
        "max_connections": options.max_connections,
        "retry": retry_class(NoBackoff(), 0),
        "require_full_coverage": False,
        "protocol": options.protocol,
        "ssl": topology.tls,
    }


def _refresh(client: RedisCluster) -> None:
    with contextlib.suppress(Exception):  # the next failure tries again
        client.nodes_manager.initialize()


def primary_of(slots: Any, key: str) -> str | None:
    """The name of the primary of ``key``'s slot in a client's slot map."""
    nodes = slots.get(slot_of(key))
    return nodes[0].name if nodes else None


def check_prefix(prefix: str) -> None:
    """Colocation puts a hash tag right after the prefix: a brace in the prefix would come first and win."""
    if "{" in prefix or "}" in prefix:
        raise ConfigError(
            f"prefix: expected no '{{' or '}}' on Redis Cluster (stashly places keys by hash tags), found {prefix!r}"
        )


class Generations:
    """The generation last seen of each namespace (a bounded memo), so that a Cluster ``set`` takes one round trip.

    The entry and its namespace's generation live in different slots, so no script can stamp one with the other.
    The entry is written stamped with the generation last seen while the current one is read from its own node,
    in the same round trip. The same value means no flush came between: the write stands. Another (a flush since)
    means one more write, stamped with the one just read; until then the entry carries an old generation and reads
    as a miss, never as current. The first write of a namespace reads the generation first.
    """

    def __init__(self) -> None:
        self._last: dict[str, bytes | None] = {}

    def guess(self, generation: str) -> bytes | Missing | None:
        """The value last seen under the ``generation`` key (``None``: absent), or ``MISSING`` if never seen."""
        return self._last.get(generation, MISSING)

    def seen(self, generation: str, value: bytes | None) -> None:
        remember(self._last, generation, value)


class ClusterBackend:
    """The synchronous Cluster backend; connects on first use (and learns the slot map then)."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._arguments = client_arguments(options)
        self._client: RedisCluster | None = None
        self._scripts: tuple[Script, ...] | None = None
        self._reads: NodeReads | None = None
        self._degraded = False  # read through redis-py until it succeeds (see .cluster_reads)
        self._generations = Generations()
        self._from_replicas = options.read_from_replicas  # entries from replicas: see .replicas
        self._relearning: threading.Thread | None = None
        self._lock = threading.Lock()

    def _redis(self) -> RedisCluster:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = RedisCluster(**self._arguments)
                    self._scripts = tuple(map(client.register_script, SCRIPTS))
                    self._reads = NodeReads(client)
                    self._client = client
        return client

    def _script(self, which: int, keys: list[str], arguments: list[Any], operation: str) -> Any:
        try:
            self._redis()
            assert self._scripts is not None
            return self._scripts[which](keys=keys, args=arguments)
        except _Failure as exc:
            self._relearn(exc)
            raise unavailable(operation, exc) from exc

    def _pipeline(self, commands: Iterable[Command], operation: str) -> list[Any]:
        try:
            pipe = self._redis().pipeline()  # type: ignore[no-untyped-call]
            for command in commands:
                pipe.execute_command(*command)
            return cast("list[Any]", pipe.execute())
        except _Failure as exc:
            self._relearn(exc)
            raise unavailable(operation, exc) from exc

    def _relearn(self, exc: BaseException) -> None:
        """After a node failed, re-read the slot map in a background thread (one re-read at a time).

        A failing node's keys are skipped by its breaker, so nothing else would send redis-py the command that
        makes it re-read the map, and the promoted replica would never be found.
        """
        if isinstance(exc, RedisCluster.ERRORS_ALLOW_RETRY):
            self._relearn_now()

    def _relearn_now(self) -> None:
        client = self._client
        if client is None:
            return
        with self._lock:
            if self._relearning is not None and self._relearning.is_alive():
                return
            self._relearning = threading.Thread(target=_refresh, args=(client,), name="stashly-slots", daemon=True)
            self._relearning.start()

    def _call(self, command: Command, operation: str) -> Any:
        try:
            return self._redis().execute_command(*command)  # type: ignore[no-untyped-call]
        except _Failure as exc:
            self._relearn(exc)
            raise unavailable(operation, exc) from exc

    def _fetch(
        self, batches: tuple[tuple[int, list[Command]], ...], operation: str, replica: int | None = None
    ) -> list[Any]:
        """The replies to the batches' commands: straight from the primaries (batch ``replica`` from a replica)
        when it can, else all through redis-py (from the primaries)."""
        reads = self._reads
        if reads is None:
            try:
                self._redis()  # connects: a dead startup node can fail it
            except _Failure as exc:
                raise unavailable(operation, exc) from exc
            reads = self._reads
            assert reads is not None
        if not self._degraded:
            try:
                replies = reads.execute(batches, replica)
            except _Failure as exc:
                self._degraded = True  # redis-py re-learns the slot map: read through it until it succeeds
                self._relearn(exc)
                raise unavailable(operation, exc) from exc
            if replica is not None and reads.replicas.relearn_due():
                self._relearn_now()
            if replies is not REDIRECTED:
                return replies
        replies = self._pipeline([command for _, commands in batches for command in commands], operation)
        self._degraded = False
        return replies

    def node_of(self, key: str) -> str | None:
        """The primary serving ``key`` now, by the client's slot map (``None`` before it is known, or while its
        slot migrates: see :class:`.cluster_reads.Migrations`)."""
        client, reads = self._client, self._reads
        if client is None or (reads is not None and reads.migrations and reads.migrations.covers(slot_of(key))):
            return None
        return primary_of(client.nodes_manager.slots_cache, key)

    def connect_to(self, node: str) -> tuple[Any, dict[str, Any]]:
        """How to open a connection of one's own to ``node`` (``host:port``): the client's settings (credentials,
        TLS, timeouts), that address. Connects the client first if it has not yet."""
        default = self._redis().get_default_node()  # type: ignore[no-untyped-call, unused-ignore]
        if default is None or default.redis_connection is None:
            raise LookupError("the cluster client knows no node yet")
        pool = default.redis_connection.connection_pool
        host, _, port = node.rpartition(":")
        return pool.connection_class, {**pool.connection_kwargs, "host": host, "port": int(port)}

    def known_nodes(self) -> list[str]:
        """The nodes the client's slot map holds now (none before it connects)."""
        client = self._client
        return [] if client is None else [node.name for node in client.get_nodes()]  # type: ignore[no-untyped-call, unused-ignore]

    def get(self, key: str) -> bytes | None:
        return self.read(key, None)[0]  # GET of the entry and of its generation

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        commands, groups, per_key = cluster_many_plan(keys)
        return cluster_many_result(keys, self._pipeline(commands, "MGET"), groups, per_key)

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        if self._from_replicas:
            replies = self._fetch(replica_read_batches(key, guard, with_ttl), "GET (replica)", FROM_REPLICA)
            return replica_read_result(replies, with_ttl)
        batches = cluster_read_batches(key, guard, with_ttl)
        return cluster_read_result(self._fetch(batches, "GET" if guard is None else "MGET"), guard, with_ttl)

    def read_with(self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]) -> tuple[Read, Others]:
        if self._from_replicas:
            replies = self._fetch(replica_read_batches(key, guard, with_ttl, extra), "GET (replica)", FROM_REPLICA)
            split = len(replies) - len(extra)
            return replica_read_result(replies[:split], with_ttl), replies[split:]
        replies = self._fetch(cluster_read_batches(key, guard, with_ttl, extra), "MGET")
        split = len(replies) - len(extra)
        return cluster_read_result(replies[:split], guard, with_ttl), replies[split:]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        if self._from_replicas:  # stamped with the entry's guard too: two round trips (see .replicas)
            counters = self._fetch(replica_stamp_batches(key), "GET (guard, generation)")
            self._call(replica_set_command(key, value, ttl, counters), "SET")
            return
        where = generation_key(key)
        guess = self._generations.guess(where)
        if guess is not MISSING:  # written with the generation it is stamped with read beside it: see Generations
            current = self._fetch(cluster_set_batches(key, value, ttl, where, guess), "SET")[1]
            if current == guess:
                return
        else:
            current = self._call(("GET", where), "GET (generation)")
        self._generations.seen(where, current)
        self._call(cluster_set_command(key, value, ttl, current), "SET")

    def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        return bytes(self._script(2, [key], [value, expiry_ms(ttl)], "EVALSHA (SET NX)"))

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        keys, arguments = cluster_fill_call(key, value, ttl, guard, token, lock, self._from_replicas)
        return bool(self._script(0, keys, arguments, "EVALSHA (guarded SET)"))

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        command = ("SET", lock_in_slot(lock_key), owner, "NX", "PX", expiry_ms(lease))
        return bool(self._call(command, "SET NX (lock)"))

    def release(self, lock_key: str, owner: bytes) -> None:
        self._script(1, [lock_in_slot(lock_key)], [owner], "EVALSHA (lock release)")

    def delete(self, key: str, guard: str | None = None) -> bool:
        if guard is None and not self._from_replicas:  # a replica's copy is told stale by its guard: bump it
            return bool(self._call(("UNLINK", key), "UNLINK"))
        removed, _ = self._pipeline([("UNLINK", key), ("INCRBY", replica_guard(key, guard), 1)], "UNLINK/INCRBY")
        return bool(removed)

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        self.retire_prefix(prefix, guard)  # fills in flight land in the old generation: unreachable
        removed = 0
        try:
            client = self._redis()
            for batch in batches_of(self._scan(client, prefix)):
                removed += client.unlink(*batch)  # redis-py splits it by slot
        except _Failure as exc:
            raise unavailable("SCAN/UNLINK", exc) from exc
        return removed

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        self._call(("INCRBY", generation_key(prefix), 1), "INCRBY (generation)")

    def count_prefix(self, prefix: str) -> int:
        try:
            return sum(1 for _ in self._scan(self._redis(), prefix))
        except _Failure as exc:
            raise unavailable("SCAN", exc) from exc

    @staticmethod
    def _scan(client: RedisCluster, prefix: str) -> Iterator[bytes]:
        """Every key under ``prefix``, primary by primary (``SCAN`` is per node)."""
        match = escape_glob(prefix) + "*"
        for node in client.get_primaries():  # type: ignore[no-untyped-call]
            cursor = -1
            while cursor:
                reply = client.scan(max(cursor, 0), match=match, count=SCAN_COUNT, target_nodes=node)
                cursors, keys = cast("tuple[dict[str, int], list[bytes]]", reply)
                cursor = cursors[node.name]
                yield from keys

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            reads, self._reads = self._reads, None
        if reads is not None:
            reads.close()
        if client is not None:
            client.close()
