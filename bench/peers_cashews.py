"""cashews: ``@cache(ttl=..., prefix=...)`` on redis, on redis with ``client_side=True`` (its local tier kept
coherent by Redis invalidation messages), and on ``mem://`` (async only). Its default serializer (pickle with
its own header) is kept, as an application would."""

from __future__ import annotations

from typing import Any

from . import values
from .cases import Case, Entry, Env, Scenario, Storage, Unavailable

__all__ = ["cases"]

SETUPS: dict[str, Storage] = {
    "cashews @cache redis": "redis",
    "cashews @cache redis client_side": "client-side",
    "cashews @cache mem://": "memory",
}


def cases(scenario: Scenario, env: Env) -> list[Entry]:
    if scenario.mode == "sync":
        return []
    try:
        caches = _caches(env, "miss" if scenario.op == "miss" else "hit")
    except ImportError as exc:
        return [Unavailable(name, "peer", f"not installed ({exc})") for name in SETUPS]
    compute = values.compute(scenario.size, scenario.shape)
    found: list[Entry] = []
    for name, cache in caches.items():
        storage = SETUPS[name]
        if storage == "memory" and scenario.op not in ("hit", "tasks"):
            continue
        if scenario.op == "get_many":
            found.append(_get_many(name, cache, scenario, storage))
            continue

        async def get_profile(n: int) -> Any:
            return compute(n)

        decorated = cache(ttl=scenario.ttl, prefix=f"cashews-{storage}-{scenario.slug}")(get_profile)
        found.append(Case(name, "peer", decorated, expected=compute, storage=storage))
    return found


def _get_many(name: str, cache: Any, scenario: Scenario, storage: Storage) -> Case:
    keys = [f"cashews-{storage}-{scenario.slug}:user:{n}" for n in range(scenario.keys)]
    every = [values.make(scenario.size, "dict", n) for n in range(scenario.keys)]

    async def prime(n: int) -> None:
        await cache.set(keys[n], every[n], expire=scenario.ttl)

    async def get_many(n: int) -> Any:
        return list(await cache.get_many(*keys))

    return Case(name + " get_many", "peer", get_many, prime=prime, expected=lambda n: every, storage=storage)


def _caches(env: Env, group: str) -> dict[str, Any]:
    """One cache per setup for the HIT scenarios and another for the MISS ones, so that the entries the MISS
    scenarios keep adding never evict (from a local tier or mem://) the entries a HIT scenario reads."""
    caches: dict[str, Any] | None = env.shared.get(f"cashews-{group}")
    if caches is None:
        from cashews import Cache

        caches = {}
        for name, storage in SETUPS.items():
            cache = Cache()
            if storage == "memory":
                cache.setup("mem://", size=100_000)
            else:
                cache.setup(env.server.url, client_side=storage == "client-side")
            env.on_close(cache.close)
            caches[name] = cache
        env.shared[f"cashews-{group}"] = caches
    return caches
