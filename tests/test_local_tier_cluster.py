"""The local tier on Redis Cluster: one invalidation connection per primary, each the source of its node's entries.

The coherence runs of :mod:`tests.coherence` (3 reader processes with a tier, a writer updating and removing) on
the real cluster, healthy, while the key's primary is killed and fails over, and while its slot is resharded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.crc import key_slot

from stashly import CacheManager
from stashly.backends.layers.cluster_tracking import primaries_in
from stashly.backends.layers.tracking import SILENCE

from tests import coherence
from tests.harness.cluster import ClusterNode, LocalCluster
from tests.support import GENEROUS, REPORTS, eventually

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def local(cluster_url: str) -> Iterator[CacheManager]:
    with CacheManager(cluster_url, namespace="tier", local=True, **GENEROUS) as manager:
        yield manager


@pytest.fixture
def writer(cluster_url: str) -> Iterator[CacheManager]:
    with CacheManager(cluster_url, namespace="tier", **GENEROUS) as manager:
        yield manager


def _served(manager: CacheManager, names: list[str]) -> bool:
    """Whether every key of ``names`` is answered by the tier now (read once through it first)."""
    assert manager.local is not None
    for name in names:
        manager.get(name)
    return all(manager.local.lookup(manager.key(name)) is not None for name in names)


def _on(cluster: LocalCluster, manager: CacheManager, node: ClusterNode, names: list[str]) -> list[str]:
    slots = cluster.slots_of(node)
    return [name for name in names if key_slot(manager.key(name).encode()) in slots]


def test_primaries_are_read_from_the_slot_map() -> None:
    reply = [
        [0, 5460, [b"127.0.0.1", 7000, b"a1"], [b"127.0.0.1", 7003, b"d4"]],
        [5461, 10922, [b"", 7001, b"b2"]],  # a node that does not know its own address
        [10923, 16383, [b"127.0.0.1", 7000, b"a1"]],
    ]
    assert primaries_in(reply, "127.0.0.9:7005") == ["127.0.0.1:7000", "127.0.0.9:7001"]


def test_hits_on_every_primary_are_served_in_process(
    redis_cluster: LocalCluster, local: CacheManager, writer: CacheManager
) -> None:
    names = [f"k{n}" for n in range(30)]
    for n, name in enumerate(names):
        writer.set(name, n)
    assert all(_on(redis_cluster, local, node, names) for node in redis_cluster.primaries())  # keys on each
    assert eventually(lambda: _served(local, names))
    assert local.local is not None
    hits = local.local.hits
    assert [local.get(name) for name in names] == list(range(30))
    assert local.local.hits - hits == 30


def test_writes_and_removals_on_every_primary_reach_the_tier(local: CacheManager, writer: CacheManager) -> None:
    names = [f"k{n}" for n in range(30)]
    for name in names:
        writer.set(name, "old")
    assert eventually(lambda: _served(local, names))
    for name in names[:15]:
        writer.set(name, "new")
    for name in names[15:]:
        writer.remove(name)
    assert eventually(lambda: [local.get(name) for name in names] == ["new"] * 15 + [None] * 15)


def test_a_silent_primary_suspends_only_its_own_entries(
    redis_cluster: LocalCluster, local: CacheManager, writer: CacheManager
) -> None:
    names = [f"k{n}" for n in range(30)]
    for name in names:
        writer.set(name, 1)
    assert eventually(lambda: _served(local, names))
    victim = redis_cluster.primaries()[0]
    silenced, others = _on(redis_cluster, local, victim, names), []
    others = [name for name in names if name not in silenced]
    assert local.local is not None
    tier = local.local
    redis_cluster.pause(victim)
    try:
        assert eventually(lambda: all(tier.lookup(local.key(name)) is None for name in silenced))
        assert all(tier.lookup(local.key(name)) is not None for name in others)  # the others' connections answer
    finally:
        redis_cluster.heal()


@pytest.mark.parametrize(
    ("fault", "tasks"), [("healthy", 0), ("failover", 0), ("failover", 5), ("reshard", 0)], ids=str
)
def test_readers_never_serve_a_superseded_value_on_a_cluster(
    redis_cluster: LocalCluster, fault: str, tasks: int
) -> None:
    """The single server's coherence run on the cluster (readers of one thread, or of five asyncio tasks); with a
    fault, 2 s in, on the node serving the key."""
    head = CacheManager(redis_cluster.url, namespace="coherence")  # only to spell keys: it never connects
    primary = redis_cluster.primaries()[0]
    first = sorted(redis_cluster.slots_of(primary))[:50]
    key = next(f"k{n}" for n in range(100_000) if key_slot(head.key(f"k{n}").encode()) in first)
    target = redis_cluster.primaries()[1]
    moved: list[int] = []

    def fail_over() -> None:
        redis_cluster.kill(primary)
        redis_cluster.wait_failover(primary)

    def reshard() -> None:
        moved.extend(redis_cluster.reshard(primary, target, 200))

    action = {"healthy": None, "failover": fail_over, "reshard": reshard}[fault]
    began = time.monotonic()
    try:
        found = coherence.run(redis_cluster.url, tasks, key, action)
    finally:
        redis_cluster.heal()
    if fault == "reshard":
        assert key_slot(head.key(key).encode()) in moved  # the key's slot did move under the readers
    readers = f"3 readers of {tasks} asyncio tasks" if tasks else "3 readers"
    hits = ", ".join(f"{ratio:.1%}" for ratio in found.ratios)
    REPORTS.append(
        f"local tier on Cluster ({fault}): {readers}, a write every 200 ms for 10 s; stalest answer "
        f"{found.describe()} after its value was replaced (target 100 ms, bound {SILENCE * 1000:.0f} ms); local hits "
        f"{hits}; {found.retried} writes retried; {time.monotonic() - began:.1f} s"
    )


async def test_async_reads_are_served_in_process_on_a_cluster(local: CacheManager, writer: CacheManager) -> None:
    names = [f"a{n}" for n in range(20)]
    for n, name in enumerate(names):
        writer.set(name, n)

    async def served() -> bool:
        assert local.local is not None
        found = [await local.aget(name) for name in names]
        return found == list(range(20)) and all(local.local.lookup(local.key(name)) for name in names)

    deadline = time.monotonic() + 10
    while not await served():
        assert time.monotonic() < deadline, "the tier never served the async reads"
    writer.set(names[0], "new")
    deadline = time.monotonic() + 10
    while await local.aget(names[0]) != "new":
        assert time.monotonic() < deadline, "the write never reached the tier"


def test_keys_of_a_migrating_slot_are_read_from_redis_not_kept(local: CacheManager, writer: CacheManager) -> None:
    """A slot whose read was redirected mid-migration (``ASK``) names no node for 10 s: its keys may live on a node
    the tier does not hear yet, so none is kept locally meanwhile; the other slots' keys are."""
    writer.set("moving", 1)
    writer.set("staying", 2)
    assert eventually(lambda: _served(local, ["moving", "staying"]))
    backend: Any = local.engine.backend
    while not hasattr(backend, "known_nodes"):  # down to the Cluster backend, under the tier and the breaker
        backend = backend.backend
    slot = key_slot(local.key("moving").encode())
    assert key_slot(local.key("staying").encode()) != slot
    backend._reads.migrations.mark([slot])  # what an ASK reply to a read of that slot records
    assert backend.node_of(local.key("moving")) is None
    assert local.local is not None
    writer.set("moving", 3)  # its invalidation drops the local copy; the next reads must not keep one again
    assert eventually(lambda: local.get("moving") == 3)
    for _ in range(5):
        assert local.get("moving") == 3
    assert local.local.lookup(local.key("moving")) is None  # read from Redis every time
    assert local.local.lookup(local.key("staying")) is not None
