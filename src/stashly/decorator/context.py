"""Framework objects that never belong in a cache key: the request, the response, a database session.

They change on every call and never change what a handler returns, so the decorator leaves them out of the
key by the *type of the value*, matched by qualified class name so nothing here imports a framework.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONTEXT_TYPES", "is_context"]

CONTEXT_TYPES: Final = frozenset(
    {
        "starlette.requests.HTTPConnection",  # Request and WebSocket derive from it
        "starlette.responses.Response",
        "starlette.background.BackgroundTasks",
        "sqlalchemy.orm.session.Session",
        "sqlalchemy.orm.scoping.scoped_session",
        "sqlalchemy.ext.asyncio.session.AsyncSession",
        "sqlalchemy.ext.asyncio.scoping.async_scoped_session",
        # FastAPI's markers, seen when an endpoint is called (or invalidated) directly, outside a request
        "fastapi.params.Depends",
    }
)
"""Qualified names of the classes (and their subclasses) whose instances are left out of keys."""


_seen: dict[type, bool] = {}


def is_context(value: object) -> bool:
    """Whether ``value`` is a request, response, background-task list or database session."""
    cls = type(value)
    known = _seen.get(cls)
    if known is None:
        known = _seen[cls] = any(f"{c.__module__}.{c.__qualname__}" in CONTEXT_TYPES for c in cls.__mro__)
    return known
