"""The pass-through base of every AsyncBackend layer: each method forwarded to ``self.backend`` unchanged.

A layer (the circuit breaker, the local tier, coalescing) subclasses :class:`AsyncProxyBackend` and overrides
only the methods it changes, as with dogpile.cache's ``ProxyBackend``; everything else reaches the backend
underneath as it was called. This module is written once: ``scripts/unasync.py`` derives the other mode's twin
(``make lint`` checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import AsyncBackend, Lock, Read

__all__ = ["AsyncProxyBackend"]


class AsyncProxyBackend:
    """A pass-through :class:`~stashly.backends.base.AsyncBackend`: every method forwarded to ``backend``.

    Subclass it and override what the layer changes; call ``self.backend`` for the layer below::

        class Counting(AsyncProxyBackend):
            async def get(self, key: str) -> bytes | None:
                self.gets += 1
                return await self.backend.get(key)
    """

    def __init__(self, backend: AsyncBackend) -> None:
        self.backend = backend

    def node_of(self, key: str) -> str | None:
        """The Redis Cluster node serving ``key``, when a layer below knows it (``None`` otherwise)."""
        node_of = getattr(self.backend, "node_of", None)
        return None if node_of is None else node_of(key)

    async def get(self, key: str) -> bytes | None:
        return await self.backend.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.backend.get_many(keys)

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        return await self.backend.read(key, guard, with_ttl)

    async def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        return await self.backend.read_with(key, guard, with_ttl, extra)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self.backend.set(key, value, ttl)

    async def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        return await self.backend.draw(key, value, ttl)

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        return await self.backend.fill(key, value, ttl, guard, token, lock)

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        return await self.backend.acquire(lock_key, owner, lease)

    async def release(self, lock_key: str, owner: bytes) -> None:
        await self.backend.release(lock_key, owner)

    async def delete(self, key: str, guard: str | None = None) -> bool:
        return await self.backend.delete(key, guard)

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        return await self.backend.delete_prefix(prefix, guard)

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        await self.backend.retire_prefix(prefix, guard)

    async def count_prefix(self, prefix: str) -> int:
        return await self.backend.count_prefix(prefix)

    async def close(self) -> None:
        await self.backend.close()
