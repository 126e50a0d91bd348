"""Fixtures: real redis-server processes on free loopback ports (never the machine's own Redis)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import stashly

from redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server for the whole run."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared private server, emptied first (it is ours: the library itself never flushes)."""
    redis_server.resume()
    with redis_server.client() as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture
def disposable_redis() -> Iterator[RedisServer]:
    """A server of the test's own, to stop, pause, kill or restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests see no STASHLY_* variables from the machine, and no default manager left by another test."""
    for name in list(os.environ):
        if name.startswith("STASHLY_"):
            monkeypatch.delenv(name)
    stashly.set_default_manager(None)
    yield
    stashly.set_default_manager(None)
