"""The sync-only part of the local-tier layer: the sync backend owns the tier's invalidation connection.

The layer itself is written once (:mod:`.tiered_async`, and :mod:`.tiered_sync` generated from it). The
tracking connection runs on a thread, so it belongs to the sync side: closing the sync backend stops it (a
join, which must not block an event loop), and a later read starts it again.
"""

from __future__ import annotations

from collections.abc import Callable

from ..base import Backend
from .cluster_tracking import ClusterTracking
from .local import LocalTier
from .tiered_sync import TieredBackend
from .tracking import InvalidationTracker

__all__ = ["TrackedTieredBackend"]


class TrackedTieredBackend(TieredBackend):
    """A :class:`~.tiered_sync.TieredBackend` that stops ``tracker`` (the tier's invalidations: one connection,
    or one per Cluster primary) when closed."""

    def __init__(
        self,
        backend: Backend,
        tier: LocalTier,
        tracker: InvalidationTracker | ClusterTracking,
        node_of: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(backend, tier, node_of)
        self._tracker = tracker

    def close(self) -> None:
        self._tracker.stop()
        super().close()
