"""What the Cluster and Sentinel backends add: placement by slot, per-primary flushes, generations, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import random
import string

import pytest
import redis
from redis.crc import key_slot

from stashly import Cached, CacheManager, ConfigError
from stashly.keys.layout import generation_key, generation_keys, retired_head
from stashly.keys.slots import colocated
from stashly.storage.stamps import fill_token, parse_stamp, split_token, stamp, unstamp, unstamp_all

from tests.harness.cluster import LocalCluster
from tests.harness.sentinel import LocalSentinel
from tests.harness.server import ACL_CHANNELS, ACL_COMMANDS, ACL_KEYS, ACL_OPTIONAL, ACL_PASSWORD, ACL_USER
from tests.support import Api, eventually

pytestmark = pytest.mark.timeout(60)


# -- the pure parts ----------------------------------------------------------------------------------------------


def test_stamps_round_trip_and_a_stale_generation_is_a_miss() -> None:
    for payload in [b'{"stashly": 1}', b"", b"\x00starts with NUL", b"\x00\x00"]:
        for generation in [None, b"1", b"42"]:
            stored = stamp(payload, generation)
            assert unstamp(stored, generation) == payload
            for other in [None, b"1", b"42", b"4"]:
                if other != generation:
                    assert unstamp(stored, other) is None, (payload, generation, other)
    assert stamp(b"{}", None) == b"{}"  # never flushed by version: the plain envelope, readable by any client
    assert unstamp(None, b"1") is None
    assert parse_stamp(stamp(b"{}", b"12")) == (b"12", b"{}")
    assert parse_stamp(stamp(b"\x00x", None)) == (None, b"\x00x")
    assert parse_stamp(b"{}") == (None, b"{}")
    stored = [stamp(b"{}", None), None, stamp(b"\x00x", None), stamp(b"{}", b"2")]
    assert unstamp_all(stored, None) == [b"{}", None, b"\x00x", None]
    assert unstamp_all(stored, b"2") == [None, None, None, b"{}"]


def test_tokens_carry_guard_and_generation() -> None:
    assert split_token(fill_token(b"7", b"3")) == (b"7", b"3")
    assert split_token(fill_token(None, None)) == (b"", None)
    assert split_token(fill_token(b"7", None)) == (b"7", None)


def test_generation_keys_and_heads() -> None:
    assert generation_keys(["stashly:a:1", "stashly:a:2:x"]) == "stashly::gen:a"
    assert generation_keys(["stashly:a:1", "stashly:ab:1", "other:a:1"]) == [
        "stashly::gen:a",
        "stashly::gen:ab",
        "other::gen:a",
    ]
    assert generation_keys(["k", "stashly:a:1"]) == ["k::gen:", "stashly::gen:a"]
    assert generation_key("stashly:auth:user:1") == "stashly::gen:auth"
    assert generation_key("stashly:auth:") == "stashly::gen:auth"
    assert retired_head("stashly::gen:auth") == "stashly:auth:"
    assert retired_head("stashly:auth:gen:x") is None
    assert retired_head("stashly::guard:auth") is None


def test_guards_and_locks_share_their_entrys_slot() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + "{}:é"
    for _ in range(2000):
        key = (
            "stashly:"
            + "".join(rng.choices(alphabet, k=rng.randint(1, 12)))
            + ":"
            + "".join(rng.choices(alphabet, k=8))
        )
        slot = key_slot(key.encode())
        assert key_slot(colocated("stashly::guard:ns{x}", key).encode()) == slot
        assert key_slot(colocated("stashly::lock:" + key, key).encode()) == slot


# -- on a real cluster -------------------------------------------------------------------------------------------


def test_flush_visits_every_primary_and_removes_exactly_the_namespace(
    cluster_url: str, redis_cluster: LocalCluster
) -> None:
    with CacheManager(url=cluster_url, namespace="wide") as cm:
        for index in range(300):
            cm.set(f"k{index}", index)
            cm.set(f"k{index}", index, namespace="kept")
        holding = []
        for primary in redis_cluster.primaries():
            with primary.client() as raw:
                holding.append(sum(1 for _ in raw.scan_iter(match="stashly:wide:*", count=1000)))
        assert all(count > 0 for count in holding), holding  # the namespace is spread, not pinned to one node
        assert cm.count() == 300
        assert cm.flush_namespace() == 300
        assert cm.count() == 0
        assert cm.count("kept") == 300
        assert cm.get_many([f"k{index}" for index in range(300)], namespace="kept") == {
            f"k{index}": index for index in range(300)
        }


def test_remove_bumps_the_guard_beside_the_entry(cluster_url: str) -> None:
    with CacheManager(url=cluster_url, namespace="placed") as cm:
        cm.set("user:1", 1)
        assert cm.remove("user:1") is True
        key = cm.key("user:1")
        guard = colocated("stashly::guard:placed", key)
        with redis.RedisCluster.from_url(cluster_url.replace("redis+cluster", "redis").split(",")[0]) as raw:
            assert raw.get(guard) == b"1"
            assert raw.keyslot(guard) == raw.keyslot(key)


def test_versioned_flush_on_a_cluster_is_one_counter(cluster_url: str) -> None:
    with CacheManager(url=cluster_url, namespace="gen") as cm:
        for index in range(100):
            cm.set(f"k{index}", index)
        assert cm.flush_namespace(mode="versioned") == 0
        assert cm.get_many([f"k{index}" for index in range(100)]) == {}
        assert cm.count() == 100  # still stored, unreachable, until their TTLs run out
        cm.set("k1", "new")
        assert cm.get("k1") == "new"


async def test_async_flush_and_reads_on_a_cluster(cluster_url: str) -> None:
    cm = CacheManager(url=cluster_url, namespace="asyncwide")
    cache = Cached(manager=cm)
    calls = []

    @cache.cached
    async def square(number: int) -> int:
        calls.append(number)
        await asyncio.sleep(0)
        return number * number

    assert [await square(n) for n in range(50)] == [n * n for n in range(50)]
    assert [await square(n) for n in range(50)] == [n * n for n in range(50)]
    assert len(calls) == 50
    assert await cm.acount() == 50
    assert await cm.aflush_namespace() == 50
    assert await square(3) == 9
    assert len(calls) == 51
    await cm.aclose()


def test_a_brace_in_the_prefix_is_refused_on_a_cluster(redis_cluster: LocalCluster) -> None:
    with pytest.raises(ConfigError, match=r"prefix: expected no '\{' or '\}' on Redis Cluster"):
        CacheManager(url=redis_cluster.url, prefix="app{1}").get("k")


# -- behind Sentinel ---------------------------------------------------------------------------------------------


async def test_sentinel_writes_land_on_the_primary_it_names(sentinel_url: str, redis_sentinel: LocalSentinel) -> None:
    with CacheManager(url=sentinel_url, namespace="where") as cm:
        cm.set("sync", 1)
        await cm.aset("async", 2)
        with redis_sentinel.primary_server().client() as raw:
            assert sorted(raw.scan_iter(match="stashly:where:*")) == ["stashly:where:async", "stashly:where:sync"]
        assert cm.get("sync") == 1
        assert await cm.aget("async") == 2
        await cm.aclose()


def test_the_local_tier_works_behind_sentinel(sentinel_url: str) -> None:
    with (
        CacheManager(url=sentinel_url, namespace="tier", local=True) as local,
        CacheManager(url=sentinel_url, namespace="tier") as writer,
    ):
        local.set("k", 1)
        assert eventually(lambda: _local_hit(local, "k") == 1)
        writer.set("k", 2)
        assert eventually(lambda: local.get("k") == 2)
        assert eventually(lambda: _local_hit(local, "k") == 2)
        writer.flush_namespace(mode="versioned")
        assert eventually(lambda: local.get("k") is None)


def _local_hit(manager: CacheManager, key: str) -> object:
    """The value if this read was served by the local tier, else a marker."""
    before = manager.totals().local_hits
    value = manager.get(key)
    return value if manager.totals().local_hits > before else "not local"


async def test_the_least_privilege_user_is_enough_on_a_cluster(cluster_url: str, redis_cluster: LocalCluster) -> None:
    """The documented ACL user, plus the two commands redis-py's cluster client needs, on every node."""
    grants = [*ACL_COMMANDS, "cluster|slots", "command"]
    rules = ["reset", "on", f">{ACL_PASSWORD}", "-@all", *(f"+{name}" for name in grants), ACL_KEYS, ACL_CHANNELS]
    nodes = redis_cluster.nodes
    for node in nodes:
        with node.client() as admin:
            admin.execute_command("ACL", "SETUSER", ACL_USER, *rules)
            for name in ACL_OPTIONAL:
                with contextlib.suppress(redis.ResponseError):
                    admin.execute_command("ACL", "SETUSER", ACL_USER, f"+{name}")
            admin.execute_command("ACL", "LOG", "RESET")
    url = cluster_url.replace("redis+cluster://", f"redis+cluster://{ACL_USER}:{ACL_PASSWORD}@")
    try:
        cm = CacheManager(url=url, namespace="acl", strict=True)  # a refusal raises instead of failing open
        cache = Cached(manager=cm)
        calls: list[int] = []

        @cache.cached(lock=True, refresh_ahead=0.5)
        async def square(number: int) -> int:
            calls.append(number)
            return number * number

        cm.set("k", 1)
        await cm.aset("k2", 2)
        assert cm.get_many(["k", "k2"]) == {"k": 1, "k2": 2}
        assert [await square(n) for n in range(20)] == [await square(n) for n in range(20)]
        assert len(calls) == 20
        assert await square.invalidate(3) is True
        assert cm.remove("k") is True
        assert cm.count() == 19 + 1  # the squares but 3, and k2
        assert await cm.aflush_namespace(mode="versioned") == 0
        assert cm.flush_namespace() == 20
        await cm.aclose()
        cm.close()
    finally:
        denials = []
        for node in nodes:
            with node.client() as admin:
                denials += admin.acl_log()
                admin.execute_command("ACL", "DELUSER", ACL_USER)
    assert not denials, denials


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_set_writes_once_beside_its_generation_and_sees_a_flush_made_elsewhere(
    cluster_url: str, redis_cluster: LocalCluster, mode: str
) -> None:
    """The entry and its namespace's generation are in different slots: after the first set of a namespace, a set
    is one SET stamped with the generation last seen, sent with a GET of the current one (one round trip). A
    flush by another process changes it: the next set sees that and writes again, stamped right."""
    namespace = f"once-{mode}"
    with CacheManager(url=cluster_url, namespace=namespace) as writer, CacheManager(url=cluster_url) as flusher:
        api = Api(writer, mode)
        await api.set("k0", 0, 300)  # learns the generation
        before = _calls(redis_cluster, "set")
        for index in range(1, 11):
            await api.set(f"k{index}", index, 300)
        assert _calls(redis_cluster, "set") - before == 10  # one write each
        for _ in range(3):
            flusher.flush_namespace(namespace=namespace, mode="versioned")  # the generation moves on
            before = _calls(redis_cluster, "set")
            await api.set("k1", "after the flush", 300)
            assert _calls(redis_cluster, "set") - before == 2  # the stamp was stale: written again
            assert await api.get("k1") == "after the flush"
            assert flusher.get("k1", namespace=namespace) == "after the flush"
            assert await api.get("k2") is None  # flushed


def _calls(cluster: LocalCluster, command: str) -> int:
    """How many times the primaries have run ``command`` so far (``INFO commandstats``)."""
    total = 0
    for node in cluster.primaries():
        with node.client() as client:
            total += int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
    return total
