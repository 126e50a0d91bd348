"""Pydantic and dataclass arguments are keyed by their full typed content and their class: never a shared entry
for values a function can tell apart (an excluded tenant, bytes vs str, tuple vs list, UUID vs str...)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stashly import Cached, CacheManager
from stashly.keys import canonical, digest


class Principal(pydantic.BaseModel):
    name: str
    tenant: str = pydantic.Field(exclude=True)


class Blob(pydantic.BaseModel):
    data: bytes | str


class Seq(pydantic.BaseModel):
    items: tuple[int, ...] | list[int]


class Ident(pydantic.BaseModel):
    id: uuid.UUID | str


class When(pydantic.BaseModel):
    at: dt.datetime | str


class Loose(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    name: str


class WithPrivate(pydantic.BaseModel):
    name: str
    _scope: str = pydantic.PrivateAttr(default="read")


class Other(pydantic.BaseModel):
    name: str
    tenant: str = pydantic.Field(exclude=True)


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)

APART: list[tuple[str, object, object]] = [
    ("excluded field", Principal(name="a", tenant="t1"), Principal(name="a", tenant="t2")),
    ("bytes vs str", Blob(data=b"x"), Blob(data="x")),
    ("tuple vs list", Seq(items=(1, 2)), Seq(items=[1, 2])),
    ("UUID vs str", Ident(id=UID), Ident(id=str(UID))),
    ("datetime vs str", When(at=NOW), When(at=NOW.isoformat())),
    ("extra fields", Loose(name="a", role="admin"), Loose(name="a", role="user")),
    ("extra vs none", Loose(name="a", role="admin"), Loose(name="a")),
    ("class identity", Principal(name="a", tenant="t"), Other(name="a", tenant="t")),
]


@pytest.mark.parametrize(("case", "a", "b"), APART, ids=[case for case, _, _ in APART])
def test_models_a_function_can_tell_apart_key_apart(case: str, a: object, b: object) -> None:
    assert canonical(a) != canonical(b)


def test_private_attributes_are_keyed() -> None:
    reader, writer = WithPrivate(name="a"), WithPrivate(name="a")
    writer._scope = "write"
    assert canonical(reader) != canonical(writer)
    assert canonical(reader) == canonical(WithPrivate(name="a"))


def test_equal_models_key_alike() -> None:
    assert canonical(Principal(name="a", tenant="t")) == canonical(Principal(name="a", tenant="t"))
    # a default given explicitly is the same content
    assert canonical(WithPrivate(name="a")) == canonical(WithPrivate.model_validate({"name": "a"}))


def test_a_cached_property_does_not_change_the_key() -> None:
    class Account(pydantic.BaseModel):
        id: int

        @functools.cached_property
        def label(self) -> str:
            return f"account {self.id}"

    account = Account(id=1)
    before = canonical(account)
    assert account.label == "account 1"
    assert canonical(account) == before


def test_nested_models_are_keyed_by_content() -> None:
    class Request(pydantic.BaseModel):
        who: Principal

    assert canonical(Request(who=Principal(name="a", tenant="t1"))) != canonical(
        Request(who=Principal(name="a", tenant="t2"))
    )


def test_dataclasses_key_by_type_and_class() -> None:
    @dataclasses.dataclass
    class A:
        x: object

    @dataclasses.dataclass
    class B:
        x: object

    assert canonical(A(b"1")) != canonical(A("1"))
    assert canonical(A((1,))) != canonical(A([1]))
    assert canonical(A(1)) != canonical(B(1))


def test_one_tenant_never_gets_anothers_entry() -> None:
    """The reported bug, end to end: the tenant is excluded from dumps, not from what the function reads."""
    cache = Cached(manager=CacheManager(url="memory://"), namespace="tenants")
    calls: list[str] = []

    @cache.cached
    def documents(who: Principal) -> list[str]:
        calls.append(who.tenant)
        return [f"{who.tenant}'s document"]

    assert documents(Principal(name="a", tenant="t1")) == ["t1's document"]
    assert documents(Principal(name="a", tenant="t2")) == ["t2's document"]
    assert documents(Principal(name="a", tenant="t1")) == ["t1's document"]
    assert calls == ["t1", "t2"]


# -- the property: values that differ (by type or content) key apart; equal values key alike -----------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.uuids(),
    st.datetimes(),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=3),
    ),
    max_leaves=8,
)


class Anything(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)
    value: Any
    hidden: Any = pydantic.Field(default=None, exclude=True)


def _same(a: object, b: object) -> bool:
    """Equal, with the same types all the way down (1 == 1.0 == True in Python, but not for a function)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    if isinstance(a, float):
        return repr(a) == repr(b)  # 0.0 and -0.0 differ
    return bool(a == b)


@given(values, values, values, values)
def test_model_keys_are_injective_over_typed_content(a: object, b: object, hidden_a: object, hidden_b: object) -> None:
    first, second = Anything(value=a, hidden=hidden_a), Anything(value=b, hidden=hidden_b)
    same = _same(a, b) and _same(hidden_a, hidden_b)
    assert (digest([("m", first)]) == digest([("m", second)])) is same
