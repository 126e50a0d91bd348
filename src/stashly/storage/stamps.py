"""Generation stamps on stored entries and the fill token that carries both counters a fill must not have missed.

A namespace has a *generation*: a counter under its generation key (:func:`~stashly.keys.layout.generation_key`),
absent until the first versioned flush. Every entry is stamped with the generation it was written in, and it is only
read back while that is still the namespace's generation. Bumping the counter (``flush_namespace(mode="versioned")``)
so makes every entry of the namespace unreachable in one ``INCR``, whatever its size; the old entries are reclaimed by
their TTLs.

An entry of generation "none" (the counter absent) is stored as is, so a namespace never flushed that way keeps the
plain envelope any client can read. Later generations prefix the envelope with ``\\0<generation>\\0`` (as does
generation "none" for the rare value that itself starts with a NUL byte: neither of stashly's formats does).

The fill's token carries both counters a computation must not have missed: ``<guard>/<generation>``.

Read from replicas (Cluster, ``read_from_replicas``), an entry is also stamped with its guard as it was when the
entry was written, ``\0<generation>|<guard>\0``, and a replica's copy is served only while both are still the
primaries' (:func:`unstamp_guarded`): a replica that has not applied a removal yet holds an entry whose guard has
moved on. Read from a primary, such an entry needs no more than its generation (the removal reached it first).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Final

__all__ = [
    "fill_token",
    "guarded_stamp",
    "parse_stamp",
    "split_token",
    "stamp",
    "unstamp",
    "unstamp_all",
    "unstamp_guarded",
]

_MARK: Final = b"\x00"
_GUARD: Final = b"|"  # between the generation and the guard of a guarded stamp


def stamp(payload: bytes, generation: bytes | None) -> bytes:
    """What to store for ``payload`` written in ``generation`` (``None``: the counter is absent)."""
    if generation is None and not payload.startswith(_MARK):
        return payload
    return _MARK + (generation or b"") + _MARK + payload


def guarded_stamp(payload: bytes, generation: bytes | None, guard: bytes | None) -> bytes:
    """What to store for ``payload`` written in ``generation`` while its guard counter read ``guard``."""
    return _MARK + (generation or b"") + _GUARD + (guard or b"") + _MARK + payload


def unstamp(raw: bytes | None, generation: bytes | None) -> bytes | None:
    """The payload of a stored entry if it belongs to the current ``generation``, else ``None`` (a miss)."""
    if raw is None or not raw.startswith(_MARK):
        return raw if generation is None else None
    end = raw.find(_MARK, 1)
    if end < 0:
        return None
    word = raw[1:end]
    if word == (generation or b"") or (_GUARD in word and word.partition(_GUARD)[0] == (generation or b"")):
        return raw[end + 1 :]
    return None


def unstamp_guarded(raw: bytes | None, generation: bytes | None, guard: bytes | None) -> bytes | None:
    """The payload of a replica's copy of an entry if it carries both counters as the primaries have them now."""
    if raw is None or not raw.startswith(_MARK):
        return None  # not written by a process reading from replicas: nothing says which guard it was written under
    end = raw.find(_MARK, 1)
    expected = (generation or b"") + _GUARD + (guard or b"")
    return raw[end + 1 :] if end > 0 and raw[1:end] == expected else None


def unstamp_all(raws: Sequence[bytes | None], generation: bytes | None) -> list[bytes | None]:
    """:func:`unstamp` of many entries of one generation; entries never stamped cost one test each."""
    if generation is None:
        present = [raw for raw in raws if raw]
        if not any(map(bytes.startswith, present, repeat(_MARK))):
            return list(raws)
        return [unstamp(raw, None) for raw in raws]
    return [unstamp(raw, generation) for raw in raws]


def parse_stamp(raw: bytes) -> tuple[bytes | None, bytes]:
    """``(generation, payload)`` of stored bytes, for inspection (``None``: generation "none")."""
    end = raw.find(_MARK, 1) if raw.startswith(_MARK) else -1
    return (raw[1:end].partition(_GUARD)[0] or None, raw[end + 1 :]) if end > 0 else (None, raw)


def fill_token(guard: bytes | None, generation: bytes | None) -> bytes:
    """The token a fill presents: both counters as read before computing (absent ones as empty)."""
    return (guard or b"") + b"/" + (generation or b"")


def split_token(value: bytes | None) -> tuple[bytes, bytes | None]:
    """``(guard, generation)`` of a token; a token from before generations is all guard."""
    guard, slash, generation = (value or b"").rpartition(b"/")
    if not slash:
        return generation, None
    return guard, generation or None
