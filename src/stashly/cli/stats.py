"""The ``stats`` command: key counts, memory and TTLs per namespace, from one SCAN of each node holding data."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

import redis
from redis.exceptions import NoPermissionError

from ..backends.redis import escape_glob
from ..keys import layout
from .commands import SCAN_COUNT
from .exits import OK
from .output import Progress, as_text, mask, safe, size_text
from .session import Session

__all__ = ["stats"]

_MEMORY_SAMPLE: Final = 10_000  # keys per namespace measured with MEMORY USAGE; beyond that, an estimate
_BUCKETS: Final = ("<1m", "<1h", "<1d", "longer", "no expiry")
_TAG: Final = re.compile(r"::\{[^}]*\}")  # the hash tag a Cluster guard or lock carries after the prefix


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


def stats(session: Session) -> int:
    """Key counts, memory and TTL distribution per namespace, from a SCAN of ``<prefix>:*`` on every node that holds
    data (the one server, the Sentinel primary, or each Cluster primary: the figures are summed)."""
    s, only = session.settings, session.args.namespace
    head = layout.namespace_prefix(s.prefix, only) if only else layout.prefix_head(s.prefix)
    scan = _Scan(s.prefix, escape_glob(head) + "*", untag=session.is_cluster)
    nodes = session.nodes()
    progress = Progress(lambda: sum(int(node.client.dbsize()) for node in nodes), SCAN_COUNT)
    per_node = {str(node.name): scan.node(node.client, progress) for node in nodes}
    progress.done()
    tallies = {name: tally for name, tally in sorted(scan.tallies.items()) if tally.keys}
    total = sum(tally.keys for tally in tallies.values())
    document: dict[str, Any] = {
        "url": mask(s.url),
        "prefix": s.prefix,
        "namespace": only,
        "keys": total,
        "memory_available": scan.memory,
        "namespaces": {name: tally.as_json(scan.memory) for name, tally in tallies.items()},
        "internal": scan.internal,
    }
    if session.topology.kind == "sentinel":
        document["node"] = nodes[0].name
    elif session.is_cluster:
        document["nodes"] = per_node
    session.emit(document, _stats_lines(document))
    return OK


class _Scan:
    """The tallies of one ``stats`` run, filled node by node."""

    def __init__(self, prefix: str, match: str, untag: bool) -> None:
        self.prefix, self.match, self.untag = prefix, match, untag
        self.tallies: dict[str, _Tally] = {}
        self.internal = {"guard": 0, "lock": 0, "other": 0}
        self.memory = True  # until the server refuses MEMORY USAGE (a least-privilege ACL user)

    def classify(self, key: str) -> tuple[str | None, str]:
        """The key's namespace or internal kind; on Cluster a guard or lock carries a hash tag (``::{3a7}guard``)."""
        if self.untag:
            key = _TAG.sub("::", key, count=1)
        return layout.classify(key, self.prefix)

    def node(self, client: redis.Redis, progress: Progress) -> dict[str, int]:
        """SCAN one node into the tallies; that node's own entry and internal key counts."""
        counts = {"keys": 0, "internal": 0}
        cursor: int | None = None
        while cursor != 0:
            cursor, batch = client.scan(cursor or 0, match=self.match, count=SCAN_COUNT)
            progress.advance()
            plan: list[tuple[str | None, str, bool]] = []  # (namespace, internal kind, memory measured)
            with client.pipeline(transaction=False) as pipe:
                for key in batch:
                    namespace, kind = self.classify(as_text(key))
                    measure = False
                    if namespace is not None and self.memory:
                        tally = self.tallies.setdefault(namespace, _Tally())
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
                    self.memory, used = False, None
                for reply in (pttl, used):
                    if isinstance(reply, Exception):
                        raise reply
                if namespace is None:
                    self.internal[kind] += int(pttl != -2)
                    counts["internal"] += int(pttl != -2)
                    continue
                tally = self.tallies.setdefault(namespace, _Tally())
                tally.measured -= int(measured and (used is None or pttl == -2))  # gone since SCAN saw it
                if pttl != -2:
                    tally.keys += 1
                    tally.memory += used or 0
                    tally.ttl[_bucket(pttl)] += 1
                    counts["keys"] += 1
        return counts


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
    if "node" in document:
        where += f" (primary {document['node']})"
    elif "nodes" in document:
        where += f" over {len(document['nodes'])} primaries"
    lines = [f"{where}: {document['keys']:,} keys in {len(namespaces)} namespaces"]
    header = ["namespace", "keys", "memory", *_BUCKETS]
    rows = [header]
    for name, tally in namespaces.items():  # names escaped before the columns are measured
        shown = "n/a" if tally["memory_bytes"] is None else size_text(tally["memory_bytes"])
        shown = "~" + shown if tally["memory_sampled"] else shown
        rows.append([safe(name), f"{tally['keys']:,}", shown, *(f"{tally['ttl'][bucket]:,}" for bucket in _BUCKETS)])
    if len(rows) > 1:
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
    for name, counts in document.get("nodes", {}).items():
        lines.append(f"  primary {name}: {counts['keys']:,} keys, {counts['internal']:,} internal")
    internal = document["internal"]
    if any(internal.values()):
        lines.append(f"internal keys: {internal['guard']} guards, {internal['lock']} locks, {internal['other']} other")
    if not document["memory_available"]:
        lines.append("memory: n/a (this user may not run MEMORY USAGE)")
    elif any(tally["memory_sampled"] for tally in namespaces.values()):
        lines.append(f"~ memory estimated from the first {_MEMORY_SAMPLE:,} keys SCAN found in the namespace")
    return lines
