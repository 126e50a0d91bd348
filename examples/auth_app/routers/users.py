"""``/users``: public profiles, cached and shared by every caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from sqlalchemy.orm import Session

from stashly import Cached

from .. import dependencies, models, schemas

__all__ = ["build_router"]


def build_router(users_cache: Cached) -> APIRouter:
    """The ``/users`` routes caching in ``users_cache``, each profile under the tag ``user:<id>``."""
    router = APIRouter(prefix="/users", tags=["users"])

    @router.get("/{user_id}", response_model=schemas.UserPublic)
    @users_cache.cached(http=True, tags=["user:{user_id}"])
    def get_user(user_id: Annotated[int, Path(ge=1)], db: Session = Depends(dependencies.get_db)) -> schemas.UserPublic:
        """A user's public profile. ``db`` is left out of the key; a 404 is an exception, so it is never cached."""
        user = db.get(models.User, user_id)
        if user is None or not user.is_active:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
        return schemas.UserPublic(id=user.id, full_name=user.full_name)

    return router
