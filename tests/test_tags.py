"""Tags: ``set(..., tags=...)`` and ``@cached(tags=...)`` file entries under tags, ``invalidate_tags`` makes every
entry of a tag a miss — across namespaces and functions, on every topology, in every process."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stashly import Cached, CacheManager, ConfigError, LocalTier
from stashly.tags import uncommitted

from tests.support import BACKENDS, Api, backend_url, eventually
from tests.test_journal import open_breaker


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
    assert manager.stats().tag_invalidations == 3  # one per tag named
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


async def test_calls_that_first_use_a_tag_at_once_agree_on_its_token(manager: CacheManager, mode: str) -> None:
    """Each of them finds the tag without a token and draws one; the first drawn is the one they all file their
    entry under (another process's manager too), so the entry they store is a hit for the next call."""
    computed: list[int] = []

    def body(n: int) -> dict[str, int]:
        computed.append(n)
        return {"n": n}

    async def abody(n: int) -> dict[str, int]:
        await asyncio.sleep(0.001)  # the others read the absent token meanwhile
        return body(n)

    cache = Cached("drawn", ttl=300, manager=manager)
    with CacheManager(manager.settings.url, namespace="tg") as other:
        others = Cached("drawn", ttl=300, manager=other)
        decorate_mine, decorate_theirs = cache.cached(tags=["user:{n}"]), others.cached(tags=["user:{n}"])
        if mode == "async":
            mine, theirs = decorate_mine(abody), decorate_theirs(abody)
            for n in range(20):
                await asyncio.gather(*(function(n) for function in (mine, theirs) * 3))
        else:
            mine, theirs = decorate_mine(body), decorate_theirs(body)
            for n in range(20):
                threads = [threading.Thread(target=function, args=(n,)) for function in (mine, theirs) * 3]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        before = len(computed)
        for n in range(20):
            assert await _call(mine, n, mode) == {"n": n}
            assert await _call(theirs, n, mode) == {"n": n}
        assert len(computed) == before  # every entry stored was filed under the token that stood


async def _call(function: Callable[..., Any], n: int, mode: str) -> Any:
    result = function(n)
    return await result if mode == "async" else result


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
        ([""], ValueError, "must be 1 to 256"),
        (["has space"], ValueError, "without spaces"),
        (['quo"te'], ValueError, "quotes"),
        (["br{ace}"], ValueError, "braces"),
        (["x" * 257], ValueError, "1 to 256"),
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


class Users:
    """A source of user rows whose reads are counted."""

    def __init__(self) -> None:
        self.rows = {5: {"id": 5, "name": "ada"}, 6: {"id": 6, "name": "bob"}}
        self.reads = 0

    def read(self, user_id: int) -> dict[str, object]:
        self.reads += 1
        return dict(self.rows[user_id])


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    return await result if inspect.isawaitable(result) else result


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_tag_invalidates_every_cached_function_filed_under_it(manager: CacheManager, is_async: bool) -> None:
    users = Users()
    profiles = Cached("profiles", ttl=600, manager=manager)
    pages = Cached("pages", ttl=600, manager=manager)

    if is_async:

        @profiles.cached(tags=["user:{user_id}"])
        async def profile(user_id: int) -> dict[str, object]:
            return users.read(user_id)

        @pages.cached(tags=lambda user_id: [f"user:{user_id}", "pages"])
        async def page(user_id: int) -> dict[str, object]:
            return {"title": users.read(user_id)["name"]}
    else:

        @profiles.cached(tags=["user:{user_id}"])
        def profile(user_id: int) -> dict[str, object]:
            return users.read(user_id)

        @pages.cached(tags=lambda user_id: [f"user:{user_id}", "pages"])
        def page(user_id: int) -> dict[str, object]:
            return {"title": users.read(user_id)["name"]}

    assert await call(profile, 5) == {"id": 5, "name": "ada"}
    assert await call(page, 5) == {"title": "ada"}
    assert await call(profile, 6) == {"id": 6, "name": "bob"}
    assert users.reads == 3
    assert await call(profile, 5) == {"id": 5, "name": "ada"}  # hits
    assert await call(page, 5) == {"title": "ada"}
    assert users.reads == 3

    users.rows[5]["name"] = "ada lovelace"
    invalidated = manager.invalidate_tags("user:5") if not is_async else await manager.ainvalidate_tags("user:5")
    assert invalidated == 1
    assert await call(profile, 5) == {"id": 5, "name": "ada lovelace"}
    assert await call(page, 5) == {"title": "ada lovelace"}
    assert await call(profile, 6) == {"id": 6, "name": "bob"}  # another tag: still a hit
    assert users.reads == 5
    assert await call(profile, 5) == {"id": 5, "name": "ada lovelace"}  # stored again, current
    assert users.reads == 5

    manager.invalidate_tags("pages")
    assert await call(page, 5) == {"title": "ada lovelace"}
    assert users.reads == 6


def test_a_fill_that_began_before_the_tag_invalidation_is_never_served_after_it(manager: CacheManager) -> None:
    users = Users()
    cache = Cached("tg", ttl=600, manager=manager)
    computing, release = threading.Event(), threading.Event()

    @cache.cached(tags=["user:{user_id}"])
    def profile(user_id: int) -> dict[str, object]:
        row = users.read(user_id)
        if users.reads == 1:
            computing.set()
            assert release.wait(10)
        return row

    early = threading.Thread(target=profile, args=(5,))
    early.start()
    assert computing.wait(10)
    users.rows[5]["name"] = "changed"  # the row changes, and its tag is invalidated, while the old read computes
    manager.invalidate_tags("user:5")
    release.set()
    early.join(10)
    assert profile(5) == {"id": 5, "name": "changed"}  # the early, stale result was stored under the old token
    assert profile(5) == {"id": 5, "name": "changed"}
    assert users.reads == 2


def test_templates_and_tags_are_checked_when_decorating() -> None:
    cache = Cached("tg", ttl=60, manager=CacheManager("memory://"))
    with pytest.raises(ValueError, match="not a parameter"):

        @cache.cached(tags=["user:{uid}"])
        def one(user_id: int) -> int:
            return user_id

    with pytest.raises(ValueError, match="without spaces"):

        @cache.cached(tags=["user {user_id}"])
        def two(user_id: int) -> int:
            return user_id

    with pytest.raises(TypeError, match="list of tags or a callable"):

        @cache.cached(tags="user:{user_id}")  # type: ignore[arg-type]
        def three(user_id: int) -> int:
            return user_id


def test_a_template_value_cannot_forge_another_tag() -> None:
    manager = CacheManager("memory://")
    cache = Cached("tg", ttl=60, manager=manager)
    calls: list[str] = []

    @cache.cached(tags=["user:{name}"])
    def profile(name: str) -> str:
        calls.append(name)
        return name

    profile("5:admin")  # renders as user:5%3Aadmin, never user:5 followed by more structure
    manager.invalidate_tags("user:5")
    profile("5:admin")
    assert calls == ["5:admin"]
    manager.invalidate_tags("user:5%3Aadmin")
    profile("5:admin")
    assert calls == ["5:admin", "5:admin"]


def test_read_your_writes_bypasses_the_tags_an_open_transaction_wrote(manager: CacheManager) -> None:
    users = Users()
    cache = Cached("tg", ttl=600, manager=manager)

    @cache.cached(tags=["user:{user_id}"])
    def profile(user_id: int) -> dict[str, object]:
        return users.read(user_id)

    profile(5)
    manager.set("direct", 1, tags=["user:5"])
    mark = uncommitted.add(["user:5"])
    try:
        users.rows[5]["name"] = "uncommitted"
        assert profile(5)["name"] == "uncommitted"  # this context sees its own write
        assert manager.get("direct") is None  # and no entry filed under the tag
        assert profile(6)["name"] == "bob"  # other tags are cached as usual
    finally:
        mark.release()
    users.rows[5]["name"] = "ada"  # rolled back: the cache never stored the uncommitted value
    assert profile(5)["name"] == "ada"
    assert manager.get("direct") == 1
    assert users.reads == 3  # 5 twice (first fill, uncommitted read), 6 once; the last call was a hit


def test_tagged_functions_need_the_json_serializer() -> None:
    manager = CacheManager("memory://", serializer="pickle", secrets=["s" * 32])
    cache = Cached("tg", ttl=60, manager=manager)

    @cache.cached(tags=["t"])
    def f() -> int:
        return 1

    with pytest.raises(ConfigError, match="tags need the JSON serializer"):
        f()


def test_a_tag_invalidated_elsewhere_reaches_a_local_tier(redis_url: str) -> None:
    users = Users()
    with (
        CacheManager(redis_url, namespace="tg", local=LocalTier(ttl=60)) as local,
        CacheManager(redis_url, namespace="tg") as elsewhere,
    ):
        cache = Cached("tg", ttl=600, manager=local)

        @cache.cached(tags=["user:{user_id}"])
        def profile(user_id: int) -> dict[str, object]:
            return users.read(user_id)

        tier = local.local
        assert tier is not None
        assert eventually(lambda: profile(5)["name"] == "ada" and tier.lookup(profile.cache_key(5)) is not None)
        reads = users.reads
        users.rows[5]["name"] = "changed"
        elsewhere.invalidate_tags("user:5")  # another process, as far as the tier can tell
        # The invalidation has completed: no read that begins now may serve the old value, from the tier or Redis.
        assert profile(5)["name"] == "changed"
        assert users.reads == reads + 1


@pytest.mark.parametrize("backend", ["redis", "cluster", "sentinel"])
def test_a_tag_invalidation_the_backend_missed_is_replayed_and_bypassed_meanwhile(
    request: pytest.FixtureRequest, backend: str
) -> None:
    users = Users()
    url = backend_url(request, backend)
    with CacheManager(url, namespace="tg") as invalidator, CacheManager(url, namespace="tg") as other:
        mine = Cached("tg", ttl=600, manager=invalidator).cached(tags=["user:{user_id}"])(users.read)
        theirs = Cached("tg", ttl=600, manager=other).cached(tags=["user:{user_id}"])(users.read)
        assert mine(5) == theirs(5) == {"id": 5, "name": "ada"}
        assert users.reads == 1
        clock = open_breaker(invalidator)
        users.rows[5]["name"] = "changed"
        assert invalidator.invalidate_tags("user:5") == 0  # refused: journaled
        assert invalidator.stats().pending_invalidations == 1
        assert theirs(5)["name"] == "ada"  # Redis never heard yet
        assert mine(5)["name"] == "changed"  # this process bypasses the tag while it is pending
        assert mine(5)["name"] == "changed"
        clock.now += 10  # the cool-down passes: the next operation probes, the replay goes first
        assert mine(5)["name"] == "changed"
        assert invalidator.stats().pending_invalidations == 0
        assert theirs(5)["name"] == "changed"  # gone everywhere
