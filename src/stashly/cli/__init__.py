"""The ``stashly`` command line: ``ping``, ``stats``, ``get``, ``flush`` and ``keys`` against the configured Redis.

Settings resolve as for a :class:`~stashly.CacheManager` (options > ``STASHLY_*`` > ``config.json`` > defaults);
the Redis client is built by the library's own policy (TLS, ACL user, timeouts). Expected failures print one line,
``stashly: error: ...``, and exit with a code of their own: 1 nothing found (or not confirmed), 2 usage, 3
configuration, 4 Redis unreachable, refused or failing; with ``--json`` a JSON document with an ``error`` field is
printed too. Nothing it prints contains a password or a secret, and nothing a terminal would act on: control and
bidi characters from Redis or the command line are shown as escapes (:func:`_safe`, :func:`_dumps`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, NoReturn, TextIO

import orjson
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import __version__, keys
from ..backends.options import RedisOptions
from ..backends.redis import RedisBackend, escape_glob
from ..config.settings import Settings, parse_name, resolve
from ..config.urls import topology
from ..errors import CacheUnavailableError, ConfigError
from ..keys.layout import generation_key
from ..sentinels import MISSING
from ..storage import codec
from ..storage.pickle import SignedPickle
from ..storage.stamps import parse_stamp

__all__ = ["main"]

OK, NOTHING, USAGE, CONFIG, UNAVAILABLE = 0, 1, 2, 3, 4
_SCAN_COUNT: Final = 1000
_PATIENCE: Final = 2.0  # seconds the command line waits at least: the library's 0.25 s defaults suit request paths
_MEMORY_SAMPLE: Final = 10_000  # keys per namespace measured with MEMORY USAGE; beyond that, an estimate
_LARGE: Final = 10_000  # keys in the database from which stats draws a progress bar (on a terminal)
_BUCKETS: Final = ("<1m", "<1h", "<1d", "longer", "no expiry")
_PICKLE_MAGIC: Final = b"stashly-pickle:"  # signed_pickle's layout: magic, version, ':', signature, ':', payload
_USERINFO: Final = re.compile(r"(?<=://)[^/?#\s]*@")
_DEEPEST: Final = 10_000  # Python frames json.dumps may need for a value as deep as orjson parses (1024 levels)
_COUNTER: Final = re.compile(rb"-?[0-9]{1,19}")  # what INCR leaves: a signed 64-bit decimal
# What a terminal acts on (C0, DEL, C1: ESC, BEL, CR, CSI...) or that reorders what it shows (bidi controls, line
# and paragraph separators), and lone surrogates (undecodable argv or environment): never printed as they are.
_UNSAFE: Final = frozenset(
    [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
     *range(0x2066, 0x206A), *range(0xD800, 0xE000)]
)  # fmt: skip
_ESCAPES: Final = {char: f"\\x{char:02x}" if char < 0x100 else f"\\u{char:04x}" for char in _UNSAFE} | {
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}
# In JSON text these can only stand inside strings (the encoders escape C0 themselves): \u escapes keep it valid.
_JSON_ESCAPES: Final = {char: f"\\u{char:04x}" for char in _UNSAFE if char >= 0x20}
_EXIT_CODES: Final = """exit codes:
  0  done
  1  nothing found (get: no such key; keys: empty namespace), or flush not confirmed
  2  usage error
  3  configuration error (bad option, environment variable or config.json; no Redis configured)
  4  Redis unreachable, timed out, refused the login or a command"""


class _Failure(Exception):
    """An expected failure: one line on stderr and an exit code, no traceback; with ``--json``, ``document`` (what
    was found) is printed with the message as its ``error``."""

    def __init__(self, code: int, message: str, document: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.document = code, document or {}


class _UsageError(Exception):
    """A command line argparse rejects: reported as one line, like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see {self.prog} --help)")


class _Session:
    """The resolved settings and the connections, opened on first use and closed at the end."""

    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.settings, self.args = settings, args
        self.json: bool = getattr(args, "json", False)
        self.out: TextIO = sys.stdout
        self._client: redis.Redis | None = None
        self._backend: RedisBackend | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis(connection_pool=RedisOptions.from_settings(self.settings).pool())
        return self._client

    @property
    def backend(self) -> RedisBackend:
        """The library's own backend, so ``flush`` removes exactly what ``flush_namespace`` removes."""
        if self._backend is None:
            self._backend = RedisBackend(RedisOptions.from_settings(self.settings))
        return self._backend

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client.connection_pool.disconnect()
        if self._backend is not None:
            self._backend.close()

    def emit(self, document: dict[str, Any], lines: Iterable[str]) -> None:
        """Print ``document`` as JSON with ``--json``, else the human-readable ``lines``."""
        if self.json:
            self.out.write(_dumps(document) + "\n")
        else:
            self.out.write("".join(_safe(line) + "\n" for line in lines))
        self.out.flush()  # here, where a closed pipe is handled, not at exit


# -- commands ---------------------------------------------------------------------------------------------------


def _ping(session: _Session) -> int:
    """Connectivity, server version, round-trip time, TLS and user in use."""
    s, client = session.settings, session.client
    started = time.perf_counter()
    server = _hello(client, s.protocol)  # connects and logs in first
    connect_ms = (time.perf_counter() - started) * 1000
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        _hello(client, s.protocol)
        samples.append((time.perf_counter() - started) * 1000)
    rtt = statistics.median(samples)
    tls = s.url.startswith("rediss:")
    user = s.username or "default"
    auth = "password" if s.password else "none"
    document = {
        "url": _mask(s.url),
        "server": server.get("server", "redis"),
        "version": server.get("version"),
        "mode": server.get("mode"),
        "role": server.get("role"),
        "protocol": s.protocol,
        "rtt_ms": round(rtt, 3),
        "connect_ms": round(connect_ms, 3),
        "tls": tls,
        "tls_ca_certs": s.ssl_ca_certs if tls else None,
        "tls_client_certificate": s.ssl_certfile if tls else None,
        "user": user,
        "auth": auth,
    }
    details = ", ".join(str(server[name]) for name in ("mode", "role") if server.get(name))
    if tls:
        verified = s.ssl_ca_certs or "the system trust store"
        shown_tls = f"on, server verified against {verified}" + (
            f", client certificate {s.ssl_certfile}" if s.ssl_certfile else ""
        )
    else:
        shown_tls = "off"
    session.emit(
        document,
        [
            f"PONG from {_mask(s.url)}",
            f"  server      {document['server']} {document['version'] or '?'}"
            + (f" ({details})" if details else "")
            + f", protocol RESP{s.protocol}",
            f"  round trip  {rtt:.2f} ms (median of {len(samples)}; connecting took {connect_ms:.1f} ms)",
            f"  tls         {shown_tls}",
            f"  user        {user} ({'password login' if s.password else 'no login'})",
        ],
    )
    return OK


def _hello(client: redis.Redis, protocol: int) -> dict[str, Any]:
    """The server's ``HELLO`` reply as text fields. ``HELLO`` needs no ACL grant, unlike ``PING`` and ``INFO``."""
    try:
        reply = client.execute_command("HELLO", str(protocol))  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        if "unknown command" not in str(exc).lower():
            raise
        client.execute_command("PING")  # type: ignore[no-untyped-call]  # a server older than Redis 6
        version = client.info("server").get("redis_version")
        return {"server": "redis", "version": str(version) if version is not None else None}
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {_text(name): _text(value) if isinstance(value, bytes) else value for name, value in pairs}


def _get(session: _Session) -> int:
    """One entry: decoded, with its TTL, size and whether its key digest matches."""
    s, name = session.settings, session.args.key
    candidates = [name] if name.startswith(s.prefix + ":") else []  # a full key...
    relative = keys.entry_key(s.prefix, s.namespace, name)  # ...or one relative to the namespace
    candidates += [relative] if relative not in candidates else []
    with session.client.pipeline(transaction=False) as pipe:
        for key in candidates:
            pipe.get(key)
            pipe.pttl(key)
            pipe.get(generation_key(key))
        replies = pipe.execute(raise_on_error=False)
    not_strings = []
    for key, raw, pttl, generation in zip(candidates, replies[::3], replies[1::3], replies[2::3], strict=True):
        if isinstance(pttl, Exception):
            raise pttl
        if isinstance(raw, ResponseError) and str(raw).startswith("WRONGTYPE"):
            not_strings.append(key)
            continue
        if isinstance(raw, Exception):
            raise raw
        if raw is not None:
            entry = {"found": True, "key": key, **_inspect_stamped(key, raw, generation, s)}
            entry["ttl_seconds"] = None if pttl < 0 else pttl / 1000
            session.emit(entry, _entry_lines(entry))
            return OK
    missing = {"found": False, "tried": candidates}
    if not_strings:  # the library's MGET reads such a key as a miss
        message = f"{not_strings[0]} holds a Redis value that is not a string: not a stashly entry"
        raise _Failure(NOTHING, message, missing | {"key": not_strings[0]})
    raise _Failure(NOTHING, f"no entry {' or '.join(candidates)} at {_mask(s.url)}", missing)


def _inspect_stamped(key: str, raw: bytes, current: object, settings: Settings) -> dict[str, Any]:
    """:func:`_inspect` of an entry's payload, with its generation when a versioned flush ever stamped one.

    ``current`` is the namespace's counter as ``GET`` returned it (``None``, or an error for a key of another
    type, which the library's ``MGET`` also reads as absent). The library compares stamp and counter as bytes.
    """
    if key.startswith(settings.prefix + "::"):
        return _inspect(key, raw, settings)
    written, payload = parse_stamp(raw)
    info = _inspect(key, payload, settings) | {"size_bytes": len(raw)}
    now = current if isinstance(current, bytes) else None
    if written is None and now is None:
        return info
    number = 0 if written is None else _counter(written)
    info["generation"] = number
    if written is not None and number is None:
        _note(info, f"generation stamp {_shown(written)} is not a number: not written by stashly")
    if now is not None and _counter(now) is None:
        _note(info, f"generation counter {generation_key(key)} holds {_shown(now)}, not a number")
    if written == now:
        return info
    if number is None or (now is not None and _counter(now) is None):
        _note(info, "the stamp is not the namespace's generation: read as a miss")
    else:
        _note(info, f"from generation {number}, retired by a versioned flush: read as a miss")
    return info


def _note(info: dict[str, Any], note: str) -> None:
    """Add ``note`` to the entry's notes: every reason it reads as a miss is worth knowing."""
    info["note"] = f"{info['note']}; {note}" if info.get("note") else note


def _counter(raw: bytes) -> int | None:
    """A counter as ``INCR`` writes it (signed 64-bit decimal), or ``None`` for anything else found there."""
    value = int(raw) if _COUNTER.fullmatch(raw) else None
    return value if value is not None and -(2**63) <= value < 2**63 else None


def _shown(raw: bytes, limit: int = 40) -> str:
    """Stored bytes in a message: quoted, shortened."""
    return repr(_text(raw[:limit])) + ("..." if len(raw) > limit else "")


def _inspect(key: str, raw: bytes, settings: Settings) -> dict[str, Any]:
    """What ``raw`` stored under ``key`` is, and what the library would make of it. Unpickles nothing unverified."""
    info: dict[str, Any] = {"size_bytes": len(raw)}
    internal = key.removeprefix(settings.prefix + "::")
    if internal != key:
        kind = internal.partition(":")[0]
        count = _counter(raw) if kind == "guard" else None
        info |= {
            "kind": kind if kind in ("guard", "lock") else "internal",
            "value": _text(raw) if count is None else count,
        }
        if kind == "guard" and count is None:
            info["note"] = "not a number: flushes of this namespace fail (INCRBY) until it is removed"
        return info
    if raw.startswith(_PICKLE_MAGIC):
        info |= {"kind": "signed pickle", "format": _text(raw[len(_PICKLE_MAGIC) :].partition(b":")[0])}
        if not settings.secrets:
            return info | {"signature": "not checked: no secrets configured (STASHLY_SECRETS), value not shown"}
        try:
            value = SignedPickle(settings.secrets).decode(raw, key)  # verifies the signature before unpickling
        except Exception as exc:  # a verified payload whose classes this process cannot import
            return info | {"signature": "valid", "value_repr": None, "note": f"cannot unpickle here: {exc!r}"}
        if value is MISSING:
            return info | {"signature": "INVALID for this key with the configured secrets: read as a miss"}
        try:
            shown = repr(value)
        except Exception as exc:  # the class's own __repr__, run on data from Redis
            return info | {"signature": "valid", "value_repr": None, "note": f"cannot show the value: {exc!r}"}
        return info | {"signature": "valid", "value_repr": shown}
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or "stashly" not in document:
        return info | {"kind": "foreign", "preview": _text(raw[:200]), "note": "not a stashly entry: read as a miss"}
    digest = document.get("key")
    info |= {
        "kind": "entry",
        "format": document.get("stashly"),
        "key_digest": digest,
        "key_digest_matches": digest == codec.binding(key).decode(),
        "value": document.get("value"),
    }
    if codec.decode(raw, key) is MISSING:
        info["note"] = "the library reads this entry as a miss (wrong format version or key digest)"
    elif len(raw) > settings.max_value_bytes:
        info["note"] = f"larger than max_value_bytes={settings.max_value_bytes}: read as a miss"
    return info


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    ttl = entry["ttl_seconds"]
    kind = entry["kind"]
    if kind == "entry":
        matches = "matches" if entry["key_digest_matches"] else "DOES NOT MATCH"
        kind = f"stashly entry, format {entry['format']}, key digest {entry['key_digest']} {matches}"
    elif kind == "signed pickle":
        kind = f"signed pickle entry, format {entry['format']}, signature {entry['signature']}"
    lines = [
        f"key    {entry['key']}",
        f"kind   {kind}",
        f"ttl    {'no expiry' if ttl is None else f'{_duration(ttl)} ({ttl:g} s)'}",
        f"size   {_size(entry['size_bytes'])}",
    ]
    lines += [f"note   {entry['note']}"] if entry.get("note") else []
    if "value" in entry:
        lines += ["value", *_dumps(entry["value"]).split("\n")]
    elif entry.get("value_repr") is not None:
        lines += ["value (unpickled)", entry["value_repr"]]
    elif "preview" in entry:
        lines += ["stored bytes (first 200)", entry["preview"]]
    return lines


def _keys(session: _Session) -> int:
    """The keys of a namespace (SCAN), sorted, at most ``--limit``."""
    s, namespace, limit = session.settings, session.args.namespace, session.args.limit
    head = keys.namespace_prefix(s.prefix, namespace)
    found: list[str] = []
    for key in session.client.scan_iter(match=escape_glob(head) + "*", count=_SCAN_COUNT):
        found.append(_text(key))
        if limit and len(found) > limit:
            break
    truncated = bool(limit) and len(found) > limit
    found = sorted(found[:limit] if limit else found)
    document = {"namespace": namespace, "prefix": s.prefix, "count": len(found), "truncated": truncated, "keys": found}
    if not found:
        raise _Failure(NOTHING, f"no keys in namespace {namespace!r} ({head}*) at {_mask(s.url)}", document)
    session.emit(document, found)
    if truncated:
        _say(f"showing the first {limit} keys found; --limit 0 lists them all")
    return OK


def _flush(session: _Session) -> int:
    """Remove a namespace as ``CacheManager.flush_namespace`` does (SCAN + UNLINK, guard bumped first)."""
    s, namespace = session.settings, session.args.namespace
    head, guard = keys.namespace_prefix(s.prefix, namespace), keys.guard_key(s.prefix, namespace)
    if not session.args.yes:
        count = session.backend.count_prefix(head)
        sys.stderr.write(_safe(f"Remove {count} keys of namespace {namespace!r} ({head}*) at {_mask(s.url)}? [y/N] "))
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not sys.stdin.isatty():  # nobody typed the newline that ends the prompt
            sys.stderr.write("\n")
        if answer.strip().lower() not in ("y", "yes"):
            why = "no answer (stdin closed): pass --yes to flush without asking" if not answer else "not confirmed"
            raise _Failure(
                NOTHING, f"{why}; nothing removed", {"namespace": namespace, "prefix": s.prefix, "removed": 0}
            )
    removed = session.backend.delete_prefix(head, guard)
    document = {"namespace": namespace, "prefix": s.prefix, "pattern": head + "*", "removed": removed, "guard": guard}
    session.emit(document, [f"removed {removed} keys of namespace {namespace!r} ({head}*); {guard} bumped"])
    return OK


@dataclasses.dataclass
class _Tally:
    keys: int = 0
    measured: int = 0
    memory: int = 0
    ttl: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(_BUCKETS, 0))

    def as_json(self, memory: bool) -> dict[str, Any]:
        estimate = round(self.memory / self.measured * self.keys) if memory and self.measured else None
        sampled = memory and self.measured < self.keys
        return {"keys": self.keys, "memory_bytes": estimate, "memory_sampled": sampled, "ttl": self.ttl}


def _stats(session: _Session) -> int:
    """Key counts, memory and TTL distribution per namespace, from one SCAN of ``<prefix>:*``."""
    s, client, only = session.settings, session.client, session.args.namespace
    head = keys.namespace_prefix(s.prefix, only) if only else s.prefix + ":"
    tallies: dict[str, _Tally] = {}
    internal = {"guard": 0, "lock": 0, "other": 0}
    memory = True  # until the server refuses MEMORY USAGE (a least-privilege ACL user)
    progress = _Progress(client)
    cursor: int | None = None
    while cursor != 0:
        cursor, batch = client.scan(cursor or 0, match=escape_glob(head) + "*", count=_SCAN_COUNT)
        progress.advance()
        plan: list[tuple[str | None, str, bool]] = []  # (namespace, internal kind, memory measured)
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                namespace, kind = _group(_text(key), s.prefix)
                measure = False
                if namespace is not None and memory:
                    tally = tallies.setdefault(namespace, _Tally())
                    measure = tally.measured < _MEMORY_SAMPLE
                    tally.measured += int(measure)
                pipe.pttl(key)
                if measure:
                    pipe.memory_usage(key)
                plan.append((namespace, kind, measure))
            replies = iter(pipe.execute(raise_on_error=False))
        for namespace, kind, measured in plan:
            pttl, used = next(replies), next(replies) if measured else None
            if isinstance(used, NoPermissionError):
                memory, used = False, None
            for reply in (pttl, used):
                if isinstance(reply, Exception):
                    raise reply
            if namespace is None:
                internal[kind] += int(pttl != -2)
                continue
            tally = tallies.setdefault(namespace, _Tally())
            tally.measured -= int(measured and (used is None or pttl == -2))  # gone since SCAN saw it
            if pttl != -2:
                tally.keys += 1
                tally.memory += used or 0
                tally.ttl[_bucket(pttl)] += 1
    progress.done()
    tallies = {name: tally for name, tally in sorted(tallies.items()) if tally.keys}
    total = sum(tally.keys for tally in tallies.values())
    document = {
        "url": _mask(s.url),
        "prefix": s.prefix,
        "namespace": only,
        "keys": total,
        "memory_available": memory,
        "namespaces": {name: tally.as_json(memory) for name, tally in tallies.items()},
        "internal": internal,
    }
    session.emit(document, _stats_lines(document))
    return OK


def _group(key: str, prefix: str) -> tuple[str | None, str]:
    """``(namespace, "")`` for an entry, ``(None, "guard" | "lock" | "other")`` for anything else."""
    namespace, separator, _ = key.removeprefix(prefix + ":").partition(":")
    if namespace and separator:
        return namespace, ""
    kind = key.removeprefix(prefix + "::").partition(":")[0] if not namespace else "other"
    return None, kind if kind in ("guard", "lock") else "other"


def _bucket(pttl: int) -> str:
    if pttl < 0:
        return "no expiry"
    for limit, name in ((60_000, "<1m"), (3_600_000, "<1h"), (86_400_000, "<1d")):
        if pttl < limit:
            return name
    return "longer"


def _stats_lines(document: dict[str, Any]) -> list[str]:
    namespaces: dict[str, dict[str, Any]] = document["namespaces"]
    where = f"{document['url']}, prefix {document['prefix']!r}"
    lines = [f"{where}: {document['keys']:,} keys in {len(namespaces)} namespaces"]
    header = ["namespace", "keys", "memory", *_BUCKETS]
    rows = [header]
    for name, tally in namespaces.items():  # names escaped before the columns are measured
        shown = "n/a" if tally["memory_bytes"] is None else _size(tally["memory_bytes"])
        shown = "~" + shown if tally["memory_sampled"] else shown
        rows.append([_safe(name), f"{tally['keys']:,}", shown, *(f"{tally['ttl'][bucket]:,}" for bucket in _BUCKETS)])
    if len(rows) > 1:
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
    internal = document["internal"]
    if any(internal.values()):
        lines.append(f"internal keys: {internal['guard']} guards, {internal['lock']} locks, {internal['other']} other")
    if not document["memory_available"]:
        lines.append("memory: n/a (this user may not run MEMORY USAGE)")
    elif any(tally["memory_sampled"] for tally in namespaces.values()):
        lines.append(f"~ memory estimated from the first {_MEMORY_SAMPLE:,} keys SCAN found in the namespace")
    return lines


class _Progress:
    """A progress bar on stderr for large databases, drawn only when stderr is a terminal."""

    def __init__(self, client: redis.Redis) -> None:
        self.total = 0
        self.calls = 0
        self.drawn = 0.0
        if sys.stderr.isatty():
            try:
                self.total = int(client.dbsize())
            except RedisError:  # not permitted: no bar
                self.total = 0

    def advance(self) -> None:
        self.calls += 1
        if self.total < _LARGE or time.monotonic() - self.drawn < 0.2:
            return
        self.drawn = time.monotonic()
        done = min(self.calls * _SCAN_COUNT / self.total, 0.99)  # each SCAN call visits about COUNT slots
        bar = "#" * int(done * 30)
        sys.stderr.write(f"\rstashly: scanning {self.total:,} keys [{bar:<30}] {done:4.0%}")
        sys.stderr.flush()

    def done(self) -> None:
        if self.drawn:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


# -- formatting -------------------------------------------------------------------------------------------------


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")


def _safe(text: str) -> str:
    """``text`` fit for a terminal: each control, bidi or separator character written as ``\\xNN``/``\\uNNNN``.

    Everything printed for a human goes through here: keys, values and messages carry whatever Redis or the
    command line held, and an ESC, CSI or BEL reaching the terminal would be obeyed. Applying it twice changes
    nothing. Backslashes are kept as they are (a key's ``\\x1b`` could be either: ``--json`` tells them apart).
    """
    return text.translate(_ESCAPES)


def _dumps(document: object) -> str:
    """``document`` as indented JSON that a terminal can show: :func:`_safe`'s characters as ``\\u`` escapes.

    The JSON means the same as without them; non-ASCII text stays readable. Bytes (from a reply the library did
    not decode) are shown as text, anything else JSON cannot hold as its ``repr``.
    """
    try:
        text = orjson.dumps(document, default=_jsonable, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:  # a lone surrogate from argv or the environment; nesting deeper than orjson
        # writes (254 levels), which it parses (1024 levels) and json.dumps's Python recursion reaches
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, _DEEPEST))
        try:
            text = json.dumps(document, indent=2, ensure_ascii=False, default=_jsonable)
        finally:
            sys.setrecursionlimit(limit)
    return text.translate(_JSON_ESCAPES)


def _jsonable(value: object) -> str:
    return _text(value) if isinstance(value, bytes) else repr(value)


def _mask(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced (settings already strip it: this is a second lock)."""
    return _USERINFO.sub("***@", url)


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    raise AssertionError


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, hours, days = int(seconds // 60), int(seconds // 3600), int(seconds // 86400)
    if seconds < 3600:
        return f"{minutes}m {int(seconds % 60)}s"
    return f"{hours}h {minutes % 60}m" if seconds < 86400 else f"{days}d {hours % 24}h"


def _say(message: str) -> None:
    sys.stderr.write(f"stashly: {_safe(message)}\n")


# -- entry point ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        return _error(USAGE, str(exc), None, _wants_json(argv))
    except SystemExit as exc:  # argparse: --help, --version
        return exc.code if isinstance(exc.code, int) else USAGE if exc.code else OK
    wants_json: bool = getattr(args, "json", False)
    session: _Session | None = None
    try:
        settings = _settings(args)
        session = _Session(settings, args)
        run: Callable[[_Session], int] = args.run
        return run(session)
    except _Failure as exc:
        return _error(exc.code, str(exc), session, wants_json, exc.document)
    except ConfigError as exc:
        return _error(CONFIG, str(exc), session, wants_json)
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        _silence_stdout()
        return NOTHING
    except (CacheUnavailableError, RedisError, OSError) as exc:
        return _error(UNAVAILABLE, _unavailable(exc, session), session, wants_json)
    except KeyboardInterrupt:
        return _error(130, "interrupted", session, wants_json)
    finally:
        if session is not None:
            session.close()


def _wants_json(argv: list[str]) -> bool:
    """Whether ``--json`` is among arguments the parser rejected (so the error is a JSON document too)."""
    probe = _Parser(add_help=False)
    probe.add_argument("--json", action="store_true")
    try:
        return bool(probe.parse_known_args(argv)[0].json)
    except _UsageError:  # --json=x
        return False


def _silence_stdout() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _settings(args: argparse.Namespace) -> Settings:
    timeout = getattr(args, "timeout", None)
    settings = resolve(
        config_path=getattr(args, "config", None),
        url=getattr(args, "url", None),
        prefix=getattr(args, "prefix", None),
        namespace=getattr(args, "namespace", None) if args.command in ("get", "stats") else None,
        connect_timeout=timeout,
        socket_timeout=timeout,
    )
    if timeout is None:
        connect, command = max(settings.connect_timeout, _PATIENCE), max(settings.socket_timeout, _PATIENCE)
        settings = dataclasses.replace(settings, connect_timeout=connect, socket_timeout=command)
    if settings.url.startswith("memory:"):
        raise _Failure(
            CONFIG,
            "no Redis configured: pass --url redis://host:6379/0, set STASHLY_URL, or add a redis section to "
            "config.json (the memory backend lives inside one process; there is nothing to inspect)",
        )
    if topology(settings.url).kind == "cluster":
        raise _Failure(
            CONFIG,
            "the stashly CLI inspects one server and does not speak Redis Cluster yet: point --url at one primary "
            "(redis://host:port); flush a namespace from the application with flush_namespace()",
        )
    return settings


def _unavailable(exc: BaseException, session: _Session | None) -> str:
    cause = exc.__cause__ if isinstance(exc, CacheUnavailableError) and exc.__cause__ else exc
    where = _mask(session.settings.url) if session else "Redis"
    user = (session.settings.username if session else None) or "default"
    detail = f"{type(cause).__name__}: {cause}"
    if isinstance(cause, AuthenticationError) or "NOAUTH" in str(cause) or "WRONGPASS" in str(cause):
        return f"authentication failed at {where} as user {user!r}: {cause}"
    if isinstance(cause, NoPermissionError):
        return f"permission denied at {where} for user {user!r}: {cause}"
    if isinstance(cause, RedisTimeoutError | TimeoutError):
        timeout = session.settings.socket_timeout if session else "?"
        return f"timed out talking to {where} (timeout {timeout} s; --timeout to wait longer): {detail}"
    if isinstance(cause, ResponseError):
        return f"{where} refused a command: {detail}"
    return f"cannot reach {where}: {detail}"


def _error(
    code: int, message: str, session: _Session | None, as_json: bool, document: dict[str, Any] | None = None
) -> int:
    """Report a failure: one line on stderr; with ``--json`` also ``document`` with the line as its ``error``."""
    if session is not None:  # a second lock: no message may carry a credential, whatever produced it
        for secret in (session.settings.password, *session.settings.secrets):
            message = message.replace(secret, "***") if secret else message
    message = _safe(_mask(message))
    _say(f"error: {message}")
    if as_json:
        try:
            sys.stdout.write(_dumps((document or {}) | {"error": message}) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
    return code


def _name(text: str) -> str:
    try:
        return parse_name(text, "name")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("name: ")) from None


def _key(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:  # undecodable bytes in argv: stashly never stores such a key
        raise argparse.ArgumentTypeError("expected valid UTF-8") from None
    if not text:
        raise argparse.ArgumentTypeError("expected a non-empty key")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, found {text!r}")
    return value


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):  # isdigit alone takes "²", which int() then refuses
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (0: no limit), found {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    # The shared options are accepted before and after the command; SUPPRESS keeps a subcommand from resetting
    # what was given before it.
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection and output (default: STASHLY_* environment, then config.json)")
    hide = argparse.SUPPRESS
    group.add_argument("--url", default=hide, help="redis://[user:password@]host:port/db, rediss://... or unix://...")
    group.add_argument("--config", default=hide, metavar="PATH", help="config.json to read (default ./config.json)")
    group.add_argument("--prefix", default=hide, type=_name, help="key prefix (default stashly)")
    group.add_argument(
        "--timeout",
        default=hide,
        type=_seconds,
        metavar="SECONDS",
        help="connect and command timeout (default: 2, or more if configured)",
    )
    group.add_argument("--json", default=hide, action="store_true", help="print JSON for scripts")
    parser = _Parser(
        prog="stashly",
        description="Inspect and manage a stashly cache in Redis.",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"stashly {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[_Session], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help, epilog=_EXIT_CODES)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.set_defaults(run=run)
        return sub

    command("ping", _ping, "connectivity, server version, round-trip time, TLS and user")
    stats = command("stats", _stats, "key counts, memory and TTLs per namespace (SCAN)")
    stats.add_argument("--namespace", type=_name, help="only this namespace")
    get = command("get", _get, "one entry: decoded value, TTL, size, key digest check")
    get.add_argument(
        "key", metavar="KEY", type=_key, help="a full key (stashly:app:user:1) or one in the namespace (user:1)"
    )
    get.add_argument("--namespace", type=_name, help="namespace of a relative KEY (default: settings)")
    flush = command("flush", _flush, "remove every entry of a namespace (asks first)")
    flush.add_argument("namespace", metavar="NAMESPACE", type=_name)
    flush.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    listing = command("keys", _keys, "list the keys of a namespace (SCAN)")
    listing.add_argument("namespace", metavar="NAMESPACE", type=_name)
    listing.add_argument("--limit", type=_count, default=100, help="at most this many keys (default 100; 0: all)")
    return parser
