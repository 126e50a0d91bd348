"""Siblings of the lossy Pydantic dump: no argument type is keyed through a conversion that loses what a function
can tell apart (a subclass, bytearray vs bytes, an OrderedDict's order, a datetime's zone, a model's unset
fields), and the value types Pydantic validates fields into (URLs, secrets, patterns, zones...) are keyed by
their content instead of refusing the model."""

from __future__ import annotations

import array
import collections
import copy
import datetime as dt
import html
import math
import re
import uuid
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stashly import Cached, CacheManager
from stashly.errors import UnstableKeyError
from stashly.keys import canonical, digest, receiver_key


class Html(str):
    """Text already escaped, as markupsafe.Markup: equal to a str, but a renderer must not escape it again."""


class Count(int):
    pass


class Day(dt.date):
    pass


class Point(NamedTuple):
    x: Any
    y: Any


class Pair(NamedTuple):
    x: int
    y: int


class Tagged(str):
    """A str subclass with state of its own."""

    tag: object

    def __new__(cls, text: str, tag: object) -> Tagged:
        self = super().__new__(cls, text)
        self.tag = tag
        return self


class Filters(pydantic.BaseModel):
    status: str | None = None


Counts = collections.defaultdict[str, object]
LONDON, LISBON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("Europe/Lisbon"), ZoneInfo("America/New_York")
JANUARY = dt.datetime(2026, 1, 15, 12, 0)

# Every pair shared one key before: the function can tell them apart, the cache could not.
APART: list[tuple[str, object, object]] = [
    ("str subclass vs str", Html("<b>"), "<b>"),
    ("int subclass vs int", Count(3), 3),
    ("date subclass vs date", Day(2026, 1, 1), dt.date(2026, 1, 1)),
    ("namedtuple vs tuple", Point(1, 2), (1, 2)),
    ("two namedtuple classes", Point(1, 2), Pair(1, 2)),
    ("subclass state", Tagged("a", 1), Tagged("a", 2)),
    ("bytes vs bytearray", b"ab", bytearray(b"ab")),
    ("memoryview items", memoryview(array.array("i", [1])), memoryview((1).to_bytes(4, "little"))),
    ("memoryview shape", memoryview(b"abcd").cast("B", (2, 2)), memoryview(b"abcd")),
    ("OrderedDict order", collections.OrderedDict(a=1, b=2), collections.OrderedDict(b=2, a=1)),
    ("defaultdict factory", Counts(int, a=1), Counts(list, a=1)),
    ("defaultdict vs dict", collections.defaultdict(int, a=1), {"a": 1}),
    ("Counter vs dict", collections.Counter(a=1), {"a": 1}),
    ("zone, same offset", JANUARY.replace(tzinfo=LONDON), JANUARY.replace(tzinfo=dt.UTC)),
    ("zone, same abbreviation", JANUARY.replace(tzinfo=LONDON), JANUARY.replace(tzinfo=ZoneInfo("Europe/Dublin"))),
    ("named fixed offset", JANUARY.replace(tzinfo=dt.timezone(dt.timedelta(0), "GMT")), JANUARY.replace(tzinfo=dt.UTC)),
    ("time zone", dt.time(1, tzinfo=ZoneInfo("UTC")), dt.time(1, tzinfo=dt.UTC)),
    ("naive fold", dt.datetime(2026, 11, 1, 1, 30, fold=1), dt.datetime(2026, 11, 1, 1, 30)),
    ("unset vs explicit default", Filters(), Filters(status=None)),
]


@pytest.mark.parametrize(("case", "a", "b"), APART, ids=[case for case, _, _ in APART])
def test_values_a_function_can_tell_apart_key_apart(case: str, a: object, b: object) -> None:
    assert canonical(a) != canonical(b)
    assert digest([("x", a)]) != digest([("x", b)])


def test_equal_values_still_key_alike() -> None:
    assert canonical(Html("<b>")) == canonical(Html("<" + "b>"))
    assert canonical(Point(1, 2)) == canonical(Point(x=1, y=2))
    assert canonical(collections.OrderedDict(a=1, b=2)) == canonical(collections.OrderedDict([("a", 1), ("b", 2)]))
    assert canonical(collections.defaultdict(int, a=1, b=2)) == canonical(collections.defaultdict(int, b=2, a=1))
    assert canonical(JANUARY.replace(tzinfo=LONDON)) == canonical(JANUARY.replace(tzinfo=ZoneInfo("Europe/London")))
    assert canonical(Filters(status="a")) == canonical(Filters.model_validate({"status": "a"}))
    assert canonical(Filters()) == canonical(Filters.model_validate({}))


def test_an_ambiguous_local_time_keys_by_which_of_its_two_instants() -> None:
    first = dt.datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    assert canonical(first) != canonical(first.replace(fold=1))


def test_an_escaped_html_argument_is_never_served_to_plain_text() -> None:
    """The subclass bug end to end: Html("<b>") and "<b>" were one entry, so plain text came back unescaped."""
    cache = Cached(manager=CacheManager(url="memory://"), namespace="render")

    @cache.cached
    def render(text: str) -> str:
        return str(text) if isinstance(text, Html) else html.escape(text)

    assert render(Html("<b>")) == "<b>"
    assert render("<b>") == "&lt;b&gt;"


def test_a_filter_left_unset_is_not_a_filter_on_null() -> None:
    """exclude_unset tells "no filter" from "status IS NULL"; so must the key."""
    cache = Cached(manager=CacheManager(url="memory://"), namespace="search")

    @cache.cached
    def search(filters: Filters) -> dict[str, Any]:
        return filters.model_dump(exclude_unset=True)

    assert search(Filters(status=None)) == {"status": None}
    assert search(Filters()) == {}


# -- the value types Pydantic validates fields into --------------------------------------------------------


class Service(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)  # dt.timezone
    url: pydantic.HttpUrl
    dsn: pydantic.PostgresDsn
    token: pydantic.SecretStr
    key: pydantic.SecretBytes
    owner: Any  # a NameEmail: validating one needs email-validator
    pattern: re.Pattern[str]
    recent: collections.deque[int]
    zone: ZoneInfo
    offset: dt.timezone


def service(**changes: object) -> Service:
    fields: dict[str, object] = {
        "url": "https://example.org/a",
        "dsn": "postgres://u@db1,db2/app",
        "token": "t1",
        "key": b"k1",
        "owner": pydantic.NameEmail("Ann", "ann@example.org"),
        "pattern": "^a",
        "recent": [1, 2],
        "zone": "Europe/London",
        "offset": dt.timezone(dt.timedelta(hours=1)),
    }
    return Service.model_validate({**fields, **changes})


SERVICE_CHANGES: list[dict[str, object]] = [
    {"url": "https://example.org/b"},
    {"dsn": "postgres://u@db1,db3/app"},
    {"token": "t2"},
    {"key": b"k2"},
    {"owner": pydantic.NameEmail("Bob", "ann@example.org")},
    {"owner": pydantic.NameEmail("Ann", "bob@example.org")},
    {"pattern": "^b"},
    {"pattern": re.compile("^a", re.IGNORECASE)},
    {"recent": [1, 3]},
    {"recent": collections.deque([1, 2], maxlen=2)},
    {"zone": "Europe/Lisbon"},
    {"offset": dt.timezone(dt.timedelta(hours=2))},
]


def test_a_model_holding_pydantics_value_types_keys_by_their_content() -> None:
    """Keyed, not refused (the typed encoding must cover what a model validates into), and by content: two
    secrets never share an entry, as they did when "**********" stood for every SecretStr."""
    base = canonical(service())
    assert canonical(service()) == base
    assert canonical(service(url="https://EXAMPLE.org:443/a")) == base  # the URL as Pydantic normalises it
    keys = [canonical(service(**change)) for change in SERVICE_CHANGES]
    assert base not in keys
    assert len(set(keys)) == len(keys)


def test_a_secret_never_appears_in_its_encoding_as_rendered_text() -> None:
    assert b"**" not in canonical(pydantic.SecretStr("hunter2"))
    assert canonical(pydantic.SecretStr("a")) != canonical("a")


def unnamed_zone() -> ZoneInfo:
    with open("/usr/share/zoneinfo/UTC", "rb") as file:
        return ZoneInfo.from_file(file)


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (lambda: collections.defaultdict(lambda: 0), r"argument 'x'\.default_factory \(function\)"),
        (lambda: Tagged("a", object()), r"argument 'x'\.tag \(object\)"),
        (unnamed_zone, r"argument 'x' \(ZoneInfo\)"),
    ],
)
def test_parts_with_no_stable_key_are_named(make: Any, where: str) -> None:
    with pytest.raises(UnstableKeyError, match=f"^{where} has no stable cache key"):
        digest([("x", make())])


def test_a_released_memoryview_has_no_key() -> None:
    view = memoryview(b"ab")
    view.release()
    with pytest.raises(UnstableKeyError, match=r"argument 'x' \(memoryview\)"):
        digest([("x", view)])


def test_a_str_subclass_receiver_keys_by_class_state_and_text() -> None:
    assert receiver_key(Tagged("a", 1), "self") != receiver_key(Tagged("a", 2), "self")
    assert receiver_key(Tagged("a", 1), "self") != receiver_key(Tagged("b", 1), "self")


# -- the property: typed values key apart exactly when they differ -----------------------------------------

ZONES = [None, dt.UTC, LONDON, LISBON, NEW_YORK, dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(0), "Z")]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, width=16),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.binary(max_size=3).map(bytearray),
    st.text(max_size=3).map(Html),
    st.integers(-3, 3).map(Count),
    st.uuids().map(str),
    st.uuids(),
    st.datetimes(
        min_value=dt.datetime(2026, 3, 28), max_value=dt.datetime(2026, 11, 2), timezones=st.sampled_from(ZONES)
    ),
)
typed_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.tuples(children, children).map(lambda pair: Point(*pair)),
        st.dictionaries(st.text(max_size=2), children, max_size=3),
        st.dictionaries(st.text(max_size=2), children, max_size=3).map(collections.OrderedDict),
    ),
    max_leaves=6,
)


def identity(value: object) -> object:
    """What a function can tell apart: the exact class, then content (and order, for an OrderedDict)."""
    kind = type(value)
    if isinstance(value, float):
        return (kind, "nan" if math.isnan(value) else value.hex())
    if isinstance(value, collections.OrderedDict):
        return (kind, tuple((identity(k), identity(v)) for k, v in value.items()))
    if isinstance(value, dict):
        return (kind, frozenset((identity(k), identity(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (kind, tuple(identity(item) for item in value))
    if isinstance(value, dt.datetime):
        zone = value.tzinfo
        name = zone.key if isinstance(zone, ZoneInfo) else value.tzname()
        return (kind, value.isoformat(), value.fold, type(zone), name)
    if isinstance(value, bytearray | bytes | str | int):
        return (kind, bytes(value) if isinstance(value, bytearray) else value)
    return (kind, value)


@given(typed_values, typed_values)
def test_digests_are_equal_exactly_when_typed_values_are(a: object, b: object) -> None:
    assert (digest([("x", a)]) == digest([("x", b)])) is (identity(a) == identity(b))


def look_alike(value: object, swap: Any) -> object:
    """``value`` with some parts (where ``swap()`` says so) replaced by an equal one of another type: Python
    says the two are equal, a function can tell them apart."""
    if isinstance(value, collections.OrderedDict):
        return {k: look_alike(v, swap) for k, v in value.items()} if swap() else value
    if isinstance(value, dict):
        items = {k: look_alike(v, swap) for k, v in value.items()}
        return collections.OrderedDict(items) if swap() else items
    if isinstance(value, Point):
        return tuple(look_alike(item, swap) for item in value) if swap() else value
    if isinstance(value, tuple) and len(value) == 2 and swap():
        return Point(*(look_alike(item, swap) for item in value))
    if isinstance(value, list | tuple):
        return type(value)(look_alike(item, swap) for item in value)
    if not swap():
        return value
    if isinstance(value, Html | Count):
        return type(value).__mro__[1](value)
    if isinstance(value, str):
        return Html(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return Count(value)
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(LISBON if value.tzinfo is not LISBON else dt.UTC)  # the same instant
    return value


@given(typed_values, st.data())
def test_look_alikes_key_apart_and_only_they(value: object, data: st.DataObject) -> None:
    other = look_alike(value, lambda: data.draw(st.booleans()))
    assert other == value
    assert (digest([("x", value)]) == digest([("x", other)])) is (identity(value) == identity(other))


@given(typed_values)
def test_a_value_rebuilt_keys_alike_and_wrapped_keys_apart(value: object) -> None:
    """Two independent draws are seldom equal: also compare a value with a deep copy of itself and with itself
    inside each container."""
    assert digest([("x", copy.deepcopy(value))]) == digest([("x", value)])
    wrapped = [[value], (value,), Point(value, value), collections.OrderedDict(k=value), {"k": value}]
    keys = {digest([("x", value)])} | {digest([("x", container)]) for container in wrapped}
    assert len(keys) == 1 + len(wrapped)


class Optional3(pydantic.BaseModel):
    a: Any = None
    b: Any = None
    c: Any = None


@given(
    st.dictionaries(st.sampled_from("abc"), st.none() | st.integers(0, 1), max_size=3),
    st.dictionaries(st.sampled_from("abc"), st.none() | st.integers(0, 1), max_size=3),
)
def test_models_key_by_their_values_and_which_fields_were_given(a: dict[str, Any], b: dict[str, Any]) -> None:
    first, second = Optional3(**a), Optional3(**b)
    same = first.model_dump(exclude_unset=True) == second.model_dump(exclude_unset=True)
    assert (canonical(first) == canonical(second)) is same


def test_a_uuid_and_its_text_stay_apart_inside_everything() -> None:
    value = uuid.UUID(int=7)
    assert canonical(Point(value, 1)) != canonical(Point(str(value), 1))
