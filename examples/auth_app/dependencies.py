"""FastAPI dependencies: the app's services, a database session per request, and the current user."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, make_transient_to_detached

from stashly import CacheManager

from . import models, security
from .config import AppSettings
from .db import Database

__all__ = ["Services", "get_current_user", "get_db", "get_services", "oauth2_scheme", "services_of", "unauthorized"]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token")


@dataclass(frozen=True)
class Services:
    """What one app instance runs on; kept on ``app.state`` so that several apps can live in one process."""

    settings: AppSettings
    database: Database
    manager: CacheManager
    namespaces: tuple[str, ...]


def services_of(app: FastAPI) -> Services:
    """The services of an app built by :func:`~examples.auth_app.app.create_app`."""
    return cast(Services, app.state.services)


def get_services(request: Request) -> Services:
    """The services of the app serving this request."""
    return services_of(cast(FastAPI, request.app))


def get_db(services: Services = Depends(get_services)) -> Iterator[Session]:
    """A session for the request, closed after it (a session opens a connection only when it queries)."""
    with services.database.session() as db:
        yield db


def unauthorized(detail: str) -> HTTPException:
    """A 401 with the ``WWW-Authenticate`` challenge OAuth2 bearer clients expect."""
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def get_current_user(
    token: str = Depends(oauth2_scheme),
    db: Session = Depends(get_db),
    services: Services = Depends(get_services),
) -> models.User:
    """The user the bearer token was issued to, as a *lazy reference* to the row: no query is run here.

    The token's signature and expiry prove who is asking; the row is not needed for that. So instead of
    ``db.get(User, uid)`` this builds ``User(id=uid)``, marks it as the detached copy of an existing row and
    adds it to the session: its other attributes load on first access. That is what makes a cache hit cost
    zero user queries — stashly keys an ORM instance by class and primary key without loading it, and the
    endpoint body (which reads the attributes) does not run on a hit.

    The price: a token stays valid until it expires even if the account is deactivated (login refuses
    inactive accounts), and a deleted account is noticed only when an attribute is read, on a cache miss —
    the app answers that ``ObjectDeletedError`` with 401 (see ``app.py``). A cached ``/auth/me`` of a
    deleted account is served until its entry expires or is invalidated.
    """
    user_id = security.verify_token(token, secret=services.settings.secret_key)
    if user_id is None:
        raise unauthorized("invalid or expired token")
    user = models.User(id=user_id)
    make_transient_to_detached(user)
    db.add(user)
    return user
