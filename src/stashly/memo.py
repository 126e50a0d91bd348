"""Bounded memo dictionaries for the hot path: when one is full, its oldest entry goes, never all of them.

A memo that cleared itself whole when full made every key of a large key set pay the slow path again at once;
dropping the oldest keeps the rest one lookup away. Safe without a lock: under concurrent use the worst case
is one entry too many or an eviction done twice.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["SIZE", "remember"]

SIZE = 4096
"""The default bound: entries per memo."""


def remember(memo: dict[Any, Any], key: object, value: object, size: int = SIZE) -> None:
    """Keep ``value`` under ``key`` in ``memo``, dropping its oldest entry first when it holds ``size`` already."""
    if len(memo) >= size:
        with contextlib.suppress(RuntimeError, StopIteration, KeyError):  # another thread evicted it first
            del memo[next(iter(memo))]
    memo[key] = value
