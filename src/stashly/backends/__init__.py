"""Backends: where the bytes live. ``create`` turns settings into a sync and an async backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import AsyncBackend, Backend
from .memory import AsyncMemoryBackend, MemoryStore

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["AsyncBackend", "Backend", "create"]


def create(settings: Settings) -> tuple[Backend, AsyncBackend]:
    """The backends for ``settings.url``; nothing connects until the first operation."""
    if settings.url.startswith("memory:"):
        store = MemoryStore(settings.max_entries)
        return store, AsyncMemoryBackend(store)
    from ..breaker import AsyncGuardedBackend, CircuitBreaker, GuardedBackend
    from .redis import AsyncRedisBackend, RedisBackend, RedisOptions

    options = RedisOptions.from_settings(settings)
    breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)  # one Redis, one breaker
    return GuardedBackend(RedisBackend(options), breaker), AsyncGuardedBackend(AsyncRedisBackend(options), breaker)
