"""A real Redis Cluster on free loopback ports: six nodes (3 primaries, 3 replicas), to use and to break.

Every node is a private ``redis-server`` child bound to 127.0.0.1. Nothing skips: a missing binary or a cluster
that does not settle raises, with the tail of the node logs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType

import redis

from .nodes import SETTLE_TIMEOUT, Node, data_args, replication_lag
from .process import HOST, binary, free_port, wait_until

SLOTS = 16384


@dataclass(frozen=True)
class _NodeView:
    """One line of ``CLUSTER NODES`` as one node sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: frozenset[int]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def is_failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def _cluster_nodes(server: Node) -> dict[str, _NodeView]:
    with server.client() as client:
        text = client.execute_command("CLUSTER", "NODES")
    views = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        slots: set[int] = set()
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated or imported: still owned by this node
                continue
            first, _, last = item.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        address = fields[1].split("@")[0]
        views[fields[0]] = _NodeView(
            node_id=fields[0],
            port=int(address.rsplit(":", 1)[1]) if ":" in address else 0,
            flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3],
            slots=frozenset(slots),
        )
    return views


class ClusterNode(Node):
    """A cluster node: a Node that knows its cluster node id (kept across restarts in its ``nodes.conf``)."""

    node_id = ""

    def role(self) -> str:
        with self.client() as client:
            return str(client.execute_command("ROLE")[0])


class LocalCluster:
    """Six ``redis-server --cluster-enabled yes`` nodes (3 primaries, 3 replicas), joined by ``redis-cli --cluster``.

    A session-scoped fixture shares one cluster: a test that kills, pauses or reshards calls ``heal()`` when done
    (in a ``finally``) so the next test starts from a settled cluster with three primaries and three replicas.
    Which node is a primary, and which slots it owns, changes with failovers and reshards: ask ``primaries()``,
    ``replica_of()`` and ``slots_of()`` instead of assuming ``nodes[0]`` is a primary.
    Failover is quick because ``cluster-node-timeout`` is small and replicas may always take over
    (``cluster-replica-validity-factor 0``).
    """

    def __init__(self, *, node_timeout_ms: int = 2000, primaries: int = 3) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.dir = tempfile.mkdtemp(prefix="stashly-cluster-")
        self.nodes: list[ClusterNode] = []
        for index in range(primaries * 2):
            port, bus_port = free_port(), free_port()
            directory = os.path.join(self.dir, f"node-{index}")
            os.mkdir(directory)
            args = data_args(
                port,
                directory,
                *("--cluster-enabled", "yes", "--cluster-port", str(bus_port)),
                *("--cluster-config-file", os.path.join(directory, "nodes.conf")),
                *("--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0"),
                # Keep each primary with exactly its one replica: no replica wanders off to an orphaned primary.
                *("--cluster-allow-replica-migration", "no"),
            )
            self.nodes.append(ClusterNode(f"cluster-node-{index}", args, port, directory))
        self.startup_seconds = 0.0
        self._heirs: dict[str, list[str]] = {}

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in self.startup_nodes)

    def start(self) -> LocalCluster:
        began = time.monotonic()
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready(time.monotonic() + 10)
            self._create()
            for node in self.nodes:
                with node.client() as client:
                    node.node_id = str(client.execute_command("CLUSTER", "MYID"))
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _create(self) -> None:
        addresses = [f"{HOST}:{node.port}" for node in self.nodes]
        self._redis_cli("--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes")

    def _redis_cli(self, *args: str, timeout: float = 60, check: bool = True, answer: str | None = None) -> str:
        command = [binary("redis-cli"), *args]
        stdin = {"input": answer} if answer is not None else {"stdin": subprocess.DEVNULL}
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **stdin)
        output = result.stdout + result.stderr
        # redis-cli --cluster exits 0 on some failures; "[ERR]" in its report is the reliable signal.
        if check and (result.returncode != 0 or "[ERR]" in output):
            logs = "\n".join(node.log_tail(8) for node in self.nodes)
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{output}\n{logs}")
        return output

    # --- reading the topology -------------------------------------------------------------------------------

    def _live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def _view(self) -> dict[str, _NodeView]:
        """The topology as the first live node sees it."""
        for node in self._live():
            with contextlib.suppress(redis.RedisError):
                return _cluster_nodes(node)
        raise RuntimeError("no cluster node answers")

    def node(self, node_id: str) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def primaries(self) -> list[ClusterNode]:
        """The nodes that own slots, as a live node sees it now (ordered by their first slot)."""
        owners = [view for view in self._view().values() if view.is_primary and view.slots]
        return [self.node(view.node_id) for view in sorted(owners, key=lambda view: min(view.slots))]

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        views = self._view()
        # A healthy replica first; one only suspected ("fail?") by the node asked is still the one that takes over.
        for view in sorted(views.values(), key=lambda view: view.is_failing):
            if view.master_id == primary.node_id and "fail" not in view.flags:
                return self.node(view.node_id)
        seen = "\n".join(f"  {self.node(v.node_id)!r} {sorted(v.flags)} of {v.master_id}" for v in views.values())
        raise LookupError(f"{primary!r} ({primary.node_id}) has no healthy replica; the cluster sees:\n{seen}")

    def slots_of(self, node: ClusterNode) -> frozenset[int]:
        return self._view()[node.node_id].slots

    # --- faults -----------------------------------------------------------------------------------------------

    def kill(self, node: ClusterNode) -> None:
        self._remember_replicas(node)
        node.kill()

    def pause(self, node: ClusterNode) -> None:
        self._remember_replicas(node)
        node.pause()

    def resume(self, node: ClusterNode) -> None:
        node.resume()

    def _remember_replicas(self, node: ClusterNode) -> None:
        # After the failover no view links the old primary to its replica any more: note who may take over now.
        with contextlib.suppress(RuntimeError):
            views = self._view()
            self._heirs[node.node_id] = [view.node_id for view in views.values() if view.master_id == node.node_id]

    def wait_failover(self, old_primary: ClusterNode, timeout: float = 20) -> tuple[ClusterNode, float]:
        """Wait until a replica of ``old_primary`` is a primary and the cluster has settled around it.

        Returns the promoted node and the seconds since ``old_primary`` was killed or paused (or since this call).
        """
        began = old_primary.fault_at or time.monotonic()
        heirs = self._heirs.get(old_primary.node_id) or [self.replica_of(old_primary).node_id]
        promoted: list[ClusterNode] = []

        def check() -> str | None:
            for heir in heirs:
                node = self.node(heir)
                if node.running and node.role() == "master":
                    promoted[:] = [node]
                    return self._unsettled()
            return f"none of {heirs} is a primary yet"

        wait_until(check, timeout, f"failover of {old_primary!r}", list(self.nodes))
        return promoted[0], time.monotonic() - began

    # --- repairs and changes ----------------------------------------------------------------------------------

    def restart(self, node: ClusterNode, timeout: float = SETTLE_TIMEOUT) -> ClusterNode:
        """Start a killed (or paused) node again; a failed-over primary rejoins as a replica of its successor."""
        if node.process is not None:
            node.kill()
        node.start()
        node.wait_ready(time.monotonic() + 10)
        self.wait_settled(timeout)
        return node

    def reshard(self, src: ClusterNode, dst: ClusterNode, slots: int) -> list[int]:
        """Move ``slots`` slots (with their keys) from ``src`` to ``dst``; returns the slots that moved."""
        self.wait_settled()
        before = self.slots_of(src)
        self._redis_cli(
            *("--cluster", "reshard", f"{HOST}:{src.port}"),
            *("--cluster-from", src.node_id, "--cluster-to", dst.node_id, "--cluster-slots", str(slots)),
            *("--cluster-yes", "--cluster-pipeline", "100"),
        )
        self.wait_settled()
        return sorted(before - self.slots_of(src))

    def heal(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Resume paused nodes, restart killed ones and wait until the cluster has settled.

        Rarely (once in a dozen clean runs here), a failover right after a reshard leaves a slot that no live
        node serves, and the cluster stays down. Then ``redis-cli --cluster fix`` gives the slot an owner (its
        keys, if any, are lost: fine between tests), so one test's fault does not fail every later test.
        """
        for node in self.nodes:
            if node.paused:
                node.resume()
            elif node.process is None:
                node.start()
        for node in self.nodes:
            node.wait_ready(time.monotonic() + 10)
        try:
            self.wait_settled(timeout / 2)
        except RuntimeError:
            some = self._live()[0]
            # It reports the "[ERR]" it fixes, and asks before covering a slot whatever --cluster-yes says:
            # settling again is the check.
            arguments = ("--cluster", "fix", f"{HOST}:{some.port}", "--cluster-yes")
            self._redis_cli(*arguments, timeout=timeout, check=False, answer="yes\n" * 4)
            self.wait_settled(timeout)

    def wait_replicated(self, timeout: float = 10) -> None:
        """Wait until every live replica has applied all its primary has written (so a failover loses nothing)."""
        wait_until(lambda: replication_lag(self._live()), timeout, "replication", list(self.nodes))

    def flushall(self) -> None:
        for node in self.primaries():
            with node.client() as client:
                client.flushall()

    # --- settling ---------------------------------------------------------------------------------------------

    def wait_settled(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until every live node reports ``cluster_state:ok``, all slots covered, and the same slot owners."""
        wait_until(self._unsettled, timeout, "cluster settling", list(self.nodes))

    def _unsettled(self) -> str | None:
        live = self._live()
        owners: dict[int, str] | None = None
        masters: dict[str, str | None] = {}
        for node in live:
            with node.client() as client:
                text = client.execute_command("CLUSTER", "INFO")
                info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
                if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != SLOTS:
                    return f"{node!r}: {info.get('cluster_state')}, {info.get('cluster_slots_ok')} slots ok"
                replication = client.info("replication")
            if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                return f"{node!r}: replica link is {replication.get('master_link_status')}"
            views = _cluster_nodes(node)
            for other in live:
                view = views.get(other.node_id)
                if view is None or view.is_failing:
                    return f"{node!r} sees {other!r} as {view and sorted(view.flags)}"
            node_owners = {slot: view.node_id for view in views.values() for slot in view.slots}
            node_masters = {other.node_id: views[other.node_id].master_id for other in live}
            if len(node_owners) != SLOTS:
                return f"{node!r} sees {len(node_owners)} slots owned"
            if owners is not None and (node_owners, node_masters) != (owners, masters):
                return f"{node!r} disagrees about slot owners or replicas: {node_masters} vs {masters}"
            owners, masters = node_owners, node_masters
        if owners is None:
            return "no node is running"
        if any(self.node(owner).process is None for owner in set(owners.values())):
            return "a slot is owned by a node that is down"
        if len(live) == len(self.nodes):  # whole again: every primary has its replica back
            replicated = sorted(master for master in masters.values() if master is not None)
            if replicated != sorted(set(owners.values())):
                return f"primaries {sorted(set(owners.values()))} but replicas of {replicated}"
        return None

    # --- teardown ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
