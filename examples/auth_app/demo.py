"""The demo: two seeded users, the curl walk-through, and the same walk-through run by ``--check``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from fastapi import FastAPI
from sqlalchemy import select

from . import accounts, models
from .dependencies import Services, services_of
from .server import BackgroundServer

__all__ = ["DEMO_USERS", "CheckFailedError", "curl_lines", "run_check", "seed_demo_users"]


class DemoUser(NamedTuple):
    email: str
    password: str
    full_name: str


DEMO_USERS = (
    DemoUser("alice@example.com", "wonderland", "Alice"),
    DemoUser("bob@example.com", "builder", "Bob"),
)


class CheckFailedError(AssertionError):
    """A step of the walk-through did not answer as documented."""


def seed_demo_users(services: Services) -> int:
    """Create the demo users that do not exist yet; how many were created."""
    created = 0
    with services.database.session() as db:
        existing = set(db.scalars(select(models.User.email)))
        for user in DEMO_USERS:
            if user.email not in existing:
                accounts.create_user(
                    db,
                    email=user.email,
                    password=user.password,
                    full_name=user.full_name,
                    iterations=services.settings.password_iterations,
                )
                created += 1
    return created


def curl_lines(base_url: str) -> list[str]:
    """The walk-through as shell commands: log in, ``/auth/me`` twice (MISS, HIT), update, stats."""
    alice = DEMO_USERS[0]
    auth = '-H "Authorization: Bearer $TOKEN"'
    return [
        f"TOKEN=$(curl -s -X POST {base_url}/auth/token -d 'username={alice.email}&password={alice.password}' \\",
        "        | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"curl -i {auth} {base_url}/auth/me        # X-Cache: MISS (one query)",
        f"curl -i {auth} {base_url}/auth/me        # X-Cache: HIT (no query)",
        f"curl -s -X PATCH {auth} -H 'Content-Type: application/json' -d '{{\"full_name\": \"Alice Liddell\"}}' "
        f"{base_url}/auth/me",
        f"curl -i {auth} {base_url}/auth/me        # X-Cache: MISS, full_name is Alice Liddell",
        f"curl -i {base_url}/users/1                                       # public profile, cached for everybody",
        f"curl -s {base_url}/cache/stats",
    ]


def run_check(app: FastAPI, say: Callable[[str], None] = print) -> None:
    """Serve ``app`` on a free port and run the walk-through against it; raises :class:`CheckFailedError`.

    Needs ``httpx`` (installed with ``stashly[dev]``).
    """
    import httpx

    alice = DEMO_USERS[0]
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        say(f"serving on {server.url}")

        def step(label: str, response: httpx.Response, *, status: int = 200, cache: str | None = None) -> Any:
            shown = response.headers.get("x-cache")
            body = response.json() if response.content else None
            say(f"  {label:<34} -> {response.status_code} X-Cache: {shown or '-':<4} {json.dumps(body)}")
            if response.status_code != status or (cache is not None and shown != cache):
                raise CheckFailedError(
                    f"{label}: expected {status} with X-Cache {cache}, got {response.status_code} {shown}"
                )
            return body

        login = http.post("/auth/token", data={"username": alice.email, "password": alice.password})
        token = step(f"POST /auth/token ({alice.email})", login)["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        before = step("GET /auth/me", http.get("/auth/me"), cache="MISS")
        step("GET /auth/me again", http.get("/auth/me"), cache="HIT")
        new_name = "Alice Liddell" if before["full_name"] != "Alice Liddell" else "Alice"
        step(f"PATCH /auth/me full_name={new_name!r}", http.patch("/auth/me", json={"full_name": new_name}))
        after = step("GET /auth/me after the update", http.get("/auth/me"), cache="MISS")
        if after["full_name"] != new_name:
            raise CheckFailedError(f"GET /auth/me after the update shows {after['full_name']!r}, not {new_name!r}")
        del http.headers["Authorization"]
        step(f"GET /users/{before['id']} (no token)", http.get(f"/users/{before['id']}"), cache="MISS")
        step(f"GET /users/{before['id']} again", http.get(f"/users/{before['id']}"), cache="HIT")
        step("GET /cache/stats", http.get("/cache/stats"))
        page = http.get("/cache/")  # the stats page; its data is /cache/stats.json
        say(f"  {'GET /cache/ (stats page)':<34} -> {page.status_code} {page.headers.get('content-type')}")
        if page.status_code != 200 or "<canvas" not in page.text:
            raise CheckFailedError(f"GET /cache/: expected the stats page, got {page.status_code}")
        data = http.get("/cache/stats.json")
        namespaces = sorted(n["name"] for n in data.json()["namespaces"]) if data.status_code == 200 else []
        say(f"  {'GET /cache/stats.json':<34} -> {data.status_code} namespaces: {', '.join(namespaces) or '-'}")
        # The app's namespaces, and the manager's own, where the commit's tag invalidations are counted.
        if not set(services_of(app).namespaces) <= set(namespaces):
            raise CheckFailedError(f"GET /cache/stats.json: expected namespaces auth and users, got {namespaces}")
    say(f"check passed on {services_of(app).manager.settings.url}")
