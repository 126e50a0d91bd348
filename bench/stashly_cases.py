"""stashly's contestants: ``Cached(...).cached`` on Redis and in memory, ``manager.get`` by key, and the
features the issue asks for that may not exist yet (``get_many``, the local tier), shown as ``n/a`` until then.

(Named ``stashly_cases`` so that ``python bench/run.py``, which puts ``bench/`` first on ``sys.path``, never
shadows the ``stashly`` package.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import stashly
from stashly import Cached, CacheManager

from . import values
from .cases import LARGE, MANY_KEYS, Case, Entry, Env, Scenario, Storage, Unavailable

__all__ = [
    "CLUSTER",
    "DECORATOR",
    "GET",
    "GET_MANY",
    "LOCAL",
    "LOCAL_GET",
    "LOCAL_SHARED",
    "MEMORY",
    "MEMORY_GET",
    "MEMORY_SHARED",
    "TAGGED",
    "cases",
]

DECORATOR = "stashly @cached"
GET = "stashly manager.get"
MEMORY = "stashly @cached memory://"
MEMORY_GET = "stashly manager.get memory://"
LOCAL = "stashly @cached local tier"
LOCAL_GET = "stashly manager.get local tier"
GET_MANY = "stashly manager.get_many"
TAGGED = "stashly @cached 3 tags"
CLUSTER = "stashly @cached Cluster"
MEMORY_SHARED = "stashly @cached memory:// share=True"
LOCAL_SHARED = "stashly @cached local tier share=True"


def cases(scenario: Scenario, env: Env) -> list[Entry]:
    managers = _managers(env, "miss" if scenario.op == "miss" else "hit")  # large HITs: their own, below
    if scenario.keys == MANY_KEYS:  # a memory:// store holding them all: the default keeps 10,000
        memory = CacheManager(url="memory://", max_entries=2 * MANY_KEYS)
        env.on_close(memory.close)
        return [
            _decorated(DECORATOR, scenario, managers["redis"], "redis"),
            _decorated(MEMORY, scenario, memory, "memory"),
        ]
    if scenario.op == "get_many":
        return [_get_many(scenario, managers["redis"])]
    if scenario.size in LARGE:  # in process only: as decoded on every hit, and shared
        managers = _managers(env, "large")  # their own tier: 40 entries of 1 MB would evict the other scenarios'
        found_large: list[Entry] = [
            _decorated(MEMORY, scenario, managers["memory"], "memory"),
            _decorated(MEMORY_SHARED, scenario, managers["memory"], "memory", share=True),
        ]
        local = managers.get("local")
        if local is not None:
            found_large.append(_decorated(LOCAL, scenario, local, "client-side"))
            found_large.append(_decorated(LOCAL_SHARED, scenario, local, "client-side", share=True))
        return found_large
    found: list[Entry] = [
        _decorated(DECORATOR, scenario, managers["redis"], "redis"),
        _decorated(MEMORY, scenario, managers["memory"], "memory"),
    ]
    if scenario.op == "hit":
        if scenario.size == "300B" and scenario.shape == "dict":  # tags=["user:{n}", "users", "tenant:1"]
            found.append(_decorated(TAGGED, scenario, managers["redis"], "redis", tagged=True))
            cluster = _cluster(env)
            if isinstance(cluster, str):
                found.append(Unavailable(CLUSTER, "stashly", cluster))
            else:
                found.append(_decorated(CLUSTER, scenario, cluster, "cluster"))
        found.append(_by_key(GET, scenario, managers["redis"], "redis"))
        found.append(_by_key(MEMORY_GET, scenario, managers["memory"], "memory"))
    if scenario.op in ("hit", "tasks"):
        local = managers.get("local")
        if local is None:
            reason = env.shared["stashly-local"]
            found.append(Unavailable(LOCAL, "stashly", reason))
            if scenario.op == "hit":
                found.append(Unavailable(LOCAL_GET, "stashly", reason))
        else:
            found.append(_decorated(LOCAL, scenario, local, "client-side"))
            if scenario.op == "hit":
                found.append(_by_key(LOCAL_GET, scenario, local, "client-side"))
    return found


def _managers(env: Env, group: str) -> dict[str, CacheManager]:
    """Managers as an application has them: Redis, memory, and the local tier, each built once per group.

    The MISS scenarios get managers of their own (``group``), so that the entries they keep adding never evict
    (from memory or a local tier) the entries a HIT scenario reads.
    """
    managers: dict[str, CacheManager] | None = env.shared.get(f"stashly-{group}")
    if managers is None:
        managers = {"redis": CacheManager(url=env.server.url), "memory": CacheManager(url="memory://")}
        local_tier = getattr(stashly, "LocalTier", None)
        if local_tier is None:
            env.shared["stashly-local"] = "stashly has no LocalTier yet"
        else:
            try:  # the API: CacheManager(..., local=LocalTier(max_entries=..., ttl=...))
                # The large HITs' tier holds their 44 MB (the default bound is 64 MiB: with the rest, it evicted them).
                tier = local_tier(max_bytes=256 * 1024 * 1024) if group == "large" else local_tier()
                managers["local"] = CacheManager(url=env.server.url, local=tier)
            except Exception as exc:
                env.shared["stashly-local"] = f"CacheManager(url, local=LocalTier()) failed: {exc!r}"
        for manager in managers.values():
            env.on_close(manager.close)
            env.on_close(manager.aclose)
        env.shared[f"stashly-{group}"] = managers
    return managers


def _cluster(env: Env) -> CacheManager | str:
    """A manager on a local Redis Cluster (3 primaries, 3 replicas, loopback), started on first use; or why not."""
    found: CacheManager | str | None = env.shared.get("stashly-cluster")
    if found is None:
        try:
            from tests.harness.cluster import LocalCluster

            cluster = LocalCluster().start()
            env.on_close(cluster.stop)
            found = CacheManager(url=cluster.url)
            env.on_close(found.close)
            env.on_close(found.aclose)
        except Exception as exc:  # no cluster here: the row says why, the run goes on
            found = f"n/a: no local Redis Cluster ({type(exc).__name__}: {exc})"
        env.shared["stashly-cluster"] = found
    return found


def _decorated(
    name: str, scenario: Scenario, manager: CacheManager, storage: Storage, tagged: bool = False, share: bool = False
) -> Case:
    variant = "-tagged" if tagged else "-shared" if share else ""
    cache = Cached(namespace=f"{scenario.slug}-{storage}{variant}", ttl=scenario.ttl, manager=manager)
    compute = values.compute(scenario.size, scenario.shape)
    if scenario.mode == "sync":

        def get_profile(n: int) -> Any:
            return compute(n)

        call: Callable[[int], Any] = get_profile
    else:

        async def aget_profile(n: int) -> Any:
            return compute(n)

        call = aget_profile
    call.__annotations__["return"] = values.return_type(scenario.size, scenario.shape)
    decorate = cache.cached(tags=["user:{n}", "users", "tenant:1"]) if tagged else cache.cached(share=share)
    return Case(name, "stashly", decorate(call), expected=compute, storage=storage)


def _by_key(name: str, scenario: Scenario, manager: CacheManager, storage: Storage) -> Case:
    namespace = f"{scenario.slug}-{storage}-by-key"
    compute = values.compute(scenario.size, scenario.shape)
    kind = values.return_type(scenario.size, scenario.shape) if scenario.shape == "model" else None
    keys = [f"user:{n}" for n in range(scenario.keys)]
    if scenario.mode == "sync":

        def prime(n: int) -> None:
            manager.set(keys[n], compute(n), ttl=scenario.ttl, namespace=namespace)

        def get(n: int) -> Any:
            return manager.get(keys[n], type=kind, namespace=namespace)

        return Case(name, "stashly", get, prime=prime, expected=compute, storage=storage)

    async def aprime(n: int) -> None:
        await manager.aset(keys[n], compute(n), ttl=scenario.ttl, namespace=namespace)

    async def aget(n: int) -> Any:
        return await manager.aget(keys[n], type=kind, namespace=namespace)

    return Case(name, "stashly", aget, prime=aprime, expected=compute, storage=storage)


def _get_many(scenario: Scenario, manager: CacheManager) -> Entry:
    """``get_many`` of ``scenario.keys`` keys, once stashly has it (``get_many(keys, namespace=...)``)."""
    method = "get_many" if scenario.mode == "sync" else "aget_many"
    if not hasattr(manager, method):
        return Unavailable(GET_MANY, "stashly", f"n/a: stashly has no {method} yet")
    namespace = f"{scenario.slug}-by-key"
    keys = [f"user:{n}" for n in range(scenario.keys)]
    every = [values.make(scenario.size, "dict", n) for n in range(scenario.keys)]

    def in_order(found: Any) -> Any:
        return [found.get(key) for key in keys] if isinstance(found, Mapping) else list(found)

    if scenario.mode == "sync":

        def prime(n: int) -> None:
            manager.set(keys[n], every[n], ttl=scenario.ttl, namespace=namespace)

        def get_many(n: int) -> Any:
            return in_order(manager.get_many(keys, namespace=namespace))  # type: ignore[attr-defined]

        return Case(GET_MANY, "stashly", get_many, prime=prime, expected=lambda n: every)

    async def aprime(n: int) -> None:
        await manager.aset(keys[n], every[n], ttl=scenario.ttl, namespace=namespace)

    async def aget_many(n: int) -> Any:
        return in_order(await manager.aget_many(keys, namespace=namespace))  # type: ignore[attr-defined]

    return Case(GET_MANY, "stashly", aget_many, prime=aprime, expected=lambda n: every)
