# Generated from backends/proxy_async.py by scripts/unasync.py.
# Edit the source, then run `make unasync`.
"""The pass-through base of every Backend layer: each method forwarded to ``self.backend`` unchanged.

A layer (the circuit breaker, the local tier, coalescing) subclasses :class:`ProxyBackend` and overrides
only the methods it changes, as with dogpile.cache's ``ProxyBackend``; everything else reaches the backend
underneath as it was called. This module is written once: ``scripts/unasync.py`` derives the other mode's twin
(``make lint`` checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Backend, Lock, Read

__all__ = ["ProxyBackend"]


class ProxyBackend:
    """A pass-through :class:`~stashly.backends.base.Backend`: every method forwarded to ``backend``.

    Subclass it and override what the layer changes; call ``self.backend`` for the layer below::

        class Counting(ProxyBackend):
            def get(self, key: str) -> bytes | None:
                self.gets += 1
                return self.backend.get(key)
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def node_of(self, key: str) -> str | None:
        """The Redis Cluster node serving ``key``, when a layer below knows it (``None`` otherwise)."""
        node_of = getattr(self.backend, "node_of", None)
        return None if node_of is None else node_of(key)

    def get(self, key: str) -> bytes | None:
        return self.backend.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.backend.get_many(keys)

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        return self.backend.read(key, guard, with_ttl)

    def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        return self.backend.read_with(key, guard, with_ttl, extra)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.backend.set(key, value, ttl)

    def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        return self.backend.draw(key, value, ttl)

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        return self.backend.fill(key, value, ttl, guard, token, lock)

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        return self.backend.acquire(lock_key, owner, lease)

    def release(self, lock_key: str, owner: bytes) -> None:
        self.backend.release(lock_key, owner)

    def delete(self, key: str, guard: str | None = None) -> bool:
        return self.backend.delete(key, guard)

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        return self.backend.delete_prefix(prefix, guard)

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        self.backend.retire_prefix(prefix, guard)

    def count_prefix(self, prefix: str) -> int:
        return self.backend.count_prefix(prefix)

    def close(self) -> None:
        self.backend.close()
