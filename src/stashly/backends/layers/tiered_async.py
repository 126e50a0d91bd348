"""The local-tier layer: reads try the :class:`~stashly.LocalTier`, writes drop from it.

Reads that miss the tier ask Redis for the entry with its remaining TTL (``PTTL``, same round trip) under a
ticket, and offer the answer to the tier, which keeps it unless an invalidation voided the ticket meanwhile (a
read that fails hands its ticket back). Concurrent readers of one key each hold a ticket, and the coalesced reads
they share answer them all: the first answer back fills the tier.
Every write made through this process drops its key here as soon as Redis has answered (and also when it
failed: the write may have landed), so this process reads its own writes at once; other processes' writes
arrive through the tracking connection. ``get_many`` serves what the tier holds and asks Redis for the rest
without storing it (``MGET`` carries no TTLs). On Cluster, ``node_of`` names the node a read goes to, the source
of what it stores (:mod:`.local`); a read after which the slot map puts its key on another node stores nothing.
``scripts/unasync.py`` derives the other mode's twin from this module; the sync backend also owns the tracking
connection (:mod:`stashly.backends.layers.tiered`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...sentinels import MISSING, Missing
from ..base import AsyncBackend, Lock, Peek, Read
from ..proxy_async import AsyncProxyBackend
from .local import LocalTier, Ticket

__all__ = ["AsyncTieredBackend"]


class AsyncTieredBackend(AsyncProxyBackend):
    """``backend`` with ``tier`` in front, a :class:`~stashly.backends.base.AsyncBackend`.

    A local hit is a dictionary lookup: no round trip (and under asyncio, no task or loop turn).
    """

    def __init__(
        self, backend: AsyncBackend, tier: LocalTier, node_of: Callable[[str], str | None] | None = None
    ) -> None:
        super().__init__(backend)
        self._tier = tier
        self._node_of = node_of
        self.peek: Peek = tier.peek  # a local hit: the tier's own, no await

    def _ticket(self, key: str) -> Ticket | None:
        node_of = self._node_of
        return self._tier.ticket(key) if node_of is None else self._tier.ticket(key, node_of(key))

    def _offer(
        self, key: str, ticket: Ticket, raw: bytes | None, token: bytes | Missing | None, ttl: float | None
    ) -> None:
        node_of = self._node_of
        if node_of is not None and node_of(key) != ticket[0].source:  # the slot moved meanwhile
            self._tier.abandon(key, ticket)
        else:
            self._tier.offer(key, ticket, raw, token, ttl)

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        tier = self._tier
        entry = tier.lookup(key)
        if entry is not None and entry.token is not MISSING:
            return entry.raw, entry.token, tier.remaining(entry) if with_ttl else None
        ticket = self._ticket(key)
        if ticket is None:
            return await self.backend.read(key, guard, with_ttl)
        try:
            raw, token, ttl = await self.backend.read(key, guard, True)
        except BaseException:  # failed or cancelled: hand the ticket back, or the table keeps it forever
            tier.abandon(key, ticket)
            raise
        self._offer(key, ticket, raw, token, ttl)
        return raw, token, ttl if with_ttl else None

    async def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        # Each through the tier: tag tokens are tracked like entries, so a tagged local hit stays in process.
        return await self.read(key, guard, with_ttl), [await self.get(other) for other in extra]

    async def get(self, key: str) -> bytes | None:
        tier = self._tier
        entry = tier.lookup(key)
        if entry is not None:
            return entry.raw
        ticket = self._ticket(key)
        if ticket is None:
            return await self.backend.get(key)
        try:
            raw, _, ttl = await self.backend.read(key, None, True)
        except BaseException:
            tier.abandon(key, ticket)
            raise
        self._offer(key, ticket, raw, MISSING, ttl)
        return raw

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        lookup = self._tier.lookup
        found = [None if entry is None else entry.raw for entry in map(lookup, keys)]
        missing = [key for key, raw in zip(keys, found, strict=True) if raw is None]
        if not missing:
            return found
        fetched = iter(await self.backend.get_many(missing))
        return [next(fetched) if raw is None else raw for raw in found]

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        try:
            await self.backend.set(key, value, ttl)
        finally:
            self._tier.invalidate((key,))

    async def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        try:
            return await self.backend.draw(key, value, ttl)
        finally:
            self._tier.invalidate((key,))

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        try:
            return await self.backend.fill(key, value, ttl, guard, token, lock)
        finally:
            self._tier.invalidate((key,))

    async def delete(self, key: str, guard: str | None = None) -> bool:
        try:
            return await self.backend.delete(key, guard)
        finally:
            self._tier.invalidate((key,))

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        try:
            return await self.backend.delete_prefix(prefix, guard)
        finally:
            self._tier.invalidate_prefix(prefix)

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        try:
            await self.backend.retire_prefix(prefix, guard)
        finally:
            self._tier.invalidate_prefix(prefix)
