"""Everything ``@cached``: the decorator, the per-function plan, single-flight, the stampede lock, refresh-ahead."""

from .cached import Cached, CachedFunction
from .remover import Remover

__all__ = ["Cached", "CachedFunction", "Remover"]
