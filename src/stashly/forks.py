"""After ``os.fork()``: reset the live objects of one kind in the child (a lock a parent thread held stays held)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ForkWatch"]

T = TypeVar("T")


class ForkWatch(Generic[T]):
    """Calls ``reset`` in a forked child on every object :meth:`add` was given that is still alive.

    >>> _forks: ForkWatch[LocalTier] = ForkWatch(LocalTier._forked)  # doctest: +SKIP
    >>> _forks.add(tier)  # in LocalTier.__init__                    # doctest: +SKIP
    """

    def __init__(self, reset: Callable[[T], None]) -> None:
        self._reset = reset
        self._live: weakref.WeakSet[T] = weakref.WeakSet()
        self._hooked = False

    def add(self, obj: T) -> None:
        """Watch ``obj``; the fork hook is registered once, at the first object."""
        if not self._hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)
            self._hooked = True
        self._live.add(obj)

    def _after_fork(self) -> None:
        for obj in list(self._live):
            self._reset(obj)
