"""Redis Cluster placement of keys: the slot a key hashes to, and the hash tag that puts a guard or lock beside it.

Multi-key commands and scripts need all their keys in one slot; the entry decides the slot, and its guard and lock
follow it through a hash tag right after the prefix: ``stashly::{3a7}guard:auth``. The prefix holds no brace (the
Cluster backend checks), so that tag is the key's first one and the one Redis hashes.
"""

from __future__ import annotations

import functools
from binascii import crc_hqx

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .layout import locked_key

__all__ = ["colocated", "lock_in_slot", "slot_of"]


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
    """``name`` (a guard or lock key, ``<prefix>::<rest>``) placed in the Cluster slot of ``key``:
    ``stashly::{3a7}guard:auth``."""
    prefix, _, rest = name.partition("::")
    return f"{prefix}::{{{_slot_tags()[slot_of(key)]}}}{rest}"


def lock_in_slot(lock: str) -> str:
    """A stampede lock (``<prefix>::lock:<entry key>``) in the slot of its entry."""
    return colocated(lock, locked_key(lock))
