"""Keys of arguments: the canonical encoding of a value, the digest of a call's arguments, a method's receiver. Pure.

:func:`digest` hashes :func:`canonical` encodings (see :mod:`stashly.keys.encoding`) with blake2b, so a key is the same
in every process and Python hash seed. A value with no stable encoding raises :class:`~stashly.UnstableKeyError`
naming where it is: ``argument 'filters'['status'] of app.search``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
from collections.abc import Iterable
from typing import Final, NoReturn

import pydantic

from ..errors import UnstableKeyError
from .encoding import (
    BASE_TYPES,
    EXACT,
    MAX_DEPTH,
    Unstable,
    encode_fields,
    encode_other,
    encode_value,
    instance_state,
)

__all__ = ["PERSON", "canonical", "digest", "hashed", "name_part", "receiver_key", "salt_part"]

PERSON: Final = b"stashly.key.v3"  # blake2b personalisation: versions the digests, bump it with the encoding


def _raise(exc: Unstable, path: str, advice: str | None = None) -> NoReturn:
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
            problem = f"{head}{''.join(segments[:4])}...{tail} is nested more than {MAX_DEPTH} levels deep"
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
        return encode_value(value, 0)
    except Unstable as exc:
        _raise(exc, path)


@functools.lru_cache(maxsize=1024)
def salt_part(salt: bytes) -> bytes:
    """What a :func:`digest` hashes first: its ``salt``, length-prefixed."""
    return b"%d:%b" % (len(salt), salt)


@functools.lru_cache(maxsize=4096)  # parameter names repeat on every call: encode each once
def name_part(name: str) -> bytes:
    """What a :func:`digest` hashes before an argument's value: its name."""
    return encode_value(name, 0)


def hashed(parts: list[bytes]) -> str:
    """The digest of ``parts`` (a :func:`salt_part`, then each argument's :func:`name_part` and encoding)."""
    return hashlib.blake2b(b"".join(parts), digest_size=16, person=PERSON).hexdigest()


def digest(arguments: Iterable[tuple[str, object]], *, salt: bytes = b"", where: str = "") -> str:
    """32 hex characters hashing the ``(name, value)`` pairs in the order given, and ``salt``.

    The hash is blake2b over :func:`canonical` encodings, so it is the same in every process and Python
    hash seed. ``where`` names the function in errors: ``argument 'user' of app.get_me``.
    """
    parts = [salt_part(salt)]
    for name, value in arguments:
        try:
            parts.append(name_part(name))
            parts.append(encode_value(value, 0))
        except Unstable as exc:
            _raise(exc, f"argument {name!r} of {where}" if where else f"argument {name!r}")
    return hashed(parts)


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
            cls in EXACT
            or getattr(cls, "__cache_key__", None) is not None
            or isinstance(obj, type | enum.Enum | pydantic.BaseModel)
            or dataclasses.is_dataclass(obj)
        ):
            return encode_value(obj, 0)
        value = encode_other(obj, 1) if isinstance(obj, BASE_TYPES) else b"N"  # e.g. a str subclass
        return encode_fields(b"R", obj, instance_state(obj), 0) + value
    except Unstable as exc:
        head = path.partition(" of ")[0]
        advice = f"give {cls.__qualname__} a __cache_key__() method, or pass ignore=[{head!r}] to the decorator"
        _raise(exc, path, advice)
