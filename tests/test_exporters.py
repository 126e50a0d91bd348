"""Exporters: Prometheus (prometheus_client) and OpenTelemetry (the SDK), read back from what they export."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stashly import Cached, CacheManager, CacheStats, LocalTier
from stashly.integrations import otel, prometheus
from stashly.stats import Histogram, SiteStats

from tests.support import eventually
from tests.test_journal import open_breaker

FIELDS = [field for field, *_ in prometheus.COUNTERS]
JOURNAL = ("pending_invalidations", "replayed_invalidations", "escalated_invalidations", "dropped_invalidations")
JOURNAL_PROMETHEUS = {
    "pending_invalidations": "stashly_pending_invalidations",  # a gauge: no _total
    "replayed_invalidations": "stashly_replayed_invalidations_total",
    "escalated_invalidations": "stashly_escalated_invalidations_total",
    "dropped_invalidations": "stashly_dropped_invalidations_total",
}
JOURNAL_OTEL = {field: f"stashly.{field}" for field in JOURNAL}


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    with CacheManager(url, namespace="app") as cm:
        yield cm


def name_of(fn: Any) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def drive(manager: CacheManager) -> tuple[str, str]:
    """Known traffic: in all 3 hits, 3 misses, 2 fills (1 raised), 2 stores, 2 invalidations, 1 timed fill."""
    cache = Cached("auth", manager=manager)

    @cache.cached
    def me(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @cache.cached
    def broken(user_id: int) -> int:
        raise RuntimeError("database down")

    me(1)
    me(1)
    me(1)
    with pytest.raises(RuntimeError):
        broken(1)
    me.invalidate(1)
    manager.set("k", "v")
    manager.get("k")
    manager.get("absent")
    manager.remove("k")
    return name_of(me), name_of(broken)


def check_known_traffic(totals: CacheStats, me: str, broken: str) -> None:
    """What ``drive`` did, as the manager counted it (the exporters are compared against these)."""
    assert (totals.hits, totals.misses, totals.fills, totals.fill_errors) == (3, 3, 2, 1)
    assert (totals.stores, totals.invalidations) == (2, 2)
    auth, app = totals.namespaces["auth"], totals.namespaces["app"]
    assert (auth.hits, auth.misses, auth.fills, auth.fill_errors, auth.invalidations) == (2, 2, 2, 1, 1)
    assert (app.hits, app.misses, app.stores, app.invalidations) == (1, 1, 1, 1)
    assert (totals.functions[me].hits, totals.functions[me].misses, totals.functions[me].fills) == (2, 1, 1)
    assert totals.functions[broken].fill_errors == 1
    assert (auth.fill_latency.count, app.fill_latency.count) == (1, 0)
    assert (auth.hit_latency.count, app.hit_latency.count) == (1, 1)  # sampled: each site's first hit is timed


# -- Prometheus ---------------------------------------------------------------------------------------------


def metric_name(field: str) -> str:
    return next(name for known, name, *_ in prometheus.COUNTERS if known == field)


def test_prometheus_exports_the_totals(manager: CacheManager) -> None:
    registry = CollectorRegistry()
    prometheus.register(manager, registry)
    me, broken = drive(manager)
    totals = manager.totals()
    check_known_traffic(totals, me, broken)
    value = registry.get_sample_value

    assert value("stashly_hits_total", {"manager": "app", "namespace": "auth"}) == 2
    assert value("stashly_hits_total", {"manager": "app", "namespace": "app"}) == 1
    assert value("stashly_misses_total", {"manager": "app", "namespace": "app"}) == 1
    assert value("stashly_fill_errors_total", {"manager": "app", "namespace": "auth"}) == 1
    for namespace, stats in totals.namespaces.items():
        labels = {"manager": "app", "namespace": namespace}
        for field in FIELDS:
            assert value(f"{metric_name(field)}_total", labels) == getattr(stats, field), (namespace, field)
    for field in FIELDS:  # the namespaces add up to the totals
        exported = sum(
            value(f"{metric_name(field)}_total", {"manager": "app", "namespace": ns}) or 0 for ns in totals.namespaces
        )
        assert exported == getattr(totals, field)
    assert (
        value("stashly_read_bytes_total", {"manager": "app", "namespace": "app"})
        == totals.namespaces["app"].bytes_read
        > 0
    )

    assert value("stashly_function_hits_total", {"manager": "app", "function": me}) == 2
    assert value("stashly_function_misses_total", {"manager": "app", "function": me}) == 1
    assert value("stashly_function_fills_total", {"manager": "app", "function": broken}) == 1
    assert value("stashly_function_fill_errors_total", {"manager": "app", "function": broken}) == 1
    assert value("stashly_local_hits_total", {"manager": "app"}) == totals.local_hits == 0
    assert value("stashly_breaker_changes_total", {"manager": "app"}) == totals.breaker_changes == 0
    for field in JOURNAL:
        assert value(JOURNAL_PROMETHEUS[field], {"manager": "app"}) == getattr(totals, field) == 0

    labels = {"manager": "app", "namespace": "auth"}
    assert value("stashly_fill_latency_seconds_count", labels) == 1
    assert value("stashly_fill_latency_seconds_bucket", {**labels, "le": "+Inf"}) == 1
    assert value("stashly_fill_latency_seconds_sum", labels) == pytest.approx(
        totals.namespaces["auth"].fill_latency.total
    )
    assert value("stashly_hit_latency_seconds_count", labels) == 1


def test_prometheus_text_parses_back_with_cumulative_buckets(manager: CacheManager) -> None:
    registry = CollectorRegistry()
    prometheus.register(manager, registry)
    me, broken = drive(manager)
    for _ in range(40):  # more timed hits: a site's first hit, then one in 16
        manager.get("nothing-here")
        manager.set("x", 1)
        manager.get("x")
    totals = manager.totals()
    families = {family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())}

    assert families["stashly_hits"].type == "counter"
    assert families["stashly_pending_invalidations"].type == "gauge"
    for name in ("stashly_replayed_invalidations", "stashly_escalated_invalidations", "stashly_dropped_invalidations"):
        assert families[name].type == "counter"
    hits = {s.labels["namespace"]: s.value for s in families["stashly_hits"].samples if s.name == "stashly_hits_total"}
    assert hits == {namespace: stats.hits for namespace, stats in totals.namespaces.items()}
    functions = {s.labels["function"]: s.value for s in families["stashly_function_hits"].samples}
    assert functions == {me: 2, broken: 0}

    for name, field in (
        ("stashly_hit_latency_seconds", "hit_latency"),
        ("stashly_fill_latency_seconds", "fill_latency"),
    ):
        family = families[name]
        assert family.type == "histogram"
        for namespace, stats in totals.namespaces.items():
            histogram = getattr(stats, field)
            samples = [s for s in family.samples if s.labels["namespace"] == namespace]
            buckets = [(s.labels["le"], s.value) for s in samples if s.name == f"{name}_bucket"]
            count = next(s.value for s in samples if s.name == f"{name}_count")
            total = next(s.value for s in samples if s.name == f"{name}_sum")
            assert len(buckets) == prometheus.LAST_BUCKET - prometheus.FIRST_BUCKET + 2
            bounds = [float(le) for le, _ in buckets]
            assert bounds == sorted(bounds)
            assert bounds[0] == pytest.approx(1.024e-6)
            assert bounds[-2] == pytest.approx(68.719476736)
            assert buckets[-1][0] == "+Inf"
            counts = [n for _, n in buckets]
            assert counts == sorted(counts), "cumulative buckets never go down"
            assert counts[-1] == count == histogram.count
            assert total == pytest.approx(histogram.total)
    assert totals.namespaces["app"].hit_latency.count > 1


def test_prometheus_buckets_fold_the_ends() -> None:
    counts = [0] * 64
    counts[0], counts[3], counts[10], counts[20], counts[36], counts[37], counts[63] = 1, 2, 4, 8, 16, 32, 64
    buckets = prometheus.buckets(Histogram(counts=tuple(counts)))
    assert buckets[0] == (repr(2**10 / 1e9), 7)  # 1 ns .. 1.024 µs folded into the first bucket
    assert dict(buckets)[repr(2**20 / 1e9)] == 15
    assert buckets[-2] == (repr(2**36 / 1e9), 31)
    assert buckets[-1] == ("+Inf", 127)  # slower than 68.7 s: only in +Inf


def test_prometheus_several_managers_share_a_registry() -> None:
    registry = CollectorRegistry()
    with CacheManager("memory://", namespace="app") as one, CacheManager("memory://", namespace="app") as two:
        collector = prometheus.register(one, registry)
        assert prometheus.register(two, registry, name="jobs") is collector
        with pytest.raises(ValueError, match="named 'app'"):
            prometheus.register(CacheManager("memory://", namespace="app"), registry)
        with pytest.raises(ValueError, match="exported already"):
            prometheus.register(one, registry, name="again")
        one.set("k", 1)
        one.get("k")
        two.get("k")
        value = registry.get_sample_value
        assert value("stashly_hits_total", {"manager": "app", "namespace": "app"}) == 1
        assert value("stashly_misses_total", {"manager": "jobs", "namespace": "app"}) == 1
        assert value("stashly_hits_total", {"manager": "jobs", "namespace": "app"}) == 0

        assert prometheus.unregister(two, registry)
        assert not prometheus.unregister(two, registry)
        assert value("stashly_misses_total", {"manager": "jobs", "namespace": "app"}) is None
        assert prometheus.unregister(one, registry)
        assert value("stashly_hits_total", {"manager": "app", "namespace": "app"}) is None
        prometheus.register(two, registry)  # a new collector: the names are free again
        assert value("stashly_misses_total", {"manager": "app", "namespace": "app"}) == 1


# -- OpenTelemetry ------------------------------------------------------------------------------------------

Points = dict[str, dict[frozenset[tuple[str, Any]], float]]


class Meters(NamedTuple):
    provider: MeterProvider
    reader: InMemoryMetricReader


@pytest.fixture
def meters() -> Iterator[Meters]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Meters(provider, reader)
    provider.shutdown()


def collect(meters: Meters) -> Points:
    """One collection: instrument name -> attributes -> value."""
    data = meters.reader.get_metrics_data()
    assert data is not None
    points: Points = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "stashly"
            for metric in scope.metrics:
                values = points.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    values[frozenset((point.attributes or {}).items())] = point.value
    return points


def at(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((f"stashly.{name}" if name != "quantile" else name, value) for name, value in attributes.items())


def test_otel_exports_the_totals(manager: CacheManager, meters: Meters) -> None:
    otel.instrument(manager, meters.provider)
    me, broken = drive(manager)
    totals = manager.totals()
    check_known_traffic(totals, me, broken)
    points = collect(meters)

    assert points["stashly.hits"][at(manager="app", namespace="auth")] == 2
    assert points["stashly.misses"][at(manager="app", namespace="app")] == 1
    for field, name, *_ in otel.COUNTERS:
        expected = {at(manager="app", namespace=ns): getattr(stats, field) for ns, stats in totals.namespaces.items()}
        assert points[name] == expected, name
        assert sum(points[name].values()) == getattr(totals, field)
    assert points["stashly.function.hits"] == {at(manager="app", function=me): 2, at(manager="app", function=broken): 0}
    assert points["stashly.function.fill_errors"][at(manager="app", function=broken)] == 1
    assert points["stashly.function.fills"][at(manager="app", function=me)] == 1
    assert points["stashly.local_hits"] == {at(manager="app"): 0}
    assert points["stashly.breaker_changes"] == {at(manager="app"): 0}
    for field in JOURNAL:
        assert points[JOURNAL_OTEL[field]] == {at(manager="app"): 0}

    auth = totals.namespaces["auth"].fill_latency
    assert points["stashly.fill_latency"] == {
        at(manager="app", namespace="auth", quantile=0.5): auth.quantile(0.5),
        at(manager="app", namespace="auth", quantile=0.99): auth.quantile(0.99),
    }  # no fill in "app": no point
    assert set(points["stashly.hit_latency"]) == {
        at(manager="app", namespace=ns, quantile=q) for ns in ("auth", "app") for q in otel.QUANTILES
    }


def test_otel_quantiles_cover_the_interval_since_the_last_collection(meters: Meters) -> None:
    with CacheManager("memory://", namespace="app") as manager:
        otel.instrument(manager, meters.provider)
        cache = Cached("work", manager=manager)

        @cache.cached
        def double(n: int) -> int:
            return 2 * n

        for n in range(5):
            double(n)
        first = manager.totals()
        points = collect(meters)["stashly.fill_latency"]
        for q in otel.QUANTILES:
            assert points[at(manager="app", namespace="work", quantile=q)] == first.fill_latency.quantile(q)
        assert collect(meters).get("stashly.fill_latency", {}) == {}  # no fills since: no point

        for n in range(5, 8):
            double(n)
        second = manager.totals()
        interval = second.since(first).namespaces["work"].fill_latency
        assert interval.count == 3
        points = collect(meters)["stashly.fill_latency"]
        for q in otel.QUANTILES:
            assert points[at(manager="app", namespace="work", quantile=q)] == interval.quantile(q)
        assert collect(meters)["stashly.fills"][at(manager="app", namespace="work")] == 8  # counters stay cumulative


def test_otel_several_managers_share_a_provider(meters: Meters) -> None:
    with CacheManager("memory://", namespace="app") as one, CacheManager("memory://", namespace="app") as two:
        otel.instrument(one, meters.provider)
        otel.instrument(two, meters.provider, name="jobs")
        with pytest.raises(ValueError, match="named 'app'"):
            otel.instrument(CacheManager("memory://", namespace="app"), meters.provider)
        with pytest.raises(ValueError, match="instrumented already"):
            otel.instrument(one, meters.provider, name="again")
        one.set("k", 1)
        one.get("k")
        two.get("k")
        points = collect(meters)
        assert points["stashly.hits"] == {at(manager="app", namespace="app"): 1, at(manager="jobs", namespace="app"): 0}
        assert points["stashly.misses"][at(manager="jobs", namespace="app")] == 1


async def test_async_traffic_is_exported(manager: CacheManager, meters: Meters) -> None:
    registry = CollectorRegistry()
    prometheus.register(manager, registry)
    otel.instrument(manager, meters.provider)
    cache = Cached("async", manager=manager)

    @cache.cached
    async def square(n: int) -> int:
        return n * n

    for _ in range(4):
        assert await square(3) == 9
    await manager.aset("k", [1, 2])
    assert await manager.aget("k") == [1, 2]
    assert await manager.aremove("k")

    totals = manager.totals()
    assert (totals.namespaces["async"].hits, totals.namespaces["async"].misses) == (3, 1)
    points = collect(meters)
    for namespace, stats in totals.namespaces.items():
        for field, name, *_ in otel.COUNTERS:
            prom = registry.get_sample_value(f"{metric_name(field)}_total", {"manager": "app", "namespace": namespace})
            assert prom == points[name][at(manager="app", namespace=namespace)] == getattr(stats, field)
    labels = {"manager": "app", "function": name_of(square)}
    assert registry.get_sample_value("stashly_function_hits_total", labels) == 3
    assert points["stashly.function.fills"][at(manager="app", function=name_of(square))] == 1


def test_local_hits_are_exported(redis_url: str, meters: Meters) -> None:
    with CacheManager(redis_url, namespace="lt", local=LocalTier()) as manager:
        registry = CollectorRegistry()
        prometheus.register(manager, registry)
        otel.instrument(manager, meters.provider)
        manager.set("k", 1)
        assert eventually(lambda: manager.get("k") == 1 and manager.local is not None and len(manager.local) == 1)
        before = manager.totals().local_hits
        # Some reads answered by the tier (not necessarily all: a busy machine may have suspended it meanwhile).
        assert eventually(lambda: manager.get("k") == 1 and manager.totals().local_hits > before)
        totals = manager.totals()
        assert registry.get_sample_value("stashly_local_hits_total", {"manager": "lt"}) == totals.local_hits
        assert collect(meters)["stashly.local_hits"] == {at(manager="lt"): totals.local_hits}
        assert registry.get_sample_value("stashly_hits_total", {"manager": "lt", "namespace": "lt"}) == totals.hits


async def test_otel_spans_wrap_fills(manager: CacheManager, meters: Meters) -> None:
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    otel.instrument(manager, meters.provider, spans=True, tracer_provider=tracing)
    cache = Cached("traced", manager=manager)

    @cache.cached
    def load(n: int) -> int:
        return n

    @cache.cached
    async def aload(n: int) -> int:
        return n

    @cache.cached
    def broken(n: int) -> int:
        raise RuntimeError("database down")

    load(1)
    load(1)  # a hit: no span
    await aload(1)
    with pytest.raises(RuntimeError):
        broken(1)
    with CacheManager("memory://", namespace="quiet") as untraced:
        Cached("quiet", manager=untraced).cached(load.__wrapped__)(2)  # another manager's fill: no span

    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["stashly.fill"] * 3
    attributes = [dict(span.attributes or {}) for span in finished]
    assert attributes == [
        {"stashly.manager": "app", "stashly.namespace": "traced", "stashly.function": name}
        for name in (name_of(load), name_of(aload), name_of(broken))
    ]
    assert [span.status.status_code for span in finished] == [StatusCode.UNSET, StatusCode.UNSET, StatusCode.ERROR]
    assert [event.name for event in finished[2].events] == ["exception"]
    tracing.shutdown()


def test_spans_are_off_by_default(manager: CacheManager, meters: Meters) -> None:
    otel.instrument(manager, meters.provider)
    assert manager.engine.hooks.fill_span is None
    with CacheManager("memory://", namespace="traced") as traced:
        otel.instrument(traced, meters.provider, spans=True)
        assert traced.engine.hooks.fill_span is not None
    assert manager.engine.hooks.fill_span is None  # spans are per manager


# -- the pending-invalidation journal ---------------------------------------------------------------------------


def test_the_journal_is_exported(redis_url: str, meters: Meters) -> None:
    """Real journal activity: a removal the open breaker refused is pending, the probe replays it, an overflow
    escalates a namespace, and what is still pending at close is dropped; both exporters follow each step."""
    registry = CollectorRegistry()
    manager = CacheManager(redis_url, namespace="jr")
    prometheus.register(manager, registry)
    otel.instrument(manager, meters.provider)

    def exported() -> dict[str, tuple[float | None, float | None, int]]:
        """field -> (Prometheus sample, OpenTelemetry point, the manager's own count)."""
        points, totals = collect(meters), manager.totals()
        return {
            field: (
                registry.get_sample_value(JOURNAL_PROMETHEUS[field], {"manager": "jr"}),
                points[JOURNAL_OTEL[field]].get(at(manager="jr")),
                getattr(totals, field),
            )
            for field in JOURNAL
        }

    def check(pending: int, replayed: int, escalated: int, dropped: int) -> None:
        expected = dict(zip(JOURNAL, (pending, replayed, escalated, dropped), strict=True))
        assert exported() == {field: (n, n, n) for field, n in expected.items()}

    try:
        manager.set("k", 1)
        check(0, 0, 0, 0)
        clock = open_breaker(manager)
        assert manager.remove("k") is False  # refused by the breaker: journaled
        check(1, 0, 0, 0)
        clock.now += 10  # past the cool-down: the next operation probes, carrying the replay
        assert manager.get("k") is None
        check(0, 1, 0, 0)

        open_breaker(manager)
        manager.engine.journal.limit = 2
        for key in ("a", "b", "c"):  # one more than the journal keeps: the namespace becomes one versioned flush
            assert manager.remove(key) is False
        check(1, 1, 1, 0)
    finally:
        manager.close()  # the breaker is still open: the last replay fails and the flush is dropped
    check(0, 1, 1, 1)
    assert prometheus.unregister(manager, registry)


# -- optional dependencies ----------------------------------------------------------------------------------


def test_importing_stashly_imports_no_exporter() -> None:
    code = (
        "import sys, stashly, stashly.integrations\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("module", "dependency", "hint"),
    [
        ("stashly.integrations.prometheus", "prometheus_client", "pip install 'stashly[prometheus]'"),
        ("stashly.integrations.otel", "opentelemetry", "pip install 'stashly[otel]'"),
    ],
)
def test_a_missing_extra_says_how_to_install_it(module: str, dependency: str, hint: str) -> None:
    code = (
        f"import sys\nsys.modules[{dependency!r}] = None  # as if not installed\n"
        f"try:\n    import {module}\nexcept ImportError as exc:\n    print(exc)\n"
        "else:\n    raise SystemExit('imported without its dependency')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert hint in result.stdout


def test_site_stats_fields_are_all_exported() -> None:
    counted = {name for name in SiteStats.__dataclass_fields__ if name not in ("hit_latency", "fill_latency")}
    assert {field for field, *_ in prometheus.COUNTERS} == counted
    assert {field for field, *_ in otel.COUNTERS} == counted


def test_manager_level_fields_are_all_exported() -> None:
    names = {field.name for field in dataclasses.fields(CacheStats)}
    by_manager = names - {field.name for field in dataclasses.fields(SiteStats)} - {"namespaces", "functions"}
    for exporter in (prometheus, otel):
        exported = [field for field, *_ in (*exporter.MANAGER_COUNTERS, *exporter.MANAGER_GAUGES)]
        assert sorted(exported) == sorted(by_manager), exporter.__name__
    assert [field for field, *_ in prometheus.MANAGER_GAUGES] == ["pending_invalidations"]  # a level, not a count
    assert [field for field, *_ in otel.MANAGER_GAUGES] == ["pending_invalidations"]
