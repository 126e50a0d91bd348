"""CacheManager behaviour, the same tests over memory|redis x sync|async."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis
from pydantic import BaseModel

from stashly import CacheManager, CacheUnavailableError, SerializationError

from tests.support import BACKENDS, Api, aeventually, backend_url, pttl_after_store

pytestmark = pytest.mark.timeout(60)


class UserRead(BaseModel):
    id: int
    email: str
    is_active: bool = True


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Color(enum.Enum):
    RED = "red"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    return backend_url(request, backend)


@pytest.fixture
def manager(url: str) -> Iterator[CacheManager]:
    with CacheManager(url=url, namespace="t") as cm:
        yield cm


@pytest.fixture(params=["sync", "async"])
def api(manager: CacheManager, request: pytest.FixtureRequest) -> Api:
    return Api(manager, request.param)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1, "b": [1, 2.5, None, True, "x"]}, {"a": 1, "b": [1, 2.5, None, True, "x"]}),
        ([1, "two", 3.0], [1, "two", 3.0]),
        ("text", "text"),
        (42, 42),
        (2.5, 2.5),
        (False, False),
        (UserRead(id=1, email="a@x.io"), {"id": 1, "email": "a@x.io", "is_active": True}),
        (Point(1, 2), {"x": 1, "y": 2}),
        (dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), "2024-05-01T12:00:00+00:00"),
        (dt.date(2024, 5, 1), "2024-05-01"),
        (dt.time(12, 30), "12:30:00"),
        (uuid.UUID(int=7), "00000000-0000-0000-0000-000000000007"),
        (decimal.Decimal("1.10"), "1.10"),
        (Color.RED, "red"),
        ({1: "int keys become strings"}, {"1": "int keys become strings"}),
    ],
)
async def test_values_roundtrip_as_json(api: Api, value: object, expected: object) -> None:
    await api.set("k", value)
    assert await api.get("k") == expected


async def test_absent_key_returns_default(api: Api) -> None:
    assert await api.get("nope") is None
    assert await api.get("nope", "fallback") == "fallback"


async def test_cached_none_is_not_absent(api: Api) -> None:
    await api.set("none", None)
    assert await api.get("none", "absent") is None
    assert await api.get("other", "absent") == "absent"


async def test_typed_read_back(api: Api) -> None:
    await api.set("user:1", UserRead(id=1, email="a@x.io"))
    user = await api.get("user:1", type=UserRead)
    assert user == UserRead(id=1, email="a@x.io")
    await api.set("users", [UserRead(id=1, email="a@x.io"), UserRead(id=2, email="b@x.io")])
    users = await api.get("users", type=list[UserRead])
    assert [u.id for u in users] == [1, 2]
    assert all(isinstance(u, UserRead) for u in users)


async def test_typed_read_back_of_wrong_shape_is_default(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    await api.set("user:1", {"id": "not a number"})
    with caplog.at_level(logging.WARNING, logger="stashly"):
        assert await api.get("user:1", "absent", type=UserRead) == "absent"
    assert "does not validate" in caplog.text


async def test_overwrite_and_remove(api: Api) -> None:
    await api.set("k", 1)
    await api.set("k", 2)
    assert await api.get("k") == 2
    assert await api.remove("k") is True
    assert await api.remove("k") is False
    assert await api.get("k") is None


async def test_namespaces_are_isolated(api: Api) -> None:
    await api.set("k", "in t")
    await api.set("k", "in other", namespace="other")
    assert await api.get("k") == "in t"
    assert await api.get("k", namespace="other") == "in other"
    assert await api.flush_namespace() == 1
    assert await api.get("k") is None
    assert await api.get("k", namespace="other") == "in other"


async def test_versioned_flush_drops_the_namespace_and_keeps_the_next_writes(api: Api) -> None:
    await api.set("k", "old")
    await api.set("k", "in other", namespace="other")
    assert await api.flush_namespace(mode="versioned") == 0  # nothing removed: made unreachable
    assert await api.get("k") is None
    assert await api.get("k", namespace="other") == "in other"
    await api.set("k", "new")
    assert await api.get("k") == "new"
    assert await api.get_many(["k", "absent"]) == {"k": "new"}
    assert await api.flush_namespace(mode="versioned") == 0
    assert await api.get("k") is None
    await api.set("k", "newer")
    assert await api.flush_namespace() == 1  # a scan flush removes every generation's keys


async def test_unknown_flush_mode_is_rejected(api: Api) -> None:
    with pytest.raises(ValueError, match="mode must be 'scan' or 'versioned', got 'fast'"):
        await api.flush_namespace(mode="fast")


async def test_ttl_expiry(api: Api) -> None:
    await api.set("short", "v", 0.2)
    await api.set("long", "v", timedelta(minutes=5))
    assert await aeventually(lambda: _is_absent(api, "short"))
    assert await api.get("long") == "v"


async def _is_absent(api: Api, key: str) -> bool:
    return await api.get(key, "absent") == "absent"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), timedelta(0)])
async def test_invalid_ttl_is_rejected(api: Api, bad: Any) -> None:
    with pytest.raises(ValueError, match="ttl must be a positive"):
        await api.set("k", 1, bad)
    assert await api.get("k", "absent") == "absent"


async def test_no_expiry_needs_to_be_allowed(api: Api) -> None:
    with pytest.raises(ValueError, match="allow_no_expiry"):
        await api.set("k", 1, None)


async def test_unserializable_value_raises_and_writes_nothing(api: Api) -> None:
    await api.set("k", "old")
    with pytest.raises(SerializationError) as err:
        await api.set("k", {"ok": 1, "bad": object()})
    assert "builtins.object" in str(err.value)
    assert "stashly:t:k" in str(err.value)
    with pytest.raises(SerializationError, match="NaN"):
        await api.set("k", [1.0, float("nan")])
    assert await api.get("k") == "old"


async def test_keys_must_be_non_empty_strings(api: Api) -> None:
    with pytest.raises(TypeError):
        await api.get(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await api.set("", 1)


async def test_stats_count_hits_misses_and_stores(api: Api) -> None:
    await api.set("k", 1)
    await api.get("k")
    await api.get("missing")
    stats = api.manager.stats(reset=True)
    assert (stats.hits, stats.misses, stats.stores, stats.errors) == (1, 1, 1, 0)
    assert stats.hit_ratio == 0.5
    assert api.manager.stats().hits == 0


# -- Redis specifics: the layout operators see, the storage format, and SCAN-based flush ------------------


@pytest.fixture(params=["sync", "async"])
def redis_api(redis_url: str, request: pytest.FixtureRequest) -> Iterator[Api]:
    with CacheManager(url=redis_url, namespace="t") as cm:
        yield Api(cm, request.param)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def test_redis_key_layout_and_format(redis_api: Api, raw: redis.Redis) -> None:
    before = time.time_ns() // 1_000_000
    await redis_api.set("user:1", UserRead(id=1, email="a@x.io"), 60)
    stored = raw.get("stashly:t:user:1")
    assert stored is not None
    document = orjson.loads(stored)
    assert before <= document.pop("at") <= time.time_ns() // 1_000_000  # when it was encoded, Unix ms
    assert document == {
        "stashly": 1,
        "key": hashlib.blake2b(b"stashly:t:user:1", digest_size=8).hexdigest(),
        "value": {"id": 1, "email": "a@x.io", "is_active": True},
    }
    assert 0 < raw.pttl("stashly:t:user:1") <= 60_000


async def test_redis_default_and_subsecond_ttl(redis_api: Api, raw: redis.Redis) -> None:
    await redis_api.set("default", 1)
    assert 0 < raw.pttl("stashly:t:default") <= 300_000
    left = await pttl_after_store(lambda: redis_api.set("subsecond", 1, 0.5), lambda: raw.pttl("stashly:t:subsecond"))
    assert 0 < left <= 500
    assert redis_api.manager.stats().errors == 0


async def test_redis_allowed_no_expiry(redis_url: str, raw: redis.Redis) -> None:
    cm = CacheManager(url=redis_url, namespace="t", allow_no_expiry=True)
    cm.set("forever", 1, ttl=None)
    await cm.aset("forever2", 1, ttl=None)
    assert raw.ttl("stashly:t:forever") == -1
    assert raw.ttl("stashly:t:forever2") == -1
    cm.close()


async def test_flush_never_touches_foreign_keys(redis_api: Api, raw: redis.Redis) -> None:
    foreign = ["other", "stashly:t", "stashly:tt:k", "stashly:tx", "myapp:t:k", "stashly:T:k"]
    for key in foreign:
        raw.set(key, b"not ours")
    await redis_api.set("a", 1)
    await redis_api.set("b", 2)
    assert await redis_api.flush_namespace() == 2
    assert sorted(k.decode() for k in raw.keys("*")) == sorted([*foreign, "stashly::guard:t"])


async def test_versioned_flush_is_one_counter_and_old_entries_expire(redis_api: Api, raw: redis.Redis) -> None:
    await redis_api.set("k", "old", 60)
    assert await redis_api.flush_namespace(mode="versioned") == 0
    assert raw.get("stashly::gen:t") == b"1"
    assert raw.get("stashly:t:k") is not None  # still stored, unreachable, reclaimed by its TTL
    assert 0 < raw.pttl("stashly:t:k") <= 60_000
    await redis_api.set("k", "new", 60)
    stored = raw.get("stashly:t:k") or b""
    assert stored.startswith(b"\x001\x00")  # stamped with generation 1
    assert orjson.loads(stored[3:])["value"] == "new"
    raw.incr("stashly::gen:t")  # another process's versioned flush
    assert await redis_api.get("k") is None


async def test_glob_namespace_is_literal(redis_api: Api, raw: redis.Redis) -> None:
    for namespace in ["a*", "ab", "a?", "a[b]", "a\\", "ax"]:
        await redis_api.set("k", namespace, namespace=namespace)
    assert await redis_api.flush_namespace("a*") == 1
    assert await redis_api.flush_namespace("a?") == 1
    assert await redis_api.flush_namespace("a[b]") == 1
    entries = sorted(k.decode() for k in raw.keys("*") if b"::guard:" not in k)
    assert entries == ["stashly:a\\:k", "stashly:ab:k", "stashly:ax:k"]


@pytest.mark.timeout(240)  # 40,000 round trips: some 15 s on a Cluster with both cores busy, more on a busier one
def test_flush_isolation_with_10000_keys_each(url: str) -> None:
    with CacheManager(url=url, namespace="one") as one, CacheManager(url=url, namespace="two") as two:
        for i in range(10_000):
            one.set(f"k{i}", i)
            two.set(f"k{i}", i)
        assert one.flush_namespace() == 10_000
        assert one.get("k1") is None
        assert two.get("k1") == 1
        assert two.get("k9999") == 9999
        assert two.flush_namespace() == 10_000


async def test_entry_copied_to_another_key_is_a_miss(redis_api: Api, raw: redis.Redis) -> None:
    await redis_api.set("user:1", {"email": "one@x.io"})
    raw.set("stashly:t:user:2", raw.get("stashly:t:user:1") or b"")
    assert await redis_api.get("user:2", "absent") == "absent"
    assert await redis_api.get("user:1") == {"email": "one@x.io"}


async def test_deeply_nested_payload_is_a_quick_miss(redis_api: Api, raw: redis.Redis) -> None:
    raw.set("stashly:t:deep", b"[" * 1_000_000)
    assert await redis_api.get("deep", "absent") == "absent"


async def test_corrupt_entry_is_a_miss(redis_api: Api, raw: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    raw.set("stashly:t:bad", b"\x80 not json")
    raw.set("stashly:t:foreign", b'{"some": "other format"}')
    with caplog.at_level(logging.WARNING, logger="stashly"):
        assert await redis_api.get("bad", "absent") == "absent"
        assert await redis_api.get("foreign", "absent") == "absent"
    assert "not a stashly entry" in caplog.text


# -- failure behaviour -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_stopped_redis_fails_open(disposable_redis: Any, mode: str) -> None:
    cm = CacheManager(url=disposable_redis.url, namespace="t")
    api = Api(cm, mode)
    await api.set("k", 1)
    disposable_redis.stop()
    assert await api.get("k", "default") == "default"
    await api.set("k", 2)
    assert await api.remove("k") is False
    assert await api.flush_namespace() == 0
    assert cm.stats().errors == 4


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_stopped_redis_raises_in_strict_mode(disposable_redis: Any, mode: str) -> None:
    cm = CacheManager(url=disposable_redis.url, namespace="t", strict=True)
    api = Api(cm, mode)
    disposable_redis.stop()
    with pytest.raises(CacheUnavailableError):
        await api.get("k")
    with pytest.raises(CacheUnavailableError):
        await api.set("k", 1)


def test_from_config_reads_the_redis_section(tmp_path: Any, redis_server: Any) -> None:
    path = tmp_path / "config.json"
    path.write_text(orjson.dumps({"redis": {"host": "127.0.0.1", "port": redis_server.port, "ttl": 30}}).decode())
    cm = CacheManager.from_config(path, namespace="cfg")
    assert cm.settings.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert cm.settings.default_ttl == 30
    cm.set("k", "v")
    assert cm.get("k") == "v"
    assert cm.remove("k") is True
    cm.close()


def test_repr_never_shows_the_password() -> None:
    cm = CacheManager(url="redis://user:s3cret-pw@127.0.0.1:1/0")
    assert "s3cret-pw" not in repr(cm)
    assert "s3cret-pw" not in repr(cm.settings)


async def test_get_many_in_one_round_trip(api: Api) -> None:
    await api.set("a", {"n": 1})
    await api.set("b", None)
    await api.set("c", UserRead(id=3, email="c@x.io"))
    keys = ["a", "b", "missing", "c"]
    if api.is_async:
        found = await api.manager.aget_many(keys)
        typed = await api.manager.aget_many(["c"], type=UserRead)
    else:
        found = api.manager.get_many(keys)
        typed = api.manager.get_many(["c"], type=UserRead)
    assert found == {"a": {"n": 1}, "b": None, "c": {"id": 3, "email": "c@x.io", "is_active": True}}
    assert typed == {"c": UserRead(id=3, email="c@x.io")}
    assert (api.manager.get_many([]) if not api.is_async else await api.manager.aget_many([])) == {}
