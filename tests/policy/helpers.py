"""Builders shared by the policy and server tests: pods, nodes, features, specs, sources."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from extender._util import SingleFlight
from extender.artifacts.types import PullContext, SpecKey, SpecLookup
from extender.nfd.rules import load_spec
from extender.nfd.spec import SpecError
from extender.nodes.model import NodeFeatures
from extender.nodes.store import FeatureStore
from extender.policy.decide import Priorities
from extender.policy.pods import FilterReasons, Pod, PolicyConfig
from extender.server.config import Settings
from extender.server.protocol import pod_from_object

SCHEDULER = "image-compat-scheduler"

# The example of KEP-1845 (image compatibility): a preferred set (weight 10) and a minimal fallback (weight 1).
PREFERRED_FALLBACK = """
version: v1alpha1
compatibilities:
- description: preferred
  weight: 10
  tag: fast
  rules:
  - name: vfio
    matchFeatures:
    - feature: kernel.loadedmodule
      matchExpressions:
        vfio_pci: {op: Exists}
- description: fallback
  weight: 1
  tag: minimal
  rules:
  - name: kernel
    matchFeatures:
    - feature: kernel.version
      matchExpressions:
        major: {op: Ge, value: ["5"]}
"""

# One required set: an AVX-512 CPU.
AVX512 = """
version: v1alpha1
compatibilities:
- rules:
  - name: avx512
    matchFeatures:
    - feature: cpu.cpuid
      matchExpressions:
        AVX512F: {op: Exists}
"""

# A set whose rule compares a node value as an integer (a node-side evaluation error when
# the node's value is not a number).
NUMA = """
version: v1alpha1
compatibilities:
- weight: 5
  rules:
  - name: numa
    matchFeatures:
    - feature: memory.numa
      matchExpressions:
        node_count: {op: Gt, value: ["1"]}
"""

INVALID_WEIGHT = """
version: v1alpha1
compatibilities:
- weight: 101
  rules: []
"""


def pod(
    *images: str,
    init: Iterable[str] = (),
    scheduler: str | None = SCHEDULER,
    annotations: Mapping[str, str] | None = None,
    names: Iterable[str] | None = None,
    name: str = "p",
    namespace: str = "default",
) -> Pod:
    """A pod with one container per image (named c0, c1, ...) and init containers i0, ..."""
    container_names = list(names) if names is not None else [f"c{i}" for i in range(len(images))]
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "schedulerName": scheduler,
            "initContainers": [{"name": f"i{i}", "image": image} for i, image in enumerate(init)],
            "containers": [
                {"name": n, "image": image}
                for n, image in zip(container_names, images, strict=True)
            ],
        },
    }
    return pod_from_object(obj)


def nodes(*names: str) -> tuple[str, ...]:
    """Candidate node names, as a names-mode request gives them."""
    return names


def scores(priorities: Priorities) -> list[int]:
    """Every candidate's score in request order, 0 for those the answer leaves out; checks
    the shift's promises on the way (lowest 0, nothing listed when every node is equal)."""
    if not priorities.scores:
        return [0] * len(priorities.names)
    assert len(priorities.scores) == len(priorities.names)
    assert min(priorities.scores) == 0 < max(priorities.scores) <= 10
    assert priorities.listed() == [
        (n, s) for n, s in zip(priorities.names, priorities.scores, strict=True) if s
    ]
    return list(priorities.scores)


def features(
    node: str = "",
    *,
    flags: Mapping[str, Iterable[str]] | None = None,
    attributes: Mapping[str, Mapping[str, str]] | None = None,
    instances: Mapping[str, list[Mapping[str, str]]] | None = None,
) -> NodeFeatures:
    return NodeFeatures.build(node, flags or {}, attributes or {}, instances or {})


def fast(node: str) -> NodeFeatures:
    """Matches the preferred set (and the fallback)."""
    return features(
        node,
        flags={"kernel.loadedmodule": ["vfio_pci"]},
        attributes={"kernel.version": {"major": "6"}},
    )


def minimal(node: str) -> NodeFeatures:
    """Matches only the fallback set."""
    return features(node, attributes={"kernel.version": {"major": "5"}})


def old(node: str) -> NodeFeatures:
    """Matches neither set."""
    return features(node, attributes={"kernel.version": {"major": "4"}})


def store_with(nodes_features: Mapping[str, NodeFeatures], *, synced: bool = True) -> FeatureStore:
    store = FeatureStore()
    store.add_source("test")
    if synced:
        store.replace("test", nodes_features)
    return store


class FakeSource:
    """An in-memory ArtifactSource.

    ``specs`` maps a reference (image or explicit artifact) to spec text, a SpecLookup, or an
    exception to report as a failure. With ``cached=True`` every reference answers from
    ``get_cached`` at once (warm); otherwise only after ``load`` (which waits for ``gate``).
    """

    def __init__(
        self,
        specs: Mapping[str, str | SpecLookup] | None = None,
        *,
        cached: bool = True,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.specs: dict[str, SpecLookup] = {}
        for reference, value in (specs or {}).items():
            self.add(reference, value)
        self.cached = cached
        self.gate = gate
        self.loaded: dict[SpecKey, SpecLookup] = {}
        self.load_calls: list[SpecKey] = []
        self.contexts: list[PullContext] = []
        self.ready = True
        self._flights: SingleFlight[tuple[SpecKey, PullContext], SpecLookup] = SingleFlight()

    def add(self, reference: str, value: str | SpecLookup) -> None:
        if isinstance(value, SpecLookup):
            self.specs[reference] = value
            return
        try:
            self.specs[reference] = SpecLookup.found(load_spec(value), f"fake:{reference}")
        except SpecError as err:
            self.specs[reference] = SpecLookup.invalid_spec(err, f"fake:{reference}")

    def _answer(self, key: SpecKey) -> SpecLookup:
        return self.specs.get(key.reference, SpecLookup.none())

    def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None:
        self.contexts.append(context)
        if self.cached:
            return self._answer(key)
        return self.loaded.get(key)

    async def load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        # Single-flight, as the ArtifactSource contract asks: load_calls counts computations.
        if not self._flights.running((key, context)):
            self.load_calls.append(key)
        return await self._flights.run((key, context), lambda: self._compute(key))

    async def _compute(self, key: SpecKey) -> SpecLookup:
        if self.gate is not None:
            await self.gate.wait()
        answer = self._answer(key)
        self.loaded[key] = answer
        return answer


def policy_config(**changes: Any) -> PolicyConfig:
    """``serve``'s default policy settings (from its option table), with ``changes``."""
    return replace(Settings().policy_config(), **changes)


def naming_config(**changes: Any) -> PolicyConfig:
    """:func:`policy_config` with ``--filter-reasons=always``: filter names every rejected node
    with its reason, even when others pass, so a test can read each node's reason (the
    default names them only when none passes: tests/policy/test_filter_reasons.py)."""
    return policy_config(filter_reasons=FilterReasons.ALWAYS, **changes)
