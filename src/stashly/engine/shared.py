"""Shared values (``share=True``): an in-process hit decoded once and handed to every caller, read-only."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import pydantic

from ..sentinels import MISSING
from ..storage import codec
from ..storage.frozen import freeze, immutable

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "SharedValues"]

MAX_ENTRIES = 1024
"""Shared values one manager keeps."""
MAX_BYTES = 64 * 1024 * 1024
"""The stored bytes they stand for, at most (a decoded value takes a few times more)."""


class SharedValues:
    """Decoded values by key, each tied to the exact stored bytes (the same object) and reader it came from, so a
    new entry under the key, or another annotation, decodes afresh. Least recently used first out.

    What is shared is frozen: JSON dicts and lists become :class:`~stashly.storage.frozen.FrozenDict` and
    :class:`~stashly.storage.frozen.FrozenList`, all the way down. A value read into other types is shared only if
    nothing in it can change (:func:`~stashly.storage.frozen.immutable`: a model of a frozen class whose fields
    are tuples, strings, numbers or such models, say), and otherwise decoded on every hit as without sharing.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[str, tuple[bytes, codec.Reader, Any]] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def get(self, key: str, raw: bytes, reader: codec.Reader) -> Any:
        """The value shared for ``raw`` under ``key`` as ``reader`` reads it, or MISSING. Lock-free."""
        found = self._values.get(key)
        if found is None or found[0] is not raw or found[1] is not reader:
            return MISSING
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager on every hit)
            self._values.move_to_end(key)
        except KeyError:  # dropped this instant: the value we hold was current
            pass
        return found[2]

    def put(self, key: str, raw: bytes, reader: codec.Reader, value: Any) -> Any:
        """What to hand out for ``value``, just decoded from ``raw``: its frozen form, kept for the next hits (a
        value that would stay changeable comes back as it is, and is not kept)."""
        shared = value if isinstance(value, pydantic.BaseModel) else freeze(value)
        native = reader is codec.identity or type(reader) is codec.Native  # JSON as decoded: frozen all through
        if len(raw) > self._max_bytes or not (native or immutable(shared)):
            return value  # as it was decoded: the caller's own, as without sharing
        with self._lock:
            old = self._values.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._values[key] = (raw, reader, shared)
            self._bytes += len(raw)
            while len(self._values) > self._max_entries or self._bytes > self._max_bytes:
                _, (dropped, _, _) = self._values.popitem(last=False)
                self._bytes -= len(dropped)
        return shared
