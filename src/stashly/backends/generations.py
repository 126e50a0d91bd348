"""Namespace generations and Cluster slot placement: the pure parts shared by the Redis backends.

A namespace has a *generation*: a counter under ``<prefix>::gen:<namespace>``, absent until the first versioned
flush. Every entry is stamped with the generation it was written in, and it is only read back while that is still
the namespace's generation. Bumping the counter (``flush_namespace(mode="versioned")``) so makes every entry of the
namespace unreachable in one ``INCR``, whatever its size; the old entries are reclaimed by their TTLs.

An entry of generation "none" (the counter absent) is stored as is, so a namespace never flushed that way keeps the
plain envelope any client can read. Later generations prefix the envelope with ``\\0<generation>\\0`` (as does
generation "none" for the rare value that itself starts with a NUL byte: neither of stashly's formats does).

The fill's token carries both counters a computation must not have missed: ``<guard>/<generation>``.
"""

from __future__ import annotations

import functools
from binascii import crc_hqx
from collections.abc import Sequence
from itertools import repeat
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = [
    "colocated",
    "fill_token",
    "generation_key",
    "generation_keys",
    "parse_stamp",
    "retired_head",
    "slot_of",
    "split_token",
    "stamp",
    "unstamp",
    "unstamp_all",
]

_MARK: Final = b"\x00"


def generation_key(key: str) -> str:
    """The generation counter of the namespace ``key`` belongs to (an entry key or a namespace's head).

    >>> generation_key("stashly:auth:user:1")
    'stashly::gen:auth'
    """
    prefix, _, rest = key.partition(":")
    return f"{prefix}::gen:{rest.partition(':')[0]}"


def generation_keys(keys: Sequence[str]) -> list[str] | str:
    """:func:`generation_key` of each key, or the one they all share (the usual batch: one namespace), found
    with one string test per key."""
    first = keys[0]
    end = first.find(":", first.find(":") + 1)
    head = first[: end + 1] if end > 0 else None
    if head is not None and all(map(str.startswith, keys, repeat(head))):
        return generation_key(first)
    return [generation_key(key) for key in keys]


def unstamp_all(raws: Sequence[bytes | None], generation: bytes | None) -> list[bytes | None]:
    """:func:`unstamp` of many entries of one generation; entries never stamped cost one test each."""
    if generation is None:
        present = [raw for raw in raws if raw]
        if not any(map(bytes.startswith, present, repeat(_MARK))):
            return list(raws)
        return [unstamp(raw, None) for raw in raws]
    return [unstamp(raw, generation) for raw in raws]


def retired_head(key: str) -> str | None:
    """For a generation counter, the head of its namespace's keys (they all just became unreachable).

    >>> retired_head("stashly::gen:auth")
    'stashly:auth:'
    """
    prefix, found, namespace = key.partition("::gen:")
    return f"{prefix}:{namespace}:" if found and ":" not in prefix else None


def stamp(payload: bytes, generation: bytes | None) -> bytes:
    """What to store for ``payload`` written in ``generation`` (``None``: the counter is absent)."""
    if generation is None and not payload.startswith(_MARK):
        return payload
    return _MARK + (generation or b"") + _MARK + payload


def unstamp(raw: bytes | None, generation: bytes | None) -> bytes | None:
    """The payload of a stored entry if it belongs to the current ``generation``, else ``None`` (a miss)."""
    if raw is None or not raw.startswith(_MARK):
        return raw if generation is None else None
    end = raw.find(_MARK, 1)
    return raw[end + 1 :] if end > 0 and raw[1:end] == (generation or b"") else None


def parse_stamp(raw: bytes) -> tuple[bytes | None, bytes]:
    """``(generation, payload)`` of stored bytes, for inspection (``None``: generation "none")."""
    end = raw.find(_MARK, 1) if raw.startswith(_MARK) else -1
    return (raw[1:end] or None, raw[end + 1 :]) if end > 0 else (None, raw)


def fill_token(guard: bytes | None, generation: bytes | None) -> bytes:
    """The token a fill presents: both counters as read before computing (absent ones as empty)."""
    return (guard or b"") + b"/" + (generation or b"")


def split_token(value: bytes | None) -> tuple[bytes, bytes | None]:
    """``(guard, generation)`` of a token; a token from before generations is all guard."""
    guard, slash, generation = (value or b"").rpartition(b"/")
    if not slash:
        return generation, None
    return guard, generation or None


@functools.lru_cache(maxsize=4096)
def slot_of(key: str) -> int:
    """The Cluster slot of ``key`` (remembered for the keys read most)."""
    return key_slot(key.encode("utf-8", "surrogatepass"))


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For every Cluster slot, a short hash tag that maps to it (built once, in about 0.1 s)."""
    tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    missing, number = REDIS_CLUSTER_HASH_SLOTS, 0
    while missing:
        tag = format(number, "x")
        slot = crc_hqx(tag.encode(), 0) % REDIS_CLUSTER_HASH_SLOTS  # Redis's slot of a key without braces
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        number += 1
    return tuple(tag for tag in tags if tag is not None)


def colocated(name: str, key: str) -> str:
    """``name`` (a guard or lock key, ``<prefix>::<rest>``) placed in the Cluster slot of ``key``.

    Multi-key commands and scripts need all their keys in one slot; the entry decides the slot, and its guard and
    lock follow it through a hash tag right after the prefix: ``stashly::{3a7}guard:auth``. The prefix holds no
    brace (the Cluster backend checks), so that tag is the key's first one and the one Redis hashes.
    """
    prefix, _, rest = name.partition("::")
    return f"{prefix}::{{{_slot_tags()[slot_of(key)]}}}{rest}"
