"""Session fixtures: a real Redis Cluster and a real Redis Sentinel set-up, started once and only when asked for.

``conftest.py`` imports them (``from topology_fixtures import redis_cluster, redis_sentinel``). They are shared by
every test of the run: a test that kills, pauses or reshards calls ``heal()`` in a ``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from topologies import LocalCluster, LocalSentinel


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """Three primaries with a replica each, on free loopback ports (``url`` is ``redis+cluster://...``)."""
    with LocalCluster() as cluster:
        print(f"\nredis cluster: 6 nodes settled in {cluster.startup_seconds:.2f} s")
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[LocalSentinel]:
    """A primary, its replica and three sentinels (quorum 2) on free loopback ports (``redis+sentinel://...``)."""
    with LocalSentinel() as sentinel:
        print(f"\nredis sentinel: 2 data nodes and 3 sentinels settled in {sentinel.startup_seconds:.2f} s")
        yield sentinel
