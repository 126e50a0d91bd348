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
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import keys
from ..backends.base import Lock

if TYPE_CHECKING:
    from ..manager import CacheManager, Token
    from ..stats import Site

__all__ = ["Refresher"]

logger = logging.getLogger("stashly.refresh")  # the documented name, wherever the module lives
_LEASE = 30.0  # a refresh that takes longer lets another process start one


def _refresh_failed(key: str, exc: Exception) -> None:
    # The exception's text may quote arguments or values: only its type at WARNING, the rest at DEBUG.
    fields = keys.log_fields(key, "refresh_failed")
    logger.warning("background refresh of %s failed: %s", keys.describe(key), type(exc).__name__, extra=fields)
    logger.debug("background refresh of %s failed", keys.describe(key), exc_info=exc, extra=fields)


class Refresher:
    """Background refreshes of one cached function; one in flight per key."""

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

    def start(
        self, manager: CacheManager, site: Site, key: str, token: Token, compute: Callable[[Token, Lock], Any]
    ) -> None:
        """Refresh ``key`` in a daemon thread unless a refresh of it is already running here."""
        if not self._claim(key):
            return

        def work() -> None:
            lock_key, owner = keys.lock_key(manager.settings.prefix, key), secrets.token_hex(16).encode()
            try:  # a lock the backend refused (None, logged) means no refresh: the entry lives out its TTL
                if manager._acquire(lock_key, owner, _LEASE, site, False):
                    try:
                        compute(token, (lock_key, owner))
                    finally:
                        manager._release(lock_key, owner, site)
            except Exception as exc:  # nobody to raise to: the caller already has its value
                _refresh_failed(key, exc)
            finally:
                self._done(key)

        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(work,), name=f"stashly-refresh {key}", daemon=True).start()

    def astart(
        self,
        manager: CacheManager,
        site: Site,
        key: str,
        token: Token,
        compute: Callable[[Token, Lock], Awaitable[Any]],
    ) -> None:
        """Refresh ``key`` in a task of the running loop unless a refresh of it is already running here."""
        if not self._claim(key):
            return

        async def work() -> None:
            lock_key, owner = keys.lock_key(manager.settings.prefix, key), secrets.token_hex(16).encode()
            try:
                if await manager._aacquire(lock_key, owner, _LEASE, site, False):
                    try:
                        await compute(token, (lock_key, owner))
                    finally:
                        await manager._arelease(lock_key, owner, site)
            except Exception as exc:
                _refresh_failed(key, exc)
            finally:
                self._done(key)

        task = asyncio.get_running_loop().create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
