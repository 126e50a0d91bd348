"""``/admin``: change any account, at once (one ``UPDATE`` statement) or in a background task (the ORM).

Neither route invalidates anything itself: the commits do, through ``invalidate_on_commit`` (see ``app.py``),
whichever code path wrote the row. The routes answer 404 unless the app has an ``admin_key``, and 403 to a
request without it in ``X-Admin-Key``.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Header, HTTPException, Path, Response, status
from sqlalchemy.orm import Session

from .. import accounts, dependencies, schemas

__all__ = ["build_router"]


def require_admin(
    x_admin_key: Annotated[str | None, Header()] = None,
    services: dependencies.Services = Depends(dependencies.get_services),
) -> None:
    """Let the request through only with the app's admin key."""
    expected = services.settings.admin_key
    if expected is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    if x_admin_key is None or not secrets.compare_digest(x_admin_key.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a valid X-Admin-Key header is required")


def build_router() -> APIRouter:
    """The ``/admin`` routes."""
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.patch("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
    def update_user(
        user_id: Annotated[int, Path(ge=1)],
        changes: schemas.AdminUserUpdate,
        db: Session = Depends(dependencies.get_db),
    ) -> Response:
        """Change an account with one ``UPDATE ... WHERE id = ...`` statement."""
        try:
            found = accounts.admin_update(db, user_id, changes)
        except accounts.EmailTakenError:
            raise HTTPException(status.HTTP_409_CONFLICT, "this email is already in use") from None
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/users/{user_id}/deactivate", status_code=status.HTTP_202_ACCEPTED)
    def deactivate_user(
        user_id: Annotated[int, Path(ge=1)],
        background: BackgroundTasks,
        services: dependencies.Services = Depends(dependencies.get_services),
    ) -> dict[str, str]:
        """Deactivate an account after the response is sent, in a session of the background task's own."""

        def job() -> None:
            with services.database.session() as db:
                accounts.deactivate(db, user_id)

        background.add_task(job)
        return {"status": "accepted"}

    return router
