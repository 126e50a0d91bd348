"""``@cached(result_tags=...)``: tags read from the result, with the guarantee argument tags have — a tag
invalidation that runs while the value is computed is never undone by storing it (the tag epoch)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stashly import Cached, CacheManager, ConfigError, LocalTier
from stashly.tags import uncommitted

from tests.support import BACKENDS, backend_url


@pytest.fixture(params=BACKENDS)
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    with CacheManager(backend_url(request, request.param), namespace="rt") as manager:
        yield manager


class Members:
    """User rows, each in an organisation; reads are counted, and a hook runs inside a read."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {5: {"id": 5, "org": 1}, 6: {"id": 6, "org": 2}}
        self.reads = 0
        self.during_read: Callable[[], Any] | None = None

    def read(self, user_id: int) -> dict[str, Any]:
        self.reads += 1
        row = dict(self.rows[user_id])
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return row


def org_of(row: dict[str, Any]) -> list[str]:
    return [f"org:{row['org']}"]


def cached_read(manager: CacheManager, members: Members, is_async: bool, **options: Any) -> Callable[..., Any]:
    cache = Cached("members", ttl=600, manager=manager)
    if is_async:

        async def member(user_id: int) -> dict[str, Any]:
            return members.read(user_id)

        return cache.cached(result_tags=org_of, **options)(member)

    def member_sync(user_id: int) -> dict[str, Any]:
        return members.read(user_id)

    return cache.cached(result_tags=org_of, **options)(member_sync)


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    return await result if inspect.isawaitable(result) else result


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_tag_from_the_result_invalidates_its_entries(manager: CacheManager, is_async: bool) -> None:
    members = Members()
    member = cached_read(manager, members, is_async, tags=["user:{user_id}"])
    assert await call(member, 5) == {"id": 5, "org": 1}
    assert await call(member, 6) == {"id": 6, "org": 2}
    assert await call(member, 5) == {"id": 5, "org": 1}
    assert members.reads == 2  # the third call was a hit

    members.rows[5]["org"] = 3
    assert manager.invalidate_tags("org:1") == 1
    assert await call(member, 5) == {"id": 5, "org": 3}
    assert await call(member, 6) == {"id": 6, "org": 2}  # another organisation: still a hit
    assert members.reads == 3
    assert manager.invalidate_tags("org:1") == 0  # the new entry is filed under org:3, no longer org:1
    assert await call(member, 5) == {"id": 5, "org": 3}
    assert members.reads == 3

    manager.invalidate_tags("user:6")  # the argument tags still apply
    assert await call(member, 6) == {"id": 6, "org": 2}
    assert members.reads == 4


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_value_computed_across_an_invalidation_of_its_tag_is_not_stored(
    manager: CacheManager, is_async: bool
) -> None:
    members = Members()
    member = cached_read(manager, members, is_async)
    other = CacheManager(manager.settings.url, namespace="rt") if manager.settings.url != "memory://" else manager

    def concurrent_change() -> None:  # after the read, before the result is stored: the race
        members.rows[5]["name"] = "changed"
        other.invalidate_tags("org:1")

    try:
        members.during_read = concurrent_change
        assert await call(member, 5) == {"id": 5, "org": 1}  # the old row, read before the change
        assert await call(member, 5) == {"id": 5, "org": 1, "name": "changed"}  # not stored: computed again
        assert members.reads == 2
        assert await call(member, 5) == {"id": 5, "org": 1, "name": "changed"}
        assert members.reads == 2  # this one was stored
    finally:
        if other is not manager:
            other.close()


async def test_a_result_tag_written_by_this_transaction_is_bypassed_and_not_stored(manager: CacheManager) -> None:
    members = Members()
    member = cached_read(manager, members, False)
    assert member(5) == {"id": 5, "org": 1}
    mark = uncommitted.add(["org:1"])
    try:
        members.rows[5]["name"] = "uncommitted"
        assert member(5)["name"] == "uncommitted"  # the entry under org:1 is not served in this context
        assert member(5)["name"] == "uncommitted"  # and what was computed was not stored
        assert members.reads == 3
    finally:
        mark.release()
    members.rows[5].pop("name")  # rolled back
    assert member(5) == {"id": 5, "org": 1}  # the first entry again, never replaced
    assert members.reads == 3


def test_result_tags_through_the_local_tier_reach_every_process(redis_url: str) -> None:
    members = Members()
    with (
        CacheManager(redis_url, namespace="rt", local=LocalTier(ttl=60)) as local,
        CacheManager(redis_url, namespace="rt") as elsewhere,
    ):
        member = cached_read(local, members, False)
        assert member(5) == {"id": 5, "org": 1}
        assert member(5) == {"id": 5, "org": 1}
        assert members.reads == 1
        members.rows[5]["org"] = 2
        elsewhere.invalidate_tags("org:1")
        assert member(5) == {"id": 5, "org": 2}


def test_result_tags_are_checked(manager: CacheManager) -> None:
    cache = Cached("members", ttl=60, manager=manager)

    def endpoint(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    with pytest.raises(TypeError, match="result_tags is a callable"):
        cache.cached(result_tags=["org:1"])(endpoint)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="result_tags is not available with http=True"):
        cache.cached(http=True, result_tags=org_of)(endpoint)

    @cache.cached(result_tags=lambda row: "org:1")
    def single(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    with pytest.raises(TypeError, match="returned the single string 'org:1'"):
        single(1)

    @cache.cached(result_tags=lambda row: ["has space"])
    def invalid(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    with pytest.raises(ValueError, match="tag 'has space' must be"):
        invalid(1)
