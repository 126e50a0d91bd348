"""Helpers shared by the behavioural suites: one async-shaped view over the sync and async APIs."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from types import CodeType
from typing import Any

import pytest

from stashly import CacheManager

BACKENDS = ["memory", "redis", "cluster", "sentinel"]
"""Every topology the behavioural suites run over (``backend_url`` turns one into a URL)."""
GENEROUS_TIMEOUT = 5.0
"""Seconds every test gives Redis to connect and to answer, unless it is testing timeouts (then it passes its own).

The library's 0.25 s default is for production: on a loaded 2-core machine a round trip to a local server can
take longer, the cache is then correctly skipped, and a test expecting a hit would fail for no bug.
"""
GENEROUS_ENV = {"STASHLY_SOCKET_TIMEOUT": str(GENEROUS_TIMEOUT), "STASHLY_CONNECT_TIMEOUT": str(GENEROUS_TIMEOUT)}
""":data:`GENEROUS_TIMEOUT` as environment variables: set for every test by ``conftest.py``, and for child processes
that build their own managers."""
GENEROUS = {"socket_timeout": GENEROUS_TIMEOUT, "connect_timeout": GENEROUS_TIMEOUT}
"""The same as keyword arguments, for what does not read the environment (``RedisOptions``)."""
REPORTS: list[str] = []
"""Figures tests measured (failover recovery times, local-tier staleness...), printed in the run's summary."""
_URL_FIXTURES = {"redis": "redis_url", "cluster": "cluster_url", "sentinel": "sentinel_url"}


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The URL of an emptied store of kind ``backend``: memory, a single server, a cluster or Sentinel."""
    return "memory://" if backend == "memory" else str(request.getfixturevalue(_URL_FIXTURES[backend]))


class Api:
    """Runs each CacheManager operation through the sync API or its async twin, with one test body for both."""

    def __init__(self, manager: CacheManager, mode: str) -> None:
        self.manager = manager
        self.is_async = mode == "async"

    async def get(self, key: str, default: Any = None, **kw: Any) -> Any:
        if self.is_async:
            return await self.manager.aget(key, default, **kw)
        return self.manager.get(key, default, **kw)

    async def get_many(self, keys: list[str], **kw: Any) -> dict[str, Any]:
        if self.is_async:
            return await self.manager.aget_many(keys, **kw)
        return self.manager.get_many(keys, **kw)

    async def set(self, key: str, value: Any, *args: Any, **kw: Any) -> None:
        if self.is_async:
            await self.manager.aset(key, value, *args, **kw)
        else:
            self.manager.set(key, value, *args, **kw)

    async def remove(self, key: str, **kw: Any) -> bool:
        if self.is_async:
            return await self.manager.aremove(key, **kw)
        return self.manager.remove(key, **kw)

    async def invalidate_tags(self, *tags: str) -> int:
        if self.is_async:
            return await self.manager.ainvalidate_tags(*tags)
        return self.manager.invalidate_tags(*tags)

    async def flush_namespace(self, namespace: str | None = None, **kw: Any) -> int:
        if self.is_async:
            return await self.manager.aflush_namespace(namespace, **kw)
        return self.manager.flush_namespace(namespace, **kw)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds (for TTL expiry): asserts an eventual state, never a duration."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


async def aeventually(check: Callable[[], Any], timeout: float = 10.0) -> bool:
    """Async :func:`eventually`: ``check`` returns a bool or an awaitable of one; the loop runs between polls."""

    async def holds() -> bool:
        result = check()
        return bool(await result if inspect.isawaitable(result) else result)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await holds():
            return True
        await asyncio.sleep(0.02)
    return await holds()


async def pttl_after_store(store: Callable[[], Awaitable[Any] | Any], pttl: Callable[[], int]) -> int:
    """``pttl()`` read right after ``store()`` wrote an entry with a sub-second TTL.

    A machine busy enough to let the entry expire before the read gets another try: ``-2`` (gone) comes back
    only if 50 writes in a row were never seen, which takes a bug (nothing stored), not a slow machine.
    """
    left = -2
    for _ in range(50):
        stored = store()
        if inspect.isawaitable(stored):
            await stored
        left = pttl()
        if left != -2:
            break
    return left


def waiting_in(function: Callable[..., Any], threads: Sequence[threading.Thread]) -> int:
    """How many of ``threads`` are blocked right now in an ``Event.wait`` that ``function`` itself called.

    The state a concurrency test needs before it lets a computation finish ("the other 99 wait for the
    leader"), read from the threads' stacks instead of guessed with a sleep.
    """
    code: CodeType = function.__code__
    frames = sys._current_frames()
    count = 0
    for thread in threads:
        frame, callee = frames.get(thread.ident or -1), None
        while frame is not None and frame.f_code is not code:
            frame, callee = frame.f_back, frame
        count += frame is not None and callee is not None and callee.f_code is threading.Event.wait.__code__
    return count
