"""Floors: what a hit cannot beat. In-process ``functools.lru_cache`` and ``cachetools.TTLCache``, the
harness's own cost (a no-op call), and ``redis-benchmark -c 1`` (C client, same server, same value size)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from typing import Any

import orjson

from . import values
from .cases import HIT_TTL, Case, Entry, Env, ExternalCase, Scenario, Unavailable

__all__ = ["DECODED", "DECODED_MODEL", "cases"]

REDIS_BENCHMARK = "redis-benchmark -c 1 GET"
DECODED = "(floor: dict lookup + orjson.loads)"
DECODED_MODEL = "(floor: dict lookup + model_validate_json)"
_RPS = re.compile(rb"GET: ([0-9.]+) requests per second")


def cases(scenario: Scenario, env: Env) -> list[Entry]:
    if scenario.op != "hit":
        return []
    compute = values.compute(scenario.size, scenario.shape)
    found: list[Entry] = []
    if scenario.size == "300B" and scenario.shape == "dict":
        found.append(_noop(scenario))
    if scenario.mode == "async":
        return found
    found.append(_decoded(scenario))
    lru = functools.lru_cache(maxsize=1024)(compute)
    found.append(Case("functools.lru_cache", "floor", lru, expected=compute, storage="memory"))
    found.append(_cachetools(scenario))
    if scenario.shape == "dict":
        found.append(_redis_benchmark(scenario, env))
    return found


def _noop(scenario: Scenario) -> Case:
    """The harness measuring a call that does nothing: what every other row includes on top of its own work."""
    if scenario.mode == "sync":

        def noop(n: int) -> int:
            return n

        return Case("(harness: a no-op call)", "floor", noop, storage="memory")

    async def anoop(n: int) -> int:
        return n

    return Case("(harness: a no-op await)", "floor", anoop, storage="memory")


def _decoded(scenario: Scenario) -> Case:
    """The pure-Python floor of an in-process hit that hands out a fresh value: a dictionary lookup of the stored
    JSON and its decoding (``orjson.loads``; a model: ``model_validate_json``), nothing else."""
    compute = values.compute(scenario.size, scenario.shape)
    stored = {n: orjson.dumps(compute(n), default=_dump) for n in range(scenario.keys)}
    if scenario.shape == "model":
        validate = values.return_type(scenario.size, scenario.shape).model_validate_json

        def validated(n: int) -> Any:
            return validate(stored[n])

        return Case(DECODED_MODEL, "floor", validated, expected=compute, storage="memory")

    loads = orjson.loads

    def decoded(n: int) -> Any:
        return loads(stored[n])

    return Case(DECODED, "floor", decoded, expected=compute, storage="memory")


def _dump(value: object) -> object:
    return value.model_dump(mode="json")  # type: ignore[attr-defined]  # a Pydantic model: orjson knows the rest


def _cachetools(scenario: Scenario) -> Entry:
    try:
        import cachetools
    except ImportError as exc:
        return Unavailable("cachetools.cached(TTLCache)", "floor", f"not installed ({exc})")
    compute = values.compute(scenario.size, scenario.shape)
    cached = cachetools.cached(cachetools.TTLCache(maxsize=1024, ttl=HIT_TTL))(compute)
    return Case("cachetools.cached(TTLCache)", "floor", cached, expected=compute, storage="memory")


def _redis_benchmark(scenario: Scenario, env: Env) -> Entry:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return Unavailable(REDIS_BENCHMARK, "floor", "redis-benchmark not found")
    size = values.encoded_size(scenario.size)
    requests = env.benchmark_requests
    args = [binary, "-h", env.server.host, "-p", str(env.server.port), "-c", "1", "-n", str(requests), "-q"]
    args += ["-t", "get"]

    def sample() -> float:
        # redis-benchmark's GET reads the literal key "key:__rand_int__" (no -r): give it a value of this size.
        env.server.admin.set("key:__rand_int__", b"x" * size, ex=HIT_TTL)
        output = subprocess.run(args, capture_output=True, check=True, timeout=120).stdout
        rates: list[Any] = _RPS.findall(output)
        if not rates:
            raise RuntimeError(f"unexpected redis-benchmark output: {output[-200:]!r}")
        return 1e6 / float(rates[-1])

    note = f"{size} B value, -n {requests}; one sample per round (µs = 1/rate), so no p99"
    return ExternalCase(REDIS_BENCHMARK, "floor", sample, note=note)
