"""The circuit breaker: after repeated failures, skip the backend for a cool-down instead of waiting on it.

A dead or hung Redis would otherwise cost every caller a full timeout. Once ``threshold`` operations in a
row have failed the breaker opens and operations fail at once (callers fall back to computing, as for any
failure). After ``cooldown`` seconds one probe is let through: success closes the breaker, failure keeps it
open for another cool-down. This module is the policy, shared by both modes; ``GuardedBackend`` and
``AsyncGuardedBackend`` (:mod:`.breaker_sync`, :mod:`.breaker_async`) put a breaker in front of a backend
without the backend knowing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["OPEN_MESSAGE", "CircuitBreaker", "NodeBreakers"]

logger: logging.Logger = logging.getLogger("stashly.breaker")  # the documented name, wherever the module lives


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> one probe per ``cooldown`` -> closed on success.

    The clock is injectable so tests never sleep. The closed-state checks take no lock: the hit path pays a
    couple of attribute reads.
    """

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        node: str | None = None,
        parent: CircuitBreaker | None = None,
    ) -> None:
        self.threshold = threshold
        self.node = node  # the Cluster node this breaker guards; None: the whole backend
        self._parent = parent  # counts this breaker's changes too (the manager reports one figure)
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_at = -float("inf")
        self.epoch: int = 0  # bumped when the breaker opens: a success from an operation begun before that is stale
        self.changes: int = 0  # times it opened or closed

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """Whether the next operation may go to the backend (always while closed; one probe per cool-down)."""
        if self._opened_at is None:
            return True
        now = self._clock()
        with self._lock:
            # A probe that never reported (its caller was cancelled) must not keep the breaker open for ever,
            # so a new probe is allowed once per cool-down whatever happened to the last one.
            if self._opened_at is None or now - self._probe_at >= self.cooldown:
                self._probe_at = now
                return True
        return False

    def succeeded(self, epoch: int | None = None) -> None:
        """Report a success; ``epoch`` is :attr:`epoch` read when the operation began.

        An operation that was already in flight when the breaker opened proves nothing about the backend now,
        so its success does not close the breaker.
        """
        if self._failures or self._opened_at is not None:
            with self._lock:
                if epoch is not None and epoch != self.epoch:
                    return
                was_open = self._opened_at is not None
                self._failures, self._opened_at = 0, None
                self._changed(was_open)
            if was_open:
                logger.warning(
                    "cache %s is answering again: circuit closed", self._what(), extra=_fields("breaker_closed")
                )

    def unprobed(self) -> None:
        """The operation let through as a probe failed on one Cluster node only: that says nothing of the backend
        as a whole, so the next operation may probe at once (its node may answer)."""
        if self._opened_at is not None:
            with self._lock:
                self._probe_at = -float("inf")

    def failed(self) -> None:
        now = self._clock()
        with self._lock:
            self._failures += 1
            if self._opened_at is not None or self._failures < self.threshold:
                return
            self._opened_at = self._probe_at = now
            self.epoch += 1
            self._changed(1)
        logger.warning(
            "cache %s failed %d times in a row: circuit open, skipping it and probing every %.3gs",
            self._what(),
            self.threshold,
            self.cooldown,
            extra=_fields("breaker_opened"),
        )

    def _changed(self, count: int) -> None:
        self.changes += count
        if self._parent is not None and count:
            with self._parent._lock:
                self._parent.changes += count

    def _what(self) -> str:
        return "backend" if self.node is None else f"backend node {self.node}"


class NodeBreakers:
    """One breaker per Cluster node, made on first use with the whole backend's settings, beside it.

    A node that fails opens its own breaker only: while one primary fails over, the keys of the healthy ones are
    still read and written. Operations over several nodes (``get_many``, flushes, counts) answer to ``whole``.
    """

    def __init__(self, whole: CircuitBreaker) -> None:
        self.whole = whole
        self._nodes: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def of(self, node: str) -> CircuitBreaker:
        """The breaker of ``node`` (``host:port``)."""
        found = self._nodes.get(node)
        if found is None:
            with self._lock:
                found = self._nodes.get(node)
                if found is None:
                    whole = self.whole
                    found = CircuitBreaker(whole.threshold, whole.cooldown, lambda: whole._clock(), node, whole)
                    self._nodes[node] = found
        return found


def _fields(outcome: str) -> dict[str, str | None]:
    return {"namespace": None, "function": None, "outcome": outcome}


OPEN_MESSAGE: Final = "circuit open: the backend failed repeatedly and is skipped until a probe succeeds"
"""What the :class:`~stashly.CacheUnavailableError` raised while the breaker is open says."""
