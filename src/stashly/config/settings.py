"""Settings: one frozen object, resolved from arguments > environment > config.json > defaults."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

from stashly.config import checks, urls
from stashly.errors import ConfigError
from stashly.sentinels import NOT_SET

__all__ = ["Settings", "parse_name", "resolve"]


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Every knob stashly has, already parsed and validated.

    ``url`` never carries credentials: they live in ``username``/``password`` and are redacted from ``repr``.
    """

    url: str = "memory://"
    username: str | None = None
    password: str | None = None
    namespace: str = "default"
    prefix: str = "stashly"
    default_ttl: float = 300.0
    allow_no_expiry: bool = False
    strict: bool = False
    connect_timeout: float = 0.25
    socket_timeout: float = 0.25
    max_connections: int = 50
    max_entries: int = 10_000
    protocol: int = 2
    breaker_threshold: int = 5
    breaker_cooldown: float = 1.0
    ttl_jitter: float = 0.05
    max_value_bytes: int = 1_048_576
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    serializer: str = "json"
    secrets: tuple[str, ...] = ()
    local: bool = False
    local_ttl: float = 60.0
    local_max_entries: int = 10_000
    local_max_bytes: int = 64 * 1024 * 1024
    stats_max_names: int = 1000
    read_from_replicas: bool = False

    def __repr__(self) -> str:
        fields = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "password" and value is not None:
                shown = "'***'"
            elif field.name == "secrets":
                shown = f"<{len(value)} secrets>"
            else:
                shown = repr(value)
            fields.append(f"{field.name}={shown}")
        return f"Settings({', '.join(fields)})"


def resolve(
    *,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **arguments: object,
) -> Settings:
    """Build :class:`Settings`, taking each field from arguments > environment > config.json > defaults.

    ``arguments`` are Settings field names; ``None`` means "not given". Environment variables are
    ``STASHLY_<FIELD>`` (empty means unset) and ``STASHLY_CONFIG`` names the file; without either, a
    ``config.json`` in the current directory is read if present. Only the file's ``"redis"`` section is
    read. Credentials written into a URL move to ``username``/``password`` with the URL's priority; when
    that URL is overridden, its credentials are dropped with it. Every source is validated, even one
    that is fully overridden; problems raise :class:`~stashly.errors.ConfigError`.

    Example::

        settings = resolve(env={"STASHLY_URL": "redis://app:s3cret@cache:6379/1"}, namespace="users")
        settings.url       # 'redis://cache:6379/1'
        settings.password  # 's3cret', shown as '***' in repr(settings)
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    unknown = sorted(set(arguments) - set(_PARSERS))
    if unknown:
        raise TypeError(f"unknown setting {unknown[0]!r}: the settings are {', '.join(_PARSERS)}")
    given = {name: value for name, value in arguments.items() if value is not None and value is not NOT_SET}
    layers = [
        _build_layer(given, lambda name: f"argument {name}"),
        _env_layer(environ),
        _file_layer(*_config_file(config_path, environ)),
    ]
    chosen: dict[str, Any] = {}
    origin: dict[str, str] = {}  # field -> the source it was taken from
    for fields, url_credentials, sources in layers:
        if "url" in fields and "url" not in chosen:
            fields = {**url_credentials, **fields}
        for name, value in fields.items():
            if name not in chosen:
                chosen[name], origin[name] = value, sources.get(name, sources.get("url", ""))
    settings = dataclasses.replace(Settings(), **chosen)
    if settings.ssl_certfile is not None or settings.ssl_keyfile is not None:
        where = (origin.get("ssl_certfile", ""), origin.get("ssl_keyfile", origin.get("ssl_certfile", "")))
        checks.client_certificate(settings.ssl_certfile, settings.ssl_keyfile, where)
    if settings.serializer == "pickle" and not settings.secrets:
        raise ConfigError(
            f"{origin['serializer']}: serializer 'pickle' needs secrets, found none: at least one HMAC secret of "
            f"{checks.MIN_SECRET} bytes or more (argument secrets, environment STASHLY_SECRETS or redis.secrets in "
            "config.json)"
        )
    return settings


def parse_name(value: object, source: str) -> str:
    """Validate a namespace or prefix: 1..200 characters, no ``:``, whitespace or control characters.

    ``:`` is the key separator, so forbidding it means namespace ``"a"`` can never flush ``"a:b"``.
    Glob characters (``*?[]\\``) are allowed: the Redis backend escapes them.
    """
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= checks.NAME_MAX
        or ":" in value
        or any(char.isspace() or not char.isprintable() for char in value)
    ):
        expected = f"a name of 1..{checks.NAME_MAX} characters without ':', whitespace or control characters"
        raise checks.error(source, expected, value)
    return value


_BOOL_WORDS: Final = {"1": True, "true": True, "yes": True, "on": True} | dict.fromkeys(
    ("0", "false", "no", "off"), False
)

# (explicit fields, credentials taken out of the layer's url, the source of each field and of the url)
_Layer: TypeAlias = tuple[dict[str, object], dict[str, object], dict[str, str]]


_PARSERS: Final[dict[str, Callable[[object, str], object]]] = {
    "url": urls.parse_url,
    "username": checks.credential,
    "password": checks.credential,
    "namespace": parse_name,
    "prefix": parse_name,
    "default_ttl": checks.positive_float,
    "allow_no_expiry": checks.boolean,
    "strict": checks.boolean,
    "connect_timeout": checks.positive_float,
    "socket_timeout": checks.positive_float,
    "max_connections": checks.connections,
    "max_entries": checks.positive_int,
    "protocol": checks.protocol,
    "breaker_threshold": checks.positive_int,
    "breaker_cooldown": checks.positive_float,
    "ttl_jitter": checks.fraction,
    "max_value_bytes": checks.positive_int,
    "ssl_ca_certs": checks.ca_file,
    "ssl_certfile": checks.existing_file,
    "ssl_keyfile": checks.existing_file,
    "serializer": checks.serializer,
    "secrets": checks.secrets,
    "local": checks.boolean,
    "local_ttl": checks.positive_float,
    "local_max_entries": checks.positive_int,
    "local_max_bytes": checks.positive_int,
    "stats_max_names": checks.positive_int,
    "read_from_replicas": checks.boolean,
}
_FILE_KEYS: Final = frozenset(_PARSERS) | {"ttl", *urls.URL_PARTS, *urls.TOPOLOGY_KEYS}


# Environment text becomes typed values here, before the shared parsers check them.


def _text_to_bool(text: str, source: str) -> object:
    if text.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[text.strip().lower()]
    raise ConfigError(f"{source}: expected one of 1/0/true/false/yes/no/on/off, found {text!r}")


def _text_to_number(text: str, source: str, kind: type[int] | type[float]) -> object:
    try:
        return kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise ConfigError(f"{source}: expected {expected}, found {text!r}") from None


def _text_to_list(text: str, source: str) -> object:
    # Spaces around the commas are layout, not part of a secret.
    return [item.strip() for item in text.split(",")]


_to_int = functools.partial(_text_to_number, kind=int)
_to_float = functools.partial(_text_to_number, kind=float)
_FROM_TEXT: Final[dict[str, Callable[[str, str], object]]] = {
    "secrets": _text_to_list,
    "default_ttl": _to_float,
    "allow_no_expiry": _text_to_bool,
    "strict": _text_to_bool,
    "connect_timeout": _to_float,
    "socket_timeout": _to_float,
    "max_connections": _to_int,
    "max_entries": _to_int,
    "protocol": _to_int,
    "breaker_threshold": _to_int,
    "breaker_cooldown": _to_float,
    "ttl_jitter": _to_float,
    "max_value_bytes": _to_int,
    "local": _text_to_bool,
    "local_ttl": _to_float,
    "local_max_entries": _to_int,
    "local_max_bytes": _to_int,
    "stats_max_names": _to_int,
    "read_from_replicas": _text_to_bool,
}


def _build_layer(values: Mapping[str, object], source_of: Callable[[str], str]) -> _Layer:
    fields: dict[str, object] = {}
    url_credentials: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, value in values.items():
        parsed = _PARSERS[name](value, source_of(name))
        if isinstance(parsed, urls.ParsedUrl):
            fields["url"] = parsed.url
            found = {"username": parsed.username, "password": parsed.password}
            url_credentials = {key: secret for key, secret in found.items() if secret is not None}
        elif parsed is not None:
            fields[name] = parsed
        sources[name] = source_of(name)
    return fields, url_credentials, sources


def _env_layer(environ: Mapping[str, str]) -> _Layer:
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name in _PARSERS:
        variable = f"STASHLY_{name.upper()}"
        text = environ.get(variable, "")
        if text:
            sources[name] = f"environment {variable}"
            convert = _FROM_TEXT.get(name)
            values[name] = convert(text, sources[name]) if convert else text
    return _build_layer(values, sources.__getitem__)


def _config_file(config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> tuple[Path, str | None]:
    """The file to read and who named it (``None``: the default, which may be absent)."""
    if config_path is not None:
        return Path(os.path.abspath(config_path)), "argument config_path"
    if environ.get("STASHLY_CONFIG"):
        return Path(os.path.abspath(environ["STASHLY_CONFIG"])), "environment STASHLY_CONFIG"
    return Path(os.path.abspath("config.json")), None


class _Duplicates:
    """The keys each JSON object of a document was given more than once (``json`` silently keeps the last)."""

    def __init__(self) -> None:
        self._by_object: dict[int, tuple[dict[str, Any], frozenset[str]]] = {}

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        made = dict(pairs)
        if len(made) < len(pairs):
            keys = [key for key, _ in pairs]
            self._by_object[id(made)] = made, frozenset(key for key in keys if keys.count(key) > 1)
        return made

    def of(self, value: dict[str, Any]) -> frozenset[str]:
        found = self._by_object.get(id(value))
        return found[1] if found is not None and found[0] is value else frozenset()

    def refuse(self, value: object, where: str) -> None:
        """A key given twice anywhere under ``value`` is a mistake (a merge, a copy): name it."""
        if isinstance(value, dict):
            if self.of(value):
                raise ConfigError(f"{where}.{min(self.of(value))}: found the key twice (JSON keeps only the last)")
            for key, item in value.items():
                self.refuse(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.refuse(item, f"{where}[{index}]")


def _file_layer(path: Path, named_by: str | None) -> _Layer:
    label = f"config.json {path}"
    duplicates = _Duplicates()
    try:
        document = json.loads(path.read_bytes(), object_pairs_hook=duplicates.hook)
    except FileNotFoundError:
        if named_by is None:
            return {}, {}, {}
        raise ConfigError(f"{label}: file not found (named by {named_by})") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read the file: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError(f"{label}: malformed JSON at {where}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: expected UTF-8 JSON, found bytes that do not decode") from None
    # Type names only below: echoing a whole object could print the password.
    if not isinstance(document, dict):
        raise ConfigError(f"{label}: expected an object at the top level, found {type(document).__name__}")
    if "redis" in duplicates.of(document):
        raise ConfigError(f"{label}: redis: found the key twice (JSON keeps only the last)")
    section = document.get("redis")
    if section is None:
        return {}, {}, {}
    if not isinstance(section, dict):
        raise ConfigError(f"{label}: redis: expected an object, found {type(section).__name__}")
    duplicates.refuse(section, f"{label}: redis")
    unknown = sorted(set(section) - _FILE_KEYS)
    if unknown:
        accepted = ", ".join(sorted(_FILE_KEYS))
        raise ConfigError(f"{label}: redis.{unknown[0]}: unknown key; accepted keys are {accepted}")
    values: dict[str, object] = {key: value for key, value in section.items() if value is not None}
    sources = {key: f"{label}: redis.{key}" for key in values}
    if "ttl" in values:
        if "default_ttl" in values:
            raise ConfigError(f"{label}: redis.ttl: expected ttl or its alias default_ttl, found both")
        values["default_ttl"], sources["default_ttl"] = values.pop("ttl"), sources["ttl"]
    parts: dict[str, object] = {key: values.pop(key) for key in (*urls.URL_PARTS, *urls.TOPOLOGY_KEYS) if key in values}
    if parts:
        if "url" in values:
            given = ", ".join(f"redis.{key}" for key in parts)
            raise ConfigError(
                f"{label}: redis.url: expected url or host/port/db/ssl/cluster/startup_nodes/sentinel, "
                f"found url and {given}"
            )
        url = urls.compile_location(parts, label)
        if url is not None:
            values["url"], sources["url"] = url, f"{label}: redis.{'/'.join(parts)}"
    return _build_layer(values, sources.__getitem__)
