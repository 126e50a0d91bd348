"""Read-only JSON values: what a ``share=True`` hit hands to every caller (decoded once, never changed)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any, Final, NoReturn

import pydantic

__all__ = ["FrozenDict", "FrozenList", "freeze", "immutable"]

_REFUSED = "a shared cached value is read-only (share=True): copy it to change it, e.g. dict(value), list(value)"


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses every change (``TypeError``); ``copy()``, ``dict(value)`` and ``copy.deepcopy``
    give an ordinary, changeable one. It is still a ``dict``: ``isinstance``, JSON encoders and Pydantic take it.

    >>> value = freeze({"id": 1, "roles": ["admin"]})
    >>> value["id"], value["roles"][0]
    (1, 'admin')
    >>> value["id"] = 2
    Traceback (most recent call last):
    TypeError: a shared cached value is read-only (share=True): copy it to change it, e.g. dict(value), list(value)
    """

    __slots__ = ()

    def __setitem__(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def __delitem__(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def __ior__(self, *args: object, **kwargs: object) -> NoReturn:  # type: ignore[misc]  # refuses, as the rest
        raise TypeError(_REFUSED)

    def clear(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def pop(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def popitem(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def setdefault(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def update(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (dict(self),)


class FrozenList(list[Any]):
    """A ``list`` that refuses every change (``TypeError``); ``list(value)``, a slice and ``copy`` give a
    changeable one."""

    __slots__ = ()

    def __setitem__(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def __delitem__(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def __iadd__(self, *args: object, **kwargs: object) -> NoReturn:  # type: ignore[misc]
        raise TypeError(_REFUSED)

    def __imul__(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def append(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def clear(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def extend(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def insert(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def pop(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def remove(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def reverse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def sort(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_REFUSED)

    def copy(self) -> list[Any]:
        return list(self)

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        import copy

        return [copy.deepcopy(value, memo) for value in self]

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        return list, (list(self),)


def freeze(value: object) -> Any:
    """``value`` (as JSON decodes: dicts, lists, strings, numbers, ``None``) with every dict and list made
    read-only, all the way down; anything else as it is."""
    kind = type(value)
    if kind is dict:
        return FrozenDict({key: freeze(item) for key, item in value.items()})  # type: ignore[attr-defined]
    if kind is list:
        return FrozenList([freeze(item) for item in value])  # type: ignore[attr-defined]
    return value


_IMMUTABLE: Final = (
    str,
    int,
    float,
    bool,
    type(None),
    bytes,
    dt.date,
    dt.time,
    dt.timedelta,
    uuid.UUID,
    decimal.Decimal,
)


def immutable(value: object) -> bool:
    """Whether nothing reachable from ``value`` can be changed in place: frozen dicts and lists, tuples and
    frozensets of such, immutable scalars (strings, numbers, dates, UUIDs, enums…), and Pydantic models of a frozen
    class whose every field is so. A plain model, a dataclass, a set or a list kept by a frozen model is not."""
    kind = type(value)
    if kind is FrozenDict:
        return all(map(immutable, value.values()))  # type: ignore[attr-defined]
    if kind is FrozenList or kind is tuple or kind is frozenset:
        return all(map(immutable, value))  # type: ignore[call-overload]
    if isinstance(value, pydantic.BaseModel):
        fields = type(value).model_fields
        return bool(type(value).model_config.get("frozen")) and all(immutable(getattr(value, f)) for f in fields)
    return kind in _IMMUTABLE or isinstance(value, enum.Enum)
