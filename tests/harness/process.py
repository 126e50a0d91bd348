"""One redis-server child process on a loopback port: start, wait until it answers, pause, kill, read its log.

Every server the tests, the bench and the chaos run start is one of these (a plain server, a cluster node, a
Sentinel data node or a sentinel). Nothing skips: a missing binary or a server that never answers raises, with
the tail of its log. The children die with their parent even when it is killed (``PR_SET_PDEATHSIG`` on Linux,
and ``atexit`` too).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

HOST = "127.0.0.1"
MISSING_REDIS = "redis-server not found: install the Debian package redis-server (apt-get install -y redis-server)"
POLL = 0.02

_children: set[subprocess.Popen[bytes]] = set()
_handed_out: set[int] = set()


@atexit.register
def _kill_children() -> None:
    for process in list(_children):
        with contextlib.suppress(OSError):
            process.kill()
            process.wait(5)
    _children.clear()


def binary(name: str) -> str:
    """The path of ``redis-server`` or ``redis-cli``; raises ``RuntimeError`` with an install hint if missing."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(MISSING_REDIS)
    return path


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when its parent dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


DIE_WITH_PARENT = _die_with_parent()
"""``preexec_fn`` for every redis-server started here: none outlives its parent, however that ends."""


def _ephemeral_low() -> int:
    """Where the kernel's range for the local ports of outgoing connections starts."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on, for a server to start.

    Below the ephemeral range, so none of the many connections a run opens takes it as its local port before
    the server binds it (``bind(0)`` would hand out exactly those ports), and never the same one twice.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, low) if low > 11_000 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port found for a test server")


class ServerProcess:
    """One redis-server process on a fixed port and directory; ``args`` is its command line.

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
        self._log_start = 0  # where this start's lines begin in the log

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

    def spawn(self) -> None:
        """Start the process; ``wait_ready`` waits for it to answer."""
        if self.process is not None:
            raise RuntimeError(f"{self!r} is already started")
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=DIE_WITH_PARENT
            )
        _children.add(self.process)
        self.paused = False
        self.fault_at = None

    def wait_ready(self, deadline: float) -> None:
        """Wait until this process (not another one that took the port first) answers; raise with its log if not."""
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self!r} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with self.client() as probe:
                    if probe.info("server")["process_id"] == self.process.pid:
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self!r} did not answer PING:\n{self.log_tail()}")
            time.sleep(POLL)

    def client_options(self) -> dict[str, Any]:
        """What ``client()`` passes to ``redis.Redis`` unless told otherwise."""
        # Generous: only running servers are asked, and a busy machine must not turn a slow answer into a failure.
        return {"socket_timeout": 5, "socket_connect_timeout": 5}

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client of the default (unrestricted) user."""
        return redis.Redis(host=HOST, port=self.port, **(self.client_options() | kwargs))

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the peers."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(5)
            _children.discard(process)
        self.paused = False
        self.fault_at = time.monotonic()

    def terminate(self) -> None:
        """SIGTERM (after SIGCONT if paused), and SIGKILL if it has not exited 5 s later."""
        process, self.process = self.process, None
        if process is None:
            return
        if self.paused:
            process.send_signal(signal.SIGCONT)
            self.paused = False
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        _children.discard(process)

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

    def log_since_start(self) -> str:
        """What the server logged since its last ``spawn``."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"

    def log_tail(self, lines: int = 25) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                tail = log.readlines()[-lines:]
        except OSError as error:
            return f"(no log: {error})"
        return f"--- {self!r} log tail ({self.log_path}) ---\n" + "".join(tail)


def wait_until(check: Callable[[], str | None], timeout: float, what: str, servers: Sequence[ServerProcess]) -> None:
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
        time.sleep(POLL * 2.5)
