"""Cluster reads from replicas (``read_from_replicas``): what is sent where, and how the replies are read.

A replica applies its primary's writes a little later, so its copy of an entry may be one a removal, a flush or
an overwrite has already replaced on the primary. Entries written by a manager reading from replicas carry, in
their stamp, the namespace's generation *and* the entry's guard as they were when the entry was written
(:func:`~stashly.storage.stamps.guarded_stamp`); every removal bumps the guard, every flush the generation. A
read takes the entry from a replica of its slot and both counters from the primaries, in the same round trip
(batch :data:`FROM_REPLICA` goes to the replica, the others to primaries), and serves the copy only if both still
match: a replica's lag can cost a miss, never a value from before an invalidation.

What a replica's lag can still show is an *overwrite* that has not reached it: for as long as the replica is
behind (milliseconds on a healthy link), a ``set`` of a new value can be read as the value it replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ...keys.layout import generation_key, guard_of
from ...keys.slots import colocated, slot_of
from ...storage.stamps import fill_token, guarded_stamp, unstamp_guarded
from ..base import Read
from .commands import Command, expiry_ms, ttl_seconds

__all__ = [
    "FROM_REPLICA",
    "replica_guard",
    "replica_read_batches",
    "replica_read_result",
    "replica_set_command",
    "replica_stamp_batches",
]

FROM_REPLICA: Final = 0
"""The batch of :func:`replica_read_batches` that a replica answers: the entry (and its ``PTTL``)."""


def replica_guard(key: str, guard: str | None) -> str:
    """The guard counter of ``key`` in its slot; a read or a removal without a guard still has one."""
    return colocated(guard or guard_of(key), key)


def replica_read_batches(
    key: str, guard: str | None, with_ttl: bool, extra: Sequence[str] = ()
) -> tuple[tuple[int, list[Command]], ...]:
    """The entry from a replica; its guard and its namespace's generation, then the ``extra`` keys, from primaries."""
    slot, generation = slot_of(key), generation_key(key)
    entry: list[Command] = [("GET", key), *([("PTTL", key)] if with_ttl else [])]
    counters = (slot, [("GET", replica_guard(key, guard))]), (slot_of(generation), [("GET", generation)])
    return (slot, entry), *counters, *((slot_of(other), [("GET", other)]) for other in extra)


def replica_read_result(replies: list[Any], with_ttl: bool) -> Read:
    """The value (a replica's copy proved current by the primaries' counters), the fill token, maybe the TTL."""
    guard, generation = replies[-2], replies[-1]
    value = unstamp_guarded(replies[0], generation, guard)
    return value, fill_token(guard, generation), ttl_seconds(value, replies[1]) if with_ttl else None


def replica_stamp_batches(key: str) -> tuple[tuple[int, list[Command]], ...]:
    """``set``: read the two counters a write is stamped with (its guard, its namespace's generation)."""
    generation = generation_key(key)
    return (slot_of(key), [("GET", replica_guard(key, None))]), (slot_of(generation), [("GET", generation)])


def replica_set_command(key: str, value: bytes, ttl: float | None, counters: list[Any]) -> Command:
    """The ``SET`` of ``value`` stamped with the counters :func:`replica_stamp_batches` read. A removal landing
    between the two moves the guard: the write then reads as a miss, as if the removal had come after it."""
    stamped = guarded_stamp(value, counters[1], counters[0])
    return ("SET", key, stamped) if ttl is None else ("SET", key, stamped, "PX", expiry_ms(ttl))
