# Generated from backends/layers/breaker_async.py by scripts/unasync.py.
# Edit the source, then run `make unasync`.
"""The circuit-breaker layer: operations are refused at once while the breaker is open.

Every operation but ``close`` asks the breaker first and reports to it how the backend answered; only
:class:`~stashly.CacheUnavailableError` counts as a failure (a wrong argument says nothing about the backend).
The policy lives in :mod:`stashly.backends.layers.breaker`, shared with the other mode's twin, which
``scripts/unasync.py`` derives from this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ...errors import CacheUnavailableError
from ..base import Backend, Lock, Read
from ..proxy_sync import ProxyBackend
from .breaker import OPEN_MESSAGE, CircuitBreaker

__all__ = ["GuardedBackend"]

_T = TypeVar("_T")


class GuardedBackend(ProxyBackend):
    """``backend`` behind ``breaker`` (one breaker per Redis, shared by both modes)."""

    def __init__(self, backend: Backend, breaker: CircuitBreaker) -> None:
        super().__init__(backend)
        self.breaker = breaker

    def _call(self, operation: Callable[[], _T]) -> _T:
        breaker = self.breaker
        if not breaker.allow():
            raise CacheUnavailableError(OPEN_MESSAGE)
        epoch = breaker.epoch
        try:
            result = operation()
        except CacheUnavailableError:
            breaker.failed()
            raise
        breaker.succeeded(epoch)
        return result

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        # _call spelled out: this is every decorator hit, and the lambda and extra frame are measurable there
        breaker = self.breaker
        if not breaker.allow():
            raise CacheUnavailableError(OPEN_MESSAGE)
        epoch = breaker.epoch
        try:
            result = self.backend.read(key, guard, with_ttl)
        except CacheUnavailableError:
            breaker.failed()
            raise
        breaker.succeeded(epoch)
        return result

    def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        return self._call(lambda: self.backend.read_with(key, guard, with_ttl, extra))

    def get(self, key: str) -> bytes | None:
        return self._call(lambda: self.backend.get(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._call(lambda: self.backend.get_many(keys))

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
