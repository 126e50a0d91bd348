"""What stored bytes are: an entry's envelope, signed pickle or generation stamp, or an internal counter, and what
the library would make of them. Unpickles nothing unverified.

This is how the command line's ``get`` reads the format: through the library's own codec, signed pickle, stamps and
key layout, so the two never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import orjson

from ..keys.layout import generation_key, internal_kind
from ..sentinels import MISSING
from . import codec
from .pickle import SignedPickle, pickle_format
from .stamps import parse_stamp

__all__ = ["counter", "inspect_entry"]

_COUNTER: Final = re.compile(rb"-?[0-9]{1,19}")  # what INCR leaves: a signed 64-bit decimal


def inspect_entry(
    key: str, raw: bytes, current: object, *, prefix: str, secrets: Sequence[str], max_value_bytes: int
) -> dict[str, Any]:
    """What ``raw`` stored under ``key`` is, with its generation when a versioned flush ever stamped one.

    ``current`` is the namespace's counter as ``GET`` returned it (``None``, or an error for a key of another
    type, which the library's ``MGET`` also reads as absent). The library compares stamp and counter as bytes.
    ``prefix``, ``secrets`` and ``max_value_bytes`` are the settings the library would read the entry with.
    """
    if internal_kind(key, prefix) is not None:
        return _inspect(key, raw, prefix, secrets, max_value_bytes)
    written, payload = parse_stamp(raw)
    info = _inspect(key, payload, prefix, secrets, max_value_bytes) | {"size_bytes": len(raw)}
    now = current if isinstance(current, bytes) else None
    if written is None and now is None:
        return info
    number = 0 if written is None else counter(written)
    info["generation"] = number
    if written is not None and number is None:
        _note(info, f"generation stamp {_shown(written)} is not a number: not written by stashly")
    if now is not None and counter(now) is None:
        _note(info, f"generation counter {generation_key(key)} holds {_shown(now)}, not a number")
    if written == now:
        return info
    if number is None or (now is not None and counter(now) is None):
        _note(info, "the stamp is not the namespace's generation: read as a miss")
    else:
        _note(info, f"from generation {number}, retired by a versioned flush: read as a miss")
    return info


def counter(raw: bytes) -> int | None:
    """A counter as ``INCR`` writes it (signed 64-bit decimal), or ``None`` for anything else found there."""
    value = int(raw) if _COUNTER.fullmatch(raw) else None
    return value if value is not None and -(2**63) <= value < 2**63 else None


def _note(info: dict[str, Any], note: str) -> None:
    """Add ``note`` to the entry's notes: every reason it reads as a miss is worth knowing."""
    info["note"] = f"{info['note']}; {note}" if info.get("note") else note


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _shown(raw: bytes, limit: int = 40) -> str:
    """Stored bytes in a message: quoted, shortened."""
    return repr(_text(raw[:limit])) + ("..." if len(raw) > limit else "")


def _inspect(key: str, raw: bytes, prefix: str, secrets: Sequence[str], max_value_bytes: int) -> dict[str, Any]:
    """What ``raw`` (unstamped) stored under ``key`` is, and what the library would make of it."""
    info: dict[str, Any] = {"size_bytes": len(raw)}
    kind = internal_kind(key, prefix)
    if kind is not None:
        count = counter(raw) if kind == "guard" else None
        info |= {
            "kind": kind if kind in ("guard", "lock") else "internal",
            "value": _text(raw) if count is None else count,
        }
        if kind == "guard" and count is None:
            info["note"] = "not a number: flushes of this namespace fail (INCRBY) until it is removed"
        return info
    version = pickle_format(raw)
    if version is not None:
        return info | _inspect_pickle(key, raw, version, secrets)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or "stashly" not in document:
        return info | {"kind": "foreign", "preview": _text(raw[:200]), "note": "not a stashly entry: read as a miss"}
    digest = document.get("key")
    info |= {
        "kind": "entry",
        "format": document.get("stashly"),
        "key_digest": digest,
        "key_digest_matches": digest == codec.binding(key).decode(),
        "value": document.get("value"),
    }
    if codec.decode(raw, key) is MISSING:
        info["note"] = "the library reads this entry as a miss (wrong format version or key digest)"
    elif len(raw) > max_value_bytes:
        info["note"] = f"larger than max_value_bytes={max_value_bytes}: read as a miss"
    return info


def _inspect_pickle(key: str, raw: bytes, version: bytes, secrets: Sequence[str]) -> dict[str, Any]:
    """A signed pickle entry: its signature checked against ``secrets`` before anything is unpickled."""
    info: dict[str, Any] = {"kind": "signed pickle", "format": _text(version)}
    if not secrets:
        return info | {"signature": "not checked: no secrets configured (STASHLY_SECRETS), value not shown"}
    try:
        value = SignedPickle(secrets).decode(raw, key)  # verifies the signature before unpickling
    except Exception as exc:  # a verified payload whose classes this process cannot import
        return info | {"signature": "valid", "value_repr": None, "note": f"cannot unpickle here: {exc!r}"}
    if value is MISSING:
        return info | {"signature": "INVALID for this key with the configured secrets: read as a miss"}
    try:
        shown = repr(value)
    except Exception as exc:  # the class's own __repr__, run on data from Redis
        return info | {"signature": "valid", "value_repr": None, "note": f"cannot show the value: {exc!r}"}
    return info | {"signature": "valid", "value_repr": shown}
