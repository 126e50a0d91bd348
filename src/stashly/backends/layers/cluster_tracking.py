"""The local tier's invalidation connections on Redis Cluster: one per primary, kept in step with the topology.

Every primary broadcasts the writes it takes under the prefix to an :class:`~.tracking.InvalidationTracker` of its
own, the *source* of the tier entries read from that node (:mod:`.local`): a node that falls silent, fails over
or is killed suspends only its entries. A key that a reshard moved is written on its new node, whose tracker
drops it from the tier whatever its source, so every primary must be tracked, not only the ones reads went to:
a poll of ``CLUSTER SLOTS`` (which redis-py's client already needs) every :data:`POLL_EVERY` second starts a
tracker for each node serving slots (a promoted replica, a node given slots) and stops those of nodes that no
longer serve any. A read that finds its node's entries not served starts that node's tracker at once. While a
slot migrates, the node importing it may serve none yet: its keys are not kept here meanwhile (a read the old
node redirected with ``ASK`` marks the slot, see :mod:`stashly.backends.redis.cluster_reads`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from .local import LocalTier
from .tracking import Connect, InvalidationTracker

__all__ = ["POLL_EVERY", "ClusterTracking", "primaries_in"]

POLL_EVERY: Final = 1.0
"""Seconds between two looks at the cluster's primaries."""


class ClusterTracking:
    """One tracker per primary of the cluster that ``connect_to`` reaches, for ``tier``.

    ``connect_to(node)`` is how to open a connection to ``node`` (``host:port``); ``known()`` the nodes the
    client's slot map holds now, where the poll asks for the topology.
    """

    def __init__(
        self,
        tier: LocalTier,
        connect_to: Callable[[str], Connect],
        known: Callable[[], list[str]],
        prefix: str,
        report: Callable[[BaseException], None],
    ) -> None:
        self._tier = weakref.ref(tier)
        self._connect_to = connect_to
        self._known = known
        self._prefix = prefix
        self._report = report
        self._trackers: dict[str, InvalidationTracker] = {}
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = os.getpid()
        tier.on_wake(self.wake)

    def wake(self, source: str | None = None) -> None:
        """A read found node ``source``'s entries not served: track it now, and every primary from now on."""
        if self._pid != os.getpid():  # a forked child has none of the threads
            self._pid, self._lock, self._poller, self._trackers = os.getpid(), threading.Lock(), None, {}
        with self._lock:
            if self._poller is None or not self._poller.is_alive():
                self._stop = threading.Event()
                self._poller = threading.Thread(
                    target=self._poll, args=(self._stop,), name="stashly-cluster-tracking", daemon=True
                )
                self._poller.start()
        if source is not None:
            self._track(source)

    def _track(self, node: str) -> None:
        tier = self._tier()
        if tier is None:
            return
        with self._lock:
            tracker = self._trackers.get(node)
            if tracker is None:
                try:
                    connect = self._connect_to(node)
                except Exception:  # the client is not connected yet: the next wake or poll tries again
                    return
                tracker = self._trackers[node] = InvalidationTracker(tier, connect, self._prefix, self._report, node)
        tracker.start()

    def _poll(self, stop: threading.Event) -> None:
        wait, asked = 0.0, None
        try:
            while not stop.wait(wait) and self._tier() is not None:
                wait = POLL_EVERY
                try:
                    primaries, asked = self._primaries(asked)
                except Exception:  # no node answered: the trackers' own silence suspends what they vouch for
                    asked = None
                    continue
                for node in primaries:
                    self._track(node)
                with self._lock:
                    gone = [self._trackers.pop(node) for node in list(self._trackers) if node not in primaries]
                for tracker in gone:  # a demoted or removed node: a promoted replica's tracker answers for its keys
                    tracker.stop()
        finally:
            if asked is not None:
                asked[0].disconnect()

    def _primaries(self, asked: tuple[Any, str] | None) -> tuple[list[str], tuple[Any, str]]:
        """The primaries as a node sees them (``CLUSTER SLOTS``), and the connection and node that answered: the
        last poll's while it answers (one connection for every poll, not one each), else the first known node's."""
        if asked is not None:
            try:
                return _slot_primaries(*asked), asked
            except Exception:
                asked[0].disconnect()
        failure: Exception | None = None
        for node in self._known():
            connection_class, kwargs = self._connect_to(node)
            connection = connection_class(**kwargs)
            try:
                return _slot_primaries(connection, node), (connection, node)
            except Exception as exc:
                failure = exc
                connection.disconnect()
        raise failure or LookupError("no cluster node is known yet")

    def stop(self) -> None:
        """Stop every tracker and the poll, dropping the tier's entries; a later read starts them again."""
        with self._lock:
            self._stop.set()
            poller, self._poller = self._poller, None
            trackers, self._trackers = list(self._trackers.values()), {}
        for tracker in trackers:
            tracker.stop()
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout=2 * POLL_EVERY)
        tier = self._tier()
        if tier is not None:
            tier.suspend()


def _slot_primaries(connection: Any, node: str) -> list[str]:
    """What ``CLUSTER SLOTS`` says on ``connection`` (to ``node``; it connects if it is not)."""
    connection.send_command("CLUSTER", "SLOTS")
    return primaries_in(connection.read_response(), node)


def primaries_in(reply: Any, asked: str) -> list[str]:
    """The ``host:port`` of every node a ``CLUSTER SLOTS`` reply (from node ``asked``) names as a slot range's
    primary; a node that does not know its own address is where it was asked."""
    found: dict[str, None] = {}
    for entry in reply:
        host, port = entry[2][0], entry[2][1]
        host = host.decode() if isinstance(host, bytes) else str(host or "")
        found[f"{host or asked.rpartition(':')[0]}:{int(port)}"] = None
    return list(found)
