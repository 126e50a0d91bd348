"""Everything ``@cached``: the decorator, the per-function plan, single-flight, the stampede lock, refresh-ahead."""

from .cached import BoundCachedFunction, Cached, CachedClassMethod, CachedDecorator, CachedFunction
from .remover import Remover

__all__ = ["BoundCachedFunction", "Cached", "CachedClassMethod", "CachedDecorator", "CachedFunction", "Remover"]
