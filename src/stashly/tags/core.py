"""Tag names and tokens: what a tag may be called, and the compact record of an entry's tags. Pure.

Each tag has a *token* under its tag key (:func:`~stashly.keys.layout.tag_key`): random bytes, replaced — by
deleting the key — whenever the tag is invalidated. An entry stores the tokens its tags had when its computation
began (its *fragment*); it is read back only while every one of them is still current. A tag key that is absent
(never used, invalidated, evicted) gets a new token on next use, so an entry can never outlive an invalidation,
and one that expired or was evicted makes its entries misses rather than bringing old ones back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..memo import remember

__all__ = [
    "EPOCH",
    "TAG_TTL",
    "check_tag",
    "checked_tags",
    "fragment",
    "new_token",
    "parse_fragment",
    "remembered_fragment",
    "unique",
]

TAG_TTL = 30 * 86400.0
"""How long an unused tag's token lives (seconds). Past it, the next use draws a new one: its entries miss once."""

EPOCH = " epoch"
"""The name under which a fill whose tags come from its result carries the tag epoch it read before computing
(:func:`~stashly.keys.layout.tags_epoch_key`): never a tag (tags have no spaces), never stored in an entry."""

_MAX_TAG = 256
# Printable ASCII without space, quote, backslash and braces: a tag never needs JSON escaping, and the fragment
# in an entry's bytes ends at its first '}'.
_TAG = re.compile(r"[!#-\[\]-z|~]+")


def check_tag(tag: object, where: str) -> str:
    """``tag`` if it is a valid tag name, else ``ValueError`` (``TypeError`` for a non-string) naming it."""
    if type(tag) is not str:
        raise TypeError(f"{where}: a tag is a str, got {type(tag).__name__} {tag!r}")
    if len(tag) > _MAX_TAG or _TAG.fullmatch(tag) is None:
        raise ValueError(
            f"{where}: tag {tag!r} must be 1 to {_MAX_TAG} printable ASCII characters without spaces, quotes, "
            "backslashes or braces"
        )
    return tag


def new_token() -> bytes:
    """A fresh token for a tag: 16 hex characters of randomness (no two invalidations share one)."""
    return os.urandom(8).hex().encode()


def fragment(tokens: Mapping[str, bytes]) -> bytes:
    """The entry's record of its tags' tokens, as stored in its envelope: ``{"user:5":"9f…"}``, sorted.

    >>> fragment({"b": b"2", "a": b"1"})
    b'{"a":"1","b":"2"}'
    """
    return orjson.dumps({tag: token.decode() for tag, token in tokens.items()}, option=orjson.OPT_SORT_KEYS)


def remembered_fragment(memo: dict[tuple[Any, ...], bytes], probe: tuple[Any, ...]) -> bytes:
    """:func:`fragment` of ``probe``, a tuple of tags (sorted) then their tokens, kept in ``memo`` under it. A
    token changes only when its tag is invalidated: a hit finds the bytes it compares with in ``memo``."""
    tags, *tokens = probe
    found = fragment(dict(zip(tags, tokens, strict=True)))
    remember(memo, probe, found)
    return found


def parse_fragment(raw: bytes) -> dict[str, bytes]:
    """The tags and tokens of a stored fragment (the inverse of :func:`fragment`)."""
    document = orjson.loads(raw)
    return {str(tag): str(token).encode() for tag, token in document.items()}


def checked_tags(tags: Iterable[str], where: str) -> tuple[str, ...]:
    """``tags`` checked (:func:`check_tag`), without repeats, sorted; a lone ``str`` is refused (it is iterable)."""
    if isinstance(tags, str | bytes):
        raise TypeError(f"{where}: tags is a list of tags, not the single string {tags!r} (write [{tags!r}])")
    return unique(check_tag(tag, where) for tag in tags)


def unique(tags: Iterable[str]) -> tuple[str, ...]:
    """``tags`` without repeats, sorted: the order an entry's tags are read and recorded in."""
    return tuple(sorted(set(tags)))
