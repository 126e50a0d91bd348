"""Connections for the hot path (one per thread; a few per event loop), bypassing the client's layers.

redis-py spends about a quarter of a ``GET`` in its pool, observability and command plumbing. Reads are the
product, so they go straight to a connection of the calling thread: pack, send, read. The policy is the
pool's: the same connection settings (timeouts, TLS, credentials, protocol), one immediate resend when the
connection turns out dead (the server closed it while idle; every command sent here is a read, safe to
resend), never a resend after a timeout, and a connection that failed mid-reply is dropped, never reused
with an unread reply. A fork gives the child new connections.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.connection import ConnectionPool as AsyncConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

_pack_command: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack_command
except ImportError:  # redis-py without its hiredis extra: its own packer
    _pack_command = None

__all__ = ["LoopConnections", "ThreadConnections", "pack", "send"]

_ONE_WRITE = 65536  # commands up to this size in all are joined into one write; larger ones go as they are


def pack(connection: redis.Connection | AbstractConnection, commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """``commands`` in the protocol, as redis-py's ``pack_commands`` would write them. With hiredis each is packed
    by it directly, as redis-py itself does after checking and converting every argument in Python (3 µs of a
    20 µs hit): the commands sent here hold only ``str`` (UTF-8, redis-py's default encoding), bytes and ints."""
    if _pack_command is None:
        return connection.pack_commands(commands)
    packed = [_pack_command(command) for command in commands]
    if len(packed) == 1 or sum(map(len, packed)) > _ONE_WRITE:
        return packed
    return [b"".join(packed)]  # one write, not one per command: each costs a system call and a wake-up


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
                # connect() first: sending on a closed connection would connect to its configured address,
                # skipping a subclass's connect() (Sentinel's asks the sentinels for the primary there).
                if connection._sock is None:  # connect() itself costs 0.4 µs even when connected
                    connection.connect()  # type: ignore[no-untyped-call]
                connection.send_packed_command(pack(connection, commands), check_health=False)  # type: ignore[no-untyped-call]
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


class LoopConnections:
    """The asyncio twin for one event loop: reads on idle connections kept here, without the pool's locks.

    At most ``limit`` connections; a caller finding all of them busy waits for one, up to ``wait`` seconds
    (then ``ConnectionError``, like the blocking pool). A connection interrupted mid-reply — a timeout, or
    its caller cancelled — is disconnected by redis-py before it comes back here, and reconnects on next use.
    """

    def __init__(self, pool: AsyncConnectionPool, limit: int, wait: float) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._slots = asyncio.Semaphore(limit)
        self._wait = wait

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one write and read their replies, in order."""
        slots = self._slots
        if slots.locked():
            try:
                async with asyncio.timeout(self._wait):
                    await slots.acquire()
            except TimeoutError:
                raise RedisConnectionError("no connection available: all are busy") from None
        else:
            await slots.acquire()  # free slot: returns without suspending
        connection = self._idle.pop() if self._idle else self._pool.connection_class(**self._pool.connection_kwargs)
        try:
            for attempt in (1, 2):
                try:
                    if not connection.is_connected:  # through connect(), as in ThreadConnections
                        await connection.connect()  # type: ignore[no-untyped-call]
                    await send(connection, pack(connection, commands))
                    return [await connection.read_response() for _ in commands]
                except RedisConnectionError:
                    await connection.disconnect()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        finally:
            self._idle.append(connection)
            slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


async def send(connection: AbstractConnection, packed: list[bytes]) -> None:
    """Write a request on an open connection without redis-py's ``wait_for``, which costs a task per send.

    Writing to the transport does not wait; only a full socket buffer makes ``drain`` wait, and that wait is
    bounded by the socket timeout. Anything else (not connected yet, closing) takes redis-py's own path.
    """
    writer: asyncio.StreamWriter | None = getattr(connection, "_writer", None)
    if writer is None or writer.transport.is_closing():
        await connection.send_packed_command(packed, check_health=False)
        return
    try:
        writer.writelines(packed)
        if writer.transport.get_write_buffer_size():
            async with asyncio.timeout(connection.socket_timeout):
                await writer.drain()
    except TimeoutError:
        await connection.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        await connection.disconnect(nowait=True)
        raise RedisConnectionError(f"error while writing to socket: {exc}") from exc
    except BaseException:
        await connection.disconnect(nowait=True)  # a write cut short: never reuse the connection
        raise
