"""``/auth``: log in, read your account (cached per user, sync and async variants), update it.

The cached reads are filed under the tag ``user:<id>``; nothing here invalidates them by hand: the app's
``invalidate_on_commit(User, tags="user:{id}")`` does, after any commit that changes the row (see ``app.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from stashly import Cached

from .. import accounts, dependencies, models, schemas, security

__all__ = ["build_router"]


def build_router(auth_cache: Cached) -> APIRouter:
    """The ``/auth`` routes, caching in ``auth_cache``."""
    router = APIRouter(prefix="/auth", tags=["auth"])

    @router.post("/token", response_model=schemas.Token)
    def login(
        form: Annotated[OAuth2PasswordRequestForm, Depends()],
        db: Session = Depends(dependencies.get_db),
        services: dependencies.Services = Depends(dependencies.get_services),
    ) -> schemas.Token:
        """Exchange an email (the OAuth2 ``username``) and password for a bearer token."""
        settings = services.settings
        user = accounts.authenticate(
            db, email=form.username, password=form.password, iterations=settings.password_iterations
        )
        if user is None:
            raise dependencies.unauthorized("incorrect email or password")
        token = security.issue_token(user.id, secret=settings.secret_key, ttl=settings.token_ttl)
        return schemas.Token(access_token=token, expires_in=settings.token_ttl)

    @router.get("/me", response_model=schemas.UserRead)
    @auth_cache.cached(http=True, tags=["user:{current_user.id}"])
    def get_me(current_user: models.User = Depends(dependencies.get_current_user)) -> schemas.UserRead:
        """The caller's account, cached per user: a hit runs no query at all."""
        return schemas.UserRead(
            id=current_user.id,
            email=current_user.email,
            full_name=current_user.full_name,
            is_active=current_user.is_active,
        )

    @router.get("/async/me", response_model=schemas.UserRead)
    @auth_cache.cached(http=True, tags=["user:{current_user.id}"])
    async def get_me_async(current_user: models.User = Depends(dependencies.get_current_user)) -> schemas.UserRead:
        """:func:`get_me` as an ``async def`` endpoint: its own entry, the same data."""
        # Reading the attributes queries through the sync session: in a worker thread, never on the event loop.
        return await run_in_threadpool(_user_read, current_user)

    @router.patch("/me", response_model=schemas.UserRead)
    def update_me(
        update: schemas.UserUpdate,
        current_user: models.User = Depends(dependencies.get_current_user),
        db: Session = Depends(dependencies.get_db),
    ) -> schemas.UserRead:
        """Change your name or email. The commit invalidates ``user:<id>``: your ``/auth/me`` entries (both
        variants) and your public profile are recomputed on their next request."""
        try:
            return accounts.update_profile(db, current_user, update)
        except accounts.EmailTakenError:
            raise HTTPException(status.HTTP_409_CONFLICT, "this email is already in use") from None

    return router


def _user_read(user: models.User) -> schemas.UserRead:
    return schemas.UserRead(id=user.id, email=user.email, full_name=user.full_name, is_active=user.is_active)
