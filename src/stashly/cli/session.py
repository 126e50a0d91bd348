"""One run of the command line: its resolved settings, its Redis connections (opened on first use), its output."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable
from typing import Any, Final, TextIO

import redis

from ..backends.redis import RedisBackend, RedisOptions
from ..config.settings import Settings, resolve
from ..config.urls import topology
from .exits import CONFIG, Failure
from .output import dumps, safe

__all__ = ["Session", "settings_for"]

_PATIENCE: Final = 2.0  # seconds the command line waits at least: the library's 0.25 s defaults suit request paths


class Session:
    """The resolved settings and the connections, opened on first use and closed at the end."""

    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.settings: Settings = settings
        self.args: argparse.Namespace = args
        self.json: bool = getattr(args, "json", False)
        self.out: TextIO = sys.stdout
        self._client: redis.Redis | None = None
        self._backend: RedisBackend | None = None

    @property
    def client(self) -> redis.Redis:
        """A redis-py client built by the library's own connection policy."""
        if self._client is None:
            self._client = redis.Redis(connection_pool=RedisOptions.from_settings(self.settings).pool())
        return self._client

    @property
    def backend(self) -> RedisBackend:
        """The library's own backend, so ``flush`` removes exactly what ``flush_namespace`` removes."""
        if self._backend is None:
            self._backend = RedisBackend(RedisOptions.from_settings(self.settings))
        return self._backend

    def close(self) -> None:
        """Close whatever was opened."""
        if self._client is not None:
            self._client.close()
            self._client.connection_pool.disconnect()
        if self._backend is not None:
            self._backend.close()

    def emit(self, document: dict[str, Any], lines: Iterable[str]) -> None:
        """Print ``document`` as JSON with ``--json``, else the human-readable ``lines``."""
        if self.json:
            self.out.write(dumps(document) + "\n")
        else:
            self.out.write("".join(safe(line) + "\n" for line in lines))
        self.out.flush()  # here, where a closed pipe is handled, not at exit


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings a run uses: resolved as for a manager, with the command line's patience; one Redis server only."""
    timeout = getattr(args, "timeout", None)
    settings = resolve(
        config_path=getattr(args, "config", None),
        url=getattr(args, "url", None),
        prefix=getattr(args, "prefix", None),
        namespace=getattr(args, "namespace", None) if args.command in ("get", "stats") else None,
        connect_timeout=timeout,
        socket_timeout=timeout,
    )
    if timeout is None:
        connect, command = max(settings.connect_timeout, _PATIENCE), max(settings.socket_timeout, _PATIENCE)
        settings = dataclasses.replace(settings, connect_timeout=connect, socket_timeout=command)
    if settings.url.startswith("memory:"):
        raise Failure(
            CONFIG,
            "no Redis configured: pass --url redis://host:6379/0, set STASHLY_URL, or add a redis section to "
            "config.json (the memory backend lives inside one process; there is nothing to inspect)",
        )
    if topology(settings.url).kind == "cluster":
        raise Failure(
            CONFIG,
            "the stashly CLI inspects one server and does not speak Redis Cluster yet: point --url at one primary "
            "(redis://host:port); flush a namespace from the application with flush_namespace()",
        )
    return settings
