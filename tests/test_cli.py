"""The command line, end to end: ``python -m stashly`` (and the ``stashly`` script) in a subprocess, against real
private redis-server processes, with data written by the library itself."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stashly import CacheManager

from tests.harness.server import ACL_PASSWORD, ACL_USER, RedisServer
from tests.harness.tls import make_tls_files
from tests.support import GENEROUS_ENV

PICKLE_SECRET = "a-pickle-signing-secret-of-32-bytes-or-more"


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m stashly ARGS`` with no STASHLY_* variables but the generous timeouts and ``env``, in ``cwd`` (so
    no stray config.json)."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("STASHLY_")} | GENEROUS_ENV
    result = subprocess.run(
        [sys.executable, "-m", "stashly", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ | (env or {}),
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run_json(*args: str, cwd: Path, **kwargs: Any) -> tuple[int, Any]:
    result = run(*args, "--json", cwd=cwd, **kwargs)
    return result.returncode, json.loads(result.stdout) if result.stdout else None


def failed(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    """Exit ``code``, one ``stashly: error:`` line naming each phrase, and nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("stashly: error: ") or result.stderr.count("stashly: error: ") == 1, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


@pytest.fixture
def url(redis_url: str) -> str:
    """The shared private server as its default user: the command line is the operator's tool (``stats`` uses
    MEMORY USAGE, which the least-privilege user of STASHLY_TEST_ACL=1 may not run; that user is tested below)."""
    return redis_url.replace(f"{ACL_USER}:{ACL_PASSWORD}@", "")


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(url) as client:
        yield client


@pytest.fixture
def cm(url: str) -> Iterator[CacheManager]:
    with CacheManager(url=url, namespace="app", strict=True) as manager:
        yield manager


def populate(cm: CacheManager) -> None:
    """Entries in app (3), apple (2), ``a*`` (2) and auth (1), and the guard of auth."""
    for i in range(3):
        cm.set(f"user:{i}", {"id": i, "email": f"u{i}@example.com"}, ttl=300)
    for namespace, count in (("apple", 2), ("a*", 2), ("auth", 1)):
        for i in range(count):
            cm.set(f"k{i}", i, ttl=300, namespace=namespace)
    cm.remove("absent", namespace="auth")  # bumps stashly::guard:auth


def all_keys(raw: redis.Redis) -> set[bytes]:
    return set(raw.scan_iter(count=1000))


# -- ping ------------------------------------------------------------------------------------------------------


def test_ping_reports_server_version_round_trip_and_user(url: str, raw: redis.Redis, tmp_path: Path) -> None:
    version = raw.info("server")["redis_version"]
    result = run("ping", "--url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"PONG from {url}")
    assert f"redis {version}" in result.stdout
    assert "round trip" in result.stdout
    assert "tls         off" in result.stdout
    assert "user        default" in result.stdout
    code, document = run_json("ping", "--url", url, cwd=tmp_path)
    assert code == 0
    assert document["version"] == version
    assert document["url"] == url
    assert document["tls"] is False
    assert document["user"] == "default"
    assert document["protocol"] == 2
    assert document["rtt_ms"] > 0


def test_ping_over_tls_names_the_ca(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    with RedisServer(tls=files) as server:
        env = {"STASHLY_URL": server.url, "STASHLY_SSL_CA_CERTS": files.ca_cert}
        code, document = run_json("ping", cwd=tmp_path, env=env)
        assert code == 0
        assert document["tls"] is True
        assert document["tls_ca_certs"] == os.path.abspath(files.ca_cert)
        unverified = run("ping", "--url", server.url, cwd=tmp_path)  # the system store does not know this CA
        failed(unverified, 4, "cannot reach", "rediss://127.0.0.1")


# -- get -------------------------------------------------------------------------------------------------------


def test_get_relative_and_full_keys(cm: CacheManager, raw: redis.Redis, tmp_path: Path, url: str) -> None:
    populate(cm)
    code, entry = run_json("get", "user:1", "--namespace", "app", "--url", url, cwd=tmp_path)
    assert code == 0
    assert entry["found"] is True
    assert entry["key"] == "stashly:app:user:1"
    assert entry["kind"] == "entry"
    assert entry["value"] == {"id": 1, "email": "u1@example.com"}
    assert entry["key_digest_matches"] is True
    assert 0 < entry["ttl_seconds"] <= 300
    assert entry["size_bytes"] == len(raw.get("stashly:app:user:1") or b"")
    full = run("get", "stashly:app:user:2", "--url", url, cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    assert "key    stashly:app:user:2" in full.stdout
    assert "matches" in full.stdout
    assert '"email": "u2@example.com"' in full.stdout
    from_env = run("get", "k0", cwd=tmp_path, env={"STASHLY_URL": url, "STASHLY_NAMESPACE": "apple"})
    assert from_env.returncode == 0, from_env.stderr
    assert "key    stashly:apple:k0" in from_env.stdout


def test_get_shows_generations_after_a_versioned_flush(cm: CacheManager, tmp_path: Path, url: str) -> None:
    cm.set("old", 1, namespace="gen")
    cm.flush_namespace("gen", mode="versioned")
    cm.set("new", 2, namespace="gen")
    code, old = run_json("get", "old", "--namespace", "gen", "--url", url, cwd=tmp_path)
    assert code == 0
    assert (old["generation"], old["value"]) == (0, 1)
    assert "retired by a versioned flush: read as a miss" in old["note"]
    code, new = run_json("get", "new", "--namespace", "gen", "--url", url, cwd=tmp_path)
    assert code == 0
    assert (new["generation"], new["value"], new["key_digest_matches"]) == (1, 2, True)
    assert "note" not in new


def test_get_missing_key_exits_1(url: str, tmp_path: Path) -> None:
    result = run("get", "user:404", "--namespace", "app", "--url", url, cwd=tmp_path)
    failed(result, 1, "no entry stashly:app:user:404")
    assert result.stdout == ""
    code, document = run_json("get", "user:404", "--url", url, cwd=tmp_path)
    assert code == 1
    assert document == {
        "found": False,
        "tried": ["stashly:default:user:404"],
        "error": f"no entry stashly:default:user:404 at {url}",
    }


def test_get_flags_an_entry_copied_from_another_key(
    cm: CacheManager, raw: redis.Redis, tmp_path: Path, url: str
) -> None:
    cm.set("user:1", {"id": 1}, ttl=60)
    raw.set("stashly:app:user:2", raw.get("stashly:app:user:1") or b"")  # no expiry
    code, entry = run_json("get", "stashly:app:user:2", "--url", url, cwd=tmp_path)
    assert code == 0
    assert entry["key_digest_matches"] is False
    assert entry["ttl_seconds"] is None
    assert "miss" in entry["note"]
    text = run("get", "stashly:app:user:2", "--url", url, cwd=tmp_path).stdout
    assert "DOES NOT MATCH" in text
    assert "no expiry" in text


def test_get_foreign_and_non_string_values(raw: redis.Redis, tmp_path: Path, url: str) -> None:
    raw.set("stashly:app:plain", b"hello")
    code, entry = run_json("get", "plain", "--namespace", "app", "--url", url, cwd=tmp_path)
    assert code == 0
    assert entry["kind"] == "foreign"
    assert entry["preview"] == "hello"
    raw.rpush("stashly:app:list", b"x")
    failed(run("get", "stashly:app:list", "--url", url, cwd=tmp_path), 1, "not a string")


def test_get_signed_pickle_shows_the_value_only_once_verified(url: str, tmp_path: Path) -> None:
    with CacheManager(url=url, namespace="app", serializer="pickle", secrets=[PICKLE_SECRET]) as pickled:
        pickled.set("t", {"pair": (1, 2)}, ttl=60)
    code, entry = run_json("get", "stashly:app:t", "--url", url, cwd=tmp_path)
    assert code == 0
    assert entry["kind"] == "signed pickle"
    assert entry["signature"].startswith("not checked")
    assert "value" not in entry
    assert "value_repr" not in entry
    verified = run("get", "stashly:app:t", "--url", url, cwd=tmp_path, env={"STASHLY_SECRETS": PICKLE_SECRET})
    assert verified.returncode == 0, verified.stderr
    assert "signature valid" in verified.stdout
    assert "{'pair': (1, 2)}" in verified.stdout
    other = "another-secret-that-is-also-32-bytes-long"
    code, entry = run_json("get", "stashly:app:t", "--url", url, cwd=tmp_path, env={"STASHLY_SECRETS": other})
    assert code == 0
    assert entry["signature"].startswith("INVALID")
    assert "value_repr" not in entry
    assert other not in json.dumps(entry)
    assert PICKLE_SECRET not in verified.stdout + verified.stderr


# -- keys ------------------------------------------------------------------------------------------------------


def test_keys_lists_one_namespace(cm: CacheManager, tmp_path: Path, url: str) -> None:
    populate(cm)
    code, document = run_json("keys", "app", "--url", url, cwd=tmp_path)
    assert code == 0
    assert document["keys"] == [f"stashly:app:user:{i}" for i in range(3)]  # not apple's, nor the guard
    assert document["truncated"] is False
    glob = run("keys", "a*", "--url", url, cwd=tmp_path)  # a literal namespace, never a pattern
    assert glob.stdout.splitlines() == ["stashly:a*:k0", "stashly:a*:k1"]
    limited = run("keys", "app", "--limit", "2", "--url", url, cwd=tmp_path)
    assert limited.returncode == 0
    assert len(limited.stdout.splitlines()) == 2
    assert "--limit 0" in limited.stderr
    failed(run("keys", "empty", "--url", url, cwd=tmp_path), 1, "no keys in namespace 'empty'")


# -- stats -----------------------------------------------------------------------------------------------------


def test_stats_counts_memory_and_ttls_per_namespace(url: str, raw: redis.Redis, tmp_path: Path) -> None:
    with CacheManager(url=url, namespace="app", allow_no_expiry=True) as manager:
        for i in range(3):
            manager.set(f"short:{i}", i, ttl=30)
        manager.set("hour", 1, ttl=600)
        manager.set("day", 1, ttl=7200, namespace="auth")
        manager.set("week", 1, ttl=7 * 86400, namespace="auth")
        manager.set("forever", 1, ttl=None, namespace="auth")
        manager.remove("absent", namespace="auth")
    raw.set("elsewhere:app:x", b"1")  # outside the prefix: not counted
    code, document = run_json("stats", "--url", url, cwd=tmp_path)
    assert code == 0
    assert document["keys"] == 7
    app, auth = document["namespaces"]["app"], document["namespaces"]["auth"]
    assert app["keys"] == 4
    assert app["ttl"] == {"<1m": 3, "<1h": 1, "<1d": 0, "longer": 0, "no expiry": 0}
    assert auth["ttl"] == {"<1m": 0, "<1h": 0, "<1d": 1, "longer": 1, "no expiry": 1}
    assert app["memory_bytes"] > 0
    assert app["memory_sampled"] is False
    assert document["internal"] == {"guard": 1, "lock": 0, "other": 0}
    text = run("stats", "--url", url, cwd=tmp_path).stdout
    assert "7 keys in 2 namespaces" in text
    assert any(line.split()[:2] == ["app", "4"] for line in text.splitlines())
    code, only = run_json("stats", "--namespace", "auth", "--url", url, cwd=tmp_path)
    assert code == 0
    assert list(only["namespaces"]) == ["auth"]
    assert only["keys"] == 3


# -- flush -----------------------------------------------------------------------------------------------------


def test_flush_removes_exactly_that_namespace(cm: CacheManager, raw: redis.Redis, tmp_path: Path, url: str) -> None:
    populate(cm)
    raw.set("stashly:app", b"not an entry")  # no separator after the namespace
    raw.set("other:app:x", b"not ours")
    before = all_keys(raw)
    result = run("flush", "app", "--yes", "--url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removed 3 keys of namespace 'app'" in result.stdout
    assert all_keys(raw) == before - {f"stashly:app:user:{i}".encode() for i in range(3)} | {b"stashly::guard:app"}
    assert raw.get("stashly::guard:app") == b"1"  # fills racing the flush are not stored
    code, document = run_json("flush", "a*", "--yes", "--url", url, cwd=tmp_path)
    assert code == 0
    assert document["removed"] == 2
    assert raw.exists("stashly:apple:k0", "stashly:apple:k1") == 2


def test_flush_asks_first_and_a_refusal_removes_nothing(
    cm: CacheManager, raw: redis.Redis, tmp_path: Path, url: str
) -> None:
    populate(cm)
    before = all_keys(raw)
    for answer in ("n\n", "", "yes please\n"):
        result = run("flush", "app", "--url", url, cwd=tmp_path, stdin=answer)
        assert "Remove 3 keys of namespace 'app'" in result.stderr
        failed(result, 1, "nothing removed")
        assert all_keys(raw) == before
    confirmed = run("flush", "app", "--url", url, cwd=tmp_path, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "removed 3 keys" in confirmed.stdout
    assert raw.exists("stashly:app:user:0") == 0


# -- failures --------------------------------------------------------------------------------------------------


def test_a_stopped_server_exits_4_for_every_command(disposable_redis: RedisServer, tmp_path: Path) -> None:
    url = disposable_redis.url
    disposable_redis.stop()
    for command in (["ping"], ["stats"], ["get", "k"], ["keys", "app"], ["flush", "app", "--yes"]):
        failed(run(*command, "--url", url, cwd=tmp_path), 4, "cannot reach", "Connection refused")


def test_a_hung_server_exits_4(disposable_redis: RedisServer, tmp_path: Path) -> None:
    disposable_redis.pause()
    result = run("ping", "--timeout", "0.5", "--url", disposable_redis.url, cwd=tmp_path)
    failed(result, 4, "timed out", "timeout 0.5 s")


def test_configuration_errors_exit_3(tmp_path: Path) -> None:
    failed(run("ping", cwd=tmp_path), 3, "--url", "STASHLY_URL")  # nothing configured: the memory backend
    (tmp_path / "config.json").write_text('{"redis": {"host": "localhost", ')
    failed(run("ping", cwd=tmp_path), 3, "config.json", "malformed JSON")
    secret = "pa55-in-config"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"redis": {"url": f"redis://user:{secret}@localhost:99999/0"}}))
    result = run("stats", "--config", str(bad), cwd=tmp_path)
    failed(result, 3, "port")
    assert secret not in result.stderr
    failed(run("ping", "--config", str(tmp_path / "absent.json"), cwd=tmp_path), 3, "file not found")
    failed(run("ping", "--url", "http://localhost", cwd=tmp_path), 3, "scheme")
    env = {"STASHLY_URL": "redis://localhost:6379/0", "STASHLY_SOCKET_TIMEOUT": "soon"}
    failed(run("ping", cwd=tmp_path, env=env), 3, "STASHLY_SOCKET_TIMEOUT")


def test_config_json_in_the_working_directory_is_read(url: str, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"redis": {"url": url}, "app": {"other": "section"}}))
    code, document = run_json("ping", cwd=tmp_path)
    assert code == 0
    assert document["url"] == url


USAGE_ERRORS: list[list[str]] = [
    [],
    ["frobnicate"],
    ["flush"],
    ["flush", "a:b"],
    ["keys", "app", "--limit", "-1"],
    ["ping", "--timeout", "0"],
    ["get"],
    ["get", ""],
    ["get", "\udcff"],  # an undecodable byte in argv
    ["stats", "--prefix", "has space"],
]
"""Command lines argparse refuses: each is a one-line usage error, exit 2 (test_cli_edges adds hostile ones)."""


@pytest.mark.parametrize("args", USAGE_ERRORS)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = run(*args, cwd=tmp_path)
    failed(result, 2, "--help)")
    assert result.stderr.count("\n") == 1, result.stderr  # one line, as every other error


def test_least_privilege_user_and_passwords_never_printed(tmp_path: Path) -> None:
    with RedisServer(acl=True) as server:  # the documented ACL user: no PING, INFO or MEMORY USAGE
        assert ACL_PASSWORD in server.url
        with CacheManager(url=server.url, namespace="app") as manager:
            manager.set("user:1", {"id": 1}, ttl=60)
        outputs = []
        for command in (["ping"], ["stats"], ["get", "user:1", "--namespace", "app"], ["keys", "app"]):
            result = run(*command, "--url", server.url, cwd=tmp_path)
            assert result.returncode == 0, (command, result.stderr)
            outputs.append(result.stdout + result.stderr)
        assert f"user        {ACL_USER} (password login)" in outputs[0]
        assert "memory: n/a" in outputs[1]
        flushed = run("flush", "app", "--yes", "--json", cwd=tmp_path, env={"STASHLY_URL": server.url})
        assert json.loads(flushed.stdout)["removed"] == 1
        outputs.append(flushed.stdout + flushed.stderr)
        wrong = server.url.replace(ACL_PASSWORD, "wrong-pw-0x5f3759df")
        refused = run("keys", "app", "--url", wrong, cwd=tmp_path)
        failed(refused, 4, "authentication failed", f"user {ACL_USER!r}")
        outputs.append(refused.stdout + refused.stderr)
        env = {"STASHLY_URL": server.url.replace(f"{ACL_USER}:{ACL_PASSWORD}@", ""), "STASHLY_USERNAME": ACL_USER}
        by_env = run("get", "user:1", cwd=tmp_path, env=env | {"STASHLY_PASSWORD": "wrong-pw-0x5f3759df"})
        failed(by_env, 4, "authentication failed")
        outputs.append(by_env.stdout + by_env.stderr)
    for output in outputs:
        assert ACL_PASSWORD not in output
        assert "wrong-pw-0x5f3759df" not in output


def test_the_console_script(url: str, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "stashly"
    assert script.exists(), "the stashly script is missing: pip install -e ."
    environ = {name: value for name, value in os.environ.items() if not name.startswith("STASHLY_")} | GENEROUS_ENV
    result = subprocess.run(
        [str(script), "ping", "--url", url], capture_output=True, text=True, cwd=tmp_path, env=environ, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PONG")


def test_stats_on_a_large_database_samples_memory_and_draws_progress_on_a_terminal(
    raw: redis.Redis, tmp_path: Path, url: str
) -> None:
    with CacheManager(url=url, namespace="big") as manager, raw.pipeline(transaction=False) as pipe:
        for i in range(12_000):
            key = manager.key(f"k{i}")
            pipe.set(key, b'{"stashly":1,"key":"0000000000000000","value":1}', px=600_000)
        pipe.execute()
    leader, follower = pty.openpty()  # stderr a terminal, stdout a pipe
    try:
        environ = {name: value for name, value in os.environ.items() if not name.startswith("STASHLY_")} | GENEROUS_ENV
        result = subprocess.run(
            [sys.executable, "-m", "stashly", "stats", "--json", "--url", url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            cwd=tmp_path,
            env=environ,
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the writer is gone and everything was read
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert result.returncode == 0, terminal
    assert b"scanning" in terminal
    assert b"Traceback" not in terminal
    big = json.loads(result.stdout)["namespaces"]["big"]  # stdout stays clean JSON
    assert big["keys"] == 12_000
    assert big["memory_sampled"] is True
    assert big["memory_bytes"] > 0
