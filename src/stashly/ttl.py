"""Time-to-live arithmetic: seconds, ``timedelta`` or "not set" in, seconds (or no expiry) out. Pure."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypeAlias

from .sentinels import NOT_SET, NotSet

__all__ = ["TTL", "check_ttl", "resolve_ttl"]

TTL: TypeAlias = float | timedelta | None
"""What callers may pass as ``ttl``: seconds (fractions honoured), a ``timedelta``, or ``None`` for no expiry."""


def check_ttl(ttl: TTL | NotSet, where: str) -> float | NotSet | None:
    """Validate a TTL early (at decoration or call time) and normalise it to seconds.

    ``0``, negative, NaN and infinite values raise ``ValueError`` naming ``where``; ``None`` and
    :data:`~stashly.sentinels.NOT_SET` pass through unchanged.
    """
    if ttl is None or ttl is NOT_SET:
        return ttl
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise TypeError(f"{where}: ttl must be seconds (int or float), a timedelta or None, not {type(ttl).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{where}: ttl must be a positive, finite number of seconds, got {ttl!r}")
    return seconds


def resolve_ttl(ttl: float | NotSet | None, default: float, allow_no_expiry: bool, where: str) -> float | None:
    """The expiry to store with: an explicit ``ttl`` (already checked), else ``default``.

    ``None`` (never expire) is refused unless the manager was created with ``allow_no_expiry=True``: an
    entry that never expires is a memory leak and a staleness bug waiting to happen, so it must be deliberate.
    """
    if ttl is NOT_SET:
        return default
    if ttl is None and not allow_no_expiry:
        raise ValueError(f"{where}: ttl=None (no expiry) needs allow_no_expiry=True on the CacheManager")
    return ttl
