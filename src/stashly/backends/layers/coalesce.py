"""Concurrent async reads of one key share round trips, and are never answered from before they arrived.

While a read of a key is in flight, tasks that ask for the same key do not send reads of their own: they
wait for the *next* read, sent as soon as the one in flight returns, which answers all of them at once.
Joining the read already in flight would be cheaper, but it was sent before the newcomer arrived, so it can
answer from before an invalidation that the newcomer already saw complete. Waiting for the next one keeps
"never stale after an invalidation": every caller is answered by a read sent after it arrived. On one hot
key, any number of concurrent callers cost at most two round trips each, and the server sees one read per
round trip instead of one per caller.

The answers are bytes; each caller decodes its own copy. A caller cancelled while waiting leaves the shared
read alone. Threads are not coalesced: each has its own connection.
"""

from __future__ import annotations

import asyncio

from ...errors import CacheUnavailableError
from ..base import AsyncBackend, Read
from ..proxy_async import AsyncProxyBackend

__all__ = ["AsyncCoalescedBackend"]

_Slot = tuple[str, str | None, bool, asyncio.AbstractEventLoop]


class AsyncCoalescedBackend(AsyncProxyBackend):
    """An :class:`AsyncBackend` whose ``get`` and ``read`` share round trips between concurrent callers; the rest
    passes through."""

    def __init__(self, backend: AsyncBackend) -> None:
        super().__init__(backend)
        # For each (key, guard, with_ttl, loop) being read: the future of the next read, once someone waits.
        self._reading: dict[_Slot, asyncio.Future[Read] | None] = {}

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        loop = asyncio.get_running_loop()
        slot = (key, guard, with_ttl, loop)
        reading = self._reading
        if slot not in reading:
            reading[slot] = None
            try:
                return await self.backend.read(key, guard, with_ttl)
            finally:
                self._next(slot)
        waiting = reading[slot]
        if waiting is None:
            waiting = reading[slot] = loop.create_future()
        return await asyncio.shield(waiting)

    async def get(self, key: str) -> bytes | None:
        return (await self.read(key, None))[0]

    def _next(self, slot: _Slot) -> None:
        """The read in flight for ``slot`` returned: send the next one for whoever waits, or forget the slot."""
        waiting = self._reading.get(slot)
        if waiting is None:
            self._reading.pop(slot, None)
            return
        self._reading[slot] = None
        slot[3].create_task(self._serve(slot, waiting))

    async def _serve(self, slot: _Slot, waiting: asyncio.Future[Read]) -> None:
        key, guard, with_ttl, _ = slot
        try:
            answer = await self.backend.read(key, guard, with_ttl)
        except BaseException as exc:
            if not waiting.done():
                failure = exc if isinstance(exc, Exception) else CacheUnavailableError(f"read interrupted: {exc!r}")
                waiting.set_exception(failure)
                waiting.exception()  # retrieved: no "never retrieved" log if every waiter was cancelled
            if not isinstance(exc, Exception):
                raise
        else:
            if not waiting.done():
                waiting.set_result(answer)
        finally:
            self._next(slot)
