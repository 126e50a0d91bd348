"""Which tags a row of a watched model carries: the rule of one ``invalidate_on_commit`` call.

A rule turns a row into tags, from templates over the row's attributes (``"user:{id}"``, checked against the
mapping when the rule is made, rendered and escaped exactly as ``@cached(tags=...)`` renders its templates, so
``"user:{id}"`` here and ``"user:{user_id}"`` there name the same tag for the same value) or from a callable.
The same rule reads three kinds of row: the ORM instance as it is now, the instance as it was before this
flush (:class:`Before`), and a row a bulk statement touched, read as columns (:class:`Columns`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, select
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.orm import InstanceState, Mapper, Session

from ...errors import ConfigError
from ...keys.template import KeyTemplate
from ...tags.core import check_tag, checked_tags

if TYPE_CHECKING:
    from ...manager import CacheManager

__all__ = ["Before", "Columns", "Rule", "TagsOf", "make_rule"]

_FIELD = re.compile(r"\{[^{}]*\}")

TagsOf = str | Sequence[str] | Callable[[Any], Iterable[str]]
"""A template (``"user:{id}"``), several, or a callable of the row returning its tags."""


@dataclass(frozen=True, eq=False)
class Rule:
    """Rows of ``model`` (and its subclasses) carry ``tags(row)``; ``model_tag`` stands for rows not known."""

    model: type[Any]
    mapper: Mapper[Any]
    tags: Callable[[Any], Iterable[str]]
    model_tag: str | None
    manager: CacheManager
    where: str

    def tags_of(self, row: object) -> list[str]:
        """The checked tags of ``row`` (a typed error naming the model and the tag if one is invalid)."""
        return list(checked_tags(self.tags(row), self.where))


def make_rule(model: type[Any], tags: TagsOf, model_tag: str | None, manager: CacheManager) -> Rule:
    """The rule for ``model``; a :class:`~stashly.ConfigError` for a class that is not mapped, a template naming
    something the model does not have, or an invalid ``model_tag``."""
    where = f"invalidate_on_commit({getattr(model, '__name__', model)!r})"
    try:
        mapper: Mapper[Any] = inspect(model)
    except NoInspectionAvailable:
        raise ConfigError(f"{where}: {model!r} is not an SQLAlchemy mapped class") from None
    if model_tag is not None:
        try:
            check_tag(model_tag, f"{where} model_tag")
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
    return Rule(model, mapper, _tags_function(tags, mapper, where), model_tag, manager, where)


def _tags_function(tags: TagsOf, mapper: Mapper[Any], where: str) -> Callable[[Any], Iterable[str]]:
    if callable(tags):
        return tags
    specs = [tags] if isinstance(tags, str) else list(tags)
    if not specs or not all(isinstance(spec, str) for spec in specs):
        raise ConfigError(f"{where}: tags is a template such as 'user:{{id}}', a list of them, or a callable")
    attributes = list(mapper.all_orm_descriptors.keys())
    fixed: list[str] = []
    templates: list[KeyTemplate] = []
    try:
        for spec in specs:
            if "{" not in spec:
                fixed.append(check_tag(spec, where))
                continue
            check_tag(_FIELD.sub("x", spec), where)
            for field in _FIELD.findall(spec):
                name = field[1:-1].split(".", 1)[0]
                if name not in attributes:
                    raise ConfigError(
                        f"{where}: tag template {spec!r} names {name!r}, which {mapper.class_.__name__} does not "
                        f"have (it has {', '.join(sorted(mapper.column_attrs.keys()))})"
                    )
            templates.append(KeyTemplate(spec, attributes, where))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{exc} (attributes of {mapper.class_.__name__})") from None

    def from_templates(row: object) -> list[str]:
        values = _Attributes(row)
        return [*fixed, *(template.render(values) for template in templates)]

    return from_templates


class _Attributes(Mapping[str, object]):
    """A row's attributes as the mapping ``str.format_map`` reads."""

    __slots__ = ("_row",)

    def __init__(self, row: object) -> None:
        self._row = row

    def __getitem__(self, name: str) -> object:
        return getattr(self._row, name)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


class Before:
    """An instance as it was before the changes this flush writes: a changed attribute reads its old value.

    An attribute set without its old value loaded (an expired or lazy instance) is read from the database, by
    primary key, the first time a rule needs it: the flush has not written it yet.
    """

    __slots__ = ("_instance", "_session", "_state")

    def __init__(self, instance: object, session: Session) -> None:
        self._instance = instance
        self._session = session
        self._state: InstanceState[Any] = inspect(instance)

    def __getattr__(self, name: str) -> object:
        attribute = self._state.attrs.get(name)
        if attribute is not None:
            history = attribute.history
            if history.deleted:
                return history.deleted[0]
            if history.added and name in self._state.mapper.column_attrs and self._state.key is not None:
                return self._stored(name)
        return getattr(self._instance, name)

    def _stored(self, name: str) -> object:
        mapper = self._state.mapper
        identity = self._state.key[1] if self._state.key is not None else ()
        criteria = [column == value for column, value in zip(mapper.primary_key, identity, strict=True)]
        query = select(mapper.column_attrs[name].class_attribute).where(*criteria)
        with self._session.no_autoflush:
            return self._session.execute(query).scalar_one_or_none()


class Columns:
    """A row a bulk statement touched, read as its mapped columns (relationships are not loaded)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> object:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{name!r} is not a column read for a bulk statement") from None
