"""The stats page: a FastAPI router serving a small dashboard of a manager's counters, and the same as JSON.

No background thread: a sample of :meth:`CacheManager.totals` is taken when ``stats.json`` is requested, at
most once per ``interval``, and kept in a bounded in-process history. The hit ratio of each sample is
computed from the difference with the previous one (the totals only grow), and so are its latency
quantiles. Only counts and names are served (namespaces, ``module.qualname`` of cached functions): never a
key, an argument or a cached value.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    from fastapi import APIRouter
    from fastapi.responses import HTMLResponse, JSONResponse
except ImportError as _missing:  # pragma: no cover - exercised by installs without the extra
    raise ImportError("stats_router() needs FastAPI: pip install 'stashly[fastapi]'") from _missing

from ... import CacheManager, CacheStats, default_manager
from .stats_page_html import PAGE, SCRIPT, STYLE

if TYPE_CHECKING:
    from ...stats import Histogram, SiteStats

__all__ = ["stats_router"]

_ZERO = CacheStats()
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# The page's only script and style are allowed by their digests: nothing else runs, and it may fetch only
# from its own origin (no CDN, no beacon).
_PAGE_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True, slots=True)
class _Sample:
    time: float
    totals: CacheStats
    lookups: int
    """Hits and misses since the previous sample."""
    hit_ratio: float | None
    """Over the lookups since the previous sample; ``None`` when there were none."""
    hit_latency: Histogram
    fill_latency: Histogram

    def to_json(self) -> dict[str, Any]:
        t = self.totals
        return {
            "time": self.time,
            "hits": t.hits,
            "misses": t.misses,
            "fills": t.fills,
            "errors": t.errors,
            "lookups": self.lookups,
            "hit_ratio": self.hit_ratio,
            "hit_p50": self.hit_latency.quantile(0.5),
            "hit_p99": self.hit_latency.quantile(0.99),
            "fill_p50": self.fill_latency.quantile(0.5),
            "fill_p99": self.fill_latency.quantile(0.99),
        }


class _Dashboard:
    """The history of one manager's totals and its namespaces' key counts (the router's state)."""

    def __init__(self, history: int, interval: float, count_ttl: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.count_ttl = count_ttl
        self.clock = clock
        self._samples: deque[_Sample] = deque(maxlen=history)
        self._counts: dict[str, tuple[float, int]] = {}  # namespace -> (when counted, keys)
        self._manager: CacheManager | None = None
        self._lock = threading.Lock()  # one sample and one SCAN at a time, whoever polls

    def snapshot(self, manager: CacheManager) -> dict[str, Any]:
        """The JSON document: sampling first if the latest sample is at least ``interval`` old."""
        with self._lock:
            if manager is not self._manager:  # another default manager: its counters are not comparable
                self._manager = manager
                self._samples.clear()
                self._counts.clear()
            now = self.clock()
            latest = self._samples[-1] if self._samples else None
            # A clock that went back (a wall-clock step) samples too, rather than stalling until it catches up.
            if latest is None or not 0 <= now - latest.time < self.interval:
                latest = self._sample(manager, now, latest)
            # The namespaces counted under CacheStats.OTHER are not known by name: there is nothing to count.
            keys = {
                name: self._count(manager, name, now) for name in latest.totals.namespaces if name != CacheStats.OTHER
            }
            history = [sample.to_json() for sample in self._samples]
        totals = latest.totals
        return {
            "time": latest.time,
            "interval": self.interval,
            "totals": {
                **_site(totals),
                "local_hits": totals.local_hits,
                "breaker_changes": totals.breaker_changes,
                "pending_invalidations": totals.pending_invalidations,
                "replayed_invalidations": totals.replayed_invalidations,
                "escalated_invalidations": totals.escalated_invalidations,
                "dropped_invalidations": totals.dropped_invalidations,
                "keys": sum(keys.values()),
            },
            "namespaces": [
                {"name": name, **_site(stats), "keys": keys.get(name)}
                for name, stats in sorted(totals.namespaces.items())
            ],
            "functions": [{"name": name, **_site(stats)} for name, stats in sorted(totals.functions.items())],
            "history": history,
        }

    def _sample(self, manager: CacheManager, now: float, previous: _Sample | None) -> _Sample:
        totals = manager.totals()
        delta = totals.since(previous.totals if previous is not None else _ZERO)
        lookups = delta.hits + delta.misses
        sample = _Sample(
            time=now,
            totals=totals,
            lookups=lookups,
            hit_ratio=delta.hit_ratio if lookups else None,
            hit_latency=delta.hit_latency,
            fill_latency=delta.fill_latency,
        )
        self._samples.append(sample)
        return sample

    def _count(self, manager: CacheManager, namespace: str, now: float) -> int:
        counted = self._counts.get(namespace)
        if counted is None or not 0 <= now - counted[0] < self.count_ttl:
            counted = (now, manager.count(namespace))
            self._counts[namespace] = counted
        return counted[1]


def _latency(histogram: Histogram) -> dict[str, Any]:
    return {"count": histogram.count, "p50": histogram.quantile(0.5), "p99": histogram.quantile(0.99)}


def _site(stats: SiteStats) -> dict[str, Any]:
    return {
        "hits": stats.hits,
        "misses": stats.misses,
        "hit_ratio": stats.hit_ratio,
        "stale": stats.stale,
        "fills": stats.fills,
        "fill_errors": stats.fill_errors,
        "stores": stats.stores,
        "invalidations": stats.invalidations,
        "errors": stats.errors,
        "bytes_read": stats.bytes_read,
        "bytes_written": stats.bytes_written,
        "hit_latency": _latency(stats.hit_latency),
        "fill_latency": _latency(stats.fill_latency),
    }


def stats_router(
    manager: CacheManager | None = None,
    *,
    history: int = 300,
    interval: float = 1.0,
    count_ttl: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """A router serving a cache dashboard at ``GET /`` and its data at ``GET /stats.json``.

    The page is self-contained (no CDN, no request but its own ``stats.json``, relative to wherever the
    router is mounted) and polls every second: hit ratio and hit/fill latency (p50, p99) over time, and a
    table per namespace and per cached function. The history holds the last ``history`` samples, taken when
    ``stats.json`` is requested and at most once per ``interval`` seconds, in this process only (each
    worker has its own counters). Key counts walk each namespace (``SCAN`` on Redis), at most once per
    ``count_ttl`` seconds. ``manager=None`` serves :func:`~stashly.default_manager`, looked up per request.

    The page shows namespace and function names and counts, never keys or values; it has no authentication
    of its own, so a production app mounts it behind its own (``dependencies=[Depends(admin_only)]``).

    >>> from fastapi import FastAPI
    >>> from stashly import CacheManager
    >>> app = FastAPI()
    >>> app.include_router(stats_router(CacheManager(url="memory://")), prefix="/cache")

    In ``stats.json``, latencies are in seconds (``null`` with no calls), ``time`` in the ``clock``'s
    seconds (the Unix epoch by default), and each ``history`` entry has the cumulative ``hits``, ``misses``,
    ``fills`` and ``errors``, plus the ``lookups``, ``hit_ratio`` and latency quantiles since the entry before.
    ``totals`` also has ``breaker_changes`` and the pending-invalidation journal: ``pending_invalidations`` (now),
    ``replayed_invalidations``, ``escalated_invalidations`` and ``dropped_invalidations`` (since the start).
    """
    if history < 2:
        raise ValueError(f"history keeps at least 2 samples (a line needs two points), got {history!r}")
    if not interval > 0 or not count_ttl >= 0:
        raise ValueError(f"interval must be > 0 and count_ttl >= 0 seconds, got {interval!r} and {count_ttl!r}")
    dashboard = _Dashboard(history, interval, count_ttl, clock)
    router = APIRouter(tags=["cache"])

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def stats_page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=_PAGE_HEADERS)

    # A sync endpoint: counting keys is blocking I/O, so FastAPI runs it in a worker thread.
    @router.get("/stats.json")
    def stats_json() -> JSONResponse:
        """The cache's totals, namespaces, cached functions and recent history (latencies in seconds)."""
        return JSONResponse(dashboard.snapshot(default_manager() if manager is None else manager), headers=_HEADERS)

    return router
