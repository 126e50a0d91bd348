"""``invalidate_on_commit``: the session events that turn ORM writes into tag invalidations after the commit.

One set of listeners per session target (a ``sessionmaker``, a ``Session`` class or instance), shared by every
rule registered on it. The flow, per session:

- ``before_flush`` reads the tags of changed and deleted rows as they were (old values);
- ``after_flush`` adds them and the tags of new, changed and deleted rows as they are now (new values);
- ``do_orm_execute`` does the same for bulk ``insert()``/``update()``/``delete()`` (:mod:`.bulk`);
- ``after_commit`` of the root transaction invalidates every tag written (a savepoint's release merges it into
  the enclosing level); ``after_transaction_end`` drops what a rollback, a rolled-back savepoint or a close
  left, without invalidating anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio.session import AsyncSession, async_sessionmaker
from sqlalchemy.orm.scoping import scoped_session
from sqlalchemy.orm.session import ORMExecuteState, Session, SessionTransaction, sessionmaker
from sqlalchemy.util import concurrency

from ...errors import StashlyError
from ...manager import CacheManager, default_manager
from .bulk import Statement
from .pending import Groups, pending_of
from .rules import Before, Columns, Rule, TagsOf, make_rule

__all__ = ["UntrackedWriteError", "Watch", "invalidate_on_commit"]

_log = logging.getLogger("stashly.sqlalchemy")
_await: Callable[[Any], Any] = getattr(concurrency, "await_", None) or concurrency.await_only


class UntrackedWriteError(StashlyError, RuntimeError):
    """A bulk statement writes rows of a watched model that cannot be read, and its rule has no ``model_tag``.

    Raised before the statement runs. Give the rule a ``model_tag`` (and file the entries that depend on the
    model under it), or write the rows through the ORM or with parameter sets that carry what the tags need.
    """


class Watch:
    """What :func:`invalidate_on_commit` registered; :meth:`remove` stops it (the listeners go with the last)."""

    __slots__ = ("_hooks", "rule")

    def __init__(self, hooks: _Hooks, rule: Rule) -> None:
        self._hooks = hooks
        self.rule: Rule = rule
        """What this watch applies: the model, its tags, its manager."""

    def remove(self) -> None:
        """Stop invalidating for this rule (writes already pending are still invalidated at their commit)."""
        self._hooks.drop(self.rule)


def invalidate_on_commit(
    model: type[Any],
    *,
    tags: TagsOf,
    model_tag: str | None = None,
    manager: CacheManager | None = None,
    sessions: object = Session,
) -> Watch:
    """After each commit that wrote rows of ``model``, invalidate their tags (never before, nothing on rollback).

    ``tags`` is a template over the row's attributes, several, or a callable of the row. An update invalidates
    the row's tags as they were and as they are; inserts, deletes and bulk statements are seen too.
    ``model_tag``, when given, is invalidated by every write of the model: file entries that depend on many of
    its rows (a list, a count) under it. ``sessions`` scopes the rule: a ``sessionmaker`` or
    ``async_sessionmaker``, a session class or one session; every session of the process by default.

    Until the transaction ends, cached reads in the context (thread or task) that wrote a tag bypass the cache
    for it: the transaction sees its own writes, and nothing computed from uncommitted rows is stored.

    >>> from sqlalchemy import Integer
    >>> from sqlalchemy.orm import DeclarativeBase, mapped_column, sessionmaker
    >>> class Base(DeclarativeBase): pass
    >>> class User(Base):
    ...     __tablename__ = "users"
    ...     id = mapped_column(Integer, primary_key=True)
    >>> cm = CacheManager("memory://")
    >>> Sessions = sessionmaker()
    >>> watch = invalidate_on_commit(User, tags="user:{id}", manager=cm, sessions=Sessions)
    >>> watch.remove()
    """
    rule = make_rule(model, tags, model_tag, manager or default_manager())
    target = _target(sessions)
    with _registry_lock:
        hooks = _registry.get(target)
        if hooks is None:
            hooks = _registry[target] = _Hooks(target)
        hooks.rules.append(rule)
    return Watch(hooks, rule)


_registry: dict[object, _Hooks] = {}
_registry_lock = threading.Lock()


def _target(sessions: object) -> object:
    """What the session events listen on for ``sessions`` (a ``TypeError`` for anything else)."""
    if isinstance(sessions, scoped_session):
        return _target(sessions.session_factory)
    if isinstance(sessions, async_sessionmaker):
        # Its sync sessions get a class of their own, so that the listeners see this maker's sessions only.
        base = sessions.kw.get("sync_session_class", Session)
        if "_stashly_scoped" not in vars(base):
            base = type(base.__name__, (base,), {"_stashly_scoped": True})
            sessions.configure(sync_session_class=base)
        return base
    if isinstance(sessions, AsyncSession):
        return sessions.sync_session
    if isinstance(sessions, type) and issubclass(sessions, AsyncSession):
        return sessions.sync_session_class
    if isinstance(sessions, sessionmaker | Session) or (isinstance(sessions, type) and issubclass(sessions, Session)):
        return sessions
    raise TypeError(
        "invalidate_on_commit(sessions=...) takes a sessionmaker, async_sessionmaker or scoped_session, a Session "
        f"or AsyncSession class, or one session; got {sessions!r}"
    )


class _Hooks:
    """The listeners of one session target and the rules they apply."""

    def __init__(self, target: object) -> None:
        self.target = target
        self.rules: list[Rule] = []
        self._listeners: dict[str, Callable[..., Any]] = {
            "before_flush": self._before_flush,
            "after_flush": self._after_flush,
            "do_orm_execute": self._on_execute,
            "after_commit": self._after_commit,
            "after_transaction_end": self._after_transaction_end,
        }
        for name, listener in self._listeners.items():
            event.listen(target, name, listener)

    def drop(self, rule: Rule) -> None:
        with _registry_lock:
            if rule in self.rules:
                self.rules.remove(rule)
            if not self.rules and _registry.get(self.target) is self:
                del _registry[self.target]
                for name, listener in self._listeners.items():
                    event.remove(self.target, name, listener)

    def _rules_for(self, instance_or_class: object) -> list[Rule]:
        cls = instance_or_class if isinstance(instance_or_class, type) else type(instance_or_class)
        return [rule for rule in self.rules if issubclass(cls, rule.model)]

    def _before_flush(self, session: Session, flush_context: object, instances: object) -> None:
        pending = pending_of(session)
        assert pending is not None
        pending.before = {}
        dirty = [instance for instance in session.dirty if self._rules_for(instance)]
        changed = [instance for instance in dirty if session.is_modified(instance)]
        for instance in (*changed, *session.deleted):
            rules = self._rules_for(instance)
            if not rules:
                continue
            before = Before(instance, session)
            for rule in rules:
                _file(pending.before, rule, rule.tags_of(before))

    def _after_flush(self, session: Session, flush_context: object) -> None:
        pending = pending_of(session)
        assert pending is not None
        now: Groups = {}
        dirty = [instance for instance in session.dirty if self._rules_for(instance) and session.is_modified(instance)]
        for instance in (*session.new, *dirty):
            for rule in self._rules_for(instance):
                _file(now, rule, rule.tags_of(instance))
        for instance in session.deleted:  # read as they were, in before_flush; the model tag still applies
            for rule in self._rules_for(instance):
                _file(now, rule, [])
        pending.add_before(session)
        pending.add_groups(session, now)

    def _on_execute(self, state: ORMExecuteState) -> Any:
        if not (state.is_update or state.is_delete or state.is_insert):
            return None
        mapper = state.bind_mapper
        rules = [] if mapper is None else self._rules_for(mapper.class_)
        if not rules or mapper is None:
            return None
        statement = Statement(state, mapper)
        written: Groups = {}
        before = statement.before()
        _file_rows(written, rules, before, statement)
        result = state.invoke_statement()
        _file_rows(written, rules, statement.after(), statement)
        pending = pending_of(state.session)
        assert pending is not None
        pending.add_groups(state.session, written)
        return result

    def _after_commit(self, session: Session) -> None:
        pending = pending_of(session, create=False)
        if pending is None:
            return
        savepoint = session.get_nested_transaction()
        if savepoint is not None:
            pending.savepoint_released(savepoint)
            return
        for manager, tags in pending.committed().items():
            _invalidate(manager, sorted(tags))

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        pending = pending_of(session, create=False)
        if pending is None:
            return
        if transaction.nested:
            pending.savepoint_ended(transaction)
        elif transaction.parent is None:
            pending.ended()


def _file(groups: Groups, rule: Rule, tags: list[str]) -> None:
    found = groups.setdefault(rule.manager, set())
    found.update(tags)
    if rule.model_tag is not None:
        found.add(rule.model_tag)


def _file_rows(groups: Groups, rules: list[Rule], rows: list[Columns] | None, statement: Statement) -> None:
    for rule in rules:
        if rows is not None:
            try:
                tags = [tag for row in rows for tag in rule.tags_of(row)]
            except (AttributeError, KeyError):
                rows = None  # a tag needs a column these rows do not have
            else:
                _file(groups, rule, tags)
                continue
        if rule.model_tag is None:
            raise UntrackedWriteError(
                f"{rule.where}: this bulk {_verb(statement)} writes {rule.model.__name__} rows whose tags cannot "
                "be read; give the rule a model_tag, or pass the rows' values as parameter sets"
            )
        _file(groups, rule, [])


def _verb(statement: Statement) -> str:
    state = statement.state
    return "INSERT" if state.is_insert else "UPDATE" if state.is_update else "DELETE"


def _invalidate(manager: CacheManager, tags: list[str]) -> None:
    """Invalidate after a commit; never raises: the rows are committed, whatever happens to the cache."""
    try:
        if concurrency.in_greenlet():  # an AsyncSession's commit: await the async twin on the session's loop
            _await(manager.ainvalidate_tags(*tags))
        else:
            manager.invalidate_tags(*tags)
    except Exception:
        _log.exception("stashly: committed, but invalidating the tags %s failed", tags)
