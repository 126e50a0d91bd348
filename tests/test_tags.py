"""Tags: ``set(..., tags=...)`` and ``@cached(tags=...)`` file entries under tags, ``invalidate_tags`` makes every
entry of a tag a miss — across namespaces and functions, on every topology, in every process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stashly import CacheManager

from tests.support import BACKENDS, Api, backend_url


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    with CacheManager(backend_url(request, request.param), namespace="tg") as manager:
        yield manager


async def test_invalidating_a_tag_drops_exactly_its_entries_in_any_namespace(manager: CacheManager, mode: str) -> None:
    api = Api(manager, mode)
    await api.set("user:5", {"id": 5}, tags=["user:5", "org:1"])
    await api.set("profile:5", {"bio": "x"}, namespace="profiles", tags=["user:5"])
    await api.set("user:6", {"id": 6}, tags=["user:6", "org:1"])
    await api.set("plain", 1)
    assert await api.get("user:5") == {"id": 5}
    assert await api.get("profile:5", namespace="profiles") == {"bio": "x"}

    assert await api.invalidate_tags("user:5") == 1
    assert await api.get("user:5") is None
    assert await api.get("profile:5", namespace="profiles") is None
    assert await api.get("user:6") == {"id": 6}
    assert await api.get("plain") == 1
    assert await api.get_many(["user:5", "user:6", "plain"]) == {"user:6": {"id": 6}, "plain": 1}

    assert await api.invalidate_tags("org:1", "never-used") == 1
    assert await api.get("user:6") is None
    await api.set("user:6", {"id": 6, "v": 2}, tags=["org:1"])  # a write after the invalidation is current
    assert await api.get("user:6") == {"id": 6, "v": 2}
    assert await api.get_many(["user:6"]) == {"user:6": {"id": 6, "v": 2}}


async def test_an_evicted_tag_token_makes_its_entries_misses_not_current(manager: CacheManager) -> None:
    manager.set("k", 1, tags=["t"])
    manager.engine.backend.delete(manager.settings.prefix + "::tag:t")  # as an eviction or expiry would
    assert manager.get("k") is None
    manager.set("k", 2, tags=["t"])
    assert manager.get("k") == 2


async def test_a_removed_tagged_entry_is_gone_and_untagged_keys_are_untouched(manager: CacheManager) -> None:
    manager.set("k", 1, tags=["t"])
    assert manager.remove("k") is True
    assert manager.get("k") is None
    manager.set("k", 2)  # now untagged: the tag no longer reaches it
    manager.invalidate_tags("t")
    assert manager.get("k") == 2


@pytest.mark.parametrize(
    ("tags", "error", "match"),
    [
        ("user:5", TypeError, "not the single string"),
        ([5], TypeError, "a tag is a str"),
        ([""], ValueError, "must be 1 to 200"),
        (["has space"], ValueError, "without spaces"),
        (['quo"te'], ValueError, "quotes"),
        (["br{ace}"], ValueError, "braces"),
        (["x" * 201], ValueError, "1 to 200"),
    ],
)
def test_bad_tags_are_refused_before_anything_is_written(tags: object, error: type[Exception], match: str) -> None:
    with CacheManager("memory://") as manager:
        with pytest.raises(error, match=match):
            manager.set("k", 1, tags=tags)  # type: ignore[arg-type]
        assert manager.get("k") is None
        if isinstance(tags, list):  # invalidate_tags takes tags as arguments: a lone string is one tag
            with pytest.raises(error, match=match):
                manager.invalidate_tags(*tags)


def test_tags_need_the_json_serializer() -> None:
    with (
        CacheManager("memory://", serializer="pickle", secrets=["s" * 32]) as manager,
        pytest.raises(TypeError, match="JSON serializer"),
    ):
        manager.set("k", 1, tags=["t"])
