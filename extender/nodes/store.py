"""Where the server's node features live: a store fed by sources, read through snapshots.

Owns :class:`FeatureStore` (node name to features, fed by named sources, possibly from
worker threads) and :class:`FeatureSnapshot`, the immutable view a request takes once, so the
request path never takes a lock or waits. :class:`FeatureReader` is the protocol the policy
reads it through.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from extender.nodes.model import NodeFeatures

__all__ = [
    "FeatureReader",
    "FeatureSnapshot",
    "FeatureStore",
    "NodeRecord",
]


class FeatureReader(Protocol):
    """Node name → features, per-node generation, platform and readiness, as a snapshot.

    :class:`extender.nodes.store.FeatureStore` implements it; ``snapshot()`` must be cheap and
    must not block (it is called on every request).
    """

    def snapshot(self) -> FeatureSnapshot: ...


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node's features in the store, with a generation that is unique across the store and
    changes whenever the node's feature content changes (so it can key a memo)."""

    features: NodeFeatures
    generation: int


@dataclass(frozen=True, slots=True)
class FeatureSnapshot:
    """An immutable view of the store, taken once per request.

    ``synced`` is false until every registered source has delivered its first full state;
    ``waiting`` names those that have not. ``version`` changes with any content change.
    ``platforms`` maps node name to ``os/arch`` from its Node labels, where a source knows it.
    ``changes`` lists the latest versions with the nodes whose record or platform each one
    changed, newest last, so that something derived per node can catch up on those nodes
    alone (:meth:`changed_since`).
    """

    nodes: Mapping[str, NodeRecord]
    platforms: Mapping[str, str]
    synced: bool
    version: int
    waiting: tuple[str, ...] = ()
    changes: tuple[tuple[int, frozenset[str]], ...] = ()
    platform_values: frozenset[str] = frozenset()  # the distinct values of ``platforms``

    def changed_since(self, version: int) -> frozenset[str] | None:
        """The nodes whose record or platform changed after ``version`` up to this snapshot,
        or None when the store no longer remembers that far back (derive everything again)."""
        if version == self.version:
            return frozenset()
        if version > self.version:
            return None
        changed: set[str] = set()
        for at, nodes in reversed(self.changes):
            if at <= version:
                return frozenset(changed)
            changed |= nodes
        # Every kept entry is newer: complete only if the oldest kept one follows ``version``.
        if self.changes and self.changes[0][0] == version + 1:
            return frozenset(changed)
        return None

    def record(self, node: str) -> NodeRecord | None:
        return self.nodes.get(node)

    def platform(self, node: str) -> str:
        return self.platforms.get(node, "")


class FeatureStore:
    """Node name → features, fed by named sources and read through :meth:`snapshot`.

    Writers (sources, possibly from a worker thread) serialise on a lock and publish a new
    snapshot by swapping one reference; readers never lock. When several sources know a node,
    the one registered last wins. A store without sources is synced and empty.
    """

    # Versions remembered in FeatureSnapshot.changes: enough for a steady stream of NodeFeature
    # updates between two requests of the same pod shape; past it, derived tables start over.
    CHANGES_KEPT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, dict[str, NodeFeatures]] = {}
        self._synced: dict[str, bool] = {}
        self._platforms: dict[str, str] = {}
        self._generation = 0
        self._version = 0
        self._snapshot = FeatureSnapshot({}, {}, True, 0)

    def snapshot(self) -> FeatureSnapshot:
        return self._snapshot

    def add_source(self, name: str) -> None:
        """Register a source; the store is not synced until it calls :meth:`replace` once."""
        with self._lock:
            if name in self._sources:
                raise ValueError(f"feature source {name!r} is already registered")
            self._sources[name] = {}
            self._synced[name] = False
            self._publish(())

    def replace(self, source: str, features: Mapping[str, NodeFeatures]) -> None:
        """A source's full state (a re-list, a file reload); marks the source synced."""
        with self._lock:
            previous = self._sources[source]
            self._sources[source] = dict(features)
            self._synced[source] = True
            self._publish(previous.keys() | features.keys())

    def update(self, source: str, node: str, features: NodeFeatures | None) -> None:
        """One node changed in a source (a watch event); ``None`` removes it."""
        with self._lock:
            nodes = self._sources[source]
            if features is None:
                nodes.pop(node, None)
            else:
                nodes[node] = features
            self._publish((node,))

    def set_synced(self, source: str, synced: bool) -> None:
        """A source lost (or regained) its connection; the store is ready only when all are."""
        with self._lock:
            self._synced[source] = synced
            self._publish(())

    def set_platform(self, node: str, platform: str | None) -> None:
        """A node's ``os/arch`` (from its Node labels), or None when the node is gone."""
        with self._lock:
            platforms = dict(self._platforms)  # the published mapping stays untouched
            if platform:
                platforms[node] = platform
            else:
                platforms.pop(node, None)
            changed = platforms.get(node) != self._platforms.get(node)
            self._platforms = platforms
            self._publish((), platform_of=node if changed else None)

    def _effective(self, node: str) -> NodeFeatures | None:
        for nodes in reversed(self._sources.values()):
            found = nodes.get(node)
            if found is not None:
                return found
        return None

    def _publish(self, changed: Iterable[str], platform_of: str | None = None) -> None:
        old = self._snapshot
        records = old.nodes
        copied: dict[str, NodeRecord] | None = None
        touched: set[str] = set() if platform_of is None else {platform_of}
        for node in changed:
            features = self._effective(node)
            previous = records.get(node)
            if features is None:
                if previous is None:
                    continue
                copied = copied if copied is not None else dict(records)
                del copied[node]
                touched.add(node)
            elif previous is None or not previous.features.same_content(features):
                copied = copied if copied is not None else dict(records)
                self._generation += 1
                copied[node] = NodeRecord(features, self._generation)
                touched.add(node)
        waiting = tuple(name for name, synced in self._synced.items() if not synced)
        if copied is None and waiting == old.waiting and self._platforms is old.platforms:
            return
        self._version += 1
        changes = old.changes
        if len(changes) >= self.CHANGES_KEPT:
            changes = changes[1 - self.CHANGES_KEPT :]
        values = old.platform_values
        if self._platforms is not old.platforms:
            values = frozenset(self._platforms.values())
        self._snapshot = FeatureSnapshot(
            records if copied is None else copied,
            self._platforms,
            not waiting,
            self._version,
            waiting,
            (*changes, (self._version, frozenset(touched))),
            values,
        )
