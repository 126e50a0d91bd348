"""Backends: where the bytes live. ``create`` turns settings into a sync and an async backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..keys.layout import prefix_head
from .base import AsyncBackend, Backend
from .memory import AsyncMemoryBackend, MemoryStore

if TYPE_CHECKING:
    from ..config.settings import Settings
    from .layers.breaker import CircuitBreaker
    from .layers.local import LocalTier
    from .redis import RedisOptions

__all__ = ["AsyncBackend", "Backend", "create"]


def create(
    settings: Settings, tier: LocalTier | None = None, report: Callable[[BaseException], None] | None = None
) -> tuple[Backend, AsyncBackend, CircuitBreaker | None]:
    """The backends for ``settings.url``; nothing connects until the first operation.

    ``memory://`` in a process that is one of several server workers gives a :class:`~stashly.MemoryBackendWarning`
    (once per process), as does a memory store's first use in a process forked after it was made.

    ``tier`` puts a local tier in front of Redis (the memory backend is local already: it is ignored there);
    ``report`` hears why its invalidation connection was lost. The third item is Redis's circuit breaker.
    """
    if settings.read_from_replicas:
        _check_replicas(settings.url)
    if settings.url.startswith("memory:"):
        from .. import workers

        workers.warn_if_several_workers()
        store = MemoryStore(settings.max_entries, on_forked=workers.warn_forked)
        return store, AsyncMemoryBackend(store), None
    from .layers.breaker import CircuitBreaker, NodeBreakers
    from .layers.breaker_async import AsyncGuardedBackend
    from .layers.breaker_sync import GuardedBackend
    from .layers.coalesce import AsyncCoalescedBackend
    from .redis import AsyncClusterBackend, ClusterBackend, RedisOptions

    options = RedisOptions.from_settings(settings)
    plain, aplain = _redis_backends(options, settings)
    breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)  # one Redis, one breaker
    if options.topology.kind == "cluster":  # and one per node: a failing primary does not take the others down
        nodes = NodeBreakers(breaker)
        backend: Backend = GuardedBackend(plain, breaker, nodes, getattr(plain, "node_of", None))
        guarded = AsyncGuardedBackend(aplain, breaker, nodes, getattr(aplain, "node_of", None))
    else:
        backend, guarded = GuardedBackend(plain, breaker), AsyncGuardedBackend(aplain, breaker)
    abackend: AsyncBackend = AsyncCoalescedBackend(guarded)
    if tier is None:
        return backend, abackend, breaker
    if options.read_from_replicas:
        raise ConfigError(
            "read_from_replicas: not with a local tier, which would keep a replica's copy of an entry that a `set` "
            "had already replaced on the primary for as long as the local entry lives (its invalidation came and "
            "went before the copy was read): use one or the other"
        )
    from .layers.tiered import TrackedTieredBackend
    from .layers.tiered_async import AsyncTieredBackend
    from .layers.tracking import InvalidationTracker

    prefix = prefix_head(settings.prefix)
    if isinstance(plain, ClusterBackend) and isinstance(aplain, AsyncClusterBackend):  # a tracker per primary
        from .layers.cluster_tracking import ClusterTracking

        tracking = ClusterTracking(tier, plain.connect_to, plain.known_nodes, prefix, report or _ignore)
        return (
            TrackedTieredBackend(backend, tier, tracking, plain.node_of),
            AsyncTieredBackend(abackend, tier, aplain.node_of),
            breaker,
        )
    pool = options.pool()  # only for its connection settings: the tracker makes its own connection
    connect = (pool.connection_class, pool.connection_kwargs)
    tracker = InvalidationTracker(tier, connect, prefix, report or _ignore)
    return TrackedTieredBackend(backend, tier, tracker), AsyncTieredBackend(abackend, tier), breaker


def _check_replicas(url: str) -> None:
    """``read_from_replicas`` keeps every invalidation guarantee only where an entry's guard shares its slot."""
    from ..config.urls import topology

    kind = "memory" if url.startswith("memory:") else topology(url).kind
    if kind != "cluster":
        found = {"memory": "memory://", "single": "a single-server url", "sentinel": "a Sentinel url"}[kind]
        raise ConfigError(
            "read_from_replicas: reading from replicas needs Redis Cluster (a redis+cluster:// url), where the "
            f"counters that prove a replica's copy current are read from its slot's primary; found {found}"
        )


def _redis_backends(options: RedisOptions, settings: Settings) -> tuple[Backend, AsyncBackend]:
    """The plain Redis backends for the topology the url names: Cluster, or one primary (Sentinel follows it)."""
    if options.topology.kind == "cluster":
        from .redis import AsyncClusterBackend, ClusterBackend, check_prefix

        check_prefix(settings.prefix)
        return ClusterBackend(options), AsyncClusterBackend(options)
    from .redis import AsyncRedisBackend, RedisBackend

    return RedisBackend(options), AsyncRedisBackend(options)


def _ignore(exc: BaseException) -> None:
    pass
