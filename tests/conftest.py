"""Fixtures: real redis-server processes on free loopback ports (never the machine's own Redis).

``STASHLY_TEST_ACL=1`` runs every test that uses ``redis_url``, ``redis_server`` or ``disposable_redis`` with
URLs that authenticate as a least-privilege ACL user (``redis_server.ACL_COMMANDS`` on ``~stashly:*``): the
proof that stashly needs nothing more. The tests' own raw clients (``redis.Redis.from_url`` called from a
test module) stay the unrestricted default user, and a test fails if the server's ``ACL LOG`` records any
refusal (a fail-open cache would otherwise hide one), or if no connection authenticated as that user at all.
``make test-acl`` (a CI step of its own, after ``make test``) is that run over the Redis suites.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import stashly

from tests.harness.cluster import LocalCluster
from tests.harness.sentinel import LocalSentinel
from tests.harness.server import ACL_PASSWORD, ACL_USER, RedisServer
from tests.support import GENEROUS_ENV, REPORTS

# redis_cluster, redis_sentinel: session fixtures, started on first use; postgres_url: an optional variant
pytest_plugins = ["tests.topology_fixtures", "tests.postgres_fixtures"]

# Read once at import: the autouse fixture below removes STASHLY_* variables before every test.
ACL_MODE = os.environ.get("STASHLY_TEST_ACL") == "1"
_TESTS_DIR = Path(__file__).resolve().parent
_acl_logins = 0  # AUTH and HELLO the shared server answered in ACL mode: logins as ACL_USER


def _check_no_denials(server: RedisServer) -> None:
    if not ACL_MODE or server.process is None:
        return
    server.resume()
    denials = server.acl_denials()
    assert not denials, f"the ACL user {ACL_USER!r} was refused: {denials}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server for the whole run."""
    global _acl_logins
    with RedisServer(acl=ACL_MODE) as server:
        yield server
        if ACL_MODE:
            server.resume()
            with server.client() as admin:
                stats = admin.info("commandstats")
            _acl_logins = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("auth", "hello"))
            # The proof that the restricted user really was the one connecting (the tests' own clients are not).
            assert _acl_logins > 0, f"STASHLY_TEST_ACL=1, but no connection authenticated as {ACL_USER!r}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The shared private server, emptied first (it is ours: the library itself never flushes)."""
    redis_server.resume()
    with redis_server.client() as client:
        client.flushdb()
        if ACL_MODE:
            client.acl_log_reset()
    yield redis_server.url
    _check_no_denials(redis_server)


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """The shared Redis Cluster (3 primaries, 3 replicas), every primary emptied first."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture
def sentinel_url(redis_sentinel: LocalSentinel) -> str:
    """The shared Sentinel set-up (a primary, a replica, 3 sentinels), its primary emptied first."""
    with redis_sentinel.primary_server().client() as client:
        client.flushall()
    return redis_sentinel.url


@pytest.fixture
def disposable_redis() -> Iterator[RedisServer]:
    """A server of the test's own, to stop, pause, kill or restart."""
    with RedisServer(acl=ACL_MODE) as server:
        yield server
        _check_no_denials(server)


@pytest.fixture(scope="session", autouse=True)
def _tests_own_clients_are_unrestricted() -> Iterator[None]:
    """In ACL mode, a raw client a test builds from ``redis_url`` (to inspect or corrupt entries) is the admin.

    Only calls made from this directory are rewritten; stashly builds its pools with
    ``ConnectionPool.from_url``, which is never touched.
    """
    if not ACL_MODE:
        yield
        return
    original = redis.Redis.from_url.__func__  # type: ignore[attr-defined]

    def from_url(cls: type[redis.Redis], url: str, /, **kwargs: Any) -> redis.Redis:
        caller = Path(sys._getframe(1).f_code.co_filename).resolve().parent
        if caller == _TESTS_DIR:
            url = url.replace(f"{ACL_USER}:{ACL_PASSWORD}@", "")
        return original(cls, url, **kwargs)  # type: ignore[no-any-return]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.Redis, "from_url", classmethod(from_url))
        yield


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("measured")
        for line in REPORTS:
            terminalreporter.write_line(line)
    if ACL_MODE:
        terminalreporter.write_line(
            f"STASHLY_TEST_ACL: Redis tests ran as ACL user {ACL_USER!r}; "
            f"{_acl_logins} connections authenticated as it on the shared server"
        )


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests see no STASHLY_* variables from the machine, and no default manager left by another test.

    Only ``GENEROUS_ENV`` is set: every manager a test builds waits 5 s for Redis instead of 0.25 s, so a busy
    machine cannot turn an expected hit into a skipped cache. A test about timeouts passes its own
    (arguments win over the environment); one about the defaults passes ``env=``.
    """
    for name in list(os.environ):
        if name.startswith("STASHLY_"):
            monkeypatch.delenv(name)
    for name, value in GENEROUS_ENV.items():
        monkeypatch.setenv(name, value)
    stashly.set_default_manager(None)
    yield
    stashly.set_default_manager(None)
