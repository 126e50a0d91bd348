"""The database: an engine and a session factory, on SQLite by default or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from .models import Base

__all__ = ["Database"]


class Database:
    """One engine and its sessions: ``url`` when given, else a SQLite file in ``data_dir`` or a temp directory.

    A ``postgresql://`` URL gets the psycopg 3 driver. A temporary directory is removed by :meth:`close`.
    """

    def __init__(self, url: str | None = None, data_dir: Path | None = None) -> None:
        self._temporary: Path | None = None
        if url is None:
            if data_dir is None:
                data_dir = self._temporary = Path(tempfile.mkdtemp(prefix="auth-app-"))
            data_dir.mkdir(parents=True, exist_ok=True)
            self.url = URL.create("sqlite+pysqlite", database=str(data_dir / "auth_app.sqlite3"))
        else:
            self.url = make_url(url)
            if self.url.drivername in ("postgresql", "postgres"):
                self.url = self.url.set(drivername="postgresql+psycopg")
        # SQLite connections move between FastAPI's worker threads (one request, several threads).
        connect_args = {"check_same_thread": False} if self.url.get_backend_name() == "sqlite" else {}
        self.engine: Engine = create_engine(self.url, connect_args=connect_args, pool_pre_ping=True)
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

    def close(self) -> None:
        """Close the pooled connections, and delete the database if it lives in a temporary directory."""
        self.engine.dispose()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
