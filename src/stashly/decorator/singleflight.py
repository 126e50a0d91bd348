"""One in-flight computation per key: concurrent misses for one key share a single call.

Threads use :class:`SingleFlight`, asyncio tasks :class:`AsyncSingleFlight`. If the shared call raises, every
waiter gets that exception; nothing is left waiting.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

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
        self._calls: dict[Hashable, _Call[T]] = {}

    def run(self, key: Hashable, compute: Callable[[], T]) -> T:
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
    """Runs ``compute`` once per key at a time within each event loop; the other tasks await its outcome.

    The computation runs in a task of its own, so cancelling any caller — the first one included — never
    cancels the work the others are waiting for; it finishes (and stores its result) even if every caller
    gave up.
    """

    def __init__(self) -> None:
        self._calls: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[T]] = {}

    async def run(self, key: Hashable, compute: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        task = self._calls.get(slot)
        if task is None:
            task = self._calls[slot] = loop.create_task(compute())
            task.add_done_callback(functools.partial(self._finished, slot))
        return await asyncio.shield(task)

    def _finished(self, slot: tuple[asyncio.AbstractEventLoop, Hashable], task: asyncio.Task[T]) -> None:
        if self._calls.get(slot) is task:
            del self._calls[slot]
        if not task.cancelled():
            task.exception()  # retrieved here: if every caller was cancelled, asyncio would log it as lost
