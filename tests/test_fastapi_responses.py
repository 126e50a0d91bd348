"""FastAPI http=True: the response a hit sends is the one the miss sent, and nothing is shared it should not be.

The body is stored serialized and sent as it is (a model that does not read back its own JSON still works),
the status and headers the endpoint sets are replayed, the endpoint's own ``Request``/``Response`` are
filled, and guards added by ``include_router``, request bodies and cookies being set make a response private.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import APIKeyHeader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, field_serializer

from stashly import Cached, CacheManager, ConfigError, keys

pytestmark = pytest.mark.timeout(60)


class Aliased(BaseModel):
    id: int = Field(serialization_alias="userId")  # sent as userId, read back as id: it does not round-trip


class Stamped(BaseModel):
    at: datetime

    @field_serializer("at")
    def _day(self, at: datetime) -> str:
        return at.strftime("%d/%m/%Y")  # not a format a datetime validates from


class Profile(BaseModel):
    id: int
    email: str


class ProfileWithRole(Profile):
    role: str = "member"


@pytest.fixture(params=["json", "pickle"])
def manager(redis_url: str, request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    with CacheManager(url=redis_url, serializer=request.param, secrets=["s" * 32]) as cm:
        yield cm


def build_app(manager: CacheManager, calls: list[str], profile_model: type[BaseModel] = Profile) -> FastAPI:
    cache = Cached(namespace="responses", ttl=60, manager=manager)
    app = FastAPI()

    @app.get("/aliased", response_model=Aliased)
    @cache.cached(http=True)
    def aliased() -> Any:
        calls.append("aliased")
        return {"id": 1}

    @app.get("/stamped")
    @cache.cached(http=True)
    async def stamped() -> Stamped:
        calls.append("stamped")
        return Stamped(at=datetime(2024, 1, 31, tzinfo=UTC))

    @app.get("/profile", response_model=profile_model)
    @cache.cached(http=True)
    def profile() -> Any:
        calls.append("profile")
        return {"id": 1, "email": "a@example.com", "role": "admin"}

    @app.get("/own-request")
    @cache.cached(http=True)
    def own_request(request: Request) -> dict[str, str]:
        calls.append("own-request")
        return {"path": request.url.path}

    @app.get("/created", status_code=201)
    @cache.cached(http=True)
    async def created(response: Response) -> dict[str, int]:
        calls.append("created")
        response.status_code = 203
        response.headers["X-Total-Count"] = "42"
        response.headers["Vary"] = "Accept-Language"
        return {"n": 1}

    @app.get("/unannotated")
    @cache.cached(http=True)
    def unannotated(response: Response):  # type: ignore[no-untyped-def]  # no response model at all
        calls.append("unannotated")
        response.headers["X-Page"] = "1"
        return {"when": datetime(2024, 1, 31, tzinfo=UTC)}

    @app.get("/text", response_class=PlainTextResponse)
    @cache.cached(http=True)
    def text() -> str:
        calls.append("text")
        return "plain words"

    def session(response: Response) -> None:
        response.set_cookie("sid", "someone's session")

    @app.get("/sets-cookie", dependencies=[Depends(session)])
    @cache.cached(http=True)
    def sets_cookie() -> dict[str, int]:
        return {"n": 1}

    @app.get("/endpoint-cookie")
    @cache.cached(http=True)
    def endpoint_cookie(response: Response) -> dict[str, int]:
        calls.append("endpoint-cookie")
        response.set_cookie("sid", "the first caller's session")
        return {"n": 1}

    @app.post("/search")
    @cache.cached(http=True)
    def search(query: Profile) -> dict[str, str]:
        return {"email": query.email}

    router = APIRouter()

    @router.get("/guarded")
    @cache.cached(http=True)
    def guarded() -> dict[str, str]:
        return {"secret": "for key holders only"}

    app.include_router(router, prefix="/v1", dependencies=[Security(APIKeyHeader(name="X-API-Key"))])
    return app


@pytest.fixture
async def http(manager: CacheManager) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    calls: list[str] = []
    async with client(build_app(manager, calls)) as c:
        yield c, calls


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def stored(redis_url: str) -> list[bytes]:
    with redis.Redis.from_url(redis_url) as raw:
        return [raw.get(key) or b"" for key in raw.scan_iter(match="*responses*")]


@pytest.mark.parametrize(
    ("path", "body"), [("/aliased", {"userId": 1}), ("/stamped", {"at": "31/01/2024"}), ("/text", "plain words")]
)
async def test_a_body_that_does_not_read_back_is_sent_as_stored(http: Any, path: str, body: object) -> None:
    client, calls = http
    miss = await client.get(path)
    hit = await client.get(path)
    assert (miss.status_code, hit.status_code) == (200, 200)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert hit.content == miss.content
    assert (miss.json() if isinstance(body, dict) else miss.text) == body
    assert hit.headers["content-type"] == miss.headers["content-type"]
    assert len(calls) == 1


async def test_a_changed_response_model_never_reads_the_old_entry(manager: CacheManager) -> None:
    calls: list[str] = []
    async with client(build_app(manager, calls)) as before:
        assert (await before.get("/profile")).json() == {"id": 1, "email": "a@example.com"}
    async with client(build_app(manager, calls, ProfileWithRole)) as after:  # the next deploy
        response = await after.get("/profile")
    assert response.headers["x-cache"] == "MISS"
    assert response.json() == {"id": 1, "email": "a@example.com", "role": "admin"}  # not the default "member"
    assert calls == ["profile", "profile"]


async def test_the_endpoints_own_request_is_filled(http: Any) -> None:
    client, calls = http
    miss = await client.get("/own-request")
    hit = await client.get("/own-request")
    assert miss.status_code == hit.status_code == 200
    assert miss.json() == hit.json() == {"path": "/own-request"}
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert miss.headers["cache-control"].startswith("private, ")  # it may read anything in the request
    assert calls == ["own-request"]


@pytest.mark.parametrize("revalidate", [False, True])
async def test_status_and_headers_set_by_the_endpoint_are_replayed_on_a_hit(http: Any, revalidate: bool) -> None:
    client, calls = http
    miss = await client.get("/created")
    headers = {"If-None-Match": miss.headers["etag"]} if revalidate else {}
    hit = await client.get("/created", headers=headers)
    assert (miss.status_code, hit.status_code) == (203, 304 if revalidate else 203)
    for response in (miss, hit):
        assert response.headers["x-total-count"] == "42"
        assert [v.strip() for v in response.headers["vary"].split(",")] == ["Accept-Language"]
    assert hit.headers["x-cache"] == "HIT"
    assert calls == ["created"]


async def test_without_a_response_model_the_json_the_client_got_is_stored(http: Any, redis_url: str) -> None:
    client, calls = http
    miss = await client.get("/unannotated")
    hit = await client.get("/unannotated")
    assert miss.json() == hit.json() == {"when": "2024-01-31T00:00:00+00:00"}
    assert miss.headers["x-page"] == hit.headers["x-page"] == "1"
    assert calls == ["unannotated"]
    (entry,) = stored(redis_url)
    assert b"2024-01-31T00:00:00+00:00" in entry  # the JSON string the client got, not a datetime


async def test_a_response_setting_a_cookie_is_private(http: Any) -> None:
    client, _ = http
    for _ in range(2):  # the dependency sets it on the miss and on the hit
        response = await client.get("/sets-cookie")
        assert "sid=" in response.headers["set-cookie"]
        assert response.headers["cache-control"].startswith("private, ")


async def test_a_cookie_the_endpoint_sets_is_never_stored_or_replayed(http: Any, redis_url: str) -> None:
    client, calls = http
    miss = await client.get("/endpoint-cookie")
    hit = await client.get("/endpoint-cookie")
    assert miss.headers["cache-control"].startswith("private, ")
    assert "set-cookie" not in hit.headers
    assert hit.headers["x-cache"] == "HIT"
    assert calls == ["endpoint-cookie"]
    (entry,) = stored(redis_url)
    assert b"session" not in entry


async def test_a_request_body_makes_the_response_private(http: Any) -> None:
    client, _ = http
    response = await client.post("/search", json={"id": 1, "email": "b@example.com"})
    assert response.json() == {"email": "b@example.com"}
    assert response.headers["cache-control"].startswith("private, ")  # a shared cache keys on the URL only


async def test_a_guard_added_by_include_router_makes_the_response_private(http: Any) -> None:
    client, _ = http
    assert (await client.get("/v1/guarded")).status_code == 401
    response = await client.get("/v1/guarded", headers={"X-API-Key": "k"})
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("private, ")


async def test_a_direct_call_never_returns_a_stored_response_body(http: Any, manager: CacheManager) -> None:
    client, calls = http
    await client.get("/profile")
    app_routes = [route for route in client._transport.app.routes if getattr(route, "path", "") == "/profile"]
    endpoint = app_routes[0].endpoint  # type: ignore[attr-defined]
    assert endpoint() == {"id": 1, "email": "a@example.com", "role": "admin"}  # computed, not the entry
    assert calls == ["profile", "profile"]


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_waiter_on_another_process_lock_takes_the_stored_response(redis_url: str, is_async: bool) -> None:
    """lock=True: the entry another process stores while this one waits is read as the route stores it."""
    calls: list[str] = []
    with CacheManager(url=redis_url) as cm:
        cache = Cached(namespace="responses", ttl=60, manager=cm)
        app = FastAPI()

        def compute() -> Profile:
            calls.append("locked")
            return Profile(id=1, email="a@example.com")

        async def acompute() -> Profile:
            return compute()

        cached = cache.cached(http=True, lock=True, lock_lease=20)
        locked = app.get("/locked")(cached(acompute if is_async else compute))

        async with client(app) as web:
            assert (await web.get("/locked")).headers["x-cache"] == "MISS"
            key = locked.cache_key()
            with redis.Redis.from_url(redis_url) as raw:
                entry = raw.get(key)
                assert entry is not None
                raw.delete(key)
                raw.set(keys.lock_key(cm.settings.prefix, key), b"another process", px=20_000)
                waiter = asyncio.create_task(web.get("/locked"))
                # The waiter missed, found the lock taken and polled the entry at least once.
                deadline = time.monotonic() + 30
                while cm.stats().misses < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                raw.set(key, entry, ex=60)  # what the other process stores
                answer = await asyncio.wait_for(waiter, 60)
    assert answer.status_code == 200
    assert answer.json() == {"id": 1, "email": "a@example.com"}
    assert answer.headers["x-cache"] == "MISS"
    assert calls == ["locked"]  # the waiter took the stored response instead of computing it again


def test_refresh_ahead_with_http_is_refused_at_decoration(manager: CacheManager) -> None:
    cache = Cached(namespace="responses", ttl=60, manager=manager)
    with pytest.raises(ConfigError, match="refresh_ahead does not combine with http=True"):

        @cache.cached(http=True, refresh_ahead=0.2)
        def endpoint() -> dict[str, int]:  # was silently never refreshed ahead
            return {"n": 1}


class Account(BaseModel):
    id: int
    login: str = Field(alias="userLogin")
    nickname: str | None = None
    plan: str = "free"
    hashed_password: str = "secret-hash-default"


_FIELDS = ("id", "login", "nickname", "plan", "hashed_password")
_serial = iter(range(1_000_000))


@settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    exclude=st.sets(st.sampled_from(_FIELDS)),
    flags=st.fixed_dictionaries({f: st.booleans() for f in ("exclude_unset", "exclude_defaults", "exclude_none")}),
    by_alias=st.booleans(),
    given_fields=st.fixed_dictionaries(
        {}, optional={"nickname": st.none() | st.text(max_size=5), "plan": st.sampled_from(["free", "pro"])}
    ),
    secret=st.text(alphabet="abcdefghij", min_size=12, max_size=12),
)
def test_a_hit_sends_what_fastapi_sends_uncached(
    redis_url: str,
    exclude: set[str],
    flags: dict[str, bool],
    by_alias: bool,
    given_fields: dict[str, Any],
    secret: str,
) -> None:
    """The oracle is FastAPI itself: the same route without stashly. Excluded fields never reach Redis."""
    exclude = exclude | {"hashed_password"}  # the secret is always filtered out
    options: dict[str, Any] = {f"response_model_{name}": on for name, on in flags.items()}
    route = {"response_model": Account, "response_model_exclude": exclude, "response_model_by_alias": by_alias}
    namespace = f"prop{next(_serial)}"

    def row() -> Account:
        return Account(id=1, userLogin="ann", hashed_password=secret, **given_fields)

    async def scenario() -> None:
        with CacheManager(url=redis_url) as cm:
            app = FastAPI()
            app.get("/cached", **route, **options)(
                Cached(namespace=namespace, ttl=60, manager=cm).cached(http=True)(row)
            )
            app.get("/plain", **route, **options)(row)
            async with client(app) as web:
                plain, miss, hit = await web.get("/plain"), await web.get("/cached"), await web.get("/cached")
        assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
        assert plain.json() == miss.json() == hit.json()
        assert miss.content == hit.content
        with redis.Redis.from_url(redis_url) as raw:
            entries = [raw.get(key) or b"" for key in raw.scan_iter(match=f"*{namespace}*")]
        assert len(entries) == 1
        assert secret.encode() not in entries[0]

    asyncio.run(scenario())
