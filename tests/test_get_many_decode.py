"""``get_many`` decodes a batch in one inlined loop; every entry that is not the common case takes the full path.
The two must agree: what ``get`` returns for a key, ``get_many`` returns for it, and what ``get`` refuses (and
logs), ``get_many`` leaves out (and logs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pydantic
import pytest

from stashly import CacheManager

from tests.support import backend_url


class Point(pydantic.BaseModel):
    x: int


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    with CacheManager(backend_url(request, request.param), namespace="gm", max_value_bytes=2000) as manager:
        yield manager


def test_every_kind_of_entry_reads_the_same_through_get_and_get_many(
    manager: CacheManager, caplog: pytest.LogCaptureFixture
) -> None:
    backend = manager.engine.backend
    manager.set("plain", {"a": 1})
    manager.set("tagged", {"b": 2}, tags=["t"])
    manager.set("gone", {"c": 3}, tags=["u"])
    manager.invalidate_tags("u")
    manager.set("point", {"x": 1})
    manager.set("not_a_point", {"y": 1})
    manager.set("source", "copied")
    backend.set(manager.key("copy"), backend.get(manager.key("source")), None)  # bound to another key
    backend.set(manager.key("corrupt"), b"\x00not json", None)
    backend.set(manager.key("foreign"), b'{"stashly":true,"key":"x","value":1}', None)
    backend.set(manager.key("huge"), b'"' + b"x" * 3000 + b'"', None)
    names = ["plain", "tagged", "gone", "copy", "corrupt", "foreign", "huge", "absent", "source"]

    with caplog.at_level(logging.WARNING, "stashly"):
        many = manager.get_many(names)
    assert "treated as a miss" in caplog.text  # the full path ran for the unusual entries, and logged
    assert many == {"plain": {"a": 1}, "tagged": {"b": 2}, "source": "copied"}
    assert many == {name: manager.get(name) for name in names if manager.get(name) is not None}
    assert manager.get_many(["point", "not_a_point"], type=Point) == {"point": Point(x=1)}


def test_get_many_counts_hits_and_misses_like_get(manager: CacheManager) -> None:
    manager.set("a", 1)
    manager.set("b", 2, tags=["t"])
    before = manager.stats()
    assert manager.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    after = manager.stats()
    assert (after.hits - before.hits, after.misses - before.misses) == (2, 1)
    manager.invalidate_tags("t")
    assert manager.get_many(["a", "b"]) == {"a": 1}
    last = manager.stats()
    assert (last.hits - after.hits, last.misses - after.misses) == (1, 1)  # the stale tagged hit recounted


def test_entries_that_only_parse_together_are_read_one_by_one(manager: CacheManager) -> None:
    """A batch of present entries is parsed as one JSON array; entries that are not one document each must not
    shift the others (``[1`` and ``2]`` parse together, ``3,4`` apart), nor be read as their neighbours'."""
    backend = manager.engine.backend
    for name, value in (("a", {"a": 1}), ("b", {"b": 2}), ("c", {"c": 3})):
        manager.set(name, value)
    neighbour = backend.get(manager.key("b"))
    assert neighbour is not None
    fragments = {"f1": b"[1", "f2": b"2]", "f3": b"3,4", "f4": b"{}," + neighbour, "f5": b"{}"}
    for name, raw in fragments.items():
        backend.set(manager.key(name), raw, None)
    names = ["a", "f1", "f2", "b", "f3", "f4", "f5", "c"]
    assert manager.get_many(names) == {"a": {"a": 1}, "b": {"b": 2}, "c": {"c": 3}}
    assert manager.get_many(["f4", "b"]) == {"b": {"b": 2}}
    assert manager.get_many(["a", "b", "c"]) == {"a": {"a": 1}, "b": {"b": 2}, "c": {"c": 3}}
