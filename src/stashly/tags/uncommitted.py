"""Read-your-writes: the tags a transaction in this context has written but not yet committed.

An integration (``stashly.integrations.sqlalchemy``) adds a tag here when a unit of work writes a tagged row and
removes it when the transaction ends. While a tag is here, a cache read in the same context treats every entry
filed under it as a miss and stores nothing under it: the transaction must see its own writes, and a value
computed from uncommitted rows must never reach the shared cache (a rollback would leave it there).

The state is a :class:`contextvars.ContextVar`, so it follows the request (thread or task) that holds the
transaction and nothing else. Reading it when empty costs one ``ContextVar.get``.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar, Token

__all__ = ["add", "current", "reset"]

_UNCOMMITTED: ContextVar[frozenset[str]] = ContextVar("stashly_uncommitted_tags", default=frozenset())


def current() -> frozenset[str]:
    """The tags written but not committed in this context (empty almost always)."""
    return _UNCOMMITTED.get()


def add(tags: Iterable[str]) -> Token[frozenset[str]]:
    """Mark ``tags`` uncommitted in this context; returns the token that :func:`reset` takes."""
    return _UNCOMMITTED.set(_UNCOMMITTED.get() | frozenset(tags))


def reset(token: Token[frozenset[str]]) -> None:
    """Undo the :func:`add` that returned ``token`` (in the context that made it)."""
    _UNCOMMITTED.reset(token)
