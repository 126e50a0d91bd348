"""The backend contract: bytes in, bytes out.

Backends know nothing about keys, JSON, retries or logging. They raise
:class:`~stashly.errors.CacheUnavailableError` (with the client's exception as ``__cause__``) when the
store cannot be reached; everything else is the manager's business.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["AsyncBackend", "Backend"]


class Backend(Protocol):
    """A synchronous byte store with per-entry expiry."""

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` when absent or expired."""
        ...

    def get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        """The bytes and their remaining lifetime in seconds (``None``: absent, or never expires), one round trip."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (fractions honoured); ``None`` never expires."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` when something was removed."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key that starts with the literal string ``prefix``; the number removed."""
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

    async def get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]: ...

    async def set(self, key: str, value: bytes, ttl: float | None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def count_prefix(self, prefix: str) -> int: ...

    async def close(self) -> None: ...
