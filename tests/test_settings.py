"""Settings resolution: arguments > environment > config.json > defaults; errors name the source and key."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stashly.config.settings import Settings, parse_name, resolve
from stashly.errors import ConfigError

SECRET = "Hunter2-s3cret"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default config.json is looked up in the working directory; keep the repository's out of it.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write_config(directory: Path, document: object, name: str = "config.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(**kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# --- defaults and precedence


def test_no_source_gives_the_defaults() -> None:
    assert resolve(env={}) == Settings()


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STASHLY_NAMESPACE", "from-os")
    assert resolve().namespace == "from-os"


def test_each_source_fills_only_what_higher_ones_left(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"namespace": "file-ns", "ttl": 60, "strict": True}})
    settings = resolve(config_path=path, env={"STASHLY_DEFAULT_TTL": "120"}, strict=False)
    assert settings.namespace == "file-ns"
    assert settings.default_ttl == 120.0
    assert settings.strict is False
    assert settings.prefix == Settings().prefix


# field, value in config.json, text in the environment, that text parsed, argument value
PRECEDENCE = [
    ("url", "redis://file:6379/0", "redis://env:6379/1", "redis://env:6379/1", "unix:///tmp/arg.sock"),
    ("username", "file-user", "env-user", "env-user", "arg-user"),
    ("password", "file-pw", "env-pw", "env-pw", "arg-pw"),
    ("namespace", "file-ns", "env-ns", "env-ns", "arg-ns"),
    ("prefix", "file-prefix", "env-prefix", "env-prefix", "arg-prefix"),
    ("default_ttl", 10, "20.5", 20.5, 30.0),
    ("allow_no_expiry", True, "off", False, True),
    ("strict", True, "No", False, True),
    ("connect_timeout", 1, "2", 2.0, 3.0),
    ("socket_timeout", 1.5, "2.5", 2.5, 3.5),
    ("max_connections", 5, "6", 6, 7),
    ("max_entries", 50, "60", 60, 70),
]


@pytest.mark.parametrize(("field", "in_file", "env_text", "from_env", "argument"), PRECEDENCE)
def test_precedence_per_field(
    tmp_path: Path, field: str, in_file: object, env_text: str, from_env: object, argument: object
) -> None:
    path = write_config(tmp_path, {"redis": {field: in_file}})
    env = {f"STASHLY_{field.upper()}": env_text}
    assert getattr(resolve(env={}), field) == getattr(Settings(), field)
    assert getattr(resolve(config_path=path, env={}), field) == in_file
    assert getattr(resolve(config_path=path, env=env), field) == from_env
    assert getattr(resolve(config_path=path, env=env, **{field: argument}), field) == argument


def test_every_field_has_an_environment_variable() -> None:
    env = {f"STASHLY_{field.upper()}": text for field, _, text, _, _ in PRECEDENCE}
    settings = resolve(env=env)
    for field, _, _, from_env, _ in PRECEDENCE:
        assert getattr(settings, field) == from_env


def test_none_argument_and_empty_env_mean_not_given(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"namespace": "file-ns"}})
    env = {"STASHLY_NAMESPACE": "", "STASHLY_CONFIG": str(path)}
    assert resolve(env=env, namespace=None).namespace == "file-ns"


def test_unknown_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="namespce"):
        resolve(env={}, namespce="x")


def test_ttl_argument_accepts_timedelta_and_ints_become_floats() -> None:
    assert resolve(env={}, default_ttl=timedelta(minutes=2)).default_ttl == 120.0
    settings = resolve(env={}, default_ttl=5)
    assert settings.default_ttl == 5.0
    assert isinstance(settings.default_ttl, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("On", True), ("0", False), ("false", False), ("NO", False)],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert resolve(env={"STASHLY_ALLOW_NO_EXPIRY": text}).allow_no_expiry is expected


# --- the config file


def test_default_config_json_in_the_working_directory_is_read() -> None:
    write_config(Path.cwd(), {"redis": {"namespace": "cwd-ns"}})
    assert resolve(env={}).namespace == "cwd-ns"


def test_stashly_config_names_the_file_and_the_argument_beats_it(tmp_path: Path) -> None:
    write_config(Path.cwd(), {"redis": {"namespace": "cwd-ns"}})
    named = write_config(tmp_path, {"redis": {"namespace": "env-file-ns"}}, name="stashly.json")
    argument = write_config(tmp_path, {"redis": {"namespace": "arg-file-ns"}}, name="other.json")
    env = {"STASHLY_CONFIG": str(named)}
    assert resolve(env=env).namespace == "env-file-ns"
    assert resolve(env=env, config_path=argument).namespace == "arg-file-ns"
    assert resolve(env=env, config_path=str(argument)).namespace == "arg-file-ns"


def test_original_app_shape_compiles_to_a_redis_url(tmp_path: Path) -> None:
    document = {
        "app": {"debug": True},
        "redis": {
            "host": "localhost",
            "port": 6379,
            "ttl": 300,
            "db": 0,
            "password": None,
            "username": None,
            "ssl": False,
        },
    }
    settings = resolve(config_path=write_config(tmp_path, document), env={})
    assert settings.url == "redis://localhost:6379/0"
    assert settings.default_ttl == 300.0
    assert settings.password is None
    assert settings.username is None


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ({"port": 6380}, "redis://localhost:6380/0"),
        ({"host": "cache.example", "db": 3, "ssl": True}, "rediss://cache.example:6379/3"),
        ({"host": "::1"}, "redis://[::1]:6379/0"),
        ({"host": "[2001:db8::7]", "port": 7000}, "redis://[2001:db8::7]:7000/0"),
        ({"url": "rediss://cache.example:6380/2"}, "rediss://cache.example:6380/2"),
        ({"url": "unix:///run/redis.sock?db=1"}, "unix:///run/redis.sock?db=1"),
        ({"url": "memory://"}, "memory://"),
        ({"ttl": 5}, "memory://"),
    ],
)
def test_url_shapes_in_the_file(tmp_path: Path, section: dict[str, object], url: str) -> None:
    assert resolve(config_path=write_config(tmp_path, {"redis": section}), env={}).url == url


@pytest.mark.parametrize("document", [{}, {"app": {"x": 1}}, {"redis": None}, {"redis": {"port": None}}])
def test_a_file_without_redis_settings_contributes_nothing(tmp_path: Path, document: object) -> None:
    assert resolve(config_path=write_config(tmp_path, document), env={}) == Settings()


def test_other_top_level_sections_are_not_validated(tmp_path: Path) -> None:
    document = {"database": {"port": "not a number", "anything": [1, 2]}, "redis": {"namespace": "ns"}}
    assert resolve(config_path=write_config(tmp_path, document), env={}).namespace == "ns"


# --- credentials


def test_credentials_are_split_out_of_the_url_and_redacted() -> None:
    url = f"redis://app%20user:{quote(SECRET + '/@:', safe='')}@cache:6379/1"
    settings = resolve(env={"STASHLY_URL": url})
    assert settings.url == "redis://cache:6379/1"
    assert settings.username == "app user"
    assert settings.password == SECRET + "/@:"
    assert SECRET not in repr(settings)
    assert "password='***'" in repr(settings)


def test_url_with_only_a_password() -> None:
    settings = resolve(env={}, url=f"redis://:{SECRET}@cache")
    assert (settings.url, settings.username, settings.password) == ("redis://cache", None, SECRET)


def test_explicit_credentials_beat_those_in_a_lower_or_equal_url() -> None:
    env = {"STASHLY_URL": "redis://env-user:env-pw@cache:6379/0", "STASHLY_USERNAME": "env-explicit"}
    settings = resolve(env=env, password="arg-pw")
    assert settings.username == "env-explicit"
    assert settings.password == "arg-pw"


def test_credentials_in_a_higher_url_beat_lower_explicit_fields() -> None:
    env = {"STASHLY_PASSWORD": "env-pw", "STASHLY_USERNAME": "env-user"}
    settings = resolve(env=env, url="redis://arg-user:arg-pw@cache:6379/0")
    assert (settings.username, settings.password) == ("arg-user", "arg-pw")


def test_credentials_of_an_overridden_url_are_dropped(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"url": f"redis://file-user:{SECRET}@file-host:6379/0"}})
    settings = resolve(config_path=path, env={"STASHLY_URL": "redis://env-host:6379/0"})
    assert settings.url == "redis://env-host:6379/0"
    assert settings.username is None
    assert settings.password is None


def test_credentials_from_the_file_section(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"host": "cache", "username": "u", "password": SECRET}})
    settings = resolve(config_path=path, env={})
    assert (settings.url, settings.username, settings.password) == ("redis://cache:6379/0", "u", SECRET)
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}@cache:0/0",
        f"redis://user:{SECRET}@cache:6379/-1",
        f"http://user:{SECRET}@cache",
        f"user:{SECRET}@cache:6379",
        f"redis://user:{SECRET[:6]}/{SECRET[6:]}@cache:6379/0",
        f"redis://user:{SECRET[:6]}#{SECRET[6:]}@cache:6379/0",
        f"memory://user:{SECRET}@",
        f"unix://:{SECRET[:6]}?{SECRET[6:]}@/run/redis.sock",
        f"redis://user:{SECRET} @cache",
    ],
)
def test_a_password_in_a_bad_url_never_reaches_the_message(url: str) -> None:
    message = config_error(env={"STASHLY_URL": url})
    assert "environment STASHLY_URL" in message
    for fragment in (SECRET, SECRET[:6], SECRET[6:]):
        assert fragment not in message


def test_a_password_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"password": 987654321}})
    message = config_error(config_path=path, env={})
    assert "redis.password" in message
    assert "int" in message
    assert "987654321" not in message
    assert "987654321" not in config_error(env={}, url=987654321)


def test_a_file_error_does_not_echo_the_password_beside_it(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"password": SECRET, "port": "6379"}})
    assert SECRET not in config_error(config_path=path, env={})
    path = write_config(tmp_path, [{"redis": {"password": SECRET}}])
    assert SECRET not in config_error(config_path=path, env={})
    path = write_config(tmp_path, {"redis": [SECRET]})
    assert SECRET not in config_error(config_path=path, env={})


@given(password=st.text(min_size=1, max_size=40))
def test_any_percent_encoded_password_round_trips(password: str) -> None:
    settings = resolve(env={}, config_path=None, url=f"rediss://user:{quote(password, safe='')}@cache/0")
    assert settings.url == "rediss://cache/0"
    assert settings.password == password
    assert repr(settings) == repr(dataclasses.replace(settings, password="other"))


# --- ConfigError: every message names the source and the key


def test_malformed_json_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "redis": {"port": 6379,}\n}\n', encoding="utf-8")
    message = config_error(config_path=path, env={})
    assert f"config.json {path}" in message
    assert "line 2, column" in message


@pytest.mark.parametrize(
    ("document", "key", "found"),
    [
        ([1, 2], "top level", "list"),
        ({"redis": "localhost:6379"}, "redis", "str"),
        ({"redis": {"hots": "cache"}}, "redis.hots", "accepted keys are allow_no_expiry"),
        ({"redis": {"port": "6379"}}, "redis.port", "'6379' (str)"),
        ({"redis": {"port": 0}}, "redis.port", "0 (int)"),
        ({"redis": {"port": 70000}}, "redis.port", "70000 (int)"),
        ({"redis": {"port": 6379.0}}, "redis.port", "6379.0 (float)"),
        ({"redis": {"db": -1}}, "redis.db", "-1 (int)"),
        ({"redis": {"host": ""}}, "redis.host", "''"),
        ({"redis": {"host": "cache/0"}}, "redis.host", "'cache/0'"),
        ({"redis": {"ssl": "true"}}, "redis.ssl", "'true' (str)"),
        ({"redis": {"strict": 1}}, "redis.strict", "1 (int)"),
        ({"redis": {"ttl": True}}, "redis.ttl", "True (bool)"),
        ({"redis": {"ttl": 0}}, "redis.ttl", "0 (int)"),
        ({"redis": {"default_ttl": -5}}, "redis.default_ttl", "-5 (int)"),
        ({"redis": {"default_ttl": "300"}}, "redis.default_ttl", "'300' (str)"),
        ({"redis": {"connect_timeout": 0}}, "redis.connect_timeout", "0 (int)"),
        ({"redis": {"max_connections": 0}}, "redis.max_connections", "0 (int)"),
        ({"redis": {"max_entries": 2.5}}, "redis.max_entries", "2.5 (float)"),
        ({"redis": {"namespace": "a:b"}}, "redis.namespace", "'a:b'"),
        ({"redis": {"url": "redis://h", "host": "h"}}, "redis.url", "redis.host"),
        ({"redis": {"url": "redis://h", "ssl": False}}, "redis.url", "redis.ssl"),
        ({"redis": {"ttl": 5, "default_ttl": 5}}, "redis.ttl", "default_ttl"),
        ({"redis": {"url": "http://cache"}}, "redis.url", "'http'"),
    ],
)
def test_bad_file_values(tmp_path: Path, document: object, key: str, found: str) -> None:
    path = write_config(tmp_path, document)
    message = config_error(config_path=path, env={})
    assert message.startswith(f"config.json {path}: ")
    assert key in message
    assert found in message


def test_nan_ttl_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"redis": {"ttl": NaN}}', encoding="utf-8")
    message = config_error(config_path=path, env={})
    assert "redis.ttl" in message
    assert "nan" in message


@pytest.mark.parametrize(
    ("variable", "text", "found"),
    [
        ("STASHLY_STRICT", "maybe", "'maybe'"),
        ("STASHLY_ALLOW_NO_EXPIRY", "2", "'2'"),
        ("STASHLY_DEFAULT_TTL", "ten", "'ten'"),
        ("STASHLY_DEFAULT_TTL", "0", "0.0"),
        ("STASHLY_DEFAULT_TTL", "-1", "-1.0"),
        ("STASHLY_DEFAULT_TTL", "nan", "nan"),
        ("STASHLY_DEFAULT_TTL", "inf", "inf"),
        ("STASHLY_SOCKET_TIMEOUT", "1s", "'1s'"),
        ("STASHLY_MAX_CONNECTIONS", "5.5", "'5.5'"),
        ("STASHLY_MAX_ENTRIES", "0", "0 (int)"),
        ("STASHLY_NAMESPACE", "has space", "'has space'"),
        ("STASHLY_PREFIX", "a:b", "'a:b'"),
        ("STASHLY_URL", "http://cache:6379", "'http'"),
        ("STASHLY_URL", "memory://cache", "memory://"),
        ("STASHLY_URL", "unix://", "socket path"),
        ("STASHLY_URL", "redis://cache:0/0", "0 (int)"),
        ("STASHLY_URL", "redis://cache:70000/0", "70000 (int)"),
        ("STASHLY_URL", "redis://cache:port/0", "'port' (str)"),
        ("STASHLY_URL", "redis://cache:6379/-1", "'-1' (str)"),
        ("STASHLY_URL", "redis://cache:6379/zero", "'zero' (str)"),
        ("STASHLY_URL", "redis://[::1/0", "IPv6"),
    ],
)
def test_bad_environment_values(variable: str, text: str, found: str) -> None:
    message = config_error(env={variable: text})
    assert message.startswith(f"environment {variable}")
    assert found in message


def test_url_scheme_error_lists_the_accepted_schemes() -> None:
    message = config_error(env={}, url="postgres://db")
    assert message.startswith("argument url: ")
    for scheme in ("redis://", "rediss://", "unix://", "memory://"):
        assert scheme in message


@pytest.mark.parametrize(
    ("argument", "value", "found"),
    [
        ("default_ttl", True, "True (bool)"),
        ("default_ttl", math.nan, "nan (float)"),
        ("default_ttl", "300", "'300' (str)"),
        ("connect_timeout", math.inf, "inf (float)"),
        ("max_connections", 0, "0 (int)"),
        ("strict", "yes", "'yes' (str)"),
        ("namespace", "", "''"),
        ("url", "redis://cache:65536", "65536 (int)"),
    ],
)
def test_bad_arguments(argument: str, value: object, found: str) -> None:
    message = config_error(env={}, **{argument: value})
    assert message.startswith(f"argument {argument}")
    assert found in message


@pytest.mark.parametrize("named_by", ["argument config_path", "environment STASHLY_CONFIG"])
def test_an_explicitly_named_missing_file_is_an_error(tmp_path: Path, named_by: str) -> None:
    missing = tmp_path / "nope.json"
    if named_by.startswith("argument"):
        message = config_error(config_path=missing, env={})
    else:
        message = config_error(env={"STASHLY_CONFIG": str(missing)})
    assert f"config.json {missing}" in message
    assert named_by in message


def test_an_unreadable_config_path_is_an_error(tmp_path: Path) -> None:
    assert f"config.json {tmp_path}" in config_error(config_path=tmp_path, env={})


def test_an_overridden_source_is_still_validated(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"redis": {"port": 0}})
    assert "redis.port" in config_error(config_path=path, env={}, url="redis://cache:6379/0")


# --- names


@pytest.mark.parametrize(
    "name", ["a:b", "", "has space", "tab\there", "nul\x00", "zero\u200bwidth", "x" * 201, 5, None]
)
def test_bad_names_are_rejected(name: object) -> None:
    with pytest.raises(ConfigError, match=r"^argument namespace: expected a name"):
        parse_name(name, "argument namespace")


@pytest.mark.parametrize("name", ["ns*[x]", "a?b\\c", "x" * 200, "ünïcode-名前", "users.v2"])
def test_glob_and_unicode_names_are_accepted(name: str) -> None:
    assert parse_name(name, "argument namespace") == name
    assert resolve(env={"STASHLY_NAMESPACE": name}).namespace == name
