"""The storage format: a small JSON envelope around the value, and typed read-back. Pure.

Every entry is the UTF-8 JSON document ``{"stashly": 1, "key": "<binding>", "at": <ms>, "value": <the value as JSON>}``.
The envelope is what tells a cached ``null`` from a missing key; its version lets the format grow without
misreading old entries; the binding (a digest of the full key) makes an entry copied to another key — say,
another user's — unreadable there. Any Redis client in any language can read it with a JSON parser.

An entry of a ``fail_safe`` function also carries ``"fresh": <Unix time in ms>``, its logical expiry: it stays in
Redis for the fail-safe period after that, readable as :class:`Stale` (a miss for everyone, and the fallback of
the function that stored it when its recomputation fails).

``"at"`` is when the value was encoded (Unix time in ms): a call with ``max_age`` reads it (:func:`born`) straight
from the bytes, at a fixed place, so the ordinary hit never looks at it. Entries written before it existed have
none and are too old for any ``max_age``.
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import math
import time
import typing
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final, Protocol

import orjson
import pydantic

from ..errors import SerializationError
from ..sentinels import MISSING, Missing

__all__ = [
    "FORMAT_VERSION",
    "JSON",
    "PLAIN",
    "PLAIN_AT",
    "STAMP_AT",
    "TAGGED",
    "TAGS_AT",
    "VALUE_AT",
    "Native",
    "Reader",
    "Serializer",
    "Stale",
    "binding",
    "binding_text",
    "born",
    "carries_tags",
    "decode",
    "encode",
    "header",
    "identity",
    "reader_for",
    "schema_fingerprint",
    "tags_of",
]

FORMAT_VERSION = 1
_OPTIONS = orjson.OPT_NON_STR_KEYS


class _Unencodable(Exception):
    def __init__(self, value: object) -> None:
        self.value: object = value


def _default(value: object) -> object:
    """orjson's fallback for types it does not know natively."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise _Unencodable(value)


class Stale:
    """What :func:`decode` returns for an entry past its logical expiry (``"fresh"``): the value, kept apart."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value: object = value


def encode(value: object, key: str, fresh_until: int | None = None, tags: bytes | None = None) -> bytes:
    """The envelope bytes for ``value``; ``SerializationError`` names the type and ``key`` when it is not JSON.
    ``fresh_until`` (Unix time in ms) is the logical expiry of a fail-safe entry; ``tags`` the fragment of its
    tags' tokens (:func:`stashly.tags.core.fragment`).

    >>> encode({"id": 1}, "stashly:app:user:1")  # doctest: +ELLIPSIS
    b'{"stashly":1,"key":"7a0df810639b9f6f","at":...,"value":{"id":1}}'
    """
    try:
        body = orjson.dumps(value, default=_default, option=_OPTIONS)
    except _Unencodable as exc:  # orjson wraps it; keep the innermost culprit
        raise _error(exc.value, key) from None
    except orjson.JSONEncodeError as exc:
        culprit = exc.__cause__.value if isinstance(exc.__cause__, _Unencodable) else value
        raise _error(culprit, key, str(exc)) from None
    # orjson writes NaN and Infinity as null: a silent wrong value. Only an output holding null can hide one.
    if b"null" in body and _has_non_finite(value):
        raise SerializationError(f"cannot cache the value for key {key!r}: NaN and Infinity are not JSON numbers")
    at = time.time_ns() // 1_000_000
    if tags is None and fresh_until is None:
        return b'{"stashly":1,"key":"%b","at":%d,"value":%b}' % (binding(key), at, body)
    tagged = b"" if tags is None else b'"tags":%b,' % tags
    fresh = b"" if fresh_until is None else b'"fresh":%d,' % fresh_until
    return b'{"stashly":1,"key":"%b","at":%d,%b%b"value":%b}' % (binding(key), at, tagged, fresh, body)


_HEAD = b'{"stashly":1,"key":"'
_AT = len(_HEAD) + 16  # after the binding: '","at":'
STAMP_AT: Final = _AT + 7
"""Where the digits of a stamp (``"at"``) start, in an entry without a generation stamp before it."""
PLAIN_AT: Final = STAMP_AT + 13
"""Where the common entry (no tags, no ``"fresh"``, a 13-digit ``"at"``) has ``,"value":`` (:data:`PLAIN`)."""
PLAIN: Final = b',"value":'
VALUE_AT: Final = PLAIN_AT + len(PLAIN)
"""Where the common entry's value starts; it ends one byte before the entry does (its ``}``). The hit path in
process (:meth:`stashly.engine.core.EngineCore.hit`) parses that slice alone: bytes that start with
:func:`header`, hold 13 digits and :data:`PLAIN` at their places and end with ``}`` around a slice that parses
as one JSON value are exactly the envelope ``{"stashly":1,"key":...,"at":...,"value":...}``, as :func:`decode`
would read them."""


@lru_cache(maxsize=8192)
def header(key: str) -> bytes:
    """What every entry of ``key`` starts with, up to the digits of its ``"at"``."""
    return b'%b%b","at":' % (_HEAD, binding(key))


TAGGED: Final = b'"tags":'
TAGS_AT: Final = PLAIN_AT + 1
"""Where a tagged entry's ``"tags"`` starts: after a 13-digit ``"at"`` (Unix ms until the year 2286) and its comma.
One ``raw.startswith(TAGGED, TAGS_AT)`` tells a tagged entry from the rest on the hit path; :func:`tags_of` reads
the fragment exactly."""


def born(raw: bytes) -> int | None:
    """When the entry in ``raw`` was encoded (Unix ms), read from its fixed place; ``None`` when it has no stamp
    (written before stamps, or by another serializer).

    >>> born(b'{"stashly":1,"key":"7a0df810639b9f6f","at":1764720000000,"value":1}')
    1764720000000
    >>> born(b'{"stashly":1,"key":"7a0df810639b9f6f","value":1}') is None
    True
    """
    start = _stamp_at(raw)
    if start < 0:
        return None
    end = raw.find(b",", start)
    digits = raw[start:end]
    return int(digits) if end > start and digits.isdigit() else None


def _stamp_at(raw: bytes) -> int:
    """Where the digits of ``"at"`` start in ``raw``, or -1."""
    head = raw.find(b"\0", 1) + 1 if raw[:1] == b"\0" else 0  # past a generation stamp (storage/stamps.py)
    if not raw.startswith(_HEAD, head) or not raw.startswith(b'","at":', head + _AT):
        return -1
    return head + STAMP_AT


def tags_of(raw: bytes) -> bytes | None:
    """The fragment of an entry's tags' tokens, read from its fixed place after ``"at"``; ``None`` when the entry
    has no tags (the common case: one bounded ``find``).

    >>> tags_of(b'{"stashly":1,"key":"7a0df810639b9f6f","at":1,"tags":{"user:5":"9f"},"value":1}')
    b'{"user:5":"9f"}'
    """
    start = _stamp_at(raw)
    if start < 0:
        return None
    comma = raw.find(b",", start, start + 21)
    if comma < 0 or not raw.startswith(b'"tags":{', comma + 1):
        return None
    end = raw.find(b"}", comma + 8)  # tag names and tokens hold no brace (stashly.tags.core.check_tag)
    return raw[comma + 8 : end + 1] if end > 0 else None


def carries_tags(raw: bytes, fragment: bytes) -> bool:
    """Whether the entry ``raw`` was stored with exactly ``fragment`` (:func:`tags_of` equal to it, without the
    slice): a tagged hit's check.

    >>> entry = b'{"stashly":1,"key":"7a0df810639b9f6f","at":1,"tags":{"user:5":"9f"},"value":1}'
    >>> carries_tags(entry, b'{"user:5":"9f"}'), carries_tags(entry, b'{"user:5":"9"}')
    (True, False)
    """
    # The hit path: the fragment right after a 13-digit "at" (see TAGS_AT). It ends at its only brace, so a prefix
    # match is an exact one. Any other layout is read exactly.
    if raw.startswith(fragment, TAGS_AT + 7) and raw.startswith(TAGGED, TAGS_AT):
        return True
    return tags_of(raw) == fragment


def _error(culprit: object, key: str, detail: str = "") -> SerializationError:
    kind = type(culprit)
    hint = f" ({detail})" if detail and "not JSON serializable" not in detail else ""
    return SerializationError(
        f"cannot cache a value of type {kind.__module__}.{kind.__qualname__} for key {key!r}: "
        f"stashly stores JSON (dict, list, str, numbers, bool, None, Pydantic models, dataclasses, "
        f"datetime, UUID, Decimal, Enum){hint}"
    )


def _has_non_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(k) or _has_non_finite(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_non_finite(item) for item in value)
    if isinstance(value, pydantic.BaseModel):
        return _has_non_finite(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_has_non_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


@lru_cache(maxsize=8192)  # hot keys are read over and over: hash each once
def binding_text(key: str) -> str:
    """What ties an entry to its key: 16 hex characters of BLAKE2b over the full key, as a decoded envelope
    holds them (a hit on a key past this cache's reach hashes it once, with no second cache to fill)."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@lru_cache(maxsize=8192)
def binding(key: str) -> bytes:
    """:func:`binding_text` as the bytes an encoded envelope holds."""
    return binding_text(key).encode()


def decode(raw: bytes, key: str) -> object | Missing:
    """The value inside an envelope, or :data:`MISSING` when ``raw`` is not a stashly entry written for ``key``.

    Corrupt bytes, another program's data and an entry copied from another key all read as a miss. orjson
    refuses documents nested deeper than 1024 levels with an error, never a ``RecursionError``. An entry past its
    logical expiry comes back as :class:`Stale`.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return MISSING
    if (
        type(document) is not dict
        or type(document.get("stashly")) is not int  # exactly: true and 1.0 compare equal to 1
        or document["stashly"] != FORMAT_VERSION
        or "value" not in document
        or document.get("key") != binding_text(key)
    ):
        return MISSING
    value: object = document["value"]
    fresh = document.get("fresh")
    if fresh is not None:
        if type(fresh) is not int:
            return MISSING
        if fresh <= time.time() * 1000:
            return Stale(value)
    return value


class Serializer(Protocol):
    """Turns values into stored bytes bound to their key, and back (:data:`MISSING` when it cannot)."""

    def encode(self, value: object, key: str) -> bytes: ...

    def decode(self, raw: bytes, key: str) -> object | Missing: ...


class _Json:
    """The default serializer: the JSON envelope of this module."""

    encode = staticmethod(encode)
    decode = staticmethod(decode)

    def __repr__(self) -> str:
        return "JSON"


JSON: Final[Serializer] = _Json()


Reader = Callable[[object], object]
"""Turns a decoded JSON value into the type the caller expects; raises ``pydantic.ValidationError`` if it can't."""


def identity(value: object) -> object:
    """The reader of untyped reads: the decoded JSON value as it is."""
    return value


class Native:
    """The reader of an annotation that a decoded JSON value of one type always satisfies as it is (``dict``,
    ``dict[str, Any]``, ``list``, ``list[Any]``, ``str``): a type check, and the ``TypeAdapter`` only when it
    fails (which then converts, or raises)."""

    __slots__ = ("adapter", "kind")

    def __init__(self, kind: type, adapter: Reader) -> None:
        self.kind: type = kind
        self.adapter: Reader = adapter

    def __call__(self, value: object) -> object:
        return value if type(value) is self.kind else self.adapter(value)


def _native(annotation: Any) -> type | None:
    """The JSON type that satisfies ``annotation`` as it is, if there is one."""
    if annotation in (dict, list, str):
        return typing.cast(type, annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and args in ((str, Any), (str, object)):
        return dict
    if origin is list and args in ((Any,), (object,)):
        return list
    return None


@lru_cache(maxsize=1024)
def reader_for(annotation: Any) -> Reader:
    """The validator for ``annotation`` (a Pydantic ``TypeAdapter``), or the identity for ``None``/``Any``."""
    if annotation is None or annotation is Any:
        return identity
    # The adapter's core validator, called directly: TypeAdapter.validate_python only forwards to it (a fifth of a
    # Pydantic hit). Models are stored by field name (model_dump's default), so a field with an alias must validate
    # by name too: by alias alone, every hit of a model with Field(alias=...) failed validation and read as a miss.
    validate = pydantic.TypeAdapter(annotation).validator.validate_python

    def read(value: object) -> object:
        return validate(value, by_alias=True, by_name=True)

    native = _native(annotation)
    return read if native is None else Native(native, read)


@lru_cache(maxsize=1024)
def schema_fingerprint(annotation: Any) -> bytes:
    """A short digest of the JSON schema of ``annotation``, so a changed model never reads the old shape."""
    if annotation is None or annotation is Any:
        return b""
    try:
        schema: object = pydantic.TypeAdapter(annotation).json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError):
        schema = repr(annotation)
    digest = hashlib.blake2b(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS), digest_size=6)
    return digest.hexdigest().encode()
