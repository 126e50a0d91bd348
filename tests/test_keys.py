"""Key layout, the canonical argument encoding, digests, receivers and key templates (pure functions)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import math
import os
import subprocess
import sys
import uuid
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pydantic
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stashly import Cached, CacheManager
from stashly.errors import UnstableKeyError
from stashly.keys import KeyTemplate, canonical, digest, entry_key, function_name, namespace_prefix, receiver_key

# -- helpers and strategies --------------------------------------------------------------------------------


def typed(value: object) -> object:
    """A hashable stand-in for ``value`` where 1, 1.0 and True differ (plain ``==`` says they are equal)."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(typed(item) for item in value))
    if isinstance(value, set | frozenset):
        return (type(value).__name__, frozenset(typed(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((typed(k), typed(v)) for k, v in value.items()))
    return (type(value).__name__, value)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.binary(max_size=8)
hashables = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=16,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Shade(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


@dataclasses.dataclass
class Filter:
    status: str
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class OtherFilter:
    status: str
    tags: list[str] = dataclasses.field(default_factory=list)


class User(pydantic.BaseModel):
    id: int
    email: str


class Account(pydantic.BaseModel):
    id: int
    email: str


class Session:
    """A stand-in for a connection or session: no state worth keying on."""


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "Tenant()"  # hides its state: a repr-based key would be shared by every tenant


# -- layout --------------------------------------------------------------------------------------------------


def test_layout() -> None:
    assert entry_key("stashly", "app", "user:1") == "stashly:app:user:1"
    assert namespace_prefix("stashly", "app") == "stashly:app:"
    assert entry_key("stashly", "app", "x").startswith(namespace_prefix("stashly", "app"))


def test_function_name() -> None:
    def inner() -> None: ...

    assert function_name(test_layout) == f"{__name__}.test_layout"
    assert function_name(inner) == f"{__name__}.test_function_name.<locals>.inner"
    assert function_name(Tenant.__init__) == f"{__name__}.Tenant.__init__"
    with pytest.raises(TypeError, match="partial"):
        function_name(functools.partial(inner))


# -- canonical: every supported type ----------------------------------------------------------------------

SAMPLES: list[object] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**200,
    1.0,
    0.0,
    -0.0,
    math.inf,
    math.nan,
    "",
    "1",
    "a b",
    "\ud800",  # a lone surrogate still encodes
    b"",
    b"1",
    Decimal("1"),
    Decimal("1.0"),
    1 + 2j,
    Fraction(1, 3),
    datetime(2024, 1, 2, 3, 4, 5),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1))),
    date(2024, 1, 2),
    time(3, 4, 5),
    time(3, 4, 5, tzinfo=UTC),
    timedelta(seconds=1),
    uuid.UUID(int=1),
    PurePosixPath("a/b"),
    PureWindowsPath("a/b"),
    ipaddress.ip_address("10.0.0.1"),
    ipaddress.ip_address("::1"),
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_interface("10.0.0.1/8"),
    Color.RED,
    Shade.RED,
    Level.ONE,
    int,
    str,
    Filter,
    (),
    [],
    {},
    set(),
    frozenset(),
    (1,),
    [1],
    ("a", "b"),
    ("a b",),
    ("ab", ""),
    {"1": 1},
    {1: "1"},
    {1},
    frozenset({1}),
    Filter("a"),
    OtherFilter("a"),
    User(id=1, email="x"),
    Account(id=1, email="x"),
]


def test_every_sample_is_deterministic_and_distinct() -> None:
    encodings = [canonical(value) for value in SAMPLES]
    assert encodings == [canonical(value) for value in SAMPLES]
    assert len(set(encodings)) == len(SAMPLES)


def test_equal_values_of_one_type_encode_equally() -> None:
    assert canonical(math.nan) == canonical(-math.nan) == canonical(float("nan"))
    assert canonical(timedelta(seconds=1)) == canonical(timedelta(microseconds=1_000_000))
    assert canonical(bytearray(b"ab")) == canonical(bytearray(b"a") + b"b")
    assert canonical(memoryview(b"ab")) == canonical(memoryview(bytearray(b"ab")))
    assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})
    assert canonical(OrderedDict(a=1, b=2)) == canonical(OrderedDict([("a", 1), ("b", 2)]))
    assert canonical(Path("a/b")) == canonical(Path("a") / "b")
    assert canonical(uuid.UUID(int=5)) == canonical(uuid.UUID(str(uuid.UUID(int=5))))


def test_subclasses_key_by_their_class_then_like_their_base() -> None:
    class Name(str):
        pass

    class Count(int):
        pass

    class Row(tuple[int, ...]):
        pass

    # A subclass can behave differently on equal content (an HTML-safe str is not escaped again): never shared.
    assert canonical(Name("x")) != canonical("x")
    assert canonical(Count(3)) != canonical(3)
    assert canonical(Row((1, 2))) != canonical((1, 2))
    assert canonical(Name("x")) == canonical(Name("x"))
    assert canonical(Name("x")) != canonical(Name("y"))
    # ...and an Enum is an Enum, even when it is also an int
    assert canonical(Level.ONE) != canonical(1)


def test_pinned_canonical_form() -> None:
    # The documented format: tag, length or count, ":", payload. Changing it changes every key.
    assert canonical({"a": [1, "x", None, True]}) == b"m1:s1:al4:i1:1s1:xNT"
    assert canonical((b"\x00", 255, -1.5)) == b"t3:b1:\x00i2:fff21:-0x1.8000000000000p+0"


def test_enums_key_by_class_and_value() -> None:
    assert canonical(Color.RED) != canonical("red")
    assert canonical(Color.RED) != canonical(Shade.RED)
    assert canonical(Color.RED) != canonical(Color.BLUE)


def test_models_and_dataclasses_key_by_content() -> None:
    assert canonical(User(id=1, email="x")) == canonical(User(id=1, email="x"))
    assert canonical(User(id=1, email="x")) != canonical(User(id=2, email="x"))
    assert canonical(User(id=1, email="x")) != canonical({"id": 1, "email": "x"})
    assert canonical(Filter("a", ["t"])) == canonical(Filter("a", ["t"]))
    assert canonical(Filter("a", ["t"])) != canonical(Filter("a", ["u"]))
    assert canonical(Filter("a")) != canonical({"status": "a", "tags": []})


def test_cache_key_hook_comes_first() -> None:
    class Conn:
        def __init__(self, dsn: str) -> None:
            self.dsn = dsn
            self.socket = object()

        def __cache_key__(self) -> str:
            return self.dsn

    @dataclasses.dataclass
    class Query:
        text: str
        trace_id: int

        def __cache_key__(self) -> str:
            return self.text  # trace_id is noise

    class Upper(str):
        def __cache_key__(self) -> str:
            return self.upper()

    assert canonical(Conn("db1")) == canonical(Conn("db1"))
    assert canonical(Conn("db1")) != canonical(Conn("db2"))
    assert canonical(Conn("db1")) != canonical("db1")
    assert canonical(Query("q", 1)) == canonical(Query("q", 2))
    assert canonical(Upper("a")) == canonical(Upper("A"))


# -- canonical: errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [object(), lambda: 1, Session(), Tenant("a"), (i for i in range(3)), print], ids=repr)
def test_no_stable_key(value: object) -> None:
    with pytest.raises(UnstableKeyError, match=r"^argument 'x' of app\.f \(\w+\) has no stable cache key"):
        digest([("x", value)], where="app.f")


def test_error_names_the_user_type_and_the_remedies() -> None:
    with pytest.raises(UnstableKeyError) as info:
        canonical(Tenant("a"), "argument 'tenant' of app.f")
    message = str(info.value)
    assert "argument 'tenant' of app.f (Tenant)" in message
    assert "key=" in message
    assert "ignore=" in message
    assert "give Tenant a __cache_key__() method" in message


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ([1, 2, 3, object()], "argument 'items'[3] of app.f (object)"),
        ({"status": object()}, "argument 'items'['status'] of app.f (object)"),
        ({Session(): 1}, "argument 'items'.keys() of app.f (Session)"),
        ({1, Session()}, "argument 'items'{...} of app.f (Session)"),
        ((1, [{"a": [object()]}]), "argument 'items'[1][0]['a'][0] of app.f (object)"),
        (Filter("a", [object()]), "argument 'items'.tags[0] of app.f (object)"),  # type: ignore[list-item]
        (Color, None),
    ],
)
def test_error_path_points_inside_containers(value: object, where: str | None) -> None:
    if where is None:
        canonical(value)  # a class is fine: keyed by name
        return
    with pytest.raises(UnstableKeyError) as info:
        digest([("n", 1), ("items", value)], where="app.f")
    assert str(info.value).startswith(f"{where} has no stable cache key")


def test_a_model_field_with_no_stable_key_is_named() -> None:
    class Holder(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        thing: Session

    with pytest.raises(UnstableKeyError, match=r"argument 'h'\.thing \(Session\) has no stable cache key"):
        canonical(Holder(thing=Session()), "argument 'h'")


def test_cycles_are_reported() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(UnstableKeyError, match=r"argument 'x'\[1\] of app\.f refers back to argument 'x' "):
        canonical(loop, "argument 'x' of app.f")
    node: dict[str, object] = {}
    node["child"] = {"parent": node}
    with pytest.raises(UnstableKeyError, match=r"'x'\['child'\]\['parent'\] refers back to argument 'x' "):
        canonical(node, "argument 'x'")
    box = Filter("a")
    box.tags.append(box)  # type: ignore[arg-type]
    with pytest.raises(UnstableKeyError, match=r"argument\.tags\[0\] refers back to argument "):
        canonical(box)


def test_depth_is_bounded() -> None:
    def nest(levels: int) -> object:
        value: object = 1
        for _ in range(levels):
            value = [value]
        return value

    canonical(nest(64))
    with pytest.raises(UnstableKeyError, match="nested more than 64 levels deep"):
        canonical(nest(65))
    with pytest.raises(UnstableKeyError, match="nested more than 64 levels deep"):
        canonical(nest(10_000))


# -- digest --------------------------------------------------------------------------------------------------

PINNED_ARGUMENTS: list[tuple[str, object]] = [
    ("user_id", 42),
    ("filters", {"status": "active", "tags": {"b", "a"}}),
    ("at", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("extra", (1, 2.5, None, True, b"x", Decimal("1.10"))),
]
PINNED_DIGEST = "6aa642024d0d8ddb933e740b7e0012a1"


def test_digest_shape_and_pin() -> None:
    value = digest(PINNED_ARGUMENTS, salt=b"schema1", where="app.f")
    assert len(value) == 32
    assert value == value.lower()
    int(value, 16)
    # A regression guard: if this changes, every key in every deployed cache changes with it.
    assert value == PINNED_DIGEST


def test_digest_depends_on_names_order_values_and_salt() -> None:
    base = digest([("a", 1), ("b", 2)])
    assert base == digest([("a", 1), ("b", 2)])
    assert base != digest([("b", 2), ("a", 1)])
    assert base != digest([("a", 1), ("c", 2)])
    assert base != digest([("a", 1), ("b", 3)])
    assert base != digest([("a", 1), ("b", 2)], salt=b"v2")
    assert digest([]) != digest([], salt=b"x")
    assert digest([("a", "x")], salt=b"") != digest([("a", "x")], salt=b"0:")


def test_digest_is_stable_across_processes() -> None:
    code = (
        "import sys\n"
        "from tests.test_keys import PINNED_ARGUMENTS\n"
        "from stashly.keys import digest\n"
        "sys.stdout.write(digest(PINNED_ARGUMENTS, salt=b'schema1'))\n"
    )
    expected = digest(PINNED_ARGUMENTS, salt=b"schema1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout == expected


# -- properties ---------------------------------------------------------------------------------------------


@given(values)
def test_canonical_is_deterministic(value: object) -> None:
    assert canonical(value) == canonical(value)


@given(values, values)
def test_canonical_is_injective(a: object, b: object) -> None:
    if typed(a) != typed(b):
        assert canonical(a) != canonical(b)


@given(st.lists(st.tuples(hashables, values), max_size=6, unique_by=lambda pair: typed(pair[0])))
def test_dicts_and_sets_ignore_order(pairs: list[tuple[Any, object]]) -> None:
    forward, backward = dict(pairs), dict(reversed(pairs))
    # 0 and False (1 and True) are one dict key and one set member, and which object survives depends on the
    # order: such collapsed inputs are not the same value in both orders, so the property does not apply.
    assume(len(forward) == len(pairs))
    assert canonical(forward) == canonical(backward)
    keys = [key for key, _ in pairs]
    assert canonical(set(keys)) == canonical(set(reversed(keys)))
    assert canonical(frozenset(keys)) == canonical(frozenset(reversed(keys)))


@given(st.text(max_size=12), st.data())
def test_splitting_strings_differently_changes_the_digest(text: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(0, len(text)))
    first = digest([("a", text[:i]), ("b", text[i:])])
    second = digest([("a", text[:j]), ("b", text[j:])])
    assert (first == second) == (i == j)


def test_one_argument_with_a_space_is_not_two() -> None:
    assert digest([("a", "a b")]) != digest([("a", "a"), ("b", "b")])
    assert canonical(("a b",)) != canonical(("a", "b"))
    assert canonical(("ab", "")) != canonical(("a", "b"))


# -- receivers ----------------------------------------------------------------------------------------------


def test_stateless_receivers_key_by_class() -> None:
    class Service:
        def lookup(self) -> None: ...

    class OtherService:
        pass

    assert receiver_key(Service(), "self") == receiver_key(Service(), "self")
    assert receiver_key(Service(), "self") != receiver_key(OtherService(), "self")
    assert receiver_key(Service, "cls") == canonical(Service)
    assert receiver_key(Service, "cls") != receiver_key(OtherService, "cls")
    assert receiver_key(Service, "cls") != receiver_key(Service(), "self")


def test_stateful_receivers_key_by_state() -> None:
    assert receiver_key(Tenant("a"), "self") == receiver_key(Tenant("a"), "self")
    assert receiver_key(Tenant("a"), "self") != receiver_key(Tenant("b"), "self")

    class Slotted:
        __slots__ = ("__secret", "name")

        def __init__(self, name: str, secret: int) -> None:
            self.name = name
            self.__secret = secret

    assert receiver_key(Slotted("a", 1), "self") == receiver_key(Slotted("a", 1), "self")
    assert receiver_key(Slotted("a", 1), "self") != receiver_key(Slotted("a", 2), "self")
    assert receiver_key(Slotted("a", 1), "self") != receiver_key(Slotted("b", 1), "self")


def test_receivers_ignore_cached_properties() -> None:
    class Report:
        def __init__(self, year: int) -> None:
            self.year = year

        @functools.cached_property
        def client(self) -> Session:
            return Session()

    report = Report(2024)
    before = receiver_key(report, "self")
    assert isinstance(report.client, Session)
    assert receiver_key(report, "self") == before


def test_receivers_that_are_values_key_by_value() -> None:
    class Money(int):
        pass

    assert receiver_key(Money(1), "self") != receiver_key(Money(2), "self")
    assert receiver_key(Filter("a"), "self") == canonical(Filter("a"))
    assert receiver_key(User(id=1, email="x"), "self") == canonical(User(id=1, email="x"))
    assert receiver_key(Color.RED, "self") == canonical(Color.RED)


def test_receiver_with_unencodable_attribute() -> None:
    class Repository:
        def __init__(self) -> None:
            self.table = "users"
            self.session = Session()

    with pytest.raises(UnstableKeyError) as info:
        receiver_key(Repository(), "self of app.Repository.get")
    message = str(info.value)
    assert message.startswith("self.session of app.Repository.get (Session) has no stable cache key")
    assert "Repository a __cache_key__() method" in message
    assert "ignore=['self']" in message

    class Keyed(Repository):
        def __cache_key__(self) -> str:
            return self.table

    assert receiver_key(Keyed(), "self") == receiver_key(Keyed(), "self")


# -- key templates ------------------------------------------------------------------------------------------


def test_template_renders_fields_and_attributes() -> None:
    @dataclasses.dataclass
    class Org:
        id: int

    template = KeyTemplate("org:{org.id}:user:{user_id}", ["org", "user_id", "db"], "app.f")
    assert template.fields == ("org", "user_id")
    assert template.render({"org": Org(7), "user_id": 5, "db": Session()}) == "org:7:user:5"
    ids = KeyTemplate("u:{u}:c:{c}:l:{lvl}", ["u", "c", "lvl"], "app.f")
    rendered = ids.render({"u": uuid.UUID(int=1), "c": Color.RED, "lvl": Level.ONE})
    assert rendered == "u:00000000-0000-0000-0000-000000000001:c:red:l:1"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x:{missing}", r"\{missing\} is not a parameter; parameters are \('user_id', 'org'\)"),
        ("x:{}", "positional"),
        ("x:{0}", "positional"),
        ("x:{user_id!r}", "conversion"),
        ("x:{user_id:>5}", "format_spec"),
        ("x:{org[0]}", "attributes only"),
        ("x:{org.}", "attributes only"),
        ("x*:{user_id}", "glob"),
        ("x?{user_id}", "glob"),
        ("x[{user_id}]", "glob"),
        ("x {user_id}", "whitespace"),
        ("x:{user_id}{org}", "separate"),
        ("x:{user_id}-{org}", "separate"),
        ("x:{user_id", "app.f"),
        ("", "empty"),
    ],
)
def test_template_is_checked_at_construction(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        KeyTemplate(template, ("user_id", "org"), "app.f")
    assert "app.f" in str(info.value)


def test_template_escapes_values() -> None:
    template = KeyTemplate("p:{name}", ["name"], "app.f")
    assert template.render({"name": "5:x"}) == "p:5%3Ax"
    assert template.render({"name": "*"}) == "p:%2A"
    assert template.render({"name": "a b"}) == "p:a%20b"
    assert template.render({"name": "100%"}) == "p:100%25"
    assert template.render({"name": "[a]?\\"}) == "p:%5Ba%5D%3F%5C"
    assert template.render({"name": "é\n"}) == "p:%C3%A9%0A"
    assert template.render({"name": "a-b_c.d~e"}) == "p:a-b_c.d~e"


@pytest.mark.parametrize("value", [True, 1.5, None, b"x", [1], Session(), Decimal(1)], ids=repr)
def test_template_rejects_other_value_types(value: object) -> None:
    template = KeyTemplate("p:{v}", ["v"], "app.f")
    with pytest.raises(UnstableKeyError, match=r"app\.f: key template 'p:\{v\}': \{v\} is a \w+"):
        template.render({"v": value})


def test_template_missing_attribute() -> None:
    with pytest.raises(UnstableKeyError, match=r"\{org\.id\}"):
        KeyTemplate("o:{org.id}", ["org"], "app.f").render({"org": None})


def test_template_bounds_long_keys() -> None:
    template = KeyTemplate("p:{name}", ["name"], "app.f")
    at_limit = template.render({"name": "a" * 198})
    assert at_limit == "p:" + "a" * 198
    long_a, long_b = template.render({"name": "a" * 500}), template.render({"name": "a" * 501})
    assert len(long_a) == len(long_b) == 201
    assert long_a != long_b
    assert long_a[:168] == ("p:" + "a" * 500)[:168]
    head, hexdigest = long_a.rsplit(":", 1)
    assert len(head) == 168
    assert len(hexdigest) == 32


@given(st.text(), st.text())
def test_template_render_is_injective(a: str, b: str) -> None:
    template = KeyTemplate("p:{a}", ["a"], "app.f")
    assert (template.render({"a": a}) == template.render({"a": b})) == (a == b)


@given(st.text(max_size=6), st.text(max_size=6), st.text(max_size=6), st.text(max_size=6))
def test_two_field_template_is_injective(a1: str, b1: str, a2: str, b2: str) -> None:
    template = KeyTemplate("{a}:{b}", ["a", "b"], "app.f")
    same = template.render({"a": a1, "b": b1}) == template.render({"a": a2, "b": b2})
    assert same == ((a1, b1) == (a2, b2))


def test_a_call_by_position_keys_as_the_same_call_by_name() -> None:
    """Positional int and str calls take a shorter derivation (and a memo): the key must be the general one's."""
    cache = Cached(namespace="plain", manager=CacheManager(url="memory://"))

    @cache.cached
    def one(n: int) -> int:
        return n

    @cache.cached(ignore=["trace"])
    def three(a: int, b: str, trace: str) -> int:
        return a

    for value in (0, -1, 7, 2**70, -(2**64)):
        assert one.cache_key(value) == one.cache_key(n=value)
    for a, b in ((1, ""), (1, "1"), (-3, "é"), (10**30, "\ud800"), (5, "x" * 300)):
        assert three.cache_key(a, b, "t1") == three.cache_key(a=a, b=b, trace="t2")
    assert one.cache_key(1) != one.cache_key("1")
    assert three.cache_key(1, "a", "t") != three.cache_key(1, "b", "t")
