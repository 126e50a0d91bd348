"""Exit codes of the command line, and the expected failure that carries one."""

from __future__ import annotations

from typing import Any

__all__ = ["CONFIG", "NOTHING", "OK", "UNAVAILABLE", "USAGE", "Failure"]

OK, NOTHING, USAGE, CONFIG, UNAVAILABLE = 0, 1, 2, 3, 4


class Failure(Exception):
    """An expected failure: one line on stderr and an exit code, no traceback; with ``--json``, ``document`` (what
    was found) is printed with the message as its ``error``."""

    def __init__(self, code: int, message: str, document: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code: int = code
        self.document: dict[str, Any] = document or {}
