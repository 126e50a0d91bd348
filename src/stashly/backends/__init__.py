"""Backends: where the bytes live. ``create`` turns settings into a sync and an async backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import AsyncBackend, Backend
from .memory import AsyncMemoryBackend, MemoryStore

if TYPE_CHECKING:
    from ..breaker import CircuitBreaker
    from ..local import LocalTier
    from ..settings import Settings

__all__ = ["AsyncBackend", "Backend", "create"]


def create(
    settings: Settings, tier: LocalTier | None = None, report: Callable[[BaseException], None] | None = None
) -> tuple[Backend, AsyncBackend, CircuitBreaker | None]:
    """The backends for ``settings.url``; nothing connects until the first operation.

    ``tier`` puts a local tier in front of Redis (the memory backend is local already: it is ignored there);
    ``report`` hears why its invalidation connection was lost. The third item is Redis's circuit breaker.
    """
    if settings.url.startswith("memory:"):
        store = MemoryStore(settings.max_entries)
        return store, AsyncMemoryBackend(store), None
    from ..breaker import AsyncGuardedBackend, CircuitBreaker, GuardedBackend
    from ..coalesce import AsyncCoalescedBackend
    from .redis import AsyncRedisBackend, RedisBackend, RedisOptions

    options = RedisOptions.from_settings(settings)
    breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)  # one Redis, one breaker
    backend: Backend = GuardedBackend(RedisBackend(options), breaker)
    abackend: AsyncBackend = AsyncCoalescedBackend(AsyncGuardedBackend(AsyncRedisBackend(options), breaker))
    if tier is None:
        return backend, abackend, breaker
    from .tiered import AsyncTieredBackend, TieredBackend
    from .tracking import InvalidationTracker

    tracker = InvalidationTracker(tier, options, settings.prefix + ":", report or _ignore)
    return TieredBackend(backend, tier, tracker), AsyncTieredBackend(abackend, tier), breaker


def _ignore(exc: BaseException) -> None:
    pass
