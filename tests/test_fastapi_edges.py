"""FastAPI edges: what is stored for endpoints with a response model, Vary/private, and the advertised max-age."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
import redis
from fastapi import Cookie, Depends, FastAPI, Header, Request, Response
from fastapi.requests import HTTPConnection
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from stashly import Cached, CacheManager, SerializationError

pytestmark = pytest.mark.timeout(60)

SECRET = "$argon2id$v=19$secret-hash-of-user-1"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    hashed_password: Mapped[str] = mapped_column(String(200))


class UserPublic(BaseModel):
    id: int
    email: str
    nickname: str | None = None


class Aliased(BaseModel):
    user_id: int = Field(alias="userId")
    nickname: str | None = None


class UserInDB(UserPublic):
    """A row as a Pydantic model (SQLModel's table models are Pydantic models too)."""

    hashed_password: str


@pytest.fixture
def manager(redis_url: str) -> Iterator[CacheManager]:
    with CacheManager(url=redis_url, ttl_jitter=0.5) as cm:
        yield cm


def build_app(manager: CacheManager) -> FastAPI:
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add(User(id=1, email="user1@example.com", hashed_password=SECRET))
        db.commit()
    cache = Cached(namespace="edges", ttl=100, manager=manager)
    app = FastAPI()

    def get_db() -> Iterator[Session]:
        with Session(engine) as db:
            yield db

    @app.get("/model/me", response_model=UserPublic)
    @cache.cached(http=True)
    def by_response_model(db: Session = Depends(get_db)) -> Any:
        return db.get(User, 1)

    @app.get("/annotated/me")
    @cache.cached(http=True)
    def by_annotation(db: Session = Depends(get_db)) -> UserPublic:
        return db.get(User, 1)  # type: ignore[return-value]  # FastAPI validates the row into UserPublic

    @app.get("/async/me", response_model=UserPublic, response_model_exclude_unset=True)
    @cache.cached(http=True)
    async def by_model_async(db: Session = Depends(get_db)) -> Any:
        return db.get(User, 1)

    @app.get("/excluding/me", response_model=UserPublic, response_model_exclude={"email"})
    @cache.cached(http=True)
    def excluding(db: Session = Depends(get_db)) -> Any:
        return db.get(User, 1)

    @app.get("/plain/me", response_model=UserPublic)
    @cache.cached
    def plain_me() -> UserPublic:
        return UserInDB(id=1, email="user1@example.com", hashed_password=SECRET)

    @app.get("/plain/row", response_model=UserPublic)
    @cache.cached
    def plain_row(db: Session = Depends(get_db)) -> UserPublic:
        return db.get(User, 1)  # type: ignore[return-value]

    @app.get("/aliased", response_model=Aliased, response_model_by_alias=False, response_model_exclude_none=True)
    @cache.cached(http=True)
    def aliased(db: Session = Depends(get_db)) -> Any:
        return {"userId": 1, "nickname": None, "hashed_password": SECRET}

    def by_language(response: Response) -> None:
        response.headers["Vary"] = "Accept-Language"

    @app.get("/localized", dependencies=[Depends(by_language)])
    @cache.cached(http=True)
    def localized(x_tenant: Annotated[str, Header()]) -> dict[str, str]:
        return {"tenant": x_tenant}

    @app.get("/tenant")
    @cache.cached(http=True)
    def tenant(x_tenant: Annotated[str, Header()]) -> dict[str, str]:
        return {"tenant": x_tenant}

    def region(region: Annotated[str, Header(alias="X-Region")]) -> str:
        return region

    @app.get("/region")
    @cache.cached(http=True)
    def in_region(db: Session = Depends(get_db), r: str = Depends(region, use_cache=True)) -> dict[str, str]:
        return {"region": r}

    @app.get("/theme")
    @cache.cached(http=True)
    def theme(theme: Annotated[str | None, Cookie()] = None) -> dict[str, str | None]:
        return {"theme": theme}

    def reads_request(request: Request) -> None:
        return None

    @app.get("/raw", dependencies=[Depends(reads_request)])
    @cache.cached(http=True)
    def raw() -> dict[str, int]:
        return {"n": 1}

    @app.get("/secured", dependencies=[Depends(HTTPBearer(auto_error=False))])
    @cache.cached(http=True)
    def secured() -> dict[str, int]:
        return {"n": 2}

    def session_from_app(request: Request) -> Iterator[Session]:
        with Session(engine) as db:  # found through request.app in a real application
            yield db

    @app.get("/via-app")
    @cache.cached(http=True)
    def via_app(db: Session = Depends(session_from_app)) -> dict[str, str]:
        user = db.get(User, 1)
        return {"email": user.email if user else ""}

    @app.get("/connection")
    @cache.cached(http=True)
    def connection(conn: HTTPConnection) -> dict[str, int]:
        return {"n": 4}

    @app.get("/open")
    @cache.cached(http=True)
    def open_to_all() -> dict[str, int]:
        return {"n": 3}

    return app


@pytest.fixture
async def http(manager: CacheManager) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def stored_bytes(redis_url: str) -> list[bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return [client.get(key) or b"" for key in client.scan_iter(match="*edges*")]


@pytest.mark.parametrize("path", ["/model/me", "/annotated/me", "/async/me"])
async def test_an_orm_row_is_stored_as_the_response_model_sends_it(
    http: httpx.AsyncClient, redis_url: str, path: str
) -> None:
    miss = await http.get(path)
    hit = await http.get(path)
    assert (miss.status_code, hit.status_code) == (200, 200)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert hit.content == miss.content
    assert "hashed_password" not in miss.json()
    entries = stored_bytes(redis_url)
    assert len(entries) == 1
    assert b"hashed_password" not in entries[0]
    assert SECRET.encode() not in entries[0]
    assert b"user1@example.com" in entries[0]


@pytest.mark.parametrize("path", ["/plain/me", "/plain/row"])
async def test_plain_cached_stores_what_the_return_annotation_declares(
    http: httpx.AsyncClient, redis_url: str, path: str
) -> None:
    miss = await http.get(path)
    hit = await http.get(path)
    assert miss.status_code == hit.status_code == 200
    assert hit.json() == miss.json() == {"id": 1, "email": "user1@example.com", "nickname": None}
    (entry,) = stored_bytes(redis_url)
    assert b"hashed_password" not in entry
    assert SECRET.encode() not in entry


def test_a_result_that_does_not_fit_its_annotation_is_refused(manager: CacheManager) -> None:
    cache = Cached(namespace="edges", manager=manager)

    @cache.cached
    def wrong() -> UserPublic:
        return {"id": "not a number"}  # type: ignore[return-value]

    with pytest.raises(SerializationError, match="does not validate as the return annotation UserPublic"):
        wrong()


async def test_exclude_unset_is_honoured_on_hit_and_miss(http: httpx.AsyncClient) -> None:
    miss = await http.get("/async/me")
    hit = await http.get("/async/me")
    assert miss.json() == hit.json() == {"id": 1, "email": "user1@example.com"}  # the row has no nickname


async def test_by_alias_and_exclude_none_are_honoured(http: httpx.AsyncClient, redis_url: str) -> None:
    miss = await http.get("/aliased")
    hit = await http.get("/aliased")
    assert miss.json() == hit.json() == {"user_id": 1}
    assert hit.headers["x-cache"] == "HIT"
    (entry,) = stored_bytes(redis_url)
    assert SECRET.encode() not in entry


async def test_response_model_exclude_is_honoured_and_never_stored(http: httpx.AsyncClient, redis_url: str) -> None:
    miss = await http.get("/excluding/me")
    hit = await http.get("/excluding/me")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert miss.json() == hit.json() == {"id": 1, "nickname": None}
    (entry,) = stored_bytes(redis_url)
    assert b"user1@example.com" not in entry
    assert SECRET.encode() not in entry


async def test_a_header_parameter_is_in_vary(http: httpx.AsyncClient) -> None:
    a = await http.get("/tenant", headers={"X-Tenant": "a"})
    b = await http.get("/tenant", headers={"X-Tenant": "b"})
    assert (a.json(), b.json()) == ({"tenant": "a"}, {"tenant": "b"})
    assert a.headers["cache-control"].startswith("public, ")
    assert [v.strip().lower() for v in a.headers["vary"].split(",")] == ["x-tenant"]
    region = await http.get("/region", headers={"X-Region": "eu"})
    assert "x-region" in region.headers["vary"].lower()


async def test_a_dependencys_own_vary_is_kept(http: httpx.AsyncClient) -> None:
    for _ in range(2):  # the miss and the hit
        response = await http.get("/localized", headers={"X-Tenant": "a"})
        assert [v.strip().lower() for v in response.headers["vary"].split(",")] == ["accept-language", "x-tenant"]


@pytest.mark.parametrize("path", ["/theme", "/raw", "/secured", "/connection"])
async def test_cookies_raw_requests_and_security_schemes_are_private(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("private, ")
    assert "cookie" in response.headers["vary"].lower()


@pytest.mark.parametrize("path", ["/open", "/via-app"])
async def test_open_endpoint_stays_public_without_vary(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("public, ")
    assert "vary" not in response.headers


async def test_a_miss_advertises_no_longer_than_the_entry_is_stored(
    http: httpx.AsyncClient, redis_url: str, manager: CacheManager
) -> None:
    miss = await http.get("/open")
    advertised = int(miss.headers["cache-control"].rsplit("max-age=", 1)[1])
    # ttl=100 with ttl_jitter=0.5: the entry lives between 50 and 100 seconds; only 50 is a promise.
    assert advertised == math.floor(100 * (1 - manager.settings.ttl_jitter)) == 50


def test_a_subclass_with_aliased_fields_is_narrowed_to_its_annotation(manager: CacheManager, redis_url: str) -> None:
    class Public(BaseModel):
        user_id: int = Field(alias="userId")

    class Private(Public):
        token: str

    cache = Cached(namespace="edges", manager=manager)

    @cache.cached
    def load() -> Public:
        return Private(userId=7, token="secret-token")

    assert load().user_id == 7  # narrowing validates by alias, as the model asks: no SerializationError
    (entry,) = stored_bytes(redis_url)
    assert b"secret-token" not in entry
