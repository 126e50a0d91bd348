"""What happens when something goes wrong under the cache: raise in strict mode, else log (rate-limited), go on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import CacheUnavailableError
from .keys import describe, log_fields

__all__ = ["FailurePolicy"]

logger: logging.Logger = logging.getLogger(__name__)


class FailurePolicy:
    """Decides the fate of a backend failure and of unreadable entries; logs each kind at most once per interval.

    Log lines name keys through :func:`~stashly.keys.describe` (namespace and digest), never their text.

    A dead Redis under load fails thousands of times a second; one line every few seconds with a count of
    what was suppressed says the same without drowning the application's logs.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def backend_failed(self, exc: CacheUnavailableError, operation: str, key: str, strict: bool) -> None:
        """Re-raise ``exc`` when ``strict``; otherwise log it (rate-limited) and return."""
        if strict:
            raise exc
        fields = log_fields(key, "backend_error")
        self._warn(
            operation,
            fields,
            "cache %s failed for %s, carrying on without the cache: %s",
            operation,
            describe(key),
            exc,
        )

    def unreadable(self, key: str, why: str) -> None:
        """An entry exists but cannot be used (corrupt, foreign, or no longer of the expected type): a miss."""
        self._warn("read", log_fields(key, "unreadable"), "cache entry %s treated as a miss: %s", describe(key), why)

    def not_stored(self, key: str, why: str) -> None:
        """A computed value was returned to its caller but not cached."""
        self._warn("store", log_fields(key, "not_stored"), "result for %s not cached: %s", describe(key), why)

    def served_stale(self, key: str, function: str, why: str) -> None:
        """``fail_safe`` answered with the last good value because the recomputation ``why`` (rate-limited)."""
        fields = log_fields(key, "served_stale", function)
        self._warn("stale", fields, "served the last good value of %s: its recomputation %s", describe(key), why)

    def replayed(self, count: int, left: int) -> None:
        """Pending invalidations reached the backend again (one line per replay batch)."""
        fields = {"namespace": None, "function": None, "outcome": "invalidations_replayed"}
        logger.info("replayed %d pending invalidations (%d still pending)", count, left, extra=fields)

    def not_delivered(self, targets: list[str]) -> None:
        """Invalidations still pending when the manager closed: their entries live out their TTLs."""
        shown = ", ".join(describe(target) for target in targets[:20])
        more = f" and {len(targets) - 20} more" if len(targets) > 20 else ""
        fields = {"namespace": None, "function": None, "outcome": "invalidations_dropped"}
        message = "closing with %d invalidations the backend never took (%s%s): those entries live out their TTLs"
        logger.warning(message, len(targets), shown, more, extra=fields)

    def local_suspended(self, exc: BaseException) -> None:
        """The local tier's invalidation connection failed: the tier serves nothing until it is back."""
        message = "local tier suspended, reading from Redis until it reconnects: %s: %s"
        fields = {"namespace": None, "function": None, "outcome": "local_tier_suspended"}
        self._warn("local", fields, message, type(exc).__name__, exc)

    def _warn(self, kind: str, fields: dict[str, str | None], message: str, *args: object) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        logger.warning(message, *args, extra=fields | {"suppressed": suppressed})
