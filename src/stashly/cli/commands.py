"""The commands ``ping``, ``get``, ``keys`` and ``flush`` (``stats`` has a module of its own)."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Final

import redis
from redis.exceptions import ResponseError

from ..backends.redis import escape_glob
from ..keys import layout
from ..storage.inspect import inspect_entry
from .exits import NOTHING, OK, Failure
from .output import as_text, dumps, duration_text, mask, safe, say, size_text
from .session import Session

__all__ = ["SCAN_COUNT", "flush", "get", "list_keys", "ping"]

SCAN_COUNT: Final = 1000


def ping(session: Session) -> int:
    """Connectivity, server version, round-trip time, TLS and user in use."""
    s, client = session.settings, session.client
    started = time.perf_counter()
    server = hello(client, s.protocol)  # connects and logs in first
    connect_ms = (time.perf_counter() - started) * 1000
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        hello(client, s.protocol)
        samples.append((time.perf_counter() - started) * 1000)
    rtt = statistics.median(samples)
    tls = s.url.startswith("rediss:")
    user = s.username or "default"
    auth = "password" if s.password else "none"
    document = {
        "url": mask(s.url),
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
            f"PONG from {mask(s.url)}",
            f"  server      {document['server']} {document['version'] or '?'}"
            + (f" ({details})" if details else "")
            + f", protocol RESP{s.protocol}",
            f"  round trip  {rtt:.2f} ms (median of {len(samples)}; connecting took {connect_ms:.1f} ms)",
            f"  tls         {shown_tls}",
            f"  user        {user} ({'password login' if s.password else 'no login'})",
        ],
    )
    return OK


def hello(client: redis.Redis, protocol: int) -> dict[str, Any]:
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
    return {as_text(name): as_text(value) if isinstance(value, bytes) else value for name, value in pairs}


def get(session: Session) -> int:
    """One entry: decoded, with its TTL, size and whether its key digest matches."""
    s, name = session.settings, session.args.key
    candidates = [name] if name.startswith(layout.prefix_head(s.prefix)) else []  # a full key...
    relative = layout.entry_key(s.prefix, s.namespace, name)  # ...or one relative to the namespace
    candidates += [relative] if relative not in candidates else []
    with session.client.pipeline(transaction=False) as pipe:
        for key in candidates:
            pipe.get(key)
            pipe.pttl(key)
            pipe.get(layout.generation_key(key))
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
            found = inspect_entry(
                key, raw, generation, prefix=s.prefix, secrets=s.secrets, max_value_bytes=s.max_value_bytes
            )
            entry = {"found": True, "key": key, **found}
            entry["ttl_seconds"] = None if pttl < 0 else pttl / 1000
            session.emit(entry, entry_lines(entry))
            return OK
    missing = {"found": False, "tried": candidates}
    if not_strings:  # the library's MGET reads such a key as a miss
        message = f"{not_strings[0]} holds a Redis value that is not a string: not a stashly entry"
        raise Failure(NOTHING, message, missing | {"key": not_strings[0]})
    raise Failure(NOTHING, f"no entry {' or '.join(candidates)} at {mask(s.url)}", missing)


def entry_lines(entry: dict[str, Any]) -> list[str]:
    """What ``get`` shows a human of an inspected entry: key, kind, TTL, size, note and value."""
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
        f"ttl    {'no expiry' if ttl is None else f'{duration_text(ttl)} ({ttl:g} s)'}",
        f"size   {size_text(entry['size_bytes'])}",
    ]
    lines += [f"note   {entry['note']}"] if entry.get("note") else []
    if "value" in entry:
        lines += ["value", *dumps(entry["value"]).split("\n")]
    elif entry.get("value_repr") is not None:
        lines += ["value (unpickled)", entry["value_repr"]]
    elif "preview" in entry:
        lines += ["stored bytes (first 200)", entry["preview"]]
    return lines


def list_keys(session: Session) -> int:
    """The keys of a namespace (SCAN), sorted, at most ``--limit``."""
    s, namespace, limit = session.settings, session.args.namespace, session.args.limit
    head = layout.namespace_prefix(s.prefix, namespace)
    found: list[str] = []
    for key in session.client.scan_iter(match=escape_glob(head) + "*", count=SCAN_COUNT):
        found.append(as_text(key))
        if limit and len(found) > limit:
            break
    truncated = bool(limit) and len(found) > limit
    found = sorted(found[:limit] if limit else found)
    document = {"namespace": namespace, "prefix": s.prefix, "count": len(found), "truncated": truncated, "keys": found}
    if not found:
        raise Failure(NOTHING, f"no keys in namespace {namespace!r} ({head}*) at {mask(s.url)}", document)
    session.emit(document, found)
    if truncated:
        say(f"showing the first {limit} keys found; --limit 0 lists them all")
    return OK


def flush(session: Session) -> int:
    """Remove a namespace as ``CacheManager.flush_namespace`` does (SCAN + UNLINK, guard bumped first)."""
    s, namespace = session.settings, session.args.namespace
    head, guard = layout.namespace_prefix(s.prefix, namespace), layout.guard_key(s.prefix, namespace)
    if not session.args.yes:
        count = session.backend.count_prefix(head)
        sys.stderr.write(safe(f"Remove {count} keys of namespace {namespace!r} ({head}*) at {mask(s.url)}? [y/N] "))
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not sys.stdin.isatty():  # nobody typed the newline that ends the prompt
            sys.stderr.write("\n")
        if answer.strip().lower() not in ("y", "yes"):
            why = "no answer (stdin closed): pass --yes to flush without asking" if not answer else "not confirmed"
            raise Failure(
                NOTHING, f"{why}; nothing removed", {"namespace": namespace, "prefix": s.prefix, "removed": 0}
            )
    removed = session.backend.delete_prefix(head, guard)
    document = {"namespace": namespace, "prefix": s.prefix, "pattern": head + "*", "removed": removed, "guard": guard}
    session.emit(document, [f"removed {removed} keys of namespace {namespace!r} ({head}*); {guard} bumped"])
    return OK
