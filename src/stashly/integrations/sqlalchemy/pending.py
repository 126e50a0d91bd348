"""One session's invalidations waiting for its commit: a frame per transaction level, so savepoints count.

A write adds its tags to the frame of the innermost open transaction (the root, or the savepoint it runs in)
and marks them uncommitted in the writing context (read-your-writes). Releasing a savepoint merges its frame
into the enclosing one; rolling it back drops the frame (its rows are restored); committing the root hands
every tag over to be invalidated; any other end of the root (rollback, close) drops them all. The marks are
released when the root ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, SessionTransaction

from ...tags import uncommitted

if TYPE_CHECKING:
    from ...manager import CacheManager

__all__ = ["Pending", "pending_of"]

_INFO_KEY = "stashly.pending_invalidations"

Groups = dict["CacheManager", set[str]]


class Pending:
    """The tags one session wrote, by transaction level and cache manager."""

    __slots__ = ("_frames", "_marks", "before")

    def __init__(self) -> None:
        self._frames: dict[SessionTransaction, Groups] = {}
        self._marks: list[uncommitted.Mark] = []
        self.before: Groups = {}
        """Tags of rows as they were, read in ``before_flush`` and added once the flush succeeded."""

    def add(self, session: Session, manager: CacheManager, tags: Iterable[str]) -> None:
        """File ``tags`` under the innermost open transaction of ``session``, and mark them uncommitted here."""
        tags = set(tags)
        if not tags:
            return
        transaction = session.get_nested_transaction() or session.get_transaction()
        if transaction is None:  # a write always runs in a transaction; nothing to wait for otherwise
            return
        self._frames.setdefault(transaction, {}).setdefault(manager, set()).update(tags)
        self._marks.append(uncommitted.add(tags))

    def add_groups(self, session: Session, groups: Groups) -> None:
        """:meth:`add` each manager's tags of ``groups``."""
        for manager, tags in groups.items():
            self.add(session, manager, tags)

    def add_before(self, session: Session) -> None:
        """File the tags :attr:`before` collected (the flush that read them has succeeded)."""
        before, self.before = self.before, {}
        self.add_groups(session, before)

    def savepoint_released(self, transaction: SessionTransaction) -> None:
        """``transaction`` (a savepoint) was released: its writes now belong to the enclosing level."""
        frame = self._frames.pop(transaction, None)
        if frame is None:
            return
        enclosing = _enclosing(transaction)
        if enclosing is None:
            return
        target = self._frames.setdefault(enclosing, {})
        for manager, tags in frame.items():
            target.setdefault(manager, set()).update(tags)

    def savepoint_ended(self, transaction: SessionTransaction) -> None:
        """``transaction`` (a savepoint) ended without being released: rolled back, its rows restored."""
        self._frames.pop(transaction, None)

    def committed(self) -> Groups:
        """The root committed: every tag written, by manager (and nothing pending any more)."""
        groups: Groups = {}
        for frame in self._frames.values():
            for manager, tags in frame.items():
                groups.setdefault(manager, set()).update(tags)
        self.ended()
        return groups

    def ended(self) -> None:
        """The root ended: drop what is left (a rollback, or a commit already handed over) and release the marks."""
        self._frames.clear()
        self.before = {}
        marks, self._marks = self._marks, []
        for mark in marks:
            mark.release()


def pending_of(session: Session, create: bool = True) -> Pending | None:
    """The :class:`Pending` of ``session`` (kept in ``session.info``), made on first use when ``create``."""
    pending = session.info.get(_INFO_KEY)
    if pending is None and create:
        pending = session.info[_INFO_KEY] = Pending()
    return pending


def _enclosing(transaction: SessionTransaction) -> SessionTransaction | None:
    parent = transaction.parent
    while parent is not None and not parent.nested and parent.parent is not None:
        parent = parent.parent
    return parent
