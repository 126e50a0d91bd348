"""dogpile.cache: a region on ``dogpile.cache.redis`` and ``@region.cache_on_arguments`` (sync only); on
``dogpile.cache.memory`` for the large in-process HITs.

Its defaults: values pickled with dogpile's metadata, an in-process dogpile lock around each creation, no
distributed lock. One region for the HIT scenarios and one whose Redis TTL suits the MISS scenarios, since
dogpile sets the Redis expiry per backend, not per function.
"""

from __future__ import annotations

from typing import Any

from . import values
from .cases import LARGE, Case, Entry, Env, Scenario, Unavailable

__all__ = ["cases"]

NAME = "dogpile.cache region (redis)"
MEMORY = "dogpile.cache region (memory)"


def cases(scenario: Scenario, env: Env) -> list[Entry]:
    if scenario.mode == "async" or scenario.op == "tasks":
        return []
    try:
        region = _region(env, scenario.ttl)
    except ImportError as exc:
        return [Unavailable(NAME, "peer", f"not installed ({exc})")]
    compute = values.compute(scenario.size, scenario.shape)
    if scenario.size in LARGE:  # the large in-process HITs: its memory backend (the objects themselves)
        from dogpile.cache import make_region

        memory = make_region().configure("dogpile.cache.memory", expiration_time=scenario.ttl)

        def get_large(n: int) -> Any:
            return compute(n)

        cached_large = memory.cache_on_arguments(namespace=f"dogpile-{scenario.slug}")(get_large)
        return [Case(MEMORY, "peer", cached_large, expected=compute, storage="memory")]
    if scenario.op == "get_many":
        keys = [f"dogpile-{scenario.slug}:{n}" for n in range(scenario.keys)]
        every = [values.make(scenario.size, "dict", n) for n in range(scenario.keys)]

        def prime(n: int) -> None:
            region.set(keys[n], every[n])

        def get_many(n: int) -> Any:
            return region.get_multi(keys)

        return [Case(NAME + " get_multi", "peer", get_many, prime=prime, expected=lambda n: every)]

    def get_profile(n: int) -> Any:
        return compute(n)

    cached = region.cache_on_arguments(namespace=f"dogpile-{scenario.slug}")(get_profile)
    return [Case(NAME, "peer", cached, expected=compute)]


def _region(env: Env, ttl: int) -> Any:
    regions: dict[int, Any] = env.shared.setdefault("dogpile", {})
    if ttl not in regions:
        from dogpile.cache import make_region

        arguments = {"host": env.server.host, "port": env.server.port, "db": 0, "redis_expiration_time": ttl}
        region = make_region().configure("dogpile.cache.redis", expiration_time=ttl, arguments=arguments)
        regions[ttl] = region
        env.on_close(lambda: region.backend.writer_client.close())
    return regions[ttl]
