"""fastapi-cache2: ``@cache(expire=..., namespace=...)`` over its ``RedisBackend`` (async only).

Called as a plain coroutine function, outside a request: it then skips its HTTP headers and reads the entry
with a ``MULTI``/``TTL``/``GET``/``EXEC`` pipeline. Its ``FastAPICache`` is process-global, so one backend
serves every scenario. On a hit it returns the JSON-decoded value: a dict even when the function is
annotated ``-> UserRead`` (its model conversion happens in FastAPI's response handling, not here).
"""

from __future__ import annotations

from typing import Any

from . import values
from .cases import Case, Entry, Env, Scenario, Unavailable

__all__ = ["cases"]

NAME = "fastapi-cache2 @cache RedisBackend"


def cases(scenario: Scenario, env: Env) -> list[Entry]:
    if scenario.mode == "sync" or scenario.op == "get_many":
        return []
    try:
        cache = _init(env)
    except ImportError as exc:
        return [Unavailable(NAME, "peer", f"not installed or not importable ({exc})")]
    compute = values.compute(scenario.size, scenario.shape)

    async def get_profile(n: int) -> Any:
        return compute(n)

    get_profile.__annotations__["return"] = values.return_type(scenario.size, scenario.shape)
    decorated = cache(expire=scenario.ttl, namespace=scenario.slug)(get_profile)
    return [Case(NAME, "peer", decorated, expected=compute, note="plain call, no Request")]


def _init(env: Env) -> Any:
    if "fastapi-cache2" not in env.shared:
        import redis.asyncio
        from fastapi_cache import FastAPICache
        from fastapi_cache.backends.redis import RedisBackend
        from fastapi_cache.decorator import cache

        client = redis.asyncio.Redis(host=env.server.host, port=env.server.port)
        FastAPICache.reset()
        FastAPICache.init(RedisBackend(client), prefix="fastapi-cache")
        env.on_close(client.aclose)
        env.on_close(FastAPICache.reset)
        env.shared["fastapi-cache2"] = cache
    return env.shared["fastapi-cache2"]
