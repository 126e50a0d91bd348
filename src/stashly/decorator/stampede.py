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

The sequence itself is written once in ``flow_async.py`` (with its generated sync twin); this module holds the
parts that do no I/O.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, TypeAlias

from .. import keys

__all__ = ["Filled", "Wait", "lock_for"]

Filled: TypeAlias = tuple[Any, bytes | None]
"""A value and its stored bytes (``None`` when it was not stored, e.g. a framework response)."""

_FIRST_POLL = 0.01
_MAX_POLL = 0.1


def lock_for(prefix: str, key: str) -> tuple[str, bytes]:
    """The lock key of entry ``key`` and a fresh owner token for one attempt to hold it."""
    return keys.lock_key(prefix, key), secrets.token_hex(16).encode()


class Wait:
    """The polling schedule of one waiter: 10 ms growing to 100 ms, for at most one lease."""

    def __init__(self, lease: float) -> None:
        self.deadline: float = time.monotonic() + lease
        self.delay: float = _FIRST_POLL

    def next_delay(self) -> float | None:
        """How long to sleep before polling again; ``None`` once the wait is over."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        delay, self.delay = min(self.delay, remaining), min(self.delay * 1.5, _MAX_POLL)
        return delay
