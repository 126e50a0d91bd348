"""The rows a bulk ``insert()``/``update()``/``delete()`` statement writes, read around it in its transaction.

An ``UPDATE`` or ``DELETE`` reads the mapped columns of the rows its criteria match first (``FOR UPDATE``
where the database has it, so they cannot change before the statement runs) and, for an ``UPDATE``, the same
rows again afterwards: the old tags and the new ones. Rows of a bulk ``INSERT`` are its parameter sets.
Where the rows cannot be read (an ``INSERT ... VALUES`` statement, a tag that needs a column an insert did not
give), the rule's model tag stands for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, select, tuple_
from sqlalchemy.orm import Mapper, ORMExecuteState

from .rules import Columns

__all__ = ["Statement"]

_CHUNK = 500  # primary keys per "IN (...)" read


class Statement:
    """A bulk statement on ``mapper``'s table, with the rows it writes before (:meth:`before`) and after it."""

    def __init__(self, state: ORMExecuteState, mapper: Mapper[Any]) -> None:
        self.state = state
        self.mapper = mapper
        self._columns = [(prop.key, prop.class_attribute) for prop in mapper.column_attrs]
        self._keys = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
        self._identities: list[tuple[object, ...]] = []

    def before(self) -> list[Columns] | None:
        """The rows as they are before the statement; ``None`` when they cannot be known."""
        state = self.state
        if state.is_insert:
            return [Columns(values) for values in self._parameter_sets()] or None
        if state.is_executemany:  # "bulk UPDATE by primary key": each parameter set names its row
            identities = [tuple(values.get(key) for key in self._keys) for values in self._parameter_sets()]
            if any(None in identity for identity in identities):
                return None
            rows = self._read_identities(identities, lock=True)
        else:
            query = self._query().where(*_criteria(state.statement))
            rows = self._read(query.with_for_update())
        self._identities = [tuple(row[key] for key in self._keys) for row in rows]
        return [Columns(row) for row in rows]

    def after(self) -> list[Columns]:
        """For an ``UPDATE``, the rows :meth:`before` read, as the statement left them; nothing otherwise."""
        if not self.state.is_update or not self._identities:
            return []
        return [Columns(row) for row in self._read_identities(self._identities, lock=False)]

    def _parameter_sets(self) -> list[Mapping[str, object]]:
        parameters = self.state.parameters
        if parameters is None:
            return []
        if isinstance(parameters, Mapping):
            return [parameters] if parameters else []
        return [values for values in parameters if isinstance(values, Mapping)]

    def _query(self) -> Select[Any]:
        return select(*(attribute.label(key) for key, attribute in self._columns))

    def _read_identities(self, identities: Sequence[tuple[object, ...]], lock: bool) -> list[Mapping[str, object]]:
        primary = [attribute for key, attribute in self._columns if key in self._keys]
        primary.sort(key=lambda attribute: self._keys.index(attribute.key))
        rows: list[Mapping[str, object]] = []
        for start in range(0, len(identities), _CHUNK):
            chunk = identities[start : start + _CHUNK]
            if len(primary) == 1:
                criteria: ColumnElement[bool] = primary[0].in_([identity[0] for identity in chunk])
            else:
                criteria = tuple_(*primary).in_(chunk)
            query = self._query().where(criteria)
            rows.extend(self._read(query.with_for_update() if lock else query))
        return rows

    def _read(self, query: Select[Any]) -> list[Mapping[str, object]]:
        session = self.state.session
        with session.no_autoflush:
            result = session.execute(query, execution_options={"stashly_bulk_read": True})
            return [dict(row) for row in result.mappings()]


def _criteria(statement: Any) -> list[ColumnElement[bool]]:
    where = getattr(statement, "whereclause", None)
    return [] if where is None else [where]
