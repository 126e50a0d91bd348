"""The vocabulary of the bench: a scenario, the contestants in it, and what they share (the server, the loop)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .server import PrivateRedis
from .values import Shape, Size

__all__ = [
    "LARGE",
    "LARGE_KEYS",
    "MANY_KEYS",
    "Case",
    "Entry",
    "Env",
    "ExternalCase",
    "Mode",
    "Op",
    "Role",
    "Scenario",
    "Storage",
    "Unavailable",
]

Op = Literal["hit", "miss", "get_many", "tasks"]
Mode = Literal["sync", "async"]
Role = Literal["baseline", "reference", "stashly", "peer", "floor"]
Storage = Literal["redis", "client-side", "memory", "cluster"]

HIT_TTL = 3600  # seconds: nothing a HIT scenario primed expires during the run
MISS_TTL = 5  # seconds: MISS scenarios write a fresh entry per call; let Redis drop them soon


MANY_KEYS = 100_000
LARGE: tuple[Size, ...] = ("100KB", "1MB")
"""The sizes of the large in-process HITs (issue 15's sharing mode): in-process contestants and the baseline only,
over :data:`LARGE_KEYS` keys."""
LARGE_KEYS = 10
"""The large key set: far more distinct calls than any of stashly's memos holds (4,096 each)."""


@dataclass(frozen=True)
class Scenario:
    """One row group of the table: an operation on a value of a size and shape, driven sync or async.

    ``keys`` is how many distinct arguments a HIT cycles through (100, or :data:`MANY_KEYS` for the large key
    set, run by stashly and the baseline only), how many keys one ``get_many`` reads, or, for ``tasks`` (100
    concurrent asyncio tasks, measured in ops/s), how many keys those tasks share: 100, or 1 (one hot key).
    """

    op: Op
    mode: Mode
    size: Size = "300B"
    shape: Shape = "dict"
    keys: int = 100

    @property
    def title(self) -> str:
        shape = "Pydantic" if self.shape == "model" else "dict"
        if self.op == "tasks":
            spread = "one hot key" if self.keys == 1 else f"{self.keys} keys"
            return f"100 concurrent tasks · HIT over {spread} · {self.size} {shape} · async"
        if self.op == "get_many":
            return f"get_many of {self.keys} keys · {self.size} {shape} · {self.mode}"
        spread = f" · over {self.keys:,} keys" if self.keys != 100 else ""
        return f"{self.op.upper()} · {self.size} {shape} · {self.mode}{spread}"

    @property
    def slug(self) -> str:
        """A name usable as a namespace or key prefix: every scenario's entries live apart."""
        return f"{self.op}-{self.size}-{self.shape}-{self.mode}-{self.keys}"

    @property
    def throughput(self) -> bool:
        return self.op == "tasks"

    @property
    def ttl(self) -> int:
        return MISS_TTL if self.op == "miss" else HIT_TTL


@dataclass(eq=False)
class Case:
    """A contestant: ``call(n)`` does one operation for argument ``n`` (a coroutine function when ``is_async``).

    ``prime(n)`` stores the entry a HIT will find; without it the first ``call(n)`` fills it (a decorator).
    ``expected(n)`` is what a correct ``call(n)`` returns (checked once before measuring). ``storage`` says
    where a hit is served from: Redis, a local copy kept coherent through Redis, or process memory only.
    """

    name: str
    role: Role
    call: Callable[[int], Any]
    prime: Callable[[int], Any] | None = None
    expected: Callable[[int], Any] | None = None
    storage: Storage = "redis"
    note: str = ""

    @property
    def uses_redis(self) -> bool:
        """Whether its commands reach the private server (and are counted there)."""
        return self.storage in ("redis", "client-side")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.call)


@dataclass(eq=False)
class ExternalCase:
    """A contestant measured outside this process (redis-benchmark): ``sample()`` returns µs per operation."""

    name: str
    role: Role
    sample: Callable[[], float]
    note: str = ""


@dataclass(eq=False)
class Unavailable:
    """A contestant that cannot run here (missing feature or package): shown as ``n/a`` with the reason."""

    name: str
    role: Role
    reason: str


Entry = Case | ExternalCase | Unavailable


@dataclass(eq=False)
class Env:
    """What the contestant families share: the private server, the one event loop, and what to close at the end."""

    server: PrivateRedis
    runner: asyncio.Runner
    closers: list[Callable[[], Any]] = field(default_factory=list)
    benchmark_requests: int = 20_000
    """``redis-benchmark -n``: requests per sample of the C-client floor."""
    shared: dict[str, Any] = field(default_factory=dict)
    """Per-family state built once per run (a manager, a region, a configured cache), by family name."""

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Run a coroutine on the bench's single event loop (every async client is bound to it)."""

        async def wrapped() -> Any:
            return await awaitable

        return self.runner.run(wrapped())

    def on_close(self, closer: Callable[[], Any]) -> None:
        self.closers.append(closer)

    def close(self) -> list[str]:
        """Close everything registered, newest first; the failures, as text (closing never aborts the report)."""
        failures: list[str] = []
        for closer in reversed(self.closers):
            try:
                result = closer()
                if inspect.isawaitable(result):
                    self.run(result)
            except Exception as exc:  # a peer failing to close must not lose the results
                failures.append(f"{getattr(closer, '__qualname__', closer)}: {exc!r}")
        self.closers.clear()
        return failures
