"""The documentation's ```python blocks run: each page's blocks in order, as one program, on the memory backend.

A block that cannot run here (it needs a Redis server, a FastAPI app around it, or it is a fragment) is marked by
the line right above its fence: ``<!-- docs: no-run (why) -->``. Every other block runs, with no ``STASHLY_*``
variable set and in an empty directory (so ``CacheManager()`` is ``memory://``), and a page passes when none of
its blocks raises. Top-level ``await`` is allowed (each such block runs in ``asyncio.run``).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

import pytest

import stashly
from stashly import CacheManager

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
NO_RUN = re.compile(r"<!--\s*docs:\s*no-run\b.*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    """One fenced ```python block of a page: where it starts, whether it runs, its source."""

    page: Path
    line: int
    runs: bool
    source: str


def blocks(page: Path) -> list[Block]:
    """Every ```python block of ``page``, in order (other languages are left alone)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, ticks, language = opening.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == ticks)  # the fence that closes it
        if language == "python":
            marked = i > 0 and bool(NO_RUN.search(lines[i - 1]))
            body = [line[len(indent) :] for line in lines[i + 1 : end]]
            found.append(Block(page, i + 1, not marked, "\n".join(body) + "\n"))
        i = end + 1
    return found


def compiled(block: Block) -> CodeType:
    """The block compiled as a module body (top-level ``await`` allowed), named after its page and line."""
    where = f"{block.page.relative_to(ROOT)}:{block.line}"
    return compile(block.source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.fixture
def clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``STASHLY_*`` variable and no ``config.json``: ``CacheManager()`` is an in-memory cache."""
    for name in list(os.environ):
        if name.startswith("STASHLY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    stashly.set_default_manager(CacheManager(url="memory://"))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.usefixtures("clean_settings")
def test_page_examples_run(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks(page):
        code = compiled(block)  # a block marked no-run must still be valid Python
        if not block.runs:
            continue
        if code.co_flags & inspect.CO_COROUTINE:
            asyncio.run(eval(code, namespace))
        else:
            exec(code, namespace)


def test_every_no_run_marker_sits_on_a_python_block() -> None:
    """A marker left above anything but a ```python fence would silently mark nothing."""
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if NO_RUN.search(line):
                following = lines[i + 1] if i + 1 < len(lines) else ""
                assert following.strip() == "```python", f"{page.relative_to(ROOT)}:{i + 1}: marker above {following!r}"
