"""Cached behaviour, the same tests over memory|redis, with sync and async functions."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import BaseModel

from stashly import Cached, CacheManager, CacheUnavailableError, SerializationError, UnstableKeyError
from stashly.decorator.singleflight import SingleFlight
from stashly.keys import function_name
from stashly.storage import codec

from tests.support import BACKENDS, backend_url, eventually, waiting_in

pytestmark = pytest.mark.timeout(60)


class UserRead(BaseModel):
    id: int
    email: str


@pytest.fixture(params=BACKENDS)
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    url = backend_url(request, request.param)
    with CacheManager(url=url, namespace="t") as cm:
        yield cm


@pytest.fixture
def cache(manager: CacheManager) -> Cached:
    return Cached(namespace="auth", ttl=60, manager=manager)


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def tick(self) -> int:
        with self.lock:
            self.calls += 1
            return self.calls


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(cache: Cached, mode: str, body: Any, **options: Any) -> Any:
    """Decorate ``body`` (a sync function) as-is, or as an ``async def`` with the same signature."""
    if mode == "sync":
        return cache.cached(**options)(body) if options else cache.cached(body)

    @__import__("functools").wraps(body)
    async def async_body(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return body(*args, **kwargs)

    async_body.__qualname__ = body.__qualname__ + "_async"
    return cache.cached(**options)(async_body) if options else cache.cached(async_body)


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


async def test_miss_then_hit_returns_the_same_type(cache: Cached, mode: str) -> None:
    counter = Counter()

    def get_me(user_id: int) -> UserRead:
        counter.tick()
        return UserRead(id=user_id, email=f"u{user_id}@x.io")

    fn = make(cache, mode, get_me)
    first = await call(fn, 5)
    second = await call(fn, 5)
    assert first == second == UserRead(id=5, email="u5@x.io")
    assert type(second) is UserRead
    assert counter.calls == 1
    assert (await call(fn, 6)).id == 6
    assert counter.calls == 2


async def test_typed_hits_for_containers(cache: Cached, mode: str) -> None:
    def users() -> list[UserRead]:
        return [UserRead(id=1, email="a@x.io")]

    def counts() -> dict[str, int]:
        return {"a": 1}

    users_fn, counts_fn = make(cache, mode, users), make(cache, mode, counts)
    await call(users_fn)
    await call(counts_fn)
    hit_users = await call(users_fn)
    assert isinstance(hit_users[0], UserRead)
    assert await call(counts_fn) == {"a": 1}


async def test_none_results_are_cached(cache: Cached, mode: str) -> None:
    counter = Counter()

    def find(user_id: int) -> UserRead | None:
        counter.tick()
        return None

    fn = make(cache, mode, find)
    assert await call(fn, 1) is None
    assert await call(fn, 1) is None
    assert counter.calls == 1


async def test_equivalent_calls_share_one_key(cache: Cached, mode: str) -> None:
    counter = Counter()

    def f(x: int, y: int = 2) -> int:
        counter.tick()
        return x + y

    fn = make(cache, mode, f)
    assert fn.cache_key(1) == fn.cache_key(1, 2) == fn.cache_key(1, y=2) == fn.cache_key(x=1, y=2)
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((1,), {"y": 2}), ((), {"x": 1, "y": 2})]:
        assert await call(fn, *args, **kwargs) == 3
    assert counter.calls == 1


async def test_typed_arguments_give_distinct_keys(cache: Cached, mode: str) -> None:
    def f(x: object) -> object:
        return x

    fn = make(cache, mode, f)
    values: list[object] = [1, "1", 1.0, True, None, "", 0, False, (1,), [1], {"1": 1}]
    assert len({fn.cache_key(v) for v in values}) == len(values)
    for value in values:
        assert await call(fn, value) == value
        assert type(await call(fn, value)) is type(value) or isinstance(value, tuple)


async def test_key_layout(cache: Cached, mode: str) -> None:
    def get_me(user_id: int) -> int:
        return user_id

    fn = make(cache, mode, get_me)
    key = fn.cache_key(5)
    head, digest = key.rsplit(":", 1)
    assert head == f"stashly:auth:{function_name(fn.__wrapped__)}"
    assert len(digest) == 32
    assert int(digest, 16) >= 0


async def test_wrapper_keeps_signature_and_metadata(cache: Cached, mode: str) -> None:
    def get_me(user_id: int, verbose: bool = False) -> UserRead:
        """Docs."""
        return UserRead(id=user_id, email="x")

    fn = make(cache, mode, get_me)
    assert list(inspect.signature(fn).parameters) == ["user_id", "verbose"]
    assert inspect.signature(fn).return_annotation in (UserRead, "UserRead")
    assert fn.__doc__ == "Docs."
    assert fn.__name__ == "get_me"
    assert inspect.iscoroutinefunction(fn) == (mode == "async")


async def test_invalidate_and_remove(cache: Cached, mode: str) -> None:
    counter = Counter()

    def get_me(user_id: int) -> int:
        return counter.tick()

    fn = make(cache, mode, get_me)
    assert await call(fn, 5) == 1
    assert await call(fn, 6) == 2
    assert await call(fn.invalidate, 5) is True
    assert await call(fn.invalidate, 5) is False
    assert await call(fn, 5) == 3
    assert await call(fn, 6) == 2
    assert await call(cache.remove(fn), user_id=6) is True
    assert await call(fn, 6) == 4


async def test_stale_shape_is_recomputed_and_overwritten(cache: Cached, mode: str) -> None:
    counter = Counter()

    def get_me(user_id: int) -> UserRead:
        counter.tick()
        return UserRead(id=user_id, email="fresh")

    fn = make(cache, mode, get_me)
    key = fn.cache_key(1)
    cache.manager._backend.set(key, codec.encode({"id": "wrong"}, key), 60)
    assert (await call(fn, 1)).email == "fresh"
    assert (await call(fn, 1)).email == "fresh"
    assert counter.calls == 1


async def test_entry_copied_from_another_users_key_is_never_served(cache: Cached, mode: str) -> None:
    def get_me(user_id: int) -> UserRead:
        return UserRead(id=user_id, email=f"u{user_id}@x.io")

    fn = make(cache, mode, get_me)
    await call(fn, 1)
    backend = cache.manager._backend
    backend.set(fn.cache_key(2), backend.get(fn.cache_key(1)) or b"", 60)  # someone with Redis access copies
    assert (await call(fn, 2)).id == 2
    assert (await call(fn, 2)).id == 2  # and the copy was overwritten with user 2's own entry


async def test_changed_return_schema_changes_the_key(cache: Cached) -> None:
    class V1(BaseModel):
        id: int

    class V2(BaseModel):
        id: int
        name: str = "x"

    def f1(x: int) -> V1:
        return V1(id=x)

    def f2(x: int) -> V2:
        return V2(id=x)

    f2.__qualname__ = f1.__qualname__
    assert cache.cached(f1).cache_key(1) != cache.cached(f2).cache_key(1)


async def test_methods_are_keyed_by_state_not_address(cache: Cached, mode: str) -> None:
    counter = Counter()

    class Service:
        def lookup(self, user_id: int) -> int:
            counter.tick()
            return user_id

    class Tenant:
        def __init__(self, name: str) -> None:
            self.name = name

        def lookup(self, user_id: int) -> str:
            return f"{self.name}:{user_id}"

    Service.lookup = make(cache, mode, Service.lookup)  # type: ignore[method-assign]
    Tenant.lookup = make(cache, mode, Tenant.lookup)  # type: ignore[method-assign]
    assert await call(Service().lookup, 1) == 1
    assert await call(Service().lookup, 1) == 1
    assert counter.calls == 1
    assert await call(Tenant("a").lookup, 1) == "a:1"
    assert await call(Tenant("b").lookup, 1) == "b:1"
    assert await call(Tenant("a").lookup, 1) == "a:1"


async def test_unstable_argument_raises(cache: Cached, mode: str) -> None:
    def f(thing: object) -> int:
        return 1

    fn = make(cache, mode, f)
    with pytest.raises(UnstableKeyError, match="thing"):
        await call(fn, object())


async def test_ignore_and_key_template(cache: Cached, mode: str) -> None:
    counter = Counter()

    def profile(user_id: int, db: object) -> int:
        counter.tick()
        return user_id

    fn = make(cache, mode, profile, ttl=30, key="profile:{user_id}", ignore=("db",))
    assert fn.cache_key(5, object()) == "stashly:auth:profile:5"
    assert await call(fn, 5, object()) == 5
    assert await call(fn, 5, object()) == 5
    assert counter.calls == 1
    assert cache.manager.get("profile:5", namespace="auth") == 5

    def by_id(user_id: int, db: object) -> int:
        return user_id

    ignoring = make(cache, mode, by_id, ignore=("db",))
    assert ignoring.cache_key(1, object()) == ignoring.cache_key(1, "another db")


def test_template_values_cannot_forge_keys(cache: Cached) -> None:
    @cache.cached(key="profile:{name}")
    def profile(name: str) -> str:
        return name

    assert profile.cache_key("5:x") != profile.cache_key("5") + ":x"
    assert "*" not in profile.cache_key("*")


def test_decoration_time_validation(cache: Cached) -> None:
    def f(x: int) -> int:
        return x

    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match=r"f\b"):
            cache.cached(ttl=bad)(f)
    with pytest.raises(ValueError, match="nope"):
        cache.cached(ignore=("nope",))(f)
    with pytest.raises(ValueError, match="missing"):
        cache.cached(key="x:{missing}")(f)

    def gen(x: int) -> Iterator[int]:
        yield x

    with pytest.raises(TypeError, match="generator"):
        cache.cached(gen)


async def test_unserializable_result_raises(cache: Cached, mode: str) -> None:
    def f(x: int) -> Any:
        return object()

    fn = make(cache, mode, f)
    with pytest.raises(SerializationError, match=r"builtins\.object"):
        await call(fn, 1)


def test_single_flight_threads(cache: Cached) -> None:
    counter = Counter()
    release = threading.Event()

    @cache.cached
    def slow(x: int) -> int:
        counter.tick()
        release.wait(10)
        return x * 2

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(21))) for _ in range(100)]
    for t in threads:
        t.start()
    _followers_wait(threads, counter)
    release.set()
    for t in threads:
        t.join(10)
    assert results == [42] * 100
    assert counter.calls == 1


async def test_single_flight_tasks(cache: Cached) -> None:
    counter = Counter()
    release = asyncio.Event()

    @cache.cached
    async def slow(x: int) -> int:
        counter.tick()
        await release.wait()
        return x * 2

    tasks = [asyncio.create_task(slow(21)) for _ in range(100)]
    while cache.manager.stats().misses < 100:  # every task has looked up, so each leads or waits
        await asyncio.sleep(0.001)
    release.set()
    assert await asyncio.gather(*tasks) == [42] * 100
    assert counter.calls == 1


def test_single_flight_error_reaches_every_waiter_and_is_not_cached(cache: Cached) -> None:
    counter = Counter()
    release = threading.Event()

    @cache.cached
    def boom(x: int) -> int:
        if counter.tick() == 1:
            release.wait(10)
            raise RuntimeError("boom")
        return x

    errors: list[BaseException] = []

    def run() -> None:
        try:
            boom(1)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(20)]
    for t in threads:
        t.start()
    _followers_wait(threads, counter)
    release.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 20
    assert boom(1) == 1
    assert counter.calls == 2


async def test_single_flight_error_async(cache: Cached) -> None:
    counter = Counter()
    release = asyncio.Event()

    @cache.cached
    async def boom(x: int) -> int:
        if counter.tick() == 1:
            await release.wait()
            raise RuntimeError("boom")
        return x

    tasks = [asyncio.create_task(boom(1)) for _ in range(20)]
    while cache.manager.stats().misses < 20:
        await asyncio.sleep(0.001)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await boom(1) == 1


def _followers_wait(threads: list[threading.Thread], counter: Counter) -> None:
    """Wait until one thread computes and every other one waits for it in the single flight (a late thread, still
    looking up when the computation ends, would compute again: not concurrent, so not what these tests test)."""
    followers = len(threads) - 1
    assert eventually(lambda: waiting_in(SingleFlight.run, threads) == followers), (
        f"{waiting_in(SingleFlight.run, threads)} of {followers} threads wait; {counter.calls} computations"
    )


# -- failure behaviour ---------------------------------------------------------------------------------------


async def test_redis_stopped_mid_test_keeps_returning_correct_results(disposable_redis: Any, mode: str) -> None:
    cm = CacheManager(url=disposable_redis.url, namespace="t")
    cache = Cached(namespace="auth", manager=cm)
    counter = Counter()

    def get_me(user_id: int) -> dict[str, int]:
        counter.tick()
        return {"id": user_id}

    fn = make(cache, mode, get_me)
    assert await call(fn, 1) == {"id": 1}
    assert await call(fn, 1) == {"id": 1}
    assert counter.calls == 1
    disposable_redis.stop()
    for user_id in (1, 2, 1, 2):
        assert await call(fn, user_id) == {"id": user_id}
    assert counter.calls == 5
    assert cm.stats().errors == 4  # one failed read per call; nothing is stored without a guard token
    disposable_redis.start()
    assert await _until_hit(fn, 3, counter) == {"id": 3}  # the breaker's probe finds Redis back


async def _until_hit(fn: Any, argument: int, counter: Counter, timeout: float = 10.0) -> Any:
    """Call until a call is answered from the cache (the function did not run); the last result."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        before = counter.calls
        result = await call(fn, argument)
        if counter.calls == before or asyncio.get_running_loop().time() > deadline:
            assert counter.calls == before, "no cache hit after Redis came back"
            return result
        await asyncio.sleep(0.05)


async def test_strict_mode_raises(disposable_redis: Any, mode: str) -> None:
    cm = CacheManager(url=disposable_redis.url, namespace="t")
    cache = Cached(namespace="auth", manager=cm, strict=True)

    def get_me(user_id: int) -> int:
        return user_id

    fn = make(cache, mode, get_me)
    disposable_redis.stop()
    with pytest.raises(CacheUnavailableError):
        await call(fn, 1)


def test_default_manager_is_built_lazily_and_replaceable(redis_url: str) -> None:
    import stashly

    cache = Cached(namespace="lazy")

    @cache.cached
    def f(x: int) -> int:
        return x

    replacement = CacheManager(url=redis_url)
    stashly.set_default_manager(replacement)
    try:
        assert f(1) == 1
        assert cache.manager is replacement
        assert redis.Redis.from_url(redis_url).exists(f.cache_key(1)) == 1
    finally:
        stashly.set_default_manager(None)
        replacement.close()


@dataclasses.dataclass
class Filter:
    status: str


async def test_dataclass_and_model_arguments_key_by_content(cache: Cached) -> None:
    @cache.cached
    def search(f: Filter, user: UserRead) -> str:
        return f.status

    key = search.cache_key(Filter("a"), UserRead(id=1, email="x"))
    assert key == search.cache_key(Filter("a"), UserRead(id=1, email="x"))
    assert key != search.cache_key(Filter("b"), UserRead(id=1, email="x"))
    assert key != search.cache_key(Filter("a"), UserRead(id=2, email="x"))


async def test_mutating_a_returned_value_never_changes_the_next_callers(cache: Cached, mode: str) -> None:
    def profile(user_id: int) -> dict[str, list[str]]:
        return {"roles": ["reader"]}

    fn = make(cache, mode, profile)
    first = await call(fn, 1)
    first["roles"].append("admin")  # a caller scribbles on its copy
    second = await call(fn, 1)
    second["roles"].append("owner")
    assert await call(fn, 1) == {"roles": ["reader"]}


def test_arguments_with_a_hostile_eq_are_bound_without_comparing_them(cache: Cached) -> None:
    class NoEq:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("compared")

        __hash__ = object.__hash__

        def __cache_key__(self) -> str:
            return "no-eq"

    @cache.cached
    def f(a: int, b: object = None, c: int = 3) -> int:
        return a + c

    assert f(1, b=NoEq()) == 4
    assert f(1, b=NoEq()) == 4
