"""stashly: a correct, fast cache for Python applications, on Redis or in memory.

>>> from stashly import CacheManager, Cached
>>> cm = CacheManager(url="memory://", namespace="app")
>>> cache = Cached(namespace="auth", ttl=60, manager=cm)
"""

from .backends.layers.local import LocalTier
from .config.settings import Settings
from .decorator.cached import Cached
from .decorator.protocols import CachedFunction
from .errors import (
    CacheUnavailableError,
    ConfigError,
    FactoryTimeoutError,
    MemoryBackendWarning,
    SerializationError,
    StashlyError,
    UnstableKeyError,
    ValueTooLargeError,
)
from .manager import CacheManager, default_manager, set_default_manager
from .sentinels import MISSING, NOT_SET
from .stats import CacheStats

__all__ = [
    "MISSING",
    "NOT_SET",
    "CacheManager",
    "CacheStats",
    "CacheUnavailableError",
    "Cached",
    "CachedFunction",
    "ConfigError",
    "FactoryTimeoutError",
    "LocalTier",
    "MemoryBackendWarning",
    "SerializationError",
    "Settings",
    "StashlyError",
    "UnstableKeyError",
    "ValueTooLargeError",
    "default_manager",
    "set_default_manager",
]

__version__ = "0.1.0"
