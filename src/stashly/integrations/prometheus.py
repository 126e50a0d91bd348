"""Prometheus: a collector that reads :meth:`CacheManager.totals` when Prometheus scrapes, and never before.

Nothing is added to the hot path: a scrape takes one snapshot per registered manager and turns it into
metric families (counters by namespace and by cached function, two latency histograms by namespace, and by
manager the local-tier hits, breaker changes and the pending-invalidation journal: a gauge of what is pending,
counters of what was replayed, escalated and dropped).

>>> from prometheus_client import CollectorRegistry, start_http_server
>>> from stashly import CacheManager
>>> from stashly.integrations.prometheus import register
>>> cm = CacheManager(url="memory://", namespace="app")
>>> registry = CollectorRegistry()        # leave it out to use prometheus_client's default REGISTRY
>>> collector = register(cm, registry)
>>> start_http_server(9100, registry=registry)  # doctest: +SKIP

Every series carries a ``manager`` label (the name given at registration, the manager's namespace by
default), so several managers can share one registry.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
except ImportError as _missing:  # pragma: no cover - exercised by installs without the extra
    raise ImportError(
        "stashly.integrations.prometheus needs prometheus_client: pip install 'stashly[prometheus]'"
    ) from _missing

if TYPE_CHECKING:
    from ..manager import CacheManager
    from ..stats import Histogram

__all__ = ["StashlyCollector", "register", "unregister"]

COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    # (SiteStats field, metric name without _total, unit, help)
    ("hits", "stashly_hits", "", "Lookups answered from the cache (local-tier hits included)."),
    ("misses", "stashly_misses", "", "Lookups that found no entry."),
    ("stale", "stashly_stale_hits", "", "Hits served while a refresh_ahead recomputation was started for them."),
    ("fills", "stashly_fills", "", "Computations run on a miss (their results stored or not)."),
    ("fill_errors", "stashly_fill_errors", "", "Computations that raised (nothing was stored)."),
    ("stores", "stashly_stores", "", "Entries written."),
    ("invalidations", "stashly_invalidations", "", "remove, invalidate and flush_namespace calls."),
    ("errors", "stashly_errors", "", "Backend failures, absorbed (fail-open) or raised (strict)."),
    ("bytes_read", "stashly_read_bytes", "bytes", "Bytes of entries read from the backend."),
    ("bytes_written", "stashly_written_bytes", "bytes", "Bytes of entries written to the backend."),
    ("stale_serves", "stashly_stale_serves", "", "fail_safe answers with the last good value past its TTL."),
    ("tag_invalidations", "stashly_tag_invalidations", "", "Tags invalidated by invalidate_tags."),
)
FUNCTION_COUNTERS = ("hits", "misses", "fills", "fill_errors")
"""The per-function families: ``stashly_function_<field>_total``, label ``function``."""

MANAGER_COUNTERS: tuple[tuple[str, str, str], ...] = (
    # (CacheStats field, metric name without _total, help); label ``manager`` only
    ("local_hits", "stashly_local_hits", "Hits the local tier answered (included in stashly_hits_total)."),
    ("breaker_changes", "stashly_breaker_changes", "Times the circuit breaker opened or closed."),
    (
        "replayed_invalidations",
        "stashly_replayed_invalidations",
        "Journaled invalidations delivered to the backend once it answered again.",
    ),
    (
        "escalated_invalidations",
        "stashly_escalated_invalidations",
        "Namespaces whose pending keys overflowed the journal and became one versioned flush.",
    ),
    (
        "dropped_invalidations",
        "stashly_dropped_invalidations",
        "Invalidations still pending when the manager closed, never delivered (the entries' TTL bounds them).",
    ),
)
MANAGER_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "pending_invalidations",
        "stashly_pending_invalidations",
        "Invalidations the backend could not take yet, journaled until it answers (a level, not a count).",
    ),
)

HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    (
        "hit_latency",
        "stashly_hit_latency_seconds",
        "Time to answer a hit, sampled: one hit in 16 is timed, so _count is the number of timed hits.",
    ),
    ("fill_latency", "stashly_fill_latency_seconds", "Time to compute and store a missing entry (every fill)."),
)
FIRST_BUCKET, LAST_BUCKET = 10, 36
"""The ``le`` buckets exported: ``2**10`` ns (1.024 µs) to ``2**36`` ns (68.7 s). Faster calls count in the
first bucket, slower ones only in ``+Inf``: 27 buckets instead of 64 per series."""

_LABELS = ("manager", "namespace")


def buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Our per-bucket counts as Prometheus cumulative ``le`` buckets, ending with ``+Inf`` (the count)."""
    counts, bounds = histogram.counts, histogram.bounds
    seen = sum(counts[:FIRST_BUCKET])
    cumulative: list[tuple[str, float]] = []
    for i in range(FIRST_BUCKET, LAST_BUCKET + 1):
        seen += counts[i]
        cumulative.append((repr(bounds[i]), seen))
    cumulative.append(("+Inf", sum(counts)))
    return cumulative


class StashlyCollector:
    """A custom collector over one or more managers, each under its own ``manager`` label value.

    >>> from prometheus_client import CollectorRegistry
    >>> from stashly import CacheManager
    >>> registry = CollectorRegistry()
    >>> registry.register(StashlyCollector(CacheManager(url="memory://")))

    Registering two collectors with one registry fails (their metric names clash): :func:`register` adds the
    managers of one registry to one collector.
    """

    def __init__(self, manager: CacheManager | None = None, *, name: str | None = None) -> None:
        self._managers: dict[str, CacheManager] = {}
        self._lock = threading.Lock()
        if manager is not None:
            self.add(manager, name=name)

    def add(self, manager: CacheManager, *, name: str | None = None) -> str:
        """Export ``manager`` under ``name`` (its namespace by default); returns the name used."""
        label = manager.settings.namespace if name is None else name
        if not isinstance(label, str) or not label:
            raise ValueError(f"a manager's name must be a non-empty string, got {label!r}")
        with self._lock:
            if any(known is manager for known in self._managers.values()):
                raise ValueError(f"{manager!r} is exported already (its counts would be doubled)")
            if label in self._managers:
                raise ValueError(f"a manager named {label!r} is exported already: pass another name=")
            self._managers[label] = manager
        return label

    def remove(self, manager: CacheManager) -> bool:
        """Stop exporting ``manager``: ``True`` if it was exported."""
        with self._lock:
            for label, known in self._managers.items():
                if known is manager:
                    del self._managers[label]
                    return True
        return False

    def __len__(self) -> int:
        return len(self._managers)

    def describe(self) -> Iterable[Metric]:
        """The families (without samples), so a registry learns the names without taking a snapshot."""
        counters, gauges, histograms = _families()
        return [*counters.values(), *gauges.values(), *histograms.values()]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            managers = list(self._managers.items())
        counters, gauges, histograms = _families()
        for label, manager in managers:
            totals = manager.totals()
            for namespace, stats in totals.namespaces.items():
                labels = [label, namespace]
                for field, metric, _, _ in COUNTERS:
                    counters[metric].add_metric(labels, getattr(stats, field))
                for field, metric, _ in HISTOGRAMS:
                    histogram: Histogram = getattr(stats, field)
                    histograms[metric].add_metric(labels, buckets(histogram), histogram.total)
            for function, stats in totals.functions.items():
                for field in FUNCTION_COUNTERS:
                    counters[f"stashly_function_{field}"].add_metric([label, function], getattr(stats, field))
            for field, metric, _ in MANAGER_COUNTERS:
                counters[metric].add_metric([label], getattr(totals, field))
            for field, metric, _ in MANAGER_GAUGES:
                gauges[metric].add_metric([label], getattr(totals, field))
        return [*counters.values(), *gauges.values(), *histograms.values()]


def _families() -> tuple[
    dict[str, CounterMetricFamily], dict[str, GaugeMetricFamily], dict[str, HistogramMetricFamily]
]:
    """Empty families, by name (without ``_total``): the counters, the gauges, then the histograms."""
    counters: dict[str, CounterMetricFamily] = {}
    for _, metric, unit, documentation in COUNTERS:
        counters[metric] = CounterMetricFamily(metric, documentation, labels=_LABELS, unit=unit)
    for field in FUNCTION_COUNTERS:
        metric = f"stashly_function_{field}"
        documentation = f"{field.replace('_', ' ').capitalize()} of one cached function (module.qualname)."
        counters[metric] = CounterMetricFamily(metric, documentation, labels=("manager", "function"))
    for _, metric, documentation in MANAGER_COUNTERS:
        counters[metric] = CounterMetricFamily(metric, documentation, labels=("manager",))
    gauges = {
        metric: GaugeMetricFamily(metric, documentation, labels=("manager",))
        for _, metric, documentation in MANAGER_GAUGES
    }
    histograms = {
        metric: HistogramMetricFamily(metric, documentation, labels=_LABELS, unit="seconds")
        for _, metric, documentation in HISTOGRAMS
    }
    return counters, gauges, histograms


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, StashlyCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def register(
    manager: CacheManager, registry: CollectorRegistry = REGISTRY, *, name: str | None = None
) -> StashlyCollector:
    """Export ``manager`` from ``registry`` (the default one unless given), under ``manager="<name>"``.

    The first call for a registry registers a :class:`StashlyCollector`; later calls add their manager to
    it. ``name`` defaults to the manager's namespace; two managers of one registry need different names.
    """
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is not None:
            collector.add(manager, name=name)
            return collector
        collector = StashlyCollector(manager, name=name)
        registry.register(collector)
        _collectors[registry] = collector
        return collector


def unregister(manager: CacheManager, registry: CollectorRegistry = REGISTRY) -> bool:
    """Stop exporting ``manager`` from ``registry``: ``True`` if it was exported there.

    The registry's collector is unregistered with its last manager.
    """
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None or not collector.remove(manager):
            return False
        if not len(collector):
            registry.unregister(collector)
            del _collectors[registry]
        return True
