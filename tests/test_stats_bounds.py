"""Bounded per-site state: past ``stats_max_names`` namespaces (and functions), the rest share an OTHER record.

A manager used to keep one set of counters per namespace and per decoration forever, and every snapshot
walked all of them. Here the number of counter records is counted (never timed): it stays capped however
many namespaces are used, the totals stay exact, and the exporters see at most the cap plus one label value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stashly import Cached, CacheManager, CacheStats, ConfigError
from stashly.config.settings import parse_name
from stashly.integrations import otel, prometheus
from stashly.integrations.fastapi import stats_router
from stashly.stats import _COUNTS, OTHER, SiteStats

OTHER_NAME = "(all others)"


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


def sites(manager: CacheManager) -> int:
    """How many counter records a snapshot of ``manager`` walks."""
    return len(manager._sites)


def check_sums(stats: CacheStats, by: dict[str, SiteStats] | None = None) -> None:
    """Every count of ``by`` (the namespaces by default) adds up to the totals."""
    records = list((stats.namespaces if by is None else by).values())
    for name in _COUNTS:
        assert sum(getattr(record, name) for record in records) == getattr(stats, name), name
    assert sum(record.hit_latency.count for record in records) == stats.hit_latency.count


def named(name: str, body: Callable[[int], int]) -> Callable[[int], int]:
    """``body`` under its own qualname, so each call of ``named`` makes a distinct cached function."""

    def fn(n: int) -> int:
        return body(n)

    fn.__qualname__ = name
    return fn


def test_twenty_thousand_namespaces_keep_a_thousand_and_one_records() -> None:
    with CacheManager("memory://", namespace="app") as cm:
        for i in range(20_000):
            cm.set("k", i, namespace=f"tenant{i}")
            assert cm.get("k", namespace=f"tenant{i}") == i
        stats = cm.stats()
        assert sites(cm) == 1001  # what a snapshot walks: the first 1,000 namespaces, and one for the rest
        assert set(stats.namespaces) == {f"tenant{i}" for i in range(1000)} | {OTHER}
        assert (stats.hits, stats.stores, stats.misses) == (20_000, 20_000, 0)
        other = stats.namespaces[OTHER]
        assert (other.hits, other.stores, other.misses) == (19_000, 19_000, 0)
        assert (stats.namespaces["tenant999"].hits, stats.namespaces["tenant999"].stores) == (1, 1)
        check_sums(stats)

        for i in range(20_000, 25_000):  # more history, no more records
            cm.get("k", namespace=f"tenant{i}")
        assert sites(cm) == 1001
        assert cm.stats().namespaces[OTHER].misses == 5_000
        assert len(cm.totals().namespaces) == 1001


def test_reset_and_totals_keep_their_meaning_with_other(url: str) -> None:
    with CacheManager(url, namespace="app", stats_max_names=2) as cm:
        for name in ("a", "b", "c", "d"):
            cm.set("k", 1, namespace=name)
        first = cm.stats(reset=True)
        assert set(first.namespaces) == {"a", "b", OTHER}
        assert first.namespaces[OTHER].stores == 2
        cm.get("k", namespace="a")
        cm.get("k", namespace="e")  # a new namespace past the limit
        cm.get("k", namespace="c")
        interval = cm.stats()
        assert (interval.hits, interval.misses, interval.stores) == (2, 1, 0)
        assert (interval.namespaces[OTHER].hits, interval.namespaces[OTHER].misses) == (1, 1)
        assert interval.namespaces["b"] == SiteStats()
        check_sums(interval)
        totals = cm.totals()  # resets never touch the totals
        assert (totals.stores, totals.namespaces[OTHER].stores, totals.namespaces[OTHER].misses) == (4, 2, 1)
        check_sums(totals)


def test_decorating_a_function_again_adds_no_record() -> None:
    with CacheManager("memory://", namespace="app") as cm:
        for i in range(500):  # a closure decorated per request, say

            def handler(n: int) -> int:
                return n

            cached = Cached("h", manager=cm).cached(handler)
            assert cached(i % 10) == i % 10
        stats = cm.stats()
        name = f"{handler.__module__}.{handler.__qualname__}"
        assert set(stats.functions) == {name}
        assert (stats.functions[name].hits, stats.functions[name].misses) == (490, 10)
        assert sites(cm) == 1  # one record for every binding of the function to this namespace


def test_functions_past_the_limit_share_the_other_record(url: str) -> None:
    with CacheManager(url, namespace="app", stats_max_names=3) as cm:
        cache = Cached("ns", manager=cm)
        functions = [cache.cached(named(f"f{i}", lambda n: n)) for i in range(5)]
        for fn in functions:
            fn(1)
            fn(1)
        stats = cm.stats()
        names = [f"{__name__}.f{i}" for i in range(5)]
        assert set(stats.functions) == {*names[:3], OTHER}
        assert (stats.functions[OTHER].misses, stats.functions[OTHER].hits) == (2, 2)
        assert (stats.namespaces["ns"].misses, stats.namespaces["ns"].hits) == (5, 5)  # namespaces stay exact
        check_sums(stats, dict(stats.functions))
        assert sites(cm) == 4


def test_a_function_cached_per_tenant_is_bounded_too() -> None:
    with CacheManager("memory://", namespace="app", stats_max_names=3) as cm:
        body = named("per_tenant", lambda n: n)
        for i in range(50):
            Cached(f"t{i}", manager=cm).cached(body)(1)
        stats = cm.stats()
        name = f"{__name__}.per_tenant"
        assert set(stats.namespaces) == {"t0", "t1", "t2", OTHER}
        assert stats.namespaces[OTHER].misses == 47
        # Three (namespace, function) pairs are tracked: later ones are counted under OTHER.
        assert (stats.functions[name].misses, stats.functions[OTHER].misses) == (3, 47)
        check_sums(stats)
        check_sums(stats, dict(stats.functions))
        assert sites(cm) == 4


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(1, 6),
    calls=st.lists(st.tuples(st.integers(0, 12), st.sampled_from(["get", "set", "remove"])), max_size=60),
)
def test_tracked_namespaces_are_the_first_seen_and_the_totals_stay_exact(
    limit: int, calls: list[tuple[int, str]]
) -> None:
    with CacheManager("memory://", namespace="app", stats_max_names=limit) as cm:
        for index, operation in calls:
            namespace = f"n{index}"
            if operation == "get":
                cm.get("k", namespace=namespace)
            elif operation == "set":
                cm.set("k", index, namespace=namespace)
            else:
                cm.remove("k", namespace=namespace)
        stats = cm.totals()
        seen = list(dict.fromkeys(f"n{index}" for index, _ in calls))
        expected = set(seen[:limit]) | ({OTHER} if len(seen) > limit else set())
        assert set(stats.namespaces) == expected
        assert sites(cm) == len(expected) <= limit + 1
        check_sums(stats)
        assert stats.hits + stats.misses == sum(1 for _, operation in calls if operation == "get")
        assert stats.stores == sum(1 for _, operation in calls if operation == "set")


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CacheManager("memory://").settings.stats_max_names == 1000
    with pytest.raises(ConfigError, match="stats_max_names"):
        CacheManager("memory://", stats_max_names=0)
    monkeypatch.setenv("STASHLY_STATS_MAX_NAMES", "many")
    with pytest.raises(ConfigError, match="STASHLY_STATS_MAX_NAMES"):
        CacheManager("memory://")
    monkeypatch.setenv("STASHLY_STATS_MAX_NAMES", "7")
    with CacheManager("memory://") as cm:
        assert cm.settings.stats_max_names == 7
        for i in range(10):
            cm.get("k", namespace=f"n{i}")
        assert len(cm.stats().namespaces) == 8


def test_other_is_no_namespace_and_no_function_name() -> None:
    assert CacheStats.OTHER == OTHER == OTHER_NAME
    with pytest.raises(ConfigError):
        parse_name(OTHER, "namespace")
    with pytest.raises(ConfigError):
        CacheManager("memory://").count(OTHER)
    with CacheManager("memory://", stats_max_names=1) as cm:
        cm.get("k", namespace="(other)")  # the obvious name is a valid namespace: it is tracked like any other
        cm.get("k", namespace="second")
        assert set(cm.stats().namespaces) == {"(other)", OTHER}


# -- exporters ----------------------------------------------------------------------------------------------


def traffic(cm: CacheManager, namespaces: int) -> None:
    for i in range(namespaces):
        cm.set("k", i, namespace=f"tenant{i}")
        cm.get("k", namespace=f"tenant{i}")


def test_prometheus_label_values_are_bounded(url: str) -> None:
    with CacheManager(url, namespace="app", stats_max_names=5) as cm:
        registry = CollectorRegistry()
        prometheus.register(cm, registry)
        traffic(cm, 60)
        families = {
            family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())
        }
        hits = {sample.labels["namespace"]: sample.value for sample in families["stashly_hits"].samples}
        assert set(hits) == {f"tenant{i}" for i in range(5)} | {OTHER}
        assert hits[OTHER] == 55
        assert sum(hits.values()) == 60
        latency = {s.labels["namespace"] for s in families["stashly_hit_latency_seconds"].samples}
        assert len(latency) == 6


@pytest.fixture
def reader() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield provider, reader
    provider.shutdown()


def test_otel_attribute_values_are_bounded(reader: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    provider, metrics = reader
    with CacheManager("memory://", namespace="app", stats_max_names=5) as cm:
        otel.instrument(cm, provider)
        traffic(cm, 60)
        data = metrics.get_metrics_data()
        assert data is not None
        hits: dict[str, float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "stashly.hits":
                        for point in metric.data.data_points:
                            assert isinstance(point, NumberDataPoint)
                            hits[str((point.attributes or {})["stashly.namespace"])] = point.value
        assert set(hits) == {f"tenant{i}" for i in range(5)} | {OTHER}
        assert (hits[OTHER], sum(hits.values())) == (55, 60)


def test_fill_spans_name_the_real_namespace_past_the_limit(reader: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    with CacheManager("memory://", namespace="app", stats_max_names=1) as cm:
        otel.instrument(cm, reader[0], spans=True, tracer_provider=tracing)
        body = named("traced", lambda n: n)
        for namespace in ("first", "second", "third"):
            Cached(namespace, manager=cm).cached(body)(1)
        assert set(cm.stats().namespaces) == {"first", OTHER}
    # A span is one event, not a label: it names the namespace even when the counters fold it into OTHER.
    assert [dict(span.attributes or {})["stashly.namespace"] for span in spans.get_finished_spans()] == [
        "first",
        "second",
        "third",
    ]
    tracing.shutdown()


async def test_stats_page_shows_the_other_row_without_counting_it(url: str) -> None:
    with CacheManager(url, namespace="app", stats_max_names=2) as cm:
        traffic(cm, 4)
        app = FastAPI()
        app.include_router(stats_router(cm, clock=lambda: 1.0), prefix="/cache")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            response = await http.get("/cache/stats.json")
        assert response.status_code == 200, response.text
        body = response.json()
        rows = {row["name"]: row for row in body["namespaces"]}
        assert set(rows) == {"tenant0", "tenant1", OTHER}
        assert (rows[OTHER]["hits"], rows[OTHER]["keys"]) == (2, None)  # its namespaces have no names to count
        assert (rows["tenant0"]["keys"], body["totals"]["keys"]) == (1, 2)
