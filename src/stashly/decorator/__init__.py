"""Everything ``@cached``: the decorator, the per-function plan, single-flight, the stampede lock, refresh-ahead."""

from .cached import Cached
from .protocols import BoundCachedFunction, CachedClassMethod, CachedDecorator, CachedFunction
from .remover import Remover

__all__ = ["BoundCachedFunction", "Cached", "CachedClassMethod", "CachedDecorator", "CachedFunction", "Remover"]
