"""The in-process hit path (``EngineCore.hit``): what it serves is exactly what the full decode would serve,
counted once, and the lock-free memory read stays safe beside writers and scans."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from stashly import Cached, CacheManager, LocalTier
from stashly.backends.memory import MemoryStore
from stashly.sentinels import MISSING
from stashly.storage import codec

from tests.support import eventually

pytestmark = pytest.mark.timeout(60)

KEY = "stashly:hp:k"


def envelope(value: bytes, key: str = KEY, at: bytes = b"1796605431758") -> bytes:
    return b'{"stashly":1,"key":"%b","at":%b,"value":%b}' % (codec.binding(key), at, value)


CRAFTED = {
    "plain": envelope(b'{"a":1}'),
    "a null": envelope(b"null"),
    "a fresh past its time after the value": envelope(b'1,"fresh":1'),
    "a key after the value": envelope(b'{"a":1},"x":2'),
    "a stamp that is no number": envelope(b"7", at=b'"x2345678901"'),
    "a fresh past its time in the stamp's place": envelope(b"7", at=b'1,"fresh":123'),
    "no closing brace": envelope(b"7")[:-1] + b" ",
    "a short stamp": envelope(b"7", at=b"17"),
    "bytes after the envelope": envelope(b"7") + b"x",
    "copied from another key": envelope(b'{"a":1}', key="stashly:hp:other"),
    "another version": envelope(b"7").replace(b'"stashly":1', b'"stashly":2'),
    "whitespace around the value": envelope(b' {"a": [1, 2]} '),
    "two values": envelope(b"1 2"),
    "not JSON": envelope(b"{"),
}


@pytest.fixture
def memory() -> Iterator[CacheManager]:
    with CacheManager(url="memory://", namespace="hp") as cm:
        yield cm


def expected(raw: bytes) -> Any:
    value = codec.decode(raw, KEY)
    return None if value is MISSING or type(value) is codec.Stale else value


@pytest.mark.parametrize("case", CRAFTED)
def test_an_entry_held_in_process_reads_as_the_full_decode_reads_it(memory: CacheManager, case: str) -> None:
    raw = CRAFTED[case]
    memory.engine.backend.set(KEY, raw, 60)
    assert memory.get("k") == expected(raw)
    assert memory.get("k") == expected(raw)  # and again, from the same entry


@pytest.mark.parametrize("case", CRAFTED)
async def test_an_entry_held_in_process_reads_as_the_full_decode_reads_it_async(
    memory: CacheManager, case: str
) -> None:
    raw = CRAFTED[case]
    memory.engine.backend.set(KEY, raw, 60)
    assert await memory.aget("k") == expected(raw)


def test_each_read_is_counted_once(memory: CacheManager) -> None:
    memory.set("k", {"a": 1})
    for _ in range(10):
        assert memory.get("k") == {"a": 1}
    assert memory.get("absent") is None
    memory.engine.backend.set(KEY, CRAFTED["copied from another key"], 60)
    assert memory.get("k") is None  # the hit path declines it; the full decode counts the miss
    stats = memory.stats()
    assert (stats.hits, stats.misses) == (10, 2)


def test_the_slow_path_serves_what_the_hit_path_leaves_to_it(memory: CacheManager) -> None:
    memory.set("tagged", {"a": 1}, tags=["t"])
    assert memory.get("tagged") == {"a": 1}
    memory.invalidate_tags("t")
    assert memory.get("tagged") is None


@pytest.mark.parametrize(
    ("annotation", "stored", "served"),
    [
        (dict, {"a": 1}, {"a": 1}),
        (dict, [1], None),
        (dict[str, Any], {"a": 1}, {"a": 1}),
        (list, [1, "a"], [1, "a"]),
        (list[Any], {"a": 1}, None),
        (str, "text", "text"),
        (str, 5, None),
        (dict[str, int], {"a": "x"}, None),  # not JSON-native: validated as before
        (list[int], ["1"], [1]),  # and converted, as the TypeAdapter does
    ],
)
def test_a_typed_read_checks_the_type_on_the_hit_path_as_pydantic_would(
    memory: CacheManager, annotation: Any, stored: object, served: object
) -> None:
    memory.set("k", stored)
    for _ in range(2):
        assert memory.get("k", type=annotation) == served


class User(BaseModel):
    id: int
    email: str


def test_a_decorated_hit_in_process_validates_the_model(memory: CacheManager) -> None:
    calls: list[int] = []

    @Cached(manager=memory).cached(ttl=60)
    def user(n: int) -> User:
        calls.append(n)
        return User(id=n, email=f"{n}@example.com")

    assert user(1) == User(id=1, email="1@example.com")
    assert user(1) == User(id=1, email="1@example.com")
    assert calls == [1]
    full = user.cache_key(1)
    memory.engine.backend.set(full, envelope(b'{"id":"one","email":1}', key=full), 60)  # no longer a User
    assert user(1) == User(id=1, email="1@example.com")  # a miss: recomputed
    assert calls == [1, 1]


def test_a_decorated_dict_hit_that_holds_a_list_is_recomputed(memory: CacheManager) -> None:
    @Cached(manager=memory).cached(ttl=60)
    def settings(n: int) -> dict[str, Any]:
        return {"n": n}

    assert settings(1) == {"n": 1}
    full = settings.cache_key(1)
    memory.engine.backend.set(full, envelope(b"[1]", key=full), 60)
    assert settings(1) == {"n": 1}


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads take turns between almost any two bytecodes: a race shows at once, not once in a while."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("busy_switching")
def test_the_lock_free_read_beside_writers_evictions_and_scans() -> None:
    store = MemoryStore(max_entries=200)
    keys = [f"stashly:ns{n % 3}:k{n}" for n in range(400)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def guarded(work: Any) -> Any:
        def run() -> None:
            try:
                while not stop.is_set():
                    work()
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
                stop.set()

        return run

    def read() -> None:
        for key in keys:
            raw = store.peek(key)
            assert raw is None or raw == key.encode()

    def write() -> None:
        for key in keys:
            store.set(key, key.encode(), 60)

    def scan() -> None:
        store.count_prefix("stashly:")  # not a namespace: a walk of every entry
        store.delete_prefix("stashly:ns1")  # nor this: a walk too

    threads = [threading.Thread(target=guarded(work)) for work in (read, read, write, scan)]
    for thread in threads:
        thread.start()
    for _ in range(200):  # meanwhile, the others write, evict and walk
        read()
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store) <= 200


def test_a_local_hit_is_served_in_process_and_counted_once(redis_url: str) -> None:
    with CacheManager(redis_url, namespace="hp", local=LocalTier(ttl=60)) as cm:
        tier = cm.local
        assert tier is not None
        cm.set("k", {"a": 1})
        assert eventually(lambda: cm.get("k") == {"a": 1} and tier.lookup(cm.key("k")) is not None)
        before, tier_before = cm.stats(), (tier.hits, tier.misses)
        for _ in range(20):
            assert cm.get("k") == {"a": 1}
        after = cm.stats()
        local_hits, local_misses = tier.hits - tier_before[0], tier.misses - tier_before[1]
        assert (after.hits - before.hits, after.misses - before.misses) == (20, 0)
        # Each read counted once by the tier: answered here, or (the tier briefly not trusted) passed to Redis.
        assert local_hits + local_misses == 20
