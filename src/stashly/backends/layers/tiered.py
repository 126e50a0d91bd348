"""A backend with a :class:`~stashly.local.LocalTier` in front: reads try the tier, writes drop from it.

Reads that miss the tier ask Redis for the entry with its remaining TTL (``PTTL``, same round trip) under a
ticket, and offer the answer to the tier, which keeps it unless an invalidation voided the ticket meanwhile.
Every write made through this process drops its key here as soon as Redis has answered (and also when it
failed: the write may have landed), so this process reads its own writes at once; other processes' writes
arrive through the tracking connection. ``get_many`` serves what the tier holds and asks Redis for the rest
without storing it (``MGET`` carries no TTLs).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...sentinels import MISSING
from ..base import AsyncBackend, Backend, Lock, Read
from .local import LocalTier
from .tracking import InvalidationTracker

__all__ = ["AsyncTieredBackend", "TieredBackend"]


class TieredBackend:
    """The synchronous :class:`Backend` over ``inner`` with ``tier`` in front."""

    def __init__(self, inner: Backend, tier: LocalTier, tracker: InvalidationTracker) -> None:
        self._inner = inner
        self._tier = tier
        self._tracker = tracker

    def get(self, key: str) -> bytes | None:
        tier = self._tier
        entry = tier.lookup(key)
        if entry is not None:
            return entry.raw
        ticket = tier.ticket(key)
        if ticket is None:
            return self._inner.get(key)
        raw, _, ttl = self._inner.read(key, None, True)
        tier.offer(key, ticket, raw, MISSING, ttl)
        return raw

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = _local_many(self._tier, keys)
        missing = [key for key, raw in zip(keys, found, strict=True) if raw is None]
        if missing:
            _merge(found, self._inner.get_many(missing))
        return found

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        tier = self._tier
        entry = tier.lookup(key)
        if entry is not None and entry.token is not MISSING:
            return entry.raw, entry.token, tier.remaining(entry) if with_ttl else None
        ticket = tier.ticket(key)
        if ticket is None:
            return self._inner.read(key, guard, with_ttl)
        raw, token, ttl = self._inner.read(key, guard, True)
        tier.offer(key, ticket, raw, token, ttl)
        return raw, token, ttl if with_ttl else None

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        try:
            self._inner.set(key, value, ttl)
        finally:
            self._tier.invalidate((key,))

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        try:
            return self._inner.fill(key, value, ttl, guard, token, lock)
        finally:
            self._tier.invalidate((key,))

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        return self._inner.acquire(lock_key, owner, lease)

    def release(self, lock_key: str, owner: bytes) -> None:
        self._inner.release(lock_key, owner)

    def delete(self, key: str, guard: str | None = None) -> bool:
        try:
            return self._inner.delete(key, guard)
        finally:
            self._tier.invalidate((key,))

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        try:
            return self._inner.delete_prefix(prefix, guard)
        finally:
            self._tier.invalidate_prefix(prefix)

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            self._inner.retire_prefix(prefix, guard)
        finally:
            self._tier.invalidate_prefix(prefix)

    def count_prefix(self, prefix: str) -> int:
        return self._inner.count_prefix(prefix)

    def close(self) -> None:
        self._tracker.stop()
        self._inner.close()


class AsyncTieredBackend:
    """The asyncio twin of :class:`TieredBackend`; a local hit never suspends (no task, no loop turn)."""

    def __init__(self, inner: AsyncBackend, tier: LocalTier) -> None:
        self._inner = inner
        self._tier = tier

    async def get(self, key: str) -> bytes | None:
        tier = self._tier
        entry = tier.lookup(key)
        if entry is not None:
            return entry.raw
        ticket = tier.ticket(key)
        if ticket is None:
            return await self._inner.get(key)
        raw, _, ttl = await self._inner.read(key, None, True)
        tier.offer(key, ticket, raw, MISSING, ttl)
        return raw

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = _local_many(self._tier, keys)
        missing = [key for key, raw in zip(keys, found, strict=True) if raw is None]
        if missing:
            _merge(found, await self._inner.get_many(missing))
        return found

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        tier = self._tier
        entry = tier.lookup(key)
        if entry is not None and entry.token is not MISSING:
            return entry.raw, entry.token, tier.remaining(entry) if with_ttl else None
        ticket = tier.ticket(key)
        if ticket is None:
            return await self._inner.read(key, guard, with_ttl)
        raw, token, ttl = await self._inner.read(key, guard, True)
        tier.offer(key, ticket, raw, token, ttl)
        return raw, token, ttl if with_ttl else None

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        try:
            await self._inner.set(key, value, ttl)
        finally:
            self._tier.invalidate((key,))

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        try:
            return await self._inner.fill(key, value, ttl, guard, token, lock)
        finally:
            self._tier.invalidate((key,))

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        return await self._inner.acquire(lock_key, owner, lease)

    async def release(self, lock_key: str, owner: bytes) -> None:
        await self._inner.release(lock_key, owner)

    async def delete(self, key: str, guard: str | None = None) -> bool:
        try:
            return await self._inner.delete(key, guard)
        finally:
            self._tier.invalidate((key,))

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        try:
            return await self._inner.delete_prefix(prefix, guard)
        finally:
            self._tier.invalidate_prefix(prefix)

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            await self._inner.retire_prefix(prefix, guard)
        finally:
            self._tier.invalidate_prefix(prefix)

    async def count_prefix(self, prefix: str) -> int:
        return await self._inner.count_prefix(prefix)

    async def close(self) -> None:
        await self._inner.close()


def _local_many(tier: LocalTier, keys: Sequence[str]) -> list[bytes | None]:
    found: list[bytes | None] = []
    for key in keys:
        entry = tier.lookup(key)
        found.append(None if entry is None else entry.raw)
    return found


def _merge(found: list[bytes | None], fetched: list[bytes | None]) -> None:
    """Fill the holes of ``found`` (in order) with what Redis returned for them."""
    answers = iter(fetched)
    for index, raw in enumerate(found):
        if raw is None:
            found[index] = next(answers)
