"""An invalidation is never lost: one the backend could not take is journaled and replayed when it answers.

Against real redis-server processes: paused (SIGSTOP) while the invalidation is issued, or with the invalidating
manager's circuit breaker open while another manager (standing for another process) reads a healthy Redis. The
invalidating process never sees its own stale value; once the replay ran, nobody does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stashly import Cached, CacheManager, LocalTier, keys
from stashly.engine import Journal

from tests.harness.server import RedisServer
from tests.support import BACKENDS, GENEROUS, Api, aeventually, backend_url, eventually

pytestmark = pytest.mark.timeout(120)

OLD, NEW = {"v": "old"}, {"v": "new"}
QUICK = {"socket_timeout": 0.3, "connect_timeout": 0.3}  # the invalidating manager meets a paused server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def open_breaker(manager: CacheManager) -> Clock:
    """Open ``manager``'s circuit breaker by hand (as repeated failures would), on a clock the test moves."""
    breaker = manager._breaker
    assert breaker is not None
    clock = Clock()
    breaker._clock = clock
    for _ in range(breaker.threshold):
        breaker.failed()
    assert breaker.is_open
    return clock


# -- the journal itself ---------------------------------------------------------------------------------------


def test_a_later_invalidation_of_a_key_replaces_the_earlier() -> None:
    journal = Journal()
    journal.record_key("stashly:a:1", "stashly::guard:a")
    journal.record_key("stashly:a:2", "stashly::guard:a")
    journal.record_key("stashly:a:1", "stashly::guard:a")
    assert [p.target for p in journal.snapshot()] == ["stashly:a:2", "stashly:a:1"]
    assert journal.blocks("stashly:a:1")
    assert not journal.blocks("stashly:a:3")
    assert not journal.blocks("stashly:b:1")


def test_a_namespace_flush_subsumes_its_pending_keys() -> None:
    journal = Journal()
    journal.record_key("stashly:a:1", "stashly::guard:a")
    journal.record_key("stashly:b:1", "stashly::guard:b")
    journal.record_namespace("stashly:a:", "stashly::guard:a", "scan")
    assert [(p.kind, p.target) for p in journal.snapshot()] == [("key", "stashly:b:1"), ("scan", "stashly:a:")]
    assert journal.blocks("stashly:a:anything")
    journal.record_key("stashly:a:2", "stashly::guard:a")  # covered by the pending flush
    assert len(journal) == 2
    journal.record_namespace("stashly:a:", "stashly::guard:a", "versioned")  # the later flush replaces it
    assert [(p.kind, p.target) for p in journal.snapshot()] == [("key", "stashly:b:1"), ("versioned", "stashly:a:")]


def test_over_the_limit_the_busiest_namespace_becomes_one_versioned_flush() -> None:
    journal = Journal(limit=5)
    for i in range(4):
        journal.record_key(f"stashly:busy:{i}", "stashly::guard:busy")
    journal.record_key("stashly:calm:0", "stashly::guard:calm")
    assert journal.escalated == 0
    journal.record_key("stashly:calm:1", "stashly::guard:calm")  # the sixth entry
    assert journal.escalated == 1
    assert [(p.kind, p.target, p.guard) for p in journal.snapshot()] == [
        ("key", "stashly:calm:0", "stashly::guard:calm"),
        ("key", "stashly:calm:1", "stashly::guard:calm"),
        ("versioned", "stashly:busy:", "stashly::guard:busy"),
    ]
    assert all(journal.blocks(f"stashly:busy:{i}") for i in range(10))  # nothing was dropped: all still bypass


def test_a_delivery_that_a_newer_invalidation_replaced_is_kept() -> None:
    journal = Journal()
    journal.record_key("stashly:a:1", "stashly::guard:a")
    (first,) = journal.snapshot()
    journal.record_key("stashly:a:1", "stashly::guard:a")  # again, while the first was being delivered
    journal.delivered(first)
    assert len(journal) == 1
    assert journal.active
    journal.delivered(journal.snapshot()[0])
    assert (len(journal), journal.active, journal.replayed) == (0, False, 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_starts_with_an_empty_journal() -> None:
    journal = Journal()
    journal.record_key("stashly:a:1", "stashly::guard:a")
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its journal is empty
        os._exit(0 if (len(journal), journal.active) == (0, False) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(journal) == 1  # the parent still replays its own


# -- invalidations during an outage, on a real server ----------------------------------------------------------


@pytest.fixture
def server(disposable_redis: RedisServer) -> Iterator[RedisServer]:
    yield disposable_redis
    disposable_redis.resume()


@pytest.fixture
def reader(server: RedisServer) -> Iterator[CacheManager]:
    """Another process's view of the same Redis (its own manager, journal and breaker)."""
    with CacheManager(server.url, namespace="app", **GENEROUS) as manager:
        yield manager


Invalidate = Callable[[Api, str], Any]
INVALIDATIONS: dict[str, Invalidate] = {
    "remove": lambda api, key: api.remove(key),
    "flush-scan": lambda api, key: api.flush_namespace(mode="scan"),
    "flush-versioned": lambda api, key: api.flush_namespace(mode="versioned"),
    "set": lambda api, key: api.set(key, NEW, 300),
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("how", sorted(INVALIDATIONS))
async def test_an_invalidation_during_a_pause_is_replayed_and_never_served_stale(
    server: RedisServer, reader: CacheManager, how: str, mode: str
) -> None:
    with CacheManager(server.url, namespace="app", **QUICK) as manager:
        api = Api(manager, mode)
        reader.set("k", OLD, 300)  # written with generous timeouts: the quick ones are for the pause
        server.pause()
        await INVALIDATIONS[how](api, "k")  # fails for a backend reason: journaled, not forgotten
        assert manager.stats().pending_invalidations == 1
        seen = [await api.get("k")]  # the invalidating process never sees its own stale value
        server.resume()
        await aeventually(lambda: _read_until_replayed(api, seen))
        assert OLD not in seen
        assert manager.stats().replayed_invalidations == 1
        assert reader.get("k") is None  # the replay reached Redis: another process sees it too
        assert await api.get("k") is None


async def _read_until_replayed(api: Api, seen: list[Any]) -> bool:
    seen.append(await api.get("k"))
    return api.manager.stats().pending_invalidations == 0


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "memory"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_with_the_breaker_open_the_invalidator_bypasses_and_replays_first(
    request: pytest.FixtureRequest, backend: str, mode: str
) -> None:
    url = backend_url(request, backend)
    with CacheManager(url, namespace="app") as invalidator, CacheManager(url, namespace="app") as other:
        calls: list[int] = []

        def lookup(user_id: int) -> dict[str, int]:
            calls.append(user_id)
            return {"id": user_id, "version": len(calls)}

        async def alookup(user_id: int) -> dict[str, int]:
            return lookup(user_id)

        body: Any = alookup if mode == "async" else lookup
        mine, theirs = (Cached("users", ttl=300, manager=m).cached(body) for m in (invalidator, other))

        async def call(function: Any, *args: Any) -> Any:
            result = function(*args)
            return await result if mode == "async" else result

        assert await call(mine, 1) == {"id": 1, "version": 1}
        assert await call(theirs, 1) == {"id": 1, "version": 1}  # a hit: one computation so far
        clock = open_breaker(invalidator)
        assert await call(mine.invalidate, 1) is False  # the breaker refused it: journaled
        assert invalidator.stats().pending_invalidations == 1
        assert await call(theirs, 1) == {"id": 1, "version": 1}  # Redis never heard: others still see the entry
        assert await call(mine, 1) == {"id": 1, "version": 2}  # this process bypasses it and computes fresh...
        assert await call(mine, 1) == {"id": 1, "version": 3}  # ...and stores nothing while it is pending
        clock.now += 10  # the cool-down passes: the next operation probes, and the replay goes first
        assert await call(mine, 1) == {"id": 1, "version": 4}
        assert invalidator.stats().pending_invalidations == 0
        assert not invalidator._breaker.is_open  # type: ignore[union-attr]
        assert await call(theirs, 1) == {"id": 1, "version": 4}  # the stale entry is gone everywhere


def test_a_pending_invalidation_drops_the_local_entry_and_keeps_it_out(redis_url: str) -> None:
    with (
        CacheManager(redis_url, namespace="lt", local=LocalTier(clock=lambda: 0.0)) as manager,
        CacheManager(redis_url, namespace="lt") as other,
    ):
        manager.set("k", OLD, 300)
        assert eventually(lambda: manager.get("k") == OLD and manager.local is not None and len(manager.local) == 1)
        clock = open_breaker(manager)
        assert manager.remove("k") is False
        assert manager.local is not None
        assert len(manager.local) == 0
        for _ in range(3):
            assert manager.get("k") is None  # neither the local tier nor Redis answers for it
        assert len(manager.local) == 0
        assert other.get("k") == OLD
        clock.now += 10
        assert manager.get("k") is None  # the probe carried the replay
        assert other.get("k") is None


def test_a_write_after_a_pending_invalidation_is_not_undone_by_the_replay(redis_url: str) -> None:
    with CacheManager(redis_url, namespace="w") as manager:
        manager.set("k", OLD, 300)
        clock = open_breaker(manager)
        assert manager.remove("k") is False
        clock.now += 10
        manager.set("k", NEW, 300)  # replays the removal first, then writes
        assert manager.get("k") == NEW
        assert manager.stats().pending_invalidations == 0


def test_close_tries_a_last_replay_and_names_what_it_could_not_deliver(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    manager = CacheManager(server.url, namespace="app", **QUICK)
    with CacheManager(server.url, namespace="app", **GENEROUS) as writer:
        writer.set("secret-user-key", OLD, 300)
    server.pause()
    manager.remove("secret-user-key")
    with caplog.at_level(logging.WARNING, logger="stashly"):
        manager.close()
    (record,) = [r for r in caplog.records if getattr(r, "outcome", None) == "invalidations_dropped"]
    assert keys.describe(manager.key("secret-user-key")) in record.getMessage()
    assert "secret-user-key" not in record.getMessage()  # keys by description, never their text
    stats = manager.stats()
    assert (stats.pending_invalidations, stats.dropped_invalidations) == (0, 1)


def test_close_delivers_what_is_pending_when_the_server_is_back(server: RedisServer, reader: CacheManager) -> None:
    manager = CacheManager(server.url, namespace="app", **GENEROUS)
    manager.set("k", OLD, 300)
    clock = open_breaker(manager)
    manager.remove("k")
    clock.now += 10
    manager.close()
    assert manager.stats().dropped_invalidations == 0
    assert reader.get("k") is None


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_invalidation_while_the_server_is_killed_is_replayed_after_its_restart(
    server: RedisServer, mode: str
) -> None:
    with CacheManager(server.url, namespace="app", **QUICK) as manager:
        api = Api(manager, mode)
        server.kill()
        assert await api.remove("k") is False  # refused at once: journaled
        assert manager.stats().pending_invalidations == 1
        server.restart()
        seen: list[Any] = []
        assert await aeventually(lambda: _read_until_replayed(api, seen))
        assert manager.stats().replayed_invalidations == 1
