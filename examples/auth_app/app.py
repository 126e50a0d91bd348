"""The application factory: ``create_app()`` builds an independent app (its own database, caches, settings).

Nothing is created at import. Run it with ``python -m examples.auth_app`` or
``uvicorn --factory examples.auth_app.app:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from stashly import Cached, CacheManager
from stashly.integrations.fastapi import stats_router
from stashly.integrations.sqlalchemy import invalidate_on_commit

from .config import AppSettings, load_settings
from .db import Database
from .dependencies import Services, unauthorized
from .models import User
from .routers import admin, auth, cache, users

__all__ = ["AUTH_NAMESPACE", "USERS_NAMESPACE", "build_manager", "create_app"]

AUTH_NAMESPACE = "auth"
USERS_NAMESPACE = "users"


def build_manager(settings: AppSettings) -> CacheManager:
    """The cache manager of ``config.json``'s ``redis`` section when there is a file, else ``CacheManager()``.

    ``CacheManager()`` follows ``STASHLY_URL`` and the other ``STASHLY_*`` variables, and is an in-memory cache
    when nothing is configured.
    """
    if settings.config_path is not None:
        return CacheManager.from_config(settings.config_path)
    return CacheManager()


def create_app(
    *,
    manager: CacheManager | None = None,
    database_url: str | None = None,
    settings: AppSettings | None = None,
) -> FastAPI:
    """A new app with its tables created; arguments left out come from :func:`~examples.auth_app.config.load_settings`.

    ``database_url`` overrides ``DATABASE_URL``. A ``manager`` passed in stays the caller's to close; one the
    app builds itself is closed when the app shuts down, and so is the database's connection pool.
    """
    settings = settings or load_settings()
    owns_manager = manager is None
    manager = manager or build_manager(settings)
    database = Database(database_url or settings.database_url, settings.data_dir)
    database.create_tables()
    services = Services(settings, database, manager, (AUTH_NAMESPACE, USERS_NAMESPACE))
    # Every cached read of a user is filed under "user:<id>". Any commit through the app's sessions that
    # inserts, updates or deletes a user row invalidates that tag, after the commit: the routes, the admin's
    # bulk UPDATE and background jobs need no invalidation code of their own.
    watch = invalidate_on_commit(User, tags="user:{id}", manager=manager, sessions=database.sessions)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        watch.remove()
        database.close()
        if owns_manager:
            await services.manager.aclose()
            services.manager.close()

    app = FastAPI(title="stashly auth example", lifespan=lifespan)
    app.state.services = services
    users_cache = Cached(namespace=USERS_NAMESPACE, manager=manager)  # the manager's default TTL (config "ttl")
    auth_cache = Cached(namespace=AUTH_NAMESPACE, ttl=settings.auth_cache_ttl, manager=manager)
    app.include_router(auth.build_router(auth_cache))
    app.include_router(users.build_router(users_cache))
    app.include_router(admin.build_router())
    app.include_router(cache.build_router())
    # The dashboard at /cache/ (data at /cache/stats.json). Open here for the demo: a production app mounts it
    # behind its own authentication, e.g. include_router(..., dependencies=[Depends(require_admin)]).
    app.include_router(stats_router(manager), prefix="/cache")
    app.add_exception_handler(ObjectDeletedError, _account_gone)
    app.add_exception_handler(StaleDataError, _account_gone)
    return app


async def _account_gone(request: Request, exc: Exception) -> Response:
    """The user of a valid token no longer exists: 401.

    ``get_current_user`` returns a lazy reference, so a deleted row shows up later: as ``ObjectDeletedError``
    when an attribute is loaded, or ``StaleDataError`` when an update matches no row.
    """
    return await http_exception_handler(request, unauthorized("this account no longer exists"))
