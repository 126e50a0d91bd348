"""The baseline: what an application writes by hand with redis-py (hiredis parser) and orjson.

HIT is ``GET`` + ``orjson.loads``; MISS is ``GET`` (None) + compute + ``SET key value EX ttl`` with
``orjson.dumps``; get_many is one ``MGET``. The clients are redis-py's defaults, as hand-written code has them.
In Pydantic scenarios the baseline still returns a dict (it is the ratio's denominator, as the issue defines
it); a second row, the reference, validates into the model (``model_validate_json``/``model_dump_json``).
"""

from __future__ import annotations

from typing import Any

import orjson
import redis
import redis.asyncio
from pydantic import BaseModel

from . import values
from .cases import Case, Entry, Env, Role, Scenario

__all__ = ["BASELINE", "cases"]

BASELINE = "redis-py GET + orjson (baseline)"
REFERENCE = "redis-py + Pydantic model_validate_json"


def cases(scenario: Scenario, env: Env) -> list[Entry]:
    with_reference = scenario.shape == "model" and scenario.op in ("hit", "miss")
    validations = (False, True) if with_reference else (False,)
    if scenario.mode == "sync":
        client = redis.Redis(host=env.server.host, port=env.server.port)
        env.on_close(client.close)
        return [_sync(scenario, client, validate=validate) for validate in validations]
    aclient = redis.asyncio.Redis(host=env.server.host, port=env.server.port)
    env.on_close(aclient.aclose)
    return [_async(scenario, aclient, validate=validate) for validate in validations]


def _sync(scenario: Scenario, client: redis.Redis, *, validate: bool) -> Case:
    prefix = f"bench:raw:{'model' if validate else 'dict'}:{scenario.slug}:"
    shape: values.Shape = "model" if validate else "dict"
    compute = values.compute(scenario.size, shape)
    model: type[BaseModel] = values.return_type(scenario.size, "model")
    ttl = scenario.ttl
    many = [f"{prefix}{n}" for n in range(scenario.keys)]

    def prime(n: int) -> None:
        client.set(f"{prefix}{n}", orjson.dumps(values.make(scenario.size, "dict", n)), ex=ttl)

    def hit(n: int) -> Any:
        return orjson.loads(client.get(f"{prefix}{n}"))  # type: ignore[arg-type]

    def hit_model(n: int) -> Any:
        return model.model_validate_json(client.get(f"{prefix}{n}"))  # type: ignore[arg-type]

    def miss(n: int) -> Any:
        key = f"{prefix}{n}"
        raw = client.get(key)
        if raw is not None:
            return orjson.loads(raw)
        value = compute(n)
        client.set(key, orjson.dumps(value), ex=ttl)
        return value

    def miss_model(n: int) -> Any:
        key = f"{prefix}{n}"
        raw = client.get(key)
        if raw is not None:
            return model.model_validate_json(raw)
        value = compute(n)
        client.set(key, value.model_dump_json(), ex=ttl)
        return value

    def get_many(n: int) -> Any:
        return [orjson.loads(raw) for raw in client.mget(many)]  # type: ignore[arg-type]

    return _pick(scenario, validate, prime, get_many, miss_model if validate else miss, hit_model if validate else hit)


def _async(scenario: Scenario, client: redis.asyncio.Redis, *, validate: bool) -> Case:
    prefix = f"bench:raw:{'model' if validate else 'dict'}:{scenario.slug}:"
    shape: values.Shape = "model" if validate else "dict"
    compute = values.compute(scenario.size, shape)
    model: type[BaseModel] = values.return_type(scenario.size, "model")
    ttl = scenario.ttl
    many = [f"{prefix}{n}" for n in range(scenario.keys)]

    async def prime(n: int) -> None:
        await client.set(f"{prefix}{n}", orjson.dumps(values.make(scenario.size, "dict", n)), ex=ttl)

    async def hit(n: int) -> Any:
        return orjson.loads(await client.get(f"{prefix}{n}"))  # type: ignore[arg-type]

    async def hit_model(n: int) -> Any:
        return model.model_validate_json(await client.get(f"{prefix}{n}"))  # type: ignore[arg-type]

    async def miss(n: int) -> Any:
        key = f"{prefix}{n}"
        raw = await client.get(key)
        if raw is not None:
            return orjson.loads(raw)
        value = compute(n)
        await client.set(key, orjson.dumps(value), ex=ttl)
        return value

    async def miss_model(n: int) -> Any:
        key = f"{prefix}{n}"
        raw = await client.get(key)
        if raw is not None:
            return model.model_validate_json(raw)
        value = compute(n)
        await client.set(key, value.model_dump_json(), ex=ttl)
        return value

    async def get_many(n: int) -> Any:
        return [orjson.loads(raw) for raw in await client.mget(many)]  # type: ignore[arg-type]

    return _pick(scenario, validate, prime, get_many, miss_model if validate else miss, hit_model if validate else hit)


def _pick(scenario: Scenario, validate: bool, prime: Any, get_many: Any, miss: Any, hit: Any) -> Case:
    expected = values.compute(scenario.size, "model" if validate else "dict")
    name = REFERENCE if validate else BASELINE
    role: Role = "reference" if validate else "baseline"
    if scenario.op == "get_many":
        every = [values.make(scenario.size, "dict", n) for n in range(scenario.keys)]
        return Case(BASELINE + " MGET", "baseline", get_many, prime=prime, expected=lambda n: every)
    if scenario.op == "miss":
        return Case(name, role, miss, expected=expected)
    return Case(name, role, hit, prime=prime, expected=expected)
