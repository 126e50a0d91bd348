"""Key templates: ``key="org:{org.id}:user:{user_id}"`` checked against a signature once, rendered per call. Pure."""

from __future__ import annotations

import enum
import hashlib
import string
import uuid
from collections.abc import Collection, Mapping
from typing import Final
from urllib.parse import quote

from ..errors import UnstableKeyError
from .canonical import PERSON

__all__ = ["KeyTemplate"]

_MAX_RENDERED: Final = 200
_KEEP_RENDERED: Final = 168  # 168 + ":" + 32 hex = 201 > 200, so a shortened key never equals a rendered one
_GLOB: Final = frozenset("*?[]\\")
# What an escaped template value may contain (quote's unreserved characters plus its escapes). A separator
# between two fields needs a character outside it, or "{a}-{b}" would render ("x-y", "z") like ("x", "y-z").
_VALUE_ALPHABET: Final = frozenset(string.ascii_letters + string.digits + "_.-~%")


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
        self.template: str = template
        self.where: str = where
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
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(part[1] for part in parts if part[1] is not None))

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
        whole = hashlib.blake2b(rendered.encode("utf-8", "surrogatepass"), digest_size=16, person=PERSON)
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
