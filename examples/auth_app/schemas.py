"""The API's request and response bodies (Pydantic 2)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

__all__ = ["AdminUserUpdate", "CacheStatsRead", "Email", "Token", "UserPublic", "UserRead", "UserUpdate"]

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
"""An email address, normalised to lower case (a full RFC 5322 check is not the point of this example)."""
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class UserRead(BaseModel):
    """What ``GET /auth/me`` returns: the caller's own account."""

    id: int
    email: str
    full_name: str
    is_active: bool


class UserPublic(BaseModel):
    """What ``GET /users/{id}`` returns: what anybody may see of an account."""

    id: int
    full_name: str


class UserUpdate(BaseModel):
    """The body of ``PATCH /auth/me``: the fields to change, all optional."""

    model_config = ConfigDict(extra="forbid")

    full_name: FullName | None = None
    email: Email | None = None


class AdminUserUpdate(UserUpdate):
    """The body of ``PATCH /admin/users/{id}``: what a user may change, and whether the account is active."""

    is_active: bool | None = None


class Token(BaseModel):
    """The OAuth2 token response of ``POST /auth/token``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class CacheStatsRead(BaseModel):
    """The cache manager's counters, and how many entries each of the app's namespaces holds."""

    hits: int
    misses: int
    stores: int
    errors: int
    hit_ratio: float
    keys: dict[str, int]
