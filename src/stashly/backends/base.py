"""The backend contract: bytes in, bytes out.

Backends know nothing about keys, JSON, retries or logging. They raise
:class:`~stashly.errors.CacheUnavailableError` (with the client's exception as ``__cause__``) when the
store cannot be reached; everything else is the manager's business.

A *guard* is a small counter kept beside the entries of a namespace. Every invalidation bumps it; a fill
reads it together with the entry (``read``) before computing, and stores only if it has not moved since
(``fill``). That is how a ``remove`` or ``flush_namespace`` landing while a value is being computed wins over
the computation, in this process or any other.

The protocols are hand-written, both modes side by side, because they are the contract. The pass-through bases
that layers over a backend subclass are code, written once: ``AsyncProxyBackend`` in :mod:`.proxy_async`, and
``ProxyBackend`` in :mod:`.proxy_sync`, generated from it by ``scripts/unasync.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias

__all__ = ["AsyncBackend", "Backend", "Lock", "Peek", "Read", "peek_of"]

Read: TypeAlias = tuple[bytes | None, bytes | None, float | None]
"""What ``read`` returns: the entry's bytes (``None``: absent), the guard's value, the remaining TTL in seconds
(``None``: absent, never expires, or not asked for)."""


Lock: TypeAlias = tuple[str, bytes] | None
"""A stampede lock held while computing: its key and our owner token; ``None`` when not locking."""


Peek: TypeAlias = Callable[[str], bytes | None]
"""An in-process backend's hit path, in both modes a plain call (no await): the live entry's bytes, or ``None``
when this process cannot answer at once (absent, expired, not trusted now: the caller then reads as usual, and
that read counts the miss). The memory store and the local tier have one; a backend without one is read."""


def peek_of(backend: object) -> Peek | None:
    """``backend``'s :data:`Peek`, if it has one."""
    found: Peek | None = getattr(backend, "peek", None)
    return found


class Backend(Protocol):
    """A synchronous byte store with per-entry expiry and invalidation guards."""

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` when absent or expired."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The bytes of each key, in order (``None`` where absent), in one round trip."""
        ...

    def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read:
        """The entry, the guard's current value and (if asked) the entry's remaining TTL, in one round trip."""
        ...

    def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]:
        """:meth:`read`, and the values of the ``extra`` keys (a tagged entry's tag tokens): in one round trip
        where the keys share a server, else one per server."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (fractions honoured); ``None`` never expires."""
        ...

    def draw(self, key: str, value: bytes, ttl: float) -> bytes:
        """Store ``value`` under ``key`` for ``ttl`` seconds unless a value is there already, atomically; the value
        there now (``value`` when it was stored). A tag's token: processes that draw one at once agree on it."""
        ...

    def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool:
        """Store like ``set``, atomically, only if ``guard`` still holds ``token`` — and, given a ``lock``
        ``(lock key, owner)``, only if that lock is still ours (then it is released); whether it stored."""
        ...

    def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool:
        """Take the lock if free, for ``lease`` seconds; whether we got it."""
        ...

    def release(self, lock_key: str, owner: bytes) -> None:
        """Free the lock if it is still ours (never someone else's that took over after our lease ran out)."""
        ...

    def delete(self, key: str, guard: str | None = None) -> bool:
        """Remove ``key`` and bump ``guard``; ``True`` when something was removed."""
        ...

    def delete_prefix(self, prefix: str, guard: str | None = None) -> int:
        """Bump ``guard``, then remove every key starting with the literal ``prefix``; the number removed."""
        ...

    def retire_prefix(self, prefix: str, guard: str | None = None) -> None:
        """Make every entry of the namespace whose keys start with ``prefix`` unreachable at once, in O(1).

        Redis bumps the namespace's generation (the entries stay in memory until their TTLs run out); the
        memory backend, where nothing outlives the process, simply removes them and bumps ``guard``.
        """
        ...

    def count_prefix(self, prefix: str) -> int:
        """How many keys start with the literal string ``prefix``."""
        ...

    def close(self) -> None:
        """Release connections. The backend may be used again afterwards (it reconnects)."""
        ...


class AsyncBackend(Protocol):
    """The asyncio twin of :class:`Backend`, with the same semantics."""

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def read(self, key: str, guard: str | None, with_ttl: bool = False) -> Read: ...

    async def read_with(
        self, key: str, guard: str | None, with_ttl: bool, extra: Sequence[str]
    ) -> tuple[Read, list[bytes | None]]: ...

    async def set(self, key: str, value: bytes, ttl: float | None) -> None: ...

    async def draw(self, key: str, value: bytes, ttl: float) -> bytes: ...

    async def fill(
        self, key: str, value: bytes, ttl: float | None, guard: str, token: bytes | None, lock: Lock = None
    ) -> bool: ...

    async def acquire(self, lock_key: str, owner: bytes, lease: float) -> bool: ...

    async def release(self, lock_key: str, owner: bytes) -> None: ...

    async def delete(self, key: str, guard: str | None = None) -> bool: ...

    async def delete_prefix(self, prefix: str, guard: str | None = None) -> int: ...

    async def retire_prefix(self, prefix: str, guard: str | None = None) -> None: ...

    async def count_prefix(self, prefix: str) -> int: ...

    async def close(self) -> None: ...
