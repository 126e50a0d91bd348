"""Counters a manager keeps, and the frozen snapshot :meth:`CacheManager.stats` returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheStats", "Counters"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a manager has seen since it was created (or since the last ``stats(reset=True)``)."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    errors: int = 0

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups, 0.0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class Counters:
    """Plain integer counters: an increment is cheap enough for the hit path."""

    __slots__ = ("errors", "hits", "misses", "stores")

    def __init__(self) -> None:
        self.hits = self.misses = self.stores = self.errors = 0

    def snapshot(self, reset: bool = False) -> CacheStats:
        stats = CacheStats(self.hits, self.misses, self.stores, self.errors)
        if reset:
            self.hits = self.misses = self.stores = self.errors = 0
        return stats
