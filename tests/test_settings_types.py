"""Every setting, from every source, given the wrong type or an unusable value: a ConfigError naming the source, the
field and what was expected, and never a silent coercion (``"false"`` read as true, ``True`` as 1, ``"a,b"`` split).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stashly import CacheManager
from stashly.config.settings import Settings, resolve
from stashly.errors import ConfigError

from tests.harness.tls import make_ca, make_tls_files

SECRET = "s3cret-" + "k" * 33  # a valid HMAC secret, never to be echoed
PASSWORD = "Hunter2-pw"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default config.json is looked up in the working directory; keep the repository's out of it.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write_config(directory: Path, document: object) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(**kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# What each kind of field must refuse. JSON can say all of these; the environment only the strings.
NOT_A_BOOL = ["false", "true", "", 0, 1, 1.0, [], {}]
NOT_A_COUNT = [True, False, 5.0, 2.5, "5", "", 0, -1, [], {}]
NOT_SECONDS = [True, False, "1", "", 0, -1, math.nan, math.inf, -math.inf, 1e10, 10**400, [], {}]
NOT_A_NAME = ["", "a:b", "has space", 5, True, [], {}]
NOT_TEXT = [5, True, 1.5, [], {}]
NOT_A_FILE = ["", "/nonexistent/ca.pem", 5, True, []]
NOT_A_URL = ["", "cache:6379", "http://cache", "redis://cache/0?socket_timeout=1", 6379, True, []]
KINDS: dict[str, list[object]] = {
    "url": NOT_A_URL,
    "username": NOT_TEXT,
    "password": NOT_TEXT,
    "namespace": NOT_A_NAME,
    "prefix": NOT_A_NAME,
    "default_ttl": NOT_SECONDS,
    "allow_no_expiry": NOT_A_BOOL,
    "strict": NOT_A_BOOL,
    "connect_timeout": NOT_SECONDS,
    "socket_timeout": NOT_SECONDS,
    "max_connections": [*NOT_A_COUNT, 10_001],
    "max_entries": NOT_A_COUNT,
    "protocol": [True, 2.0, "3", 1, 4, []],
    "breaker_threshold": NOT_A_COUNT,
    "breaker_cooldown": NOT_SECONDS,
    "ttl_jitter": [True, "0.1", 1, 1.5, -0.1, math.nan, []],
    "max_value_bytes": NOT_A_COUNT,
    "ssl_ca_certs": NOT_A_FILE,
    "ssl_certfile": NOT_A_FILE,
    "ssl_keyfile": NOT_A_FILE,
    "serializer": ["JSON", "yaml", "", True, 1, ["json"]],
    "secrets": [SECRET, f"{SECRET},{SECRET}", [], ["short"], [SECRET, 7], [True], {"a": SECRET}, True],
    "local": NOT_A_BOOL,
    "local_ttl": NOT_SECONDS,
    "local_max_entries": NOT_A_COUNT,
    "local_max_bytes": NOT_A_COUNT,
    "stats_max_names": NOT_A_COUNT,
    "read_from_replicas": NOT_A_BOOL,
}
# The config.json keys that are not Settings fields.
FILE_ONLY: dict[str, list[object]] = {
    "ttl": NOT_SECONDS,
    "host": ["", "cache/0", "a b", 5, True, [], {}],
    "port": [True, "6379", 6379.0, 0, 65536, -1, [], {}],
    "db": [True, "0", 0.0, -1, [], {}],
    "ssl": NOT_A_BOOL,
    "cluster": NOT_A_BOOL,
}
UNECHOED = {"password", "username", "secrets"}


def cases(table: dict[str, list[object]]) -> list[tuple[str, object]]:
    return [(field, value) for field, values in table.items() for value in values]


def test_every_field_has_wrong_values_in_the_table() -> None:
    assert set(KINDS) == {field.name for field in dataclasses.fields(Settings)}


@pytest.mark.parametrize(("field", "value"), cases(KINDS) + cases(FILE_ONLY))
def test_a_wrong_value_in_config_json_names_the_file_the_key_and_the_expectation(
    tmp_path: Path, field: str, value: object
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"redis": {field: value}}, allow_nan=True), encoding="utf-8")
    message = config_error(config_path=path, env={})
    assert message.startswith(f"config.json {path}: redis.{field}")
    assert "expected" in message
    if field in UNECHOED and isinstance(value, str | list):
        assert SECRET not in message


@pytest.mark.parametrize(("field", "value"), cases(KINDS))
def test_a_wrong_argument_names_the_argument(field: str, value: object) -> None:
    message = config_error(env={}, **{field: value})
    assert message.startswith(f"argument {field}")
    assert "expected" in message
    if field in UNECHOED:
        assert SECRET not in message


BAD_SECONDS_TEXT = ["0", "-1", "nan", "inf", "1e10", "ten", "true", "1s"]
BAD_COUNT_TEXT = ["0", "-1", "5.0", "2.5", "five", "true"]
BAD_BOOL_TEXT = ["2", "enabled", "nope", "-1"]
# Any text is a valid username or password; those two are checked for Unicode below.
ENV_KINDS: dict[str, list[str]] = {
    "url": ["cache:6379", "http://cache", "redis://cache/0?socket_timeout=1", "memory://cache"],
    "namespace": ["a:b", "has space"],
    "prefix": ["a:b", "tab\there"],
    "default_ttl": BAD_SECONDS_TEXT,
    "allow_no_expiry": BAD_BOOL_TEXT,
    "strict": BAD_BOOL_TEXT,
    "connect_timeout": BAD_SECONDS_TEXT,
    "socket_timeout": BAD_SECONDS_TEXT,
    "max_connections": [*BAD_COUNT_TEXT, "10001"],
    "max_entries": BAD_COUNT_TEXT,
    "protocol": ["3.0", "1", "4", "resp3"],
    "breaker_threshold": BAD_COUNT_TEXT,
    "breaker_cooldown": BAD_SECONDS_TEXT,
    "ttl_jitter": ["1", "-0.1", "nan", "x"],
    "max_value_bytes": BAD_COUNT_TEXT,
    "ssl_ca_certs": ["/nonexistent/ca.pem"],
    "ssl_certfile": ["/nonexistent/cert.pem"],
    "ssl_keyfile": ["/nonexistent/key.pem"],
    "serializer": ["JSON", "yaml"],
    "secrets": ["short", f"{SECRET},", f"{SECRET},,{SECRET}", f"short,{SECRET}"],
    "local": BAD_BOOL_TEXT,
    "local_ttl": BAD_SECONDS_TEXT,
    "local_max_entries": BAD_COUNT_TEXT,
    "local_max_bytes": BAD_COUNT_TEXT,
    "stats_max_names": BAD_COUNT_TEXT,
    "read_from_replicas": BAD_BOOL_TEXT,
}


def test_every_field_but_the_credentials_has_bad_environment_texts() -> None:
    assert set(ENV_KINDS) == {field.name for field in dataclasses.fields(Settings)} - {"username", "password"}


@pytest.mark.parametrize(("field", "text"), [(field, text) for field, texts in ENV_KINDS.items() for text in texts])
def test_a_wrong_environment_variable_names_the_variable(field: str, text: str) -> None:
    variable = f"STASHLY_{field.upper()}"
    message = config_error(env={variable: text})
    assert message.startswith(f"environment {variable}")
    assert "expected" in message
    assert SECRET not in message


@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(), st.lists, max_leaves=4))
def test_no_json_value_of_the_wrong_type_is_coerced_into_a_count_or_a_boolean(value: object) -> None:
    if type(value) is int and value >= 1:
        assert resolve(env={}, max_entries=value).max_entries == value
    elif value is not None:
        assert "argument max_entries" in config_error(env={}, max_entries=value)
    if type(value) is bool:
        assert resolve(env={}, strict=value).strict is value
    elif value is not None:
        assert "argument strict" in config_error(env={}, strict=value)


@given(seconds=st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans())
def test_seconds_are_positive_finite_numbers_no_larger_than_a_socket_takes(seconds: float) -> None:
    valid = type(seconds) is not bool and 0 < seconds <= 1e9
    if valid:
        assert resolve(env={}, socket_timeout=seconds).socket_timeout == float(seconds)
    else:
        assert "argument socket_timeout" in config_error(env={}, socket_timeout=seconds)


def test_a_huge_timeout_fails_the_configuration_not_the_first_request() -> None:
    # It used to be accepted, then the first connection raised OverflowError from the socket, fail-open or not.
    with pytest.raises(ConfigError, match=r"^argument connect_timeout: .*at most 1e\+09"):
        CacheManager(url="redis://127.0.0.1:1/0", connect_timeout=1e10)


# --- secrets and the pickle serializer


def test_secrets_as_one_string_in_the_file_or_an_argument_are_refused(tmp_path: Path) -> None:
    document = {"redis": {"serializer": "pickle", "secrets": f"{SECRET},{SECRET}x"}}
    message = config_error(config_path=write_config(tmp_path, document), env={})
    assert message.startswith(f"config.json {tmp_path / 'config.json'}: redis.secrets: expected a list")
    assert "found a value of type str" in message
    assert SECRET not in message
    message = config_error(env={}, serializer="pickle", secrets=SECRET)
    assert message.startswith("argument secrets: expected a list")
    assert SECRET not in message


def test_the_environment_splits_secrets_at_commas_and_ignores_the_spaces_around_them() -> None:
    settings = resolve(env={"STASHLY_SECRETS": f" {SECRET} , {SECRET}2 ", "STASHLY_SERIALIZER": "pickle"})
    assert settings.secrets == (SECRET, SECRET + "2")


def test_a_bad_secret_is_named_by_position_never_by_value() -> None:
    message = config_error(env={}, secrets=[SECRET, SECRET[:20]])
    assert "found item 1 of 20 bytes" in message
    assert SECRET[:20] not in message


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("file", "config.json {path}: redis.serializer"),
        ("env", "environment STASHLY_SERIALIZER"),
        ("argument", "argument serializer"),
    ],
)
def test_pickle_without_secrets_names_where_pickle_was_asked_for(tmp_path: Path, where: str, source: str) -> None:
    path = write_config(tmp_path, {"redis": {"serializer": "pickle"} if where == "file" else {}})
    env = {"STASHLY_SERIALIZER": "pickle"} if where == "env" else {}
    arguments = {"serializer": "pickle"} if where == "argument" else {}
    message = config_error(config_path=path, env=env, **arguments)
    assert message.startswith(source.format(path=path) + ": serializer 'pickle' needs secrets, found none")
    assert "redis.secrets" in message
    assert "STASHLY_SECRETS" in message


def test_pickle_with_secrets_from_another_source_is_fine(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"serializer": "pickle"}})
    settings = resolve(config_path=path, env={"STASHLY_SECRETS": SECRET})
    assert (settings.serializer, settings.secrets) == ("pickle", (SECRET,))


@pytest.mark.parametrize("field", ["password", "username"])
def test_a_credential_that_is_not_unicode_is_refused_at_resolution(tmp_path: Path, field: str) -> None:
    # "\udc80" is what JSON's escape or a non-UTF-8 environment byte becomes; redis-py could not send it.
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"redis": {field: "pw\udc80"}}), encoding="utf-8")  # written as the escape
    assert "lone surrogate" in config_error(config_path=path, env={})
    assert "lone surrogate" in config_error(env={f"STASHLY_{field.upper()}": "pw\udc80"})
    assert "item 0 with a lone surrogate" in config_error(env={"STASHLY_SECRETS": SECRET + "\udc80"})


# --- the file's structure


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"redis": {"port": 6380, "port": 6379}}', "redis.port"),
        ('{"redis": {"host": "a"}, "redis": {"host": "b"}}', "redis"),
        ('{"redis": {"sentinel": {"service": "m", "nodes": ["a"], "service": "n"}}}', "redis.sentinel.service"),
        ('{"redis": {"cluster": true, "startup_nodes": [{"host": "a", "host": "b"}]}}', "redis.startup_nodes[0].host"),
    ],
)
def test_a_key_given_twice_is_refused_by_name(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    message = config_error(config_path=path, env={})
    assert message == f"config.json {path}: {key}: found the key twice (JSON keeps only the last)"


def test_duplicates_outside_the_redis_section_are_the_applications_business(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"app": {"debug": true, "debug": false}, "redis": {"namespace": "ns"}}', encoding="utf-8")
    assert resolve(config_path=path, env={}).namespace == "ns"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"sentinel": ["a:26379"]}, "redis.sentinel"),
        ({"sentinel": "a:26379"}, "redis.sentinel"),
        ({"cluster": True, "startup_nodes": {"host": "a"}}, "redis.startup_nodes"),
        ({"cluster": True, "startup_nodes": "a:7000"}, "redis.startup_nodes"),
        ({"cluster": True, "startup_nodes": [{"host": "a", "prot": 7000}]}, "redis.startup_nodes[0].prot"),
        ({"cluster": True, "startup_nodes": [["a", 7000]]}, "redis.startup_nodes[0]"),
        ({"sentinel": {"nodes": "a", "service": "m"}}, "redis.sentinel.nodes"),
        ({"tll": 5}, "redis.tll"),
    ],
)
def test_a_nested_section_of_the_wrong_shape_or_a_typo_is_named(
    tmp_path: Path, section: dict[str, object], key: str
) -> None:
    path = write_config(tmp_path, {"redis": section})
    assert config_error(config_path=path, env={}).startswith(f"config.json {path}: {key}: ")


# --- URL options: refused when the manager is built, not at its first connection


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("redis://cache:6379/0?bogus=1", "'bogus': stashly passes no options to redis-py"),
        ("redis://cache:6379/0?socket_timeout=30", "'socket_timeout': set socket_timeout (STASHLY_SOCKET_TIMEOUT)"),
        ("rediss://cache:6379/0?ssl_cert_reqs=none", "'ssl_cert_reqs'"),
        ("redis://cache:6379/0?db=2", "'db': put the database in the path"),
        ("redis://cache:6379/0?protocol=3", "set protocol (STASHLY_PROTOCOL)"),
        ("unix:///run/redis.sock?db=x", "'x' (str)"),
        ("unix:///run/redis.sock?db=1&db=2", "'db' twice"),
        ("unix:///run/redis.sock?timeout=1", "other than ?db="),
    ],
)
def test_url_options_are_refused_with_the_setting_to_use_instead(url: str, found: str) -> None:
    message = config_error(env={}, url=url)
    assert message.startswith("argument url")
    assert found in message


def test_a_url_option_never_echoes_its_value() -> None:
    assert PASSWORD not in config_error(env={}, url=f"redis://cache:6379/0?password={PASSWORD}")


def test_unix_socket_database_option_is_accepted() -> None:
    assert resolve(env={}, url="unix:///run/redis.sock?db=3").url == "unix:///run/redis.sock?db=3"


def test_an_unknown_url_option_in_config_json_fails_the_manager_not_its_first_request(tmp_path: Path) -> None:
    # It used to build, and then every request raised TypeError from redis-py (fail-open or not).
    path = write_config(tmp_path, {"redis": {"url": "redis://127.0.0.1:1/0?bogus=1"}})
    with pytest.raises(ConfigError, match=rf"^config\.json {path}: redis\.url: expected no URL options"):
        CacheManager.from_config(path)


# --- TLS files: loaded when the settings are resolved, not at the first connection


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    files = make_tls_files(directory)
    other = make_ca(directory / "other", "other-ca")
    encrypted = directory / "client-encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", files.client_key, "-aes256", "-passout", "pass:abcd", "-out", str(encrypted)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    (directory / "junk.pem").write_text("not a certificate\n", encoding="utf-8")
    (directory / "stranger.key").write_bytes(other[1].read_bytes())
    return directory


def test_tls_files_that_openssl_loads_are_accepted(tls_dir: Path) -> None:
    settings = resolve(
        env={},
        ssl_ca_certs=str(tls_dir / "stashly-test-ca.crt"),
        ssl_certfile=str(tls_dir / "client.crt"),
        ssl_keyfile=str(tls_dir / "client.key"),
    )
    assert settings.ssl_keyfile == str(tls_dir / "client.key")


@pytest.mark.parametrize(
    ("files", "source", "found"),
    [
        ({"ssl_ca_certs": "junk.pem"}, "ssl_ca_certs", "expected PEM CA certificates"),
        ({"ssl_ca_certs": "client.key"}, "ssl_ca_certs", "expected PEM CA certificates"),
        ({"ssl_certfile": "client.crt", "ssl_keyfile": "stranger.key"}, "ssl_certfile", "KEY_VALUES_MISMATCH"),
        ({"ssl_certfile": "client.crt"}, "ssl_certfile", "a private key inside it (or set ssl_keyfile)"),
        ({"ssl_certfile": "junk.pem", "ssl_keyfile": "client.key"}, "ssl_certfile", "PEM client certificate"),
        ({"ssl_certfile": "client.crt", "ssl_keyfile": "client-encrypted.key"}, "ssl_keyfile", "a passphrase"),
        ({"ssl_keyfile": "client.key"}, "ssl_keyfile", "found a key without its certificate"),
    ],
)
def test_tls_files_openssl_cannot_use_fail_resolution(
    tls_dir: Path, files: dict[str, str], source: str, found: str
) -> None:
    arguments = {name: str(tls_dir / file) for name, file in files.items()}
    message = config_error(env={}, **arguments)
    assert message.startswith(f"argument {source}: expected")
    assert found in message


def test_a_certificate_and_a_key_from_different_sources_name_their_own(tls_dir: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"ssl_keyfile": str(tls_dir / "stranger.key")}})
    message = config_error(config_path=path, env={"STASHLY_SSL_CERTFILE": str(tls_dir / "client.crt")})
    assert message.startswith("environment STASHLY_SSL_CERTFILE: expected a PEM client certificate")
    path = write_config(tmp_path, {"redis": {"ssl_keyfile": str(tls_dir / "client-encrypted.key")}})
    message = config_error(config_path=path, env={"STASHLY_SSL_CERTFILE": str(tls_dir / "client.crt")})
    assert message.startswith(f"config.json {path}: redis.ssl_keyfile: expected an unencrypted private key")
