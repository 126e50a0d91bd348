"""``invalidate_on_commit``: ORM writes invalidate their rows' tags after the commit, never before, never on a
rollback, savepoints respected; bulk statements; read-your-writes; sync and async sessions.

Every test runs on SQLite (a file of its own) and on PostgreSQL (a schema of its own on the machine's server;
skipped, saying why, where there is none), against a real redis-server. "Served from the cache" is proved by
counting the reads of the source, a function that queries the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, String, create_engine, delete, event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from stashly import Cached, CacheManager, ConfigError
from stashly.integrations.sqlalchemy import UntrackedWriteError, Watch, invalidate_on_commit

from tests.test_journal import open_breaker

T = TypeVar("T")


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    team: Mapped[str] = mapped_column(String(20), default="a")


class Note(Base):  # not watched: its writes invalidate nothing
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'test.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":
        _real_savepoints(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(
            [
                Account(email="ada@x.io", name="Ada", team="a"),
                Account(email="bob@x.io", name="Bob", team="a"),
                Account(email="cy@x.io", name="Cy", team="b"),
            ]
        )
        session.commit()
        assert [a.id for a in session.scalars(select(Account).order_by(Account.id))] == [1, 2, 3]
    yield engine
    engine.dispose()


def _real_savepoints(engine: Engine) -> None:
    """SQLAlchemy's recipe for pysqlite, whose own transaction handling makes a rolled-back SAVEPOINT keep its
    writes: without it the database, not the cache, would break the savepoint tests."""

    @event.listens_for(engine, "connect")
    def no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


@pytest.fixture
def manager(redis_url: str) -> Iterator[CacheManager]:
    with CacheManager(redis_url, namespace="sa") as manager:
        yield manager


@dataclass
class App:
    """A cached read of the accounts table, and the sessions whose writes invalidate it."""

    manager: CacheManager
    sessions: sessionmaker[Session]
    watch: Watch
    reads: int = 0

    def read(self, account_id: int, session: Session | None = None) -> str | None:
        self.reads += 1
        if session is not None:
            account = session.get(Account, account_id)
            return None if account is None else account.name
        with self.sessions() as own:
            account = own.get(Account, account_id)
            return None if account is None else account.name


@pytest.fixture
def app(engine: Engine, manager: CacheManager) -> Iterator[App]:
    sessions = sessionmaker(engine)
    watch = invalidate_on_commit(
        Account, tags=["account:{id}", "email:{email}"], model_tag="accounts", manager=manager, sessions=sessions
    )
    app = App(manager, sessions, watch)
    cache = Cached("accounts", ttl=600, manager=manager)
    app.name = cache.cached(tags=["account:{account_id}"], ignore=["session"])(app.read)  # type: ignore[attr-defined]
    yield app
    watch.remove()


def name(app: App, account_id: int, session: Session | None = None) -> str | None:
    return app.name(account_id, session)  # type: ignore[attr-defined, no-any-return]


def in_other_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a fresh thread (a fresh context: another request, not the writing one)."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


# -- unit of work -----------------------------------------------------------------------------------------------


def test_an_update_invalidates_after_the_commit_and_not_before(app: App) -> None:
    assert name(app, 1) == "Ada"
    with app.sessions() as session:
        session.get(Account, 1).name = "Ada L."  # type: ignore[union-attr]
        session.flush()
        # Flushed, not committed: another request must still get the committed value, from the cache (an
        # invalidation now would let it refill from the old row, and keep that until the TTL).
        assert in_other_thread(lambda: name(app, 1)) == "Ada"
        assert app.reads == 1
        session.commit()
    assert name(app, 1) == "Ada L."
    assert app.reads == 2
    assert name(app, 1) == "Ada L."
    assert app.reads == 2


def test_a_rollback_invalidates_nothing(app: App) -> None:
    assert name(app, 1) == "Ada"
    with app.sessions() as session:
        session.get(Account, 1).name = "never"  # type: ignore[union-attr]
        session.add(Account(id=9, email="n@x.io", name="N"))
        session.flush()
        session.rollback()
    with app.sessions() as session:  # closed with an open transaction: the same
        session.get(Account, 1).name = "never"  # type: ignore[union-attr]
        session.flush()
    assert name(app, 1) == "Ada"
    assert app.reads == 1
    assert app.manager.stats().tag_invalidations == 0


def test_insert_and_delete_invalidate_the_rows_tags(app: App) -> None:
    assert name(app, 7) is None  # a miss of a row that does not exist yet is cached too
    assert name(app, 2) == "Bob"
    with app.sessions() as session:
        session.add(Account(id=7, email="new@x.io", name="New"))
        session.delete(session.get(Account, 2))
        session.commit()
    assert name(app, 7) == "New"
    assert name(app, 2) is None
    assert app.reads == 4


def test_a_changed_attribute_invalidates_the_old_and_the_new_tag(app: App, manager: CacheManager) -> None:
    cache = Cached("by_email", ttl=600, manager=manager)
    lookups: list[str] = []

    @cache.cached(tags=["email:{email}"])
    def account_by_email(email: str) -> int | None:
        lookups.append(email)
        with app.sessions() as session:
            return session.scalar(select(Account.id).where(Account.email == email))

    assert account_by_email("ada@x.io") == 1
    assert account_by_email("ada2@x.io") is None
    with app.sessions() as session:
        # A lazy instance: the old email was never loaded, so the rule reads it from the row before the flush.
        account = session.get(Account, 1)
        session.expire(account)
        account.email = "ada2@x.io"  # type: ignore[union-attr]
        session.commit()
    assert account_by_email("ada@x.io") is None
    assert account_by_email("ada2@x.io") == 1
    assert lookups == ["ada@x.io", "ada2@x.io", "ada@x.io", "ada2@x.io"]


def test_writes_of_an_unwatched_model_invalidate_nothing(app: App) -> None:
    assert name(app, 1) == "Ada"
    with app.sessions() as session:
        session.add(Note(text="hello"))
        session.commit()
    assert name(app, 1) == "Ada"
    assert app.manager.stats().tag_invalidations == 0


# -- savepoints ---------------------------------------------------------------------------------------------------


def test_a_rolled_back_savepoint_invalidates_nothing_at_the_commit(app: App) -> None:
    assert name(app, 1) == "Ada"
    assert name(app, 2) == "Bob"
    with app.sessions() as session:
        with session.begin_nested() as savepoint:
            session.get(Account, 1).name = "undone"  # type: ignore[union-attr]
            session.flush()
            savepoint.rollback()
        session.get(Account, 2).name = "Bobby"  # type: ignore[union-attr]
        session.commit()
    assert name(app, 2) == "Bobby"
    assert name(app, 1) == "Ada"
    assert app.reads == 3  # 1 was never invalidated


def test_a_released_savepoint_waits_for_the_outer_commit(app: App) -> None:
    assert name(app, 1) == "Ada"
    with app.sessions() as session:
        with session.begin_nested():
            session.get(Account, 1).name = "released"  # type: ignore[union-attr]
        # The savepoint is released, the transaction is not committed: nothing invalidated yet.
        assert in_other_thread(lambda: name(app, 1)) == "Ada"
        assert app.reads == 1
        session.rollback()
    assert name(app, 1) == "Ada"
    assert app.reads == 1
    with app.sessions() as session:
        with session.begin_nested():
            session.get(Account, 1).name = "released"  # type: ignore[union-attr]
        session.commit()
    assert name(app, 1) == "released"
    assert app.reads == 2


# -- bulk statements ----------------------------------------------------------------------------------------------


def test_a_bulk_update_invalidates_every_row_it_matched(app: App) -> None:
    assert [name(app, i) for i in (1, 2, 3)] == ["Ada", "Bob", "Cy"]
    with app.sessions() as session:
        session.execute(update(Account).where(Account.team == "a").values(name="team a"))
        assert in_other_thread(lambda: name(app, 1)) == "Ada"  # not before the commit
        session.commit()
    assert [name(app, i) for i in (1, 2, 3)] == ["team a", "team a", "Cy"]
    assert app.reads == 5  # 3 untouched: still cached


def test_a_bulk_update_by_primary_key_and_a_bulk_delete(app: App) -> None:
    assert [name(app, i) for i in (1, 2, 3)] == ["Ada", "Bob", "Cy"]
    with app.sessions() as session:
        session.execute(update(Account), [{"id": 1, "name": "one"}, {"id": 3, "name": "three"}])
        session.commit()
    assert [name(app, i) for i in (1, 2, 3)] == ["one", "Bob", "three"]
    with app.sessions() as session:
        session.execute(delete(Account).where(Account.id.in_([1, 2])))
        session.commit()
    assert [name(app, i) for i in (1, 2, 3)] == [None, None, "three"]


def test_a_bulk_insert_with_its_rows_or_with_the_model_tag(app: App, manager: CacheManager) -> None:
    cache = Cached("counts", ttl=600, manager=manager)

    @cache.cached(tags=["accounts"])
    def count() -> int:
        with app.sessions() as session:
            return len(session.scalars(select(Account.id)).all())

    assert count() == 3
    assert name(app, 8) is None
    with app.sessions() as session:
        session.execute(insert(Account), [{"id": 8, "email": "e@x.io", "name": "Eight", "team": "b"}])
        session.commit()
    assert name(app, 8) == "Eight"
    assert count() == 4
    with app.sessions() as session:  # no id: its row tag cannot be known, the model tag stands for it
        session.execute(insert(Account).values(email="f@x.io", name="F", team="b"))
        session.commit()
    assert count() == 5


def test_a_bulk_write_whose_rows_cannot_be_known_is_refused_without_a_model_tag(
    engine: Engine, manager: CacheManager
) -> None:
    sessions = sessionmaker(engine)
    watch = invalidate_on_commit(Account, tags="account:{id}", manager=manager, sessions=sessions)
    try:
        with sessions() as session:
            with pytest.raises(UntrackedWriteError, match=r"INSERT writes Account rows .* model_tag"):
                session.execute(insert(Account).values(email="g@x.io", name="G"))
            session.rollback()
            assert session.scalar(select(Account.id).where(Account.email == "g@x.io")) is None  # never ran
    finally:
        watch.remove()


# -- read-your-writes ---------------------------------------------------------------------------------------------


def test_the_writing_transaction_reads_its_own_writes_and_stores_none_of_them(app: App) -> None:
    assert name(app, 1) == "Ada"
    with app.sessions() as session:
        session.get(Account, 1).name = "uncommitted"  # type: ignore[union-attr]
        session.flush()
        assert name(app, 1, session) == "uncommitted"  # this context bypasses the cache for the tag
        assert name(app, 2, session) == "Bob"  # other tags are cached as usual
        assert in_other_thread(lambda: name(app, 1)) == "Ada"  # other contexts: the committed value
        session.rollback()
    assert name(app, 1) == "Ada"  # the uncommitted value was never stored
    assert name(app, 1) == "Ada"
    assert app.reads == 3  # 1 filled, 1 read in the transaction, 2 filled; the rest were hits


# -- async sessions -----------------------------------------------------------------------------------------------


@pytest.fixture
async def async_engine(engine: Engine, database_url: str) -> AsyncIterator[AsyncEngine]:
    url = database_url.replace("sqlite+pysqlite", "sqlite+aiosqlite")
    async_engine = create_async_engine(url)
    yield async_engine
    await async_engine.dispose()


async def test_an_async_session_invalidates_after_its_commit(async_engine: AsyncEngine, manager: CacheManager) -> None:
    sessions = async_sessionmaker(async_engine, expire_on_commit=False)
    watch = invalidate_on_commit(Account, tags="account:{id}", manager=manager, sessions=sessions)
    reads: list[int] = []
    cache = Cached("async_accounts", ttl=600, manager=manager)

    @cache.cached(tags=["account:{account_id}"], ignore=["session"])
    async def account_name(account_id: int, session: AsyncSession | None = None) -> str | None:
        reads.append(account_id)
        if session is not None:
            account = await session.get(Account, account_id)
            return None if account is None else account.name
        async with sessions() as own:
            account = await own.get(Account, account_id)
            return None if account is None else account.name

    try:
        assert await account_name(1) == "Ada"
        async with sessions() as session:
            account = await session.get(Account, 1)
            assert account is not None
            account.name = "Ada async"
            await session.flush()
            assert await account_name(1, session) == "Ada async"  # read-your-writes, in this task
            await session.execute(update(Account).where(Account.id == 2).values(name="Bob async"))
            await session.commit()
        assert await account_name(1) == "Ada async"
        assert await account_name(2) == "Bob async"
        assert await account_name(1) == "Ada async"
        assert reads == [1, 1, 1, 2]
        async with sessions() as session:
            account = await session.get(Account, 1)
            assert account is not None
            account.name = "rolled back"
            await session.flush()
            await session.rollback()
        assert await account_name(1) == "Ada async"
        assert reads == [1, 1, 1, 2]
    finally:
        watch.remove()


# -- outages, scope, errors ---------------------------------------------------------------------------------------


def test_an_invalidation_at_a_commit_during_an_outage_is_journaled_and_replayed(app: App) -> None:
    assert name(app, 1) == "Ada"
    clock = open_breaker(app.manager)
    with app.sessions() as session:
        session.get(Account, 1).name = "during the outage"  # type: ignore[union-attr]
        session.commit()  # the commit succeeds; the invalidation waits in the journal
    assert app.manager.stats().pending_invalidations == 3  # account:1, email:ada@x.io, accounts
    assert name(app, 1) == "during the outage"  # bypassed while pending
    clock.now += 10  # the breaker's cool-down passes: the next operation replays first
    assert name(app, 1) == "during the outage"
    assert app.manager.stats().pending_invalidations == 0


def test_a_strict_manager_that_fails_logs_and_the_commit_stands(
    engine: Engine, disposable_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = sessionmaker(engine)
    with CacheManager(disposable_redis.url, strict=True) as strict:
        watch = invalidate_on_commit(Account, tags="account:{id}", manager=strict, sessions=sessions)
        disposable_redis.stop()
        try:
            with caplog.at_level(logging.ERROR, "stashly.sqlalchemy"), sessions() as session:
                session.get(Account, 1).name = "committed"  # type: ignore[union-attr]
                session.commit()
        finally:
            watch.remove()
    assert "committed, but invalidating the tags ['account:1'] failed" in caplog.text
    with sessions() as session:
        assert session.get(Account, 1).name == "committed"  # type: ignore[union-attr]


def test_a_removed_watch_invalidates_nothing_and_rules_are_scoped_to_their_sessions(app: App, engine: Engine) -> None:
    assert name(app, 1) == "Ada"
    with sessionmaker(engine)() as other:  # another sessionmaker: not watched
        other.get(Account, 1).name = "elsewhere"  # type: ignore[union-attr]
        other.commit()
    assert name(app, 1) == "Ada"
    app.watch.remove()
    with app.sessions() as session:
        session.get(Account, 1).name = "unwatched"  # type: ignore[union-attr]
        session.commit()
    assert name(app, 1) == "Ada"
    assert app.manager.stats().tag_invalidations == 0


def test_rules_are_checked_when_made(manager: CacheManager) -> None:
    with pytest.raises(ConfigError, match=r"'user:\{uid\}' names 'uid', which Account does not have"):
        invalidate_on_commit(Account, tags="user:{uid}", manager=manager)
    with pytest.raises(ConfigError, match="is not an SQLAlchemy mapped class"):
        invalidate_on_commit(dict, tags="x", manager=manager)
    with pytest.raises(ConfigError, match="model_tag"):
        invalidate_on_commit(Account, tags="a:{id}", model_tag="has space", manager=manager)
    with pytest.raises(TypeError, match=r"takes a sessionmaker.*got 42"):
        invalidate_on_commit(Account, tags="a:{id}", manager=manager, sessions=42)
