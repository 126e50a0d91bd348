"""One private redis-server on a free loopback port, started and stopped by the bench (never 127.0.0.1:6379)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["PrivateRedis"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of the bench's own: no persistence, loopback only, removed on exit.

    Besides start/stop it exposes the two admin operations the bench needs: resetting the server's statistics
    and reading the per-command call counts (``INFO commandstats``), used to count Redis commands per call.
    """

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found: install the Debian package redis-server")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stashly-bench-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: redis.Redis | None = None
        self.admin_name = "stashly-bench-admin"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def admin(self) -> redis.Redis:
        """A client for the bench's own bookkeeping; its INFO/CONFIG calls are left out of command counts."""
        if self._admin is None:
            raise RuntimeError("the bench's redis-server is not running")
        return self._admin

    def start(self) -> PrivateRedis:
        args = [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning"]
        # A safety net for the MISS scenarios' short-lived entries: evict those (shortest TTL) first, never grow.
        args += ["--maxmemory", "1gb", "--maxmemory-policy", "volatile-ttl"]
        with open(self.dir / "redis.log", "wb") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(
            host=self.host, port=self.port, socket_timeout=30, socket_connect_timeout=1, client_name=self.admin_name
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                if client.ping():
                    self._admin = client
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        output = (self.dir / "redis.log").read_text(errors="replace")
        self.stop()
        raise SystemExit(f"redis-server on port {self.port} did not start:\n{output}")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def reset_stats(self) -> None:
        self.admin.config_resetstat()

    def command_calls(self) -> dict[str, int]:
        """Calls per command since the last reset, without the bench's own INFO and CONFIG calls."""
        stats = self.admin.info("commandstats")
        calls: dict[str, int] = {}
        for name, fields in stats.items():
            command = name.removeprefix("cmdstat_")
            if command == "info" or command.startswith("config"):
                continue
            calls[command] = int(fields["calls"])
        return calls

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
