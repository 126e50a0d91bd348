"""The circuit breaker: after repeated failures, skip the backend for a cool-down instead of waiting on it.

A dead or hung Redis would otherwise cost every caller a full timeout. Once ``threshold`` operations in a
row have failed the breaker opens and operations fail at once (callers fall back to computing, as for any
failure). After ``cooldown`` seconds one probe is let through: success closes the breaker, failure keeps it
open for another cool-down. :class:`GuardedBackend` and :class:`AsyncGuardedBackend` put a breaker in front
of a backend without the backend knowing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from ...errors import CacheUnavailableError
from ..base import AsyncBackend, Backend, Lock, Read

__all__ = ["AsyncGuardedBackend", "CircuitBreaker", "GuardedBackend"]

logger = logging.getLogger("stashly.breaker")  # the documented name, wherever the module lives
_T = TypeVar("_T")


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> one probe per ``cooldown`` -> closed on success.

    The clock is injectable so tests never sleep. The closed-state checks take no lock: the hit path pays a
    couple of attribute reads.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_at = -float("inf")
        self.epoch = 0  # bumped when the breaker opens: a success from an operation begun before that is stale
        self.changes = 0  # times it opened or closed

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """Whether the next operation may go to the backend (always while closed; one probe per cool-down)."""
        if self._opened_at is None:
            return True
        now = self._clock()
        with self._lock:
            # A probe that never reported (its caller was cancelled) must not keep the breaker open for ever,
            # so a new probe is allowed once per cool-down whatever happened to the last one.
            if self._opened_at is None or now - self._probe_at >= self.cooldown:
                self._probe_at = now
                return True
        return False

    def succeeded(self, epoch: int | None = None) -> None:
        """Report a success; ``epoch`` is :attr:`epoch` read when the operation began.

        An operation that was already in flight when the breaker opened proves nothing about the backend now,
        so its success does not close the breaker.
        """
        if self._failures or self._opened_at is not None:
            with self._lock:
                if epoch is not None and epoch != self.epoch:
                    return
                was_open = self._opened_at is not None
                self._failures, self._opened_at = 0, None
                self.changes += was_open
            if was_open:
                logger.warning("cache backend is answering again: circuit closed", extra=_fields("breaker_closed"))

    def failed(self) -> None:
        now = self._clock()
        with self._lock:
            self._failures += 1
            if self._opened_at is not None or self._failures < self.threshold:
                return
            self._opened_at = self._probe_at = now
            self.epoch += 1
            self.changes += 1
        logger.warning(
            "cache backend failed %d times in a row: circuit open, skipping it and probing every %.3gs",
            self.threshold,
            self.cooldown,
            extra=_fields("breaker_opened"),
        )


def _fields(outcome: str) -> dict[str, str | None]:
    return {"namespace": None, "function": None, "outcome": outcome}


_OPEN: Final = "circuit open: the backend failed repeatedly and is skipped until a probe succeeds"


class GuardedBackend:
    """A :class:`Backend` behind a :class:`CircuitBreaker`."""

    def __init__(self, backend: Backend, breaker: CircuitBreaker) -> None:
        self.backend = backend
        self.breaker = breaker

    def _call(self, operation: Callable[[], _T]) -> _T:
        breaker = self.breaker
        if not breaker.allow():
            raise CacheUnavailableError(_OPEN)
        epoch = breaker.epoch
        try:
            result = operation()
        except CacheUnavailableError:
            breaker.failed()
            raise
        breaker.succeeded(epoch)
        return result

    def get(self, key: str) -> bytes | None:
        return self._call(lambda: self.backend.get(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._call(lambda: self.backend.get_many(keys))

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        # _call spelled out: this is every decorator hit, and the lambda and extra frame are measurable there
        breaker = self.breaker
        if not breaker.allow():
            raise CacheUnavailableError(_OPEN)
        epoch = breaker.epoch
        try:
            result = self.backend.read(key, guard, with_ttl)
        except CacheUnavailableError:
            breaker.failed()
            raise
        breaker.succeeded(epoch)
        return result

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._call(lambda: self.backend.set(key, value, ttl))

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        return self._call(lambda: self.backend.fill(key, value, ttl, guard, token, lock))

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        return self._call(lambda: self.backend.acquire(lock_key, owner, lease))

    def release(self, lock_key: str, owner: bytes) -> None:
        self._call(lambda: self.backend.release(lock_key, owner))

    def delete(self, key: str, guard: str | None = None) -> bool:
        return self._call(lambda: self.backend.delete(key, guard))

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        return self._call(lambda: self.backend.delete_prefix(prefix, guard))

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        self._call(lambda: self.backend.retire_prefix(prefix, guard))

    def count_prefix(self, prefix: str) -> int:
        return self._call(lambda: self.backend.count_prefix(prefix))

    def close(self) -> None:
        self.backend.close()


class AsyncGuardedBackend:
    """An :class:`AsyncBackend` behind a :class:`CircuitBreaker` (shared with the sync twin: one Redis)."""

    def __init__(self, backend: AsyncBackend, breaker: CircuitBreaker) -> None:
        self.backend = backend
        self.breaker = breaker

    async def _call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        breaker = self.breaker
        if not breaker.allow():
            raise CacheUnavailableError(_OPEN)
        epoch = breaker.epoch
        try:
            result = await operation()
        except CacheUnavailableError:
            breaker.failed()
            raise
        breaker.succeeded(epoch)
        return result

    async def get(self, key: str) -> bytes | None:
        return await self._call(lambda: self.backend.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._call(lambda: self.backend.get_many(keys))

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        # _call spelled out, as in the sync twin: the hot path
        breaker = self.breaker
        if not breaker.allow():
            raise CacheUnavailableError(_OPEN)
        epoch = breaker.epoch
        try:
            result = await self.backend.read(key, guard, with_ttl)
        except CacheUnavailableError:
            breaker.failed()
            raise
        breaker.succeeded(epoch)
        return result

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._call(lambda: self.backend.set(key, value, ttl))

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        return await self._call(lambda: self.backend.fill(key, value, ttl, guard, token, lock))

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        return await self._call(lambda: self.backend.acquire(lock_key, owner, lease))

    async def release(self, lock_key: str, owner: bytes) -> None:
        await self._call(lambda: self.backend.release(lock_key, owner))

    async def delete(self, key: str, guard: str | None = None) -> bool:
        return await self._call(lambda: self.backend.delete(key, guard))

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        return await self._call(lambda: self.backend.delete_prefix(prefix, guard))

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        await self._call(lambda: self.backend.retire_prefix(prefix, guard))

    async def count_prefix(self, prefix: str) -> int:
        return await self._call(lambda: self.backend.count_prefix(prefix))

    async def close(self) -> None:
        await self.backend.close()
