"""The public API's types as a user's checker sees them: ``make lint`` runs mypy --strict and pyright on this file.

Nothing here runs. ``assert_type`` lines pin what each call returns; a ``# type: ignore[code]`` line must be an
error (mypy's ``warn_unused_ignores`` and pyright's ``reportUnnecessaryTypeIgnoreComment`` fail on one that is not).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from pydantic import BaseModel

from stashly import Cached, CachedFunction, CacheManager
from stashly.decorator import BoundCachedFunction, Remover

cache = Cached(namespace="typing")
manager = CacheManager(url="memory://")


class User(BaseModel):
    id: int


@cache.cached
def profile(user_id: int, *, full: bool = False) -> User:
    return User(id=user_id)


@cache.cached
def simple(user_id: int) -> User:
    return User(id=user_id)


@cache.cached(ttl=30)
async def aprofile(user_id: int) -> User:
    return User(id=user_id)


class Service:
    @cache.cached
    def lookup(self, user_id: int) -> int:
        return user_id

    @cache.cached(ttl=5)
    async def alookup(self, user_id: int) -> int:
        return user_id

    @classmethod
    @cache.cached
    def build(cls, user_id: int) -> str:
        return f"{cls.__name__}:{user_id}"

    @classmethod
    @cache.cached(ttl=5)
    async def abuild(cls, user_id: int) -> str:
        return f"{cls.__name__}:{user_id}"

    @staticmethod
    @cache.cached
    def static(user_id: int) -> int:
        return user_id


class Tenant(Service):
    pass


async def functions() -> None:
    # A function keeps its exact signature.
    assert_type(profile(5), User)
    assert_type(profile(5, full=True), User)
    assert_type(profile.invalidate(5), bool)
    assert_type(profile.cache_key(5, full=True), str)
    assert_type(await aprofile(5), User)
    dropping = aprofile.invalidate(5)
    _ = assert_type(dropping, Coroutine[Any, Any, bool])
    assert_type(await dropping, bool)
    assert_type(aprofile.cache_key(5), str)
    # Per-call control: refresh recomputes and stores, bypass skips the cache; both return what the call does.
    assert_type(profile.refresh(5), User)
    assert_type(profile.bypass(5, full=True), User)
    assert_type(await aprofile.refresh(5), User)
    assert_type(await aprofile.bypass(5), User)
    profile.refresh("5")  # type: ignore[arg-type]
    # max_age(seconds) is the call, taking the function's arguments, accepting only a young enough entry.
    assert_type(profile.max_age(30)(5, full=True), User)
    assert_type(await aprofile.max_age(1.5)(5), User)
    profile.max_age(30)("5")  # type: ignore[arg-type]
    profile.max_age("30")  # type: ignore[arg-type]
    profile("5")  # type: ignore[arg-type]
    profile(5, True)  # type: ignore[call-arg]
    profile.invalidate()  # type: ignore[call-arg]
    annotated: CachedFunction[[int], User] = simple
    assert_type(annotated(1), User)
    _wrong: CachedFunction[[str], User] = simple  # type: ignore[assignment]


async def methods() -> None:
    service = Service()
    # On an instance the method drops ``self``; on the class it keeps it.
    assert_type(service.lookup(5), int)
    assert_type(Tenant().lookup(5), int)
    assert_type(Service.lookup(service, 5), int)
    assert_type(await service.alookup(5), int)
    bound: BoundCachedFunction[Service, [int], int] = service.lookup
    assert_type(bound(5), int)
    service.lookup("5")  # type: ignore[arg-type]
    Service.lookup(5)  # type: ignore[call-arg, arg-type]
    # invalidate and cache_key are the function's own: they take ``self`` however they are read.
    assert_type(Service.lookup.invalidate(service, 5), bool)
    assert_type(service.lookup.invalidate(service, 5), bool)
    dropping = Service.alookup.invalidate(service, 5)
    _ = assert_type(dropping, Coroutine[Any, Any, bool])
    assert_type(await dropping, bool)
    dropping = service.alookup.invalidate(service, 5)
    _ = assert_type(dropping, Coroutine[Any, Any, bool])
    await dropping
    assert_type(service.lookup.cache_key(service, 5), str)
    assert_type(service.lookup.refresh(service, 5), int)
    assert_type(Service.lookup.bypass(service, 5), int)
    assert_type(service.lookup.max_age(30)(service, 5), int)
    service.lookup.max_age(30)(5)  # type: ignore[arg-type, call-arg]
    service.lookup.invalidate(5)  # type: ignore[arg-type, call-arg]
    # A classmethod drops ``cls`` from its class and from an instance.
    assert_type(Service.build(5), str)
    assert_type(service.build(5), str)
    assert_type(Tenant.build(5), str)
    assert_type(await Service.abuild(5), str)
    Service.build(service, 5)  # type: ignore[call-arg, arg-type]
    # A staticmethod is never bound.
    assert_type(Service.static(5), int)
    assert_type(service.static(5), int)


async def removers() -> None:
    assert_type(cache.remove(profile)(5), bool)
    dropping = cache.remove(aprofile)(5)
    _ = assert_type(dropping, Coroutine[Any, Any, bool])
    await dropping
    _remover: Remover[[int], Any] = cache.remove(aprofile)
    assert_type(cache.remove(Service.build)(Service, 5), bool)
    assert_type(cache.remove(Service.lookup)(Service(), 5), bool)
    cache.remove(profile)("5")  # type: ignore[call-overload]

    @cache.remove(profile)
    def update(user_id: int, email: str) -> None: ...

    @cache.remove(aprofile)
    async def aupdate(user_id: int, email: str) -> None: ...

    assert_type(update(5, "a@b.c"), None)
    assert_type(await aupdate(5, "a@b.c"), None)


async def manager_reads() -> None:
    assert_type(manager.get("k"), Any)
    assert_type(manager.get("k", type=User), User | None)
    assert_type(manager.get("k", 0, type=int), int)
    assert_type(manager.get("k", "none", type=int), int | str)
    assert_type(manager.get_many(["a", "b"], type=User), dict[str, User])
    assert_type(manager.get_many(["a", "b"]), dict[str, Any])
    pending: Coroutine[Any, Any, User | None] = manager.aget("k", type=User)
    assert_type(await pending, User | None)
    _typo: Coroutine[Any, Any, int | None] = manager.aget("k", type=User)  # type: ignore[arg-type]
    assert_type(await manager.aget("k", type=User), User | None)
    assert_type(await manager.aget("k", 0, type=int), int)
    assert_type(await manager.aget_many(["a"], type=User), dict[str, User])
    assert_type(manager.remove("k"), bool)
    manager.get(5)  # type: ignore[call-overload]
