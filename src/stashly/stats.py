"""What a manager counts, and the frozen snapshot :meth:`CacheManager.stats` returns.

Counting is plain integer attributes on one :class:`Site` per namespace and per cached function, bumped
without a lock (under threads a rare increment may be lost; a count is a metric, not a ledger). Counters only
grow: an interval (``stats(reset=True)``) is the difference between two cumulative snapshots, so exporters
reading the totals never see a counter go down. Latencies go
into power-of-two buckets of nanoseconds: one ``bit_length`` and one list increment per call. Everything
else (totals, per-namespace sums, seconds, quantiles) happens when a snapshot is taken.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["BUCKETS", "SAMPLED", "CacheStats", "Histogram", "Site", "SiteStats", "combine"]

BUCKETS = 64
"""Latency buckets: bucket ``i`` counts durations of ``2**(i-1)`` to ``2**i`` nanoseconds (any duration fits)."""

SAMPLED = 15
"""Hit latency is sampled: a hit is timed when ``site.hits & SAMPLED == 0`` (one in 16); reading the clock
twice would cost a hit more than all the counting together. Fills are all timed."""

_COUNTS = (
    "hits",
    "misses",
    "stale",
    "fills",
    "fill_errors",
    "stores",
    "invalidations",
    "errors",
    "bytes_read",
    "bytes_written",
)


@dataclass(frozen=True, slots=True)
class Histogram:
    """A latency distribution: ``counts[i]`` calls took at most ``bounds[i]`` seconds (and more than the bound
    before); ``total`` seconds in all, estimated from the buckets."""

    bounds: tuple[float, ...] = tuple(2**i / 1e9 for i in range(BUCKETS))
    counts: tuple[int, ...] = (0,) * BUCKETS
    total: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (``0.99``: p99), in seconds; ``None`` if empty."""
        count = self.count
        if not count:
            return None
        rank, seen = q * count, 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            seen += n
            if seen >= rank and n:
                return bound
        return self.bounds[-1]

    def __add__(self, other: Histogram) -> Histogram:
        return self._zip(other, operator.add)

    def __sub__(self, other: Histogram) -> Histogram:
        return self._zip(other, operator.sub)

    def _zip(self, other: Histogram, op: Callable[[Any, Any], Any]) -> Histogram:
        counts = tuple(op(a, b) for a, b in zip(self.counts, other.counts, strict=True))
        return Histogram(self.bounds, counts, op(self.total, other.total))


@dataclass(frozen=True, slots=True)
class SiteStats:
    """The counts of one namespace or one cached function. ``hits`` include local-tier hits."""

    hits: int = 0
    misses: int = 0
    stale: int = 0
    """Hits served while a ``refresh_ahead`` recomputation was started for them."""
    fills: int = 0
    """Computations run on a miss (their results stored or not)."""
    fill_errors: int = 0
    """Computations that raised (the exception went to the caller; nothing was stored)."""
    stores: int = 0
    invalidations: int = 0
    """``remove``, ``invalidate`` and ``flush_namespace`` calls."""
    errors: int = 0
    """Backend failures absorbed or raised (strict)."""
    bytes_read: int = 0
    bytes_written: int = 0
    hit_latency: Histogram = field(default_factory=Histogram)
    fill_latency: Histogram = field(default_factory=Histogram)

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups, 0.0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def __add__(self, other: SiteStats) -> SiteStats:
        return SiteStats(**_site_fields(self, other, operator.add))

    def __sub__(self, other: SiteStats) -> SiteStats:
        return SiteStats(**_site_fields(self, other, operator.sub))


@dataclass(frozen=True, slots=True)
class CacheStats(SiteStats):
    """What a manager has seen since it was created (or since the last ``stats(reset=True)``).

    The totals, plus ``namespaces`` (by namespace) and ``functions`` (by cached function, ``module.qualname``),
    ``local_hits`` (hits the local tier answered, included in ``hits``) and ``breaker_changes`` (times the
    circuit breaker opened or closed).

    >>> stats = manager.stats()  # doctest: +SKIP
    >>> stats.hit_ratio, stats.namespaces["auth"].misses, stats.hit_latency.quantile(0.99)  # doctest: +SKIP
    """

    local_hits: int = 0
    breaker_changes: int = 0
    namespaces: Mapping[str, SiteStats] = field(default_factory=lambda: MappingProxyType({}))
    functions: Mapping[str, SiteStats] = field(default_factory=lambda: MappingProxyType({}))

    def since(self, earlier: CacheStats) -> CacheStats:
        """What happened between ``earlier`` and this snapshot (both cumulative)."""
        return CacheStats(
            **_site_fields(self, earlier, operator.sub),
            local_hits=self.local_hits - earlier.local_hits,
            breaker_changes=self.breaker_changes - earlier.breaker_changes,
            namespaces=_since(self.namespaces, earlier.namespaces),
            functions=_since(self.functions, earlier.functions),
        )


def _site_fields(a: SiteStats, b: SiteStats, op: Callable[[Any, Any], Any]) -> dict[str, Any]:
    """The :class:`SiteStats` fields of ``a`` combined with ``b`` by ``op``, by name."""
    fields = {name: op(getattr(a, name), getattr(b, name)) for name in _COUNTS}
    fields["hit_latency"] = op(a.hit_latency, b.hit_latency)
    fields["fill_latency"] = op(a.fill_latency, b.fill_latency)
    return fields


def _since(now: Mapping[str, SiteStats], earlier: Mapping[str, SiteStats]) -> Mapping[str, SiteStats]:
    return MappingProxyType({name: stats - earlier.get(name, SiteStats()) for name, stats in now.items()})


class Site:
    """The live counters of one namespace (``function`` is ``None``) or one cached function."""

    __slots__ = ("function", "namespace", *_COUNTS, "fill_ns", "hit_ns")

    def __init__(self, namespace: str, function: str | None = None) -> None:
        self.namespace = namespace
        self.function = function
        self.hits = self.misses = self.stale = self.fills = self.fill_errors = self.stores = 0
        self.invalidations = self.errors = self.bytes_read = self.bytes_written = 0
        # On the hot path: ``site.hit_ns[ns.bit_length()] += 1`` (no call, no min(): 64 buckets hold any int64).
        self.hit_ns = [0] * BUCKETS
        self.fill_ns = [0] * BUCKETS

    def snapshot(self) -> SiteStats:
        counts = {name: getattr(self, name) for name in _COUNTS}
        return SiteStats(**counts, hit_latency=_histogram(self.hit_ns), fill_latency=_histogram(self.fill_ns))


def _histogram(buckets: list[int]) -> Histogram:
    # The total is estimated from the buckets (each call at 3/4 of its bucket's bound, the middle of the
    # bucket) rather than summed per call: one addition less on every hit.
    counts = tuple(buckets)
    return Histogram(counts=counts, total=sum(n * 0.75 * 2**i for i, n in enumerate(counts)) / 1e9)


def combine(sites: Iterable[Site], *, local_hits: int = 0, breaker_changes: int = 0) -> CacheStats:
    """The cumulative snapshot of a manager's sites: totals, then by namespace and by function."""
    total = SiteStats()
    namespaces: dict[str, SiteStats] = {}
    functions: dict[str, SiteStats] = {}
    for site in sites:
        stats = site.snapshot()
        total += stats
        namespaces[site.namespace] = namespaces.get(site.namespace, SiteStats()) + stats
        if site.function is not None:
            functions[site.function] = functions.get(site.function, SiteStats()) + stats
    return CacheStats(
        **_site_fields(total, SiteStats(), operator.add),
        local_hits=local_hits,
        breaker_changes=breaker_changes,
        namespaces=MappingProxyType(namespaces),
        functions=MappingProxyType(functions),
    )
