"""The pending-invalidation journal: invalidations the backend could not take, kept until it can.

A ``remove``, ``invalidate``, ``flush_namespace`` or ``set`` that fails for a backend reason (a timeout, a lost
connection, the circuit breaker open, a failover in progress) is recorded here instead of being forgotten, and
replayed, oldest first, as soon as the backend answers again. Until then this process's reads of an affected key
or namespace bypass the shared entry (they compute fresh and store nothing), so the process that invalidated never
sees its own stale value.

The journal is deduplicated (a later invalidation of a key replaces the earlier one; a namespace flush subsumes the
namespace's pending keys) and bounded: past ``limit`` entries, the namespace with the most pending keys is
escalated to one versioned flush, never silently dropped. A forked child starts with an empty journal (the parent
still replays its own). Thread-safe; the hit path reads one attribute (:attr:`Journal.active`) when it is empty.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import Literal, NamedTuple, TypeAlias

from .. import keys

__all__ = ["Journal", "Kind", "Pending"]

Kind: TypeAlias = Literal["key", "scan", "versioned", "tag"]
"""What to replay: drop one key, remove a namespace's keys, retire a namespace's generation, or drop a tag's token."""

LIMIT = 10_000
"""Pending entries kept before the namespace with the most pending keys is escalated to one versioned flush."""


class Pending(NamedTuple):
    """One invalidation to replay: ``target`` is the entry key (``kind == "key"``) or the namespace's head."""

    kind: Kind
    target: str
    guard: str


class Journal:
    """The pending invalidations of one manager, shared by its sync and async engines."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.active: bool = False
        """Whether anything is pending: the only thing a read looks at while the journal is empty."""
        self.replayed: int = 0
        self.escalated: int = 0
        self.dropped: int = 0
        self._lock = threading.Lock()
        self._replaying = threading.Lock()  # one replay at a time, across threads and tasks
        self._entries: OrderedDict[str, Pending] = OrderedDict()  # target -> pending, oldest first
        self._heads: dict[str, int] = {}  # namespace head -> pending key entries under it
        _journals.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def record_key(self, key: str, guard: str) -> None:
        """Keep ``key``'s invalidation (it moves to the end if it was pending already)."""
        head = keys.head_of(key)
        with self._lock:
            if head in self._entries:  # the whole namespace is to be flushed first: that covers the key
                return
            if self._entries.pop(key, None) is None:
                self._heads[head] = self._heads.get(head, 0) + 1
            self._entries[key] = Pending("key", key, guard)
            if len(self._entries) > self.limit:
                self._escalate()
            self.active = True

    def record_namespace(self, head: str, guard: str, mode: Literal["scan", "versioned"]) -> None:
        """Keep a namespace flush; it replaces the namespace's pending keys and any earlier flush of it."""
        with self._lock:
            self._subsume(head)
            self._entries.pop(head, None)
            self._entries[head] = Pending(mode, head, guard)
            self.active = True

    def record_tag(self, tag_key: str) -> None:
        """Keep a tag's invalidation (its token to drop). Tags are few and never escalated: a tag's invalidation
        already covers all its entries in one key."""
        with self._lock:
            self._entries.pop(tag_key, None)
            self._entries[tag_key] = Pending("tag", tag_key, "")
            self.active = True

    def blocks(self, key: str) -> bool:
        """Whether a read of ``key`` must bypass the shared entry: it, or its namespace, is pending."""
        entries = self._entries
        return key in entries or keys.head_of(key) in entries

    def snapshot(self) -> list[Pending]:
        """The pending invalidations, oldest first."""
        with self._lock:
            return list(self._entries.values())

    def delivered(self, pending: Pending) -> None:
        """``pending`` reached the backend: forget it, unless a newer invalidation of its target replaced it."""
        with self._lock:
            if self._entries.get(pending.target) is not pending:
                return
            del self._entries[pending.target]
            if pending.kind == "key":
                self._forget_key(pending.target)
            self.replayed += 1
            self.active = bool(self._entries)

    def try_replaying(self) -> bool:
        """Become the one replayer (``False``: another thread or task is replaying); call :meth:`done` after."""
        return self._replaying.acquire(blocking=False)

    def done(self) -> None:
        self._replaying.release()

    def clear(self) -> list[Pending]:
        """Forget everything (a process that gives up at exit); what was still pending."""
        with self._lock:
            left = list(self._entries.values())
            self._entries.clear()
            self._heads.clear()
            self.dropped += len(left)
            self.active = False
            return left

    def _subsume(self, head: str) -> None:
        if not self._heads.pop(head, 0):
            return
        for target in [t for t, p in self._entries.items() if p.kind == "key" and t.startswith(head)]:
            del self._entries[target]

    def _forget_key(self, key: str) -> None:
        head = keys.head_of(key)
        left = self._heads.get(head, 0) - 1
        if left > 0:
            self._heads[head] = left
        else:
            self._heads.pop(head, None)

    def _escalate(self) -> None:
        """Over the limit: the namespace with the most pending keys becomes one versioned flush."""
        if not self._heads:
            return  # only tags and flushes pending: nothing to fold
        head = max(self._heads, key=self._heads.__getitem__)
        guard = next(p.guard for p in self._entries.values() if p.kind == "key" and p.target.startswith(head))
        self._subsume(head)
        self._entries[head] = Pending("versioned", head, guard)
        self.escalated += 1

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._replaying = threading.Lock()
        self._entries.clear()
        self._heads.clear()
        self.active = False


_journals: weakref.WeakSet[Journal] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for journal in list(_journals):
        journal._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
