"""The stampede lock: across processes, one computes a missing entry while the others wait for it.

Within a process, single-flight already runs one computation per key. With ``@cached(lock=True)`` the one
computation per process also takes a lock in the backend (``SET NX`` with a lease) before computing; the
other processes poll the entry instead of computing it too. The holder's store is fenced: it lands only
while the lock is still its own (a holder slower than its lease may not overwrite the work of the process
that took over), and it releases the lock in the same step. If the holder dies, its lease runs out and a
waiter takes over; a waiter never waits longer than one lease before computing itself. Whoever takes the lock
reads the entry again first: a caller that missed just before the previous holder stored it finds it there
instead of computing it a second time. If the backend cannot
take the lock at all (down, or refusing ``SET NX``), strict mode raises; otherwise the failure is logged and
counted and the caller computes without the lock, its store fenced by the guard token as without ``lock=True``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from .. import keys
from ..backends.base import Lock
from ..sentinels import MISSING

if TYPE_CHECKING:
    from ..manager import CacheManager, Lookup, Token
    from ..stats import Site

__all__ = ["Filled", "afill_under_lock", "fill_under_lock"]

Filled: TypeAlias = tuple[Any, bytes | None]
"""A value and its stored bytes (``None`` when it was not stored, e.g. a framework response)."""

_FIRST_POLL = 0.01
_MAX_POLL = 0.1


class _Wait:
    """The polling schedule of one waiter: 10 ms growing to 100 ms, for at most one lease."""

    def __init__(self, lease: float) -> None:
        self.deadline = time.monotonic() + lease
        self.delay = _FIRST_POLL

    def next_delay(self) -> float | None:
        """How long to sleep before polling again; ``None`` once the wait is over."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        delay, self.delay = min(self.delay, remaining), min(self.delay * 1.5, _MAX_POLL)
        return delay


def fill_under_lock(
    manager: CacheManager,
    site: Site,
    key: str,
    lease: float,
    look: Callable[[], Lookup],
    token: Token,
    compute: Callable[[Token, Lock], Filled],
    strict: bool,
) -> Filled:
    """Compute under the lock, or wait for whoever holds it; ``look`` re-reads the entry while waiting."""
    lock_key, owner = keys.lock_key(manager.settings.prefix, key), secrets.token_hex(16).encode()
    wait = _Wait(lease)
    while True:
        taken = manager._acquire(lock_key, owner, lease, site, strict)
        if taken is None:
            return compute(token, None)  # the backend refused the lock (logged): compute, the store still guarded
        if taken:
            try:
                found = look()  # the holder before us may have stored it between our read and our lock
                if found.value is not MISSING:
                    return found.value, found.raw
                return compute(found.token, (lock_key, owner))
            finally:
                manager._release(lock_key, owner, site)
        delay = wait.next_delay()
        if delay is None:
            return compute(token, None)  # waited a whole lease: compute ourselves, the store still guarded
        time.sleep(delay)
        found = look()
        if found.value is not MISSING:
            return found.value, found.raw
        token = found.token


async def afill_under_lock(
    manager: CacheManager,
    site: Site,
    key: str,
    lease: float,
    look: Callable[[], Awaitable[Lookup]],
    token: Token,
    compute: Callable[[Token, Lock], Awaitable[Filled]],
    strict: bool,
) -> Filled:
    """Async :func:`fill_under_lock`."""
    lock_key, owner = keys.lock_key(manager.settings.prefix, key), secrets.token_hex(16).encode()
    wait = _Wait(lease)
    while True:
        taken = await manager._aacquire(lock_key, owner, lease, site, strict)
        if taken is None:
            return await compute(token, None)
        if taken:
            try:
                found = await look()
                if found.value is not MISSING:
                    return found.value, found.raw
                return await compute(found.token, (lock_key, owner))
            finally:
                await manager._arelease(lock_key, owner, site)
        delay = wait.next_delay()
        if delay is None:
            return await compute(token, None)
        await asyncio.sleep(delay)
        found = await look()
        if found.value is not MISSING:
            return found.value, found.raw
        token = found.token
