"""Account operations on a session: create, authenticate, update. Sync: call them from a worker thread."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import models, schemas, security

__all__ = ["EmailTakenError", "admin_update", "authenticate", "create_user", "deactivate", "update_profile"]


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


def admin_update(db: Session, user_id: int, changes: schemas.AdminUserUpdate) -> bool:
    """Apply ``changes`` to account ``user_id`` with one ``UPDATE`` statement (no ORM load) and commit; whether
    the account exists. A bulk statement: ``invalidate_on_commit`` reads the row it matches, before and after."""
    values = changes.model_dump(exclude_unset=True, exclude_none=True)
    exists = db.scalar(select(models.User.id).where(models.User.id == user_id)) is not None
    if exists and values:
        try:
            db.execute(update(models.User).where(models.User.id == user_id).values(**values))
        except IntegrityError:
            db.rollback()
            raise EmailTakenError(f"email {values.get('email')!r} is already in use") from None
        _commit(db, values.get("email", ""))
    return exists


def deactivate(db: Session, user_id: int) -> None:
    """Mark account ``user_id`` inactive through the unit of work, and commit (a no-op for a missing one)."""
    user = db.get(models.User, user_id)
    if user is not None:
        user.is_active = False
        db.commit()


def _commit(db: Session, email: str) -> None:
    # The unique index decides, not a SELECT before the write: two requests could both pass such a check.
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise EmailTakenError(f"email {email!r} is already in use") from None
