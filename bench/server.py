"""The bench's private redis-server: the test harness's ``RedisServer``, plus the admin the bench counts with.

Never 127.0.0.1:6379: a free loopback port, no persistence, removed on exit.
"""

from __future__ import annotations

from types import TracebackType

import redis

from tests.harness.server import RedisServer

__all__ = ["PrivateRedis"]

# A safety net for the MISS scenarios' short-lived entries: evict those (shortest TTL) first, never grow.
_MEMORY_CAP = ("--maxmemory", "1gb", "--maxmemory-policy", "volatile-ttl")


class PrivateRedis:
    """A redis-server of the bench's own, started by the harness.

    Besides start/stop it exposes the two admin operations the bench needs: resetting the server's statistics
    and reading the per-command call counts (``INFO commandstats``), used to count Redis commands per call.
    """

    def __init__(self) -> None:
        try:
            self.server = RedisServer(extra_args=_MEMORY_CAP)
        except RuntimeError as error:  # no redis-server binary
            raise SystemExit(str(error)) from error
        self.binary = self.server.binary
        self.host = "127.0.0.1"
        self._admin: redis.Redis | None = None
        self.admin_name = "stashly-bench-admin"

    @property
    def port(self) -> int:
        return self.server.port  # known once started: the harness may pick another if its first one was taken

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin(self) -> redis.Redis:
        """A client for the bench's own bookkeeping; its INFO/CONFIG calls are left out of command counts."""
        if self._admin is None:
            raise RuntimeError("the bench's redis-server is not running")
        return self._admin

    def start(self) -> PrivateRedis:
        try:
            self.server.start()
        except RuntimeError as error:
            self.stop()
            raise SystemExit(str(error)) from error
        self._admin = self.server.client(socket_timeout=30, socket_connect_timeout=1, client_name=self.admin_name)
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self.server.__exit__(None, None, None)

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
