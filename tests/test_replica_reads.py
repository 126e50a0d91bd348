"""Reading from replicas on Redis Cluster (``read_from_replicas``): entries come from a replica of their slot, and a
replica that has not applied an invalidation yet never serves what the invalidation removed.

A lagging replica is a real one: ``CLIENT PAUSE <ms> WRITE`` on it holds back the replication stream it applies
(its reads are still answered), while the primary takes the removal, the flush or the tag invalidation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from stashly import Cached, CacheManager, ConfigError
from stashly.config.settings import resolve
from stashly.storage.stamps import guarded_stamp, parse_stamp, stamp, unstamp, unstamp_guarded

from tests.harness.cluster import ClusterNode, LocalCluster
from tests.support import GENEROUS, Api, eventually

pytestmark = pytest.mark.timeout(60)

PAUSE_MS = 20_000  # how long a paused replica holds back its primary's writes at most (it is unpaused before)


# -- the pure parts ----------------------------------------------------------------------------------------------


def test_a_guarded_stamp_is_current_only_with_both_counters_and_reads_as_its_generation_elsewhere() -> None:
    stored = guarded_stamp(b"payload", b"3", b"7")
    assert unstamp_guarded(stored, b"3", b"7") == b"payload"
    assert unstamp_guarded(stored, b"3", b"8") is None  # removed since: the guard moved on
    assert unstamp_guarded(stored, b"4", b"7") is None  # flushed since: the generation moved on
    assert unstamp_guarded(guarded_stamp(b"p", None, None), None, None) == b"p"
    assert unstamp_guarded(b"payload", None, None) is None  # not written under a known guard: never served
    assert unstamp_guarded(stamp(b"payload", b"3"), b"3", b"7") is None
    # Read from a primary (get_many, another process without the option), the generation is all that counts.
    assert unstamp(stored, b"3") == b"payload"
    assert unstamp(stored, b"4") is None
    assert unstamp(guarded_stamp(b"p", None, b"2"), None) == b"p"
    assert parse_stamp(stored) == (b"3", b"payload")


def test_reading_from_replicas_is_refused_where_the_guarantees_cannot_be_kept(redis_url: str) -> None:
    for url, found in (
        ("memory://", "memory://"),
        (redis_url, "a single-server url"),
        ("redis+sentinel://127.0.0.1:1/mymaster", "a Sentinel url"),
    ):
        with pytest.raises(ConfigError, match=f"read_from_replicas: .*needs Redis Cluster.*found {found}"):
            CacheManager(url, read_from_replicas=True)
    with pytest.raises(ConfigError, match="read_from_replicas: not with a local tier"):
        CacheManager("redis+cluster://127.0.0.1:1", read_from_replicas=True, local=True)
    assert resolve(env={"STASHLY_READ_FROM_REPLICAS": "yes"}).read_from_replicas is True
    with pytest.raises(ConfigError, match="STASHLY_READ_FROM_REPLICAS"):
        resolve(env={"STASHLY_READ_FROM_REPLICAS": "sometimes"})


# -- on the cluster ----------------------------------------------------------------------------------------------


@pytest.fixture
def manager(redis_cluster: LocalCluster, cluster_url: str) -> Iterator[CacheManager]:
    """A manager reading from replicas, once its reads do reach them (a replica is listed in the slot map only
    once it has synced: until the manager has re-read the map, its primaries answer)."""
    with CacheManager(cluster_url, namespace="replicas", read_from_replicas=True, **GENEROUS) as found:
        found.set("probe", 1)
        redis_cluster.wait_replicated()
        assert eventually(lambda: _read_from_replicas(redis_cluster, lambda: found.get("probe")), timeout=30)
        yield found


def _replicas(cluster: LocalCluster) -> list[ClusterNode]:
    return [cluster.replica_of(primary) for primary in cluster.primaries()]


def _read_from_replicas(cluster: LocalCluster, read: Callable[[], object]) -> bool:
    """Whether ``read`` had a replica answer a GET."""
    before = _gets(_replicas(cluster))
    read()
    return _gets(_replicas(cluster)) > before


def _gets(nodes: list[ClusterNode]) -> int:
    """The GETs these nodes have answered so far."""
    total = 0
    for node in nodes:
        with node.client() as client:
            total += int(client.info("commandstats").get("cmdstat_get", {}).get("calls", 0))
    return total


@contextlib.contextmanager
def _lagging(cluster: LocalCluster, key: str) -> Iterator[redis.Redis]:
    """The replica of ``key``'s primary, applying none of its primary's writes until the block ends; a client of
    it that reads (``READONLY``) what it holds."""
    primary = next(node for node in cluster.primaries() if key_slot(key.encode()) in cluster.slots_of(node))
    with cluster.replica_of(primary).client() as client:
        client.execute_command("READONLY")
        client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        try:
            yield client
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
    cluster.wait_replicated()


def test_hits_are_read_from_replicas(redis_cluster: LocalCluster, manager: CacheManager) -> None:
    computed: list[int] = []

    @Cached(manager=manager).cached
    def profile(n: int) -> dict[str, int]:
        computed.append(n)
        return {"n": n}

    for n in range(20):
        manager.set(f"k{n}", {"n": n})
        profile(n)
    redis_cluster.wait_replicated()
    before = _gets(_replicas(redis_cluster))
    for n in range(20):
        assert manager.get(f"k{n}") == {"n": n}
        assert profile(n) == {"n": n}
    assert len(computed) == 20  # every call after the first hit
    assert _gets(_replicas(redis_cluster)) - before >= 40  # and each hit's entry came from a replica


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_replica_behind_a_removal_never_serves_the_removed_entry(
    redis_cluster: LocalCluster, manager: CacheManager, mode: str
) -> None:
    api = Api(manager, mode)
    await api.set("k", "old")
    redis_cluster.wait_replicated()
    key = manager.key("k")
    with _lagging(redis_cluster, key) as replica:
        await api.remove("k")
        assert replica.get(key) is not None  # the replica still holds the entry
        assert await api.get("k") is None
        await api.set("k", "new")  # stamped with the guard the removal moved to
        assert await api.get("k") in (None, "new")  # the replica has not seen it yet: a miss, never "old"
        assert replica.get(key) is not None
    assert await api.get("k") == "new"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_replica_behind_a_flush_or_a_tag_invalidation_never_serves_what_it_dropped(
    redis_cluster: LocalCluster, manager: CacheManager, mode: str
) -> None:
    api = Api(manager, mode)
    calls: list[int] = []

    @Cached(manager=manager).cached(tags=["user:{n}"])
    def tagged(n: int) -> int:
        calls.append(n)
        return len(calls)

    await api.set("k", "old")
    first = tagged(1)
    redis_cluster.wait_replicated()
    with _lagging(redis_cluster, manager.key("k")) as replica:
        await api.flush_namespace(mode="versioned")
        assert replica.get(manager.key("k")) is not None
        assert await api.get("k") is None
    with _lagging(redis_cluster, tagged.cache_key(1)) as replica:  # type: ignore[attr-defined]
        manager.invalidate_tags("user:1")
        assert replica.get(tagged.cache_key(1)) is not None  # type: ignore[attr-defined]
        assert tagged(1) != first


def test_a_manager_reading_from_primaries_reads_entries_written_for_replica_reads(
    cluster_url: str, manager: CacheManager
) -> None:
    """Entries carry one more counter in their stamp; a process without the option reads them by generation."""
    manager.set("shared", {"v": 1})
    with CacheManager(cluster_url, namespace="replicas", **GENEROUS) as plain:
        assert plain.get("shared") == {"v": 1}
        assert plain.get_many(["shared"]) == {"shared": {"v": 1}}
        plain.set("theirs", 2)
    assert manager.get("theirs") is None  # not written under a known guard: a miss, never a guess
    assert manager.get_many(["shared"]) == {"shared": {"v": 1}}


def test_a_dead_replica_is_passed_over(redis_cluster: LocalCluster, cluster_url: str) -> None:
    """A replica that cannot answer costs one read a miss; its primary answers its slots' reads after that."""
    with CacheManager(cluster_url, namespace="dead", read_from_replicas=True, **GENEROUS) as manager:
        manager.set("k", 1)
        key = manager.key("k")
        primary = next(
            node for node in redis_cluster.primaries() if key_slot(key.encode()) in redis_cluster.slots_of(node)
        )
        replica = redis_cluster.replica_of(primary)
        redis_cluster.wait_replicated()
        assert eventually(lambda: _read_from_replicas(redis_cluster, lambda: manager.get("k")), timeout=30)
        redis_cluster.kill(replica)
        try:
            found: list[Any] = [manager.get("k") for _ in range(5)]
            assert found[0] in (None, 1)  # the read that met the dead replica may miss; none raises
            assert found[1:] == [1, 1, 1, 1]
        finally:
            redis_cluster.heal()
