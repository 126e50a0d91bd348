"""``/auth``: log in, read your account (cached per user, sync and async variants), update it (invalidates)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from stashly import Cached, CachedFunction

from .. import accounts, dependencies, models, schemas, security

__all__ = ["build_router"]


def build_router(auth_cache: Cached, public_profile: CachedFunction[..., Any]) -> APIRouter:
    """The ``/auth`` routes, caching in ``auth_cache``; ``public_profile`` is ``GET /users/{id}``'s function.

    A profile update changes what ``public_profile`` returns too, so ``PATCH /auth/me`` drops that entry.
    """
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
    @auth_cache.cached(http=True)
    def get_me(current_user: models.User = Depends(dependencies.get_current_user)) -> schemas.UserRead:
        """The caller's account, cached per user: a hit runs no query at all."""
        return schemas.UserRead(
            id=current_user.id,
            email=current_user.email,
            full_name=current_user.full_name,
            is_active=current_user.is_active,
        )

    @router.get("/async/me", response_model=schemas.UserRead)
    @auth_cache.cached(http=True)
    async def get_me_async(current_user: models.User = Depends(dependencies.get_current_user)) -> schemas.UserRead:
        """:func:`get_me` as an ``async def`` endpoint: its own entry, the same data."""
        # Reading the attributes queries through the sync session: in a worker thread, never on the event loop.
        return await run_in_threadpool(_user_read, current_user)

    @router.patch("/me", response_model=schemas.UserRead)
    @auth_cache.remove(get_me_async)
    async def update_me(
        update: schemas.UserUpdate,
        current_user: models.User = Depends(dependencies.get_current_user),
        db: Session = Depends(dependencies.get_db),
    ) -> schemas.UserRead:
        """Change your name or email; your cached ``/auth/me`` entries and public profile are dropped after it.

        ``@auth_cache.remove(get_me_async)`` drops the async variant's entry for the same ``current_user``;
        the sync variant and the public profile are invalidated explicitly, after the commit.
        """
        return await run_in_threadpool(_update, db, current_user, update)

    def _update(db: Session, user: models.User, update: schemas.UserUpdate) -> schemas.UserRead:
        try:
            updated = accounts.update_profile(db, user, update)
        except accounts.EmailTakenError:
            raise HTTPException(status.HTTP_409_CONFLICT, "this email is already in use") from None
        get_me.invalidate(current_user=user)
        public_profile.invalidate(user_id=user.id, db=db)
        return updated

    return router


def _user_read(user: models.User) -> schemas.UserRead:
    return schemas.UserRead(id=user.id, email=user.email, full_name=user.full_name, is_active=user.is_active)
