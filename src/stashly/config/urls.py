"""Redis URLs: every accepted form validated, the topology a URL names, and config.json's keys as a URL.

URLs may carry a password: messages echo only the scheme and what follows the last ``@``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal, NamedTuple
from urllib.parse import parse_qsl, unquote

from stashly.config import checks
from stashly.errors import ConfigError

__all__ = ["ParsedUrl", "Topology", "compile_location", "parse_url", "topology"]

SCHEMES: Final = ("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "unix", "memory")
# The schemes whose location is a comma-separated node list, and the port a node without one gets.
NODE_LIST_PORTS: Final = {"redis+cluster": 6379, "rediss+cluster": 6379, "redis+sentinel": 26379}
URL_PARTS: Final = ("host", "port", "db", "ssl")
"""config.json keys that compile to a redis[s]:// URL."""
TOPOLOGY_KEYS: Final = ("cluster", "startup_nodes", "sentinel")
"""config.json keys that compile to a Cluster or Sentinel URL."""


class ParsedUrl(NamedTuple):
    """A validated URL as ``Settings.url`` keeps it (credentials taken out), and the credentials it carried."""

    url: str
    username: str | None
    password: str | None


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
    parsed = parse_url(url, "topology url")  # credentials, if any, are set aside: they are not topology
    scheme, _, rest = parsed.url.partition("://")
    if scheme not in NODE_LIST_PORTS:
        return Topology("single", (), None, 0, tls=scheme == "rediss")
    location, tail = _split_netloc(rest)
    return _node_list_topology(scheme, location, tail, "topology url")


def parse_url(value: object, source: str) -> ParsedUrl:
    # The URL may carry a password: messages echo only the scheme and what follows the last '@'.
    if not isinstance(value, str):
        raise ConfigError(f"{source}: expected a URL string, found a value of type {type(value).__name__}")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ConfigError(f"{source}: expected a URL without whitespace or control characters")
    scheme, separator, rest = value.partition("://")
    scheme = scheme.lower()
    if separator and scheme == "rediss+sentinel":
        raise ConfigError(f"{source}: expected redis+sentinel://; stashly does not reach Sentinel over TLS")
    if not separator or scheme not in SCHEMES:
        named = separator and re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme)
        found = f"scheme {scheme!r}" if named else "no scheme"
        accepted = ", ".join(f"{name}://" for name in SCHEMES)
        raise ConfigError(f"{source}: expected a URL with scheme {accepted}; found {found}")
    if scheme == "memory":
        if rest:
            raise ConfigError(f"{source}: expected exactly 'memory://' (it takes no host, path or options)")
        return ParsedUrl("memory://", None, None)
    netloc, tail = _split_netloc(rest)
    userinfo, _, location = netloc.rpartition("@")
    if "@" in tail:
        # An unescaped '/', '?' or '#' in a password would otherwise leak part of it into the stored url.
        raise ConfigError(f"{source}: found '@' after the host; percent-encode '/?#@' in credentials")
    if scheme == "unix":
        if not re.split(r"[?#]", tail, maxsplit=1)[0]:
            raise ConfigError(f"{source}: expected a socket path, as in unix:///run/redis.sock")
        _check_options(tail, source, accepted=("db",))
    elif scheme in NODE_LIST_PORTS:
        _node_list_topology(scheme, location, tail, source)
    else:
        _check_redis_location(location, tail, source)
        _check_options(tail, source, accepted=())
    username, _, password = userinfo.partition(":")
    return ParsedUrl(f"{scheme}://{location}{tail}", unquote(username) or None, unquote(password) or None)


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
        checks.port(checks.digits_to_int(port), f"{source}, port")
    path = re.split(r"[?#]", tail, maxsplit=1)[0]
    if path not in ("", "/"):
        checks.db(checks.digits_to_int(path[1:]), f"{source}, database in the path")


# URL options redis-py would take over the settings of the same meaning (its URL options win over arguments).
_OPTION_SETTINGS: Final = {
    "socket_timeout": "socket_timeout",
    "socket_connect_timeout": "connect_timeout",
    "max_connections": "max_connections",
    "protocol": "protocol",
    "ssl_ca_certs": "ssl_ca_certs",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
    "username": "username",
    "password": "password",
}


def _check_options(tail: str, source: str, accepted: tuple[str, ...]) -> None:
    """Refuse ``?options`` now: redis-py would apply them at the first connection, over stashly's own settings, or
    fail the first request on one it does not know (``?bogus=1`` is a ``TypeError`` there)."""
    query = tail.partition("#")[0].partition("?")[2]
    seen: set[str] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        shown = repr(name if len(name) <= 40 else name[:37] + "...")  # a name, never its value (a password?)
        if name in seen:
            raise ConfigError(f"{source}: found the URL option {shown} twice")
        seen.add(name)
        if name == "db" and name in accepted:
            checks.db(checks.digits_to_int(value), f"{source}, ?db=")
            continue
        setting = _OPTION_SETTINGS.get(name)
        instead = f"set {setting} (STASHLY_{setting.upper()})" if setting else "stashly passes no options to redis-py"
        if name == "db":
            instead = "put the database in the path, as in redis://host:6379/2"
        only = " (only ?db= on unix://)" if not accepted else f" other than ?{'=, ?'.join(accepted)}="
        raise ConfigError(f"{source}: expected no URL options{only}, found {shown}: {instead}")


def _node_list_topology(scheme: str, location: str, tail: str, source: str) -> Topology:
    """Validate a redis[s]+cluster:// or redis+sentinel:// location and path; ``location`` has no userinfo."""
    if re.search(r"[?#]", tail):
        # The cluster and sentinel clients are built from the topology, so options here would be ignored.
        raise ConfigError(f"{source}: expected no ?options or #fragment in a {scheme}:// URL; use the settings")
    port = NODE_LIST_PORTS[scheme]
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
        if not checks.host(host, f"{source}, host").startswith("["):
            raise checks.error(f"{source}, host", "an IPv6 address inside [ ]", text)
    else:
        checks.host(host, f"{source}, host")
    return host, default_port if port is None else checks.port(checks.digits_to_int(port), f"{source}, port")


def _parse_sentinel_path(tail: str, source: str) -> tuple[str, int]:
    """``/service[/db]`` of a redis+sentinel:// URL."""
    service, slash, db = tail[1:].partition("/")
    if not service:
        raise ConfigError(
            f"{source}: expected the Sentinel service name as the path, as in redis+sentinel://host:26379/mymaster"
        )
    _parse_service(service, f"{source}, service name")
    return service, checks.db(checks.digits_to_int(db), f"{source}, database in the path") if slash else 0


def _parse_service(value: object, source: str) -> str:
    if (
        isinstance(value, str)
        and 1 <= len(value) <= checks.NAME_MAX
        and not any(char in "/?#@%," or char.isspace() or not char.isprintable() for char in value)
    ):
        return value
    expected = f"a service name of 1..{checks.NAME_MAX} characters without '/?#@%,' or whitespace"
    raise checks.error(source, expected, value)


def compile_location(parts: Mapping[str, object], label: str) -> str | None:
    """The file's location keys as one URL; ``None`` when only ``"cluster": false`` was given."""
    cluster = checks.boolean(parts.get("cluster", False), f"{label}: redis.cluster")
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
    host = checks.host(parts.get("host", "localhost"), f"{label}: redis.host")
    port = checks.port(parts.get("port", 6379), f"{label}: redis.port")
    db = checks.db(parts.get("db", 0), f"{label}: redis.db")
    scheme = "rediss" if checks.boolean(parts.get("ssl", False), f"{label}: redis.ssl") else "redis"
    return f"{scheme}://{host}:{port}/{db}"


def _compile_cluster(parts: Mapping[str, object], label: str) -> str:
    """``"cluster": true`` with startup_nodes, or host/port as the one startup node, as a redis[s]+cluster:// URL."""
    scheme = "rediss+cluster" if checks.boolean(parts.get("ssl", False), f"{label}: redis.ssl") else "redis+cluster"
    if checks.db(parts.get("db", 0), f"{label}: redis.db"):
        raise checks.error(f"{label}: redis.db", "0 or no db, as Redis Cluster has only database 0", parts["db"])
    if "startup_nodes" not in parts:
        host = checks.host(parts.get("host", "localhost"), f"{label}: redis.host")
        return f"{scheme}://{host}:{checks.port(parts.get('port', 6379), f'{label}: redis.port')}"
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
    if checks.boolean(parts.get("ssl", False), f"{label}: redis.ssl"):
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
    db = "" if section.get("db") is None else f"/{checks.db(section['db'], f'{source}.db')}"
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
        return f"{checks.host(host, source)}:{port}"  # brackets an IPv6 host again
    if isinstance(value, dict) and "host" in value:
        unknown = sorted(set(value) - {"host", "port"})
        if unknown:
            raise ConfigError(f"{source}.{unknown[0]}: unknown key; accepted keys are host, port")
        host = checks.host(value["host"], f"{source}.host")
        return f"{host}:{checks.port(value.get('port', default_port), f'{source}.port')}"
    shown = type(value).__name__ if isinstance(value, dict | list) else checks.show(value)
    raise ConfigError(f'{source}: expected "host:port" or {{"host": ..., "port": ...}}, found {shown}')
