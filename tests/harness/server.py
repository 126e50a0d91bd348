"""The one launcher of a single redis-server: plain, TLS-only, or with a least-privilege ACL user.

Used by the tests (``redis_server``, ``disposable_redis``), the bench and the chaos run. It never skips: if the
binary is missing or the server does not answer, it raises, and the caller fails.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import redis

from .process import HOST, ServerProcess, binary, free_port
from .tls import TlsFiles

__all__ = [
    "ACL_CHANNELS",
    "ACL_COMMANDS",
    "ACL_KEYS",
    "ACL_OPTIONAL",
    "ACL_PASSWORD",
    "ACL_USER",
    "RedisServer",
    "TlsFiles",
]

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
    "rename",  # inside the guarded store: the value, SET beside the script, moved onto the entry
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

_START_TIMEOUT = 10.0


class RedisServer(ServerProcess):
    """Start, stop, pause (SIGSTOP), resume and restart one private redis-server; a context manager.

    Example::

        with RedisServer(acl=True) as server:
            CacheManager(url=server.url)  # authenticates as ACL_USER; server.client() is the default user
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
        (``client()`` stays the unrestricted default user). ``tls``: listen with TLS only, on ``port``.
        ``extra_args`` go to the end of the command line (``--maxmemory 1gb``...)."""
        self.binary = binary("redis-server")
        super().__init__("redis-server", [], port or free_port(), tempfile.mkdtemp(prefix="stashly-redis-"))
        self._port_is_ours = port is None
        self.extra_args = list(extra_args)
        self.acl = acl
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients

    @property
    def url(self) -> str:
        """``redis://`` (``rediss://`` over TLS) with the ACL user's credentials when ``acl``; database 0."""
        scheme = "rediss" if self.tls else "redis"
        credentials = f"{ACL_USER}:{ACL_PASSWORD}@" if self.acl else ""
        return f"{scheme}://{credentials}{HOST}:{self.port}/0"

    def command_line(self) -> list[str]:
        """The server's arguments for its current port."""
        plain_port = "0" if self.tls is not None else str(self.port)  # a TLS server has no plaintext port
        args = [self.binary, "--port", plain_port, "--bind", HOST, "--save", "", "--appendonly", "no"]
        if self.tls is not None:
            args += ["--tls-port", str(self.port), "--tls-auth-clients", self.tls_auth_clients]
            args += ["--tls-cert-file", self.tls.server_cert, "--tls-key-file", self.tls.server_key]
            args += ["--tls-ca-cert-file", self.tls.ca_cert]
        return [*args, "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning", *self.extra_args]

    def start(self) -> RedisServer:
        """Start the server and wait until it answers (and, with ``acl``, until its ACL user exists)."""
        failure = ""
        for _ in range(5):
            self.args = self.command_line()
            self.spawn()
            try:
                self.wait_ready(time.monotonic() + _START_TIMEOUT)
            except RuntimeError:
                failure = self.log_since_start()
                self.stop()
            else:
                self._port_is_ours = False  # a restart keeps the port: callers hold the url
                if self.acl:  # outside the retry loop: a bad ACL rule is an error, not a slow start
                    with self.client() as admin:
                        self._create_acl_user(admin)
                return self
            # Between free_port() and redis-server's bind, another process may take the port (other runs share
            # the machine): a port we picked ourselves is picked again; a given one is not ours to change.
            if not (self._port_is_ours and "Address already in use" in failure):
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{failure}")

    def client_options(self) -> dict[str, Any]:
        """Over TLS the client trusts the CA and presents the client certificate."""
        options = super().client_options()
        if self.tls is not None:
            options |= {"ssl": True, "ssl_ca_certs": self.tls.ca_cert}
            options |= {"ssl_certfile": self.tls.client_cert, "ssl_keyfile": self.tls.client_key}
        return options

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

    def stop(self) -> None:
        """A graceful shutdown (SIGTERM); the port and the directory stay for ``start``."""
        self.terminate()

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
