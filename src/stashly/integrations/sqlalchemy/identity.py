"""SQLAlchemy: an ORM instance is keyed by its row (mapped class and primary key), never by its loaded state."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.exc import NoInspectionAvailable

__all__ = ["row_identity"]


def row_identity(instance: object) -> tuple[object, ...] | None:
    """The primary key of a persistent or detached ORM instance; ``None`` for one not yet in the database.

    Reading the identity loads nothing, so keying a lazily loaded ``current_user`` costs no query.
    """
    try:
        state = inspect(instance)
    except NoInspectionAvailable:
        return None
    identity = state.identity
    return None if identity is None else tuple(identity)
