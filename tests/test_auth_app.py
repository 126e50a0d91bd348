"""End to end: the example auth app (examples/auth_app) on a real uvicorn server, called over HTTP with httpx.

Every test serves a fresh app (its own database and cache manager) on a free loopback port, on the memory
backend and on a private redis-server, through the sync (``/auth/me``) and async (``/auth/async/me``) variants
of the cached endpoint. "Served from cache" is proved by counting the SQL statements that touch the
``users`` table, through SQLAlchemy's ``before_cursor_execute`` event on the app's engine.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import Engine, delete, event
from sqlalchemy.orm import Session

from stashly import CacheManager

from tests.harness.server import RedisServer
from tests.support import aeventually

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the example is a package of the checkout, not of the installed distribution
    sys.path.insert(0, str(ROOT))

from examples.auth_app import accounts, models  # noqa: E402
from examples.auth_app.app import create_app  # noqa: E402
from examples.auth_app.config import AppSettings  # noqa: E402
from examples.auth_app.db import Database  # noqa: E402
from examples.auth_app.dependencies import services_of  # noqa: E402
from examples.auth_app.server import BackgroundServer  # noqa: E402

pytestmark = pytest.mark.timeout(120)

AUTH_TTL = 60
ADMIN_KEY = "test-admin-key"
ME_PATHS = pytest.mark.parametrize("path", ["/auth/me", "/auth/async/me"], ids=["sync", "async"])
_USERS_TABLE = re.compile(r"\busers\b", re.IGNORECASE)


class Account(NamedTuple):
    id: int
    email: str
    password: str
    full_name: str


class QueryCounter:
    """Counts the SQL statements an engine runs against the ``users`` table (from any thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        if _USERS_TABLE.search(statement):
            with self._lock:
                self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


@dataclass
class Service:
    """One running app: its URL, its cache manager, its seeded accounts, and a user-query counter."""

    url: str
    manager: CacheManager
    accounts: list[Account]
    queries: QueryCounter
    engine: Engine
    database: Database

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)

    async def login(self, http: httpx.AsyncClient, account: Account) -> dict[str, str]:
        """The ``Authorization`` header of a fresh token for ``account``, obtained through ``POST /auth/token``."""
        response = await http.post("/auth/token", data={"username": account.email, "password": account.password})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        return {"Authorization": f"Bearer {body['access_token']}"}

    async def measured(self, request: Awaitable[httpx.Response]) -> tuple[httpx.Response, int]:
        """A response and the number of user queries the server ran for it (requests must not overlap)."""
        before = self.queries.count
        response = await request
        return response, self.queries.count - before


@contextmanager
def running(manager: CacheManager, database_url: str, users: int = 3) -> Iterator[Service]:
    """Build an app on ``database_url`` with ``users`` accounts and serve it until the block ends."""
    settings = AppSettings(
        secret_key="test-secret-key", password_iterations=1_000, auth_cache_ttl=AUTH_TTL, admin_key=ADMIN_KEY
    )
    app = create_app(manager=manager, database_url=database_url, settings=settings)
    services = services_of(app)
    seeded = []
    with services.database.session() as db:
        for i in range(1, users + 1):
            email, password, name = f"user{i}@example.com", f"password-{i}", f"User {i}"
            user = accounts.create_user(db, email=email, password=password, full_name=name, iterations=1_000)
            seeded.append(Account(user.id, email, password, name))
    queries = QueryCounter(services.database.engine)
    try:
        with BackgroundServer(app) as server:
            yield Service(server.url, manager, seeded, queries, services.database.engine, services.database)
    finally:
        queries.close()
        services.database.close()


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    with CacheManager(url=url) as cm:
        yield cm


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'auth_app.sqlite3'}"


@pytest.fixture
def service(manager: CacheManager, sqlite_url: str) -> Iterator[Service]:
    with running(manager, sqlite_url) as running_service:
        yield running_service


@contextmanager
def app_session(service: Service) -> Iterator[Session]:
    """A session of the app's own (its sessionmaker: the one whose commits invalidate), outside any request."""
    with service.database.session() as db:
        yield db


def expected_me(account: Account, **changes: Any) -> dict[str, Any]:
    body = {"id": account.id, "email": account.email, "full_name": account.full_name, "is_active": True}
    return {**body, **changes}


# -- the checks, shared by the SQLite and the PostgreSQL runs ----------------------------------------------------


async def check_served_from_cache(service: Service, path: str) -> None:
    alice = service.accounts[0]
    async with service.client() as http:
        headers = await service.login(http, alice)
        first, first_queries = await service.measured(http.get(path, headers=headers))
        second, second_queries = await service.measured(http.get(path, headers=headers))
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == expected_me(alice)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first_queries >= 1
    assert second_queries == 0


async def check_update_is_visible(service: Service) -> None:
    alice, bob = service.accounts[:2]
    paths = ("/auth/me", "/auth/async/me")
    async with service.client() as http:
        alice_auth, bob_auth = await service.login(http, alice), await service.login(http, bob)
        for path in paths:
            for auth in (alice_auth, bob_auth):
                assert (await http.get(path, headers=auth)).status_code == 200
        assert (await http.get(f"/users/{alice.id}")).json()["full_name"] == alice.full_name

        update = {"full_name": "Alice Liddell", "email": "alice.liddell@example.com"}
        patched = await http.patch("/auth/me", headers=alice_auth, json=update)
        assert patched.status_code == 200, patched.text
        assert patched.json() == expected_me(alice, **update)

        for path in paths:
            response, queries = await service.measured(http.get(path, headers=alice_auth))
            assert response.json() == expected_me(alice, **update), path
            assert response.headers["x-cache"] == "MISS"
            assert queries >= 1
            untouched, queries = await service.measured(http.get(path, headers=bob_auth))
            assert untouched.json() == expected_me(bob), path
            assert untouched.headers["x-cache"] == "HIT"
            assert queries == 0
        public = await http.get(f"/users/{alice.id}")
        assert public.json() == {"id": alice.id, "full_name": "Alice Liddell"}


async def check_every_write_path_is_visible(service: Service) -> None:
    """No route invalidates by hand: the admin's bulk UPDATE, a background task and a worker's own session all
    reach /auth/me and the public profile through the commit, and leave other users' entries cached."""
    alice, bob = service.accounts[2], service.accounts[1]  # the third account: other checks change the first
    admin = {"X-Admin-Key": ADMIN_KEY}
    paths = ("/auth/me", "/auth/async/me")
    async with service.client() as http:
        alice_auth, bob_auth = await service.login(http, alice), await service.login(http, bob)

        async def fill() -> None:
            for path in paths:
                for auth in (alice_auth, bob_auth):
                    assert (await http.get(path, headers=auth)).status_code == 200
            await http.get(f"/users/{alice.id}")  # 404 while the account is inactive (never cached)

        async def seen(**changes: Any) -> None:
            for path in paths:
                response = await http.get(path, headers=alice_auth)
                assert response.json() == expected_me(alice, **changes), path
                assert response.headers["x-cache"] == "MISS"
                untouched = await http.get(path, headers=bob_auth)
                assert (untouched.json(), untouched.headers["x-cache"]) == (expected_me(bob), "HIT"), path
            public = await http.get(f"/users/{alice.id}")
            if changes.get("is_active", True):
                assert public.json() == {"id": alice.id, "full_name": changes.get("full_name", alice.full_name)}
            else:
                assert public.status_code == 404  # an inactive account has no public profile

        await fill()
        patched = await http.patch(f"/admin/users/{alice.id}", headers=admin, json={"full_name": "By Admin"})
        assert patched.status_code == 204, patched.text
        await seen(full_name="By Admin")

        await fill()
        invalidated = service.manager.stats().tag_invalidations
        accepted = await http.post(f"/admin/users/{alice.id}/deactivate", headers=admin)
        assert accepted.status_code == 202
        # The job runs after the response; wait until its commit has invalidated, then read.
        assert await aeventually(lambda: service.manager.stats().tag_invalidations > invalidated)
        await seen(full_name="By Admin", is_active=False)

        await fill()

        def worker() -> None:
            with app_session(service) as db:
                user = db.get(models.User, alice.id)
                assert user is not None
                user.full_name, user.is_active = "By Worker", True
                db.commit()

        await asyncio.to_thread(worker)
        await seen(full_name="By Worker")


# -- 1. a second /auth/me is served from the cache ----------------------------------------------------------------


@ME_PATHS
async def test_second_me_is_served_from_cache_without_a_user_query(service: Service, path: str) -> None:
    await check_served_from_cache(service, path)


# -- 2. users never see each other's data --------------------------------------------------------------------------


@ME_PATHS
async def test_fifty_users_interleaved_concurrently_each_see_only_their_own_data(
    manager: CacheManager, sqlite_url: str, path: str
) -> None:
    with running(manager, sqlite_url, users=50) as service:
        async with service.client() as http:
            logins = await asyncio.gather(*(service.login(http, account) for account in service.accounts))
            calls = list(zip(service.accounts, logins, strict=True)) * 5
            # Round one starts cold (misses and hits mixed), round two runs on filled entries only.
            for round_number in (1, 2):
                random.Random(round_number).shuffle(calls)
                responses = await asyncio.gather(*(http.get(path, headers=auth) for _, auth in calls))
                for (account, _), response in zip(calls, responses, strict=True):
                    assert response.status_code == 200, response.text
                    assert response.json() == expected_me(account)
                if round_number == 2:
                    assert {response.headers["x-cache"] for response in responses} == {"HIT"}
    assert manager.count("auth") == 50


# -- 3. an update is visible at once, and only for its user ------------------------------------------------------


async def test_update_then_read_shows_the_new_value_and_leaves_other_users_cached(service: Service) -> None:
    await check_update_is_visible(service)


async def test_a_write_by_any_code_path_is_visible_on_the_next_read(service: Service) -> None:
    await check_every_write_path_is_visible(service)


async def test_admin_routes_need_the_admin_key(service: Service) -> None:
    alice = service.accounts[0]
    async with service.client() as http:
        for headers in ({}, {"X-Admin-Key": "wrong-admin-key"}):
            response = await http.patch(f"/admin/users/{alice.id}", headers=headers, json={"full_name": "X"})
            assert response.status_code == 403
        missing = await http.patch("/admin/users/999", headers={"X-Admin-Key": ADMIN_KEY}, json={"full_name": "X"})
        assert missing.status_code == 404
        auth = await service.login(http, alice)
        assert (await http.get("/auth/me", headers=auth)).json() == expected_me(alice)


async def test_update_to_a_taken_email_is_a_conflict_and_changes_nothing(service: Service) -> None:
    alice, bob = service.accounts[:2]
    async with service.client() as http:
        auth = await service.login(http, alice)
        assert (await http.get("/auth/me", headers=auth)).status_code == 200
        conflict = await http.patch("/auth/me", headers=auth, json={"email": bob.email})
        assert conflict.status_code == 409
        after = await http.get("/auth/me", headers=auth)
    assert after.json() == expected_me(alice)


# -- 4. validators and cache headers ----------------------------------------------------------------------------


@ME_PATHS
async def test_etag_304_and_cache_headers(service: Service, path: str) -> None:
    alice, bob = service.accounts[:2]
    async with service.client() as http:
        alice_auth, bob_auth = await service.login(http, alice), await service.login(http, bob)
        first = await http.get(path, headers=alice_auth)
        tag = first.headers["etag"]
        assert re.fullmatch(r'"[^"]+"', tag)  # a strong validator: quoted, no W/
        scope, max_age = (part.strip() for part in first.headers["cache-control"].split(","))
        assert scope == "private"
        assert re.fullmatch(r"max-age=\d+", max_age)
        assert 0 < int(max_age.removeprefix("max-age=")) <= AUTH_TTL
        assert "authorization" in first.headers["vary"].lower()

        revalidated, queries = await service.measured(http.get(path, headers={**alice_auth, "If-None-Match": tag}))
        assert revalidated.status_code == 304
        assert revalidated.headers["etag"] == tag
        assert revalidated.content == b""
        assert queries == 0

        # Another user presenting Alice's validator gets their own data: on a miss, then on a hit.
        for expected_cache in ("MISS", "HIT"):
            other = await http.get(path, headers={**bob_auth, "If-None-Match": tag})
            assert other.status_code == 200
            assert other.json() == expected_me(bob)
            assert other.headers["x-cache"] == expected_cache
            assert other.headers["etag"] != tag

        no_cache, queries = await service.measured(http.get(path, headers={**alice_auth, "Cache-Control": "no-cache"}))
        assert no_cache.status_code == 200
        assert no_cache.headers["x-cache"] == "HIT"
        assert no_cache.json() == expected_me(alice)
        assert queries == 0


async def test_public_profile_is_publicly_cacheable(service: Service) -> None:
    alice = service.accounts[0]
    async with service.client() as http:
        first = await http.get(f"/users/{alice.id}")
        second, queries = await service.measured(http.get(f"/users/{alice.id}"))
        revalidated = await http.get(f"/users/{alice.id}", headers={"If-None-Match": first.headers["etag"]})
    assert first.json() == second.json() == {"id": alice.id, "full_name": alice.full_name}
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert queries == 0
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert revalidated.status_code == 304


# -- 5. Redis stopped mid-run ----------------------------------------------------------------------------------------


@ME_PATHS
async def test_redis_stopped_mid_run_every_request_still_answers_then_caching_resumes(
    disposable_redis: RedisServer, sqlite_url: str, path: str
) -> None:
    with CacheManager(url=disposable_redis.url) as manager, running(manager, sqlite_url) as service:
        async with service.client() as http:
            logins = [(account, await service.login(http, account)) for account in service.accounts]
            for account, auth in logins:
                assert (await http.get(path, headers=auth)).json() == expected_me(account)

            disposable_redis.stop()
            for account, auth in logins * 4:
                response = await http.get(path, headers=auth)
                assert response.status_code == 200
                assert response.json() == expected_me(account)
            profile = await http.get(f"/users/{logins[0][0].id}")
            assert profile.status_code == 200
            stats = await http.get("/cache/stats")
            assert stats.status_code == 200
            assert stats.json()["errors"] > 0

            disposable_redis.start()
            account, auth = logins[0]
            outcomes = []
            for _ in range(200):  # until the circuit breaker lets a probe through and an entry is stored again
                response = await http.get(path, headers=auth)
                assert response.json() == expected_me(account)
                outcomes.append(response.headers["x-cache"])
                if outcomes[-1] == "HIT":
                    break
                await asyncio.sleep(0.05)
            assert outcomes[-1] == "HIT", outcomes


# -- 6. errors are never cached ---------------------------------------------------------------------------------------


async def test_unknown_user_404_is_not_cached(service: Service) -> None:
    async with service.client() as http:
        missing_id = len(service.accounts) + 1
        for _ in range(2):
            response = await http.get(f"/users/{missing_id}")
            assert response.status_code == 404
            assert "x-cache" not in response.headers
        assert service.manager.count("users") == 0
        with app_session(service) as db:
            created = accounts.create_user(
                db, email="late@example.com", password="late-password", full_name="Late", iterations=1_000
            )
            assert created.id == missing_id
        found = await http.get(f"/users/{missing_id}")
    assert found.status_code == 200
    assert found.json() == {"id": missing_id, "full_name": "Late"}


@ME_PATHS
async def test_unauthenticated_or_forged_requests_are_401_and_not_cached(service: Service, path: str) -> None:
    alice = service.accounts[0]
    async with service.client() as http:
        real = (await service.login(http, alice))["Authorization"]
        user_id, expiry, signature = real.removeprefix("Bearer ").split(".")
        forged = f"Bearer {int(user_id) + 1}.{expiry}.{signature}"
        for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": forged}):
            response = await http.get(path, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "x-cache" not in response.headers
    assert service.manager.count("auth") == 0


@ME_PATHS
async def test_a_deleted_account_is_401_on_a_miss(service: Service, path: str) -> None:
    carol = service.accounts[2]
    async with service.client() as http:
        auth = await service.login(http, carol)
        with app_session(service) as db:
            db.execute(delete(models.User).where(models.User.id == carol.id))
            db.commit()
        response = await http.get(path, headers=auth)
        update = await http.patch("/auth/me", headers=auth, json={"full_name": "Ghost"})
    assert response.status_code == 401
    assert update.status_code == 401
    assert service.manager.count("auth") == 0


# -- 7. PostgreSQL ----------------------------------------------------------------------------------------------------


async def test_postgres_second_me_from_cache_and_update_visible(postgres_url: str) -> None:
    with CacheManager(url="memory://") as manager, running(manager, postgres_url) as service:
        assert service.engine.dialect.name == "postgresql"
        for path in ("/auth/me", "/auth/async/me"):
            await check_served_from_cache(service, path)
        await check_update_is_visible(service)
        await check_every_write_path_is_visible(service)
