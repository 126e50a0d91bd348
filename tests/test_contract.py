"""The backend contract (``stashly.backends.base``), every method, on every backend the factory builds.

Memory, a single server, Redis Cluster and Sentinel, each sync and async, and the single server, Cluster and
Sentinel again with the local tier in front (``local=True``). The backends come from a
``CacheManager`` (``_backend``/``_abackend``: what ``stashly.backends.create`` built for its settings, with every
layer it adds), never from a layer class by name. Keys are the manager's own (``stashly:<namespace>:...``, a fresh
namespace per test), so the least-privilege ACL user of ``make test-acl`` may touch them all.
"""

from __future__ import annotations

import inspect
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stashly import CacheManager
from stashly.keys import entry_key, guard_key, lock_key, namespace_prefix

from tests.support import backend_url

pytestmark = pytest.mark.timeout(60)

STORES = ["memory", "redis", "redis+local", "cluster", "cluster+local", "sentinel", "sentinel+local"]
LEASE = 300.0  # seconds: no lock in these tests runs out by itself; a lost lock is taken over explicitly


class Contract:
    """One backend of a manager (its sync ``_backend`` or async ``_abackend``) behind one awaitable face."""

    def __init__(self, manager: CacheManager, mode: str) -> None:
        self.manager = manager
        self.backend: Any = manager._abackend if mode == "async" else manager._backend
        settings = manager.settings
        self.prefix = namespace_prefix(settings.prefix, settings.namespace)
        self.guard = guard_key(settings.prefix, settings.namespace)

    def key(self, name: str) -> str:
        return self.manager.key(name)

    def lock(self, name: str) -> str:
        return lock_key(self.manager.settings.prefix, self.key(name))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call

    async def entry(self, key: str) -> tuple[bytes | None, float | None]:
        """The entry's bytes and remaining TTL (``read`` with no guard; its token is opaque)."""
        value, _, ttl = await self.read(key, None, True)
        return value, ttl

    async def token(self, name: str) -> bytes | None:
        """The guard's current value, as a fill started now would read it."""
        _, token, _ = await self.read(self.key(name), self.guard)
        return token  # type: ignore[no-any-return]


@pytest.fixture(params=[f"{store}-{mode}" for store in STORES for mode in ("sync", "async")])
def backend(request: pytest.FixtureRequest) -> Iterator[Contract]:
    """A manager's backend over an emptied store, in a namespace of its own."""
    store, _, mode = str(request.param).rpartition("-")
    kind, _, local = store.partition("+")
    manager = CacheManager(
        url=backend_url(request, kind), namespace=f"contract-{uuid.uuid4().hex[:12]}", local=bool(local)
    )
    if local:
        assert manager.local is not None  # the factory really put a local tier in front
    try:
        yield Contract(manager, mode)
    finally:
        manager.close()


# -- get, get_many, set, read ----------------------------------------------------------------------------------


async def test_get_of_an_absent_key_is_none(backend: Contract) -> None:
    assert await backend.get(backend.key("absent")) is None


async def test_set_then_get_and_overwrite(backend: Contract) -> None:
    key = backend.key("k")
    await backend.set(key, b"one", 60)
    assert await backend.get(key) == b"one"
    await backend.set(key, b"two", None)
    assert await backend.get(key) == b"two"


async def test_draw_keeps_the_value_that_is_there(backend: Contract) -> None:
    key = backend.key("token")
    assert await backend.draw(key, b"first", 60) == b"first"
    assert await backend.draw(key, b"second", 60) == b"first"  # drawn at once elsewhere: the first one stands
    value, ttl = await backend.entry(key)
    assert value == b"first"
    assert ttl is not None
    assert 0 < ttl <= 60
    assert await backend.delete(key) is True
    assert await backend.draw(key, b"third", 60) == b"third"


async def test_bytes_come_back_unchanged(backend: Contract) -> None:
    values = {"empty": b"", "nul": b"\x00\x00lead", "binary": bytes(range(256)), "big": b"x" * 300_000}
    for name, value in values.items():
        await backend.set(backend.key(name), value, 60)
    for name, value in values.items():
        assert await backend.get(backend.key(name)) == value, name


async def test_get_many_in_order_with_holes(backend: Contract) -> None:
    names = [f"m{i}" for i in range(20)]
    for name in names[::2]:
        await backend.set(backend.key(name), name.encode(), 60)
    found = await backend.get_many([backend.key(name) for name in names])
    assert found == [name.encode() if i % 2 == 0 else None for i, name in enumerate(names)]
    assert await backend.get_many([backend.key("absent")]) == [None]


async def test_read_without_ttl(backend: Contract) -> None:
    key = backend.key("r")
    value, token, ttl = await backend.read(key, backend.guard)
    assert (value, ttl) == (None, None)
    assert (await backend.read(key, None))[0::2] == (None, None)
    await backend.set(key, b"v", 60)
    assert await backend.read(key, backend.guard) == (b"v", token, None)  # the token is opaque, and unmoved
    assert (await backend.read(key, None, False))[0::2] == (b"v", None)


async def test_read_with_ttl(backend: Contract) -> None:
    expiring, forever = backend.key("expiring"), backend.key("forever")
    await backend.set(expiring, b"e", 30.5)  # fractions honoured
    await backend.set(forever, b"f", None)
    value, token, ttl = await backend.read(expiring, backend.guard, True)
    assert value == b"e"
    assert ttl is not None
    assert 0 < ttl <= 30.5
    assert await backend.read(forever, backend.guard, True) == (b"f", token, None)  # never expires
    assert await backend.entry(backend.key("absent")) == (None, None)


async def test_set_with_none_clears_a_ttl(backend: Contract) -> None:
    key = backend.key("k")
    await backend.set(key, b"expiring", 60)
    await backend.set(key, b"forever", None)
    assert await backend.entry(key) == (b"forever", None)


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf])
async def test_a_ttl_must_be_positive_and_finite(backend: Contract, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await backend.set(backend.key("k"), b"v", ttl)
    assert await backend.get(backend.key("k")) is None


# -- fill: the guard token and the lock ------------------------------------------------------------------------


async def test_fill_with_the_token_read_stores(backend: Contract) -> None:
    key = backend.key("f")
    token = await backend.token("f")
    assert await backend.fill(key, b"computed", 60, backend.guard, token) is True
    value, _, ttl = await backend.read(key, backend.guard, True)
    assert value == b"computed"
    assert ttl is not None
    assert 0 < ttl <= 60
    assert await backend.fill(backend.key("g"), b"forever", None, backend.guard, await backend.token("g")) is True
    assert await backend.entry(backend.key("g")) == (b"forever", None)


async def test_fill_with_a_stale_token_stores_nothing(backend: Contract) -> None:
    key = backend.key("f")
    token = await backend.token("f")
    await backend.delete(key, backend.guard)  # a removal lands while the value is being computed
    assert await backend.token("f") != token
    assert await backend.fill(key, b"stale", 60, backend.guard, token) is False
    assert await backend.get(key) is None
    assert await backend.fill(key, b"fresh", 60, backend.guard, await backend.token("f")) is True
    assert await backend.get(key) == b"fresh"


async def test_fill_while_the_lock_is_held_stores_and_releases_it(backend: Contract) -> None:
    key, lock = backend.key("f"), backend.lock("f")
    assert await backend.acquire(lock, b"me", LEASE) is True
    token = await backend.token("f")
    assert await backend.fill(key, b"computed", 60, backend.guard, token, (lock, b"me")) is True
    assert await backend.get(key) == b"computed"
    assert await backend.acquire(lock, b"next", LEASE) is True  # the fill released it


async def test_fill_after_the_lock_was_lost_stores_nothing(backend: Contract) -> None:
    key, lock = backend.key("f"), backend.lock("f")
    assert await backend.acquire(lock, b"me", LEASE) is True
    token = await backend.token("f")
    # Lost: what a lease running out looks like to its holder (someone else holds the lock now).
    await backend.release(lock, b"me")
    assert await backend.acquire(lock, b"usurper", LEASE) is True
    assert await backend.fill(key, b"late", 60, backend.guard, token, (lock, b"me")) is False
    assert await backend.get(key) is None
    assert await backend.acquire(lock, b"third", LEASE) is False  # the usurper's lock was left alone
    assert await backend.fill(key, b"late", 60, backend.guard, token, (lock, b"never-held")) is False


async def test_fill_with_a_matching_token_but_no_lock_held_stores_nothing(backend: Contract) -> None:
    key, lock = backend.key("f"), backend.lock("f")
    assert await backend.fill(key, b"v", 60, backend.guard, await backend.token("f"), (lock, b"me")) is False
    assert await backend.get(key) is None


# -- acquire, release ------------------------------------------------------------------------------------------


async def test_acquire_is_exclusive_and_release_frees(backend: Contract) -> None:
    lock = backend.lock("l")
    assert await backend.acquire(lock, b"a", LEASE) is True
    assert await backend.acquire(lock, b"b", LEASE) is False
    assert await backend.acquire(lock, b"a", LEASE) is False  # not re-entrant either
    await backend.release(lock, b"a")
    assert await backend.acquire(lock, b"b", LEASE) is True
    assert await backend.acquire(backend.lock("other"), b"a", LEASE) is True  # locks are per key


async def test_release_frees_only_our_own_lock(backend: Contract) -> None:
    lock = backend.lock("l")
    assert await backend.acquire(lock, b"owner", LEASE) is True
    await backend.release(lock, b"someone-else")
    assert await backend.acquire(lock, b"someone-else", LEASE) is False
    await backend.release(backend.lock("never-taken"), b"owner")  # releasing a free lock is harmless
    await backend.release(lock, b"owner")
    assert await backend.acquire(lock, b"someone-else", LEASE) is True


# -- delete, delete_prefix, retire_prefix, count_prefix --------------------------------------------------------


async def test_delete_removes_and_bumps_the_guard(backend: Contract) -> None:
    key = backend.key("d")
    await backend.set(key, b"v", 60)
    before = await backend.token("d")
    assert await backend.delete(key, backend.guard) is True
    assert await backend.get(key) is None
    bumped = await backend.token("d")
    assert bumped != before
    assert await backend.delete(key, backend.guard) is False  # nothing left to remove: the guard moves anyway
    assert await backend.token("d") not in (before, bumped)


async def test_delete_without_a_guard(backend: Contract) -> None:
    key = backend.key("d")
    await backend.set(key, b"v", 60)
    before = await backend.token("d")
    assert await backend.delete(key) is True
    assert await backend.delete(key) is False
    assert await backend.get(key) is None
    assert await backend.token("d") == before


async def test_delete_prefix_removes_the_namespace_and_bumps_the_guard(backend: Contract) -> None:
    # What the manager passes is a namespace's head, "stashly:<namespace>:"; a namespace whose name the first
    # one's starts is another namespace (on Cluster a sub-namespace prefix retires the whole namespace).
    settings = backend.manager.settings
    other = entry_key(settings.prefix, f"{settings.namespace}-x", "k")
    await backend.set(other, b"other namespace", 60)
    for name in ("user:1", "user:2", "order:1"):
        await backend.set(backend.key(name), b"v", None)
    token = await backend.token("user:1")
    assert await backend.delete_prefix(backend.prefix, backend.guard) == 3
    assert await backend.get_many([backend.key(name) for name in ("user:1", "user:2", "order:1")]) == [None] * 3
    assert await backend.count_prefix(backend.prefix) == 0
    assert await backend.delete_prefix(backend.prefix, backend.guard) == 0
    # A computation that started before the flush stores nothing the namespace reads (on Cluster it lands in
    # the retired generation, and says it stored).
    await backend.fill(backend.key("user:1"), b"stale", 60, backend.guard, token)
    assert await backend.get(backend.key("user:1")) is None
    assert await backend.get(other) == b"other namespace"
    await backend.set(backend.key("user:1"), b"again", 60)  # the namespace works as before
    assert await backend.get(backend.key("user:1")) == b"again"


async def test_delete_prefix_is_literal(backend: Contract) -> None:
    settings = backend.manager.settings
    heads = {name: namespace_prefix(settings.prefix, f"{settings.namespace}{name}") for name in ("*", "?", "[x]", "x")}
    for head in heads.values():
        await backend.set(head + "k", b"v", 60)
    assert await backend.delete_prefix(heads["*"]) == 1
    assert await backend.delete_prefix(heads["?"]) == 1
    assert await backend.delete_prefix(heads["[x]"]) == 1
    assert await backend.get(heads["x"] + "k") == b"v"
    assert await backend.count_prefix(heads["x"]) == 1


async def test_count_prefix(backend: Contract) -> None:
    assert await backend.count_prefix(backend.prefix) == 0
    for i in range(25):
        await backend.set(backend.key(f"c:{i}"), b"v", 60 if i % 2 else None)
    await backend.set(backend.key("d:0"), b"v", 60)
    assert await backend.count_prefix(backend.prefix) == 26
    assert await backend.count_prefix(backend.key("c:")) == 25
    assert await backend.count_prefix(backend.key("c:1")) == 11  # c:1, c:10..c:19
    await backend.delete(backend.key("c:1"), backend.guard)
    assert await backend.count_prefix(backend.key("c:1")) == 10


async def test_retire_prefix_makes_the_namespace_unreachable(backend: Contract) -> None:
    names = [f"e:{i}" for i in range(10)]
    for name in names:
        await backend.set(backend.key(name), b"old", 60)
    token = await backend.token("e:0")  # a computation that started before the flush
    await backend.retire_prefix(backend.prefix, backend.guard)
    assert await backend.get_many([backend.key(name) for name in names]) == [None] * len(names)
    assert await backend.read(backend.key("e:0"), backend.guard) == (None, await backend.token("e:0"), None)
    # Stored nowhere the namespace reads (on Cluster the fill lands in the retired generation, and says so).
    await backend.fill(backend.key("e:0"), b"stale", 60, backend.guard, token)
    assert await backend.get(backend.key("e:0")) is None
    # The namespace works as before afterwards.
    await backend.set(backend.key("e:1"), b"new", 60)
    assert await backend.fill(backend.key("e:2"), b"filled", 60, backend.guard, await backend.token("e:2")) is True
    assert await backend.get_many([backend.key("e:1"), backend.key("e:2"), backend.key("e:3")]) == [
        b"new",
        b"filled",
        None,
    ]


# -- close -----------------------------------------------------------------------------------------------------


async def test_close_then_reuse(backend: Contract) -> None:
    key = backend.key("k")
    await backend.set(key, b"before", 60)
    await backend.close()
    assert await backend.get(key) == b"before"  # reconnects (memory: the same entries)
    await backend.set(key, b"after", None)
    await backend.close()
    await backend.close()  # twice is harmless
    assert await backend.entry(key) == (b"after", None)
    assert await backend.delete(key, backend.guard) is True
