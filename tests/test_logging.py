"""Logs: one logger per module under ``stashly``, structured fields, no argument or cached values, rate-limited."""

from __future__ import annotations

import logging

import pytest

from stashly import Cached, CacheManager

from tests.harness.server import RedisServer


def test_failures_log_structured_fields_and_never_values(
    disposable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with CacheManager(disposable_redis.url, namespace="billing", breaker_threshold=3) as cm:
        cache = Cached(manager=cm)

        @cache.cached(key="invoice:{customer}")
        def invoice(customer: str) -> dict[str, str]:
            return {"card": "SECRET-VALUE-4242"}

        invoice("SECRET-ARGUMENT-alice")
        disposable_redis.stop()
        with caplog.at_level(logging.INFO, logger="stashly"):
            for _ in range(10):
                assert invoice("SECRET-ARGUMENT-alice") == {"card": "SECRET-VALUE-4242"}
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert records
    for record in records:
        assert record.name.startswith("stashly.")
        text = record.getMessage() + repr(vars(record))
        assert "SECRET" not in text
    failures = [r for r in records if getattr(r, "outcome", None) == "backend_error"]
    assert failures
    assert {getattr(r, "namespace", None) for r in failures} == {"billing"}
    assert len(failures) <= 2  # 10 failing calls, rate-limited to one line per kind and interval
    assert any(getattr(r, "outcome", None) == "breaker_opened" and r.name == "stashly.breaker" for r in records)


def test_each_module_logs_under_its_documented_name() -> None:
    import stashly.backends.layers.breaker
    import stashly.decorator.plan
    import stashly.decorator.refresh
    import stashly.failures

    documented = {
        stashly.backends.layers.breaker: "stashly.breaker",
        stashly.failures: "stashly.failures",
        stashly.decorator.plan: "stashly.plan",
        stashly.decorator.refresh: "stashly.refresh",
    }
    for module, name in documented.items():
        assert module.logger.name == name
