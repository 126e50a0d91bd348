"""Models with aliased fields read back: stored by field name, validated by alias or name."""

from __future__ import annotations

import pydantic
import pytest

from stashly import Cached, CacheManager

from tests.support import BACKENDS, backend_url


class Camel(pydantic.BaseModel):
    user_id: int = pydantic.Field(alias="userId")
    display: str = pydantic.Field(serialization_alias="displayName", default="x")
    email: str = pydantic.Field(validation_alias=pydantic.AliasChoices("mail", "e-mail"), default="a@b")


@pytest.fixture(params=BACKENDS)
def manager(request: pytest.FixtureRequest) -> CacheManager:
    return CacheManager(url=backend_url(request, request.param), strict=True)


def test_set_and_typed_get_round_trip(manager: CacheManager) -> None:
    value = Camel(userId=3, display="Ann", mail="ann@example.com")
    manager.set("k", value)
    assert manager.get("k", type=Camel) == value
    assert manager.get_many(["k"], type=Camel) == {"k": value}


def test_a_decorated_function_returning_an_aliased_model_hits(manager: CacheManager) -> None:
    calls: list[int] = []

    @Cached(manager=manager, namespace="aliases").cached
    def load(n: int) -> Camel:
        calls.append(n)
        return Camel(userId=n)

    assert load(1) == load(1) == Camel(userId=1)
    assert calls == [1]


async def test_async_reads_validate_the_same(manager: CacheManager) -> None:
    await manager.aset("k", Camel(userId=9))
    assert await manager.aget("k", type=Camel) == Camel(userId=9)
