"""One in-flight computation per key: concurrent misses for one key share a single call.

Threads use :class:`SingleFlight`, asyncio tasks :class:`AsyncSingleFlight`. If the shared call raises, every
waiter gets that exception; nothing is left waiting. A caller may wait at most ``wait_at_most`` seconds: past it
:class:`Overdue` is raised and the computation goes on by itself (a worker thread, or its own task) and stores its
result, so there are never more threads than computations in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["AsyncSingleFlight", "Overdue", "SingleFlight"]

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.result: T | None = None


class Overdue(Exception):
    """The shared computation did not finish within the caller's timeout; it goes on without the caller."""


class SingleFlight(Generic[T]):
    """Runs ``compute`` once per key at a time across threads; the others wait for its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[T]] = {}

    def run(self, key: Hashable, compute: Callable[[], T], wait_at_most: float | None = None) -> T:
        """The outcome of the one computation of ``key`` in flight (started here if none is)."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if leader:
            if wait_at_most is None:
                return self._lead(key, call, compute)
            # A deadline: compute in a worker thread, so the caller can stop waiting while the work goes on.
            work = functools.partial(self._lead, key, call, compute, quiet=True)
            threading.Thread(
                target=contextvars.copy_context().run, args=(work,), name="stashly-fill", daemon=True
            ).start()
        if not call.done.wait(wait_at_most):
            raise Overdue
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _lead(self, key: Hashable, call: _Call[T], compute: Callable[[], T], quiet: bool = False) -> T:
        try:
            call.result = compute()
            return call.result
        except BaseException as exc:
            call.error = exc
            if quiet:  # a worker thread: the waiters raise it
                return None  # type: ignore[return-value]
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

    async def run(
        self, key: Hashable, compute: Callable[[], Coroutine[Any, Any, T]], wait_at_most: float | None = None
    ) -> T:
        """The outcome of the one computation of ``key`` in flight on this loop (started here if none is)."""
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        task = self._calls.get(slot)
        if task is None:
            task = self._calls[slot] = loop.create_task(compute())
            task.add_done_callback(functools.partial(self._finished, slot))
        if wait_at_most is None:
            return await asyncio.shield(task)
        # asyncio.wait neither cancels the task nor confuses the task's own TimeoutError with the deadline.
        done, _ = await asyncio.wait({task}, timeout=wait_at_most)
        if not done:
            raise Overdue
        return task.result()

    def _finished(self, slot: tuple[asyncio.AbstractEventLoop, Hashable], task: asyncio.Task[T]) -> None:
        if self._calls.get(slot) is task:
            del self._calls[slot]
        if not task.cancelled():
            task.exception()  # retrieved here: if every caller was cancelled, asyncio would log it as lost
