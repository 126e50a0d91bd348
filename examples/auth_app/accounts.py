"""Account operations on a session: create, authenticate, update. Sync: call them from a worker thread."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import models, schemas, security

__all__ = ["EmailTakenError", "authenticate", "create_user", "update_profile"]


class EmailTakenError(ValueError):
    """Another account already uses this email."""


def create_user(db: Session, *, email: str, password: str, full_name: str, iterations: int) -> models.User:
    """Add and commit an account; raises :class:`EmailTakenError` if the email is in use."""
    user = models.User(
        email=email.strip().lower(),
        full_name=full_name,
        hashed_password=security.hash_password(password, iterations=iterations),
    )
    db.add(user)
    _commit(db, user.email)
    return user


def authenticate(db: Session, *, email: str, password: str, iterations: int) -> models.User | None:
    """The active account with this email and password, or ``None`` (without telling which part was wrong)."""
    user = db.scalar(select(models.User).where(models.User.email == email.strip().lower()))
    if user is None:
        security.waste_time(password, iterations=iterations)
        return None
    if not security.verify_password(password, user.hashed_password) or not user.is_active:
        return None
    return user


def update_profile(db: Session, user: models.User, update: schemas.UserUpdate) -> schemas.UserRead:
    """Apply the fields set in ``update`` and commit; the account as stored afterwards."""
    changes = update.model_dump(exclude_unset=True, exclude_none=True)
    for name, value in changes.items():
        setattr(user, name, value)
    if changes:
        _commit(db, changes.get("email", ""))
    return schemas.UserRead(id=user.id, email=user.email, full_name=user.full_name, is_active=user.is_active)


def _commit(db: Session, email: str) -> None:
    # The unique index decides, not a SELECT before the write: two requests could both pass such a check.
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise EmailTakenError(f"email {email!r} is already in use") from None
