"""The database: an engine and a session factory, on SQLite by default or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from .models import Base

__all__ = ["Database", "database_url"]


def database_url(url: str | None, data_dir: Path | None) -> URL:
    """The SQLAlchemy URL to use: ``url`` (``postgresql://`` gets the psycopg 3 driver), or a SQLite file.

    The SQLite file lives in ``data_dir``, or in a new temporary directory when there is none.
    """
    if url is None:
        directory = data_dir or Path(tempfile.mkdtemp(prefix="auth-app-"))
        directory.mkdir(parents=True, exist_ok=True)
        return URL.create("sqlite+pysqlite", database=str(directory / "auth_app.sqlite3"))
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Database:
    """One engine and its sessions; ``dispose`` closes the pooled connections."""

    def __init__(self, url: URL) -> None:
        # SQLite connections move between FastAPI's worker threads (one request, several threads).
        connect_args = {"check_same_thread": False} if url.get_backend_name() == "sqlite" else {}
        self.url = url
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        self.sessions = sessionmaker(self.engine)

    def create_tables(self) -> None:
        """Create the tables that do not exist yet (a real service would run migrations instead)."""
        Base.metadata.create_all(self.engine)

    def session(self) -> Session:
        """A new session; use it as a context manager."""
        return self.sessions()

    def describe(self) -> str:
        """The URL with any password hidden, for logs."""
        return self.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()
