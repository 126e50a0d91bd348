"""The cluster and sentinel fixtures are real: raw redis-py clients spread keys, survive failovers and follow slots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.asyncio.cluster
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.sentinel import Sentinel

from tests.harness.cluster import LocalCluster
from tests.harness.sentinel import LocalSentinel


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[RedisCluster]:
    nodes = [ClusterNode(host, port) for host, port in cluster.startup_nodes]
    with RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=5) as client:
        yield client


def test_keys_spread_over_all_three_primaries(cluster: LocalCluster, client: RedisCluster) -> None:
    assert cluster.url.startswith("redis+cluster://127.0.0.1:")
    assert len(cluster.url.split(",")) == 6
    primaries = cluster.primaries()
    assert len(primaries) == 3
    assert {cluster.replica_of(primary).port for primary in primaries}.isdisjoint(p.port for p in primaries)

    for index in range(300):
        client.set(f"spread:{index}", index)
    assert [client.get(f"spread:{index}") for index in range(300)] == [str(index) for index in range(300)]

    sizes = []
    for primary in primaries:
        with primary.client() as raw:
            sizes.append(raw.dbsize())
    assert sum(sizes) == 300
    assert all(size > 0 for size in sizes), sizes


async def test_async_client_reaches_every_primary(cluster: LocalCluster) -> None:
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in cluster.startup_nodes]
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=5)
    try:
        for index in range(60):
            await client.set(f"async:{index}", index)
        assert await client.mget_nonatomic([f"async:{index}" for index in range(60)]) == [str(i) for i in range(60)]
        owners = {client.get_node_from_key(f"async:{index}").port for index in range(60)}
        assert owners == {primary.port for primary in cluster.primaries()}
    finally:
        await client.aclose()


def test_killed_primary_is_replaced_by_its_replica(cluster: LocalCluster, client: RedisCluster) -> None:
    client.set("failover:key", "before")
    primary = cluster.node(_owner_id(cluster, "failover:key"))
    replica = cluster.replica_of(primary)
    cluster.wait_replicated()

    cluster.kill(primary)
    promoted, elapsed = cluster.wait_failover(primary)
    print(f"\ncluster failover after SIGKILL: {elapsed:.2f} s ({primary!r} -> {promoted!r})")

    assert promoted is replica
    assert client.get("failover:key") == "before"  # the client refreshes its slot map on the dead connection
    client.set("failover:key", "after")
    assert client.get("failover:key") == "after"
    assert client.get_node_from_key("failover:key").port == promoted.port

    cluster.restart(primary)
    assert primary.role() == "slave"
    assert cluster.replica_of(promoted) is primary


async def test_paused_primary_is_failed_over_for_an_async_client(cluster: LocalCluster) -> None:
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in cluster.startup_nodes]
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=5)
    try:
        await client.set("paused:key", "before")
        primary = cluster.node(_owner_id(cluster, "paused:key"))
        cluster.wait_replicated()

        cluster.pause(primary)
        promoted, elapsed = cluster.wait_failover(primary)
        print(f"\ncluster failover after SIGSTOP: {elapsed:.2f} s ({primary!r} -> {promoted!r})")

        assert await client.get("paused:key") == "before"
        assert client.get_node_from_key("paused:key").port == promoted.port
        cluster.resume(primary)
        cluster.wait_settled()
        assert primary.role() == "slave"
    finally:
        await client.aclose()


def test_resharding_moves_slots_and_the_client_follows_moved(cluster: LocalCluster, client: RedisCluster) -> None:
    src, dst, _ = cluster.primaries()
    src_slots = sorted(cluster.slots_of(src))
    # Keys in the first slots of src: redis-cli moves a source's lowest slots first.
    keys = [f"{{{tag}}}:value" for tag in _tags_for(src_slots[:40])]
    for key in keys:
        client.set(key, key)

    moved = cluster.reshard(src, dst, 100)

    assert len(moved) == 100
    assert cluster.slots_of(dst) >= set(moved)
    assert [client.get(key) for key in keys] == keys  # served by dst after a MOVED from src
    assert {client.get_node_from_key(key).port for key in keys} == {dst.port}
    with dst.client() as raw:
        assert raw.dbsize() >= len(keys)


async def test_async_client_follows_ask_during_a_slot_migration(cluster: LocalCluster) -> None:
    src, dst, _ = cluster.primaries()
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in cluster.startup_nodes]
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=5)
    slot = min(cluster.slots_of(src))
    (tag,) = _tags_for([slot])
    moving, staying = f"{{{tag}}}:moving", f"{{{tag}}}:staying"
    try:
        await client.set(moving, "m")
        await client.set(staying, "s")
        with src.client() as src_raw, dst.client() as dst_raw:
            dst_raw.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
            src_raw.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
            src_raw.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", moving)
            with pytest.raises(redis.exceptions.AskError):
                src_raw.get(moving)

            assert await client.get(moving) == "m"  # ASK to dst, ASKING, then GET there
            assert await client.get(staying) == "s"  # still on src

            src_raw.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", staying)
            for primary in cluster.primaries():
                with primary.client() as raw:
                    raw.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
        assert await client.get(staying) == "s"  # MOVED to dst
        cluster.wait_settled()
        assert slot in cluster.slots_of(dst)
    finally:
        await client.aclose()


def test_sentinel_failover_promotes_the_replica_and_master_for_follows(redis_sentinel: LocalSentinel) -> None:
    topology = redis_sentinel
    assert topology.url == "redis+sentinel://" + ",".join(f"{h}:{p}" for h, p in topology.sentinels) + "/stashly"
    sentinel = Sentinel(topology.sentinels, socket_timeout=5, sentinel_kwargs={"socket_timeout": 5})
    old = topology.primary()
    assert sentinel.discover_master(topology.service_name) == old
    (replica,) = sentinel.discover_slaves(topology.service_name)
    master = sentinel.master_for(topology.service_name, socket_timeout=5, decode_responses=True)
    try:
        master.set("sentinel:key", "before")
        topology.wait_replicated()

        assert topology.kill_primary() == old
        new, elapsed = topology.wait_failover()
        print(f"\nsentinel failover after SIGKILL: {elapsed:.2f} s ({old} -> {new})")

        assert new == replica
        assert sentinel.discover_master(topology.service_name) == new
        assert master.get("sentinel:key") == "before"  # reconnects to the address the sentinels now give
        master.set("sentinel:key", "after")
        assert master.get("sentinel:key") == "after"
        assert master.connection_pool.get_master_address() == new
    finally:
        master.close()
        for connection in sentinel.sentinels:
            connection.close()
        topology.heal()
    assert topology.primary() == new
    assert [server.address for server in topology.data if server.address != new] == [old]


def _owner_id(cluster: LocalCluster, key: str) -> str:
    """The node id of the primary owning ``key``, as the cluster itself says."""
    with cluster.primaries()[0].client() as raw:
        slot = int(raw.execute_command("CLUSTER", "KEYSLOT", key))
    for primary in cluster.primaries():
        if slot in cluster.slots_of(primary):
            return primary.node_id
    raise LookupError(slot)


def _tags_for(slots: list[int]) -> list[str]:
    """For each slot, a short hash tag whose keys land in it (CRC16, as every cluster client computes it)."""
    wanted = set(slots)
    found: dict[int, str] = {}
    index = 0
    while len(found) < len(wanted):
        slot = key_slot(str(index).encode())
        if slot in wanted:
            found.setdefault(slot, str(index))
        index += 1
    return [found[slot] for slot in slots]
