"""One in-flight computation per key: concurrent misses for one key share a single call.

Threads use :class:`SingleFlight`, asyncio tasks :class:`AsyncSingleFlight`. If the shared call raises, every
waiter gets that exception; nothing is left waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["AsyncSingleFlight", "SingleFlight"]

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.result: T | None = None


class SingleFlight(Generic[T]):
    """Runs ``compute`` once per key at a time across threads; the others wait for its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, _Call[T]] = {}

    def run(self, key: str, compute: Callable[[], T]) -> T:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result  # type: ignore[return-value]
        try:
            call.result = compute()
            return call.result
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()


class AsyncSingleFlight(Generic[T]):
    """Runs ``compute`` once per key at a time within each event loop; the other tasks await its outcome."""

    def __init__(self) -> None:
        self._calls: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future[T]] = {}

    async def run(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        while (shared := self._calls.get(slot)) is not None:
            try:
                # shield: a waiter being cancelled must not cancel the leader's future for everyone else
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                if not shared.cancelled():
                    raise  # this waiter itself was cancelled
                # the leader was cancelled, not us: take over the computation
        future: asyncio.Future[T] = loop.create_future()
        self._calls[slot] = future
        try:
            result = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: with no waiters, asyncio would log "never retrieved"
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._calls[slot]
