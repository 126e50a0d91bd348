"""How to reach Redis and how patient to be with it: one set of options for every client stashly makes.

The client policy lives here because it is about the wire, not about caching: short connect and command
timeouts, at most one immediate retry and only for connection errors (a timeout is never retried, so a hung
server costs one timeout), and a *blocking* pool so a burst waits for a connection instead of failing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.connection import ConnectionPool as AsyncConnectionPool
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from ...config.urls import Topology, topology

if TYPE_CHECKING:
    from ...config.settings import Settings

__all__ = ["RedisOptions"]


@dataclass(frozen=True, slots=True, repr=False)
class RedisOptions:
    """How to reach Redis and how patient to be with it."""

    url: str
    username: str | None = None
    password: str | None = None
    connect_timeout: float = 0.25
    socket_timeout: float = 0.25
    max_connections: int = 50
    protocol: int = 2
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    read_from_replicas: bool = False  # Cluster: entries from a replica of their slot, counters from the primaries

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisOptions:
        """The settings' fields of the same names (every field here is one of them)."""
        return cls(**{field.name: getattr(settings, field.name) for field in dataclasses.fields(cls)})

    def __repr__(self) -> str:
        return (
            f"RedisOptions(url={self.url!r}, username={self.username!r}, password={'***' if self.password else None})"
        )

    @property
    def topology(self) -> Topology:
        """Single server, Cluster or Sentinel, and the nodes to start from."""
        return topology(self.url)

    def pool(self) -> redis.ConnectionPool:
        """A synchronous connection pool with this policy (nothing connects until it is used).

        Behind Sentinel it is redis-py's Sentinel pool: each new connection asks the sentinels for the current
        primary, and one that finds a demoted primary drops itself, so failovers are followed.
        """
        where = self.topology
        if where.kind != "sentinel":
            return redis.BlockingConnectionPool.from_url(self.url, **self.pool_arguments())
        ask = self._sentinel_arguments()
        sentinels = redis.sentinel.Sentinel(list(where.nodes), sentinel_kwargs=ask)  # type: ignore[no-untyped-call, unused-ignore]
        arguments = self.pool_arguments()
        del arguments["timeout"]  # the Sentinel pool does not block: beyond max_connections it fails (open)
        pool = redis.sentinel.SentinelConnectionPool(where.service, sentinels, db=where.db, **arguments)  # type: ignore[no-untyped-call, unused-ignore]
        return cast("redis.ConnectionPool", pool)

    def async_pool(self) -> AsyncConnectionPool:
        """The asyncio twin of :meth:`pool`, for the running event loop."""
        where = self.topology
        arguments = self.pool_arguments(asynchronous=True)
        if where.kind != "sentinel":
            return redis.asyncio.BlockingConnectionPool.from_url(self.url, **arguments)
        ask = self._sentinel_arguments()
        sentinels = redis.asyncio.sentinel.Sentinel(list(where.nodes), sentinel_kwargs=ask)  # type: ignore[no-untyped-call, unused-ignore]
        del arguments["timeout"]
        pool = redis.asyncio.sentinel.SentinelConnectionPool(where.service, sentinels, db=where.db, **arguments)  # type: ignore[no-untyped-call, unused-ignore]
        return cast("AsyncConnectionPool", pool)

    def _sentinel_arguments(self) -> dict[str, Any]:
        # Sentinels are asked with the same patience as the data nodes, and without the data nodes' credentials.
        return {"socket_timeout": self.socket_timeout, "socket_connect_timeout": self.connect_timeout}

    @property
    def pool_wait(self) -> float:
        """How long a caller waits for a free connection before giving up."""
        return self.connect_timeout + self.socket_timeout

    def tls_files(self) -> dict[str, str]:
        """The CA and client certificate files to pass on, for a TLS url (``rediss://``, ``rediss+cluster://``)."""
        if not self.url.startswith("rediss"):
            return {}
        files = [("ssl_ca_certs", self.ssl_ca_certs), ("ssl_certfile", self.ssl_certfile)]
        return {name: value for name, value in [*files, ("ssl_keyfile", self.ssl_keyfile)] if value is not None}

    def pool_arguments(self, asynchronous: bool = False) -> dict[str, Any]:
        retry_class = AsyncRetry if asynchronous else Retry  # the asyncio client awaits its retry policy
        return self.tls_files() | {
            "username": self.username,
            "password": self.password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            "max_connections": self.max_connections,
            # how long a caller waits for a free pooled connection before giving up
            "timeout": self.pool_wait,
            # One immediate retry on a dropped connection (the server closed an idle one: every command stashly
            # sends is idempotent, so resending is safe), never after a timeout (a hung server costs one timeout).
            "retry": retry_class(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "retry_on_error": [RedisConnectionError],
            "retry_on_timeout": False,
            "health_check_interval": 0,
            "protocol": self.protocol,
        }
