"""What a manager counts, and the frozen snapshot :meth:`CacheManager.stats` returns.

Counting is plain integer attributes on one :class:`Site` per namespace and per cached function, bumped
without a lock (under threads a rare increment may be lost; a count is a metric, not a ledger). Counters only
grow: an interval (``stats(reset=True)``) is the difference between two cumulative snapshots, so exporters
reading the totals never see a counter go down. Latencies go
into power-of-two buckets of nanoseconds: one ``bit_length`` and one list increment per call. Everything
else (totals, per-namespace sums, seconds, quantiles) happens when a snapshot is taken.

A manager's :class:`Sites` track at most ``stats_max_names`` namespaces and as many (namespace, function)
pairs by name; later ones share one record per kind, filed under :data:`OTHER`. The counters, the cost of a
snapshot and the label count of an exporter stay bounded however many namespaces an application makes
(one per tenant, say), and every call is still counted somewhere: the totals stay exact.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from .config import checks

__all__ = ["BUCKETS", "OTHER", "SAMPLED", "CacheStats", "Histogram", "Site", "SiteStats", "Sites", "combine"]

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
    "stale_serves",
    "tag_invalidations",
)

OTHER = "(all others)"
"""The name the namespaces and functions beyond ``stats_max_names`` are counted under, in ``namespaces`` and
in ``functions``. No namespace can have it (it holds a space) and no function either (theirs are
``module.qualname``, with a dot)."""


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
        if len(self.counts) != len(other.counts):
            raise ValueError(f"histograms of {len(self.counts)} and {len(other.counts)} buckets do not combine")
        counts = tuple(map(op, self.counts, other.counts))
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
    stale_serves: int = 0
    """``fail_safe``: calls answered with the last good value, past its TTL, because the recomputation raised or
    ran past ``soft_timeout``."""
    tag_invalidations: int = 0
    """Tags invalidated (``invalidate_tags``: one per tag), counted in the manager's namespace."""
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
    ``local_hits`` (hits the local tier answered, included in ``hits``), ``breaker_changes`` (times the
    circuit breaker opened or closed), and the pending-invalidation journal's ``pending_invalidations`` (now,
    not a count), ``replayed_invalidations``, ``escalated_invalidations`` (namespaces whose pending keys became
    one versioned flush) and ``dropped_invalidations`` (still pending when the manager closed). Past the
    manager's ``stats_max_names``, later namespaces and functions are counted together under :attr:`OTHER`; the
    sum over ``namespaces`` is always the totals.

    >>> from stashly import CacheManager
    >>> manager = CacheManager(url="memory://", namespace="auth")
    >>> manager.set("user:1", {"id": 1})
    >>> manager.get("user:1"), manager.get("user:2")
    ({'id': 1}, None)
    >>> stats = manager.stats()
    >>> stats.hits, stats.misses, stats.hit_ratio, stats.namespaces["auth"].misses
    (1, 1, 0.5, 1)
    >>> latency_p99 = stats.hit_latency.quantile(0.99)   # seconds (hits are timed one in 16)
    """

    OTHER: ClassVar[str] = OTHER
    """The key of ``namespaces`` and ``functions`` that counts those beyond ``stats_max_names``."""

    local_hits: int = 0
    breaker_changes: int = 0
    pending_invalidations: int = 0
    replayed_invalidations: int = 0
    escalated_invalidations: int = 0
    dropped_invalidations: int = 0
    namespaces: Mapping[str, SiteStats] = field(default_factory=lambda: MappingProxyType({}))
    functions: Mapping[str, SiteStats] = field(default_factory=lambda: MappingProxyType({}))

    def since(self, earlier: CacheStats) -> CacheStats:
        """What happened between ``earlier`` and this snapshot (both cumulative)."""
        return CacheStats(
            **_site_fields(self, earlier, operator.sub),
            local_hits=self.local_hits - earlier.local_hits,
            breaker_changes=self.breaker_changes - earlier.breaker_changes,
            pending_invalidations=self.pending_invalidations,  # a level, not a count
            replayed_invalidations=self.replayed_invalidations - earlier.replayed_invalidations,
            escalated_invalidations=self.escalated_invalidations - earlier.escalated_invalidations,
            dropped_invalidations=self.dropped_invalidations - earlier.dropped_invalidations,
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
    hits: int
    misses: int

    def __init__(self, namespace: str, function: str | None = None) -> None:
        self.namespace = namespace
        self.function = function
        self.hits = self.misses = self.stale = self.fills = self.fill_errors = self.stores = 0
        self.invalidations = self.errors = self.bytes_read = self.bytes_written = self.stale_serves = 0
        self.tag_invalidations = 0
        # On the hot path: ``site.hit_ns[ns.bit_length()] += 1`` (no call, no min(): 64 buckets hold any int64).
        self.hit_ns: list[int] = [0] * BUCKETS
        self.fill_ns: list[int] = [0] * BUCKETS

    def unhit(self) -> None:
        """Recount a lookup decoded as a hit but answered as a miss (too old for ``max_age``, a tag invalidated)."""
        self.hits -= 1
        self.misses += 1


def _histogram(buckets: list[int]) -> Histogram:
    # The total is estimated from the buckets (each call at 3/4 of its bucket's bound, the middle of the
    # bucket) rather than summed per call: one addition less on every hit.
    counts = tuple(buckets)
    return Histogram(counts=counts, total=sum(map(operator.mul, counts, _MIDDLES)) / 1e9)


_MIDDLES = tuple(0.75 * 2**i for i in range(BUCKETS))


_counts_of = operator.attrgetter(*_COUNTS)


class _Sum:
    """Counts and latency buckets added up over sites: one :class:`SiteStats` is built per name, not per site."""

    __slots__ = ("counts", "fill_ns", "hit_ns")

    def __init__(self) -> None:
        self.counts = [0] * len(_COUNTS)
        self.hit_ns = [0] * BUCKETS
        self.fill_ns = [0] * BUCKETS

    def add(self, counts: tuple[int, ...], hit_ns: list[int], fill_ns: list[int]) -> None:
        self.counts = list(map(operator.add, self.counts, counts))
        self.hit_ns = list(map(operator.add, self.hit_ns, hit_ns))
        self.fill_ns = list(map(operator.add, self.fill_ns, fill_ns))

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = dict(zip(_COUNTS, self.counts, strict=True))
        fields["hit_latency"], fields["fill_latency"] = _histogram(self.hit_ns), _histogram(self.fill_ns)
        return fields

    def stats(self) -> SiteStats:
        return SiteStats(**self.fields())


def combine(
    sites: Iterable[Site],
    *,
    local_hits: int = 0,
    breaker_changes: int = 0,
    pending_invalidations: int = 0,
    replayed_invalidations: int = 0,
    escalated_invalidations: int = 0,
    dropped_invalidations: int = 0,
) -> CacheStats:
    """The cumulative snapshot of a manager's sites: totals, then by namespace and by function."""
    total = _Sum()
    namespaces: dict[str, _Sum] = {}
    functions: dict[str, _Sum] = {}
    for site in sites:
        # Copies first: the counters move under us (no lock on the hot path), so read each of them once.
        counts, hit_ns, fill_ns = _counts_of(site), site.hit_ns[:], site.fill_ns[:]
        total.add(counts, hit_ns, fill_ns)
        by_namespace = namespaces.get(site.namespace)
        if by_namespace is None:
            by_namespace = namespaces[site.namespace] = _Sum()
        by_namespace.add(counts, hit_ns, fill_ns)
        if site.function is not None:
            by_function = functions.get(site.function)
            if by_function is None:
                by_function = functions[site.function] = _Sum()
            by_function.add(counts, hit_ns, fill_ns)
    return CacheStats(
        **total.fields(),
        local_hits=local_hits,
        breaker_changes=breaker_changes,
        pending_invalidations=pending_invalidations,
        replayed_invalidations=replayed_invalidations,
        escalated_invalidations=escalated_invalidations,
        dropped_invalidations=dropped_invalidations,
        namespaces=MappingProxyType({name: sums.stats() for name, sums in namespaces.items()}),
        functions=MappingProxyType({name: sums.stats() for name, sums in functions.items()}),
    )


class Sites:
    """A manager's live counters: a :class:`Site` per namespace and per (namespace, cached function) pair, at
    most ``limit`` of each kind by name.

    Namespaces are tracked in the order they are first seen; the ones after the first ``limit`` share one
    site named :data:`OTHER`, and so do their functions. Pairs past ``limit`` share one site per namespace,
    whose ``function`` is :data:`OTHER`: the namespace counts stay exact, only the function name is lost.
    Bindings of one function to one namespace share a site, so decorating the same function again (a
    closure per request, say) adds nothing. At most ``3 * limit + 2`` sites in all, whatever the history.
    """

    def __init__(self, limit: int) -> None:
        self.limit: int = checks.positive_int(limit, "stats_max_names")
        self._lock = threading.Lock()
        self._tracked: set[str] = set()  # namespaces counted by name (at most limit)
        self._namespaces: dict[str, Site] = {}  # tracked namespace, or OTHER -> its counters
        self._functions: dict[tuple[str, str], Site] = {}  # (namespace or OTHER, function or OTHER) -> counters
        self._pairs = 0  # (namespace, function) sites with a function name, at most limit

    def namespace(self, namespace: str) -> Site:
        """The counters of ``namespace``: its own, or the shared :data:`OTHER` site past the limit."""
        with self._lock:
            name = self._track(namespace)
            site = self._namespaces.get(name)
            if site is None:
                site = self._namespaces[name] = Site(name)
            return site

    def function(self, namespace: str, function: str) -> Site:
        """The counters of ``function`` (``module.qualname``) caching in ``namespace``."""
        with self._lock:
            name = self._track(namespace)
            site = self._functions.get((name, function))
            if site is not None:
                return site
            if self._pairs < self.limit:
                self._pairs += 1
            else:
                function = OTHER
                site = self._functions.get((name, OTHER))
                if site is not None:
                    return site
            site = self._functions[(name, function)] = Site(name, function)
            return site

    def _track(self, namespace: str) -> str:
        """The name ``namespace`` is counted under (the caller holds the lock)."""
        if namespace in self._tracked:
            return namespace
        if len(self._tracked) < self.limit:
            self._tracked.add(namespace)
            return namespace
        return OTHER

    def __iter__(self) -> Iterator[Site]:
        with self._lock:
            sites = [*self._namespaces.values(), *self._functions.values()]
        return iter(sites)

    def __len__(self) -> int:
        with self._lock:
            return len(self._namespaces) + len(self._functions)
