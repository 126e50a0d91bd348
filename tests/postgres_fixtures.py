"""``postgres_url``: a PostgreSQL schema of the test's own, on ``DATABASE_URL`` or the machine's local server.

An optional variant: the suite must not depend on PostgreSQL, so without ``DATABASE_URL`` and without a server
answering on 127.0.0.1:5432 these tests skip, saying why. The schema is created for the test and dropped after
it; nothing else on the server is touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

__all__ = ["postgres_url"]

_LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_url() -> tuple[str | None, str]:
    """The server to use and why: ``DATABASE_URL`` when set (it must work), else a local server if one answers."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured, "DATABASE_URL"
    try:
        psycopg.connect(_LOCAL_POSTGRES, connect_timeout=2).close()
    except psycopg.Error as exc:
        return None, f"no DATABASE_URL and no PostgreSQL answering on 127.0.0.1:5432 ({type(exc).__name__})"
    return _LOCAL_POSTGRES, "local server"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A psycopg 3 URL (``postgresql+psycopg://``, sync and async) whose ``search_path`` is a fresh schema."""
    url, reason = _postgres_url()
    if url is None:
        pytest.skip(reason)
    base = make_url(url).set(drivername="postgresql")
    admin = base.render_as_string(hide_password=False)
    schema = f"stashly_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        app_url = base.set(drivername="postgresql+psycopg").update_query_dict({"options": f"-csearch_path={schema}"})
        yield app_url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
