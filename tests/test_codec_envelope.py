"""The envelope's version is exactly the integer 1: ``true`` and ``1.0`` compare equal to it in Python, and are
not it."""

from __future__ import annotations

import orjson
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from stashly import CacheManager
from stashly.sentinels import MISSING
from stashly.storage import codec


def envelope(version: object, key: str, value: object = "v") -> bytes:
    return orjson.dumps({"stashly": version, "key": codec.binding(key).decode(), "value": value})


@pytest.mark.parametrize("version", [True, 1.0, "1", [1], None, 2, 0, False])
def test_an_envelope_version_other_than_the_integer_1_is_a_miss(version: object) -> None:
    assert codec.decode(envelope(version, "k"), "k") is MISSING
    assert codec.decode(envelope(1, "k"), "k") == "v"


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()


@given(version=st.recursive(JSON_SCALARS, st.lists, max_leaves=3))
def test_only_the_integer_1_reads_as_version_1(version: object) -> None:
    decoded = codec.decode(envelope(version, "k", {"x": 1}), "k")
    assert (decoded == {"x": 1}) is (type(version) is int and version == 1)
    assert decoded is MISSING or type(version) is int


def test_a_stored_entry_with_version_true_reads_as_a_miss_on_redis(redis_url: str) -> None:
    manager = CacheManager(url=redis_url, namespace="envelope")
    client = redis.Redis.from_url(redis_url)
    try:
        key = manager.key("k")
        client.set(key, envelope(True, key, "forged"))
        assert manager.get("k", "default") == "default"
        client.set(key, envelope(1, key, "real"))
        assert manager.get("k", "default") == "real"
    finally:
        client.close()
        manager.close()
