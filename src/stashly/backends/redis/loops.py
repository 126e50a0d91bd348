"""Where a backend keeps its client: one per running event loop (``PerLoop``), or one per backend (``Lazy``).

An asyncio client belongs to the loop it was created in, so each loop gets its own, made on first use there.
``asyncio.run`` (and every ``asyncio.Runner``) finalises async generators before closing its loop, and a started
generator parked at a ``yield`` is how a client gets a last turn there to close its sockets. A loop closed without
that step (``loop.close()`` with no ``shutdown_asyncgens()``) leaves no way to close them; its client is dropped
when another loop first asks, and the garbage collector reclaims the sockets.

A synchronous client serves every thread, so ``Lazy`` is the other mode's ``PerLoop``: the name a generated
synchronous backend uses where its asyncio source says ``PerLoop``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Lazy", "PerLoop"]

T = TypeVar("T")


class PerLoop(Generic[T]):
    """``await per_loop.get()`` is the running loop's ``T``, made by ``make()`` on first use and closed by
    ``close(T)`` at the loop's shutdown (or by ``await per_loop.close()`` from inside it)."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], Awaitable[None]]) -> None:
        self._make = make
        self._close = close
        # Not a WeakKeyDictionary: a client's streams refer to their loop, so a weak key would never die.
        self.clients: dict[asyncio.AbstractEventLoop, tuple[T, AsyncIterator[None]]] = {}
        self._last: tuple[asyncio.AbstractEventLoop, T] | None = None

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        found = self.clients.get(loop)
        if found is None:
            self._drop_closed_loops()
            client = self._make()
            closer = self._close_at_shutdown(loop, client)
            found = self.clients[loop] = (client, closer)
            await anext(closer)
        self._last = (loop, found[0])
        return found[0]

    def current(self) -> T | None:
        """The running loop's ``T`` if it was made already (``None`` otherwise, or outside a loop); makes nothing."""
        last = self._last
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if last is not None and last[0] is loop:
            return last[1]
        found = self.clients.get(loop)
        return None if found is None else found[0]

    async def close(self) -> None:
        """Close the running loop's client (the other loops' close with their loops)."""
        found = self.clients.get(asyncio.get_running_loop())
        if found is not None:
            await found[1].aclose()  # type: ignore[attr-defined]

    async def _close_at_shutdown(self, loop: asyncio.AbstractEventLoop, client: T) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._forget(loop, client)
            await self._close(client)

    def _forget(self, loop: asyncio.AbstractEventLoop, client: T) -> None:
        found = self.clients.get(loop)
        if found is not None and found[0] is client:
            del self.clients[loop]
        last = self._last
        if last is not None and last[1] is client:
            self._last = None

    def _drop_closed_loops(self) -> None:
        """Forget the clients of loops closed without finalising async generators (nothing can close them now)."""
        for loop, (client, _) in list(self.clients.items()):
            if loop.is_closed():
                self._forget(loop, client)


class Lazy(Generic[T]):
    """``lazy.get()`` is the one ``T``, made by ``make()`` on first use (by one thread, the others waiting) and
    closed by ``close(T)`` at ``lazy.close()``; the next use makes another."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], None]) -> None:
        self._make = make
        self._close = close
        self._made: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        made = self._made
        if made is None:
            with self._lock:
                made = self._made
                if made is None:
                    made = self._made = self._make()
        return made

    def close(self) -> None:
        """Close the ``T`` made, if any."""
        with self._lock:
            made, self._made = self._made, None
        if made is not None:
            self._close(made)
