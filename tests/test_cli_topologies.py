"""The command line on Redis Cluster and behind Sentinel: ``python -m stashly`` in a subprocess against the real
local topologies, with data written by a :class:`~stashly.CacheManager` on the same topology."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from stashly import CacheManager

from tests.harness.cluster import ClusterNode, LocalCluster
from tests.harness.process import free_port
from tests.harness.sentinel import LocalSentinel
from tests.test_cli import failed, run, run_json


def _name(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _owner(cluster: LocalCluster, key: str) -> ClusterNode:
    slot = key_slot(key.encode())
    (owner,) = [node for node in cluster.primaries() if slot in cluster.slots_of(node)]
    return owner


def _keys_on(node: ClusterNode, match: str = "*") -> set[str]:
    with node.client() as client:
        return {key if isinstance(key, str) else key.decode() for key in client.scan_iter(match=match, count=1000)}


def _cluster_keys(cluster: LocalCluster, match: str = "*") -> set[str]:
    return set().union(*(_keys_on(node, match) for node in cluster.primaries()))


@pytest.fixture
def ccm(cluster_url: str) -> Iterator[CacheManager]:
    with CacheManager(url=cluster_url, namespace="app", strict=True) as manager:
        yield manager


@pytest.fixture
def scm(sentinel_url: str) -> Iterator[CacheManager]:
    with CacheManager(url=sentinel_url, namespace="app", strict=True) as manager:
        yield manager


def _populate(cm: CacheManager, count: int = 30) -> None:
    """``count`` entries in app (spread over every primary on Cluster), 3 in auth, and a guard of auth."""
    for i in range(count):
        cm.set(f"user:{i}", {"id": i}, ttl=300)
    for i in range(3):
        cm.set(f"k{i}", i, ttl=30, namespace="auth")
    cm.remove("absent", namespace="auth")  # bumps auth's guard (on Cluster, in the slot of auth:absent)


# -- Cluster ---------------------------------------------------------------------------------------------------


def test_cluster_ping_answers_for_every_primary(cluster_url: str, redis_cluster: LocalCluster, tmp_path: Path) -> None:
    primaries = sorted(_name(node.address) for node in redis_cluster.primaries())
    result = run("ping", "--url", cluster_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"PONG from {cluster_url} (3 primaries)")
    assert "(cluster, master)" in result.stdout
    shown = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("  primary ")]
    assert shown == primaries
    code, document = run_json("ping", "--url", cluster_url, cwd=tmp_path)
    assert code == 0
    assert (document["topology"], document["mode"], document["role"]) == ("cluster", "cluster", "master")
    assert [node["node"] for node in document["nodes"]] == primaries
    assert all(node["rtt_ms"] > 0 and node["version"] for node in document["nodes"])
    assert document["rtt_ms"] == max(node["rtt_ms"] for node in document["nodes"])


def test_cluster_keys_and_stats_cover_every_primary(
    ccm: CacheManager, redis_cluster: LocalCluster, cluster_url: str, tmp_path: Path
) -> None:
    _populate(ccm)
    per_node = {_name(node.address): len(_keys_on(node, "stashly:app:*")) for node in redis_cluster.primaries()}
    assert sum(1 for count in per_node.values() if count) >= 2  # the test means something: keys on several nodes
    code, document = run_json("keys", "app", "--limit", "0", "--url", cluster_url, cwd=tmp_path)
    assert code == 0
    assert document["keys"] == sorted(f"stashly:app:user:{i}" for i in range(30))
    limited = run("keys", "app", "--limit", "5", "--url", cluster_url, cwd=tmp_path)
    assert (limited.returncode, len(limited.stdout.splitlines())) == (0, 5), limited.stderr
    assert "--limit 0" in limited.stderr
    failed(run("keys", "empty", "--url", cluster_url, cwd=tmp_path), 1, "no keys in namespace 'empty'")

    code, stats = run_json("stats", "--url", cluster_url, cwd=tmp_path)
    assert code == 0
    assert stats["keys"] == 33
    assert {name: tally["keys"] for name, tally in stats["namespaces"].items()} == {"app": 30, "auth": 3}
    assert stats["namespaces"]["auth"]["ttl"]["<1m"] == 3
    assert stats["namespaces"]["app"]["memory_bytes"] > 0
    assert stats["internal"] == {"guard": 1, "lock": 0, "other": 0}  # the guard's hash tag is seen through
    assert sorted(stats["nodes"]) == sorted(per_node)
    assert sum(node["keys"] for node in stats["nodes"].values()) == 33
    assert sum(node["internal"] for node in stats["nodes"].values()) == 1
    for name, count in per_node.items():
        assert stats["nodes"][name]["keys"] >= count  # app's, plus auth's that landed there
    text = run("stats", "--url", cluster_url, cwd=tmp_path).stdout
    assert f"{cluster_url}, prefix 'stashly' over 3 primaries: 33 keys in 2 namespaces" in text
    assert sum(line.startswith("  primary ") for line in text.splitlines()) == 3
    code, only = run_json("stats", "--namespace", "auth", "--url", cluster_url, cwd=tmp_path)
    assert (code, list(only["namespaces"]), only["keys"]) == (0, ["auth"], 3)


def test_cluster_get_reads_on_the_node_owning_the_key(
    ccm: CacheManager, redis_cluster: LocalCluster, cluster_url: str, tmp_path: Path
) -> None:
    _populate(ccm, count=5)
    for i in range(5):
        key = f"stashly:app:user:{i}"
        code, entry = run_json("get", f"user:{i}", "--namespace", "app", "--url", cluster_url, cwd=tmp_path)
        assert code == 0
        assert (entry["key"], entry["value"], entry["key_digest_matches"]) == (key, {"id": i}, True)
        assert entry["node"] == _name(_owner(redis_cluster, key).address)
        assert 0 < entry["ttl_seconds"] <= 300
    text = run("get", "stashly:app:user:1", "--url", cluster_url, cwd=tmp_path).stdout
    assert f"node   {_name(_owner(redis_cluster, 'stashly:app:user:1').address)}" in text
    missing = run("get", "user:404", "--namespace", "app", "--url", cluster_url, cwd=tmp_path)
    failed(missing, 1, f"no entry stashly:app:user:404 at {cluster_url}")
    code, document = run_json("get", "user:404", "--namespace", "app", "--url", cluster_url, cwd=tmp_path)
    assert code == 1
    assert document["nodes"] == [_name(_owner(redis_cluster, "stashly:app:user:404").address)]
    with _owner(redis_cluster, "stashly:app:list").client() as raw:
        raw.rpush("stashly:app:list", b"x")
    failed(run("get", "stashly:app:list", "--url", cluster_url, cwd=tmp_path), 1, "not a string")


def test_cluster_get_reads_the_generation_from_its_own_slot(
    ccm: CacheManager, cluster_url: str, tmp_path: Path
) -> None:
    ccm.set("old", 1, namespace="gen")
    ccm.flush_namespace("gen", mode="versioned")  # stashly::gen:gen lives in a slot of its own
    ccm.set("new", 2, namespace="gen")
    code, old = run_json("get", "old", "--namespace", "gen", "--url", cluster_url, cwd=tmp_path)
    assert (code, old["generation"], old["value"]) == (0, 0, 1)
    assert "retired by a versioned flush" in old["note"]
    code, new = run_json("get", "new", "--namespace", "gen", "--url", cluster_url, cwd=tmp_path)
    assert (code, new["generation"], new["value"]) == (0, 1, 2)
    assert "note" not in new


def test_cluster_flush_removes_what_flush_namespace_removes(
    ccm: CacheManager, redis_cluster: LocalCluster, cluster_url: str, tmp_path: Path
) -> None:
    for namespace in ("by-cli", "by-app", "kept"):
        for i in range(20):
            ccm.set(f"k{i}", i, ttl=300, namespace=namespace)
    before = _cluster_keys(redis_cluster)
    refused = run("flush", "by-cli", "--url", cluster_url, cwd=tmp_path, stdin="n\n")
    assert "Remove 20 keys of namespace 'by-cli' (stashly:by-cli:*)" in refused.stderr
    failed(refused, 1, "nothing removed")
    assert _cluster_keys(redis_cluster) == before
    code, document = run_json("flush", "by-cli", "--yes", "--url", cluster_url, cwd=tmp_path)
    assert code == 0
    assert (document["removed"], document["generation"]) == (20, "stashly::gen:by-cli")
    assert sorted(document["nodes"]) == sorted(_name(node.address) for node in redis_cluster.primaries())
    assert ccm.flush_namespace("by-app") == 20
    after = _cluster_keys(redis_cluster)
    assert {key for key in after if ":by-cli" in key} == {"stashly::gen:by-cli"}
    renamed = {key.replace("by-app", "by-cli") for key in after if ":by-app" in key}
    assert renamed == {"stashly::gen:by-cli"}  # the CLI and the library left the same thing behind
    assert after - before == {"stashly::gen:by-cli", "stashly::gen:by-app"}
    assert len(_cluster_keys(redis_cluster, "stashly:kept:*")) == 20
    assert ccm.get("k0", namespace="by-cli") is None
    with _owner(redis_cluster, "stashly::gen:by-cli").client() as raw:
        assert raw.get("stashly::gen:by-cli") in (b"1", "1")
    text = run("flush", "kept", "--yes", "--url", cluster_url, cwd=tmp_path).stdout
    assert text == "removed 20 keys of namespace 'kept' (stashly:kept:*); stashly::gen:kept bumped (over 3 primaries)\n"


def test_cluster_configuration_and_reachability_errors(redis_cluster: LocalCluster, tmp_path: Path) -> None:
    refused = run("keys", "app", "--prefix", "a{b}", "--url", redis_cluster.url, cwd=tmp_path)
    failed(refused, 3, "prefix", "hash tags")
    nowhere = f"redis+cluster://127.0.0.1:{free_port()}"
    for command in (["ping"], ["stats"], ["get", "k"], ["keys", "app"], ["flush", "app", "--yes"]):
        failed(run(*command, "--url", nowhere, "--timeout", "2", cwd=tmp_path), 4, "cannot reach", nowhere)


# -- Sentinel --------------------------------------------------------------------------------------------------


def test_sentinel_commands_name_the_primary_that_answered(
    scm: CacheManager, redis_sentinel: LocalSentinel, sentinel_url: str, tmp_path: Path
) -> None:
    _populate(scm, count=3)
    primary = _name(redis_sentinel.primary())
    code, pong = run_json("ping", "--url", sentinel_url, cwd=tmp_path)
    assert code == 0
    assert (pong["topology"], pong["node"], pong["role"], pong["service"]) == ("sentinel", primary, "master", "stashly")
    text = run("ping", "--url", sentinel_url, cwd=tmp_path).stdout
    assert f"  node        {primary}, the primary of 'stashly' now" in text
    code, entry = run_json("get", "user:1", "--namespace", "app", "--url", sentinel_url, cwd=tmp_path)
    assert (code, entry["value"], entry["node"]) == (0, {"id": 1}, primary)
    failed(run("get", "nope", "--url", sentinel_url, cwd=tmp_path), 1, f"at {sentinel_url} (primary {primary})")
    code, keys = run_json("keys", "app", "--url", sentinel_url, cwd=tmp_path)
    assert (code, keys["keys"]) == (0, [f"stashly:app:user:{i}" for i in range(3)])
    code, stats = run_json("stats", "--url", sentinel_url, cwd=tmp_path)
    assert (code, stats["keys"], stats["node"], stats["internal"]["guard"]) == (0, 6, primary, 1)
    assert f"(primary {primary}): 6 keys in 2 namespaces" in run("stats", "--url", sentinel_url, cwd=tmp_path).stdout
    flushed = run("flush", "app", "--yes", "--url", sentinel_url, cwd=tmp_path)
    assert (
        flushed.stdout
        == f"removed 3 keys of namespace 'app' (stashly:app:*); stashly::guard:app bumped (primary {primary})\n"
    )
    with redis_sentinel.primary_server().client() as raw:
        assert raw.get("stashly::guard:app") in (b"1", "1")
        assert raw.exists("stashly:app:user:0", "stashly:auth:k0") == 1


def test_sentinel_commands_follow_a_failover(sentinel: LocalSentinel, tmp_path: Path) -> None:
    with CacheManager(url=sentinel.url, namespace="app", strict=True) as manager:
        manager.set("before", 1, ttl=300)
        sentinel.wait_replicated()
        old = _name(sentinel.kill_primary())
        new = _name(sentinel.wait_failover()[0])
    code, pong = run_json("ping", "--url", sentinel.url, cwd=tmp_path)
    assert (code, pong["node"]) == (0, new)
    assert new != old
    code, entry = run_json("get", "before", "--namespace", "app", "--url", sentinel.url, cwd=tmp_path)
    assert (code, entry["value"], entry["node"]) == (0, 1, new)
