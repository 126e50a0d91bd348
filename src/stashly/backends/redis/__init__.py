"""The Redis backends: one server or the primary Sentinel names (``single_*``), and Redis Cluster (``cluster``).

``commands`` is what they say to Redis (pure), ``options`` how they connect, ``direct`` and ``cluster_reads``
the hit path's own connections, and ``loops`` one asyncio client per event loop.
"""

from __future__ import annotations

from .cluster import ClusterBackend, check_prefix, client_arguments
from .cluster_async import AsyncClusterBackend
from .commands import escape_glob
from .options import RedisOptions
from .single_async import AsyncRedisBackend
from .single_sync import RedisBackend

__all__ = [
    "AsyncClusterBackend",
    "AsyncRedisBackend",
    "ClusterBackend",
    "RedisBackend",
    "RedisOptions",
    "check_prefix",
    "client_arguments",
    "escape_glob",
]
