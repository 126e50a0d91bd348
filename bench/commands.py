"""Redis commands and round trips per call, counted on the bench's private server (no MONITOR).

Commands come from the slow log with its threshold at 0 µs for the duration of the count, which logs every
command a client sends and, separately (client ``?:0``), the commands a Lua script runs; ``INFO
commandstats`` cannot tell those two apart. Round trips come from ``total_reads_processed``: a pipeline or a
transaction sent in one write is one read. Redis leaves ``EXEC`` out of the slow log; it is added back for
each ``MULTI``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .cases import Case, Env
from .measure import Trial

__all__ = ["Commands", "count"]

OPERATIONS = 20
SCRIPT_CLIENT = "?:0"
_EXPIRY_OPTIONS = {"EX", "PX", "EXAT", "PXAT", "KEEPTTL"}


@dataclass(frozen=True)
class Commands:
    """Per call: commands the client sent, round trips, and what they were (``MGET; EVALSHA[GET, SET PX]``)."""

    per_call: float
    round_trips: float
    sequence: str


def count(trial: Trial, env: Env, operations: int = OPERATIONS) -> Commands | None:
    """Run ``operations`` calls of a Redis-backed contestant (outside any timing) and count what reached Redis."""
    entry = trial.entry
    if not isinstance(entry, Case) or not entry.uses_redis or trial.failure is not None:
        return None
    admin = env.server.admin
    admin_name = env.server.admin_name
    previous = admin.config_get("slowlog-*")
    admin.config_set("slowlog-max-len", 100_000)
    admin.config_set("slowlog-log-slower-than", 0)
    try:
        admin.slowlog_reset()
        reads = _reads(env)
        if entry.is_async:
            env.run(_calls(entry, trial, operations))
        else:
            _sync_calls(entry, trial, operations)
        reads = _reads(env) - reads - 1  # the second INFO's own read is counted before it answers
        log = admin.slowlog_get(100_000)
    finally:
        admin.config_set("slowlog-log-slower-than", str(previous["slowlog-log-slower-than"]))
        admin.config_set("slowlog-max-len", str(previous["slowlog-max-len"]))
    sent: Counter[str] = Counter()
    scripted: Counter[str] = Counter()
    for record in reversed(log):  # the slow log lists the newest first
        if _text(record.get("client_name")) == admin_name:
            continue
        name = _describe(record["command"])
        (scripted if _text(record.get("client_address")) == SCRIPT_CLIENT else sent)[name] += 1
    sent["EXEC"] += sent["MULTI"]
    return Commands(sent.total() / operations, reads / operations, _sequence(sent, scripted, operations))


def _reads(env: Env) -> int:
    return int(env.server.admin.info("stats")["total_reads_processed"])


def _sync_calls(entry: Case, trial: Trial, operations: int) -> None:
    for _ in range(operations):
        entry.call(trial.next_arg())


async def _calls(entry: Case, trial: Trial, operations: int) -> None:
    for _ in range(operations):
        result = entry.call(trial.next_arg())
        if asyncio.iscoroutine(result):
            await result


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def _describe(command: Any) -> str:
    """``SET k v PX 1000`` -> ``SET PX``: the command name, and for SET the options that decide expiry."""
    words = _text(command).split()
    if not words:
        return "?"
    name = words[0].upper()
    if name == "SET":
        options = [word.upper() for word in words[3:] if word.upper() in _EXPIRY_OPTIONS | {"NX", "XX", "GET"}]
        return " ".join([name, *options])
    return name


def _sequence(sent: Counter[str], scripted: Counter[str], operations: int) -> str:
    def listed(counter: Counter[str]) -> str:
        parts = []
        for name, total in counter.items():
            if total == 0:
                continue
            times = total / operations
            parts.append(name if times == 1 else f"{name}×{times:g}")
        return ", ".join(parts)

    text = listed(sent) or "none"
    inner = listed(scripted)
    return f"{text} [script: {inner}]" if inner else text
