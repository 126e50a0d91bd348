"""What the Cluster and Sentinel topologies share: a node process, a data node's command line, replication lag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .process import HOST, ServerProcess, binary

SETTLE_TIMEOUT = 30.0
"""Seconds a topology may take to settle (after a start, a failover or a heal) before that is a failure."""


class Node(ServerProcess):
    """A node of a topology: its client decodes answers to ``str``, and ``stop`` is a SIGKILL.

    Nothing is persisted on purpose (``save ""``, ``appendonly no``), so there is no need for a graceful shutdown.
    """

    def start(self) -> None:
        """Spawn the process; ``wait_ready`` waits for it to answer."""
        self.spawn()

    def client_options(self) -> dict[str, Any]:
        return super().client_options() | {"decode_responses": True}

    def stop(self) -> None:
        self.kill()
        self.fault_at = None


def data_args(port: int, directory: str, *extra: str) -> list[str]:
    """The command line of a data node (a cluster node, a Sentinel primary or replica)."""
    return [
        binary("redis-server"),
        *("--port", str(port), "--bind", HOST, "--dir", directory, "--daemonize", "no"),
        *("--save", "", "--appendonly", "no", "--loglevel", "notice"),
        # Replicas sync at once instead of after the default 5 s wait for more replicas to join a diskless sync.
        *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
        *extra,
    ]


def replication_lag(servers: Sequence[Node]) -> str | None:
    """Why some replica among ``servers`` is behind its primary, or ``None`` when none is."""
    offsets: dict[int, int] = {}
    replicas: list[tuple[Node, dict[str, Any]]] = []
    for server in servers:
        with server.client() as client:
            replication = client.info("replication")
        if replication["role"] == "master":
            offsets[server.port] = int(replication["master_repl_offset"])
        else:
            replicas.append((server, replication))
    for server, replication in replicas:
        if replication.get("master_link_status") != "up":
            return f"{server!r}: replica link is {replication.get('master_link_status')}"
        primary_offset = offsets.get(int(replication["master_port"]))
        if primary_offset is not None and int(replication["slave_repl_offset"]) < primary_offset:
            return f"{server!r} is at offset {replication['slave_repl_offset']}, its primary at {primary_offset}"
    return None
