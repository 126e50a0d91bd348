"""One run of the command line: its resolved settings, its Redis connections (opened on first use), its output.

Where the url leads decides which servers a command talks to (:meth:`Session.nodes`): the one server; behind
Sentinel, the primary the sentinels name when the run starts (every command then talks to that node only, so
the output can say which node answered); on Redis Cluster, every primary, through redis-py's cluster client and
its per-node clients, all built by the library's own connection policy.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable
from typing import Any, Final, TextIO, cast

import redis
import redis.cluster
import redis.sentinel
from redis.cluster import RedisCluster

from ..backends.redis import ClusterBackend, RedisBackend, RedisOptions, check_prefix, client_arguments
from ..config.settings import Settings, resolve
from ..config.urls import Topology, topology
from .exits import CONFIG, Failure
from .output import dumps, mask, safe

__all__ = ["Node", "Session", "settings_for"]

_PATIENCE: Final = 2.0  # seconds the command line waits at least: the library's 0.25 s defaults suit request paths


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """One server a command talks to: its ``host:port`` (``None`` for the single server of the url) and client."""

    name: str | None
    client: redis.Redis


class Session:
    """The resolved settings and the connections, opened on first use and closed at the end."""

    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.settings: Settings = settings
        self.args: argparse.Namespace = args
        self.options: RedisOptions = RedisOptions.from_settings(settings)
        self.topology: Topology = topology(settings.url)
        self.json: bool = getattr(args, "json", False)
        self.out: TextIO = sys.stdout
        self._client: redis.Redis | None = None
        self._primary: str | None = None
        self._cluster: RedisCluster | None = None
        self._backend: RedisBackend | ClusterBackend | None = None

    @property
    def is_cluster(self) -> bool:
        """Whether the url names a Redis Cluster."""
        return self.topology.kind == "cluster"

    @property
    def where(self) -> str:
        """The url for messages, and behind Sentinel the primary that answers: ``redis+sentinel://... (primary
        127.0.0.1:6380)``."""
        shown = mask(self.settings.url)
        return f"{shown} (primary {self._primary})" if self._primary else shown

    @property
    def client(self) -> redis.Redis:
        """A redis-py client of the one server, or of the primary the sentinels name now (not on Cluster)."""
        if self._client is None:
            if self.topology.kind == "sentinel":
                host, port = self._sentinel_primary()
                arguments = self.options.pool_arguments()
                pinned = redis.BlockingConnectionPool(host=host, port=port, db=self.topology.db, **arguments)  # type: ignore[no-untyped-call]
                self._client = redis.Redis(connection_pool=pinned)
                self._primary = _address(host, port)
            else:
                self._client = redis.Redis(connection_pool=self.options.pool())
        return self._client

    @property
    def cluster(self) -> RedisCluster:
        """redis-py's cluster client with the library's arguments (connects and learns the slot map on creation)."""
        if self._cluster is None:
            self._cluster = RedisCluster(**client_arguments(self.options))
        return self._cluster

    def nodes(self) -> list[Node]:
        """The servers holding the data: the one server, the Sentinel primary, or every Cluster primary (by name)."""
        if not self.is_cluster:
            client = self.client
            return [Node(self._primary, client)]
        cluster = self.cluster
        primaries = cluster.get_primaries()  # type: ignore[no-untyped-call]
        found = [Node(str(node.name), cluster.get_redis_connection(node)) for node in primaries]
        return sorted(found, key=lambda node: node.name or "")

    def owner(self, key: str) -> str | None:
        """The ``host:port`` that answers for ``key``: its slot's primary on Cluster, the Sentinel primary, or
        ``None`` for the single server of the url."""
        if self.is_cluster:
            return str(self.cluster.get_node_from_key(key).name)  # type: ignore[no-untyped-call]
        self.client  # noqa: B018  # resolves the Sentinel primary
        return self._primary

    def pipeline(self) -> Any:
        """A non-transactional pipeline that routes each key to its node (a cluster pipeline on Cluster)."""
        return self.cluster.pipeline() if self.is_cluster else self.client.pipeline(transaction=False)  # type: ignore[no-untyped-call]

    @property
    def backend(self) -> RedisBackend | ClusterBackend:
        """The library's own backend, so ``flush`` removes exactly what ``flush_namespace`` removes."""
        if self._backend is None:
            self._backend = ClusterBackend(self.options) if self.is_cluster else RedisBackend(self.options)
        return self._backend

    def close(self) -> None:
        """Close whatever was opened."""
        if self._client is not None:
            self._client.close()
            self._client.connection_pool.disconnect()
        if self._cluster is not None:
            self._cluster.close()
        if self._backend is not None:
            self._backend.close()

    def emit(self, document: dict[str, Any], lines: Iterable[str]) -> None:
        """Print ``document`` as JSON with ``--json``, else the human-readable ``lines``."""
        if self.json:
            self.out.write(dumps(document) + "\n")
        else:
            self.out.write("".join(safe(line) + "\n" for line in lines))
        self.out.flush()  # here, where a closed pipe is handled, not at exit

    def _sentinel_primary(self) -> tuple[str, int]:
        """The primary's address, asked of the sentinels with the library's Sentinel policy."""
        pool = cast("redis.sentinel.SentinelConnectionPool", self.options.pool())
        try:
            host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
        finally:
            pool.disconnect()
            for sentinel in pool.sentinel_manager.sentinels:
                sentinel.close()
        return str(host), int(port)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings a run uses: resolved as for a manager, with the command line's patience."""
    timeout = getattr(args, "timeout", None)
    settings = resolve(
        config_path=getattr(args, "config", None),
        url=getattr(args, "url", None),
        prefix=getattr(args, "prefix", None),
        namespace=getattr(args, "namespace", None) if args.command in ("get", "stats") else None,
        connect_timeout=timeout,
        socket_timeout=timeout,
    )
    if timeout is None:
        connect, command = max(settings.connect_timeout, _PATIENCE), max(settings.socket_timeout, _PATIENCE)
        settings = dataclasses.replace(settings, connect_timeout=connect, socket_timeout=command)
    if settings.url.startswith("memory:"):
        raise Failure(
            CONFIG,
            "no Redis configured: pass --url redis://host:6379/0, set STASHLY_URL, or add a redis section to "
            "config.json (the memory backend lives inside one process; there is nothing to inspect)",
        )
    if topology(settings.url).kind == "cluster":
        check_prefix(settings.prefix)  # as the library refuses it there: keys would not be where it puts them
    return settings
