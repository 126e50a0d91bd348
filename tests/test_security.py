"""Security against a real redis-server: least privilege (ACL), credentials, TLS, and nothing secret in output.

Each test starts servers of its own (an ACL user, a password, TLS), so it runs the same in the normal and in
the ``STASHLY_TEST_ACL=1`` run. That run (``make test-acl``, its own CI step) is the proof that the suites of
``ACL_SUITES`` in the Makefile pass with every Redis call made as the least-privilege user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from pydantic import BaseModel
from redis.backoff import NoBackoff
from redis.retry import Retry

from stashly import (
    Cached,
    CacheManager,
    CacheUnavailableError,
    ConfigError,
    SerializationError,
    UnstableKeyError,
    ValueTooLargeError,
)
from stashly.storage import codec

from tests.harness.process import free_port
from tests.harness.server import ACL_COMMANDS, ACL_OPTIONAL, ACL_PASSWORD, ACL_USER, RedisServer
from tests.harness.tls import TlsFiles, make_ca, make_tls_files
from tests.support import eventually

pytestmark = pytest.mark.timeout(120)

FORBIDDEN = ("keys", "flushdb", "flushall", "config", "debug")


class Profile(BaseModel):
    id: int
    email: str


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command (``set``, ``script|load``...) since the server started."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


# -- least privilege: the ACL user --------------------------------------------------------------------------


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    with RedisServer(acl=True) as server:
        yield server


def test_the_acl_user_is_really_restricted(acl_server: RedisServer) -> None:
    """What the ACL-mode run relies on: the user may run nothing else, nor touch keys outside stashly:*."""
    with acl_server.client() as admin:
        for command in (["KEYS", "*"], ["FLUSHDB"], ["FLUSHALL"], ["CONFIG", "GET", "*"], ["DEBUG", "SLEEP", "0"]):
            verdict = admin.execute_command("ACL", "DRYRUN", ACL_USER, *command)
            assert b"no permissions" in verdict, command
        assert admin.execute_command("ACL", "DRYRUN", ACL_USER, "SET", "stashly:k", "v") == b"OK"
    with redis.Redis(port=acl_server.port, username=ACL_USER, password=ACL_PASSWORD) as restricted:
        assert restricted.set("stashly:probe", b"v")
        with pytest.raises(redis.exceptions.NoPermissionError):
            restricted.keys("*")
        with pytest.raises(redis.exceptions.NoPermissionError):
            restricted.set("other:k", b"v")
    assert acl_server.acl_denials()


def exercise_sync(cm: CacheManager, cache: Cached) -> None:
    """Every sync feature: set, get, count, remove, flush; decorated miss, hit and invalidate, with a lock and
    with refresh_ahead."""
    cm.set("user:1", {"email": "a@example.com"}, ttl=60)
    assert cm.get("user:1") == {"email": "a@example.com"}
    assert cm.count() == 1
    assert cm.remove("user:1") is True
    calls: list[int] = []

    @cache.cached
    def plain(n: int) -> int:
        calls.append(n)
        return n

    @cache.cached(lock=True)
    def locked(n: int) -> int:
        calls.append(n)
        return n

    @cache.cached(refresh_ahead=0.5)
    def refreshed(n: int) -> int:
        calls.append(n)
        return n

    @cache.cached
    def large(n: int) -> str:  # over STAGE_ABOVE: stored through a staging key (SET, then RENAME in the script)
        calls.append(n)
        return "x" * 2000

    for fn in (plain, locked, refreshed, large):
        assert fn(1) == fn(1)  # a miss, then a hit
        assert fn.invalidate(1) is True
    assert calls == [1, 1, 1, 1]
    assert cm.flush_namespace() == 0


async def exercise_async(cm: CacheManager, cache: Cached) -> None:
    """The async twin of :func:`exercise_sync`."""
    await cm.aset("user:1", {"email": "a@example.com"}, ttl=60)
    assert await cm.aget("user:1") == {"email": "a@example.com"}
    assert await cm.acount() == 1
    assert await cm.aremove("user:1") is True
    calls: list[int] = []

    @cache.cached
    async def plain(n: int) -> int:
        calls.append(n)
        return n

    @cache.cached(lock=True)
    async def locked(n: int) -> int:
        calls.append(n)
        return n

    @cache.cached(refresh_ahead=0.5)
    async def refreshed(n: int) -> int:
        calls.append(n)
        return n

    for fn in (plain, locked, refreshed):
        assert [await fn(2), await fn(2)] == [2, 2]
        assert await fn.invalidate(2) is True
    assert calls == [2, 2, 2]
    assert await cm.aflush_namespace() == 0
    await cm.aclose()


def test_stashly_sends_exactly_the_documented_commands(acl_server: RedisServer) -> None:
    """Every feature, sync and async, RESP2 and RESP3, as the ACL user: nothing refused, nothing else sent."""
    with acl_server.client() as admin:
        before = commandstats(admin)
        for protocol in (2, 3):
            with CacheManager(url=acl_server.url, namespace=f"p{protocol}", protocol=protocol, strict=True) as cm:
                cache = Cached(manager=cm, ttl=60)
                exercise_sync(cm, cache)
                asyncio.run(exercise_async(cm, cache))
                assert cm.stats().errors == 0
        with CacheManager(url=acl_server.url, namespace="local", local=True, strict=True) as cm:
            cm.set("k", 1)  # until the tier holds it: its invalidation connection is subscribed
            assert eventually(lambda: cm.get("k") == 1 and cm.local is not None and len(cm.local) == 1)
        after = commandstats(admin)
    sent = {name: calls - before.get(name, 0) for name, calls in after.items() if calls > before.get(name, 0)}
    assert sent.pop("info") == 1  # the admin's first snapshot: stashly sent no INFO
    assert not [name for name in sent if name.split("|")[0] in FORBIDDEN]
    # The URL carries only the restricted user's credentials, so AUTH (RESP2) and HELLO 3 AUTH (RESP3) are
    # stashly logging in as it; neither needs an ACL grant.
    assert set(sent) - set(ACL_OPTIONAL) == {*ACL_COMMANDS, "auth", "hello"}, "update docs/how-to/secure-redis.md too"
    assert acl_server.acl_denials() == []


def test_the_whole_api_never_sends_dangerous_commands(redis_url: str, redis_server: RedisServer) -> None:
    """On the shared server (as the restricted user in ACL mode): no KEYS, FLUSHDB, FLUSHALL, CONFIG or DEBUG."""
    with redis_server.client() as admin:
        before = commandstats(admin)
        with CacheManager(url=redis_url, namespace="danger", strict=True) as cm:
            cache = Cached(manager=cm, ttl=60)
            exercise_sync(cm, cache)
            asyncio.run(exercise_async(cm, cache))
            assert cm.stats().errors == 0
        after = commandstats(admin)
    sent = {name for name, calls in after.items() if calls > before.get(name, 0)}
    assert {"get", "mget", "set", "evalsha", "unlink", "scan", "incrby"} <= sent  # the API really ran here
    assert not {name.split("|")[0] for name in sent} & set(FORBIDDEN), sorted(sent)


def test_a_database_other_than_0_also_needs_select(acl_server: RedisServer) -> None:
    url = acl_server.url.removesuffix("/0") + "/1"
    with CacheManager(url=url, strict=True) as cm, pytest.raises(CacheUnavailableError, match=r"(?i)select|invalid"):
        cm.set("k", 1)
    with acl_server.client() as admin:
        admin.execute_command("ACL", "SETUSER", ACL_USER, "+select")
    with CacheManager(url=url, strict=True) as cm:
        cm.set("k", 1)
        assert cm.get("k") == 1
    with acl_server.client(db=1) as admin:
        assert admin.exists("stashly:default:k") == 1


# -- a wrong password ---------------------------------------------------------------------------------------

WRONG_PASSWORD = "Wr0ng-pa55word-for-the-test"


@pytest.fixture(params=["acl-user", "requirepass"])
def wrong_password_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server that refuses this URL's password: an ACL user's, or the default user's (``requirepass``)."""
    if request.param == "acl-user":
        with RedisServer(acl=True) as server:
            yield f"redis://{ACL_USER}:{WRONG_PASSWORD}@127.0.0.1:{server.port}/0"
    else:
        with RedisServer() as server:
            with server.client() as admin:
                admin.config_set("requirepass", "the-right-one")
            with server.client(retry=Retry(NoBackoff(), 0)) as anonymous, pytest.raises(redis.AuthenticationError):
                anonymous.get("k")  # the server really demands a password now
            yield f"redis://:{WRONG_PASSWORD}@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_wrong_password_raises_a_clear_error_in_strict_mode(wrong_password_url: str, protocol: int) -> None:
    cm = CacheManager(url=wrong_password_url, namespace="auth", strict=True, protocol=protocol, breaker_threshold=100)
    cache = Cached(manager=cm)

    @cache.cached
    def double(n: int) -> int:
        return 2 * n

    @cache.cached
    async def adouble(n: int) -> int:
        return 2 * n

    failures: list[CacheUnavailableError] = []
    for call in (
        lambda: cm.get("k"),
        lambda: cm.set("k", 1),
        lambda: cm.remove("k"),
        lambda: cm.flush_namespace(),
        lambda: double(1),
    ):
        with pytest.raises(CacheUnavailableError) as info:
            call()
        failures.append(info.value)
    for acall in (lambda: cm.aget("k"), lambda: cm.aset("k", 1), lambda: adouble(1)):
        with pytest.raises(CacheUnavailableError) as info:
            await acall()
        failures.append(info.value)
    for failure in failures:
        message = str(failure)
        assert "AuthenticationError" in message or "WRONGPASS" in message or "invalid" in message, message
        assert WRONG_PASSWORD not in message
        assert WRONG_PASSWORD not in "".join(traceback.format_exception(failure))
    await cm.aclose()
    cm.close()


async def test_a_wrong_password_fails_open(wrong_password_url: str, caplog: pytest.LogCaptureFixture) -> None:
    cm = CacheManager(url=wrong_password_url, namespace="auth")
    cache = Cached(manager=cm)
    runs: list[int] = []

    @cache.cached
    def double(n: int) -> int:
        runs.append(n)
        return 2 * n

    @cache.cached
    async def adouble(n: int) -> int:
        runs.append(n)
        return 2 * n

    with caplog.at_level(logging.WARNING, logger="stashly"):
        assert cm.get("k", "default") == "default"
        cm.set("k", 1)
        assert cm.get("k", "default") == "default"
        assert [double(1), double(1), double(2)] == [2, 2, 4]
        assert await cm.aget("k", "default") == "default"
        await cm.aset("k", 1)
        assert [await adouble(3), await adouble(3)] == [6, 6]
    assert runs == [1, 1, 2, 3, 3]  # computed every time: nothing was cached, nothing raised
    assert cm.stats().errors > 0
    assert "AuthenticationError" in caplog.text
    assert WRONG_PASSWORD not in caplog.text
    await cm.aclose()
    cm.close()


# -- TLS ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA that never signed the server's certificate."""
    return str(make_ca(tmp_path_factory.mktemp("stranger"), "stranger-ca")[0])


@pytest.fixture(scope="module")
def tls_server(certificates: TlsFiles) -> Iterator[RedisServer]:
    """TLS only (no plaintext port); a client certificate is accepted but not required."""
    with RedisServer(tls=certificates, tls_auth_clients="optional") as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(certificates: TlsFiles) -> Iterator[RedisServer]:
    """TLS only, and every client must present a certificate signed by the CA."""
    with RedisServer(tls=certificates, tls_auth_clients="yes") as server:
        yield server


SOURCES = ["arguments", "environment", "config.json url", "config.json host/port/ssl"]


def tls_manager(
    source: str, server: RedisServer, files: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> CacheManager:
    """A manager for ``server`` whose URL and TLS files (``ssl_ca_certs``...) all come from ``source``."""
    url = f"rediss://127.0.0.1:{server.port}/0"
    if source == "arguments":
        return CacheManager(url=url, **files, **kw)
    if source == "environment":
        monkeypatch.setenv("STASHLY_URL", url)
        for name, path in files.items():
            monkeypatch.setenv(f"STASHLY_{name.upper()}", path)
        return CacheManager(**kw)
    section: dict[str, object] = {"url": url} if source == "config.json url" else {}
    if source == "config.json host/port/ssl":
        section = {"host": "127.0.0.1", "port": server.port, "db": 0, "ssl": True}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"redis": {**section, **files}}))
    return CacheManager.from_config(config, **kw)


async def roundtrip(cm: CacheManager, server: RedisServer) -> None:
    """Set, get, a decorated miss then hit, sync and async; the entries really are in ``server``."""
    cache = Cached(manager=cm)
    runs: list[int] = []

    @cache.cached
    def double(n: int) -> int:
        runs.append(n)
        return 2 * n

    cm.set("k", {"tls": True})
    assert cm.get("k") == {"tls": True}
    assert await cm.aget("k") == {"tls": True}
    assert [double(4), double(4)] == [8, 8]
    assert runs == [4]
    with server.client() as admin:
        assert admin.exists(cm.key("k"), double.cache_key(4)) == 2
    assert cm.stats().errors == 0
    await cm.aclose()
    cm.close()


@pytest.mark.parametrize("source", SOURCES)
async def test_tls_with_the_ca_from_each_source(
    source: str, tls_server: RedisServer, certificates: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files: dict[str, Any] = {"ssl_ca_certs": certificates.ca_cert}
    cm = tls_manager(source, tls_server, files, tmp_path, monkeypatch, namespace=f"tls{SOURCES.index(source)}")
    assert cm.settings.url.startswith("rediss://")
    await roundtrip(cm, tls_server)


@pytest.mark.parametrize("source", SOURCES)
async def test_mutual_tls_with_a_client_certificate_from_each_source(
    source: str, mtls_server: RedisServer, certificates: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files: dict[str, Any] = {
        "ssl_ca_certs": certificates.ca_cert,
        "ssl_certfile": certificates.client_cert,
        "ssl_keyfile": certificates.client_key,
    }
    cm = tls_manager(source, mtls_server, files, tmp_path, monkeypatch, namespace=f"mtls{SOURCES.index(source)}")
    await roundtrip(cm, mtls_server)


def test_the_tls_server_speaks_no_plaintext(tls_server: RedisServer) -> None:
    """So the round trips above really went over TLS."""
    plain = f"redis://127.0.0.1:{tls_server.port}/0"
    with CacheManager(url=plain, strict=True) as cm, pytest.raises(CacheUnavailableError):
        cm.set("k", 1)


def tls_failure_cases(certificates: TlsFiles, stranger_ca: str) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "no CA (system store)": ("tls", {}),
        "a CA that did not sign the server": ("tls", {"ssl_ca_certs": stranger_ca}),
        "no client certificate": ("mtls", {"ssl_ca_certs": certificates.ca_cert}),
    }


@pytest.mark.parametrize("case", ["no CA (system store)", "a CA that did not sign the server", "no client certificate"])
async def test_tls_that_cannot_be_verified_fails_open_or_raises_in_strict_mode(
    case: str,
    tls_server: RedisServer,
    mtls_server: RedisServer,
    certificates: TlsFiles,
    stranger_ca: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kind, files = tls_failure_cases(certificates, stranger_ca)[case]
    server = tls_server if kind == "tls" else mtls_server
    url = f"rediss://127.0.0.1:{server.port}/0"
    with CacheManager(url=url, strict=True, breaker_threshold=100, **files) as strict:
        with pytest.raises(CacheUnavailableError, match=r"(?i)ssl|certificate|connection"):
            strict.set("k", 1)
        with pytest.raises(CacheUnavailableError):
            strict.get("k")
        with pytest.raises(CacheUnavailableError):
            await strict.aget("k")
        await strict.aclose()

    lenient = CacheManager(url=url, **files)
    runs: list[int] = []

    @Cached(manager=lenient).cached
    async def triple(n: int) -> int:
        runs.append(n)
        return 3 * n

    with caplog.at_level(logging.WARNING, logger="stashly"):
        lenient.set("k", 1)
        assert lenient.get("k", "default") == "default"
        assert [await triple(2), await triple(2)] == [6, 6]
    assert runs == [2, 2]
    assert lenient.stats().errors > 0
    assert "carrying on without the cache" in caplog.text
    await lenient.aclose()
    lenient.close()


# -- no leaks -----------------------------------------------------------------------------------------------

PASSWORD = "S3cret-Passw0rd-for-user-app"
HMAC_SECRET = "Hmac-Signing-Secret-0123456789-abcdef-XYZ"
SHORT_SECRET = "too-short-secret-Q7"
SECRETS = (PASSWORD, WRONG_PASSWORD, HMAC_SECRET, SHORT_SECRET)
ARG_EMAIL = "alice.argument@example.com"
VALUE_EMAIL = "bob.value@example.org"
# Also their percent-escaped forms (a template key escapes '@' as %40).
PRIVATE = (ARG_EMAIL, VALUE_EMAIL, quote(ARG_EMAIL, safe=""), quote(VALUE_EMAIL, safe=""))
CREDENTIAL_SOURCES = [
    "url argument",
    "password argument",
    "environment url",
    "environment password",
    "config.json url",
    "config.json password",
]


class Evidence:
    """Everything stashly printed or raised during a test, checked for secrets and private values at the end."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.exceptions: list[BaseException] = []
        self.objects: list[object] = []
        self.checked = False
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="stashly")

    def raised(self, call: Callable[[], object]) -> BaseException | None:
        try:
            call()
        except Exception as exc:
            self.exceptions.append(exc)
            return exc
        return None

    async def araised(self, call: Callable[[], Awaitable[object]]) -> BaseException | None:
        try:
            await call()
        except Exception as exc:
            self.exceptions.append(exc)
            return exc
        return None

    def check(self, *, logged: bool = True) -> None:
        """Assert nothing leaked; ``logged``: something must have been logged (the capture works)."""
        self.checked = True
        formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
        records = self.caplog.get_records("setup") + self.caplog.get_records("call")
        assert records or not logged, "nothing was logged: is the capture working?"
        for record in records:
            text = formatter.format(record)  # the message, its arguments and any exception traceback
            for secret in SECRETS:
                assert secret not in text, f"log record leaks a secret: {text}"
            if record.levelno >= logging.INFO:
                for private in PRIVATE:
                    assert private not in text, f"{record.levelname} record shows {private!r}: {text}"
        for exc in self.exceptions:
            text = f"{exc}\n{exc!r}\n{''.join(traceback.format_exception(exc))}"
            for secret in SECRETS:
                assert secret not in text, f"exception leaks a secret: {text}"
        for obj in self.objects:
            for secret in SECRETS:
                assert secret not in repr(obj), repr(obj)
                assert secret not in str(obj), str(obj)


@pytest.fixture
def evidence(caplog: pytest.LogCaptureFixture) -> Iterator[Evidence]:
    found = Evidence(caplog)
    yield found
    assert found.checked, "call evidence.check() at the end of the test"


@pytest.fixture(scope="module")
def app_server() -> Iterator[RedisServer]:
    """A server where user ``app`` logs in with PASSWORD and may do anything."""
    with RedisServer() as server:
        with server.client() as admin:
            admin.execute_command("ACL", "SETUSER", "app", "on", f">{PASSWORD}", "+@all", "~*")
        yield server


def configured(
    source: str, port: int, password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> CacheManager:
    """A manager for user ``app`` on ``port``, its password given through ``source``."""
    plain = f"redis://127.0.0.1:{port}/0"
    with_credentials = f"redis://app:{quote(password, safe='')}@127.0.0.1:{port}/0"
    if source == "url argument":
        return CacheManager(url=with_credentials, **kw)
    if source == "password argument":
        return CacheManager(url=plain, username="app", password=password, **kw)
    if source == "environment url":
        monkeypatch.setenv("STASHLY_URL", with_credentials)
        return CacheManager(**kw)
    if source == "environment password":
        monkeypatch.setenv("STASHLY_URL", plain)
        monkeypatch.setenv("STASHLY_USERNAME", "app")
        monkeypatch.setenv("STASHLY_PASSWORD", password)
        return CacheManager(**kw)
    section: dict[str, object] = {"url": with_credentials}
    if source == "config.json password":
        section = {"host": "127.0.0.1", "port": port, "username": "app", "password": password}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"redis": section}))
    return CacheManager.from_config(config, **kw)


def decorate(cm: CacheManager, evidence: Evidence) -> tuple[Any, Any]:
    cache = Cached(namespace="people", manager=cm)

    @cache.cached
    def profile(email: str) -> Profile:
        return Profile(id=len(email), email=VALUE_EMAIL)

    @cache.cached
    async def aprofile(email: str) -> Profile:
        return Profile(id=len(email), email=VALUE_EMAIL)

    evidence.objects += [cm, cm.settings, cache, profile, aprofile]
    return profile, aprofile


@pytest.mark.parametrize("strict", [False, True], ids=["fail-open", "strict"])
@pytest.mark.parametrize("failure", ["connection refused", "wrong password"])
@pytest.mark.parametrize("source", CREDENTIAL_SOURCES)
async def test_backend_failures_leak_no_password_and_no_values(
    source: str,
    failure: str,
    strict: bool,
    app_server: RedisServer,
    evidence: Evidence,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, password = (free_port(), PASSWORD) if failure == "connection refused" else (app_server.port, WRONG_PASSWORD)
    cm = configured(source, port, password, tmp_path, monkeypatch, namespace="people", strict=strict)
    assert cm.settings.password == password  # the source really delivered it
    profile, aprofile = decorate(cm, evidence)
    expected = Profile(id=len(ARG_EMAIL), email=VALUE_EMAIL)
    value = {"email": VALUE_EMAIL}
    sync_calls: list[Callable[[], object]] = [
        lambda: cm.get("contact"),
        lambda: cm.set("contact", value),
        lambda: cm.remove("contact"),
        lambda: cm.flush_namespace(),
        lambda: cm.count(),
        lambda: profile(ARG_EMAIL),
        lambda: profile.invalidate(ARG_EMAIL),
    ]
    async_calls: list[Callable[[], Awaitable[object]]] = [
        lambda: cm.aget("contact"),
        lambda: cm.aset("contact", value),
        lambda: cm.aremove("contact"),
        lambda: cm.aflush_namespace(),
        lambda: cm.acount(),
        lambda: aprofile(ARG_EMAIL),
        lambda: aprofile.invalidate(ARG_EMAIL),
    ]
    outcomes = [evidence.raised(call) for call in sync_calls]
    outcomes += [await evidence.araised(call) for call in async_calls]
    if strict:
        assert all(isinstance(outcome, CacheUnavailableError) for outcome in outcomes), outcomes
    else:
        assert outcomes == [None] * len(outcomes)
        assert profile(ARG_EMAIL) == expected
        assert await aprofile(ARG_EMAIL) == expected
        assert any(r.levelno == logging.WARNING and r.name.startswith("stashly") for r in evidence.caplog.records)
    assert cm.stats().errors > 0
    await cm.aclose()
    cm.close()
    evidence.check()


@pytest.mark.parametrize("source", CREDENTIAL_SOURCES)
async def test_value_and_key_errors_leak_no_password_and_no_values(
    source: str, app_server: RedisServer, evidence: Evidence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cm = configured(source, app_server.port, PASSWORD, tmp_path, monkeypatch, max_value_bytes=300, strict=True)
    profile, aprofile = decorate(cm, evidence)
    cache = Cached(namespace="people", manager=cm)

    @cache.cached
    def big(email: str) -> dict[str, str]:
        return {"email": VALUE_EMAIL, "padding": "x" * 400}

    @cache.cached
    def not_json(email: str) -> object:
        return {"email": VALUE_EMAIL, "raw": VALUE_EMAIL.encode()}

    @cache.cached
    def search(email: str, filters: object) -> list[str]:
        return [VALUE_EMAIL]

    # a working cache first: a miss, then a hit
    assert profile(ARG_EMAIL) == await aprofile(ARG_EMAIL) == Profile(id=len(ARG_EMAIL), email=VALUE_EMAIL)
    assert profile(ARG_EMAIL).email == VALUE_EMAIL
    assert isinstance(
        evidence.raised(lambda: cm.set("contact", {"email": VALUE_EMAIL, "x": object()})), SerializationError
    )
    assert isinstance(evidence.raised(lambda: not_json(ARG_EMAIL)), SerializationError)
    too_large = {"email": VALUE_EMAIL, "padding": "x" * 400}
    assert isinstance(evidence.raised(lambda: cm.set("contact", too_large)), ValueTooLargeError)
    assert big(ARG_EMAIL)["email"] == VALUE_EMAIL  # returned, not stored, logged
    assert isinstance(evidence.raised(lambda: search(ARG_EMAIL, object())), UnstableKeyError)
    assert isinstance(evidence.raised(lambda: search(ARG_EMAIL, {ARG_EMAIL: object()})), UnstableKeyError)
    # unreadable entries holding private values: corrupt, then of the wrong shape
    key = profile.cache_key(ARG_EMAIL)
    with app_server.client() as admin:
        admin.set(key, f"garbage {VALUE_EMAIL}".encode())
        assert profile(ARG_EMAIL).email == VALUE_EMAIL
        admin.set(key, codec.encode({"id": "not a number", "email": VALUE_EMAIL}, key))
        assert await aprofile(ARG_EMAIL) == Profile(id=len(ARG_EMAIL), email=VALUE_EMAIL)
    warnings = [r.getMessage() for r in evidence.caplog.records if r.levelno >= logging.WARNING]
    assert any("not cached" in message for message in warnings), warnings
    assert any("treated as a miss" in message for message in warnings), warnings
    await cm.aclose()
    cm.close()
    evidence.check()


BAD_CONFIGS = {
    "malformed JSON": '{"redis": {"username": "app", "password": "%s",}}',
    "password of a wrong type": '{"redis": {"password": ["%s"]}}',
    "unknown key": '{"redis": {"passwd": "%s"}}',
    "bad port beside the password": '{"redis": {"port": "6379x", "password": "%s"}}',
    "url with a bad port": '{"redis": {"url": "redis://app:%s@127.0.0.1:99999/0"}}',
    "url with a bad database": '{"redis": {"url": "redis://app:%s@127.0.0.1:6379/zero"}}',
    "url with a bad scheme": '{"redis": {"url": "http://app:%s@127.0.0.1:6379/0"}}',
    "url and host": '{"redis": {"url": "redis://app:%s@127.0.0.1/0", "host": "localhost"}}',
    "url with whitespace": '{"redis": {"url": "redis://app:%s @127.0.0.1/0"}}',
    "unescaped / in the password": '{"redis": {"url": "redis://app:x/%s@127.0.0.1/0"}}',
    "section not an object": '{"redis": "redis://app:%s@127.0.0.1/0"}',
    "pickle secret too short": '{"redis": {"password": "%%s", "serializer": "pickle", "secrets": ["%s"]}}',
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_errors_never_echo_the_password(
    case: str, evidence: Evidence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = SHORT_SECRET if "secret" in case else PASSWORD
    document = BAD_CONFIGS[case] % secret
    if "%s" in document:
        document = document % PASSWORD
    config = tmp_path / "config.json"
    config.write_text(document)
    assert secret in config.read_text()
    error = evidence.raised(lambda: CacheManager.from_config(config))
    assert isinstance(error, ConfigError), error
    assert "config.json" in str(error)  # it still names the file
    monkeypatch.setenv("STASHLY_CONFIG", str(config))  # the same file, named by the environment
    assert isinstance(evidence.raised(CacheManager), ConfigError)
    evidence.check(logged=False)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://app:{PASSWORD}@127.0.0.1:99999/0",
        f"redis://app:{PASSWORD}@127.0.0.1:6379/db",
        f"ftp://app:{PASSWORD}@127.0.0.1:6379/0",
        f"redis://app:{PASSWORD}#@127.0.0.1/0",
        f"redis://app:{PASSWORD}\t@127.0.0.1/0",
    ],
)
def test_url_errors_from_arguments_and_environment_never_echo_the_password(
    url: str, evidence: Evidence, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(evidence.raised(lambda: CacheManager(url=url)), ConfigError)
    monkeypatch.setenv("STASHLY_URL", url)
    assert isinstance(evidence.raised(CacheManager), ConfigError)
    monkeypatch.setenv("STASHLY_URL", "redis://127.0.0.1/0")
    monkeypatch.setenv("STASHLY_PASSWORD", PASSWORD)
    monkeypatch.setenv("STASHLY_SECRETS", SHORT_SECRET)  # too short for pickle
    monkeypatch.setenv("STASHLY_SERIALIZER", "pickle")
    assert isinstance(evidence.raised(CacheManager), ConfigError)
    evidence.check(logged=False)


@pytest.mark.parametrize("source", ["arguments", "environment", "config.json"])
async def test_the_hmac_secret_never_leaks(
    source: str, app_server: RedisServer, evidence: Evidence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://app:{PASSWORD}@127.0.0.1:{app_server.port}/0"
    if source == "arguments":
        cm = CacheManager(url=url, serializer="pickle", secrets=[HMAC_SECRET])
    elif source == "environment":
        monkeypatch.setenv("STASHLY_URL", url)
        monkeypatch.setenv("STASHLY_SERIALIZER", "pickle")
        monkeypatch.setenv("STASHLY_SECRETS", HMAC_SECRET)
        cm = CacheManager()
    else:
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"redis": {"url": url, "serializer": "pickle", "secrets": [HMAC_SECRET]}}))
        cm = CacheManager.from_config(config)
    assert cm.settings.secrets == (HMAC_SECRET,)
    profile, _ = decorate(cm, evidence)
    assert profile(ARG_EMAIL).email == VALUE_EMAIL
    key = profile.cache_key(ARG_EMAIL)
    with app_server.client() as admin:
        stored = admin.get(key)
        assert stored is not None
        admin.set(key, stored[:-3] + b"xyz")  # tampered: the signature no longer matches
    assert profile(ARG_EMAIL).email == VALUE_EMAIL
    assert any("treated as a miss" in r.getMessage() for r in evidence.caplog.records)
    down = CacheManager(
        url=f"redis://127.0.0.1:{free_port()}/0", serializer="pickle", secrets=[HMAC_SECRET], strict=True
    )
    evidence.objects += [down, down.settings]
    assert isinstance(evidence.raised(lambda: down.set("k", VALUE_EMAIL)), CacheUnavailableError)
    cm.close()
    evidence.check()


async def test_template_keys_keep_argument_values_out_of_logs(evidence: Evidence) -> None:
    """A key template renders arguments into the key; failure logs must not show them."""
    cm = CacheManager(url=f"redis://127.0.0.1:{free_port()}/0", namespace="people")
    cache = Cached(manager=cm)

    @cache.cached(key="user:{email}")
    def by_email(email: str) -> Profile:
        return Profile(id=1, email=VALUE_EMAIL)

    assert by_email(ARG_EMAIL).email == VALUE_EMAIL
    assert by_email.invalidate(ARG_EMAIL) is False
    cm.close()
    evidence.check()
