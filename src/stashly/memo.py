"""Bounded memo dictionaries for the hot path: when one is full, its oldest eighth goes, never all of it.

A memo that cleared itself whole when full made every key of a large key set pay the slow path again at once;
dropping the oldest keeps the rest one lookup away. They go an eighth at a time, not one per insert: a dict
keeps the slots of entries deleted from its front until it resizes, and finding the oldest entry walks past
them, so evicting one entry per insert cost a walk over up to ``size`` dead slots each time (1.9 µs at 4,096
entries, more than the slow path the memo saves). Safe without a lock: under concurrent use the worst case is
a few entries too many or an eviction done twice.
"""

from __future__ import annotations

import contextlib
from itertools import islice
from typing import Any

__all__ = ["SIZE", "remember"]

SIZE = 4096
"""The default bound: entries per memo."""


def remember(memo: dict[Any, Any], key: object, value: object, size: int = SIZE) -> None:
    """Keep ``value`` under ``key`` in ``memo``, dropping its oldest eighth first when it holds ``size`` already."""
    if len(memo) >= size:
        with contextlib.suppress(RuntimeError):  # another thread changed it while the oldest were listed
            for oldest in list(islice(memo, size // 8 or 1)):
                memo.pop(oldest, None)  # None: another thread evicted it first
    memo[key] = value
