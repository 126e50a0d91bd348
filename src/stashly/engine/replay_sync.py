# Generated from engine/replay_async.py by scripts/unasync.py.
# Edit the source, then run `make unasync`.
"""Replaying the journal: the invalidations the backend could not take, delivered oldest first.

Every pending invalidation deletes or replaces a key (an entry, a tag's token, a namespace's generation), so
they commute: one that cannot be delivered does not hold back the others. On Redis Cluster a node that refuses
(its breaker open, its connection lost) keeps its own invalidations pending for the next pass while the other
nodes' are delivered; a refusal by the backend as a whole ends the pass, the rest would be refused too. A read
never waits for another key's invalidation: what is pending for a key keeps only that key's reads off the
backend (:meth:`~.journal.Journal.blocks`).

Written once, for asyncio; ``replay_sync.py`` is generated from it by ``scripts/unasync.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import keys
from ..backends.base import Backend
from ..errors import CacheUnavailableError
from ..tags import core as tags
from .journal import Journal, Pending

__all__ = ["new_tag_epoch", "replay"]


def replay(journal: Journal, backend: Backend, prefix: str) -> tuple[int, CacheUnavailableError | None]:
    """How many pending invalidations reached ``backend`` in one pass, and the first refusal (``(0, None)`` when
    another thread or task is replaying)."""
    if not journal.try_replaying():
        return 0, None
    node_of: Callable[[str], str | None] | None = getattr(backend, "node_of", None)
    refused: set[str] = set()  # nodes that refused in this pass: their other invalidations wait for the next
    delivered, failure = 0, None
    try:
        for pending in journal.snapshot():
            if refused and node_of is not None and node_of(pending.target) in refused:
                continue
            try:
                _deliver(backend, pending, prefix)
            except CacheUnavailableError as exc:
                failure = failure or exc
                if exc.node is None:
                    break
                refused.add(exc.node)
                continue
            journal.delivered(pending)
            delivered += 1
    finally:
        journal.done()
    return delivered, failure


def _deliver(backend: Backend, pending: Pending, prefix: str) -> None:
    if pending.kind == "key":
        backend.delete(pending.target, pending.guard)
    elif pending.kind == "tag":
        new_tag_epoch(backend, prefix)
        backend.delete(pending.target)
    elif pending.kind == "scan":
        backend.delete_prefix(pending.target, pending.guard)
    else:
        backend.retire_prefix(pending.target, pending.guard)


def new_tag_epoch(backend: Backend, prefix: str) -> None:
    """Replace the tag epoch, before a tag's token is dropped: a fill reading it afterwards sees it changed."""
    backend.set(keys.tags_epoch_key(prefix), tags.new_token(), tags.TAG_TTL)
