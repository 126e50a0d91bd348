"""Key layout and the canonical encoding of arguments, hashed into a key's digest. Pure: no I/O.

Every backend key is ``<prefix>:<namespace>:<rest>``. For a decorated function ``<rest>`` is its
:func:`function_name` and a :func:`digest` of its arguments, or a :class:`KeyTemplate` rendered from them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import re
import reprlib
import string
import sys
import uuid
import zoneinfo
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import PurePath
from typing import Any, Final, NoReturn, TypeAlias
from urllib.parse import quote

import pydantic
import pydantic_core

from ..errors import UnstableKeyError

__all__ = [
    "KeyTemplate",
    "canonical",
    "describe",
    "digest",
    "entry_key",
    "function_name",
    "guard_key",
    "lock_key",
    "log_fields",
    "namespace_prefix",
    "receiver_key",
]

_MAX_DEPTH: Final = 64
_PERSON: Final = b"stashly.key.v3"  # blake2b personalisation: versions the digests, bump it with the encoding
_MAX_RENDERED: Final = 200
_KEEP_RENDERED: Final = 168  # 168 + ":" + 32 hex = 201 > 200, so a shortened key never equals a rendered one
_GLOB: Final = frozenset("*?[]\\")
# What an escaped template value may contain (quote's unreserved characters plus its escapes). A separator
# between two fields needs a character outside it, or "{a}-{b}" would render ("x-y", "z") like ("x", "y-z").
_VALUE_ALPHABET: Final = frozenset(string.ascii_letters + string.digits + "_.-~%")


def entry_key(prefix: str, namespace: str, name: str) -> str:
    """The key of an entry named by the application: ``"stashly:app:user:1"`` for ``user:1``."""
    return f"{prefix}:{namespace}:{name}"


def namespace_prefix(prefix: str, namespace: str) -> str:
    """What every key of ``namespace`` starts with: ``"stashly:app:"``."""
    return f"{prefix}:{namespace}:"


def log_fields(key: str, outcome: str, function: str | None = None) -> dict[str, str | None]:
    """Structured fields for a log record about ``key`` (``extra=``): its namespace, the cached function when
    known, and what happened. Never the key's text or any value."""
    namespace = key.partition(":")[2].partition(":")[0] or None
    return {"namespace": namespace, "function": function, "outcome": outcome}


def describe(key: str) -> str:
    """How logs name a key: its prefix, namespace and a short digest — never its text, which may carry argument
    values (a ``key=`` template renders them in). ``describe("stashly:auth:profile:alice")`` is
    ``"stashly:auth:…#<8 hex>"``; compute it for a known key to find its log lines."""
    prefix, _, rest = key.partition(":")
    namespace = rest.partition(":")[0]
    return f"{prefix}:{namespace}:…#{hashlib.blake2b(key.encode('utf-8', 'surrogatepass'), digest_size=4).hexdigest()}"


def guard_key(prefix: str, namespace: str) -> str:
    """The invalidation counter of ``namespace``: ``"stashly::guard:app"``.

    The empty segment after the prefix can never be a namespace (names are non-empty), so the guard is never
    inside any namespace and never removed by a flush.
    """
    return f"{prefix}::guard:{namespace}"


def lock_key(prefix: str, key: str) -> str:
    """The stampede lock of an entry: ``"stashly::lock:stashly:auth:…"``, outside every namespace like the guard."""
    return f"{prefix}::lock:{key}"


def function_name(fn: Callable[..., object]) -> str:
    """``module.qualname`` of ``fn``, the name its entries are filed under: ``"app.users.get_me"``.

    Lambdas all share ``module.<lambda>``; callables without ``__qualname__`` (``functools.partial``,
    instances) raise ``TypeError`` rather than borrow their type's name and share entries.
    """
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"{fn!r} has no __module__ and __qualname__ to name its cache entries by: use a def")
    return f"{module}.{qualname}"


# -- the canonical encoding ---------------------------------------------------------------------------------
# Each value is a tag byte, then either "<length>:<payload>" (scalars), "<count>:<items>" (containers) or
# further encodings (typed wrappers). The code is prefix-free, so concatenations parse one way only.

_Encoder: TypeAlias = Callable[[Any, int], bytes]


class _Unstable(Exception):
    """Raised inside the encoder; the public entry points turn it into an ``UnstableKeyError`` with a path."""

    def __init__(self, value: object, reason: str) -> None:
        self.value, self.reason = value, reason
        self.trail: list[tuple[str, object]] = []  # (segment, container), innermost first


def _encode(value: object, depth: int) -> bytes:
    encoder = _EXACT.get(type(value))
    return _encode_other(value, depth) if encoder is None else encoder(value, depth)


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
        if depth >= _MAX_DEPTH:
            raise _Unstable(value, "depth")
        parts = [b"%b%d:" % (tag, len(value))]
        try:
            for item in value:
                parts.append(_encode(item, depth + 1))
        except _Unstable as exc:
            exc.trail.append((f"[{len(parts) - 1}]", value))
            raise
        return b"".join(parts)

    return encode


def _set(tag: bytes) -> _Encoder:
    def encode(value: set[object] | frozenset[object], depth: int) -> bytes:
        if depth >= _MAX_DEPTH:
            raise _Unstable(value, "depth")
        try:
            items = sorted([_encode(item, depth + 1) for item in value])
        except _Unstable as exc:
            exc.trail.append(("{...}", value))
            raise
        return b"%b%d:%b" % (tag, len(items), b"".join(items))

    return encode


def _pairs(
    items: Iterable[tuple[object, object]], owner: object, depth: int, attrs: bool, ordered: bool = False
) -> bytes:
    """A map: ``m<count>:`` and the ``key + value`` encodings, sorted unless the map's order is part of its value."""
    if depth >= _MAX_DEPTH:
        raise _Unstable(owner, "depth")
    pairs: list[bytes] = []
    try:
        for key, item in items:
            encoded_key = b""  # stays empty when the key itself fails
            encoded_key = _encode(key, depth + 1)
            pairs.append(encoded_key + _encode(item, depth + 1))
    except _Unstable as exc:
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
        return _encode(inner, depth + 1)
    except _Unstable as exc:
        exc.trail.append((segment, owner))
        raise


def _wrap(tag: bytes, owner: object, inner: object, segment: str, depth: int) -> bytes:
    """``tag``, the owner's class name, then the encoding of what stands for it (``.value``, a secret...)."""
    return tag + _name(type(owner)) + _part(owner, inner, segment, depth)


def _fields(tag: bytes, owner: object, items: Iterable[tuple[str, object]], depth: int) -> bytes:
    return tag + _name(type(owner)) + _pairs(items, owner, depth, attrs=True)


def _memoryview(value: memoryview, depth: int) -> bytes:
    # Its items, not just its bytes: a view of one int and one of four bytes hold the same bytes but differ.
    try:
        layout, data = _str(value.format, depth) + _EXACT[tuple](value.shape, depth), value.tobytes()
    except ValueError:  # released
        raise _Unstable(value, "type") from None
    return b"v%b%d:%b" % (layout, len(data), data)


def _zone(tz: dt.tzinfo, value: dt.datetime | dt.time) -> bytes:
    """Which zone an aware value is in, beyond the offset its isoformat shows: London and UTC agree in January."""
    name = tz.key if isinstance(tz, zoneinfo.ZoneInfo) and tz.key is not None else value.tzname()
    return _name(type(tz)) + _encode(name, 0)


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
    return b"x" + _name(type(value)) + body + _pairs(_state(value), value, depth, attrs=True)


def _zone_info(value: zoneinfo.ZoneInfo, depth: int) -> bytes:
    if value.key is None:  # from_file(): nothing names it
        raise _Unstable(value, "type")
    return b"x" + _name(type(value)) + _str(value.key, depth)


_EXACT: Final[dict[type, _Encoder]] = {
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
    deque: lambda q, depth: b"x" + _name(type(q)) + _EXACT[list](q, depth) + _encode(q.maxlen, 0),
    re.Pattern: lambda p, depth: b"x" + _name(re.Pattern) + _encode(p.pattern, 0) + _int(p.flags, 0),
    dt.timezone: lambda tz, depth: (
        b"x" + _name(dt.timezone) + _str(str(tz.tzname(None)), 0) + _EXACT[dt.timedelta](tz.utcoffset(None), 0)
    ),
    zoneinfo.ZoneInfo: _zone_info,
}
# Subclasses of these built-in types are keyed by their class, then like their base; datetime precedes date.
_BUILTIN_BASES: Final[tuple[tuple[type, _Encoder], ...]] = (
    *((base, encoder) for base, encoder in _EXACT.items() if base not in (bool, type(None), type, dt.date)),
    (dt.date, _EXACT[dt.date]),
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
_BASE_TYPES: Final = _BUILTIN_TYPES + _NAMED


def _encode_other(value: object, depth: int) -> bytes:
    """Everything not dispatched on its exact type: hooks, models, dataclasses, enums, subclasses."""
    if depth >= _MAX_DEPTH:
        raise _Unstable(value, "depth")
    cls = type(value)
    if getattr(cls, "__cache_key__", None) is not None:  # first, so users can override any rule below
        return _wrap(b"K", value, value.__cache_key__(), ".__cache_key__()", depth)  # type: ignore[attr-defined]
    if isinstance(value, type):
        return _EXACT[type](value, depth)
    if getattr(cls, "__mapper__", None) is not None and "sqlalchemy" in sys.modules:
        from ..integrations.sqlalchemy import row_identity  # only once the application uses SQLAlchemy

        identity = row_identity(value)
        if identity is None:
            raise _Unstable(value, "type")
        return b"O" + _name(cls) + _encode(identity, depth + 1)  # the row, not its loaded state
    if isinstance(value, enum.Enum):
        return _wrap(b"e", value, value.value, ".value", depth)
    if isinstance(value, pydantic.BaseModel):
        return _model(value, depth)
    if dataclasses.is_dataclass(value):  # not asdict(): it deep-copies every field on every call
        fields = ((field.name, getattr(value, field.name)) for field in dataclasses.fields(value))
        return _fields(b"C", value, fields, depth)
    if isinstance(value, _NAMED):
        return b"p" + _name(cls) + _str(str(value), depth)
    if isinstance(value, _SECRETS):  # hashed into the digest like a str argument; never rendered
        return _wrap(b"x", value, value.get_secret_value(), ".get_secret_value()", depth)
    if isinstance(value, pydantic.NameEmail):
        return b"x" + _name(cls) + _str(value.name, depth) + _str(value.email, depth)
    if isinstance(value, _BUILTIN_TYPES):
        return _subclass(value, depth)
    raise _Unstable(value, "type")


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


def _raise(exc: _Unstable, path: str, advice: str | None = None) -> NoReturn:
    """Turn an internal failure into ``UnstableKeyError``, pointing inside containers and at cycles."""
    head, of, where = path.partition(" of ")
    tail = of + where  # "argument 'x'[3] of app.f": segments go after the name, before " of "
    segments = [segment for segment, _ in reversed(exc.trail)]
    owners = [owner for _, owner in reversed(exc.trail)] + [exc.value]
    kind = type(exc.value)
    if advice is None:
        advice = "pass key= or ignore= to the decorator"
        if exc.reason != "depth" and kind.__module__ != "builtins":
            advice += f", or give {kind.__qualname__} a __cache_key__() method"
    if exc.reason == "depth":
        first_seen: dict[int, int] = {}
        for k, owner in enumerate(owners):
            i = first_seen.setdefault(id(owner), k)
            if i != k:
                back = head + "".join(segments[:i])
                problem = f"{head}{''.join(segments[:k])}{tail} refers back to {back} (a reference cycle)"
                break
        else:
            problem = f"{head}{''.join(segments[:4])}...{tail} is nested more than {_MAX_DEPTH} levels deep"
        raise UnstableKeyError(f"{problem}, so it has no stable cache key: {advice}") from None
    here = f"{head}{''.join(segments)}{tail} ({kind.__qualname__})"
    raise UnstableKeyError(f"{here} has no stable cache key: {advice}") from None


def canonical(value: object, path: str = "argument") -> bytes:
    """The canonical encoding of ``value``: typed, self-delimiting, order-independent for dicts and sets.

    ``canonical(1)``, ``canonical(1.0)``, ``canonical(True)`` and ``canonical("1")`` all differ, and equal
    values encode equally in every process. Values with no stable representation (plain objects,
    functions, sockets...) raise :class:`UnstableKeyError` naming ``path`` and where inside it, e.g.
    ``argument 'filters'['status'] of app.search``. A type's ``__cache_key__()`` method, returning an
    encodable value, overrides every rule.

    Nothing a function could tell apart is merged: a subclass of a built-in type (a ``str`` subclass, a
    namedtuple, ``OrderedDict`` with its order) is keyed by its class too, ``bytearray`` is not ``bytes``,
    a datetime keys by its zone and fold, and a Pydantic model by which fields were given.
    """
    try:
        return _encode(value, 0)
    except _Unstable as exc:
        _raise(exc, path)


@functools.lru_cache(maxsize=1024)
def _salt_part(salt: bytes) -> bytes:
    return b"%d:%b" % (len(salt), salt)


@functools.lru_cache(maxsize=4096)  # parameter names repeat on every call: encode each once
def _name_part(name: str) -> bytes:
    return _encode(name, 0)


def digest(arguments: Iterable[tuple[str, object]], *, salt: bytes = b"", where: str = "") -> str:
    """32 hex characters hashing the ``(name, value)`` pairs in the order given, and ``salt``.

    The hash is blake2b over :func:`canonical` encodings, so it is the same in every process and Python
    hash seed. ``where`` names the function in errors: ``argument 'user' of app.get_me``.
    """
    parts = [_salt_part(salt)]
    for name, value in arguments:
        try:
            parts.append(_name_part(name))
            parts.append(_encode(value, 0))
        except _Unstable as exc:
            _raise(exc, f"argument {name!r} of {where}" if where else f"argument {name!r}")
    return hashlib.blake2b(b"".join(parts), digest_size=16, person=_PERSON).hexdigest()


def receiver_key(obj: object, path: str) -> bytes:
    """The encoding of a method's ``self`` or ``cls`` (``path`` names it: ``"self of app.Service.get"``).

    A class is keyed by its name. An instance with ``__cache_key__()``, a dataclass or a pydantic model is
    keyed like :func:`canonical`; any other instance by its class and its attributes (``__dict__`` and
    ``__slots__``, minus ``functools.cached_property`` values), so a stateless service keys by class alone.
    An attribute with no stable representation raises :class:`UnstableKeyError` naming ``self.<attr>``.
    """
    cls = type(obj)
    try:
        if (
            cls in _EXACT
            or getattr(cls, "__cache_key__", None) is not None
            or isinstance(obj, type | enum.Enum | pydantic.BaseModel)
            or dataclasses.is_dataclass(obj)
        ):
            return _encode(obj, 0)
        value = _encode_other(obj, 1) if isinstance(obj, _BASE_TYPES) else b"N"  # e.g. a str subclass
        return _fields(b"R", obj, _state(obj), 0) + value
    except _Unstable as exc:
        head = path.partition(" of ")[0]
        advice = f"give {cls.__qualname__} a __cache_key__() method, or pass ignore=[{head!r}] to the decorator"
        _raise(exc, path, advice)


def _state(obj: object) -> Iterator[tuple[str, object]]:
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


# -- templates ----------------------------------------------------------------------------------------------


class KeyTemplate:
    """A key template such as ``"org:{org.id}:user:{user_id}"``, checked against a signature once.

    Fields name parameters, optionally followed by attribute access; their values must be ``str``,
    ``int``, ``UUID`` or an ``Enum`` of those, and are percent-escaped so that no argument can forge key
    structure: ``"5:x"`` renders as ``5%3Ax``. Consecutive fields must be separated by a character escaped
    in values (``:`` ``/`` ``@``...), which makes the rendering injective. Renderings longer than 200
    characters become their first 168 characters, ``:`` and a 32-hex digest of the whole.

    >>> KeyTemplate("profile:{user_id}", ["user_id", "db"], "app.profile").render({"user_id": 5})
    'profile:5'
    """

    __slots__ = ("_parts", "fields", "template", "where")

    def __init__(self, template: str, parameters: Collection[str], where: str) -> None:
        self.template, self.where = template, where
        label = f"{where}: key template {template!r}"
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        if not template:
            raise ValueError(f"{label} is empty")
        parts: list[tuple[str, str | None, tuple[str, ...], str]] = []
        previous: str | None = None
        for literal, field, spec, conversion in parsed:
            bad = sorted({c for c in literal if c in _GLOB or c.isspace() or not c.isprintable()})
            if bad:
                raise ValueError(f"{label}: literal text may not contain glob characters or whitespace {bad}")
            if field is None:
                parts.append((literal, None, (), ""))
                continue
            if conversion is not None or spec:
                raise ValueError(f"{label}: {{{field}}} may not have a !conversion or :format_spec")
            root, *attrs = field.split(".")
            if not root or root.isdigit():
                raise ValueError(f"{label}: {{{field}}} is positional; name a parameter")
            if not all(part.isidentifier() for part in (root, *attrs)):
                raise ValueError(f"{label}: {{{field}}} must be a parameter name, then .attributes only")
            if root not in parameters:
                raise ValueError(f"{label}: {{{field}}} is not a parameter; parameters are {tuple(parameters)}")
            if previous is not None and all(c in _VALUE_ALPHABET for c in literal):
                raise ValueError(
                    f"{label}: separate {{{previous}}} and {{{field}}} with a character such as ':' that is "
                    "escaped in values, or different arguments could render the same key"
                )
            parts.append((literal, root, tuple(attrs), field))
            previous = field
        self._parts = tuple(parts)
        self.fields = tuple(dict.fromkeys(part[1] for part in parts if part[1] is not None))

    def __repr__(self) -> str:
        return f"KeyTemplate({self.template!r}, where={self.where!r})"

    def render(self, arguments: Mapping[str, object]) -> str:
        """The key for ``arguments`` (bound parameter values by name), escaped and length-bounded."""
        pieces: list[str] = []
        for literal, root, attrs, field in self._parts:
            pieces.append(literal)
            if root is not None:
                value = arguments[root]
                try:
                    for attr in attrs:
                        value = getattr(value, attr)
                except AttributeError as exc:
                    raise UnstableKeyError(f"{self.where}: key template {self.template!r}: {{{field}}}: {exc}") from exc
                pieces.append(self._escape(value, field))
        rendered = "".join(pieces)
        if len(rendered) <= _MAX_RENDERED:
            return rendered
        whole = hashlib.blake2b(rendered.encode("utf-8", "surrogatepass"), digest_size=16, person=_PERSON)
        return f"{rendered[:_KEEP_RENDERED]}:{whole.hexdigest()}"

    def _escape(self, value: object, field: str) -> str:
        while isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, str):
            text = str.__str__(value)
            return text if text.isascii() and text.isalnum() else quote(text, safe="", errors="surrogatepass")
        if isinstance(value, int) and not isinstance(value, bool):
            return int.__repr__(value)
        if isinstance(value, uuid.UUID):
            return str(value)
        raise UnstableKeyError(
            f"{self.where}: key template {self.template!r}: {{{field}}} is a {type(value).__qualname__}; "
            "template fields take str, int, UUID or an Enum of those (try {x.id}, or drop key=)"
        )
