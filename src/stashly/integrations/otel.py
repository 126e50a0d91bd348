"""OpenTelemetry: observable instruments read from :meth:`CacheManager.totals` when the SDK collects.

Nothing is added to the hot path: each instrument's callback takes a snapshot at collection time.

>>> from opentelemetry.sdk.metrics import MeterProvider
>>> from stashly import CacheManager
>>> from stashly.integrations.otel import instrument
>>> cm = CacheManager(url="memory://", namespace="app")
>>> instrument(cm)  # the global MeterProvider
>>> provider = MeterProvider()
>>> instrument(cm, meter_provider=provider, name="sessions", spans=True)

Counters are ``ObservableCounter``s by namespace (``stashly.hits``, …), by cached function
(``stashly.function.hits``, …) and by manager (``stashly.local_hits``, ``stashly.breaker_changes``, and the
pending-invalidation journal's ``stashly.replayed_invalidations``, ``stashly.escalated_invalidations`` and
``stashly.dropped_invalidations``); what is pending now is an ``ObservableGauge``,
``stashly.pending_invalidations``. The API has no observable histogram, so latency is an ``ObservableGauge`` of
quantiles (attribute ``quantile``: ``0.5`` and ``0.99``, in seconds) over the calls since the previous
collection, by namespace; an interval without calls reports no point. Quantiles are bucket upper bounds
(powers of two nanoseconds), so a value is at most twice the true latency. With several metric readers on
one provider, each collection starts a new interval for all of them.

``spans=True`` also wraps every fill of the manager's cached functions in an ``INTERNAL`` span
``stashly.fill`` (off by default: a span per fill costs more than the fill's bookkeeping).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.trace import SpanKind, Tracer, TracerProvider
except ImportError as _missing:  # pragma: no cover - exercised by installs without the extra
    raise ImportError("stashly.integrations.otel needs opentelemetry-api: pip install 'stashly[otel]'") from _missing

from .. import __version__

if TYPE_CHECKING:
    from ..manager import CacheManager
    from ..stats import CacheStats, Histogram

__all__ = ["instrument"]

SCOPE = "stashly"
"""The instrumentation scope (meter and tracer name)."""

COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    # (SiteStats field, instrument name, unit, description)
    ("hits", "stashly.hits", "{hit}", "Lookups answered from the cache (local-tier hits included)."),
    ("misses", "stashly.misses", "{miss}", "Lookups that found no entry."),
    ("stale", "stashly.stale_hits", "{hit}", "Hits served while a refresh_ahead recomputation was started."),
    ("fills", "stashly.fills", "{fill}", "Computations run on a miss (their results stored or not)."),
    ("fill_errors", "stashly.fill_errors", "{fill}", "Computations that raised (nothing was stored)."),
    ("stores", "stashly.stores", "{store}", "Entries written."),
    ("invalidations", "stashly.invalidations", "{invalidation}", "remove, invalidate and flush_namespace calls."),
    ("errors", "stashly.errors", "{error}", "Backend failures, absorbed (fail-open) or raised (strict)."),
    ("bytes_read", "stashly.bytes_read", "By", "Bytes of entries read from the backend."),
    ("bytes_written", "stashly.bytes_written", "By", "Bytes of entries written to the backend."),
    ("stale_serves", "stashly.stale_serves", "{hit}", "fail_safe answers with the last good value past its TTL."),
    ("tag_invalidations", "stashly.tag_invalidations", "{tag}", "Tags invalidated by invalidate_tags."),
)
FUNCTION_COUNTERS: tuple[tuple[str, str], ...] = (
    ("hits", "{hit}"),
    ("misses", "{miss}"),
    ("fills", "{fill}"),
    ("fill_errors", "{fill}"),
)
"""Per cached function: ``stashly.function.<field>``, attribute ``stashly.function``."""

MANAGER_COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    # (CacheStats field, instrument name, unit, description); attribute ``stashly.manager`` only
    ("local_hits", "stashly.local_hits", "{hit}", "Hits the local tier answered (included in stashly.hits)."),
    ("breaker_changes", "stashly.breaker_changes", "{change}", "Times the circuit breaker opened or closed."),
    (
        "replayed_invalidations",
        "stashly.replayed_invalidations",
        "{invalidation}",
        "Journaled invalidations delivered to the backend once it answered again.",
    ),
    (
        "escalated_invalidations",
        "stashly.escalated_invalidations",
        "{namespace}",
        "Namespaces whose pending keys overflowed the journal and became one versioned flush.",
    ),
    (
        "dropped_invalidations",
        "stashly.dropped_invalidations",
        "{invalidation}",
        "Invalidations still pending when the manager closed, never delivered (the entries' TTL bounds them).",
    ),
)
MANAGER_GAUGES: tuple[tuple[str, str, str, str], ...] = (
    (
        "pending_invalidations",
        "stashly.pending_invalidations",
        "{invalidation}",
        "Invalidations the backend could not take yet, journaled until it answers (a level, not a count).",
    ),
)

LATENCIES: tuple[tuple[str, str, str], ...] = (
    ("hit_latency", "stashly.hit_latency", "Hit latency quantiles since the last collection (1 hit in 16 timed)."),
    ("fill_latency", "stashly.fill_latency", "Fill latency quantiles since the last collection (every fill)."),
)
QUANTILES = (0.5, 0.99)

FILL_SPAN = "stashly.fill"

Callback = Callable[[CallbackOptions], Iterable[Observation]]


class _Export:
    """The instruments of one meter provider, and the managers they read (by name)."""

    def __init__(self, meter: Meter) -> None:
        self.managers: dict[str, CacheManager] = {}
        self.lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], Histogram] = {}  # (field, manager, namespace) -> last collected
        for field, name, unit, description in COUNTERS:
            meter.create_observable_counter(name, [self._by_namespace(field)], unit, description)
        for field, unit in FUNCTION_COUNTERS:
            description = f"{field.replace('_', ' ').capitalize()} of one cached function (module.qualname)."
            meter.create_observable_counter(f"stashly.function.{field}", [self._by_function(field)], unit, description)
        for field, name, unit, description in MANAGER_COUNTERS:
            meter.create_observable_counter(name, [self._by_manager(field)], unit, description)
        for field, name, unit, description in MANAGER_GAUGES:
            meter.create_observable_gauge(name, [self._by_manager(field)], unit, description)
        for field, name, description in LATENCIES:
            meter.create_observable_gauge(name, [self._quantiles(field)], "s", description)

    def add(self, manager: CacheManager, name: str) -> None:
        with self.lock:
            if any(known is manager for known in self.managers.values()):
                raise ValueError(f"{manager!r} is instrumented already (its counts would be doubled)")
            if name in self.managers:
                raise ValueError(f"a manager named {name!r} is instrumented already: pass another name=")
            self.managers[name] = manager
            for seen in [seen for seen in self._seen if seen[1] == name]:
                del self._seen[seen]

    def _totals(self) -> list[tuple[str, CacheStats]]:
        with self.lock:
            managers = list(self.managers.items())
        return [(name, manager.totals()) for name, manager in managers]

    def _by_namespace(self, field: str) -> Callback:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(getattr(stats, field), {"stashly.manager": name, "stashly.namespace": namespace})
                for name, totals in self._totals()
                for namespace, stats in totals.namespaces.items()
            ]

        return observe

    def _by_function(self, field: str) -> Callback:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(getattr(stats, field), {"stashly.manager": name, "stashly.function": function})
                for name, totals in self._totals()
                for function, stats in totals.functions.items()
            ]

        return observe

    def _by_manager(self, field: str) -> Callback:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(getattr(totals, field), {"stashly.manager": name}) for name, totals in self._totals()]

        return observe

    def _quantiles(self, field: str) -> Callback:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            observations: list[Observation] = []
            for name, totals in self._totals():
                for namespace, stats in totals.namespaces.items():
                    histogram: Histogram = getattr(stats, field)
                    with self.lock:
                        previous = self._seen.get((field, name, namespace))
                        self._seen[(field, name, namespace)] = histogram
                    interval = histogram if previous is None else histogram - previous
                    for q in QUANTILES:
                        value = interval.quantile(q)
                        if value is not None:
                            attributes: dict[str, str | float] = {
                                "stashly.manager": name,
                                "stashly.namespace": namespace,
                                "quantile": q,
                            }
                            observations.append(Observation(value, attributes))
            return observations

        return observe


_exports: weakref.WeakKeyDictionary[MeterProvider, _Export] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def instrument(
    manager: CacheManager,
    meter_provider: MeterProvider | None = None,
    *,
    name: str | None = None,
    spans: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> None:
    """Report ``manager``'s metrics through ``meter_provider`` (the global one by default).

    ``name`` (the manager's namespace by default) is the ``stashly.manager`` attribute of every point; two
    managers of one provider need different names. The first call for a provider creates the instruments;
    later calls add their manager to them. ``spans=True`` opens a ``stashly.fill`` span around each fill of
    this manager's cached functions (on ``tracer_provider``, the global one by default), with the attributes
    ``stashly.manager``, ``stashly.namespace`` and ``stashly.function``; a fill that raises records the
    exception and an error status.
    """
    label = manager.settings.namespace if name is None else name
    if not isinstance(label, str) or not label:
        raise ValueError(f"a manager's name must be a non-empty string, got {label!r}")
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    with _lock:
        export = _exports.get(provider)
        if export is None:
            export = _exports[provider] = _Export(provider.get_meter(SCOPE, __version__))
        export.add(manager, label)
        if spans:
            tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
            manager.engine.on_fill(functools.partial(_fill_span, tracer, label))  # this manager's fills only
        else:
            manager.engine.on_fill(None)


def _fill_span(tracer: Tracer, name: str, namespace: str, function: str) -> AbstractContextManager[object]:
    attributes = {"stashly.manager": name, "stashly.namespace": namespace, "stashly.function": function}
    return tracer.start_as_current_span(FILL_SPAN, kind=SpanKind.INTERNAL, attributes=attributes)
