"""What stashly says to Redis, pure: the Lua scripts, and the commands of each operation with the reading of
their replies, for one server and for Cluster (the backends only send them).

A single server answers an entry, its generation and its guard in one ``MGET``. On Cluster they may live on
different nodes: the guard and the stampede lock are colocated with the entry (same slot), the generation is
read beside it, and a command over several keys is grouped by slot.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, TypeAlias

from ...errors import CacheUnavailableError
from ...keys.layout import generation_key, generation_keys
from ...keys.slots import colocated, lock_in_slot, slot_of
from ...storage.stamps import fill_token, guarded_stamp, split_token, stamp, unstamp, unstamp_all
from ..base import Lock, Read

__all__ = [
    "DRAW_SCRIPT",
    "DRAW_SHA",
    "FILL_SCRIPT",
    "FILL_SHA",
    "GUARDED_SET_SCRIPT",
    "RELEASE_SCRIPT",
    "SCAN_COUNT",
    "SET_SCRIPT",
    "SET_SHA",
    "STAGED_FILL_SCRIPT",
    "STAGED_FILL_SHA",
    "STAGE_ABOVE",
    "Command",
    "abatches_of",
    "batches_of",
    "cluster_fill_call",
    "cluster_many_plan",
    "cluster_many_result",
    "cluster_read_batches",
    "cluster_read_plan",
    "cluster_read_result",
    "cluster_set_batches",
    "cluster_set_command",
    "escape_glob",
    "expiry_ms",
    "fill_call",
    "many_command",
    "many_result",
    "read_commands",
    "read_result",
    "staged_fill_call",
    "ttl_seconds",
    "unavailable",
]

Command: TypeAlias = tuple[Any, ...]
SCAN_COUNT = 1000  # keys per SCAN step, and per UNLINK of what it found

# Store only if the guard (KEYS[2]) and the generation (KEYS[3]) still hold the token read before computing,
# ``<guard>/<generation>`` with absent counters empty. With a stampede lock (KEYS[4], owner ARGV[4]), also only
# while the lock is still ours; then release it. The value comes stamped with the token's generation.
FILL_SCRIPT = """
local now = (redis.call('GET', KEYS[2]) or '') .. '/' .. (redis.call('GET', KEYS[3]) or '')
if now ~= ARGV[2] then return 0 end
if KEYS[4] and redis.call('GET', KEYS[4]) ~= ARGV[4] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
if KEYS[4] then redis.call('DEL', KEYS[4]) end
return 1
"""
FILL_SHA = hashlib.sha1(FILL_SCRIPT.encode()).hexdigest()  # what EVALSHA names it (not for security)
# FILL_SCRIPT with the value kept out of the script, so its cost is flat in the value's size: the value is SET
# first under a staging key (KEYS[4]), in the same write; the script checks as FILL_SCRIPT does, then RENAMEs it
# onto the entry (its TTL goes with it) or drops it. A staging key a flush or eviction took is simply no store.
STAGED_FILL_SCRIPT = """
local now = (redis.call('GET', KEYS[2]) or '') .. '/' .. (redis.call('GET', KEYS[3]) or '')
if now ~= ARGV[1] or (KEYS[5] and redis.call('GET', KEYS[5]) ~= ARGV[2]) then
  redis.call('DEL', KEYS[4])
  return 0
end
local moved = redis.pcall('RENAME', KEYS[4], KEYS[1])
if type(moved) == 'table' and moved.err then
  if string.find(moved.err, 'no such key', 1, true) then return 0 end
  redis.call('DEL', KEYS[4])
  if string.find(moved.err, "can't run this command", 1, true) or string.find(moved.err, 'NOPERM', 1, true) then
    return redis.error_reply('NOPERM RENAME refused: ' .. moved.err)  -- an ACL from before it was needed
  end
  return redis.error_reply(moved.err)
end
if KEYS[5] then redis.call('DEL', KEYS[5]) end
return 1
"""
STAGED_FILL_SHA = hashlib.sha1(STAGED_FILL_SCRIPT.encode()).hexdigest()
STAGE_ABOVE = 1024
"""Bytes above which a fill stages its value (STAGED_FILL_SCRIPT). Up to this, the value inside FILL_SCRIPT costs
Redis what staging it does (10 µs at 300 B either way; 16 µs against 11 at 2 KB, 2 ms against 19 µs at 1 MB), and
writes one key instead of two: a local tier's tracking connection, in every process, hears one invalidation of
the fill rather than three (the staging SET, and both names of the RENAME)."""
# A plain write, stamped with the namespace's generation (KEYS[2]) as it is when the write lands.
SET_SCRIPT = """
local generation = redis.call('GET', KEYS[2])
local value = ARGV[1]
if generation or string.byte(value, 1) == 0 then value = '\\0' .. (generation or '') .. '\\0' .. value end
if ARGV[2] == '' then redis.call('SET', KEYS[1], value) else redis.call('SET', KEYS[1], value, 'PX', ARGV[2]) end
return 1
"""
SET_SHA = hashlib.sha1(SET_SCRIPT.encode()).hexdigest()
DRAW_SCRIPT = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
DRAW_SHA = hashlib.sha1(DRAW_SCRIPT.encode()).hexdigest()
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Cluster's FILL_SCRIPT: the guard is colocated with the entry (KEYS[2], one slot), and the generation, which may
# live on another node, is not checked here but stamped in the value.
GUARDED_SET_SCRIPT = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then return 0 end
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[4] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
if KEYS[3] then redis.call('DEL', KEYS[3]) end
return 1
"""
_GLOB_SPECIALS = str.maketrans({c: "\\" + c for c in "*?[]\\"})
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")


def escape_glob(text: str) -> str:
    """``text`` as a literal for ``SCAN MATCH``: every glob character is backslash-escaped."""
    return text.translate(_GLOB_SPECIALS)


def unavailable(operation: str, exc: BaseException) -> CacheUnavailableError:
    """The error a backend raises for a failed ``operation``, naming it and redis-py's reason."""
    # redis-py's messages name host and port, not credentials; should one ever quote a URL, drop its userinfo.
    detail = _USERINFO.sub("***@", str(exc))
    return CacheUnavailableError(f"redis {operation} failed: {type(exc).__name__}: {detail}")


def expiry_ms(ttl: float) -> int:
    """``ttl`` seconds as ``PX`` milliseconds, rounded up (at least 1)."""
    if not 0 < ttl < math.inf:  # also refuses NaN
        raise ValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


async def abatches_of(keys: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The asyncio twin of ``batches_of``: scanned keys in lists of up to ``SCAN_COUNT``, to ``UNLINK``."""
    batch: list[bytes] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            yield batch
            batch = []
    if batch:
        yield batch


def batches_of(keys: Iterable[bytes]) -> Iterable[list[bytes]]:
    """Scanned keys in lists of up to ``SCAN_COUNT``, to ``UNLINK``."""
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            yield batch
            batch = []
    if batch:
        yield batch


# -- one server (or the primary Sentinel names) ------------------------------------------------------------------------


def read_commands(
    key: str, guard: str | None, with_ttl: bool, extra: Sequence[str] = ()
) -> tuple[tuple[str, ...], ...]:
    """``read`` in one round trip: the entry with its generation and guard (``MGET``, then the ``extra`` keys:
    ``read_with``), then maybe ``PTTL``."""
    first = ("MGET", key, generation_key(key)) if guard is None else ("MGET", key, generation_key(key), guard)
    if extra:
        first = (*first, *extra)
    return (first, ("PTTL", key)) if with_ttl else (first,)


def read_result(replies: list[Any], guard: str | None, with_ttl: bool) -> Read:
    """The value, the fill token and maybe the TTL left, from the replies to ``read_commands``."""
    values = replies[0]
    generation = values[1]
    value = unstamp(values[0], generation)
    return (
        value,
        fill_token(None if guard is None else values[2], generation),
        ttl_seconds(value, replies[1]) if with_ttl else None,
    )


def many_command(keys: Sequence[str]) -> tuple[tuple[str, ...], list[str] | str]:
    """One ``MGET`` of ``keys`` and the generations of their namespaces (usually one); see ``generation_keys``."""
    generations = generation_keys(keys)
    if isinstance(generations, str):
        return ("MGET", *keys, generations), generations
    return ("MGET", *keys, *dict.fromkeys(generations)), generations


def many_result(keys: Sequence[str], replies: list[bytes | None], generations: list[str] | str) -> list[bytes | None]:
    """The values of ``keys`` (``None`` where absent or retired), from the reply to ``many_command``."""
    if isinstance(generations, str):
        return unstamp_all(replies[: len(keys)], replies[-1])
    current = dict(zip(dict.fromkeys(generations), replies[len(keys) :], strict=True))
    return [unstamp(raw, current[generation]) for raw, generation in zip(replies, generations, strict=False)]


def ttl_seconds(value: bytes | None, pttl: int) -> float | None:
    """PTTL in seconds: -1 means "no expiry" and -2 "absent", both ``None``."""
    return None if value is None or pttl < 0 else pttl / 1000


def fill_call(
    key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock
) -> tuple[list[str], list[bytes | int | str]]:
    """KEYS and ARGV of FILL_SCRIPT: the value stamped with the generation its computation started in."""
    generation = split_token(token)[1]
    arguments: list[bytes | int | str] = [
        stamp(value, generation),
        token or b"/",
        "" if ttl is None else expiry_ms(ttl),
    ]
    keys = [key, guard, generation_key(key)]
    if lock is None:
        return keys, arguments
    return [*keys, lock[0]], [*arguments, lock[1]]


def staged_fill_call(
    key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock
) -> tuple[tuple[Any, ...], list[str], list[bytes | int | str]]:
    """The staging ``SET``, and KEYS and ARGV of STAGED_FILL_SCRIPT: :func:`fill_call`'s store, the value outside."""
    keys, (stamped, checked, expiry, *owner) = fill_call(key, value, ttl, guard, token, lock)
    staging = f"{key.partition(':')[0]}::fill:{os.urandom(8).hex()}"  # outside every namespace: no flush scans it
    first: tuple[Any, ...] = ("SET", staging, stamped) if expiry == "" else ("SET", staging, stamped, "PX", expiry)
    return first, [*keys[:3], staging, *keys[3:]], [checked, *owner]


# -- Cluster -----------------------------------------------------------------------------------------------------------


def cluster_read_plan(key: str, guard: str | None, with_ttl: bool) -> list[Command]:
    """``read``: the entry (with its colocated guard) and maybe its ``PTTL``, then its namespace's generation."""
    first: Command = ("GET", key) if guard is None else ("MGET", key, colocated(guard, key))
    return [first, *([("PTTL", key)] if with_ttl else []), ("GET", generation_key(key))]


def cluster_read_batches(
    key: str, guard: str | None, with_ttl: bool, extra: Sequence[str] = ()
) -> tuple[tuple[int, list[Command]], ...]:
    """``cluster_read_plan`` by slot, then a ``GET`` of each of the ``extra`` keys (``read_with``): one round trip,
    each primary sent its share."""
    commands = cluster_read_plan(key, guard, with_ttl)
    entry, generation = (slot_of(key), commands[:-1]), (slot_of(commands[-1][1]), commands[-1:])
    if not extra:
        return entry, generation
    return entry, generation, *((slot_of(other), [("GET", other)]) for other in extra)


def cluster_read_result(replies: list[Any], guard: str | None, with_ttl: bool) -> Read:
    """The value, the fill token and maybe the TTL left, from the replies to ``cluster_read_plan``."""
    raw, guard_value = (replies[0], None) if guard is None else replies[0]
    value = unstamp(raw, replies[-1])
    return value, fill_token(guard_value, replies[-1]), ttl_seconds(value, replies[1]) if with_ttl else None


def cluster_many_plan(keys: Sequence[str]) -> tuple[list[Command], list[list[int]], list[str]]:
    """An ``MGET`` per slot (positions of its keys kept), then a ``GET`` per namespace generation."""
    by_slot: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_slot.setdefault(slot_of(key), []).append(index)
    groups = list(by_slot.values())
    shared = generation_keys(keys)
    per_key = [shared] * len(keys) if isinstance(shared, str) else shared
    commands: list[Command] = [("MGET", *(keys[i] for i in group)) for group in groups]
    return commands + [("GET", name) for name in dict.fromkeys(per_key)], groups, per_key


def cluster_many_result(
    keys: Sequence[str], replies: list[Any], groups: list[list[int]], per_key: list[str]
) -> list[bytes | None]:
    """The values of ``keys`` in their order, from the replies to ``cluster_many_plan``."""
    current = dict(zip(dict.fromkeys(per_key), replies[len(groups) :], strict=True))
    found: list[bytes | None] = [None] * len(keys)
    for group, values in zip(groups, replies, strict=False):
        for index, raw in zip(group, values, strict=True):
            found[index] = unstamp(raw, current[per_key[index]])
    return found


def cluster_fill_call(
    key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock, guarded: bool = False
) -> tuple[list[str], list[bytes | int | str]]:
    """KEYS and ARGV of GUARDED_SET_SCRIPT, all in the entry's slot; the value stamped with the token's generation
    (``guarded``, reading from replicas: and with its guard, which the script stores under only while it holds)."""
    guard_value, generation = split_token(token)
    keys = [key, colocated(guard, key)]
    stamped = guarded_stamp(value, generation, guard_value) if guarded else stamp(value, generation)
    arguments: list[bytes | int | str] = [stamped, guard_value, "" if ttl is None else expiry_ms(ttl)]
    if lock is None:
        return keys, arguments
    return [*keys, lock_in_slot(lock[0])], [*arguments, lock[1]]


def cluster_set_batches(
    key: str, value: bytes, ttl: float | None, where: str, generation: bytes | None
) -> tuple[tuple[int, list[Command]], ...]:
    """The ``SET`` of ``value`` stamped with ``generation``, and a ``GET`` of its key ``where`` (in its slot)."""
    return (slot_of(key), [cluster_set_command(key, value, ttl, generation)]), (slot_of(where), [("GET", where)])


def cluster_set_command(key: str, value: bytes, ttl: float | None, generation: bytes | None) -> Command:
    """A plain ``SET`` of ``value`` stamped with ``generation`` (read just before: the two nodes may differ)."""
    stamped = stamp(value, generation)
    return ("SET", key, stamped) if ttl is None else ("SET", key, stamped, "PX", expiry_ms(ttl))
