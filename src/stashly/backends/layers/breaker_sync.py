# Generated from backends/layers/breaker_async.py by scripts/unasync.py.
# Edit the source, then run `make unasync`.
"""The circuit-breaker layer: operations are refused at once while the breaker is open.

Every operation but ``close`` asks the breaker first and reports to it how the backend answered; only
:class:`~stashly.CacheUnavailableError` counts as a failure (a wrong argument says nothing about the backend).
On Redis Cluster an operation on one key answers to the breaker of the node serving its slot as well
(:class:`~stashly.backends.layers.breaker.NodeBreakers`): a failing node is skipped, the others are not.
The policy lives in :mod:`stashly.backends.layers.breaker`, shared with the other mode's twin, which
``scripts/unasync.py`` derives from this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ...errors import CacheUnavailableError
from ...keys.layout import locked_key
from ..base import Backend, Lock, Read
from ..proxy_sync import ProxyBackend
from .breaker import OPEN_MESSAGE, CircuitBreaker, NodeBreakers

__all__ = ["GuardedBackend"]

_T = TypeVar("_T")


class GuardedBackend(ProxyBackend):
    """``backend`` behind ``breaker`` (one breaker per Redis, shared by both modes); on Cluster, ``nodes`` has one
    per node too, and ``node_of`` names the node serving a key (``None`` while unknown)."""

    def __init__(
        self,
        backend: Backend,
        breaker: CircuitBreaker,
        nodes: NodeBreakers | None = None,
        node_of: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(backend)
        self.breaker = breaker
        self._nodes = nodes
        self._node_of = node_of

    def _call_at(self, key: str, operation: Callable[[], _T]) -> _T:
        """:meth:`_call` for an operation on ``key``: on Cluster, its node's breaker decides and hears the outcome."""
        node = self._node(key)
        if node is None:
            return self._call(operation)
        whole = self.breaker
        if not whole.allow():
            raise CacheUnavailableError(OPEN_MESSAGE)
        if not node.allow():
            refused = CacheUnavailableError(f"{OPEN_MESSAGE} (node {node.node})")
            refused.node = node.node
            raise refused
        epochs = whole.epoch, node.epoch
        try:
            result = operation()
        except CacheUnavailableError as exc:
            node.failed()
            whole.unprobed()
            exc.node = node.node
            raise
        node.succeeded(epochs[1])
        whole.succeeded(epochs[0])
        return result

    def node_of(self, key: str) -> str | None:
        """The Cluster node serving ``key`` (``None`` elsewhere, or while the slot map is unknown)."""
        return None if self._node_of is None else self._node_of(key)

    def _node(self, key: str) -> CircuitBreaker | None:
        node_of = self._node_of
        if node_of is None:
            return None
        name = node_of(key)
        return None if name is None or self._nodes is None else self._nodes.of(name)

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
        if self._node_of is not None:
            return self._call_at(key, lambda: self.backend.read(key, guard, with_ttl))
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
        if self._node_of is not None:
            return self._call_at(key, lambda: self.backend.read_with(key, guard, with_ttl, extra))
        breaker = self.breaker  # as in read: every tagged hit
        if not breaker.allow():
            raise CacheUnavailableError(OPEN_MESSAGE)
        epoch = breaker.epoch
        try:
            found = self.backend.read_with(key, guard, with_ttl, extra)
        except CacheUnavailableError:
            breaker.failed()
            raise
        breaker.succeeded(epoch)
        return found

    def get(self, key: str) -> bytes | None:
        return self._call_at(key, lambda: self.backend.get(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._call(lambda: self.backend.get_many(keys))

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._call_at(key, lambda: self.backend.set(key, value, ttl))

    def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        return self._call_at(key, lambda: self.backend.draw(key, value, ttl))

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        return self._call_at(key, lambda: self.backend.fill(key, value, ttl, guard, token, lock))

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        # A lock lives in its entry's slot: it answers to the entry's node.
        return self._call_at(locked_key(lock_key), lambda: self.backend.acquire(lock_key, owner, lease))

    def release(self, lock_key: str, owner: bytes) -> None:
        self._call_at(locked_key(lock_key), lambda: self.backend.release(lock_key, owner))

    def delete(self, key: str, guard: str | None = None) -> bool:
        return self._call_at(key, lambda: self.backend.delete(key, guard))

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        return self._call(lambda: self.backend.delete_prefix(prefix, guard))

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        self._call(lambda: self.backend.retire_prefix(prefix, guard))

    def count_prefix(self, prefix: str) -> int:
        return self._call(lambda: self.backend.count_prefix(prefix))
