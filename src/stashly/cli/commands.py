"""The commands ``get``, ``keys`` and ``flush`` (``ping`` and ``stats`` have modules of their own).

On Redis Cluster ``get`` reads on the node owning the key's slot, ``keys`` scans every primary, and ``flush``
goes through the library's Cluster backend (which bumps the namespace's generation rather than a guard); behind
Sentinel each talks to the primary the sentinels name, and says so.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from redis.exceptions import ResponseError

from ..backends.redis import escape_glob
from ..keys import layout
from ..storage.inspect import inspect_entry
from .exits import NOTHING, OK, Failure
from .output import as_text, dumps, duration_text, safe, say, size_text
from .session import Session

__all__ = ["SCAN_COUNT", "flush", "get", "list_keys"]

SCAN_COUNT: Final = 1000


def get(session: Session) -> int:
    """One entry: decoded, with its TTL, size and whether its key digest matches."""
    s, name = session.settings, session.args.key
    candidates = [name] if name.startswith(layout.prefix_head(s.prefix)) else []  # a full key...
    relative = layout.entry_key(s.prefix, s.namespace, name)  # ...or one relative to the namespace
    candidates += [relative] if relative not in candidates else []
    with session.pipeline() as pipe:  # on Cluster, each key to its slot's primary
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
            if (node := session.owner(key)) is not None:
                entry["node"] = node
            session.emit(entry, entry_lines(entry))
            return OK
    missing: dict[str, Any] = {"found": False, "tried": candidates}
    if session.topology.kind != "single":
        missing["nodes"] = [session.owner(key) for key in candidates]
    if not_strings:  # the library's MGET reads such a key as a miss
        message = f"{not_strings[0]} holds a Redis value that is not a string: not a stashly entry"
        raise Failure(NOTHING, message, missing | {"key": not_strings[0]})
    raise Failure(NOTHING, f"no entry {' or '.join(candidates)} at {session.where}", missing)


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
        *([f"node   {entry['node']}"] if entry.get("node") else []),
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
    for node in session.nodes():  # SCAN is per node: every primary on Cluster
        for key in node.client.scan_iter(match=escape_glob(head) + "*", count=SCAN_COUNT):
            found.append(as_text(key))
            if limit and len(found) > limit:
                break
        if limit and len(found) > limit:
            break
    truncated = bool(limit) and len(found) > limit
    found = sorted(found[:limit] if limit else found)
    document = {"namespace": namespace, "prefix": s.prefix, "count": len(found), "truncated": truncated, "keys": found}
    if not found:
        raise Failure(NOTHING, f"no keys in namespace {namespace!r} ({head}*) at {session.where}", document)
    session.emit(document, found)
    if truncated:
        say(f"showing the first {limit} keys found; --limit 0 lists them all")
    return OK


def flush(session: Session) -> int:
    """Remove a namespace as ``CacheManager.flush_namespace`` does, through the library's own backend: SCAN +
    UNLINK with the guard bumped first, or on Cluster over every primary with the namespace's generation bumped."""
    s, namespace = session.settings, session.args.namespace
    head, guard = layout.namespace_prefix(s.prefix, namespace), layout.guard_key(s.prefix, namespace)
    bumped: dict[str, Any] = {"generation": layout.generation_key(head)} if session.is_cluster else {"guard": guard}
    if session.topology.kind == "sentinel":
        bumped["node"] = session.owner(head)
    elif session.is_cluster:
        bumped["nodes"] = [node.name for node in session.nodes()]
    if not session.args.yes:
        count = session.backend.count_prefix(head)
        sys.stderr.write(safe(f"Remove {count} keys of namespace {namespace!r} ({head}*) at {session.where}? [y/N] "))
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
    document = {"namespace": namespace, "prefix": s.prefix, "pattern": head + "*", "removed": removed, **bumped}
    counter = bumped["generation"] if session.is_cluster else guard
    line = f"removed {removed} keys of namespace {namespace!r} ({head}*); {counter} bumped"
    if session.is_cluster:
        line += f" (over {len(bumped['nodes'])} primaries)"
    elif session.topology.kind == "sentinel":
        line += f" (primary {bumped['node']})"
    session.emit(document, [line])
    return OK
