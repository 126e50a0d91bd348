"""Cluster and Sentinel locations: the URL forms, their config.json equivalents and topology()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stashly.config.settings import resolve
from stashly.config.urls import Topology, topology
from stashly.errors import ConfigError

SECRET = "Hunter2-s3cret"
SENTINEL = {"nodes": ["a"], "service": "m"}


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default config.json is looked up in the working directory; keep the repository's out of it.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write_config(directory: Path, section: object) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps({"redis": section}), encoding="utf-8")
    return path


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(**kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# --- the URL forms


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+cluster://cache-1:7000", Topology("cluster", (("cache-1", 7000),), None, 0, tls=False)),
        (
            "redis+cluster://cache-1:7000,cache-2:7001,10.0.0.3:7002/",
            Topology("cluster", (("cache-1", 7000), ("cache-2", 7001), ("10.0.0.3", 7002)), None, 0, tls=False),
        ),
        ("rediss+cluster://cache-1", Topology("cluster", (("cache-1", 6379),), None, 0, tls=True)),
        (
            "redis+cluster://[::1]:7000,[2001:db8::7],cache",
            Topology("cluster", (("::1", 7000), ("2001:db8::7", 6379), ("cache", 6379)), None, 0, tls=False),
        ),
        ("redis+sentinel://s1/mymaster", Topology("sentinel", (("s1", 26379),), "mymaster", 0, tls=False)),
        (
            "redis+sentinel://s1:26380,[::1],s3:5000/mymaster/2",
            Topology("sentinel", (("s1", 26380), ("::1", 26379), ("s3", 5000)), "mymaster", 2, tls=False),
        ),
        (
            "redis+sentinel://[fe80::1%25eth0]:26379/mymaster",
            Topology("sentinel", (("fe80::1%eth0", 26379),), "mymaster", 0, tls=False),
        ),
        ("memory://", Topology("single", (), None, 0, tls=False)),
        ("redis://cache:6379/3", Topology("single", (), None, 0, tls=False)),
        ("rediss://cache:6380/0", Topology("single", (), None, 0, tls=True)),
        ("unix:///run/redis.sock?db=1", Topology("single", (), None, 0, tls=False)),
    ],
)
def test_url_forms_are_kept_and_read_back_as_topologies(url: str, expected: Topology) -> None:
    settings = resolve(env={"STASHLY_URL": url})
    assert settings.url == url
    assert topology(settings.url) == expected


def test_the_scheme_is_case_insensitive_and_stored_lower_case() -> None:
    assert resolve(env={}, url="REDIS+Cluster://cache:7000").url == "redis+cluster://cache:7000"


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        (f"redis+cluster://app:{SECRET}@a:7000,b:7001", "redis+cluster://a:7000,b:7001"),
        (f"rediss+cluster://app:{SECRET}@[::1]:7000", "rediss+cluster://[::1]:7000"),
        (f"redis+sentinel://app:{SECRET}@s1,s2:26380/mymaster/1", "redis+sentinel://s1,s2:26380/mymaster/1"),
    ],
)
def test_credentials_move_out_of_node_list_urls(url: str, stored: str) -> None:
    settings = resolve(env={"STASHLY_URL": url})
    assert (settings.url, settings.username, settings.password) == (stored, "app", SECRET)
    assert SECRET not in repr(settings)
    assert topology(settings.url).kind in ("cluster", "sentinel")


def test_a_password_with_commas_stays_in_the_userinfo() -> None:
    settings = resolve(env={}, url="redis+cluster://app:p,a:ss@a:7000,b:7001")
    assert (settings.url, settings.password) == ("redis+cluster://a:7000,b:7001", "p,a:ss")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+cluster://a:7000,,b:7001", r"node 2: expected host:port, found an empty entry"),
        ("redis+cluster://a:7000,", r"node 2: expected host:port, found an empty entry"),
        ("redis+cluster://", r"node 1: expected host:port, found an empty entry"),
        ("redis+cluster://:7000", r"node 1, host: expected a host name"),
        ("redis+cluster://a:7000,b:0", r"node 2, port: expected an integer in 1\.\.65535, found 0 \(int\)"),
        ("redis+cluster://a:70000", r"node 1, port: .*found 70000 \(int\)"),
        ("redis+cluster://a:port", r"node 1, port: .*found 'port' \(str\)"),
        ("redis+cluster://a:", r"node 1, port: .*found '' \(str\)"),
        ("redis+cluster://a,[::1:7000", r"node 2: expected an IPv6 host as \[address\]"),
        ("redis+cluster://[cache]:7000", r"node 1, host: expected an IPv6 address inside \[ \]"),
        ("redis+cluster://a/0", r"no database path, as Redis Cluster has only database 0; found '/0'"),
        ("rediss+cluster://a:7000/3", r"Redis Cluster has only database 0"),
        ("redis+cluster://a?ssl_cert_reqs=none", r"no \?options or #fragment in a redis\+cluster:// URL"),
        ("redis+sentinel://s1:26379", r"expected the Sentinel service name as the path"),
        ("redis+sentinel://s1:26379/", r"expected the Sentinel service name as the path"),
        ("redis+sentinel://s1/mymaster/x", r"database in the path: .*found 'x' \(str\)"),
        ("redis+sentinel://s1/mymaster/1/2", r"database in the path: .*found '1/2' \(str\)"),
        ("redis+sentinel://s1/mymaster/", r"database in the path: .*found '' \(str\)"),
        ("redis+sentinel://s1/my%master", r"service name: expected a service name"),
        ("redis+sentinel://s1,,s2/mymaster", r"node 2: expected host:port, found an empty entry"),
        ("redis+sentinel://s1/mymaster#x", r"no \?options or #fragment"),
        ("rediss+sentinel://s1/mymaster", r"expected redis\+sentinel://; stashly does not reach Sentinel over TLS"),
    ],
)
def test_bad_node_list_urls(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=rf"^environment STASHLY_URL\b.*{match}"):
        resolve(env={"STASHLY_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        f"redis+cluster://app:{SECRET}@a:7000,,b:7001",
        f"redis+cluster://app:{SECRET}@a/0",
        f"redis+sentinel://app:{SECRET}@s1",
        f"rediss+sentinel://app:{SECRET}@s1/mymaster",
        f"redis+cluster://app:{SECRET[:6]}/{SECRET[6:]}@a:7000",
        f"redis+sentinel://app:{SECRET[:6]}?{SECRET[6:]}@s1/mymaster",
    ],
)
def test_a_password_in_a_bad_node_list_url_never_reaches_the_message(url: str) -> None:
    message = config_error(env={"STASHLY_URL": url})
    assert message.startswith("environment STASHLY_URL")
    for fragment in (SECRET, SECRET[:6], SECRET[6:]):
        assert fragment not in message


def test_the_scheme_error_lists_the_new_schemes() -> None:
    message = config_error(env={}, url="redis+shard://a")
    for scheme in ("redis+cluster://", "rediss+cluster://", "redis+sentinel://"):
        assert scheme in message


# --- config.json


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ({"cluster": True, "startup_nodes": ["cache-1:7000"]}, "redis+cluster://cache-1:7000"),
        (
            {"cluster": True, "startup_nodes": ["cache-1:7000", {"host": "cache-2", "port": 7001}, "10.0.0.3:7002"]},
            "redis+cluster://cache-1:7000,cache-2:7001,10.0.0.3:7002",
        ),
        (
            {"cluster": True, "startup_nodes": ["[::1]:7000", {"host": "2001:db8::7"}, "cache"], "ssl": True},
            "rediss+cluster://[::1]:7000,[2001:db8::7]:6379,cache:6379",
        ),
        ({"cluster": True, "host": "cache", "port": 7000}, "redis+cluster://cache:7000"),
        ({"cluster": True}, "redis+cluster://localhost:6379"),
        ({"cluster": True, "host": "cache", "db": 0, "ssl": False}, "redis+cluster://cache:6379"),
        ({"cluster": False, "host": "cache"}, "redis://cache:6379/0"),
        ({"cluster": False}, "memory://"),
        ({"sentinel": {"nodes": ["s1"], "service": "mymaster"}}, "redis+sentinel://s1:26379/mymaster"),
        (
            {"sentinel": {"nodes": ["s1:26380", {"host": "::1"}, "s3:5000"], "service": "m", "db": 2}},
            "redis+sentinel://s1:26380,[::1]:26379,s3:5000/m/2",
        ),
        ({"sentinel": {"nodes": ["s1"], "service": "m", "db": 0}, "ssl": False}, "redis+sentinel://s1:26379/m/0"),
    ],
)
def test_file_forms_compile_to_the_url_form(tmp_path: Path, section: dict[str, object], url: str) -> None:
    from_file = resolve(config_path=write_config(tmp_path, section), env={})
    assert from_file.url == url
    assert topology(from_file.url) == topology(resolve(env={"STASHLY_URL": url}).url)


def test_the_original_app_shape_with_cluster_true(tmp_path: Path) -> None:
    section = {"host": "cache", "port": 7000, "ttl": 300, "db": 0, "password": SECRET, "ssl": False, "cluster": True}
    settings = resolve(config_path=write_config(tmp_path, section), env={})
    assert settings.url == "redis+cluster://cache:7000"
    assert settings.password == SECRET
    assert topology(settings.url).nodes == (("cache", 7000),)


def test_the_environment_url_beats_the_file_topology(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"sentinel": {"nodes": ["s1"], "service": "m"}})
    settings = resolve(config_path=path, env={"STASHLY_URL": "redis+cluster://a:7000"})
    assert topology(settings.url).kind == "cluster"


@pytest.mark.parametrize(
    ("section", "key", "found"),
    [
        ({"startup_nodes": ["a:7000"]}, "redis.startup_nodes", "with redis.cluster true, found no redis.cluster"),
        ({"cluster": False, "startup_nodes": ["a"]}, "redis.startup_nodes", "found redis.cluster false"),
        ({"cluster": "yes"}, "redis.cluster", "true or false, found 'yes' (str)"),
        ({"cluster": True, "startup_nodes": "a:7000"}, "redis.startup_nodes", "non-empty list"),
        ({"cluster": True, "startup_nodes": []}, "redis.startup_nodes", "found an empty list"),
        ({"cluster": True, "startup_nodes": ["a:1", 7000]}, "redis.startup_nodes[1]", "found 7000 (int)"),
        ({"cluster": True, "startup_nodes": ["a:1", ["b", 2]]}, "redis.startup_nodes[1]", "found list"),
        ({"cluster": True, "startup_nodes": ["a:1", {"port": 2}]}, "redis.startup_nodes[1]", "found dict"),
        ({"cluster": True, "startup_nodes": [{"host": "b", "tls": 1}]}, "redis.startup_nodes[0].tls", "unknown key"),
        ({"cluster": True, "startup_nodes": [{"host": "b", "port": "1"}]}, "redis.startup_nodes[0].port", "'1' (str)"),
        ({"cluster": True, "startup_nodes": [{"host": "b/c"}]}, "redis.startup_nodes[0].host", "'b/c' (str)"),
        ({"cluster": True, "startup_nodes": ["a:1", "b:0"]}, "redis.startup_nodes[1], port", "found 0 (int)"),
        ({"cluster": True, "startup_nodes": ["a:1,b:2"]}, "redis.startup_nodes[0], port", "'1,b:2' (str)"),
        ({"cluster": True, "startup_nodes": [""]}, "redis.startup_nodes[0]", "found an empty entry"),
        ({"cluster": True, "startup_nodes": ["a"], "host": "h"}, "redis.startup_nodes", "and redis.host"),
        ({"cluster": True, "startup_nodes": ["a"], "port": 1}, "redis.startup_nodes", "and redis.port"),
        ({"cluster": True, "db": 2}, "redis.db", "Redis Cluster has only database 0, found 2 (int)"),
        ({"cluster": True, "sentinel": {}}, "redis.sentinel", "expected cluster or sentinel, found both"),
        ({"url": "redis://h", "cluster": True}, "redis.url", "found url and redis.cluster"),
        ({"url": "redis://h", "startup_nodes": ["a"]}, "redis.url", "found url and redis.startup_nodes"),
        ({"url": "redis://h", "sentinel": {}}, "redis.url", "found url and redis.sentinel"),
        ({"sentinel": SENTINEL, "host": "h"}, "redis.sentinel", "found sentinel and redis.host"),
        ({"sentinel": SENTINEL, "port": 1}, "redis.sentinel", "found sentinel and redis.port"),
        ({"sentinel": SENTINEL, "db": 1}, "redis.sentinel", "found sentinel and redis.db"),
        ({"sentinel": SENTINEL, "ssl": True}, "redis.sentinel", "redis.ssl (stashly does not"),
        ({"sentinel": SENTINEL, "startup_nodes": ["a"]}, "redis.sentinel", "found sentinel and redis.startup_nodes"),
        ({"sentinel": ["a"]}, "redis.sentinel", "expected an object with nodes, service and db, found list"),
        ({"sentinel": {"nodes": ["a"]}}, "redis.sentinel.service", 'service name, as in "mymaster", found none'),
        ({"sentinel": {"nodes": ["a"], "service": ""}}, "redis.sentinel.service", "found '' (str)"),
        ({"sentinel": {"nodes": ["a"], "service": 5}}, "redis.sentinel.service", "found 5 (int)"),
        ({"sentinel": {"nodes": ["a"], "service": "m/x"}}, "redis.sentinel.service", "found 'm/x' (str)"),
        ({"sentinel": {"service": "m"}}, "redis.sentinel.nodes", 'non-empty list of "host:port"'),
        ({"sentinel": {"nodes": ["a", 1], "service": "m"}}, "redis.sentinel.nodes[1]", "found 1 (int)"),
        ({"sentinel": {"nodes": ["a"], "service": "m", "db": -1}}, "redis.sentinel.db", "found -1 (int)"),
        ({"sentinel": {"nodes": ["a"], "service": "m", "db": "1"}}, "redis.sentinel.db", "found '1' (str)"),
        ({"sentinel": {"nodes": ["a"], "service": "m", "name": "x"}}, "redis.sentinel.name", "unknown key"),
    ],
)
def test_bad_file_topologies(tmp_path: Path, section: dict[str, object], key: str, found: str) -> None:
    path = write_config(tmp_path, section)
    message = config_error(config_path=path, env={})
    assert message.startswith(f"config.json {path}: {key}: ")
    assert found in message


@pytest.mark.parametrize(
    "section",
    [
        {"password": SECRET, "cluster": True, "startup_nodes": ["a:1", 7000]},
        {"password": SECRET, "cluster": True, "startup_nodes": [{"host": "", "port": 1}]},
        {"password": SECRET, "sentinel": {"nodes": ["a"], "service": "m", "db": "x"}},
        {"url": f"redis+cluster://app:{SECRET}@a:7000", "sentinel": {"nodes": ["a"], "service": "m"}},
    ],
)
def test_a_file_topology_error_does_not_echo_the_password(tmp_path: Path, section: dict[str, object]) -> None:
    assert SECRET not in config_error(config_path=write_config(tmp_path, section), env={})


# --- topology()


def test_topology_sets_credentials_aside() -> None:
    assert topology(f"redis+cluster://app:{SECRET}@a:7000") == Topology("cluster", (("a", 7000),), None, 0, tls=False)
    assert topology(f"redis://app:{SECRET}@a:7000/0").kind == "single"


def test_topology_validates_what_it_reads() -> None:
    with pytest.raises(ConfigError, match=r"^topology url, node 2: expected host:port, found an empty entry"):
        topology("redis+cluster://a,,b")
