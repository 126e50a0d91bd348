"""``@cached(tags=...)``: which tags a call's entry is filed under, checked when decorating.

``tags`` is a list of strings — fixed tags (``"users"``) or templates over the arguments (``"user:{user_id}"``,
``"org:{user.org_id}"``, checked and rendered like key templates: :class:`~stashly.keys.KeyTemplate`) — or a
callable taking the call's arguments and returning the tags (``lambda user_id, db: [f"user:{user_id}"]``).

These come from the arguments: a call reads their tokens *before* it computes, so that a tag invalidated during
the computation makes what it stores a miss (:mod:`stashly.tags.core`). Tags read from the result
(``@cached(result_tags=...)``) are known only afterwards; for them the fill reads the tag epoch before it
computes and stores nothing if any tag invalidation ran meanwhile (:func:`.flow_async.with_result_tags`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

from .. import keys
from ..memo import remember
from ..tags.core import check_tag, checked_tags, unique

__all__ = ["CallTags", "TagSpec", "TaggedCall"]

TagSpec: TypeAlias = Sequence[str] | Callable[..., Iterable[str]]
"""What ``@cached(tags=...)`` takes: tags and templates, or a callable of the call's arguments."""

_FIELD = re.compile(r"\{[^{}]*\}")
_MEMO_TEXT = 64  # longer strings are rendered every time rather than kept


class CallTags:
    """The tags of one cached function's calls."""

    __slots__ = ("_fixed", "_function", "_memo", "_roots", "_templates", "_where")

    def __init__(self, spec: TagSpec, parameters: tuple[str, ...], where: str) -> None:
        self._where = f"@cached {where}"
        self._function: Callable[..., Iterable[str]] | None = None
        fixed: list[str] = []
        templates: list[keys.KeyTemplate] = []
        if callable(spec):
            self._function = spec
        elif isinstance(spec, str | bytes) or not isinstance(spec, Sequence):
            raise TypeError(f"{self._where}: tags is a list of tags or a callable, not {spec!r}")
        else:
            for tag in spec:
                if not isinstance(tag, str) or "{" not in tag:
                    fixed.append(check_tag(tag, self._where))
                    continue
                check_tag(_FIELD.sub("x", tag), self._where)  # the literal text, as any value renders
                templates.append(keys.KeyTemplate(tag, parameters, self._where))
        self._fixed = unique(fixed)
        self._templates = tuple(templates)
        fields = {field for template in templates for field in template.fields}
        self._roots = tuple(i for i, name in enumerate(parameters) if name in fields)
        # The tags rendered for recent values of the templates' parameters (ints and strings only: their rendering
        # is a function of their value). Bounded; the oldest rendering goes first.
        self._memo: dict[tuple[object, ...], tuple[str, ...]] = {}

    @property
    def from_arguments(self) -> bool:
        """Whether the tags are a function of the arguments' values alone (a list, not a callable)."""
        return self._function is None

    def __call__(
        self, names: tuple[str, ...], values: Sequence[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, ...]:
        """The tags of the call with ``args``/``kwargs`` (``values``: its bound arguments, by ``names``)."""
        if self._function is not None:
            return checked_tags(self._function(*args, **kwargs), self._where)
        if not self._templates:
            return self._fixed
        memo = self._memo
        roots = tuple([values[i] for i in self._roots])
        if all(type(value) is int or (type(value) is str and len(value) <= _MEMO_TEXT) for value in roots):
            found = memo.get(roots)
            if found is not None:
                return found
        else:
            roots = ()
        bound = dict(zip(names, values, strict=True))
        rendered = [check_tag(template.render(bound), self._where) for template in self._templates]
        tags = unique([*self._fixed, *rendered])
        if roots:
            remember(memo, roots, tags)
        return tags


class TaggedCall:
    """One call's key, its tags (sorted; the tag epoch last under ``result_tags``) and their keys, with the tokens
    they had when last read and what those make: the fragment an entry stores, and that fragment as the entry's
    ``"tags"`` field (``field``). A hit that reads the same tokens again compares bytes and nothing more."""

    __slots__ = ("key", "last", "names", "tag_keys")

    def __init__(self, key: str, names: tuple[str, ...], tag_keys: list[str]) -> None:
        self.key: str = key
        self.names: tuple[str, ...] = names
        self.tag_keys: list[str] = tag_keys
        self.last: tuple[list[bytes | None], bytes, bytes] | None = None  # tokens, fragment, field: set at once
