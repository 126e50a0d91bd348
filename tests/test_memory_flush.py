"""memory:// namespace flushes by the namespace index: exactly the namespace, in batches that let readers and
writers in between, and nothing written during the flush is lost."""

from __future__ import annotations

import types

import pytest

from stashly.backends import memory
from stashly.backends.memory import SWEEP, MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fill(store: MemoryStore, head: str, count: int, ttl: float | None = 300.0) -> list[str]:
    keys = [f"{head}k{n}" for n in range(count)]
    for key in keys:
        store.set(key, b"old", ttl)
    return keys


def test_a_flush_removes_exactly_its_namespace_and_counts_the_live_entries() -> None:
    clock = Clock()
    store = MemoryStore(max_entries=100_000, clock=clock)
    doomed = _fill(store, "stashly:big:", 3 * SWEEP + 5)
    soon = _fill(store, "stashly:big:soon-", 10, ttl=1.0)
    kept = _fill(store, "stashly:bigger:", 20) + _fill(store, "stashly:small:", 20) + _fill(store, "other:", 3)
    clock.now += 2  # the ten short-lived entries expired: not counted, and gone after the flush all the same
    assert store.count_prefix("stashly:big:") == len(doomed)
    assert store.count_prefix("stashly:big:k1") == sum(key.startswith("stashly:big:k1") for key in doomed)
    assert store.delete_prefix("stashly:big:", "stashly::guard:big") == len(doomed)
    assert all(store.get(key) is None for key in doomed + soon)
    assert all(store.get(key) == b"old" for key in kept)
    assert store.count_prefix("stashly:big:") == 0
    assert len(store) == len(kept)


def test_a_prefix_that_is_no_namespace_is_still_flushed_by_a_scan() -> None:
    store = MemoryStore()
    _fill(store, "stashly:ns:", 5)
    _fill(store, "stashly:ns:user-", 5)
    assert store.delete_prefix("stashly:ns:user-") == 5
    assert store.count_prefix("stashly:ns:") == 5


def test_readers_and_writers_go_on_between_batches_and_writes_made_meanwhile_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore(max_entries=100_000)
    doomed = _fill(store, "stashly:big:", 4 * SWEEP)
    store.set("stashly:small:k", b"kept", 300)
    seen: list[tuple[bytes | None, int]] = []

    def between_batches(seconds: float) -> None:  # the flush hands the GIL over here, the lock released
        if not seen:  # answered mid-flush: the other namespace, and the namespace's entries not swept yet
            seen.append((store.get("stashly:small:k"), sum(store.get(key) == b"old" for key in doomed)))
            for key in doomed:  # a write into the namespace during the flush, to keys it has and has not swept
                store.set(key, b"new", 300)
            store.set("stashly:big:fresh", b"new", 300)

    monkeypatch.setattr(memory, "time", types.SimpleNamespace(sleep=between_batches))
    store.delete_prefix("stashly:big:")
    assert seen == [(b"kept", 3 * SWEEP)]  # one batch swept when the lock was first let go
    assert all(store.get(key) == b"new" for key in [*doomed, "stashly:big:fresh"])
    assert store.count_prefix("stashly:big:") == len(doomed) + 1


def test_evicted_and_expired_entries_leave_the_index() -> None:
    clock = Clock()
    store = MemoryStore(max_entries=10, clock=clock)
    _fill(store, "stashly:ns:", 25)
    assert store.count_prefix("stashly:ns:") == 10
    clock.now += 1000
    assert store.get("stashly:ns:k24") is None  # expired, dropped when met
    assert store.delete_prefix("stashly:ns:") == 0
    assert store._heads == {}
