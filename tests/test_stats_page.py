"""The stats page (``stashly.fastapi.stats_router``): its JSON after real traffic, and the page in a real browser.

The JSON tests run the router in-process with an injected clock (no sleeping), on the memory backend and on a
private redis-server. The browser test serves the example app with uvicorn on a free loopback port, drives
traffic through its endpoints, and opens ``/cache/`` in headless Chromium through chromedriver: the charts
must draw data points, the canvas must not be blank, and nothing may be fetched from elsewhere. A missing
browser fails the test (``make test`` installs the Debian packages ``chromium`` and ``chromium-driver``).
``STASHLY_SAVE_SCREENSHOT=1`` also writes the screenshot to ``docs/stats-page.png`` for the docs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import stashly
from stashly import Cached, CacheManager
from stashly.integrations.fastapi import stats_router

from tests.test_journal import open_breaker

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the example is a package of the checkout, not of the installed distribution
    sys.path.insert(0, str(ROOT))

from examples.auth_app import accounts  # noqa: E402
from examples.auth_app.app import create_app  # noqa: E402
from examples.auth_app.config import AppSettings  # noqa: E402
from examples.auth_app.dependencies import services_of  # noqa: E402
from examples.auth_app.server import BackgroundServer  # noqa: E402

pytestmark = pytest.mark.timeout(120)

# Read at import: the autouse fixture in conftest.py removes STASHLY_* variables before every test.
SAVE_SCREENSHOT = os.environ.get("STASHLY_SAVE_SCREENSHOT") == "1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SECRET = "s3cret-value-7f2c91"  # cached as a value
ARGUMENT = "s3cret-argument-51d0"  # passed as an argument of a cached function
KEY = "session-key-0a9e"  # a key written with manager.set
JOURNAL = ("pending_invalidations", "replayed_invalidations", "escalated_invalidations", "dropped_invalidations")


class Clock:
    """A settable wall clock (seconds since the epoch)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    with CacheManager(url=url) as cm:
        yield cm


def serve(router_manager: CacheManager | None, clock: Clock, **options: Any) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(stats_router(router_manager, clock=clock, **options), prefix="/cache")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def stats(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/cache/stats.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


# -- the JSON -----------------------------------------------------------------------------------------------


async def test_json_after_traffic(manager: CacheManager) -> None:
    cache = Cached(namespace="profiles", manager=manager)

    @cache.cached
    def profile(user: str) -> dict[str, str]:
        return {"user": user, "token": SECRET}

    began = time.monotonic()
    for _ in range(3):
        for user in ("alice", "bob", ARGUMENT, "carol"):
            profile(user)  # 4 misses and fills, then 8 hits
    elapsed = time.monotonic() - began
    manager.set(KEY, SECRET, namespace="sessions")
    assert manager.get(KEY, namespace="sessions") == SECRET
    assert manager.get("absent", namespace="sessions") is None

    clock = Clock()
    async with serve(manager, clock) as http:
        first = await stats(http)
        totals = first["totals"]
        assert (totals["hits"], totals["misses"], totals["fills"], totals["stores"]) == (9, 5, 4, 5)
        assert totals["hit_ratio"] == pytest.approx(9 / 14)
        assert totals["keys"] == 5
        assert totals["fill_latency"]["count"] == 4
        # In seconds: no fill took longer than all the traffic (a bucket's bound is at most twice its latencies).
        assert 0 < totals["fill_latency"]["p50"] <= totals["fill_latency"]["p99"] <= 2 * elapsed
        assert totals["errors"] == totals["fill_errors"] == totals["breaker_changes"] == 0
        assert [totals[field] for field in JOURNAL] == [0, 0, 0, 0]

        namespaces = by_name(first["namespaces"])
        assert [row["name"] for row in first["namespaces"]] == ["profiles", "sessions"]
        assert {name: (row["keys"], row["hits"], row["misses"], row["fills"]) for name, row in namespaces.items()} == {
            "profiles": (4, 8, 4, 4),
            "sessions": (1, 1, 1, 0),
        }
        assert namespaces["sessions"]["hit_ratio"] == 0.5
        (function,) = first["functions"]
        assert function["name"].endswith("test_json_after_traffic.<locals>.profile")
        assert (function["hits"], function["misses"], function["fills"]) == (8, 4, 4)

        (sample,) = first["history"]
        assert sample["time"] == first["time"] == clock.now
        assert (sample["hits"], sample["misses"], sample["lookups"]) == (9, 5, 14)
        assert sample["hit_ratio"] == pytest.approx(9 / 14)
        assert sample["fill_p50"] is not None

        # Within the interval: no new sample, however often the page polls.
        profile("alice")
        clock.now += 0.5
        assert len((await stats(http))["history"]) == 1

        # The next sample's ratio and latencies are those of the traffic since the previous one.
        clock.now += 0.5
        profile("dave")  # a miss and a fill
        for _ in range(3):
            profile("bob")
        second = (await stats(http))["history"]
        assert len(second) == 2
        latest = second[-1]
        assert latest["time"] == clock.now
        assert (latest["hits"], latest["misses"], latest["fills"]) == (13, 6, 5)
        assert latest["lookups"] == 5
        assert latest["hit_ratio"] == pytest.approx(4 / 5)
        assert latest["fill_p50"] is not None

        # No lookups in an interval: no ratio, no latency (a gap in the charts, not a zero).
        clock.now += 1
        quiet = (await stats(http))["history"][-1]
        assert (quiet["lookups"], quiet["hit_ratio"], quiet["hit_p99"], quiet["fill_p99"]) == (0, None, None, None)

        documents = [(await http.get("/cache/stats.json")).text, (await http.get("/cache/")).text]
    for document in documents:
        assert SECRET not in document
        assert ARGUMENT not in document
        assert KEY not in document
        assert "alice" not in document


async def test_json_follows_the_pending_invalidation_journal(redis_url: str) -> None:
    clock = Clock()
    with CacheManager(redis_url, namespace="jr") as manager:
        manager.set(KEY, SECRET)
        breaker_clock = open_breaker(manager)
        assert manager.remove(KEY) is False  # refused by the open breaker: journaled
        async with serve(manager, clock) as http:
            totals = (await stats(http))["totals"]
            assert [totals[field] for field in JOURNAL] == [1, 0, 0, 0]
            assert totals["breaker_changes"] == 1

            breaker_clock.now += 10  # past the cool-down: the next operation probes, carrying the replay
            assert manager.get(KEY) is None
            clock.now += 1
            body = await stats(http)
            assert [body["totals"][field] for field in JOURNAL] == [0, 1, 0, 0]
            assert body["totals"]["breaker_changes"] == 2
            document = (await http.get("/cache/stats.json")).text
    assert KEY not in document  # the journal is shown as counts, never by key


async def test_history_is_bounded() -> None:
    clock = Clock()
    with CacheManager("memory://") as manager:
        async with serve(manager, clock, history=3) as http:
            for i in range(5):
                manager.get(f"key{i}")
                clock.now += 1
                history = (await stats(http))["history"]
            assert len(history) == 3
            assert [sample["time"] for sample in history] == [clock.now - 2, clock.now - 1, clock.now]
            assert [sample["misses"] for sample in history] == [3, 4, 5]


async def test_key_counts_are_cached_for_count_ttl() -> None:
    clock = Clock()
    with CacheManager("memory://") as manager:
        manager.set("a", 1, namespace="things")
        async with serve(manager, clock, count_ttl=5) as http:
            assert by_name((await stats(http))["namespaces"])["things"]["keys"] == 1
            manager.set("b", 2, namespace="things")
            clock.now += 4
            body = await stats(http)
            assert len(body["history"]) == 2  # sampled again...
            assert by_name(body["namespaces"])["things"]["keys"] == 1  # ...but not counted again
            clock.now += 1
            assert by_name((await stats(http))["namespaces"])["things"]["keys"] == 2


async def test_default_manager_is_looked_up_per_request() -> None:
    clock = Clock()
    with CacheManager("memory://") as first, CacheManager("memory://") as second:
        stashly.set_default_manager(first)
        first.set("x", 1, namespace="one")
        first.get("x", namespace="one")
        async with serve(None, clock) as http:
            body = await stats(http)
            assert [row["name"] for row in body["namespaces"]] == ["one"]
            assert body["totals"]["hits"] == 1

            # Another manager's counters are not comparable: its history starts over.
            stashly.set_default_manager(second)
            second.get("y", namespace="two")
            body = await stats(http)
            assert [row["name"] for row in body["namespaces"]] == ["two"]
            assert (body["totals"]["hits"], body["totals"]["misses"]) == (0, 1)
            assert len(body["history"]) == 1


async def test_page_is_self_contained() -> None:
    with CacheManager("memory://") as manager:
        async with serve(manager, Clock()) as http:
            response = await http.get("/cache/")
            assert (await http.get("/cache")).headers["location"] == "http://test/cache/"
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert 'id="ratio-chart"' in page
    assert 'id="latency-chart"' in page
    assert 'fetch("stats.json"' in page  # relative: works under any prefix
    assert not re.search(r"https?://|//[a-z]", page, re.IGNORECASE), "no absolute URL: no CDN, no beacon"
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=(?!\"data:)", page), "no external resource"

    # The Content-Security-Policy allows exactly the page's own inline script and style, by digest.
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        (source,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="history"):
        stats_router(history=1)
    with pytest.raises(ValueError, match="interval"):
        stats_router(interval=0)


# -- the page in a real browser -----------------------------------------------------------------------------


def chromium_driver(download_dir: Path) -> webdriver.Chrome:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: install the Debian packages chromium and chromium-driver "
            "(sudo apt-get install -y chromium chromium-driver; `make test` does it when run as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        "--force-device-scale-factor=1",
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        f"--user-data-dir={download_dir}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=ChromeService(CHROMEDRIVER))


class Traffic:
    """Requests to the example app in a thread: cached reads, and now and then an update that invalidates."""

    def __init__(self, url: str, email: str, password: str) -> None:
        self.url, self.email, self.password = url, email, password
        self.stop = threading.Event()
        self.requests = 0
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self._thread.join(10)
        if self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10) as http:
                token = http.post("/auth/token", data={"username": self.email, "password": self.password})
                http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
                while not self.stop.wait(0.03):
                    self.requests += 1
                    for path in ("/auth/me", "/auth/async/me", "/users/1", "/users/2"):
                        http.get(path).raise_for_status()
                    if self.requests % 6 == 0:
                        http.patch("/auth/me", json={"full_name": f"Secret Name {self.requests}"}).raise_for_status()
        except BaseException as exc:
            self.failure = exc


PIXELS = """
const [id, [r, g, b]] = arguments;
const canvas = document.getElementById(id);
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let painted = 0, series = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i + 3] === 0) continue;
  painted++;
  if (Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40) series++;
}
return [painted, series, canvas.width * canvas.height];
"""
HEADERS = """
return Array.from(arguments, (selector) => Array.from(document.querySelectorAll(selector), (cell) => cell.innerText));
"""
TILES = """
return Object.fromEntries(Array.from(document.querySelectorAll("#totals > div"), (box) => [box.dataset.field,
  [box.querySelector("dt").innerText, box.querySelector("dd").innerText, box.classList.contains("alert")]]));
"""
HIT_COLOUR, FILL_COLOUR = (0x00, 0x72, 0xB2), (0xD5, 0x5E, 0x00)  # --hit and --fill of the light scheme


def points(driver: webdriver.Chrome, chart: str) -> int:
    return int(driver.find_element(By.ID, chart).get_attribute("data-points") or 0)


def test_page_renders_in_chromium(tmp_path: Path) -> None:
    settings = AppSettings(secret_key="test-secret-key", password_iterations=1_000)
    wanted = 30 if SAVE_SCREENSHOT else 4  # the first sample has no interval yet: a line needs two more
    with CacheManager("memory://") as manager:
        app = create_app(manager=manager, database_url=f"sqlite:///{tmp_path / 'app.sqlite3'}", settings=settings)
        services = services_of(app)
        with services.database.session() as db:
            for i in (1, 2):
                accounts.create_user(
                    db, email=f"user{i}@example.com", password=f"password-{i}", full_name=f"User {i}", iterations=1_000
                )
        driver = chromium_driver(tmp_path / "chromium-profile")
        try:
            with BackgroundServer(app) as server, Traffic(server.url, "user1@example.com", "password-1") as traffic:
                driver.get(f"{server.url}/cache/")
                WebDriverWait(driver, 60 + wanted, poll_frequency=0.2).until(
                    lambda d: points(d, "ratio-chart") >= wanted and points(d, "latency-chart") >= wanted
                )
                traffic.stop.set()
                # The whole page in the screenshot: the window is the page's height plus the browser's frame.
                frame, height = driver.execute_script(
                    "return [outerHeight - innerHeight, document.documentElement.scrollHeight]"
                )
                driver.set_window_size(1200, frame + height)
                screenshot = tmp_path / "stats-page.png"
                assert driver.save_screenshot(str(screenshot))
                ratio = driver.find_element(By.ID, "ratio-chart")
                latency = driver.find_element(By.ID, "latency-chart")
                assert ratio.get_attribute("data-rendered") == latency.get_attribute("data-rendered") == "true"
                ratio_pixels = driver.execute_script(PIXELS, "ratio-chart", HIT_COLOUR)
                hit_pixels = driver.execute_script(PIXELS, "latency-chart", HIT_COLOUR)
                fill_pixels = driver.execute_script(PIXELS, "latency-chart", FILL_COLOUR)
                # Read in one script: the page replaces its table rows on every poll, so cells found by one call
                # can be gone (stale) by the next, the more likely the busier the machine.
                namespaces, functions = driver.execute_script(HEADERS, "#namespaces th", "#functions th")
                tiles = driver.execute_script(TILES)
                status = driver.find_element(By.ID, "status").text
                page = driver.page_source
                resources = driver.execute_script(
                    "return performance.getEntriesByType('resource').map((entry) => entry.name)"
                )
                logs = driver.get_log("browser")
        finally:
            driver.quit()
    assert traffic.requests > 0

    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if SAVE_SCREENSHOT:
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(screenshot, ROOT / "docs" / "stats-page.png")

    # Not blank: the grid and labels are painted, and so are many pixels of each series' colour.
    for painted, series, area in (ratio_pixels, hit_pixels, fill_pixels):
        assert painted > area // 100, (painted, area)
        assert series > 100, (painted, series)
    # The app's namespaces, and the manager's own ("default"), where the commits' tag invalidations are counted.
    assert namespaces == ["auth", "default", "users"]
    assert {field: tiles[field] for field in ("breaker_changes", *JOURNAL)} == {
        "breaker_changes": ["Breaker changes", "0", False],
        "pending_invalidations": ["Pending invalidations", "0", False],
        "replayed_invalidations": ["Replayed invalidations", "0", False],
        "escalated_invalidations": ["Escalated to a flush", "0", False],
        "dropped_invalidations": ["Dropped at close", "0", False],
    }
    assert any(name.endswith("get_me") for name in functions), functions
    assert status.startswith("Updated"), status
    for leaked in ("user1@example.com", "Secret Name", "User 2", "password-1"):
        assert leaked not in page
    assert all(url.startswith(f"{server.url}/cache/") for url in resources), resources
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs


def test_page_shows_the_journal_in_chromium(redis_url: str, tmp_path: Path) -> None:
    """A removal the open breaker refused shows as pending (flagged), then as replayed once the probe ran."""
    with CacheManager(redis_url, namespace="jr") as manager:
        app = FastAPI()
        app.include_router(stats_router(manager), prefix="/cache")
        manager.set(KEY, SECRET)
        clock = open_breaker(manager)
        assert manager.remove(KEY) is False
        driver = chromium_driver(tmp_path / "chromium-profile")
        try:
            with BackgroundServer(app) as server:
                driver.get(f"{server.url}/cache/")
                wait = WebDriverWait(driver, 60, poll_frequency=0.2)
                wait.until(lambda d: d.execute_script(TILES).get("pending_invalidations", [""])[1] == "1")
                pending = driver.execute_script(TILES)
                clock.now += 10  # past the cool-down: the next operation probes, carrying the replay
                assert manager.get(KEY) is None
                assert manager.stats().pending_invalidations == 0
                wait.until(lambda d: d.execute_script(TILES)["replayed_invalidations"][1] == "1")
                replayed = driver.execute_script(TILES)
                page = driver.page_source
                logs = driver.get_log("browser")
        finally:
            driver.quit()
    assert pending["pending_invalidations"] == ["Pending invalidations", "1", True]  # flagged while pending
    assert pending["replayed_invalidations"][1] == "0"
    assert replayed["pending_invalidations"] == ["Pending invalidations", "0", False]
    assert replayed["replayed_invalidations"] == ["Replayed invalidations", "1", False]
    assert replayed["breaker_changes"][1] == "2"  # opened by hand, closed by the probe
    assert KEY not in page
    assert SECRET not in page
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
