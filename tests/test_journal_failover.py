"""A pending invalidation survives a primary failover: its replay reaches the new primary, on Cluster and Sentinel.

The invalidating manager's breaker is opened by hand so the invalidation is journaled for certain (a failover may or
may not fail a given command, depending on timing); then the primary holding the entry is killed, a replica takes
over, the breaker's cool-down passes, and the replay must reach the node that now holds the key.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stashly import CacheManager
from stashly.keys.layout import generation_key
from stashly.keys.slots import slot_of

from tests.harness.cluster import LocalCluster
from tests.harness.sentinel import LocalSentinel
from tests.support import GENEROUS, eventually
from tests.test_journal import OLD, Clock, open_breaker

pytestmark = pytest.mark.timeout(120)


def test_cluster_replays_to_the_promoted_replica(cluster: LocalCluster) -> None:
    def fail_over(manager: CacheManager) -> None:
        slot = slot_of(manager.key("k"))
        (victim,) = [node for node in cluster.primaries() if slot in cluster.slots_of(node)]
        cluster.kill(victim)
        cluster.wait_failover(victim)

    _replayed_across_a_failover(cluster.url, cluster.wait_replicated, fail_over)


def test_sentinel_replays_to_the_new_primary(sentinel: LocalSentinel) -> None:
    def fail_over(manager: CacheManager) -> None:
        sentinel.kill_primary()
        sentinel.wait_failover()

    _replayed_across_a_failover(sentinel.url, sentinel.wait_replicated, fail_over)


def _replayed_across_a_failover(
    url: str, wait_replicated: Callable[[], None], fail_over: Callable[[CacheManager], None]
) -> None:
    with (
        CacheManager(url, namespace="app", **GENEROUS) as invalidator,
        CacheManager(url, namespace="app", **GENEROUS) as other,
    ):
        invalidator.set("k", OLD, 300)
        wait_replicated()
        clock = open_breaker(invalidator)
        assert invalidator.remove("k") is False
        fail_over(invalidator)
        assert eventually(lambda: other.get("k") == OLD)  # the replica kept the entry: Redis never heard
        assert invalidator.get("k") is None  # this process bypasses it meanwhile
        assert eventually(lambda: _probed(invalidator, clock))
        assert other.get("k") is None


def _probed(invalidator: CacheManager, clock: Clock) -> bool:
    """One probe per cool-down, as time passes: the first may still meet the dead primary's address."""
    clock.now += 10
    return invalidator.get("k") is None and invalidator.stats().pending_invalidations == 0


def test_a_dead_primary_holds_back_only_its_own_pending_invalidations(cluster: LocalCluster) -> None:
    """Removals journaled while the breaker was open, then one primary dies: the replay delivers the others' at
    once, keeps the dead one's pending (its keys bypassed meanwhile), and delivers those after the failover."""
    names = [f"k{i}" for i in range(60)]
    with (
        CacheManager(cluster.url, namespace="app", **GENEROUS) as invalidator,
        CacheManager(cluster.url, namespace="app", **GENEROUS) as other,
    ):
        for name in names:
            invalidator.set(name, OLD, 300)
        cluster.wait_replicated()
        generation_slot = slot_of(generation_key(invalidator.key(names[0])))
        victim = next(node for node in cluster.primaries() if generation_slot not in cluster.slots_of(node))
        on_victim = {name for name in names if slot_of(invalidator.key(name)) in cluster.slots_of(victim)}
        assert on_victim
        assert len(on_victim) < len(names)
        healthy = [name for name in names if name not in on_victim]
        assert other.get(healthy[0]) == OLD  # connected before the kill
        clock = open_breaker(invalidator)
        for name in names:
            assert invalidator.remove(name) is False  # refused: journaled
        cluster.kill(victim)
        clock.now += 10  # the cool-down passes: the next operation replays
        assert invalidator.get(healthy[0]) is None
        assert invalidator.stats().pending_invalidations == len(on_victim)
        errors = other.totals().errors
        assert [other.get(name) for name in healthy] == [None] * len(healthy)  # delivered: gone for everyone
        assert other.totals().errors == errors  # read from Redis, not a failure's miss
        assert all(invalidator.get(name) is None for name in on_victim)  # pending: this process bypasses them
        cluster.wait_failover(victim)
        assert eventually(lambda: _drained(invalidator, clock, healthy[0]))
        assert eventually(lambda: all(other.get(name) is None for name in on_victim))


def _drained(invalidator: CacheManager, clock: Clock, name: str) -> bool:
    clock.now += 10
    invalidator.get(name)
    return invalidator.stats().pending_invalidations == 0
