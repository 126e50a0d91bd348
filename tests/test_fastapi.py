"""The FastAPI integration: dependency injection kept, per-user keys, context left out, HTTP semantics."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, make_transient_to_detached, mapped_column
from sqlalchemy.pool import StaticPool

from stashly import Cached, CacheManager, UnstableKeyError
from stashly.integrations.fastapi import etag, if_none_match

from tests.support import BACKENDS, backend_url

pytestmark = pytest.mark.timeout(60)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))


class UserRead(BaseModel):
    id: int
    email: str


class Calls:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def tick(self) -> None:
        with self.lock:
            self.count += 1


@pytest.fixture(params=BACKENDS)
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    url = backend_url(request, request.param)
    with CacheManager(url=url) as cm:
        yield cm


def build_app(manager: CacheManager, calls: Calls) -> FastAPI:
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add_all([User(id=i, email=f"user{i}@example.com") for i in range(1, 4)])
        db.commit()
    cache = Cached(namespace="auth", ttl=60, manager=manager)
    app = FastAPI()

    def get_db() -> Iterator[Session]:
        with Session(engine) as db:
            yield db

    def current_user(authorization: Annotated[str, Header()], db: Session = Depends(get_db)) -> User:
        user = User(id=int(authorization.removeprefix("Bearer ")))
        make_transient_to_detached(user)  # a reference to the row: no query until an attribute is read
        db.add(user)
        return user

    @app.get("/me", response_model=UserRead)
    @cache.cached(http=True)
    def get_me(user: User = Depends(current_user)) -> UserRead:
        calls.tick()
        return UserRead(id=user.id, email=user.email)

    @app.get("/async/me", response_model=UserRead)
    @cache.cached(http=True)
    async def get_me_async(user: Annotated[User, Depends(current_user)]) -> UserRead:
        calls.tick()
        return UserRead(id=user.id, email=f"user{user.id}@example.com")

    @app.get("/plain/me")
    @cache.cached
    def plain_me(request: Request, user: User = Depends(current_user)) -> UserRead:
        calls.tick()
        return UserRead(id=user.id, email=user.email)

    @app.get("/users/{user_id}")
    @cache.cached(http=True)
    def get_user(user_id: int, db: Session = Depends(get_db)) -> UserRead:
        calls.tick()
        user = db.get(User, user_id)
        if user is None:
            raise HTTPException(404, "no such user")
        return UserRead(id=user.id, email=user.email)

    @app.patch("/me")
    @cache.remove(get_me)
    def patch_me(email: str, user: User = Depends(current_user), db: Session = Depends(get_db)) -> dict[str, str]:
        user.email = email
        db.commit()
        return {"ok": "yes"}

    return app


@pytest.fixture
async def client(manager: CacheManager) -> AsyncIterator[tuple[httpx.AsyncClient, Calls]]:
    calls = Calls()
    transport = httpx.ASGITransport(app=build_app(manager, calls))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http, calls


def auth(user_id: int, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_id}", **headers}


@pytest.mark.parametrize("path", ["/me", "/async/me"])
async def test_cached_per_user_with_http_semantics(client: Any, path: str) -> None:
    http, calls = client
    first = await http.get(path, headers=auth(1))
    second = await http.get(path, headers=auth(1))
    other = await http.get(path, headers=auth(2))
    assert first.json() == second.json() == {"id": 1, "email": "user1@example.com"}
    assert other.json()["id"] == 2
    assert (first.headers["x-cache"], second.headers["x-cache"], other.headers["x-cache"]) == ("MISS", "HIT", "MISS")
    assert calls.count == 2
    assert first.headers["etag"] == second.headers["etag"] != other.headers["etag"]
    assert first.headers["cache-control"].startswith("private, max-age=")
    assert 0 < int(second.headers["cache-control"].rsplit("=", 1)[1]) <= 60
    assert "Authorization" in first.headers["vary"]


@pytest.mark.parametrize("path", ["/me", "/async/me"])
async def test_if_none_match_gives_304_only_for_the_same_users_entry(client: Any, path: str) -> None:
    http, calls = client
    tag = (await http.get(path, headers=auth(1))).headers["etag"]
    not_modified = await http.get(path, headers=auth(1, **{"If-None-Match": tag}))
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == tag
    stolen = await http.get(path, headers=auth(2, **{"If-None-Match": tag}))
    assert stolen.status_code == 200
    assert stolen.json()["id"] == 2
    weak = await http.get(path, headers=auth(1, **{"If-None-Match": f'"other", W/{tag}'}))
    assert weak.status_code == 304
    assert calls.count == 2


async def test_client_no_cache_revalidates_but_never_recomputes(client: Any) -> None:
    http, calls = client
    await http.get("/me", headers=auth(1))
    again = await http.get("/me", headers=auth(1, **{"Cache-Control": "no-cache", "Pragma": "no-cache"}))
    assert again.headers["x-cache"] == "HIT"
    assert calls.count == 1


async def test_unauthenticated_is_rejected_before_any_cache_lookup(client: Any) -> None:
    http, calls = client
    await http.get("/me", headers=auth(1))
    assert (await http.get("/me")).status_code == 422  # the Header dependency failed: no entry consulted
    assert calls.count == 1


async def test_public_endpoint_and_errors_not_cached(client: Any) -> None:
    http, calls = client
    first = await http.get("/users/2")
    second = await http.get("/users/2")
    assert second.json() == {"id": 2, "email": "user2@example.com"}
    assert second.headers["x-cache"] == "HIT"
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert "vary" not in first.headers
    with_credentials = await http.get("/users/2", headers=auth(1))
    assert with_credentials.headers["cache-control"].startswith("private")
    assert (await http.get("/users/99")).status_code == 404
    assert (await http.get("/users/99")).status_code == 404
    assert calls.count == 3  # users/2 once, the 404 twice: errors are never cached


async def test_remove_decorator_invalidates_exactly_that_user(client: Any) -> None:
    http, _ = client
    await http.get("/me", headers=auth(1))
    await http.get("/me", headers=auth(2))
    assert (await http.patch("/me", params={"email": "new@example.com"}, headers=auth(1))).status_code == 200
    fresh = await http.get("/me", headers=auth(1))
    assert fresh.json()["email"] == "new@example.com"
    assert fresh.headers["x-cache"] == "MISS"
    assert (await http.get("/me", headers=auth(2))).headers["x-cache"] == "HIT"


async def test_plain_cached_endpoint_ignores_request_and_keys_orm_rows(client: Any) -> None:
    http, calls = client
    for _ in range(2):
        for user_id in (1, 2, 3):
            assert (await http.get("/plain/me", headers=auth(user_id))).json()["id"] == user_id
    assert calls.count == 3


def test_orm_instance_without_identity_is_unstable(manager: CacheManager) -> None:
    cache = Cached(namespace="orm", manager=manager)

    @cache.cached
    def describe(user: User) -> int:
        return 1

    with pytest.raises(UnstableKeyError, match="user"):
        describe(User(email="transient, no primary key yet"))
    detached = User(id=7)
    make_transient_to_detached(detached)
    assert describe.cache_key(detached) == describe.cache_key(_detached(7))
    assert describe.cache_key(detached) != describe.cache_key(_detached(8))


def _detached(user_id: int) -> User:
    user = User(id=user_id, email="state does not matter")
    make_transient_to_detached(user)
    return user


def test_validators() -> None:
    tag = etag("stashly:auth:k", b"payload")
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert len(tag) == 34
    assert tag == etag("stashly:auth:k", b"payload")
    assert tag != etag("stashly:auth:other", b"payload")
    assert if_none_match(tag, tag)
    assert if_none_match(f'"x", W/{tag}', tag)
    assert if_none_match("*", tag)
    assert not if_none_match('"x"', tag)
    assert not if_none_match(None, tag)


def test_invalidating_an_endpoint_directly_leaves_depends_markers_out(manager: CacheManager) -> None:
    calls = Calls()
    app = build_app(manager, calls)
    get_user = next(route.endpoint for route in app.routes if getattr(route, "path", "") == "/users/{user_id}")
    assert get_user.cache_key(user_id=2) == get_user.cache_key(2, object.__new__(Session))
    assert get_user.invalidate(user_id=2) is False  # no UnstableKeyError for the Depends(get_db) default
