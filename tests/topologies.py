"""Real Redis Cluster and Sentinel topologies on free loopback ports, for tests that need them (and to break them).

Everything is a private ``redis-server`` child of the test process, bound to 127.0.0.1. Nothing skips: a missing
binary or a topology that does not settle raises, with the tail of the server logs, and the test fails.
The children die with the test process even when it is killed (``PR_SET_PDEATHSIG`` on Linux, ``atexit`` too).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from redis_server import DIE_WITH_PARENT, MISSING_REDIS, free_port

HOST = "127.0.0.1"
SLOTS = 16384
_SETTLE_TIMEOUT = 30.0
_POLL = 0.05

_children: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_children() -> None:
    for process in list(_children):
        with contextlib.suppress(OSError):
            process.kill()
            process.wait(5)
    _children.clear()


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(MISSING_REDIS)
    return path


class Server:
    """One redis-server process (a cluster node, a data node or a sentinel) on a fixed port and directory.

    ``kill``/``pause``/``resume``/``start`` change the process in place: the port, the directory and so the
    files the server keeps there (``nodes.conf``, ``sentinel.conf``) survive a restart.
    """

    def __init__(self, name: str, args: list[str], port: int, directory: str) -> None:
        self.name = name
        self.args = args
        self.port = port
        self.dir = directory
        self.log_path = os.path.join(directory, "redis.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.fault_at: float | None = None  # time.monotonic() of the last kill or pause

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def running(self) -> bool:
        """Started, not killed, not paused: able to answer."""
        return self.process is not None and not self.paused

    def __repr__(self) -> str:
        if self.process is None:
            state = "down"
        elif self.process.poll() is not None:
            state = f"exited {self.process.returncode}"
        else:
            state = "paused" if self.paused else "running"
        return f"<{self.name} {HOST}:{self.port} {state}>"

    def start(self) -> None:
        """Spawn the process; ``wait_ready`` waits for it to answer."""
        if self.process is not None:
            raise RuntimeError(f"{self!r} is already started")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=DIE_WITH_PARENT
            )
        _children.add(self.process)
        self.paused = False
        self.fault_at = None

    def wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self!r} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with self.client() as probe:
                    # Our process, not another one that took the port first (it would answer PING too).
                    if probe.info("server")["process_id"] == self.process.pid:
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self!r} did not answer PING:\n{self.log_tail()}")
            time.sleep(_POLL)

    def client(self, **kwargs: Any) -> redis.Redis:
        # Generous: only running nodes are asked (``running`` excludes a paused one), and a busy machine must not
        # turn a slow answer into a failed test.
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5, "decode_responses": True}
        return redis.Redis(host=HOST, port=self.port, **(options | kwargs))

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the peers."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(5)
            _children.discard(process)
        self.paused = False
        self.fault_at = time.monotonic()

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        assert self.process is not None, f"{self!r} is not running"
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True
        self.fault_at = time.monotonic()

    def resume(self) -> None:
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        self.kill()  # nothing is persisted on purpose (save "", appendonly no): no need for a graceful shutdown
        self.fault_at = None

    def log_tail(self, lines: int = 25) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                tail = log.readlines()[-lines:]
        except OSError as error:
            return f"(no log: {error})"
        return f"--- {self!r} log tail ({self.log_path}) ---\n" + "".join(tail)


def _data_args(port: int, directory: str, *extra: str) -> list[str]:
    return [
        _binary("redis-server"),
        *("--port", str(port), "--bind", HOST, "--dir", directory, "--daemonize", "no"),
        *("--save", "", "--appendonly", "no", "--loglevel", "notice"),
        # Replicas sync at once instead of after the default 5 s wait for more replicas to join a diskless sync.
        *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
        *extra,
    ]


def _wait_until(check: Callable[[], str | None], timeout: float, what: str, servers: Sequence[Server]) -> None:
    """Poll ``check`` (``None`` when done, else why not) until done; raise with the reason and the logs if not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reason = check()
        except redis.RedisError as error:
            reason = f"{type(error).__name__}: {error}"
        if reason is None:
            return
        if time.monotonic() > deadline:
            for server in servers:
                if server.process is not None and server.process.poll() is not None:
                    reason += f"\n{server!r} has exited with {server.process.returncode}"
            logs = "\n".join(server.log_tail(12) for server in servers)
            raise RuntimeError(f"{what}: not done after {timeout:g} s: {reason}\n{logs}")
        time.sleep(_POLL)


def _replication_lag(servers: Sequence[Server]) -> str | None:
    """Why some replica among ``servers`` is behind its primary, or ``None`` when none is."""
    offsets: dict[int, int] = {}
    replicas: list[tuple[Server, dict[str, Any]]] = []
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


def _tempdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


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


def _cluster_nodes(server: Server) -> dict[str, _NodeView]:
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


class ClusterNode(Server):
    """A cluster node: a Server that knows its cluster node id (kept across restarts in its ``nodes.conf``)."""

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
        self.dir = _tempdir("stashly-cluster-")
        self.nodes: list[ClusterNode] = []
        for index in range(primaries * 2):
            port, bus_port = free_port(), free_port()
            directory = os.path.join(self.dir, f"node-{index}")
            os.mkdir(directory)
            args = _data_args(
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
        command = [_binary("redis-cli"), *args]
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

        _wait_until(check, timeout, f"failover of {old_primary!r}", list(self.nodes))
        return promoted[0], time.monotonic() - began

    # --- repairs and changes ----------------------------------------------------------------------------------

    def restart(self, node: ClusterNode, timeout: float = _SETTLE_TIMEOUT) -> ClusterNode:
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

    def heal(self, timeout: float = _SETTLE_TIMEOUT) -> None:
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
        _wait_until(lambda: _replication_lag(self._live()), timeout, "replication", list(self.nodes))

    def flushall(self) -> None:
        for node in self.primaries():
            with node.client() as client:
                client.flushall()

    # --- settling ---------------------------------------------------------------------------------------------

    def wait_settled(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Wait until every live node reports ``cluster_state:ok``, all slots covered, and the same slot owners."""
        _wait_until(self._unsettled, timeout, "cluster settling", list(self.nodes))

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


class LocalSentinel:
    """One primary, one replica and three sentinels (quorum 2) watching them as ``service_name``.

    The sentinels start knowing each other and the replica (``sentinel myid``/``known-*`` in their configs), so
    there is no wait for hello messages. Shared through a session fixture: after ``kill_primary()`` a test calls
    ``heal()`` (restarts the killed node as a replica of the new primary).
    """

    def __init__(self, service_name: str = "stashly", *, down_after_ms: int = 1000, failover_timeout_ms: int = 2000):
        self.service_name = service_name
        self.dir = _tempdir("stashly-sentinel-")
        self.data: list[Server] = []
        for index in range(2):
            directory = os.path.join(self.dir, f"data-{index}")
            os.mkdir(directory)
            port = free_port()
            self.data.append(Server(f"sentinel-data-{index}", _data_args(port, directory), port, directory))
        primary, replica = self.data
        replica.args += ["--replicaof", HOST, str(primary.port)]
        ports = [free_port() for _ in range(3)]
        ids = [secrets.token_hex(20) for _ in ports]
        self.sentinel_servers: list[Server] = []
        for index, (port, myid) in enumerate(zip(ports, ids, strict=True)):
            directory = os.path.join(self.dir, f"sentinel-{index}")
            os.mkdir(directory)
            config = os.path.join(directory, "sentinel.conf")
            lines = [
                f"port {port}",
                f"bind {HOST}",
                f"dir {directory}",
                "daemonize no",
                "sentinel resolve-hostnames no",
                f"sentinel myid {myid}",
                f"sentinel monitor {service_name} {HOST} {primary.port} 2",
                f"sentinel down-after-milliseconds {service_name} {down_after_ms}",
                f"sentinel failover-timeout {service_name} {failover_timeout_ms}",
                f"sentinel parallel-syncs {service_name} 1",
                f"sentinel known-replica {service_name} {HOST} {replica.port}",
                *(
                    f"sentinel known-sentinel {service_name} {HOST} {other_port} {other_id}"
                    for other_port, other_id in zip(ports, ids, strict=True)
                    if other_port != port
                ),
            ]
            with open(config, "w") as file:
                file.write("\n".join(lines) + "\n")
            args = [_binary("redis-server"), config, "--sentinel"]
            self.sentinel_servers.append(Server(f"sentinel-{index}", args, port, directory))
        self.startup_seconds = 0.0
        self._old_primary: tuple[str, int] | None = None

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [server.address for server in self.sentinel_servers]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service_name}"

    def _all(self) -> list[Server]:
        return [*self.data, *self.sentinel_servers]

    def start(self) -> LocalSentinel:
        began = time.monotonic()
        try:
            for server in self.data:
                server.start()
            for server in self.data:
                server.wait_ready(time.monotonic() + 10)
            # The sentinels learn the replica's state from the primary's INFO, sent at once when they connect.
            self.wait_replicated(_SETTLE_TIMEOUT)
            for server in self.sentinel_servers:
                server.start()
            for server in self.sentinel_servers:
                server.wait_ready(time.monotonic() + 10)
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _server_at(self, address: tuple[str, int]) -> Server:
        for server in self.data:
            if server.address == address:
                return server
        raise LookupError(f"no data node at {address}")

    def _ask(self) -> list[tuple[str, int] | None]:
        """The primary's address according to each running sentinel."""
        answers: list[tuple[str, int] | None] = []
        for server in self.sentinel_servers:
            if server.running:
                with server.client() as client:
                    address = client.sentinel_get_master_addr_by_name(self.service_name)
                answers.append((str(address[0]), int(address[1])) if address else None)
        return answers

    def primary(self) -> tuple[str, int]:
        """The primary's address, as the sentinels agree on it now."""
        answers = set(self._ask())
        if len(answers) != 1 or None in answers:
            raise RuntimeError(f"the sentinels disagree about the primary: {answers}")
        (address,) = answers
        assert address is not None
        return address

    def primary_server(self) -> Server:
        return self._server_at(self.primary())

    def kill_primary(self) -> tuple[str, int]:
        """SIGKILL the current primary; returns its address."""
        address = self.primary()
        self._server_at(address).kill()
        self._old_primary = address
        return address

    def wait_failover(self, timeout: float = 30) -> tuple[tuple[str, int], float]:
        """Wait until every sentinel names a new primary and it answers as ``role:master``.

        Returns its address and the seconds since ``kill_primary()`` (or since this call).
        """
        old = self._old_primary or self.primary()
        old_server = self._server_at(old)
        began = old_server.fault_at or time.monotonic()
        found: list[tuple[str, int]] = []

        def check() -> str | None:
            answers = set(self._ask())
            if len(answers) != 1 or old in answers or None in answers:
                return f"sentinels answer {answers}"
            (address,) = answers
            assert address is not None
            with self._server_at(address).client() as client:
                role = client.execute_command("ROLE")[0]
            if role != "master":
                return f"{address} is still {role}"
            found[:] = [address]
            return None

        _wait_until(check, timeout, "sentinel failover", self._all())
        return found[0], time.monotonic() - began

    def heal(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Restart killed data nodes as replicas of the current primary; wait until the sentinels see them."""
        primary = self.primary()
        for server in self.data:
            if server.paused:
                server.resume()
            if server.process is None:
                server.args = [*_strip_replicaof(server.args), "--replicaof", HOST, str(primary[1])]
                server.start()
                server.wait_ready(time.monotonic() + 10)
        self._old_primary = None
        self.wait_replicated(timeout)
        self.wait_settled(timeout)

    def wait_replicated(self, timeout: float = 10) -> None:
        """Wait until the replica has applied all the primary has written (so a failover loses nothing)."""
        running = [server for server in self.data if server.running]
        _wait_until(lambda: _replication_lag(running), timeout, "replication", self.data)

    def wait_settled(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Wait until each sentinel agrees on the primary, sees the replica and the other sentinels, and has quorum."""
        _wait_until(self._unsettled, timeout, "sentinels settling", self._all())

    def _unsettled(self) -> str | None:
        primary = self.primary()
        if self._server_at(primary).process is None:
            return f"the sentinels still name {primary}, which is down"
        replicas = {server.address for server in self.data if server.address != primary}
        for server in self.sentinel_servers:
            with server.client() as client:
                seen = {
                    (str(entry["ip"]), int(entry["port"]))
                    for entry in client.sentinel_slaves(self.service_name)
                    if not (entry.get("is_sdown") or entry.get("is_disconnected"))
                }
                peers = [
                    entry
                    for entry in client.sentinel_sentinels(self.service_name)
                    if not (entry.get("is_sdown") or entry.get("is_disconnected"))
                ]
                quorum = client.execute_command("SENTINEL", "CKQUORUM", self.service_name)
            if not replicas <= seen:
                return f"{server!r} sees healthy replicas {seen}, not {replicas}"
            if len(peers) != len(self.sentinel_servers) - 1:
                return f"{server!r} sees {len(peers)} healthy sentinels"
            if not str(quorum).startswith("OK"):
                return f"{server!r}: CKQUORUM {quorum}"
        return None

    def stop(self) -> None:
        for server in self._all():
            server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _strip_replicaof(args: list[str]) -> list[str]:
    if "--replicaof" not in args:
        return args
    index = args.index("--replicaof")
    return args[:index] + args[index + 3 :]
