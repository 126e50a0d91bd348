"""The engine under :class:`~stashly.CacheManager`: the fail-open read, fill, lock and invalidation operations the
decorator and the integrations drive, under names the package may call.

A manager has two engines over the same backend, counters and hooks: :class:`Engine` (sync, generated) and
:class:`AsyncEngine` (the source). :func:`build` makes both from settings.
"""

from __future__ import annotations

from ..backends import create as create_backends
from ..backends.layers.breaker import CircuitBreaker
from ..backends.layers.local import LocalTier
from ..config.settings import Settings
from ..failures import FailurePolicy
from ..storage import codec
from ..storage.codec import Serializer
from ..storage.pickle import SignedPickle
from .core import FAILED, EngineCore, FillSpan, FlushMode, Hooks, Lookup, Token, current, flush_mode
from .engine_async import AsyncEngine
from .engine_sync import Engine
from .journal import Journal

__all__ = [
    "FAILED",
    "AsyncEngine",
    "Engine",
    "EngineCore",
    "FillSpan",
    "FlushMode",
    "Hooks",
    "Journal",
    "Lookup",
    "Token",
    "build",
    "current",
    "flush_mode",
]


def build(settings: Settings, tier: LocalTier | None) -> tuple[Engine, AsyncEngine, CircuitBreaker | None]:
    """A manager's sync and async engines for ``settings`` (sharing serializer, failure policy, hooks and the
    pending-invalidation journal), and
    Redis's circuit breaker; ``tier`` is the local tier in front of Redis, if any. Nothing connects yet."""
    serializer: Serializer = SignedPickle(settings.secrets) if settings.serializer == "pickle" else codec.JSON
    failures, hooks, journal = FailurePolicy(), Hooks(), Journal()
    backend, abackend, breaker = create_backends(settings, tier, failures.local_suspended)
    engine = Engine(settings, serializer, failures, hooks, journal, backend)
    return engine, AsyncEngine(settings, serializer, failures, hooks, journal, abackend), breaker
