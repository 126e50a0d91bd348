"""What the command line prints: human lines and JSON with control characters escaped, sizes, durations, progress.

Everything printed goes through :func:`safe` (human text) or :func:`dumps` (JSON): keys, values and messages carry
whatever Redis or the command line held, and nothing a terminal would act on may reach it as it is.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Final

import orjson
from redis.exceptions import RedisError

__all__ = ["Progress", "as_text", "dumps", "duration_text", "mask", "safe", "say", "silence_stdout", "size_text"]

_LARGE: Final = 10_000  # keys in the database from which stats draws a progress bar (on a terminal)
_USERINFO: Final = re.compile(r"(?<=://)[^/?#\s]*@")
_DEEPEST: Final = 10_000  # Python frames json.dumps may need for a value as deep as orjson parses (1024 levels)
# What a terminal acts on (C0, DEL, C1: ESC, BEL, CR, CSI...) or that reorders what it shows (bidi controls, line
# and paragraph separators), and lone surrogates (undecodable argv or environment): never printed as they are.
_UNSAFE: Final = frozenset(
    [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
     *range(0x2066, 0x206A), *range(0xD800, 0xE000)]
)  # fmt: skip
_ESCAPES: Final = {char: f"\\x{char:02x}" if char < 0x100 else f"\\u{char:04x}" for char in _UNSAFE} | {
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}
# In JSON text these can only stand inside strings (the encoders escape C0 themselves): \u escapes keep it valid.
_JSON_ESCAPES: Final = {char: f"\\u{char:04x}" for char in _UNSAFE if char >= 0x20}


def as_text(raw: bytes | str) -> str:
    """A reply from Redis as text, undecodable bytes as backslash escapes."""
    return raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")


def safe(text: str) -> str:
    """``text`` fit for a terminal: each control, bidi or separator character written as ``\\xNN``/``\\uNNNN``.

    Everything printed for a human goes through here: keys, values and messages carry whatever Redis or the
    command line held, and an ESC, CSI or BEL reaching the terminal would be obeyed. Applying it twice changes
    nothing. Backslashes are kept as they are (a key's ``\\x1b`` could be either: ``--json`` tells them apart).
    """
    return text.translate(_ESCAPES)


def dumps(document: object) -> str:
    """``document`` as indented JSON that a terminal can show: :func:`safe`'s characters as ``\\u`` escapes.

    The JSON means the same as without them; non-ASCII text stays readable. Bytes (from a reply the library did
    not decode) are shown as text, anything else JSON cannot hold as its ``repr``.
    """
    try:
        text = orjson.dumps(document, default=_jsonable, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:  # a lone surrogate from argv or the environment; nesting deeper than orjson
        # writes (254 levels), which it parses (1024 levels) and json.dumps's Python recursion reaches
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, _DEEPEST))
        try:
            text = json.dumps(document, indent=2, ensure_ascii=False, default=_jsonable)
        finally:
            sys.setrecursionlimit(limit)
    return text.translate(_JSON_ESCAPES)


def _jsonable(value: object) -> str:
    return as_text(value) if isinstance(value, bytes) else repr(value)


def mask(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced (settings already strip it: this is a second lock)."""
    return _USERINFO.sub("***@", url)


def size_text(count: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    raise AssertionError


def duration_text(seconds: float) -> str:
    """A duration for people: ``42.0s``, ``3m 5s``, ``2h 10m``, ``4d 1h``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, hours, days = int(seconds // 60), int(seconds // 3600), int(seconds // 86400)
    if seconds < 3600:
        return f"{minutes}m {int(seconds % 60)}s"
    return f"{hours}h {minutes % 60}m" if seconds < 86400 else f"{days}d {hours % 24}h"


def say(message: str) -> None:
    """One ``stashly: ...`` line on stderr, escaped."""
    sys.stderr.write(f"stashly: {safe(message)}\n")


def silence_stdout() -> None:
    """Point stdout at the null device, so that a reader gone away (``| head``) breaks nothing at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class Progress:
    """A progress bar on stderr for large databases, drawn only when stderr is a terminal."""

    def __init__(self, size: Callable[[], int], step: int) -> None:
        """``size`` counts the keys to visit (``DBSIZE``); asked only when stderr is a terminal."""
        self.total: int = 0
        self.step: int = step
        self.calls: int = 0
        self.drawn: float = 0.0
        if sys.stderr.isatty():
            try:
                self.total = size()
            except RedisError:  # not permitted: no bar
                self.total = 0

    def advance(self) -> None:
        """One more SCAN call done: redraw the bar now and then."""
        self.calls += 1
        if self.total < _LARGE or time.monotonic() - self.drawn < 0.2:
            return
        self.drawn = time.monotonic()
        done = min(self.calls * self.step / self.total, 0.99)  # each SCAN call visits about ``step`` slots
        bar = "#" * int(done * 30)
        sys.stderr.write(f"\rstashly: scanning {self.total:,} keys [{bar:<30}] {done:4.0%}")
        sys.stderr.flush()

    def done(self) -> None:
        """Erase the bar, if one was drawn."""
        if self.drawn:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()
