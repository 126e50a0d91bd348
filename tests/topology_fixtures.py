"""Session fixtures: a real Redis Cluster and a real Redis Sentinel set-up, started once and only when asked for.

``conftest.py`` loads them as a plugin. The two topologies are shared by every test of the run: a test that kills,
pauses or reshards takes ``cluster`` or ``sentinel`` instead, which heal them afterwards whatever it broke.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.sentinel import LocalSentinel


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


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The shared cluster, emptied, and healed again after the test (nodes restarted, settled)."""
    redis_cluster.flushall()
    try:
        yield redis_cluster
    finally:
        redis_cluster.heal()


@pytest.fixture
def sentinel(redis_sentinel: LocalSentinel) -> Iterator[LocalSentinel]:
    """The shared Sentinel set-up, healed again after the test (a killed node back as a replica)."""
    try:
        yield redis_sentinel
    finally:
        redis_sentinel.heal()
