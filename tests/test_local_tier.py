"""The local tier: its store (injected clock, no Redis) and its coherence against real redis-server processes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stashly import Cached, CacheManager, LocalTier
from stashly.backends.layers.local import HEED_EVERY
from stashly.backends.layers.tracking import SILENCE, _Replies

from tests import coherence
from tests.harness.server import RedisServer
from tests.support import REPORTS, eventually

pytestmark = pytest.mark.timeout(120)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serving_tier(clock: Clock, **options: int | float) -> LocalTier:
    tier = LocalTier(clock=clock, **options)  # type: ignore[arg-type]
    tier.keep_alive(clock.now + 3600)
    return tier


def put(tier: LocalTier, key: str, raw: bytes, ttl: float | None = 100.0, token: bytes | None = b"1") -> None:
    ticket = tier.ticket(key)
    assert ticket is not None
    tier.offer(key, ticket, raw, token, ttl)


# -- the store --------------------------------------------------------------------------------------------


def test_an_invalidation_during_a_read_voids_its_ticket() -> None:
    clock = Clock()
    tier = serving_tier(clock)
    ticket = tier.ticket("k")
    assert ticket is not None
    tier.invalidate(["k"])  # Redis reported a write while our read was in flight
    tier.offer("k", ticket, b"old", b"1", 100.0)
    assert tier.lookup("k") is None
    put(tier, "k", b"new")
    entry = tier.lookup("k")
    assert entry is not None
    assert entry.raw == b"new"


def test_concurrent_reads_of_a_key_each_may_store_and_one_invalidation_voids_them_all() -> None:
    tier = serving_tier(Clock())
    first, second, third = tier.ticket("k"), tier.ticket("k"), tier.ticket("k")
    assert first is not None
    assert second is not None
    assert third is not None
    tier.offer("k", second, b"from-second", b"1", 100.0)  # the first answer back fills the tier...
    entry = tier.lookup("k")
    assert entry is not None
    assert entry.raw == b"from-second"
    tier.offer("k", first, b"from-first", b"1", 100.0)  # ...and so may the others, until an invalidation
    entry = tier.lookup("k")
    assert entry is not None
    assert entry.raw == b"from-first"
    later = tier.ticket("k")
    assert later is not None
    tier.invalidate(["k"])  # voids every ticket taken before it, however many
    tier.offer("k", third, b"from-third", b"1", 100.0)
    tier.offer("k", later, b"from-later", b"1", 100.0)
    assert tier.lookup("k") is None
    after = tier.ticket("k")  # a ticket taken after the invalidation is good
    assert after is not None
    tier.offer("k", after, b"new", b"1", 100.0)
    entry = tier.lookup("k")
    assert entry is not None
    assert entry.raw == b"new"
    assert not tier._tickets  # every ticket handed back: nothing left in the table


def test_a_ticket_handed_back_unused_leaves_nothing_behind_and_voids_no_other() -> None:
    tier = serving_tier(Clock())
    failed, good = tier.ticket("k"), tier.ticket("k")
    assert failed is not None
    assert good is not None
    tier.abandon("k", failed)  # its read failed
    tier.offer("k", good, b"v", b"1", 100.0)
    assert tier.lookup("k") is not None
    gone, empty = tier.ticket("j"), tier.ticket("j")
    assert gone is not None
    assert empty is not None
    tier.abandon("j", gone)
    tier.offer("j", empty, None, None, None)  # no entry in Redis: nothing to store
    assert not tier._tickets


def test_hits_wait_while_the_invalidation_connection_holds_unapplied_news() -> None:
    clock = Clock()
    tier = serving_tier(clock)
    put(tier, "k", b"v")
    news = [True]
    tier.heed(lambda: news[0])
    assert tier.lookup("k") is None  # an invalidation may be waiting to be applied: ask Redis
    news[0] = False
    assert tier.lookup("k") is not None
    news[0] = True
    assert tier.lookup("k") is not None  # asked at most once per HEED_EVERY
    clock.now += HEED_EVERY
    assert tier.lookup("k") is None
    tier.suspend()  # the connection is gone: its question with it
    tier.keep_alive(clock.now + 10)
    put(tier, "k", b"v")
    assert tier.lookup("k") is not None


def test_replies_are_parsed_however_the_bytes_are_split() -> None:
    stream = (
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$3\r\na:1\r\n$0\r\n\r\n"
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*-1\r\n"
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n+OK\r\n:42\r\n$-1\r\n"
    )
    expected = [
        [b"message", b"__redis__:invalidate", [b"a:1", b""]],
        [b"message", b"__redis__:invalidate", None],
        [b"pong", b""],
        b"OK",
        42,
        None,
    ]
    whole = _Replies()
    assert whole.feed(stream) == expected
    assert whole.idle
    split, got = _Replies(), []
    for at in range(len(stream)):
        got += split.feed(stream[at : at + 1])
    assert got == expected
    assert split.idle
    error = _Replies().feed(b"-ERR no\r\n")
    assert isinstance(error[0], ConnectionError)


def test_nothing_is_served_or_stored_unless_the_invalidation_connection_is_alive() -> None:
    clock = Clock()
    tier = LocalTier(clock=clock)
    assert tier.ticket("k") is None
    assert not tier.serving
    tier.keep_alive(clock.now + 1.0)
    put(tier, "k", b"v")
    assert tier.lookup("k") is not None
    clock.now += 1.0  # no word from Redis for a second
    assert not tier.serving
    assert tier.lookup("k") is None
    ticket = tier.ticket("j")
    assert ticket is None


def test_a_ticket_taken_before_a_suspension_stores_nothing() -> None:
    clock = Clock()
    tier = serving_tier(clock)
    ticket = tier.ticket("k")
    assert ticket is not None
    tier.suspend()
    tier.keep_alive(clock.now + 10)  # reconnected before the read came back
    tier.offer("k", ticket, b"v", b"1", 100.0)
    assert tier.lookup("k") is None
    assert len(tier) == 0


def test_a_local_entry_never_outlives_its_redis_ttl_nor_the_tier_ttl() -> None:
    clock = Clock()
    tier = serving_tier(clock, ttl=30.0)
    put(tier, "short", b"v", ttl=2.0)
    put(tier, "long", b"v", ttl=500.0)
    put(tier, "forever", b"v", ttl=None)
    entry = tier.lookup("short")
    assert entry is not None
    assert tier.remaining(entry) == pytest.approx(2.0)
    clock.now += 2.0
    assert tier.lookup("short") is None
    assert tier.lookup("long") is not None
    assert tier.lookup("forever") is not None
    clock.now += 28.0
    assert tier.lookup("long") is None
    assert tier.lookup("forever") is None


def test_least_recently_used_entries_go_first_by_count_and_by_bytes() -> None:
    tier = serving_tier(Clock(), max_entries=3, max_bytes=100)
    for key in "abc":
        put(tier, key, b"x" * 10)
    assert tier.lookup("a") is not None  # a is now the most recently used
    put(tier, "d", b"x" * 10)
    assert tier.lookup("b") is None
    assert {k for k in "acd" if tier.lookup(k)} == {"a", "c", "d"}
    put(tier, "e", b"y" * 90)
    assert tier.size_bytes <= 100
    assert tier.lookup("e") is not None
    assert len(tier) <= 2
    put(tier, "huge", b"z" * 101)  # larger than the whole tier: not kept
    assert tier.lookup("huge") is None
    assert tier.lookup("e") is not None


def test_flushing_a_prefix_drops_exactly_that_prefix() -> None:
    tier = serving_tier(Clock())
    put(tier, "stashly:a:1", b"v")
    put(tier, "stashly:ab:1", b"v")
    tier.invalidate_prefix("stashly:a:")
    assert tier.lookup("stashly:a:1") is None
    assert tier.lookup("stashly:ab:1") is not None


@pytest.mark.parametrize(
    "options", [{"max_entries": 0}, {"max_bytes": -1}, {"ttl": 0}, {"ttl": float("inf")}, {"max_entries": True}]
)
def test_bad_options_name_the_problem(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        LocalTier(**options)  # type: ignore[arg-type]


def test_a_tier_belongs_to_one_manager() -> None:
    tier = LocalTier()
    CacheManager("memory://", local=tier)
    with pytest.raises(ValueError, match="already belongs"):
        CacheManager("memory://", local=tier)


def test_the_memory_backend_has_no_local_tier() -> None:
    assert CacheManager("memory://", local=True).local is None


def test_settings_build_a_tier(redis_url: str) -> None:
    with CacheManager(redis_url, local=True, local_ttl=5, local_max_entries=7, local_max_bytes=1000) as cm:
        assert cm.local is not None
        assert (cm.local.ttl, cm.local.max_entries, cm.local.max_bytes) == (5.0, 7, 1000)
    with CacheManager(redis_url) as cm:
        assert cm.local is None


# -- against Redis ----------------------------------------------------------------------------------------


@pytest.fixture
def local(redis_url: str) -> Iterator[CacheManager]:
    with CacheManager(redis_url, namespace="lt", local=LocalTier(ttl=60)) as cm:
        yield cm


@pytest.fixture
def writer(redis_url: str) -> Iterator[CacheManager]:
    """Another process's manager, as far as the local tier can tell: its own connections, no tier."""
    with CacheManager(redis_url, namespace="lt") as cm:
        yield cm


def warm(cm: CacheManager, key: str) -> None:
    """Read ``key`` until the tier holds it (the first reads wake the invalidation connection)."""
    tier = cm.local
    assert tier is not None
    assert eventually(lambda: cm.get(key) is not None and tier.lookup(cm.key(key)) is not None)


def gets_sent(server: RedisServer) -> int:
    with server.client() as admin:
        stats = admin.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


def test_hits_are_served_in_process(local: CacheManager, redis_server: RedisServer) -> None:
    local.set("user:1", {"id": 1})
    warm(local, "user:1")
    tier = local.local
    assert tier is not None
    before, served_before = gets_sent(redis_server), tier.hits
    for _ in range(100):
        assert local.get("user:1") == {"id": 1}
    served = tier.hits - served_before
    # Every local answer cost no GET. (All 100 are local unless a busy machine starved the invalidation thread
    # past its one second of trust: then the tier rightly stopped serving, and those reads went to Redis.)
    assert served > 0
    assert gets_sent(redis_server) - before == 100 - served


def test_a_caller_mutating_a_hit_does_not_change_the_next_one(local: CacheManager) -> None:
    local.set("user:1", {"id": 1, "roles": ["a"]})
    warm(local, "user:1")
    mine = local.get("user:1")
    mine["roles"].append("admin")
    mine["id"] = 2
    assert local.get("user:1") == {"id": 1, "roles": ["a"]}


def test_own_writes_are_read_back_at_once(local: CacheManager) -> None:
    local.set("k", 1)
    warm(local, "k")
    local.set("k", 2)
    assert local.get("k") == 2
    assert local.remove("k") is True
    assert local.get("k") is None


def test_another_process_writes_reach_the_tier(local: CacheManager, writer: CacheManager) -> None:
    local.set("k", "v1")
    warm(local, "k")
    writer.set("k", "v2")
    assert eventually(lambda: local.get("k") == "v2")
    writer.remove("k")
    assert eventually(lambda: local.get("k") is None)
    local.set("other", 1)
    warm(local, "other")
    writer.flush_namespace()
    assert eventually(lambda: local.get("other") is None)
    local.set("kept", 1)
    warm(local, "kept")
    writer.flush_namespace(mode="versioned")  # only the namespace's generation changes: the tier drops it all
    assert eventually(lambda: local.get("kept") is None)


def test_a_server_flush_empties_the_tier(local: CacheManager, redis_server: RedisServer) -> None:
    local.set("k", 1)
    warm(local, "k")
    with redis_server.client() as admin:
        admin.flushdb()
    assert eventually(lambda: local.get("k") is None)


def test_decorated_hits_come_from_the_tier_and_invalidate_everywhere(local: CacheManager, writer: CacheManager) -> None:
    calls = []

    def profile(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id, "version": len(calls)}

    mine = Cached("profiles", manager=local).cached(profile)
    theirs = Cached("profiles", manager=writer).cached(profile)
    first = mine(7)
    tier = local.local
    assert tier is not None
    assert eventually(lambda: mine(7) == first and len(tier) == 1)
    assert eventually(lambda: _served_locally(tier, lambda: mine(7)) == first)
    theirs.invalidate(7)
    assert eventually(lambda: mine(7) != first)


def _served_locally(tier: LocalTier, read: Any) -> Any:
    """What ``read()`` returned if the tier answered it, else a marker (a busy machine may have suspended it)."""
    before = tier.hits
    value = read()
    return value if tier.hits == before + 1 else "not served locally"


async def test_an_async_local_hit_never_yields_to_the_event_loop(local: CacheManager) -> None:
    await local.aset("k", {"a": 1})
    assert local.local is not None
    tier = local.local
    deadline = time.monotonic() + 10
    while True:  # until a read is a local hit: the tier may be suspended by a starved invalidation thread
        while tier.lookup(local.key("k")) is None:
            assert time.monotonic() < deadline, "the tier never held the entry"
            await local.aget("k")
            await asyncio.sleep(0.01)
        ran: list[bool] = []
        asyncio.get_running_loop().call_soon(ran.append, True)
        hits = tier.hits
        assert await local.aget("k") == {"a": 1}
        if tier.hits == hits + 1:
            break
        assert time.monotonic() < deadline, "no read was a local hit"
        await asyncio.sleep(0)
    assert ran == []  # a miss would have awaited a socket, letting the callback run
    await asyncio.sleep(0)
    assert ran == [True]


async def _tasks_read(read: Any, tasks: int, reads: int) -> list[Any]:
    """``reads`` reads by each of ``tasks`` concurrent tasks, yielding between reads; every answer."""

    async def reader() -> list[Any]:
        seen = []
        for _ in range(reads):
            seen.append(await read())
            await asyncio.sleep(0)
        return seen

    return [answer for answers in await asyncio.gather(*(reader() for _ in range(tasks))) for answer in answers]


async def _tasks_fill_the_tier(tier: LocalTier, read: Any, expected: Any) -> float:
    """Five tasks read one hot key until some of their reads are local hits; the share of hits in the last round."""
    deadline = time.monotonic() + 20
    while True:
        hits, misses = tier.hits, tier.misses
        answers = await _tasks_read(read, 5, 200)
        assert answers == [expected] * len(answers)
        served = tier.hits - hits
        if served > 0:  # before the fix, overlapping tickets voided each other: never a single hit
            return served / (served + tier.misses - misses)
        assert time.monotonic() < deadline, "five tasks reading one key never got a local hit"
        await asyncio.sleep(0.05)  # a starved invalidation thread may have suspended the tier: let it recover


async def test_several_tasks_on_one_hot_key_fill_the_tier_and_refill_it_after_an_update(
    local: CacheManager, writer: CacheManager
) -> None:
    tier = local.local
    assert tier is not None
    await local.aset("hot", 1)
    cold = await _tasks_fill_the_tier(tier, lambda: local.aget("hot"), 1)
    await writer.aset("hot", 2)  # another process's write: the tier drops it, and the tasks must refill it
    # Until the entry is gone, not merely unserved: lookup() is also None while the tier waits for its connection
    # to answer, and it serves again when the connection does, which a busy machine may let happen before the
    # write's invalidation arrives (a staleness the tier allows: a few ms after a write, not after its drop).
    assert eventually(lambda: local.key("hot") not in tier._entries)
    updated = await _tasks_fill_the_tier(tier, lambda: local.aget("hot"), 2)
    assert not tier._tickets  # every read handed its ticket back

    def profile(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    cached = Cached("profiles", manager=local).cached(profile)

    async def aprofile(user_id: int) -> dict[str, int]:
        return profile(user_id)

    acached = Cached("aprofiles", manager=local).cached(aprofile)
    decorated = await _tasks_fill_the_tier(tier, lambda: acached(7), {"id": 7})
    assert cached(7) == {"id": 7}
    REPORTS.append(
        f"local tier, 5 asyncio tasks on one hot key: local hits {cold:.1%} from cold, {updated:.1%} after an "
        f"update, {decorated:.1%} through an async @cached function"
    )


async def test_a_failed_or_cancelled_read_hands_its_ticket_back(disposable_redis: RedisServer) -> None:
    async with CacheManager(disposable_redis.url, namespace="lt", local=LocalTier(), socket_timeout=0.3) as cm:
        tier = cm.local
        assert tier is not None
        await cm.aset("warm", 1)
        await cm.aset("k", 1)
        ticketed = 0
        for _ in range(20):  # until a read takes a ticket while the server is paused (the tier may stop first)
            assert eventually(lambda: cm.get("warm") == 1 and tier.lookup(cm.key("warm")) is not None)
            tier.invalidate([cm.key("k")])
            disposable_redis.pause()
            try:
                failing = asyncio.create_task(cm.aget("k", "fallback"))
                cancelled = asyncio.create_task(cm.aget("k"))
                await asyncio.sleep(0.05)
                in_flight = cm.key("k") in tier._tickets
                cancelled.cancel()
                assert await failing == "fallback"  # failed open after the socket timeout
                with pytest.raises(asyncio.CancelledError):
                    await cancelled
            finally:
                disposable_redis.resume()
            assert not tier._tickets  # both reads handed their tickets back
            if in_flight:
                ticketed += 1
                break
        assert ticketed, "no read ever took a ticket"


def test_get_many_serves_local_entries_and_asks_redis_for_the_rest(local: CacheManager) -> None:
    local.set("a", 1)
    local.set("b", 2)
    warm(local, "a")
    assert local.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}


def test_a_paused_server_stops_the_tier_within_two_seconds(disposable_redis: RedisServer) -> None:
    with CacheManager(disposable_redis.url, namespace="lt", local=LocalTier()) as cm:
        cm.set("k", "v")
        warm(cm, "k")
        disposable_redis.pause()
        try:
            time.sleep(2.0)
            assert cm.local is not None
            assert not cm.local.serving
            assert cm.get("k", "fallback") == "fallback"  # failed open after the timeout, not a local answer
        finally:
            disposable_redis.resume()
        assert eventually(lambda: cm.get("k") == "v" and cm.local is not None and cm.local.serving)


def test_the_tier_starts_empty_after_a_restart(disposable_redis: RedisServer) -> None:
    with CacheManager(disposable_redis.url, namespace="lt", local=LocalTier()) as cm:
        cm.set("k", "v")
        warm(cm, "k")
        disposable_redis.restart()  # the data is gone with it
        assert eventually(lambda: cm.get("k") is None)
        cm.set("k", "again")
        warm(cm, "k")
        assert cm.get("k") == "again"


def test_a_forked_child_listens_for_itself(local: CacheManager, writer: CacheManager) -> None:
    local.set("k", "parent")
    warm(local, "k")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it saw, then leave without running the parent's cleanup
        status = 1
        try:
            tier = local.local
            assert tier is not None
            assert len(tier) == 0
            warm(local, "k")
            os.write(write, b"warm\n")
            assert eventually(lambda: local.get("k") == "updated")
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as pipe:
        assert pipe.readline() == "warm\n"
        writer.set("k", "updated")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_invalidation_connection_needs_only_the_documented_grants(redis_url: str) -> None:
    # In STASHLY_TEST_ACL=1 runs this manager is the least-privilege user, and ACL LOG must stay empty.
    with CacheManager(redis_url, namespace="lt", local=True) as cm:
        cm.set("k", 1)
        warm(cm, "k")


# -- several processes: the issue's coherence test ----------------------------------------------------------


@pytest.mark.parametrize("tasks", [0, 5], ids=["one-thread", "five-tasks"])
def test_readers_in_other_processes_never_serve_a_superseded_value_past_the_trust_window(
    redis_url: str, tasks: int
) -> None:
    """A writer updates or removes a key every 200 ms for 10 s while 3 reader processes read it flat out.

    Each reader is one thread, or five asyncio tasks on one event loop (where coalesced reads overlap, and the
    loop serving only hits starves the invalidation thread of the GIL). The bound asserted is the design's
    (:mod:`tests.coherence`); how stale reads really were, typically well under 100 ms, and the share of local
    hits are printed in the run's summary.
    """
    found = coherence.run(redis_url, tasks)
    readers = "3 readers" if not tasks else f"3 readers of {tasks} asyncio tasks"
    REPORTS.append(
        f"local tier: {readers}, a write every 200 ms for 10 s; stalest answer {found.describe()} "
        f"after its value was replaced (bound {SILENCE * 1000:.0f} ms); local hits "
        + ", ".join(f"{ratio:.1%}" for ratio in found.ratios)
    )
