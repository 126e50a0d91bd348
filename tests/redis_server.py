"""A real redis-server process on a free loopback port, for tests that need Redis (and to break it)."""

from __future__ import annotations

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
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

MISSING_REDIS = "redis-server not found: install the Debian package redis-server (apt-get install -y redis-server)"

ACL_USER = "stashly"
ACL_PASSWORD = "stashly-acl-pw"
# Exactly what stashly needs (found by running the suite as this user): reads, writes, the guard counter
# (redis-py's incr() sends INCRBY), SCAN + UNLINK for flush_namespace, PTTL for refresh_ahead, and the Lua
# compare-and-set scripts (EVALSHA, SCRIPT LOAD on NOSCRIPT; inside them GET, SET and DEL of the lock key).
# AUTH and HELLO need no grant; SELECT is needed only for a database other than 0.
ACL_COMMANDS: tuple[str, ...] = (
    "get",
    "mget",
    "set",
    "del",
    "unlink",
    "incrby",
    "pttl",
    "scan",
    "evalsha",
    "script|load",
    # the local tier's invalidation connection: CLIENT TRACKING ... BCAST, redirected to its own subscription
    "client|id",
    "client|tracking",
    "subscribe",
    "ping",
)
ACL_KEYS = "~stashly:*"
ACL_CHANNELS = "&__redis__:invalidate"
# redis-py's optional handshake: it carries on when they are refused, but the refusal would land in ACL LOG.
# Granted when the server knows them (CLIENT SETINFO from Redis 7.2; MAINT_NOTIFICATIONS is RESP3 only).
ACL_OPTIONAL = ("client|setinfo", "client|maint_notifications")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS server: its certificate and key, the CA it trusts, and a client's certificate and key."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when the test process dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


DIE_WITH_PARENT = _die_with_parent()
"""``preexec_fn`` for every redis-server the tests start: none outlives a test run, however it ends."""


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """Where the kernel's range for the local ports of outgoing connections starts."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on, for a server the tests start.

    Below the ephemeral range, so none of the many connections the tests open takes it as its local port before
    the server binds it (``bind(0)`` would hand out exactly those ports), and never the same one twice in a run.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, low) if low > 11_000 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port found for a test server")


class RedisServer:
    """Start, stop, pause (SIGSTOP), resume and restart one private redis-server.

    Never skips: if the binary is missing or the server does not answer, it raises, and the test fails.
    """

    def __init__(
        self,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        *,
        acl: bool = False,
        tls: TlsFiles | None = None,
        tls_auth_clients: str = "optional",
    ) -> None:
        """``acl``: create the restricted user ``ACL_USER`` at every start and put its credentials in ``url``
        (``client()`` stays the unrestricted default user). ``tls``: listen with TLS only, on ``port``."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(MISSING_REDIS)
        self.binary = binary
        self.port = port or free_port()
        self._port_is_ours = port is None
        self.extra_args = list(extra_args)
        self.acl = acl
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.dir = tempfile.mkdtemp(prefix="stashly-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        credentials = f"{ACL_USER}:{ACL_PASSWORD}@" if self.acl else ""
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        for _ in range(5):
            failure = self._launch()
            if failure is None:
                self._port_is_ours = False  # a restart keeps the port: tests hold the url
                return self
            # Between free_port() and redis-server's bind, another process may take the port (other test runs
            # share the machine): a port we picked ourselves is picked again; a given one is not ours to change.
            if not (self._port_is_ours and "Address already in use" in failure):
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{failure}")

    def _launch(self) -> str | None:
        """Start the process and wait until it answers: ``None``, or its log if it never did (it is stopped)."""
        plain_port = "0" if self.tls is not None else str(self.port)  # a TLS server has no plaintext port
        args = [self.binary, "--port", plain_port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls is not None:
            args += ["--tls-port", str(self.port), "--tls-auth-clients", self.tls_auth_clients]
            args += ["--tls-cert-file", self.tls.server_cert, "--tls-key-file", self.tls.server_key]
            args += ["--tls-ca-cert-file", self.tls.ca_cert]
        args += ["--dir", self.dir, "--daemonize", "no", "--loglevel", "warning", *self.extra_args]
        log = open(os.path.join(self.dir, "redis.log"), "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=DIE_WITH_PARENT)
        log.close()
        deadline = time.monotonic() + 10
        ready = False
        while not ready and time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with self.client() as probe:
                    # Our process, not another one listening on the port: the answer names its pid.
                    ready = probe.info("server")["process_id"] == self.process.pid
            except redis.RedisError:
                pass
            if not ready:
                time.sleep(0.02)
        if ready:
            if self.acl:  # outside the retry loop: a bad ACL rule is an error, not a slow start
                with self.client() as admin:
                    self._create_acl_user(admin)
            return None
        with open(os.path.join(self.dir, "redis.log"), errors="replace") as log_file:
            output = log_file.read()
        self.stop()
        return output

    def client(self, **kwargs: Any) -> redis.Redis:
        """An unrestricted client (the default user); over TLS it trusts the CA and presents the client cert."""
        # Generous: an admin command must not fail because the machine is busy (no test talks to a paused server).
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
        if self.tls is not None:
            options |= {"ssl": True, "ssl_ca_certs": self.tls.ca_cert}
            options |= {"ssl_certfile": self.tls.client_cert, "ssl_keyfile": self.tls.client_key}
        return redis.Redis(host="127.0.0.1", port=self.port, **(options | kwargs))

    def _create_acl_user(self, admin: redis.Redis) -> None:
        rules = [
            "reset",
            "on",
            f">{ACL_PASSWORD}",
            "-@all",
            *(f"+{name}" for name in ACL_COMMANDS),
            ACL_KEYS,
            ACL_CHANNELS,
        ]
        admin.execute_command("ACL", "SETUSER", ACL_USER, *rules)
        for name in ACL_OPTIONAL:
            with contextlib.suppress(redis.ResponseError):  # a command this server does not have
                admin.execute_command("ACL", "SETUSER", ACL_USER, f"+{name}")
        admin.execute_command("ACL", "LOG", "RESET")

    def acl_denials(self) -> list[dict[str, Any]]:
        """``ACL LOG`` entries: commands, keys or logins the server refused since the last reset."""
        with self.client() as admin:
            entries: list[dict[str, Any]] = admin.acl_log()
        return entries

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
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

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None
            self.paused = False

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
