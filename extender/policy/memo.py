"""Verdicts memoised by what they depend on, and per-node answers kept per pod shape.

Owns :class:`VerdictMemo`, the two-level memo: a node's generation maps to the fingerprint
of the features a spec reads, and (spec, tags, fingerprint) maps to the verdict. Identical
hardware is evaluated once, so a cluster of thousands of nodes of a few dozen types costs a
few dozen evaluations per spec, and the memo grows with specs and hardware types, not nodes.

Owns :class:`NodeTables` too: per pod shape (the specs and tags a verb applies), node name →
what that verb answers for the node, kept in step with the feature store's version. A warm
call is then one C-level dictionary pass over the names it is sent.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from extender._util import BoundedDict
from extender.nfd.rules import CompiledSpec, ImageVerdict, SetSemantics, evaluate
from extender.nodes.model import NodeFeatures
from extender.nodes.store import FeatureSnapshot, NodeRecord

__all__ = [
    "NodeTable",
    "NodeTables",
    "VerdictMemo",
]

V = TypeVar("V")

# --------------------------------------------------------------------------------------------
# Verdicts through the memo

_NO_FEATURES = NodeFeatures.empty()


class VerdictMemo:
    """The two-level memo (see the module docstring).

    1. (node generation, feature names a spec reads) → fingerprint of those features on the
       node: keyed by the names rather than the spec, so a new spec reading the usual
       features (cpu.cpuid, kernel.version, ...) finds every node already fingerprinted;
    2. (spec digest, tags, has NodeFeature, fingerprint) → verdict.

    Nodes with identical relevant hardware share one evaluation (level 2). The warm request
    path does not come here per node: :class:`NodeTables` keep each verb's per-node answer.
    Generation 0 stands for "no NodeFeature" (the store's generations start at 1). Both levels
    are bounded. Not thread-safe: used from the event loop only.
    """

    def __init__(self, size: int, semantics: SetSemantics = SetSemantics.ANY) -> None:
        self._semantics = semantics
        self._fingerprints: BoundedDict[tuple[int, tuple[str, ...]], tuple[bytes, ...]] = (
            BoundedDict(size)
        )
        self._verdicts: BoundedDict[
            tuple[str, frozenset[str], bool, tuple[bytes, ...]], ImageVerdict
        ] = BoundedDict(size)
        self.hits = 0
        self.misses = 0

    def verdict(
        self, spec: CompiledSpec, tags: frozenset[str], record: NodeRecord | None
    ) -> ImageVerdict:
        """The spec's verdict on the node (``record`` None: the node has no NodeFeature)."""
        digest = spec.digest
        if record is None:
            features, generation, has_features = _NO_FEATURES, 0, False
        else:
            features, generation, has_features = record.features, record.generation, True
        fingerprint_key = (generation, spec.referenced_features)
        fingerprint = self._fingerprints.get(fingerprint_key)
        if fingerprint is None:
            fingerprint = features.fingerprint_of(spec.referenced_features)
            self._fingerprints.put(fingerprint_key, fingerprint)
        key = (digest, tags, has_features, fingerprint)
        verdict = self._verdicts.get(key)
        if verdict is None:
            self.misses += 1
            verdict = evaluate(
                spec,
                features,
                tags=tags,
                semantics=self._semantics,
                has_features=has_features,
            )
            self._verdicts.put(key, verdict)
        else:
            self.hits += 1
        return verdict

    def __len__(self) -> int:
        return len(self._verdicts)


# --------------------------------------------------------------------------------------------
# Per-node answers per pod shape


class NodeTable(dict[str, V], Generic[V]):
    """Node name → one verb's answer for one pod shape, valid at the store's ``version``.

    A plain dict underneath, so a warm request maps its names through ``__getitem__`` in C.
    """

    __slots__ = ("version",)

    def __init__(self, version: int) -> None:
        super().__init__()
        self.version = version


class NodeTables(Generic[V]):
    """A bounded set of :class:`NodeTable` by pod shape, kept in step with the store.

    A table behind the snapshot a request holds catches up by dropping the nodes that changed
    since (the store's change log), or everything when the log does not reach back that far;
    dropped nodes are computed again on their next request. A request holding a snapshot
    older than the table gets a private table, so a table never mixes versions.
    Not thread-safe: used from the event loop only.
    """

    def __init__(self, count: int) -> None:
        self._tables: BoundedDict[Hashable, NodeTable[V]] = BoundedDict(count)
        self.catch_ups = 0
        self.rebuilds = 0

    def table(self, shape: Hashable, snapshot: FeatureSnapshot) -> NodeTable[V]:
        """The table of ``shape`` at ``snapshot.version`` (possibly empty or partial)."""
        table = self._tables.get(shape)
        if table is None:
            table = NodeTable(snapshot.version)
            self._tables.put(shape, table)
            return table
        if table.version == snapshot.version:
            return table
        if table.version > snapshot.version:
            return NodeTable(snapshot.version)
        changed = snapshot.changed_since(table.version)
        if changed is None or len(changed) * 2 > len(table):
            self.rebuilds += 1
            table.clear()
        else:
            self.catch_ups += 1
            for name in changed:
                table.pop(name, None)
        table.version = snapshot.version
        return table

    def __len__(self) -> int:
        return len(self._tables)
