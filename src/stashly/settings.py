"""Settings: one frozen object, resolved from arguments > environment > config.json > defaults."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeAlias
from urllib.parse import unquote

from stashly.errors import ConfigError
from stashly.sentinels import NOT_SET

__all__ = ["Settings", "Topology", "parse_name", "resolve", "topology"]


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
    for fields, url_credentials in layers:
        if "url" in fields and "url" not in chosen:
            fields = {**url_credentials, **fields}
        for name, value in fields.items():
            chosen.setdefault(name, value)
    settings = dataclasses.replace(Settings(), **chosen)
    if settings.serializer == "pickle" and not settings.secrets:
        raise ConfigError("serializer 'pickle' needs secrets: at least one HMAC secret of 32 bytes or more")
    return settings


def parse_name(value: object, source: str) -> str:
    """Validate a namespace or prefix: 1..200 characters, no ``:``, whitespace or control characters.

    ``:`` is the key separator, so forbidding it means namespace ``"a"`` can never flush ``"a:b"``.
    Glob characters (``*?[]\\``) are allowed: the Redis backend escapes them.
    """
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= _NAME_MAX
        or ":" in value
        or any(char.isspace() or not char.isprintable() for char in value)
    ):
        expected = f"a name of 1..{_NAME_MAX} characters without ':', whitespace or control characters"
        raise _error(source, expected, value)
    return value


class Topology(NamedTuple):
    """What a url reaches: one server, a Redis Cluster, or the primary a set of sentinels names."""

    kind: Literal["single", "cluster", "sentinel"]
    nodes: tuple[tuple[str, int], ...]  # cluster startup nodes or sentinel addresses; () for one server
    service: str | None  # the Sentinel service name
    db: int  # the database behind Sentinel; 0 otherwise
    tls: bool


def topology(url: str) -> Topology:
    """Read the topology out of a url such as a validated ``Settings.url``.

    Ports left out of a node list come back as the default (6379 for Cluster, 26379 for Sentinel) and IPv6
    hosts come back without brackets, as redis-py takes them. ``memory://``, ``redis://``, ``rediss://`` and
    ``unix://`` are all kind ``"single"`` with no nodes: their clients are built from the url itself.
    A url that is not valid raises :class:`~stashly.errors.ConfigError`.

    Example::

        topology("redis+sentinel://[::1],sentinel-2:26380/mymaster/2")
        # Topology(kind='sentinel', nodes=(('::1', 26379), ('sentinel-2', 26380)), service='mymaster', db=2,
        #          tls=False)
    """
    parsed = _parse_url(url, "topology url")  # credentials, if any, are set aside: they are not topology
    scheme, _, rest = parsed.url.partition("://")
    if scheme not in _NODE_LIST_PORTS:
        return Topology("single", (), None, 0, tls=scheme == "rediss")
    location, tail = _split_netloc(rest)
    return _node_list_topology(scheme, location, tail, "topology url")


_NAME_MAX: Final = 200
_SCHEMES: Final = ("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "unix", "memory")
# The schemes whose location is a comma-separated node list, and the port a node without one gets.
_NODE_LIST_PORTS: Final = {"redis+cluster": 6379, "rediss+cluster": 6379, "redis+sentinel": 26379}
_BOOL_WORDS: Final = {"1": True, "true": True, "yes": True, "on": True} | dict.fromkeys(
    ("0", "false", "no", "off"), False
)
_URL_PARTS: Final = ("host", "port", "db", "ssl")

# (explicit fields, credentials taken out of the layer's url)
_Layer: TypeAlias = tuple[dict[str, object], dict[str, object]]


class _Url(NamedTuple):
    url: str
    username: str | None
    password: str | None


def _show(value: object) -> str:
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def _error(source: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"{source}: expected {expected}, found {_show(value)}")


# One parser per field kind, shared by every source: typed values in, checked values out.


def _parse_positive_float(value: object, source: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number) and number > 0:
            return number
    raise _error(source, "a finite number of seconds > 0", value)


def _parse_int(value: object, source: str, *, low: int, high: float = math.inf) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    bounds = f">= {low}" if high == math.inf else f"in {low}..{high}"
    raise _error(source, f"an integer {bounds}", value)


_parse_positive_int = functools.partial(_parse_int, low=1)
_parse_protocol = functools.partial(_parse_int, low=2, high=3)
_parse_port = functools.partial(_parse_int, low=1, high=65535)
_parse_db = functools.partial(_parse_int, low=0)


def _parse_fraction(value: object, source: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    raise _error(source, "a fraction in [0, 1)", value)


def _parse_bool(value: object, source: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _error(source, "true or false", value)


def _parse_credential(value: object, source: str) -> str | None:
    # Never echo the value: this parser also reads passwords.
    if not isinstance(value, str):
        raise ConfigError(f"{source}: expected a string, found a value of type {type(value).__name__}")
    return value or None


def _parse_file(value: object, source: str) -> str:
    if isinstance(value, str) and value and os.path.isfile(value):
        return os.path.abspath(value)
    raise _error(source, "the path of an existing file", value)


_MIN_SECRET: Final = 32


def _parse_serializer(value: object, source: str) -> str:
    if value in ("json", "pickle"):
        return str(value)
    raise _error(source, "'json' or 'pickle'", value)


def _parse_secrets(value: object, source: str) -> tuple[str, ...]:
    # Never echo the value: these are signing keys.
    items = value.split(",") if isinstance(value, str) else value
    if (
        isinstance(items, list | tuple)
        and items
        and all(isinstance(item, str) and len(item.encode()) >= _MIN_SECRET for item in items)
    ):
        return tuple(items)
    raise ConfigError(
        f"{source}: expected a list of secrets of at least {_MIN_SECRET} bytes each (comma-separated in the "
        "environment), the first signing and all verifying"
    )


def _parse_host(value: object, source: str) -> str:
    if isinstance(value, str) and value:
        inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        if ":" in inner:
            try:
                ipaddress.IPv6Address(inner)
            except ValueError:
                pass
            else:
                return f"[{inner.replace('%', '%25')}]"
        elif not any(char in "/?#@[]%" or char.isspace() or not char.isprintable() for char in value):
            return value
    raise _error(source, "a host name or IP address", value)


def _parse_url(value: object, source: str) -> _Url:
    # The URL may carry a password: messages echo only the scheme and what follows the last '@'.
    if not isinstance(value, str):
        raise ConfigError(f"{source}: expected a URL string, found a value of type {type(value).__name__}")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ConfigError(f"{source}: expected a URL without whitespace or control characters")
    scheme, separator, rest = value.partition("://")
    scheme = scheme.lower()
    if separator and scheme == "rediss+sentinel":
        raise ConfigError(f"{source}: expected redis+sentinel://; stashly does not reach Sentinel over TLS")
    if not separator or scheme not in _SCHEMES:
        named = separator and re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme)
        found = f"scheme {scheme!r}" if named else "no scheme"
        accepted = ", ".join(f"{name}://" for name in _SCHEMES)
        raise ConfigError(f"{source}: expected a URL with scheme {accepted}; found {found}")
    if scheme == "memory":
        if rest:
            raise ConfigError(f"{source}: expected exactly 'memory://' (it takes no host, path or options)")
        return _Url("memory://", None, None)
    netloc, tail = _split_netloc(rest)
    userinfo, _, location = netloc.rpartition("@")
    if "@" in tail:
        # An unescaped '/', '?' or '#' in a password would otherwise leak part of it into the stored url.
        raise ConfigError(f"{source}: found '@' after the host; percent-encode '/?#@' in credentials")
    if scheme == "unix":
        if not re.split(r"[?#]", tail, maxsplit=1)[0]:
            raise ConfigError(f"{source}: expected a socket path, as in unix:///run/redis.sock")
    elif scheme in _NODE_LIST_PORTS:
        _node_list_topology(scheme, location, tail, source)
    else:
        _check_redis_location(location, tail, source)
    username, _, password = userinfo.partition(":")
    return _Url(f"{scheme}://{location}{tail}", unquote(username) or None, unquote(password) or None)


def _split_netloc(rest: str) -> tuple[str, str]:
    """What follows ``scheme://`` as (userinfo@location, path?query#fragment)."""
    end = min((index for index in map(rest.find, "/?#") if index >= 0), default=len(rest))
    return rest[:end], rest[end:]


def _split_node(location: str, source: str) -> tuple[str, str | None]:
    """``host:port`` as (host, port text); an IPv6 host keeps its brackets; ``None``: no port given."""
    if location.startswith("["):
        close = location.find("]")
        port = location[close + 1 :]
        if close < 0 or port[:1] not in ("", ":"):
            raise ConfigError(f"{source}: expected an IPv6 host as [address] or [address]:port")
        return location[: close + 1], port[1:] if port else None
    host, colon, port = location.partition(":")
    return host, port if colon else None


def _check_redis_location(location: str, tail: str, source: str) -> None:
    """Validate the port and database of a redis[s]:// URL; ``location`` has no userinfo left."""
    _, port = _split_node(location, source)
    if port is not None:
        _parse_port(_digits_to_int(port), f"{source}, port")
    path = re.split(r"[?#]", tail, maxsplit=1)[0]
    if path not in ("", "/"):
        _parse_db(_digits_to_int(path[1:]), f"{source}, database in the path")


def _node_list_topology(scheme: str, location: str, tail: str, source: str) -> Topology:
    """Validate a redis[s]+cluster:// or redis+sentinel:// location and path; ``location`` has no userinfo."""
    if re.search(r"[?#]", tail):
        # The cluster and sentinel clients are built from the topology, so options here would be ignored.
        raise ConfigError(f"{source}: expected no ?options or #fragment in a {scheme}:// URL; use the settings")
    port = _NODE_LIST_PORTS[scheme]
    entries = enumerate(location.split(","), 1)
    nodes = tuple(_parse_node(entry, port, f"{source}, node {number}") for number, entry in entries)
    if scheme == "redis+sentinel":
        service, db = _parse_sentinel_path(tail, source)
        return Topology("sentinel", nodes, service, db, tls=False)
    if tail not in ("", "/"):
        raise ConfigError(f"{source}: expected no database path, as Redis Cluster has only database 0; found {tail!r}")
    return Topology("cluster", nodes, None, 0, tls=scheme == "rediss+cluster")


def _parse_node(text: str, default_port: int, source: str) -> tuple[str, int]:
    """One ``host[:port]`` of a node list: IPv6 bare, as redis-py wants it."""
    if not text:
        raise ConfigError(f"{source}: expected host:port, found an empty entry")
    host, port = _split_node(text, source)
    if host.startswith("["):
        host = unquote(host[1:-1])  # a zone is written %25 in a URL
        if not _parse_host(host, f"{source}, host").startswith("["):
            raise _error(f"{source}, host", "an IPv6 address inside [ ]", text)
    else:
        _parse_host(host, f"{source}, host")
    return host, default_port if port is None else _parse_port(_digits_to_int(port), f"{source}, port")


def _parse_sentinel_path(tail: str, source: str) -> tuple[str, int]:
    """``/service[/db]`` of a redis+sentinel:// URL."""
    service, slash, db = tail[1:].partition("/")
    if not service:
        raise ConfigError(
            f"{source}: expected the Sentinel service name as the path, as in redis+sentinel://host:26379/mymaster"
        )
    _parse_service(service, f"{source}, service name")
    return service, _parse_db(_digits_to_int(db), f"{source}, database in the path") if slash else 0


def _parse_service(value: object, source: str) -> str:
    if (
        isinstance(value, str)
        and 1 <= len(value) <= _NAME_MAX
        and not any(char in "/?#@%," or char.isspace() or not char.isprintable() for char in value)
    ):
        return value
    raise _error(source, f"a service name of 1..{_NAME_MAX} characters without '/?#@%,' or whitespace", value)


def _digits_to_int(text: str) -> object:
    # Anything but plain digits stays a string, which the int parsers then reject by name.
    return int(text) if text.isascii() and text.isdigit() else text


_PARSERS: Final[dict[str, Callable[[object, str], object]]] = {
    "url": _parse_url,
    "username": _parse_credential,
    "password": _parse_credential,
    "namespace": parse_name,
    "prefix": parse_name,
    "default_ttl": _parse_positive_float,
    "allow_no_expiry": _parse_bool,
    "strict": _parse_bool,
    "connect_timeout": _parse_positive_float,
    "socket_timeout": _parse_positive_float,
    "max_connections": _parse_positive_int,
    "max_entries": _parse_positive_int,
    "protocol": _parse_protocol,
    "breaker_threshold": _parse_positive_int,
    "breaker_cooldown": _parse_positive_float,
    "ttl_jitter": _parse_fraction,
    "max_value_bytes": _parse_positive_int,
    "ssl_ca_certs": _parse_file,
    "ssl_certfile": _parse_file,
    "ssl_keyfile": _parse_file,
    "serializer": _parse_serializer,
    "secrets": _parse_secrets,
    "local": _parse_bool,
    "local_ttl": _parse_positive_float,
    "local_max_entries": _parse_positive_int,
    "local_max_bytes": _parse_positive_int,
}
_TOPOLOGY_KEYS: Final = ("cluster", "startup_nodes", "sentinel")
_FILE_KEYS: Final = frozenset(_PARSERS) | {"ttl", *_URL_PARTS, *_TOPOLOGY_KEYS}


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


_to_int = functools.partial(_text_to_number, kind=int)
_to_float = functools.partial(_text_to_number, kind=float)
_FROM_TEXT: Final[dict[str, Callable[[str, str], object]]] = {
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
}


def _build_layer(values: Mapping[str, object], source_of: Callable[[str], str]) -> _Layer:
    fields: dict[str, object] = {}
    url_credentials: dict[str, object] = {}
    for name, value in values.items():
        parsed = _PARSERS[name](value, source_of(name))
        if isinstance(parsed, _Url):
            fields["url"] = parsed.url
            found = {"username": parsed.username, "password": parsed.password}
            url_credentials = {key: secret for key, secret in found.items() if secret is not None}
        elif parsed is not None:
            fields[name] = parsed
    return fields, url_credentials


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


def _file_layer(path: Path, named_by: str | None) -> _Layer:
    label = f"config.json {path}"
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        if named_by is None:
            return {}, {}
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
    section = document.get("redis")
    if section is None:
        return {}, {}
    if not isinstance(section, dict):
        raise ConfigError(f"{label}: redis: expected an object, found {type(section).__name__}")
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
    parts: dict[str, object] = {key: values.pop(key) for key in (*_URL_PARTS, *_TOPOLOGY_KEYS) if key in values}
    if parts:
        if "url" in values:
            given = ", ".join(f"redis.{key}" for key in parts)
            raise ConfigError(
                f"{label}: redis.url: expected url or host/port/db/ssl/cluster/startup_nodes/sentinel, "
                f"found url and {given}"
            )
        url = _compile_location(parts, label)
        if url is not None:
            values["url"], sources["url"] = url, f"{label}: redis.{'/'.join(parts)}"
    return _build_layer(values, sources.__getitem__)


def _compile_location(parts: Mapping[str, object], label: str) -> str | None:
    """The file's location keys as one URL; ``None`` when only ``"cluster": false`` was given."""
    cluster = _parse_bool(parts.get("cluster", False), f"{label}: redis.cluster")
    if "sentinel" in parts:
        if cluster:
            raise ConfigError(f"{label}: redis.sentinel: expected cluster or sentinel, found both")
        return _compile_sentinel(parts, label)
    if cluster:
        return _compile_cluster(parts, label)
    if "startup_nodes" in parts:
        found = "redis.cluster false" if "cluster" in parts else "no redis.cluster"
        raise ConfigError(f"{label}: redis.startup_nodes: expected it together with redis.cluster true, found {found}")
    single = {key: value for key, value in parts.items() if key != "cluster"}
    return _compile_url(single, label) if single else None


def _compile_url(parts: Mapping[str, object], label: str) -> str:
    """The original app's host/port/db/ssl shape as a redis[s]:// URL."""
    host = _parse_host(parts.get("host", "localhost"), f"{label}: redis.host")
    port = _parse_port(parts.get("port", 6379), f"{label}: redis.port")
    db = _parse_db(parts.get("db", 0), f"{label}: redis.db")
    scheme = "rediss" if _parse_bool(parts.get("ssl", False), f"{label}: redis.ssl") else "redis"
    return f"{scheme}://{host}:{port}/{db}"


def _compile_cluster(parts: Mapping[str, object], label: str) -> str:
    """``"cluster": true`` with startup_nodes, or host/port as the one startup node, as a redis[s]+cluster:// URL."""
    scheme = "rediss+cluster" if _parse_bool(parts.get("ssl", False), f"{label}: redis.ssl") else "redis+cluster"
    if _parse_db(parts.get("db", 0), f"{label}: redis.db"):
        raise _error(f"{label}: redis.db", "0 or no db, as Redis Cluster has only database 0", parts["db"])
    if "startup_nodes" not in parts:
        host = _parse_host(parts.get("host", "localhost"), f"{label}: redis.host")
        return f"{scheme}://{host}:{_parse_port(parts.get('port', 6379), f'{label}: redis.port')}"
    beside = [f"redis.{key}" for key in ("host", "port") if key in parts]
    if beside:
        given = f"startup_nodes and {beside[0]}"
        raise ConfigError(f"{label}: redis.startup_nodes: expected startup_nodes or host/port, found {given}")
    nodes = _compile_nodes(parts["startup_nodes"], 6379, f"{label}: redis.startup_nodes")
    return f"{scheme}://{nodes}"


_SENTINEL_KEYS: Final = ("nodes", "service", "db")


def _compile_sentinel(parts: Mapping[str, object], label: str) -> str:
    """``"sentinel": {"nodes": [...], "service": ..., "db": ...}`` as a redis+sentinel:// URL."""
    beside = [f"redis.{key}" for key in ("host", "port", "db", "startup_nodes") if key in parts]
    if _parse_bool(parts.get("ssl", False), f"{label}: redis.ssl"):
        beside.append("redis.ssl (stashly does not reach Sentinel over TLS)")
    if beside:
        raise ConfigError(f"{label}: redis.sentinel: expected sentinel or host/port/db, found sentinel and {beside[0]}")
    section, source = parts["sentinel"], f"{label}: redis.sentinel"
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: expected an object with nodes, service and db, found {type(section).__name__}")
    unknown = sorted(set(section) - set(_SENTINEL_KEYS))
    if unknown:
        raise ConfigError(f"{source}.{unknown[0]}: unknown key; accepted keys are {', '.join(_SENTINEL_KEYS)}")
    if section.get("service") is None:
        raise ConfigError(f'{source}.service: expected the Sentinel service name, as in "mymaster", found none')
    service = _parse_service(section["service"], f"{source}.service")
    nodes = _compile_nodes(section.get("nodes"), 26379, f"{source}.nodes")
    db = "" if section.get("db") is None else f"/{_parse_db(section['db'], f'{source}.db')}"
    return f"redis+sentinel://{nodes}/{service}{db}"


def _compile_nodes(value: object, default_port: int, source: str) -> str:
    """A JSON list of ``"host:port"`` or ``{"host", "port"}`` as the comma-separated location of a URL."""
    if not isinstance(value, list) or not value:
        found = "none" if value is None else "an empty list" if value == [] else type(value).__name__
        raise ConfigError(f'{source}: expected a non-empty list of "host:port" or {{"host", "port"}}, found {found}')
    return ",".join(_compile_node(item, default_port, f"{source}[{index}]") for index, item in enumerate(value))


def _compile_node(value: object, default_port: int, source: str) -> str:
    if isinstance(value, str):
        host, port = _parse_node(value, default_port, source)
        return f"{_parse_host(host, source)}:{port}"  # brackets an IPv6 host again
    if isinstance(value, dict) and "host" in value and set(value) <= {"host", "port"}:
        host = _parse_host(value["host"], f"{source}.host")
        return f"{host}:{_parse_port(value.get('port', default_port), f'{source}.port')}"
    shown = type(value).__name__ if isinstance(value, dict | list) else _show(value)
    raise ConfigError(f'{source}: expected "host:port" or {{"host": ..., "port": ...}}, found {shown}')
