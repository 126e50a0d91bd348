"""Refresh ahead: a hit close to expiry is served at once and recomputed in the background.

``@cached(refresh_ahead=0.2)`` recomputes an entry when a hit finds less than 20% of its TTL left, so a hot
key is replaced before it expires and its callers never wait for the computation. At most one refresh per
key runs in a process (a thread for sync functions, a task for async ones), and across processes the
refresh takes the entry's stampede lock without waiting: if another process is already refreshing, this
one does nothing. The refreshed value is stored like any fill: not if an invalidation happened meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .. import keys

if TYPE_CHECKING:
    pass

__all__ = ["LEASE", "Refresher", "refresh_failed"]

logger: logging.Logger = logging.getLogger("stashly.refresh")  # the documented name, wherever the module lives
LEASE = 30.0  # a refresh that takes longer lets another process start one


def refresh_failed(key: str, exc: Exception) -> None:
    # The exception's text may quote arguments or values: only its type at WARNING, the rest at DEBUG.
    fields = keys.log_fields(key, "refresh_failed")
    logger.warning("background refresh of %s failed: %s", keys.describe(key), type(exc).__name__, extra=fields)
    logger.debug("background refresh of %s failed", keys.describe(key), exc_info=exc, extra=fields)


class Refresher:
    """Background refreshes of one cached function; one in flight per key (the work is the flow's ``refresh``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop only keeps weak ones

    def _claim(self, key: str) -> bool:
        with self._lock:
            if key in self._running:
                return False
            self._running.add(key)
            return True

    def _done(self, key: str) -> None:
        with self._lock:
            self._running.discard(key)

    def start(self, key: str, work: Callable[[], None]) -> None:
        """Run ``work`` in a daemon thread unless a refresh of ``key`` is already running here."""
        if not self._claim(key):
            return

        def run() -> None:
            try:
                work()
            finally:
                self._done(key)

        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(run,), name=f"stashly-refresh {key}", daemon=True).start()

    def astart(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` in a task of the running loop unless a refresh of ``key`` is already running here."""
        if not self._claim(key):
            return

        async def run() -> None:
            try:
                await work()
            finally:
                self._done(key)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
