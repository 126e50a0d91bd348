"""Markers that are not ``None``: a miss, and an argument the caller did not pass."""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["MISSING", "NOT_SET", "Missing", "NotSet"]


class Missing(enum.Enum):
    """The type of :data:`MISSING`: nothing is stored under the key (distinct from a stored ``None``)."""

    MISSING = enum.auto()

    def __repr__(self) -> str:
        return "MISSING"


class NotSet(enum.Enum):
    """The type of :data:`NOT_SET`: the caller did not pass this argument (distinct from passing ``None``)."""

    NOT_SET = enum.auto()

    def __repr__(self) -> str:
        return "NOT_SET"


MISSING: Final = Missing.MISSING
NOT_SET: Final = NotSet.NOT_SET

MissingType = Literal[Missing.MISSING]
NotSetType = Literal[NotSet.NOT_SET]
