"""Wrong arguments to a cached function, its invalidate/cache_key, or a remover: a TypeError naming the function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stashly import Cached, CacheManager

WRONG_CALLS: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
    ((), {}, "missing a required argument: 'user_id'"),
    ((1, 2, 3), {}, "too many positional arguments"),
    ((1,), {"tenant": "t"}, "got an unexpected keyword argument 'tenant'"),
    ((1,), {"user_id": 1}, "multiple values for argument 'user_id'"),
]


@pytest.fixture
def cache() -> Cached:
    return Cached(manager=CacheManager(url="memory://"), namespace="args")


def profile(user_id: int, fields: str = "all") -> dict[str, Any]:
    return {"id": user_id, "fields": fields}


async def aprofile(user_id: int, fields: str = "all") -> dict[str, Any]:
    return {"id": user_id, "fields": fields}


@pytest.mark.parametrize(("args", "kwargs", "problem"), WRONG_CALLS)
@pytest.mark.parametrize("entry", ["call", "invalidate", "cache_key", "remove"])
def test_wrong_arguments_name_the_function(
    cache: Cached, entry: str, args: tuple[Any, ...], kwargs: dict[str, Any], problem: str
) -> None:
    f = cache.cached(profile)
    target: Callable[..., Any] = {
        "call": f,
        "invalidate": f.invalidate,
        "cache_key": f.cache_key,
        "remove": cache.remove(f),
    }[entry]
    with pytest.raises(TypeError, match=rf"^{__name__}\.profile\(\): {problem}$"):
        target(*args, **kwargs)


@pytest.mark.parametrize(("args", "kwargs", "problem"), WRONG_CALLS)
async def test_wrong_arguments_name_the_async_function(
    cache: Cached, args: tuple[Any, ...], kwargs: dict[str, Any], problem: str
) -> None:
    f = cache.cached(aprofile)
    for target in (f, f.invalidate, cache.remove(f)):
        with pytest.raises(TypeError, match=rf"^{__name__}\.aprofile\(\): {problem}$"):
            await target(*args, **kwargs)


def test_a_remover_called_wrongly_names_the_writer(cache: Cached) -> None:
    f = cache.cached(profile)

    @cache.remove(f)
    def rename(user_id: int, name: str) -> None: ...

    with pytest.raises(TypeError, match=rf"^{__name__}\..*rename\(\): missing a required argument: 'name'$"):
        rename(1)
