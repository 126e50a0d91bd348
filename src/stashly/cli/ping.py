"""The ``ping`` command: connectivity, server version, round-trip time, TLS and user, for every node concerned.

One server is pinged as it is; behind Sentinel, the primary the sentinels name (the output says which node
answered); on Redis Cluster, every primary, with a line each and the slowest one's round trip as the figure.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import redis
from redis.exceptions import ResponseError

from .exits import OK
from .output import as_text, mask
from .session import Node, Session

__all__ = ["hello", "ping"]


def ping(session: Session) -> int:
    """Connectivity, server version, round-trip time, TLS and user in use."""
    s = session.settings
    started = time.perf_counter()
    nodes = session.nodes()  # on Cluster: the slot map, learnt from the startup nodes
    discovery_ms = (time.perf_counter() - started) * 1000
    answers = [_ping_node(node, s.protocol) for node in nodes]
    first = answers[0]
    rtt, connect_ms = max(a["rtt_ms"] for a in answers), max(a["connect_ms"] for a in answers)
    tls = s.url.startswith("rediss")
    user = s.username or "default"
    versions = sorted({str(a["version"]) for a in answers if a["version"] is not None})
    document = {
        "url": mask(s.url),
        "server": first["server"],
        "version": ", ".join(versions) or None,
        "mode": first["mode"],
        "role": first["role"],
        "protocol": s.protocol,
        "rtt_ms": rtt,
        "connect_ms": connect_ms,
        "tls": tls,
        "tls_ca_certs": s.ssl_ca_certs if tls else None,
        "tls_client_certificate": s.ssl_certfile if tls else None,
        "user": user,
        "auth": "password" if s.password else "none",
    }
    lines = [f"PONG from {mask(s.url)}"]
    if session.topology.kind == "sentinel":
        document |= {"topology": "sentinel", "service": session.topology.service, "node": first["node"]}
        lines.append(f"  node        {first['node']}, the primary of {session.topology.service!r} now")
    elif session.is_cluster:
        document |= {"topology": "cluster", "discovery_ms": round(discovery_ms, 3), "nodes": answers}
        lines[0] += f" ({len(answers)} primaries)"
    details = ", ".join(str(document[name]) for name in ("mode", "role") if document.get(name))
    slowest = "slowest primary's median" if session.is_cluster else "median"
    lines += [
        f"  server      {document['server']} {document['version'] or '?'}"
        + (f" ({details})" if details else "")
        + f", protocol RESP{s.protocol}",
        f"  round trip  {rtt:.2f} ms ({slowest} of 5; connecting took {connect_ms:.1f} ms)",
        f"  tls         {_tls_text(session) if tls else 'off'}",
        f"  user        {user} ({'password login' if s.password else 'no login'})",
    ]
    if session.is_cluster:
        lines += [
            f"  primary     {a['node']}  {a['server']} {a['version'] or '?'}, round trip {a['rtt_ms']:.2f} ms"
            for a in answers
        ]
    session.emit(document, lines)
    return OK


def _ping_node(node: Node, protocol: int) -> dict[str, Any]:
    started = time.perf_counter()
    server = hello(node.client, protocol)  # connects and logs in first
    connect_ms = (time.perf_counter() - started) * 1000
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        hello(node.client, protocol)
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "node": node.name,
        "server": server.get("server", "redis"),
        "version": server.get("version"),
        "mode": server.get("mode"),
        "role": server.get("role"),
        "rtt_ms": round(statistics.median(samples), 3),
        "connect_ms": round(connect_ms, 3),
    }


def _tls_text(session: Session) -> str:
    s = session.settings
    verified = s.ssl_ca_certs or "the system trust store"
    return f"on, server verified against {verified}" + (
        f", client certificate {s.ssl_certfile}" if s.ssl_certfile else ""
    )


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
