"""Properties of the pure parts that face hostile input (hypothesis): the decoder, the key builder, templates,
and namespace flushes on memory and on a real Redis."""

from __future__ import annotations

import asyncio
import decimal
import math
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stashly import MISSING, CacheManager, ConfigError
from stashly.config.settings import parse_name
from stashly.keys import KeyTemplate, digest
from stashly.storage import codec

from tests.harness.server import RedisServer

pytestmark = pytest.mark.timeout(120)
# No timing assertions: a slow example or slow data generation on a loaded machine is not a failure.
fuzz = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- JSON values and the decoder ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's integer range
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
cache_keys = st.text(min_size=1, max_size=60)


def is_json(value: object) -> bool:
    """Whether ``value`` is made only of what a JSON parser returns."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v) for k, v in value.items())
    return False


def envelope_like(key: str) -> st.SearchStrategy[bytes]:
    """Documents close to a real envelope: right or wrong version, binding and value, extra or missing fields."""
    binding = codec.binding(key).decode()
    fields = st.fixed_dictionaries(
        {},
        optional={
            "stashly": st.sampled_from([1, 2, 0, "1", True, None, 1.0]),
            "key": st.sampled_from([binding, binding.upper(), binding[:-1], "", key]) | st.text(max_size=16),
            "value": json_values,
            "extra": json_values,
        },
    )
    documents = fields | json_values
    return documents.map(orjson.dumps)


@fuzz
@given(st.binary(max_size=512), cache_keys)
def test_decoding_arbitrary_bytes_never_raises(raw: bytes, key: str) -> None:
    value = codec.decode(raw, key)
    assert value is MISSING or is_json(value)


@fuzz
@given(cache_keys, st.data())
def test_decoding_near_envelopes_never_raises_and_checks_every_field(key: str, data: st.DataObject) -> None:
    raw = data.draw(envelope_like(key))
    value = codec.decode(raw, key)
    document = orjson.loads(raw)
    valid = (
        isinstance(document, dict)
        and type(document.get("stashly")) is int  # exactly the integer: 1.0 and true are not version 1
        and document["stashly"] == 1
        and document.get("key") == codec.binding(key).decode()
        and "value" in document
    )
    if valid:
        assert value == document["value"]
    else:
        assert value is MISSING


@fuzz
@given(cache_keys, st.binary(min_size=1, max_size=8), st.integers(min_value=0))
def test_a_damaged_entry_is_missing_or_its_value(key: str, garbage: bytes, where: int) -> None:
    raw = codec.encode({"email": "a@example.com", "n": [1, 2.5, None]}, key)
    cut = where % len(raw)
    damaged = raw[:cut] + garbage + raw[cut + len(garbage) :]
    value = codec.decode(damaged, key)
    assert value is MISSING or is_json(value)


@fuzz
@given(json_values, cache_keys)
def test_encode_decode_round_trips_like_json(value: object, key: str) -> None:
    assert codec.decode(codec.encode(value, key), key) == orjson.loads(orjson.dumps(value))


@fuzz
@given(json_values, cache_keys, cache_keys)
def test_an_entry_read_under_another_key_is_missing(value: object, key: str, other: str) -> None:
    assume(key != other)
    assert codec.decode(codec.encode(value, key), other) is MISSING


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1_000_000,
        b"[" * 500_000 + b"]" * 500_000,
        b'{"a":' * 200_000 + b"1" + b"}" * 200_000,
        b'{"stashly":1,"key":"%s","value":' + b"[" * 1_000_000,
    ],
    ids=["open brackets", "balanced brackets", "nested objects", "inside an envelope"],
)
def test_a_megabyte_of_nesting_is_a_miss_not_a_recursion_error(raw: bytes) -> None:
    key = "stashly:app:deep"
    if b"%s" in raw:
        raw = raw.replace(b"%s", codec.binding(key), 1)
    assert codec.decode(raw, key) is MISSING


def test_nesting_within_the_parser_limit_still_decodes() -> None:
    """The depth limit is the parser's (1024 levels), not a refusal of every nested value."""
    key = "stashly:app:nested"
    raw = b'{"stashly":1,"key":"%b","value":%b1%b}' % (codec.binding(key), b"[" * 1000, b"]" * 1000)
    value = codec.decode(raw, key)
    for _ in range(1000):
        assert isinstance(value, list)
        assert len(value) == 1
        value = value[0]
    assert value == 1


@settings(fuzz, max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=cache_keys, value=json_values)
def test_any_unicode_key_round_trips_alike_on_memory_and_redis(redis_url: str, key: str, value: object) -> None:
    with CacheManager(url="memory://", strict=True) as memory, CacheManager(url=redis_url, strict=True) as remote:
        for cm in (memory, remote):
            cm.set(key, value)
            assert cm.get(key, MISSING) == orjson.loads(orjson.dumps(value))
            assert cm.remove(key) is True


@pytest.mark.parametrize("key", ["\ud800", "user:\udfff"])
def test_a_key_with_a_lone_surrogate_behaves_alike_on_memory_and_redis(redis_url: str, key: str) -> None:
    outcomes: list[tuple[str, object]] = []
    for url in ("memory://", redis_url):
        with CacheManager(url=url) as cm:
            try:
                cm.set(key, 1)
                outcomes.append(("value", cm.get(key)))
            except Exception as exc:
                outcomes.append(("raised", type(exc)))
    assert outcomes[0] == outcomes[1] == ("raised", ValueError)


# -- argument digests ---------------------------------------------------------------------------------------

arguments_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN, infinities and -0.0 included
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=False)
    | st.uuids()
)
argument_values = st.recursive(
    arguments_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4)
        | st.frozensets(st.text(max_size=6) | st.integers(), max_size=4)
    ),
    max_leaves=12,
)
argument_lists = st.lists(
    st.tuples(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), argument_values), max_size=4
)


def identity(value: object) -> object:
    """What makes two arguments the same key: type and exact content (so 1, 1.0, True and "1" all differ)."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    if isinstance(value, decimal.Decimal):
        return ("Decimal", str(value))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(identity(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((identity(k), identity(v)) for k, v in value.items()))
    if isinstance(value, frozenset):
        return ("frozenset", frozenset(identity(item) for item in value))
    return (type(value).__name__, value)


@fuzz
@given(argument_lists, st.binary(max_size=8))
def test_digests_are_32_hex_characters_whatever_the_arguments(arguments: list[tuple[str, Any]], salt: bytes) -> None:
    value = digest(arguments, salt=salt)
    assert len(value) == 32
    assert all(char in "0123456789abcdef" for char in value)
    assert digest(list(arguments), salt=salt) == value


@fuzz
@given(argument_lists, argument_lists)
def test_digests_tell_apart_every_pair_of_distinct_argument_lists(a: list[Any], b: list[Any]) -> None:
    same = [(name, identity(value)) for name, value in a] == [(name, identity(value)) for name, value in b]
    assert (digest(a) == digest(b)) == same


@fuzz
@given(st.data())
def test_digests_of_a_list_and_its_near_copies(data: st.DataObject) -> None:
    """Hypothesis seldom draws two equal lists: build one, then change exactly one thing."""
    arguments = data.draw(argument_lists.filter(bool))
    i = data.draw(st.integers(0, len(arguments) - 1))
    name, value = arguments[i]
    replacement = data.draw(argument_values)
    changed = [*arguments[:i], (name, replacement), *arguments[i + 1 :]]
    assert (digest(changed) == digest(arguments)) == (identity(replacement) == identity(value))


# Values that look alike: the ones a naive encoding (str(), ==, hash(), JSON) would give one key.
CONFUSABLE: list[object] = [
    None, 0, 1, -1, True, False, 0.0, -0.0, 1.0, math.nan, math.inf, "", "0", "1", "1.0", "True", "None",
    b"", b"1", decimal.Decimal("1"), decimal.Decimal("1.0"), [], (), {}, frozenset(), [1], (1,), [True],
    [[1]], ["a b"], ("a", "b"), ["a", "b"], {"1": 1}, {1: 1}, {1: "1"}, frozenset({1}), frozenset({"1"}),
]  # fmt: skip


def test_every_look_alike_argument_has_its_own_digest() -> None:
    digests = {digest([("x", value)]): identity(value) for value in CONFUSABLE}
    assert len(digests) == len({repr(identity(value)) for value in CONFUSABLE}) == len(CONFUSABLE)


@fuzz
@given(st.lists(st.sampled_from(CONFUSABLE), max_size=3), st.lists(st.sampled_from(CONFUSABLE), max_size=3))
def test_digests_tell_apart_look_alike_arguments(a: list[object], b: list[object]) -> None:
    first, second = [("x", value) for value in a], [("x", value) for value in b]
    same = [identity(value) for value in a] == [identity(value) for value in b]
    assert (digest(first) == digest(second)) == same


# -- key templates -------------------------------------------------------------------------------------------

TEMPLATES = ["p:{a}", "{a}:{b}", "org/{a}@{b}:x", "user.{a}:v2"]
hostile_text = st.text(alphabet=st.sampled_from(":*?[]\\ \t\n%@/{}") | st.characters(codec="utf-8"))
template_values = hostile_text | st.text() | st.integers() | st.uuids()


@fuzz
@given(st.sampled_from(TEMPLATES), template_values, template_values)
def test_rendered_keys_hold_no_glob_whitespace_or_stray_separator(template: str, a: object, b: object) -> None:
    rendered = KeyTemplate(template, ["a", "b"], "app.f").render({"a": a, "b": b})
    literal_colons = template.replace("{a}", "").replace("{b}", "").count(":")
    assert not any(char in "*?[]\\" or char.isspace() or not char.isprintable() for char in rendered), rendered
    if len(rendered) <= 200:
        assert rendered.count(":") == literal_colons, rendered
    else:  # shortened: 168 characters, ':' and a digest of the whole
        head, _, tail = rendered.rpartition(":")
        assert len(head) == 168
        assert len(tail) == 32
        assert head.count(":") <= literal_colons, rendered


def test_template_values_cannot_forge_separators_or_globs() -> None:
    template = KeyTemplate("p:{a}", ["a"], "app.f")
    assert template.render({"a": "x:*"}) == "p:x%3A%2A"
    assert template.render({"a": uuid.UUID(int=1)}) == "p:00000000-0000-0000-0000-000000000001"


# -- flush_namespace against hostile namespace names ----------------------------------------------------------


def valid_name(text: str) -> bool:
    try:
        parse_name(text, "test")
    except ConfigError:
        return False
    return True


hostile_names = st.text(
    # glob and regex characters, and any printable unicode but the separator (letters, marks, digits,
    # punctuation, symbols): the names parse_name accepts, so little is filtered out
    alphabet=st.sampled_from("*?[]\\^!-ab")
    | st.characters(categories=("L", "M", "N", "P", "S"), exclude_characters=":"),
    min_size=1,
    max_size=12,
).filter(valid_name)


@st.composite
def sibling_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two distinct namespaces, often one a prefix, glob-match or near-copy of the other."""
    first = draw(hostile_names)
    second = draw(
        hostile_names
        | st.builds(lambda suffix: first + suffix, hostile_names)
        | st.builds(lambda glob: first[:-1] + glob, st.sampled_from(["*", "?", "[", "\\", "x"]))
        | st.just(first.replace("*", "x").replace("?", "y") or "z")
    )
    assume(second != first and valid_name(second))
    return first, second


ENTRIES = ["k", "*", "k:sub", "?", "[k]"]


def fill_and_flush(cm: CacheManager, first: str, second: str) -> None:
    """Fill two namespaces with the same names, remove and flush the first: the second keeps everything."""
    for name in ENTRIES:
        cm.set(name, name, namespace=first)
        cm.set(name, name, namespace=second)
    assert cm.remove("*", namespace=first) is True  # an exact removal, never a pattern
    assert cm.get("*", namespace=second) == "*"
    assert cm.flush_namespace(first) == len(ENTRIES) - 1
    for name in ENTRIES:
        assert cm.get(name, "absent", namespace=first) == "absent"
        assert cm.get(name, namespace=second) == name, (first, second, name)
    assert cm.count(first) == 0
    assert cm.count(second) == len(ENTRIES)


@settings(fuzz, max_examples=25)
@given(sibling_pairs())
def test_flushing_a_hostile_namespace_spares_its_siblings_in_memory(pair: tuple[str, str]) -> None:
    with CacheManager(url="memory://") as cm:
        fill_and_flush(cm, *pair)


@settings(fuzz, max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pair=sibling_pairs())
def test_flushing_a_hostile_namespace_spares_its_siblings_on_redis(
    redis_url: str, redis_server: RedisServer, pair: tuple[str, str]
) -> None:
    first, second = pair
    with redis_server.client() as admin:
        admin.flushdb()  # a clean database for each example
    with CacheManager(url=redis_url) as cm:
        fill_and_flush(cm, first, second)

        async def async_flush() -> None:
            await cm.aset("async", 1, namespace=first)
            assert await cm.aflush_namespace(first) == 1
            assert await cm.acount(second) == len(ENTRIES)
            await cm.aclose()

        asyncio.run(async_flush())
    with redis_server.client() as admin:
        left = {key.decode() for key in admin.scan_iter(match="*")}
    stored = {f"stashly:{second}:{name}" for name in ENTRIES}
    guards = {f"stashly::guard:{first}", f"stashly::guard:{second}"}
    assert stored <= left <= stored | guards
