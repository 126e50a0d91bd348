"""The opt-in signed pickle serializer: signed, verified before unpickling, rotatable, bound to its key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from stashly import Cached, CacheManager, ConfigError
from stashly.storage.pickle import SignedPickle

NEW, OLD, OTHER = "n" * 32, "o" * 40, "x" * 32


class Point:
    """Not JSON: only pickle can cache it."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    def __hash__(self) -> int:
        return self.x


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


@pytest.fixture
def manager(url: str) -> Iterator[CacheManager]:
    with CacheManager(url=url, namespace="p", serializer="pickle", secrets=[NEW]) as cm:
        yield cm


def test_roundtrip_of_non_json_values(manager: CacheManager) -> None:
    value = {"p": Point(3), "when": dt.datetime(2024, 1, 1), "raw": b"\x00\xff", "set": {1, 2}}
    manager.set("k", value)
    assert manager.get("k") == value


def test_decorator_with_pickle(manager: CacheManager) -> None:
    calls = 0

    @Cached(manager=manager).cached
    def point(x: int) -> Point:
        nonlocal calls
        calls += 1
        return Point(x)

    assert point(2) == point(2) == Point(2)
    assert calls == 1


def test_tampered_unsigned_or_foreign_payloads_are_never_unpickled(
    manager: CacheManager, caplog: pytest.LogCaptureFixture
) -> None:
    manager.set("k", Point(1))
    backend = manager._backend
    key = manager.key("k")
    stored = backend.get(key)
    assert stored is not None
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    exploding = b"stashly-pickle:1:" + b"0" * 64 + b":" + b"cos\nsystem\n(S'echo pwned'\ntR."
    for bad in [tampered, exploding, b"\x80\x04K\x01.", b'{"stashly":1,"key":"x","value":1}']:
        backend.set(key, bad, 60)
        assert manager.get("k", "miss") == "miss"
    assert "unsigned" in caplog.text


def test_a_copy_to_another_key_fails_verification(manager: CacheManager) -> None:
    manager.set("user:1", {"email": "one@example.com"})
    backend = manager._backend
    backend.set(manager.key("user:2"), backend.get(manager.key("user:1")) or b"", 60)
    assert manager.get("user:2", "miss") == "miss"


def test_key_rotation(redis_url: str) -> None:
    url = redis_url
    with CacheManager(url=url, namespace="p", serializer="pickle", secrets=[OLD]) as before:
        before.set("k", Point(7))
    with CacheManager(url=url, namespace="p", serializer="pickle", secrets=[NEW, OLD]) as rotating:
        assert rotating.get("k") == Point(7)  # old signatures still accepted
        rotating.set("k2", Point(8))
    with CacheManager(url=url, namespace="p", serializer="pickle", secrets=[NEW]) as after:
        assert after.get("k2") == Point(8)
        assert after.get("k", "miss") == "miss"  # OLD retired: its entries are refused
    with CacheManager(url=url, namespace="p", serializer="pickle", secrets=[OTHER]) as stranger:
        assert stranger.get("k2", "miss") == "miss"


def test_pickle_is_opt_in_and_needs_a_long_secret() -> None:
    assert CacheManager(url="memory://").settings.serializer == "json"
    with pytest.raises(ConfigError, match="secrets"):
        CacheManager(url="memory://", serializer="pickle")
    with pytest.raises(ConfigError, match="32 bytes"):
        CacheManager(url="memory://", serializer="pickle", secrets=["too short"])
    with pytest.raises(ConfigError) as err:
        CacheManager(url="memory://", serializer="pickle", secrets=["leaky-secret-but-short"])
    assert "leaky-secret" not in str(err.value)
    manager = CacheManager(url="memory://", serializer="pickle", secrets=[NEW])
    assert NEW not in repr(manager.settings)
    assert NEW not in repr(manager.engine.serializer)
    assert NEW not in repr(SignedPickle([NEW]))
