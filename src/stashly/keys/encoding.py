"""The canonical encoding of one value: typed, self-delimiting bytes that equal values share in every process. Pure.

Each value is a tag byte, then either ``<length>:<payload>`` (scalars), ``<count>:<items>`` (containers) or further
encodings (typed wrappers). The code is prefix-free, so concatenations parse one way only. A value with no stable
encoding raises :class:`Unstable`, which :mod:`stashly.keys.canonical` turns into an ``UnstableKeyError``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import re
import reprlib
import sys
import uuid
import zoneinfo
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from fractions import Fraction
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import PurePath
from typing import Any, Final, TypeAlias

import pydantic
import pydantic_core

__all__ = [
    "BASE_TYPES",
    "EXACT",
    "MAX_DEPTH",
    "Unstable",
    "encode_fields",
    "encode_other",
    "encode_value",
    "instance_state",
]

MAX_DEPTH: Final = 64

_Encoder: TypeAlias = Callable[[Any, int], bytes]


class Unstable(Exception):
    """Raised inside the encoder; the public entry points turn it into an ``UnstableKeyError`` with a path."""

    def __init__(self, value: object, reason: str) -> None:
        self.value: object = value
        self.reason: str = reason
        self.trail: list[tuple[str, object]] = []  # (segment, container), innermost first


def encode_value(value: object, depth: int) -> bytes:
    """The encoding of ``value`` found ``depth`` containers deep; raises :class:`Unstable` when it has none."""
    encoder = EXACT.get(type(value))
    return encode_other(value, depth) if encoder is None else encoder(value, depth)


def _float_text(value: float) -> bytes:
    return b"nan" if value != value else float.hex(value).encode()


def _class_name(cls: type) -> bytes:
    return _str(f"{cls.__module__}.{cls.__qualname__}", 0)


_name: Final[Callable[[type], bytes]] = functools.lru_cache(maxsize=4096)(_class_name)  # encode each class once


def _str(value: str, depth: int) -> bytes:
    data = str.encode(value, "utf-8", "surrogatepass")
    return b"s%d:%b" % (len(data), data)


def _int(value: int, depth: int) -> bytes:
    data = b"%x" % value  # hex: exact, and exempt from the int-to-decimal digit limit
    return b"i%d:%b" % (len(data), data)


def _scalar(tag: bytes, payload: Callable[[Any], bytes]) -> _Encoder:
    def encode(value: object, depth: int) -> bytes:
        data = payload(value)
        return b"%b%d:%b" % (tag, len(data), data)

    return encode


def _sequence(tag: bytes) -> _Encoder:
    def encode(value: tuple[object, ...] | list[object], depth: int) -> bytes:
        if depth >= MAX_DEPTH:
            raise Unstable(value, "depth")
        parts = [b"%b%d:" % (tag, len(value))]
        try:
            for item in value:
                parts.append(encode_value(item, depth + 1))
        except Unstable as exc:
            exc.trail.append((f"[{len(parts) - 1}]", value))
            raise
        return b"".join(parts)

    return encode


def _set(tag: bytes) -> _Encoder:
    def encode(value: set[object] | frozenset[object], depth: int) -> bytes:
        if depth >= MAX_DEPTH:
            raise Unstable(value, "depth")
        try:
            items = sorted([encode_value(item, depth + 1) for item in value])
        except Unstable as exc:
            exc.trail.append(("{...}", value))
            raise
        return b"%b%d:%b" % (tag, len(items), b"".join(items))

    return encode


def _pairs(
    items: Iterable[tuple[object, object]], owner: object, depth: int, attrs: bool, ordered: bool = False
) -> bytes:
    """A map: ``m<count>:`` and the ``key + value`` encodings, sorted unless the map's order is part of its value."""
    if depth >= MAX_DEPTH:
        raise Unstable(owner, "depth")
    pairs: list[bytes] = []
    try:
        for key, item in items:
            encoded_key = b""  # stays empty when the key itself fails
            encoded_key = encode_value(key, depth + 1)
            pairs.append(encoded_key + encode_value(item, depth + 1))
    except Unstable as exc:
        if not encoded_key:
            exc.trail.append((".keys()", owner))
        else:
            exc.trail.append((f".{key}" if attrs else f"[{reprlib.repr(key)}]", owner))
        raise
    if not ordered:
        pairs.sort()
    return b"m%d:%b" % (len(pairs), b"".join(pairs))


def _part(owner: object, inner: object, segment: str, depth: int) -> bytes:
    """The encoding of ``inner``, which stands for (part of) ``owner``: errors point at ``owner<segment>``."""
    try:
        return encode_value(inner, depth + 1)
    except Unstable as exc:
        exc.trail.append((segment, owner))
        raise


def _wrap(tag: bytes, owner: object, inner: object, segment: str, depth: int) -> bytes:
    """``tag``, the owner's class name, then the encoding of what stands for it (``.value``, a secret...)."""
    return tag + _name(type(owner)) + _part(owner, inner, segment, depth)


def encode_fields(tag: bytes, owner: object, items: Iterable[tuple[str, object]], depth: int) -> bytes:
    """``tag``, the owner's class name, then its ``(attribute, value)`` pairs as a map."""
    return tag + _name(type(owner)) + _pairs(items, owner, depth, attrs=True)


def _memoryview(value: memoryview, depth: int) -> bytes:
    # Its items, not just its bytes: a view of one int and one of four bytes hold the same bytes but differ.
    try:
        layout, data = _str(value.format, depth) + EXACT[tuple](value.shape, depth), value.tobytes()
    except ValueError:  # released
        raise Unstable(value, "type") from None
    return b"v%b%d:%b" % (layout, len(data), data)


def _zone(tz: dt.tzinfo, value: dt.datetime | dt.time) -> bytes:
    """Which zone an aware value is in, beyond the offset its isoformat shows: London and UTC agree in January."""
    name = tz.key if isinstance(tz, zoneinfo.ZoneInfo) and tz.key is not None else value.tzname()
    return _name(type(tz)) + encode_value(name, 0)


def _moment(tag: bytes) -> _Encoder:
    """A datetime or time: its isoformat, then (when aware or folded) its fold and zone."""

    def encode(value: dt.datetime | dt.time, depth: int) -> bytes:
        data = value.isoformat().encode()
        tz = value.tzinfo
        if tz is not None or value.fold:  # isoformat never holds "|"
            data += b"|%d" % value.fold + (b"" if tz is None else _zone(tz, value))
        return b"%b%d:%b" % (tag, len(data), data)

    return encode


def _subclass(value: object, depth: int) -> bytes:
    """An instance of a subclass of a built-in value type: its class, what the base holds, and its own state.

    The class comes first because a subclass can behave differently on equal content (``Markup("<b>")`` is
    not escaped where ``"<b>"`` is; a namedtuple has fields), and ``OrderedDict`` order and a
    ``defaultdict``'s factory are part of what they hold.
    """
    if isinstance(value, OrderedDict):
        body = _pairs(dict.items(value), value, depth, attrs=False, ordered=True)
    elif isinstance(value, defaultdict):
        body = _part(value, value.default_factory, ".default_factory", depth)
        body += _pairs(dict.items(value), value, depth, attrs=False)
    else:
        body = next(encoder for base, encoder in _BUILTIN_BASES if isinstance(value, base))(value, depth)
    return b"x" + _name(type(value)) + body + _pairs(instance_state(value), value, depth, attrs=True)


def _zone_info(value: zoneinfo.ZoneInfo, depth: int) -> bytes:
    if value.key is None:  # from_file(): nothing names it
        raise Unstable(value, "type")
    return b"x" + _name(type(value)) + _str(value.key, depth)


EXACT: Final[dict[type, _Encoder]] = {
    type(None): lambda value, depth: b"N",
    bool: lambda value, depth: b"T" if value else b"F",
    int: _int,
    str: _str,
    float: _scalar(b"f", _float_text),
    bytes: _scalar(b"b", bytes),
    bytearray: _scalar(b"B", bytes),
    memoryview: _memoryview,
    tuple: _sequence(b"t"),
    list: _sequence(b"l"),
    dict: lambda value, depth: _pairs(dict.items(value), value, depth, attrs=False),
    set: _set(b"S"),
    frozenset: _set(b"z"),
    complex: _scalar(b"c", lambda c: _float_text(c.real) + b"," + _float_text(c.imag)),
    Decimal: _scalar(b"d", lambda d: str(d).encode()),
    Fraction: _scalar(b"q", lambda q: b"%x/%x" % (q.numerator, q.denominator)),
    dt.datetime: _moment(b"D"),
    dt.date: _scalar(b"a", lambda d: d.isoformat().encode()),
    dt.time: _moment(b"h"),
    dt.timedelta: _scalar(b"r", lambda d: b"%x" % ((d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds)),
    uuid.UUID: _scalar(b"u", lambda u: u.bytes),
    type: _scalar(b"y", lambda cls: f"{cls.__module__}.{cls.__qualname__}".encode("utf-8", "surrogatepass")),
    # Value types pydantic validates fields into, so that a model holding one keys by it: "x", class, content.
    deque: lambda q, depth: b"x" + _name(type(q)) + EXACT[list](q, depth) + encode_value(q.maxlen, 0),
    re.Pattern: lambda p, depth: b"x" + _name(re.Pattern) + encode_value(p.pattern, 0) + _int(p.flags, 0),
    dt.timezone: lambda tz, depth: (
        b"x" + _name(dt.timezone) + _str(str(tz.tzname(None)), 0) + EXACT[dt.timedelta](tz.utcoffset(None), 0)
    ),
    zoneinfo.ZoneInfo: _zone_info,
}
# Subclasses of these built-in types are keyed by their class, then like their base; datetime precedes date.
_BUILTIN_BASES: Final[tuple[tuple[type, _Encoder], ...]] = (
    *((base, encoder) for base, encoder in EXACT.items() if base not in (bool, type(None), type, dt.date)),
    (dt.date, EXACT[dt.date]),
)
_BUILTIN_TYPES: Final = tuple(base for base, _ in _BUILTIN_BASES)
# Keyed by class name and str; IP interfaces subclass addresses, so the class name tells them apart. Pydantic's
# URL types keep their parsed URL in a private base class; AnyUrl is the public base of the single-host ones.
_NAMED: Final = (
    PurePath,
    IPv4Address,
    IPv6Address,
    IPv4Network,
    IPv6Network,
    pydantic_core.Url,
    pydantic_core.MultiHostUrl,
    pydantic.AnyUrl,
    *(
        getattr(pydantic.networks, base)
        for base in ("_BaseUrl", "_BaseMultiHostUrl")
        if hasattr(pydantic.networks, base)
    ),
)
_SECRETS: Final = (
    pydantic.SecretStr,
    pydantic.SecretBytes,
    *((pydantic.Secret,) if hasattr(pydantic, "Secret") else ()),
)
BASE_TYPES: Final = _BUILTIN_TYPES + _NAMED


def encode_other(value: object, depth: int) -> bytes:
    """Everything not dispatched on its exact type: hooks, models, dataclasses, enums, subclasses."""
    if depth >= MAX_DEPTH:
        raise Unstable(value, "depth")
    cls = type(value)
    if getattr(cls, "__cache_key__", None) is not None:  # first, so users can override any rule below
        return _wrap(b"K", value, value.__cache_key__(), ".__cache_key__()", depth)  # type: ignore[attr-defined]
    if isinstance(value, type):
        return EXACT[type](value, depth)
    if getattr(cls, "__mapper__", None) is not None and "sqlalchemy" in sys.modules:
        from ..integrations.sqlalchemy.identity import row_identity  # only once the application uses SQLAlchemy

        identity = row_identity(value)
        if identity is None:
            raise Unstable(value, "type")
        return b"O" + _name(cls) + encode_value(identity, depth + 1)  # the row, not its loaded state
    if isinstance(value, enum.Enum):
        return _wrap(b"e", value, value.value, ".value", depth)
    if isinstance(value, pydantic.BaseModel):
        return _model(value, depth)
    if dataclasses.is_dataclass(value):  # not asdict(): it deep-copies every field on every call
        fields = ((field.name, getattr(value, field.name)) for field in dataclasses.fields(value))
        return encode_fields(b"C", value, fields, depth)
    if isinstance(value, _NAMED):
        return b"p" + _name(cls) + _str(str(value), depth)
    if isinstance(value, _SECRETS):  # hashed into the digest like a str argument; never rendered
        return _wrap(b"x", value, value.get_secret_value(), ".get_secret_value()", depth)
    if isinstance(value, pydantic.NameEmail):
        return b"x" + _name(cls) + _str(value.name, depth) + _str(value.email, depth)
    if isinstance(value, _BUILTIN_TYPES):
        return _subclass(value, depth)
    raise Unstable(value, "type")


def _model(model: pydantic.BaseModel, depth: int) -> bytes:
    """Its class, which fields were given (``exclude_unset`` dumps tell ``M()`` from ``M(x=0)``), its state."""
    given, declared, extra = model.__pydantic_fields_set__, _declared(type(model)), model.__pydantic_extra__
    if (
        len(given) == len(declared) + len(extra or ())
        and given.issuperset(declared)
        and (not extra or given.issuperset(extra))
    ):
        marker = b"*"  # all of them, the common case: no need to encode the names
    else:
        marker = _part(model, frozenset(given), ".model_fields_set", depth)
    return b"M" + _name(type(model)) + marker + _pairs(_model_state(model), model, depth, attrs=True)


def _model_state(model: pydantic.BaseModel) -> Iterator[tuple[str, object]]:
    """Everything a model holds, typed: every field (``exclude=True`` ones too, as validated, not dumped:
    ``bytes`` stay bytes, a ``UUID`` stays a UUID), extra fields and private attributes.

    Not ``model_dump(mode="json")``: it drops excluded fields and erases types, so two tenants' principals
    differing only in an excluded field would share one entry. Names cannot clash: fields and extras never
    start with ``_``, private attributes always do.
    """
    derived = _cached_properties(type(model))
    state = model.__dict__
    if derived:  # filled on first use: derived state that would change the key
        state = {name: value for name, value in state.items() if name not in derived}
    yield from state.items()
    if model.__pydantic_extra__:
        yield from model.__pydantic_extra__.items()
    if model.__pydantic_private__:
        yield from model.__pydantic_private__.items()


@functools.lru_cache(maxsize=1024)  # model_fields is a computed property in recent Pydantic
def _declared(cls: type[pydantic.BaseModel]) -> frozenset[str]:
    return frozenset(cls.model_fields)


@functools.lru_cache(maxsize=1024)
def _cached_properties(cls: type) -> frozenset[str]:
    return frozenset(name for name in dir(cls) if isinstance(getattr(cls, name, None), functools.cached_property))


def instance_state(obj: object) -> Iterator[tuple[str, object]]:
    """An instance's attributes (``__dict__`` and set ``__slots__``), minus ``functools.cached_property`` values."""
    cls = type(obj)
    if hasattr(obj, "__dict__"):
        for name, value in vars(obj).items():
            # A cached_property fills __dict__ on first use: derived state that would change the key.
            if not isinstance(getattr(cls, name, None), functools.cached_property):
                yield name, value
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            if slot.startswith("__") and not slot.endswith("__"):
                slot = f"_{klass.__name__.lstrip('_')}{slot}"  # name mangling
            try:
                yield slot, getattr(obj, slot)
            except AttributeError:  # an unset slot
                continue
