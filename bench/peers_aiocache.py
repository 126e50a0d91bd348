"""aiocache: ``@cached(cache=Cache.REDIS, serializer=JsonSerializer())`` and its memory cache (async only).

Its JSON serializer is ``json.dumps``, which cannot encode a Pydantic model: in Pydantic scenarios the Redis
contestant is shown as n/a rather than measured failing (aiocache would log and recompute every call).
"""

from __future__ import annotations

from typing import Any

from . import values
from .cases import Case, Entry, Env, Scenario, Unavailable

__all__ = ["cases"]

REDIS = "aiocache @cached RedisCache(JSON)"
MEMORY = "aiocache @cached SimpleMemoryCache"


def cases(scenario: Scenario, env: Env) -> list[Entry]:
    if scenario.mode == "sync":
        return []
    try:
        from aiocache import Cache, cached
        from aiocache.serializers import JsonSerializer
    except ImportError as exc:
        return [Unavailable(REDIS, "peer", f"not installed ({exc})")]
    compute = values.compute(scenario.size, scenario.shape)
    endpoint = {"endpoint": env.server.host, "port": env.server.port}
    namespace = f"aiocache-{scenario.slug}"
    if scenario.op == "get_many":
        cache = Cache(Cache.REDIS, serializer=JsonSerializer(), namespace=namespace, **endpoint)
        env.on_close(cache.close)
        keys = [f"user:{n}" for n in range(scenario.keys)]
        every = [values.make(scenario.size, "dict", n) for n in range(scenario.keys)]

        async def prime(n: int) -> None:
            await cache.set(keys[n], every[n], ttl=scenario.ttl)

        async def get_many(n: int) -> Any:
            return await cache.multi_get(keys)

        return [Case(REDIS + " multi_get", "peer", get_many, prime=prime, expected=lambda n: every)]

    async def get_profile(n: int) -> Any:
        return compute(n)

    found: list[Entry] = []
    if scenario.shape == "model":
        found.append(Unavailable(REDIS, "peer", "its JsonSerializer (json.dumps) cannot encode Pydantic models"))
    else:
        on_redis = cached(
            ttl=scenario.ttl, cache=Cache.REDIS, serializer=JsonSerializer(), namespace=namespace, **endpoint
        )(get_profile)
        env.on_close(on_redis.cache.close)
        found.append(Case(REDIS, "peer", on_redis, expected=compute))
    if scenario.op in ("hit", "tasks"):
        in_memory = cached(ttl=scenario.ttl, cache=Cache.MEMORY, namespace=namespace)(get_profile)
        found.append(Case(MEMORY, "peer", in_memory, expected=compute, storage="memory"))
    return found
