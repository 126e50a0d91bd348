"""A Redis connection per thread for the hot path, bypassing the pool and the client's command layers.

redis-py spends about a quarter of a ``GET`` in its pool, observability and command plumbing. Reads are the
product, so they go straight to a connection of the calling thread: pack, send, read. The policy is the
pool's: the same connection settings (timeouts, TLS, credentials, protocol), one immediate resend when the
connection turns out dead (the server closed it while idle; every command sent here is a read, safe to
resend), never a resend after a timeout, and a connection that failed mid-reply is dropped, never reused
with an unread reply. A fork gives the child new connections.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["ThreadConnections"]


class ThreadConnections:
    """One connection per thread (and per process), made like the pool's own connections."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._local = threading.local()
        self._all: weakref.WeakSet[redis.Connection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _connection(self) -> redis.Connection:
        local = self._local
        connection: redis.Connection | None = getattr(local, "connection", None)
        if connection is None or local.pid != os.getpid():
            connection = self._pool.connection_class(**self._pool.connection_kwargs)
            local.connection, local.pid = connection, os.getpid()
            with self._lock:
                self._all.add(connection)
        return connection

    def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one write and read their replies, in order."""
        connection = self._connection()
        for attempt in (1, 2):
            try:
                packed = connection.pack_commands(commands)  # type: ignore[no-untyped-call]
                connection.send_packed_command(packed, check_health=False)  # type: ignore[no-untyped-call]
                return [connection.read_response() for _ in commands]
            except RedisConnectionError:
                connection.disconnect()  # type: ignore[no-untyped-call]
                if attempt == 2:
                    raise
            except BaseException:
                # a timeout or an interrupt mid-reply: never reuse a connection with an unread reply
                connection.disconnect()  # type: ignore[no-untyped-call]
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            connections = list(self._all)
        for connection in connections:
            connection.disconnect()  # type: ignore[no-untyped-call]
