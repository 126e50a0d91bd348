"""The command line against hostile data in Redis and hostile arguments: no traceback, the documented exit code,
one ``stashly: error:`` line, a JSON document on every exit with ``--json``, and nothing a terminal would obey.

Most tests run :func:`stashly.cli.main` in this process (the hypothesis property runs it hundreds of times); an
exception escaping it is the traceback a user would have seen. Data is written with a plain redis client, as
another program (or an attacker with write access to the cache) would write it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stashly import CacheManager
from stashly.cli import main
from stashly.storage import codec

from tests.harness.server import ACL_PASSWORD, ACL_USER, RedisServer
from tests.test_cli import USAGE_ERRORS

pytestmark = pytest.mark.timeout(300)

# Characters no output may carry raw: C0 but the newline ending each line, DEL, C1, bidi controls, line and
# paragraph separators, lone surrogates.
UNSAFE = frozenset(
    [*range(0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
     *range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0xD800, 0xE000)]
)  # fmt: skip
HOSTILE = "\x1b[31m\x07\r\n\t\x00\x08\x7f\x9b\x85\u202e\u2066\u200f\u2028é漢\\\"'"
SECRET = "a-pickle-signing-secret-of-32-bytes-or-more"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def document(self) -> Any:
        return orjson.loads(self.out)  # strict: no NaN, no lone surrogate escapes


def cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> Result:
    """``stashly ARGS`` in this process, stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        patch.setattr(sys, "stdin", io.StringIO(stdin))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


def raw_characters(text: str) -> list[str]:
    return [char for char in text if ord(char) in UNSAFE]


def assert_clean(result: Result) -> None:
    """Nothing on stdout or stderr that a terminal would act on, and every error is one line."""
    assert not raw_characters(result.out), result.out
    assert not raw_characters(result.err), result.err
    errors = [line for line in result.err.splitlines() if line.startswith("stashly: error: ")]
    assert len(errors) == (result.code != 0), result.err


@pytest.fixture(autouse=True)
def _no_config_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def url(redis_url: str) -> str:
    """The private server as its default user (``stats`` uses MEMORY USAGE; see test_cli)."""
    return redis_url.replace(f"{ACL_USER}:{ACL_PASSWORD}@", "")


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(url) as client:
        yield client


def envelope(key: str, value: object) -> bytes:
    return codec.encode(value, key)


# -- the bugs reported ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [b"abc", b"1.5", b" 3", b"3\n", b"7" * 5000, b"99999999999999999999", b"\xff\xfe", b"\x1b[31m"],
    ids=["letters", "decimal", "space", "newline", "5000-digits", "beyond-64-bits", "not-utf8", "escape"],
)
def test_get_an_entry_whose_generation_stamp_is_not_a_number(url: str, raw: redis.Redis, stamp: bytes) -> None:
    key = "stashly:app:k"
    raw.set(key, b"\0" + stamp + b"\0" + envelope(key, {"id": 1}))
    text = cli("get", key, "--url", url)
    assert text.code == 0, text.err
    assert "is not a number" in text.out
    assert_clean(text)
    result = cli("get", key, "--url", url, "--json")
    assert result.code == 0, result.err
    entry = result.document()
    assert entry["generation"] is None
    assert entry["value"] == {"id": 1}
    assert "is not a number" in entry["note"]
    assert entry["note"].endswith("read as a miss")
    with CacheManager(url=url, namespace="app", strict=True) as manager:
        assert manager.get("k", default="miss") == "miss"  # what the note says


def test_a_counter_that_is_not_a_number_is_named_and_a_matching_stamp_is_not_called_a_miss(
    url: str, raw: redis.Redis
) -> None:
    key = "stashly:app:k"
    raw.set("stashly::gen:app", b"abc")
    raw.set(key, b"\0abc\0" + envelope(key, 1))
    entry = cli("get", key, "--url", url, "--json").document()
    assert entry["generation"] is None
    assert "generation counter stashly::gen:app holds 'abc', not a number" in entry["note"]
    assert "miss" not in entry["note"]
    with CacheManager(url=url, namespace="app", strict=True) as manager:
        assert manager.get("k") == 1  # the library compares the bytes, as the CLI says


def test_get_json_on_a_key_that_is_not_a_string_prints_a_document(url: str, raw: redis.Redis) -> None:
    raw.rpush("stashly:app:list", b"x")
    result = cli("get", "stashly:app:list", "--url", url, "--json")
    assert result.code == 1
    document = result.document()
    assert document["found"] is False
    assert document["key"] == "stashly:app:list"
    assert "not a string" in document["error"]
    assert result.err == f"stashly: error: {document['error']}\n"


def test_a_string_entry_is_shown_even_when_the_other_candidate_is_not_a_string(url: str, raw: redis.Redis) -> None:
    raw.rpush("stashly:default:stashly:app:k", b"x")  # what KEY means relative to the default namespace
    raw.set("stashly:app:k", envelope("stashly:app:k", 1))
    result = cli("get", "stashly:app:k", "--url", url, "--json")
    assert result.code == 0, result.err
    assert result.document()["value"] == 1


def test_keys_and_get_escape_control_and_bidi_characters(url: str, raw: redis.Redis) -> None:
    key = "stashly:app:k\x1b[31mred\x07\r\x9b2J\u202egnp.exe"
    value = "v\x1b]0;owned\x07\x1b[2J\r\x9b31m\u202e\u2066\x7f"
    raw.set(key, envelope(key, value))
    listing = cli("keys", "app", "--url", url)
    assert listing.code == 0, listing.err
    assert listing.out == "stashly:app:k\\x1b[31mred\\x07\\r\\x9b2J\\u202egnp.exe\n"
    shown = cli("get", key, "--url", url)
    assert shown.code == 0, shown.err
    assert "key    stashly:app:k\\x1b[31mred\\x07\\r\\x9b2J\\u202egnp.exe\n" in shown.out
    assert '"v\\u001b]0;owned\\u0007\\u001b[2J\\r\\u009b31m\\u202e\\u2066\\u007f"' in shown.out  # valid JSON
    assert_clean(listing)
    assert_clean(shown)
    documents = cli("keys", "app", "--url", url, "--json"), cli("get", key, "--url", url, "--json")
    for document in documents:
        assert not raw_characters(document.out)
    assert documents[0].document()["keys"] == [key]  # JSON carries the exact name
    assert documents[1].document()["value"] == value
    assert json.loads(documents[1].out)["key"] == key
    missing = cli("get", "user:\x1b[31m\u202e", "--namespace", "app", "--url", url)
    assert missing.code == 1
    assert "stashly:app:user:\\x1b[31m\\u202e" in missing.err
    assert_clean(missing)


def test_stats_escapes_namespaces_found_in_redis(url: str, raw: redis.Redis) -> None:
    raw.set("stashly:\x1b[31mevil\u202e:k", b"1")
    raw.set(b"stashly:\xff\xfe:k", b"1")
    result = cli("stats", "--url", url)
    assert result.code == 0, result.err
    assert_clean(result)
    assert "\\x1b[31mevil\\u202e" in result.out
    assert set(cli("stats", "--url", url, "--json").document()["namespaces"]) == {"\x1b[31mevil\u202e", "\\xff\\xfe"}


@pytest.mark.parametrize("args", [*USAGE_ERRORS, ["ping", "\x1b[31m\x9b\u202e"], ["--json=1", "ping"]])
def test_usage_errors_are_one_line_and_a_json_document_with_json(args: list[str]) -> None:
    text = cli(*args)
    assert text.code == 2
    assert text.out == ""
    assert text.err.startswith("stashly: error: ")
    assert text.err.count("\n") == 1, text.err
    assert "--help)" in text.err
    assert_clean(text)
    if "--json=1" in args:
        return
    for where in (["--json", *args], [*args, "--json"]):
        result = cli(*where)
        assert result.code == 2
        assert result.document() == {"error": text.err.removeprefix("stashly: error: ").rstrip("\n")}


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "1.5", "0x10"])
def test_a_limit_that_is_not_an_ascii_whole_number_is_named(limit: str) -> None:
    result = cli("keys", "app", "--limit", limit)
    assert result.code == 2
    assert f"expected a whole number >= 0 (0: no limit), found {limit!r}" in result.err


def test_help_and_version_still_print_and_exit_0() -> None:
    assert cli("--version").code == 0
    help_text = cli("get", "--help")
    assert help_text.code == 0
    assert help_text.out.startswith("usage: stashly get")


def test_usage_error_in_a_subprocess_is_one_line(tmp_path: Path) -> None:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("STASHLY_")}
    result = subprocess.run(
        [sys.executable, "-m", "stashly", "keys", "app", "--limit", "x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environ,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "stashly: error: argument --limit: expected a whole number >= 0 (0: no limit), found 'x' "
        "(see stashly keys --help)\n"
    )


# -- other error exits: a JSON document too ---------------------------------------------------------------------


def test_an_unreachable_server_exits_4_with_one_line_and_a_json_document(disposable_redis: RedisServer) -> None:
    url = disposable_redis.url
    disposable_redis.stop()
    for command in (["ping"], ["stats"], ["get", "k"], ["keys", "app"], ["flush", "app", "--yes"]):
        text = cli(*command, "--url", url)
        assert text.code == 4
        assert text.out == ""
        assert "cannot reach" in text.err
        assert_clean(text)
        result = cli(*command, "--url", url, "--json")
        assert result.code == 4
        assert result.document() == {"error": text.err.removeprefix("stashly: error: ").rstrip("\n")}


def test_a_refused_login_and_a_refused_command_exit_4_with_a_json_document() -> None:
    with RedisServer() as server:  # its own: the refusals below land in its ACL LOG on purpose
        with server.client() as admin:
            admin.acl_setuser("viewer", enabled=True, passwords=["+viewer-pw"], keys=["*"], commands=["+get"])
        host = server.url.removeprefix("redis://")
        wrong = cli("keys", "app", "--url", f"redis://viewer:wrong-pw@{host}", "--json")
        assert wrong.code == 4
        assert "authentication failed" in wrong.document()["error"]
        assert "wrong-pw" not in wrong.out + wrong.err
        refused = cli("keys", "app", "--url", f"redis://viewer:viewer-pw@{host}", "--json")  # no SCAN for viewer
        assert refused.code == 4
        assert "permission denied" in refused.document()["error"]
        assert "viewer-pw" not in refused.out + refused.err


def test_configuration_errors_and_a_refused_flush_print_a_json_document(url: str, raw: redis.Redis) -> None:
    unconfigured = cli("ping", "--json")
    assert unconfigured.code == 3
    assert "no Redis configured" in unconfigured.document()["error"]
    bad = cli("ping", "--json", env={"STASHLY_URL": url, "STASHLY_SOCKET_TIMEOUT": "soon\x1b[31m"})
    assert bad.code == 3
    assert "STASHLY_SOCKET_TIMEOUT" in bad.document()["error"]
    assert_clean(bad)
    raw.set("stashly:app:k", b"1")
    refused = cli("flush", "app", "--url", url, "--json", stdin="n\n")
    assert refused.code == 1
    assert refused.document()["removed"] == 0
    assert "nothing removed" in refused.document()["error"]
    assert raw.exists("stashly:app:k")


def test_keys_of_an_empty_namespace_prints_one_document(url: str) -> None:
    result = cli("keys", "empty", "--url", url, "--json")
    assert result.code == 1
    document = result.document()  # one document: orjson refuses trailing data
    assert (document["count"], document["keys"]) == (0, [])
    assert "no keys in namespace 'empty'" in document["error"]


# -- siblings: every parse of stored data -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [b"99999999999999999999", b"7" * 5000, b"-3", b"12abc", b"\x1b[2J"],
    ids=["beyond-64-bits", "5000-digits", "negative", "digits-then-letters", "escape"],
)
def test_get_a_guard_holding_anything(url: str, raw: redis.Redis, stored: bytes) -> None:
    raw.set("stashly::guard:app", stored)
    result = cli("get", "stashly::guard:app", "--url", url, "--json")
    assert result.code == 0, result.err
    entry = result.document()
    assert entry["kind"] == "guard"
    if stored == b"-3":
        assert entry["value"] == -3
        assert "note" not in entry
    else:
        assert entry["value"] == stored.decode()
        assert "not a number" in entry["note"]
    assert_clean(cli("get", "stashly::guard:app", "--url", url))


@pytest.mark.parametrize("depth", [255, 1000])
def test_get_a_value_nested_deeper_than_orjson_writes(url: str, raw: redis.Redis, depth: int) -> None:
    key = "stashly:app:deep"
    raw.set(key, envelope(key, 1)[: -len(b"1}")] + b"[" * depth + b"]" * depth + b"}")
    result = cli("get", key, "--url", url, "--json")
    assert result.code == 0, result.err
    value = result.document()["value"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == []
    assert cli("get", key, "--url", url).code == 0
    assert sys.getrecursionlimit() < 10_000  # put back


def test_get_a_pickle_envelope_of_garbage(url: str, raw: redis.Redis) -> None:
    for stored in (b"stashly-pickle:", b"stashly-pickle:\x1b[31m", b"stashly-pickle:1:zz:\x80\x04garbage"):
        raw.set("stashly:app:p", stored)
        for env in ({}, {"STASHLY_SECRETS": SECRET}):
            result = cli("get", "stashly:app:p", "--url", url, env=env)
            assert result.code == 0, result.err
            assert_clean(result)
            assert cli("get", "stashly:app:p", "--url", url, "--json", env=env).document()["kind"] == "signed pickle"


class Unshowable:
    """Unpickles fine; its repr raises (the CLI imports this module as the test does: tests/ is on sys.path)."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_get_a_verified_pickle_whose_repr_raises(url: str) -> None:
    with CacheManager(url=url, namespace="app", serializer="pickle", secrets=[SECRET]) as pickled:
        pickled.set("u", Unshowable(), ttl=60)
    result = cli("get", "stashly:app:u", "--url", url, "--json", env={"STASHLY_SECRETS": SECRET})
    assert result.code == 0, result.err
    entry = result.document()
    assert entry["signature"] == "valid"
    assert "cannot show the value: RuntimeError('no repr for you')" in entry["note"]
    assert cli("get", "stashly:app:u", "--url", url, env={"STASHLY_SECRETS": SECRET}).code == 0


# -- the property -----------------------------------------------------------------------------------------------

hostile_text = st.text(st.sampled_from(HOSTILE) | st.characters(blacklist_categories=["Cs"]), max_size=16)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def stored_entries(draw: st.DrawFn) -> tuple[str, bytes, bytes | None]:
    """(key, stored bytes, generation counter or None): envelopes right and wrong, stamps, pickles, noise."""
    key = draw(
        st.builds(lambda tail: "stashly:app:" + tail, hostile_text.filter(bool))
        | st.sampled_from(["stashly::guard:app", "stashly::lock:app:k", "stashly::gen:app"])
    )
    binding = codec.binding(key).decode()
    document = st.fixed_dictionaries(
        {"stashly": st.sampled_from([1, 2, "1"]) | json_values, "key": st.sampled_from([binding]) | hostile_text},
        optional={"value": json_values},
    ).map(orjson.dumps)
    body = draw(document | st.binary(max_size=48) | st.builds(b"stashly-pickle:".__add__, st.binary(max_size=48)))
    stamped = st.builds(lambda stamp, payload: b"\0" + stamp + b"\0" + payload, st.binary(max_size=24), st.just(body))
    stored = draw(st.just(body) | stamped | st.builds(b"\0".__add__, st.just(body)))
    counter = draw(st.none() | st.binary(max_size=24) | st.integers(0, 2**63 - 1).map(lambda n: str(n).encode()))
    return key, stored, counter


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=stored_entries(), foreign_name=st.binary(min_size=1, max_size=16), secrets=st.booleans())
def test_no_traceback_and_no_raw_control_characters_whatever_redis_holds(
    url: str, raw: redis.Redis, entry: tuple[str, bytes, bytes | None], foreign_name: bytes, secrets: bool
) -> None:
    key, stored, counter = entry
    raw.flushdb()
    raw.set(key, stored)
    if counter is not None and key != "stashly::gen:app":
        raw.set("stashly::gen:app", counter)
    raw.set(b"stashly:app:" + foreign_name, b"x")  # a name that need not be UTF-8
    raw.set(b"stashly:" + foreign_name.replace(b":", b"") + b"\x1b:k", b"x")
    env = {"STASHLY_SECRETS": SECRET} if secrets else {}
    shown = cli("get", key, "--url", url, env=env)
    assert shown.code == 0, shown.err
    assert_clean(shown)
    result = cli("get", key, "--url", url, "--json", env=env)
    assert result.code == 0, result.err
    assert not raw_characters(result.out)
    document = result.document()
    assert (document["found"], document["key"]) == (True, key)
    for command in (["keys", "app"], ["stats"]):
        text = cli(*command, "--url", url)
        assert text.code == 0, text.err
        assert_clean(text)
        listed = cli(*command, "--url", url, "--json")
        assert listed.code == 0, listed.err
        assert not raw_characters(listed.out)
        if command == ["keys", "app"]:
            names = listed.document()["keys"]
            assert foreign_name.decode("utf-8", "backslashreplace") in {
                name.removeprefix("stashly:app:") for name in names
            }
            assert key in names or not key.startswith("stashly:app:")
