"""The invalidation connection of a local tier: Redis tells it about every write under a prefix.

One connection per process and tier, on a daemon thread. It runs ``CLIENT TRACKING ON REDIRECT <itself>
BCAST PREFIX <prefix>:`` and subscribes to ``__redis__:invalidate``, so every write of a key under the prefix
— by any client, in any process — arrives here as a message naming the key, which is dropped from the tier.
This is Redis's server-assisted client-side caching in broadcast mode, on RESP2 so it works whatever protocol
the other connections speak and on any Redis since 6.0 (redis-py's own client cache needs 7.4 and has no
asyncio twin).

On Redis Cluster there is one such connection per primary (:mod:`.cluster_tracking` keeps them), each the
*source* of the entries read from its node: its silence suspends those only.

The tier serves entries only while this connection is heard from: a ``PING`` every quarter second, and each
reply extends the tier's life by one second from when the ``PING`` was sent. A connection that errors, closes
or falls silent suspends the tier (everything dropped, nothing served); it reconnects with a short backoff and
starts from an empty tier. The thread holds its tier weakly and ends when the tier is gone or on ``stop``.

A thread needs the GIL to apply what it hears, and a process busy serving local hits (a loop that never waits)
hands it over only every switch interval, per wake-up: messages used to be applied up to hundreds of ms late.
So the thread waits for the socket to be readable *before* it reads, and marks the bytes it has taken in as
unapplied until it has applied them; the tier asks (:meth:`LocalTier.heed`) "is the socket readable, or are bytes
taken in but unapplied?" once a millisecond and goes to Redis meanwhile. After the handshake the thread parses
replies itself (:class:`_Replies`, RESP2), so that nothing it has read hides in a client library's buffer.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ...keys.layout import retired_head
from .local import LocalTier

__all__ = ["Connect", "InvalidationTracker"]

PING_EVERY = 0.25
SILENCE = 1.0  # how long the tier trusts its entries after a PING that was answered
_CHANNEL = "__redis__:invalidate"
_BACKOFF = (0.05, 1.0)
_PING = b"*1\r\n$4\r\nPING\r\n"
_READ_SIZE = 65536

Connect = tuple[Any, dict[str, Any]]
"""How to open the connection: a redis-py connection class and its arguments (host, port, credentials, TLS)."""


class InvalidationTracker:
    """Keeps ``tier`` coherent with the Redis that ``connect`` reaches, for every key starting with ``prefix``;
    on Cluster, ``source`` names the node (``host:port``), and the tracker is started by :mod:`.cluster_tracking`
    rather than by the tier."""

    def __init__(
        self,
        tier: LocalTier,
        connect: Connect,
        prefix: str,
        report: Callable[[BaseException], None],
        source: str | None = None,
    ) -> None:
        self._tier = weakref.ref(tier)
        self._prefix = prefix
        self._report = report
        self._connection_class, kwargs = connect
        self._connect_kwargs: dict[str, Any] = {**kwargs, "protocol": 2}
        self.source: str | None = source
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stop = threading.Event()
        if source is None:
            tier.on_wake(self.start)

    def start(self, source: str | None = None) -> None:
        """Start listening unless already listening in this process (a fork leaves the child without the thread)."""
        if self._pid != os.getpid():
            self._pid, self._lock, self._thread = os.getpid(), threading.Lock(), None
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            name = "stashly-invalidations" if self.source is None else f"stashly-invalidations {self.source}"
            self._thread = threading.Thread(target=self._listen, args=(self._stop,), name=name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop listening and drop the tier's entries; a later read starts again."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        tier = self._tier()
        if tier is not None:
            tier.suspend(self.source)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * SILENCE)

    def _listen(self, stop: threading.Event) -> None:
        backoff = _BACKOFF[0]
        while not stop.is_set() and self._tier() is not None:
            connection = self._connection_class(**self._connect_kwargs)
            try:
                self._subscribe(connection)
                backoff = _BACKOFF[0]
                self._serve(connection, stop)
            except Exception as exc:  # any failure means invalidations may be lost: suspend, report, retry
                tier = self._tier()
                if tier is not None:
                    tier.suspend(self.source)
                if not stop.is_set():
                    with contextlib.suppress(Exception):  # never let reporting kill the listener
                        self._report(exc)
            finally:
                connection.disconnect()
            stop.wait(backoff)
            backoff = min(backoff * 2, _BACKOFF[1])
        tier = self._tier()
        if tier is not None:
            tier.suspend(self.source)

    def _subscribe(self, connection: Any) -> None:
        connection.connect()
        connection.send_command("CLIENT", "ID")
        client_id = connection.read_response()
        connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self._prefix)
        connection.read_response()
        connection.send_command("SUBSCRIBE", _CHANNEL)
        connection.read_response(push_request=True)

    def _serve(self, connection: Any, stop: threading.Event) -> None:
        tier = self._tier()
        if tier is None:
            return
        # redis-py made the connection (handshake, TLS, AUTH); this thread reads its socket from now on. Bytes its
        # parser read past the SUBSCRIBE reply were sent before the tier served anything: nothing to apply.
        sock = connection._sock
        fd = sock.fileno()
        pending: Callable[[], int] = getattr(sock, "pending", lambda: 0)  # TLS: bytes decrypted but not read
        replies = _Replies()
        taken_in = [False]  # bytes read from the socket and not applied yet (set before they are read)
        source = self.source
        tier.clear(source)  # anything kept from before this connection may have missed its invalidation
        tier.heed(lambda: _readable(fd, 0.0) or taken_in[0], source)  # in that order: readable, then taken in
        now = time.monotonic()
        tier.keep_alive(now + SILENCE, source)
        del tier  # held weakly between messages, so that a dropped manager ends this thread
        unanswered: deque[float] = deque()  # when each PING still waiting for its reply was sent
        next_ping = now
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                sock.sendall(_PING)
                unanswered.append(now)
                next_ping = now + PING_EVERY
            if unanswered and now - unanswered[0] > SILENCE:
                raise TimeoutError(f"no reply to PING on the invalidation connection for {SILENCE} s")
            if not pending():
                taken_in[0] = not replies.idle
                if not _readable(fd, max(0.0, next_ping - now)):
                    continue
            taken_in[0] = True
            data = sock.recv(_READ_SIZE)
            if not data:
                raise ConnectionError("the invalidation connection was closed by the server")
            tier = self._tier()
            if tier is None:
                return
            for message in replies.feed(data):
                if self._apply(tier, message, source) and unanswered:
                    # Replies come in order: every invalidation sent before this PING was applied above.
                    tier.keep_alive(unanswered.popleft() + SILENCE, source)
            del tier

    @staticmethod
    def _apply(tier: LocalTier, message: Any, source: str | None) -> bool:
        """Apply one message from Redis to ``tier``; whether it was a PING's reply."""
        if isinstance(message, Exception):
            raise message
        kind = message[0] if isinstance(message, list) and message else None
        if kind == b"message":
            keys = message[2]
            if keys is None:  # FLUSHDB / FLUSHALL: everything (this node's) is gone
                tier.clear(source)
            else:
                names = [key.decode("utf-8", "surrogateescape") for key in keys]
                tier.invalidate(names)
                for head in filter(None, map(retired_head, names)):  # a versioned flush
                    tier.invalidate_prefix(head)
            return False
        return kind == b"pong"


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has bytes to read (or is closed), waiting up to ``timeout`` seconds without the GIL."""
    if _poll is None:  # no poll(2) (Windows): select, whose descriptor limit does not apply to sockets there
        return bool(select.select([fd], [], [], timeout)[0])
    poller = _poll()  # one per call: a poll object is not to be shared between threads
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(math.ceil(timeout * 1000)))


_poll = getattr(select, "poll", None)


class _Replies:
    """A RESP2 parser for what a subscribed connection receives: arrays, bulk and simple strings, integers, errors.

    ``feed`` takes bytes as they come and returns the replies they complete (an error reply as an exception).
    """

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def idle(self) -> bool:
        """Whether no reply is partly received."""
        return not self._buffer

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer + data if self._buffer else data
        replies: list[Any] = []
        at = 0
        while at < len(buffer):
            parsed = _parse(buffer, at)
            if parsed is None:
                break
            reply, at = parsed
            replies.append(reply)
        self._buffer = buffer[at:]
        return replies


def _parse(buffer: bytes, at: int) -> tuple[Any, int] | None:
    """The reply starting at ``buffer[at]`` and where the next one starts, or ``None`` if it is incomplete."""
    end = buffer.find(b"\r\n", at)
    if end < 0:
        return None
    kind, line, after = buffer[at : at + 1], buffer[at + 1 : end], end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return ConnectionError(f"Redis replied on the invalidation connection: {line.decode(errors='replace')}"), after
    if kind == b":":
        return int(line), after
    size = int(line)
    if kind == b"$":
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return None
        return buffer[after : after + size], after + size + 2
    if kind == b"*":
        if size < 0:
            return None, after
        items: list[Any] = []
        for _ in range(size):
            parsed = _parse(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    raise ConnectionError(f"unexpected reply on the invalidation connection: {buffer[at : at + 40]!r}")
