"""The invalidation connection of a local tier: Redis tells it about every write under a prefix.

One connection per process and tier, on a daemon thread. It runs ``CLIENT TRACKING ON REDIRECT <itself>
BCAST PREFIX <prefix>:`` and subscribes to ``__redis__:invalidate``, so every write of a key under the prefix
— by any client, in any process — arrives here as a message naming the key, which is dropped from the tier.
This is Redis's server-assisted client-side caching in broadcast mode, on RESP2 so it works whatever protocol
the other connections speak and on any Redis since 6.0 (redis-py's own client cache needs 7.4 and has no
asyncio twin).

The tier serves entries only while this connection is heard from: a ``PING`` every quarter second, and each
reply extends the tier's life by one second from when the ``PING`` was sent. A connection that errors, closes
or falls silent suspends the tier (everything dropped, nothing served); it reconnects with a short backoff and
starts from an empty tier. The thread holds its tier weakly and ends when the tier is gone or on ``stop``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ...keys.layout import retired_head
from ..redis import RedisOptions
from .local import LocalTier

__all__ = ["InvalidationTracker"]

PING_EVERY = 0.25
SILENCE = 1.0  # how long the tier trusts its entries after a PING that was answered
_CHANNEL = "__redis__:invalidate"
_BACKOFF = (0.05, 1.0)


class InvalidationTracker:
    """Keeps ``tier`` coherent with the Redis at ``options``, for every key starting with ``prefix``."""

    def __init__(
        self, tier: LocalTier, options: RedisOptions, prefix: str, report: Callable[[BaseException], None]
    ) -> None:
        self._tier = weakref.ref(tier)
        self._prefix = prefix
        self._report = report
        pool = options.pool()  # only for its connection settings: this thread makes its own connection
        self._connect_kwargs: dict[str, Any] = {**pool.connection_kwargs, "protocol": 2}
        self._connection_class = pool.connection_class
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stop = threading.Event()
        tier.on_wake(self.start)

    def start(self) -> None:
        """Start listening unless already listening in this process (a fork leaves the child without the thread)."""
        if self._pid != os.getpid():
            self._pid, self._lock, self._thread = os.getpid(), threading.Lock(), None
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._listen, args=(self._stop,), name="stashly-invalidations", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop listening and drop the tier's entries; a later read starts again."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        tier = self._tier()
        if tier is not None:
            tier.suspend()
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
                    tier.suspend()
                if not stop.is_set():
                    with contextlib.suppress(Exception):  # never let reporting kill the listener
                        self._report(exc)
            finally:
                connection.disconnect()
            stop.wait(backoff)
            backoff = min(backoff * 2, _BACKOFF[1])
        tier = self._tier()
        if tier is not None:
            tier.suspend()

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
        tier.clear()  # anything kept from before this connection may have missed its invalidation
        now = time.monotonic()
        tier.keep_alive(now + SILENCE)
        del tier  # held weakly between messages, so that a dropped manager ends this thread
        unanswered: deque[float] = deque()  # when each PING still waiting for its reply was sent
        next_ping = now
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                connection.send_command("PING")
                unanswered.append(now)
                next_ping = now + PING_EVERY
            if unanswered and now - unanswered[0] > SILENCE:
                raise TimeoutError(f"no reply to PING on the invalidation connection for {SILENCE} s")
            if not connection.can_read(timeout=max(0.0, next_ping - now)):
                continue
            message = connection.read_response(push_request=True)
            tier = self._tier()
            if tier is None:
                return
            kind = message[0]
            if kind == b"message":
                keys = message[2]
                if keys is None:  # FLUSHDB / FLUSHALL: everything is gone
                    tier.clear()
                else:
                    names = [key.decode("utf-8", "surrogateescape") for key in keys]
                    tier.invalidate(names)
                    for head in filter(None, map(retired_head, names)):  # a versioned flush
                        tier.invalidate_prefix(head)
            elif kind == b"pong" and unanswered:
                # Replies come in order: every invalidation sent before this PING was applied above.
                tier.keep_alive(unanswered.popleft() + SILENCE)
            del tier
