"""Verdicts memoised by what they depend on: compiled spec, tags and the features read.

Owns :class:`VerdictMemo`, the two-level memo: a node's generation maps to the fingerprint
of the features a spec reads, and (spec, tags, fingerprint) maps to the verdict. Identical
hardware is evaluated once, so a cluster of thousands of nodes of a few dozen types costs a
few dozen evaluations per spec.
"""

from __future__ import annotations

from extender._util import BoundedDict
from extender.nfd.rules import CompiledSpec, ImageVerdict, SetSemantics, evaluate
from extender.nodes.model import NodeFeatures
from extender.nodes.store import NodeRecord

__all__ = [
    "VerdictMemo",
]

# --------------------------------------------------------------------------------------------
# Verdicts through the memo

_NO_FEATURES = NodeFeatures.empty()


class VerdictMemo:
    """The two-level memo (see the module docstring), with a direct first step for the warm path.

    0. (node generation, spec digest, tags) → verdict, the answer of the last two levels;
    1. (node generation, feature names a spec reads) → fingerprint of those features on the
       node: keyed by the names rather than the spec, so a new spec reading the usual
       features (cpu.cpuid, kernel.version, ...) finds every node already fingerprinted;
    2. (spec digest, tags, has NodeFeature, fingerprint) → verdict.

    Nodes with identical relevant hardware share one evaluation (level 2). Level 0 only saves
    the warm path two tuple builds and lookups per node (a third of filter's time at 5,000
    node names in benchmarks/server_bench.py). Generation 0 stands for "no NodeFeature"
    (the store's generations start at 1). Every level is bounded.
    Not thread-safe: used from the event loop only.
    """

    def __init__(self, size: int, semantics: SetSemantics = SetSemantics.ANY) -> None:
        self._semantics = semantics
        self._direct: BoundedDict[tuple[int, str, frozenset[str]], ImageVerdict] = BoundedDict(size)
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
        digest = spec.digest
        direct_key = (0 if record is None else record.generation, digest, tags)
        known = self._direct.get(direct_key)
        if known is not None:
            self.hits += 1
            return known
        known = self._verdict(spec, digest, tags, record)
        self._direct.put(direct_key, known)
        return known

    def _verdict(
        self, spec: CompiledSpec, digest: str, tags: frozenset[str], record: NodeRecord | None
    ) -> ImageVerdict:
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
