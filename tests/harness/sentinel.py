"""A real Redis Sentinel set-up on free loopback ports: a primary, a replica and three sentinels (quorum 2).

Every process is a private ``redis-server`` child bound to 127.0.0.1. Nothing skips: a missing binary or a set-up
that does not settle raises, with the tail of the logs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from types import TracebackType

from .nodes import SETTLE_TIMEOUT, Node, data_args, replication_lag
from .process import HOST, binary, free_port, wait_until


class LocalSentinel:
    """One primary, one replica and three sentinels (quorum 2) watching them as ``service_name``.

    The sentinels start knowing each other and the replica (``sentinel myid``/``known-*`` in their configs), so
    there is no wait for hello messages. Shared through a session fixture: after ``kill_primary()`` a test calls
    ``heal()`` (restarts the killed node as a replica of the new primary).
    """

    def __init__(self, service_name: str = "stashly", *, down_after_ms: int = 1000, failover_timeout_ms: int = 2000):
        self.service_name = service_name
        self.dir = tempfile.mkdtemp(prefix="stashly-sentinel-")
        self.data: list[Node] = []
        for index in range(2):
            directory = os.path.join(self.dir, f"data-{index}")
            os.mkdir(directory)
            port = free_port()
            self.data.append(Node(f"sentinel-data-{index}", data_args(port, directory), port, directory))
        primary, replica = self.data
        replica.args += ["--replicaof", HOST, str(primary.port)]
        ports = [free_port() for _ in range(3)]
        ids = [secrets.token_hex(20) for _ in ports]
        self.sentinel_servers: list[Node] = []
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
            args = [binary("redis-server"), config, "--sentinel"]
            self.sentinel_servers.append(Node(f"sentinel-{index}", args, port, directory))
        self.startup_seconds = 0.0
        self._old_primary: tuple[str, int] | None = None

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [server.address for server in self.sentinel_servers]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service_name}"

    def _all(self) -> list[Node]:
        return [*self.data, *self.sentinel_servers]

    def start(self) -> LocalSentinel:
        began = time.monotonic()
        try:
            for server in self.data:
                server.start()
            for server in self.data:
                server.wait_ready(time.monotonic() + 10)
            # The sentinels learn the replica's state from the primary's INFO, sent at once when they connect.
            self.wait_replicated(SETTLE_TIMEOUT)
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

    def _server_at(self, address: tuple[str, int]) -> Node:
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

    def primary_server(self) -> Node:
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

        wait_until(check, timeout, "sentinel failover", self._all())
        return found[0], time.monotonic() - began

    def heal(self, timeout: float = SETTLE_TIMEOUT) -> None:
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
        wait_until(lambda: replication_lag(running), timeout, "replication", self.data)

    def wait_settled(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until each sentinel agrees on the primary, sees the replica and the other sentinels, and has quorum."""
        wait_until(self._unsettled, timeout, "sentinels settling", self._all())

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
