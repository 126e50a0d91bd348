"""``/cache/stats``: the cache manager's counters and the number of entries per namespace."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .. import dependencies, schemas

__all__ = ["build_router"]


def build_router() -> APIRouter:
    """The ``/cache`` routes."""
    router = APIRouter(prefix="/cache", tags=["cache"])

    @router.get("/stats", response_model=schemas.CacheStatsRead)
    def cache_stats(services: dependencies.Services = Depends(dependencies.get_services)) -> schemas.CacheStatsRead:
        """Hits, misses, stores and backend errors since start, and the entries of each namespace.

        Counting walks each namespace (``SCAN`` on Redis): fine for a dashboard, not for a hot path. A sync
        endpoint, so that it runs in a worker thread.
        """
        manager = services.manager
        stats = manager.stats()
        return schemas.CacheStatsRead(
            hits=stats.hits,
            misses=stats.misses,
            stores=stats.stores,
            errors=stats.errors,
            hit_ratio=stats.hit_ratio,
            keys={namespace: manager.count(namespace) for namespace in services.namespaces},
        )

    return router
