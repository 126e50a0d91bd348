"""Read-your-writes: the tags a transaction in this context has written but not yet committed.

An integration (``stashly.integrations.sqlalchemy``) marks a tag here when a flush writes a tagged row and
releases the mark when the transaction ends. While a tag is marked, a cache read in the same context treats
every entry filed under it as a miss and stores nothing under it: the transaction must see its own writes, and
a value computed from uncommitted rows must never reach the shared cache (a rollback would leave it there).

The marks live in an object held by a :class:`contextvars.ContextVar`: they follow the thread or task that
flushed (and the contexts copied from it afterwards), and a release made from another context still clears
them. Reading when nothing is marked costs one ``ContextVar.get``.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from contextvars import ContextVar

__all__ = ["MARKS", "Mark", "add", "current"]

_NOTHING: frozenset[str] = frozenset()


class _Marks:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # tag -> how many unreleased marks hold it


_CONTEXT: ContextVar[_Marks | None] = ContextVar("stashly_uncommitted_tags", default=None)
MARKS = _CONTEXT
"""``MARKS.get() is None`` when no tag was ever marked in this context: a hit's test, without :func:`current`'s call."""


class Mark:
    """The tags one :func:`add` marked; :meth:`release` unmarks them (once; later calls do nothing)."""

    __slots__ = ("_marks", "_tags")

    def __init__(self, marks: _Marks, tags: frozenset[str]) -> None:
        self._marks: _Marks | None = marks
        self._tags = tags

    def release(self) -> None:
        """Unmark the tags (a tag another open mark holds stays marked)."""
        marks, self._marks = self._marks, None
        if marks is None:
            return
        counts = marks.counts
        for tag in self._tags:
            left = counts[tag] - 1
            if left:
                counts[tag] = left
            else:
                del counts[tag]


def current() -> Set[str]:
    """The tags written but not committed in this context (empty almost always)."""
    marks = _CONTEXT.get()
    return _NOTHING if marks is None else marks.counts.keys()


def add(tags: Iterable[str]) -> Mark:
    """Mark ``tags`` uncommitted in this context until the returned :class:`Mark` is released."""
    marks = _CONTEXT.get()
    if marks is None:
        marks = _Marks()
        _CONTEXT.set(marks)
    marked = frozenset(tags)
    counts = marks.counts
    for tag in marked:
        counts[tag] = counts.get(tag, 0) + 1
    return Mark(marks, marked)
