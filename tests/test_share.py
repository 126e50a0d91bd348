"""``share=True``: a hit held in process decoded once, the same read-only value for every caller, never stale."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter

from stashly import Cached, CacheManager, ConfigError, LocalTier
from stashly.engine.shared import SharedValues
from stashly.sentinels import MISSING
from stashly.storage import codec
from stashly.storage.frozen import FrozenDict, FrozenList, freeze

from tests.support import eventually

pytestmark = pytest.mark.timeout(60)

CATALOG = {"items": [{"sku": "a", "tags": ["x"]}, {"sku": "b", "tags": []}], "count": 2}


@pytest.fixture
def memory() -> Iterator[CacheManager]:
    with CacheManager(url="memory://", namespace="share") as cm:
        yield cm


def test_hits_share_one_read_only_value(memory: CacheManager) -> None:
    calls: list[int] = []

    @Cached(manager=memory).cached(ttl=60, share=True)
    def catalog(n: int) -> dict[str, Any]:
        calls.append(n)
        return CATALOG

    assert catalog(1) == CATALOG  # the miss: the computed value itself
    first, second = catalog(1), catalog(1)
    assert first == CATALOG
    assert first is second
    assert calls == [1]
    with pytest.raises(TypeError, match="read-only"):
        first["count"] = 3
    with pytest.raises(TypeError, match="read-only"):
        first["items"].append({})
    with pytest.raises(TypeError, match="read-only"):
        first["items"][0]["tags"].clear()
    assert catalog(1) == CATALOG
    mine = copy.deepcopy(first)
    mine["items"][0]["tags"].append("y")  # a deep copy is the caller's own
    assert catalog(1) == CATALOG


async def test_async_hits_share_too(memory: CacheManager) -> None:
    @Cached(manager=memory).cached(ttl=60, share=True)
    async def catalog(n: int) -> dict[str, Any]:
        return CATALOG

    await catalog(1)
    assert await catalog(1) is await catalog(1)


def test_without_share_each_hit_is_the_callers_own(memory: CacheManager) -> None:
    @Cached(manager=memory).cached(ttl=60)
    def catalog(n: int) -> dict[str, Any]:
        return CATALOG

    catalog(1)
    first = catalog(1)
    assert first is not catalog(1)
    first["count"] = 3
    assert catalog(1)["count"] == 2


def test_a_new_entry_is_decoded_afresh(memory: CacheManager) -> None:
    version = [1]

    @Cached(manager=memory).cached(ttl=60, share=True)
    def catalog(n: int) -> dict[str, Any]:
        return {"version": version[0]}

    catalog(1)
    assert catalog(1) == {"version": 1}
    version[0] = 2
    assert catalog.invalidate(1)
    assert catalog(1) == {"version": 2}
    assert catalog(1) == {"version": 2}
    memory.engine.backend.set(catalog.cache_key(1), codec.encode({"version": 3}, catalog.cache_key(1)), 60)
    assert catalog(1) == {"version": 3}  # the same key, other bytes: never the value shared before


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int


class Plain(BaseModel):
    id: int


def test_a_frozen_model_is_shared_and_another_is_validated_on_every_hit(memory: CacheManager) -> None:
    cached = Cached(manager=memory).cached(ttl=60, share=True)

    @cached
    def frozen(n: int) -> Frozen:
        return Frozen(id=n)

    @cached
    def plain(n: int) -> Plain:
        return Plain(id=n)

    frozen(1), plain(1)
    assert frozen(1) is frozen(1)
    assert frozen(1) == Frozen(id=1)
    mine = plain(1)
    assert mine == Plain(id=1)
    assert mine is not plain(1)
    mine.id = 5
    assert plain(1) == Plain(id=1)


def test_a_value_is_shared_for_its_own_bytes_and_reader_only() -> None:
    values = SharedValues()
    raw = b"{}"
    dicts, lists = codec.reader_for(dict), codec.reader_for(list)
    values.put("k", raw, dicts, {"a": 1})
    assert values.get("k", raw, dicts) == {"a": 1}
    assert values.get("k", raw, lists) is MISSING
    assert values.get("k", bytes(bytearray(raw)), dicts) is MISSING  # equal bytes, another entry


def test_shared_values_are_bounded() -> None:
    values = SharedValues(max_entries=2, max_bytes=10)
    reader = codec.identity
    raws = {key: key.encode() * 3 for key in "abc"}  # 3 bytes each
    for key, raw in raws.items():
        values.put(key, raw, reader, {"k": key})
    assert values.get("a", raws["a"], reader) is MISSING
    assert values.get("c", raws["c"], reader) == {"k": "c"}
    big = b"x" * 11
    assert values.put("big", big, reader, [1]) == [1]
    assert values.get("big", big, reader) is MISSING


def test_share_on_the_local_tier(redis_url: str) -> None:
    with (
        CacheManager(redis_url, namespace="share", local=LocalTier(ttl=60)) as cm,
        CacheManager(redis_url, namespace="share") as other,
    ):
        tier = cm.local
        assert tier is not None

        @Cached(manager=cm).cached(ttl=60, share=True)
        def catalog(n: int) -> dict[str, Any]:
            return CATALOG

        catalog(1)
        key = catalog.cache_key(1)
        assert eventually(lambda: catalog(1) == CATALOG and tier.lookup(key) is not None)
        assert eventually(lambda: catalog(1) is catalog(1))  # both answered in process (the tier trusted)
        other.engine.backend.set(key, codec.encode({"count": 0}, key), 60)  # another process's write
        assert eventually(lambda: catalog(1) == {"count": 0})


def test_share_is_refused_with_http(memory: CacheManager) -> None:
    with pytest.raises(ConfigError, match="share"):

        @Cached(manager=memory).cached(http=True, share=True)
        def endpoint() -> dict[str, Any]:
            return {}


def test_frozen_values_behave_as_dicts_and_lists_everywhere_else() -> None:
    value = freeze(CATALOG)
    assert isinstance(value, dict)
    assert isinstance(value["items"], list)
    assert type(value) is FrozenDict
    assert type(value["items"]) is FrozenList
    assert orjson.loads(orjson.dumps(value)) == CATALOG
    assert TypeAdapter(dict[str, Any]).validate_python(value) == CATALOG
    for thawed in (
        value.copy(),
        dict(value),
        copy.copy(value),
        copy.deepcopy(value),
        pickle.loads(pickle.dumps(value)),
    ):
        assert type(thawed) is dict
        assert thawed == CATALOG
    assert type(value["items"][:1]) is list
    assert type(pickle.loads(pickle.dumps(value["items"]))) is list
    for change in (
        lambda: value.update(a=1),
        lambda: value.setdefault("a", 1),
        lambda: value.pop("count"),
        lambda: value.popitem(),
        lambda: value.__delitem__("count"),
        lambda: value.__ior__({}),
        lambda: value["items"].insert(0, 1),
        lambda: value["items"].sort(),
        lambda: value["items"].__setitem__(0, 1),
        lambda: value["items"].__iadd__([1]),
    ):
        with pytest.raises(TypeError):
            change()
    assert value == CATALOG


class Item(BaseModel):
    id: int


class FrozenItems(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: tuple[Frozen, ...]
    names: list[str]


class FrozenTuple(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: tuple[Frozen, ...]


def test_nothing_changeable_is_shared(memory: CacheManager) -> None:
    cached = Cached(manager=memory).cached(ttl=60, share=True)

    @cached
    def items(n: int) -> list[Item]:
        return [Item(id=n)]

    @cached
    def frozen_with_a_list(n: int) -> FrozenItems:
        return FrozenItems(items=(Frozen(id=n),), names=["a"])

    @cached
    def frozen_all_through(n: int) -> FrozenTuple:
        return FrozenTuple(items=(Frozen(id=n),))

    items(1), frozen_with_a_list(1), frozen_all_through(1)
    mine = items(1)
    assert type(mine) is list  # not shared: an ordinary value, as without share
    mine[0].id = 9  # a plain model inside: each hit validates its own
    assert items(1) == [Item(id=1)]
    assert frozen_with_a_list(1) is not frozen_with_a_list(1)  # its list could be changed: not shared
    assert frozen_all_through(1) is frozen_all_through(1)
