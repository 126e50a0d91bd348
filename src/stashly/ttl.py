"""Time-to-live arithmetic: seconds, ``timedelta`` or "not set" in, seconds (or no expiry) out. Pure."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeAlias

from .config.checks import MAX_SECONDS
from .sentinels import NOT_SET, NotSet

__all__ = ["TTL", "check_ttl", "resolve_ttl"]

TTL: TypeAlias = float | timedelta | None
"""What callers may pass as ``ttl``: seconds (fractions honoured), a ``timedelta``, or ``None`` for no expiry."""


def check_ttl(ttl: TTL | NotSet, where: str) -> float | NotSet | None:
    """Validate a TTL early (at decoration or call time) and normalise it to seconds.

    ``0``, negative, NaN and infinite values, and more than 1e9 s (31 years: Redis refuses the millisecond
    count of a much larger one, so every write would fail), raise ``ValueError`` naming ``where``; ``None`` and
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
    if not 0 < seconds <= MAX_SECONDS:  # also refuses NaN and infinities
        raise ValueError(f"{where}: ttl must be a positive number of seconds, at most {MAX_SECONDS:.0e}, got {ttl!r}")
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
