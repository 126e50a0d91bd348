"""The SQLAlchemy 2 models: one ``users`` table."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "User"]


class Base(DeclarativeBase):
    """The declarative base of the app's tables."""


class User(Base):
    """An account: logs in with ``email`` and a password, of which only the PBKDF2 hash is stored."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)

    def __repr__(self) -> str:
        # Only the identity: reading other attributes here could emit a query (or leak the hash into logs).
        return f"User(id={self.__dict__.get('id')!r})"
