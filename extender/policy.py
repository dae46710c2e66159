"""The scheduling policy (DESIGN §2): from a pod and candidate nodes to a filter answer and scores.

Owns which pods we judge (our schedulerNames), what a pod asks for (its images, init
containers included, and the ``tags``/``mode``/``artifacts`` annotations), how specs are
obtained (through an :class:`ArtifactSource`, waiting at most a small budget), how verdicts are
computed (through the two-level memo of DESIGN §4) and combined (filter reasons, normalised
scores), and what each failure becomes. It knows nothing of HTTP: the server turns
:class:`FilterDecision`, scores and :class:`PolicyUnavailableError` into responses.

The two things it depends on are small protocols defined here, so sources can be swapped
(a file or a Kubernetes watch for features; a spec map or a registry for artifacts):
:class:`FeatureStore` and :class:`ArtifactSource`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from extender.features import FeatureSnapshot, NodeFeatures, NodeRecord
from extender.protocol import Pod
from extender.rules import CompiledSpec, ImageVerdict, SetSemantics, evaluate
from extender.spec import SpecError

__all__ = [
    "DEFAULT_ANNOTATION_PREFIX",
    "DEFAULT_SCHEDULER_NAME",
    "MAX_SCORE",
    "POD_KINDS",
    "REASON_PREFIX",
    "REJECTION_CLASSES",
    "ArtifactSource",
    "BoundedDict",
    "Candidate",
    "FeatureStore",
    "FilterDecision",
    "Mode",
    "PodPlan",
    "Policy",
    "PolicyConfig",
    "PolicyStats",
    "PolicyUnavailableError",
    "PullContext",
    "RegistryErrorPolicy",
    "Requirement",
    "SpecKey",
    "SpecLookup",
    "VerdictMemo",
    "check_annotation_prefix",
    "normalise_score",
]

log = logging.getLogger(__name__)

REASON_PREFIX = "image-compat: "
DEFAULT_SCHEDULER_NAME = "image-compat-scheduler"
DEFAULT_ANNOTATION_PREFIX = "image-compat.io/"
MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority


class Mode(StrEnum):
    """The ``mode`` annotation."""

    ENFORCE = "enforce"  # filter rejects incompatible nodes; prioritize scores
    PREFER = "prefer"  # nothing is filtered; only the score counts
    OFF = "off"  # the pod is not judged at all


class RegistryErrorPolicy(StrEnum):
    """``--on-registry-error``: what filter does when a spec cannot be obtained."""

    FAIL = "fail"  # answer Error: the scheduler retries; no pod lands unchecked
    IGNORE = "ignore"  # treat the image as having no spec


class PolicyUnavailableError(Exception):
    """The policy cannot decide now (features not synced, spec not loaded, registry down).

    Filter answers it with ``Error`` (the scheduler backs off and retries); prioritize with
    a non-200 status (the scheduler then gives no extender score).
    """


# --------------------------------------------------------------------------------------------
# The two interfaces


@dataclass(frozen=True, slots=True)
class SpecKey:
    """What to look up: an image as written in the pod, or an explicit artifact for it.

    ``artifact`` is the pod's ``artifacts`` annotation entry for the container ("" = the
    image's attached artifact). ``platform`` is the node's ``os/arch`` ("" = unknown, use
    the index-level spec).
    """

    image: str
    artifact: str = ""
    platform: str = ""

    @property
    def reference(self) -> str:
        return self.artifact or self.image


@dataclass(frozen=True, slots=True)
class PullContext:
    """Whose pull credentials apply: the pod's namespace and ``imagePullSecrets`` names."""

    namespace: str = ""
    pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpecLookup:
    """A source's answer for one :class:`SpecKey`; exactly one outcome is set.

    ``spec``: the compiled spec. Nothing set: the image has no spec (neutral).
    ``invalid``: a spec exists but cannot be used. ``failure``: the source could not answer
    (registry down, unreadable file). ``origin`` says where a spec came from, for logs.
    """

    spec: CompiledSpec | None = None
    invalid: SpecError | None = None
    failure: str | None = None
    origin: str = ""

    @classmethod
    def found(cls, spec: CompiledSpec, origin: str = "") -> SpecLookup:
        return cls(spec=spec, origin=origin)

    @classmethod
    def none(cls) -> SpecLookup:
        return _NO_SPEC

    @classmethod
    def invalid_spec(cls, error: SpecError, origin: str = "") -> SpecLookup:
        return cls(invalid=error, origin=origin)

    @classmethod
    def failed(cls, message: str, origin: str = "") -> SpecLookup:
        return cls(failure=message, origin=origin)


_NO_SPEC = SpecLookup()


class FeatureStore(Protocol):
    """Node name → features, per-node generation, platform and readiness, as a snapshot.

    :class:`extender.features.FeatureStore` implements it; ``snapshot()`` must be cheap and
    must not block (it is called on every request).
    """

    def snapshot(self) -> FeatureSnapshot: ...


class ArtifactSource(Protocol):
    """Image reference [+ platform] → spec, "none", invalid, or a failure.

    ``get_cached`` must not block or await: it answers from memory, or None when the key is
    not known yet. ``load`` fetches (single-flight is the policy's job, caching the source's)
    and never raises for domain failures; afterwards ``get_cached`` answers the same until the
    source lets the entry expire. ``ready`` is false while the source cannot answer at all.
    """

    @property
    def ready(self) -> bool: ...

    def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None: ...

    async def load(self, key: SpecKey, context: PullContext) -> SpecLookup: ...


class Candidate(Protocol):
    """A candidate node of a request (:class:`extender.protocol.RequestNode` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def platform(self) -> str: ...  # "" when the request did not say


# --------------------------------------------------------------------------------------------
# Configuration

# Kubernetes annotation keys: an optional DNS-subdomain prefix and "/", then a name of at most
# 63 characters.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_ANNOTATIONS = ("tags", "mode", "artifacts")


def _check_annotation_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (
        len(prefix) > 253
        or not _DNS_SUBDOMAIN.fullmatch(prefix)
        or any(len(label) > 63 for label in prefix.split("."))
    ):
        raise ValueError(f"annotation key {key!r}: {prefix!r} is not a DNS subdomain")
    if len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        raise ValueError(f"annotation key {key!r}: {name!r} is not a valid name (max 63)")


def check_annotation_prefix(prefix: str) -> None:
    """Every annotation key built from ``prefix`` must be a valid Kubernetes annotation key."""
    for suffix in _ANNOTATIONS:
        _check_annotation_key(prefix + suffix)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    scheduler_names: frozenset[str] = frozenset({DEFAULT_SCHEDULER_NAME})
    annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX
    allowed_modes: frozenset[Mode] = frozenset(Mode)
    default_mode: Mode = Mode.ENFORCE
    set_semantics: SetSemantics = SetSemantics.ANY
    on_registry_error: RegistryErrorPolicy = RegistryErrorPolicy.FAIL
    spec_wait_budget: float = 0.3  # seconds
    memo_size: int = 65_536

    def __post_init__(self) -> None:
        check_annotation_prefix(self.annotation_prefix)
        if not self.scheduler_names:
            raise ValueError("at least one scheduler name is needed")
        if self.default_mode not in self.allowed_modes:
            allowed = ",".join(sorted(self.allowed_modes))
            raise ValueError(f"default mode {self.default_mode} is not allowed ({allowed})")
        if self.spec_wait_budget < 0:
            raise ValueError("the spec wait budget cannot be negative")
        if self.memo_size < 1:
            raise ValueError("the memo size must be at least 1")

    @property
    def tags_key(self) -> str:
        return self.annotation_prefix + "tags"

    @property
    def mode_key(self) -> str:
        return self.annotation_prefix + "mode"

    @property
    def artifacts_key(self) -> str:
        return self.annotation_prefix + "artifacts"


# --------------------------------------------------------------------------------------------
# What a pod asks for


@dataclass(frozen=True, slots=True)
class Requirement:
    """One distinct image of the pod (with its explicit artifact, if the pod names one)."""

    image: str
    artifact: str
    containers: tuple[str, ...]

    def key(self, platform: str) -> SpecKey:
        return SpecKey(self.image, self.artifact, platform)


@dataclass(frozen=True, slots=True)
class PodPlan:
    """A pod read once: whether we judge it, how, and which images.

    ``problem`` is set when an annotation cannot be honoured; every node is then rejected
    with it (a person must fix the pod, and the scheduler's message says what).
    """

    pod: str
    ours: bool
    mode: Mode = Mode.ENFORCE
    tags: frozenset[str] = frozenset()
    requirements: tuple[Requirement, ...] = ()
    context: PullContext = PullContext()
    problem: str = ""


def _parse_mode(raw: str | None, config: PolicyConfig) -> tuple[Mode, str]:
    if raw is None:
        return config.default_mode, ""
    value = raw.strip().lower()
    try:
        mode = Mode(value)
    except ValueError:
        modes = ", ".join(m.value for m in Mode)
        return config.default_mode, f"invalid annotation {config.mode_key}: {raw!r} (use {modes})"
    if mode not in config.allowed_modes:
        allowed = ", ".join(m.value for m in Mode if m in config.allowed_modes)
        return mode, f"annotation {config.mode_key}: mode {value} is not allowed ({allowed})"
    return mode, ""


def _parse_tags(raw: str | None) -> frozenset[str]:
    if raw is None:
        return frozenset()
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def _parse_artifacts(
    raw: str | None, containers: Iterable[str], config: PolicyConfig
) -> tuple[dict[str, str], str]:
    if raw is None:
        return {}, ""
    key = config.artifacts_key
    try:
        value = json.loads(raw)
    except ValueError:
        return {}, f"invalid annotation {key}: not JSON"
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()
    ):
        return {}, f"invalid annotation {key}: expected a JSON object of container: reference"
    known = set(containers)
    unknown = sorted(name for name in value if name not in known)
    if unknown:
        return {}, f"invalid annotation {key}: no container named {unknown[0]!r}"
    return {k: v.strip() for k, v in value.items()}, ""


def plan_pod(pod: Pod, config: PolicyConfig) -> PodPlan:
    """Read what the pod asks for (DESIGN §2 "Which pods", "Images", "Pod controls")."""
    spec = pod.pod_spec
    key = pod.key
    if spec.scheduler_name not in config.scheduler_names:
        return PodPlan(key, ours=False)
    annotations = pod.meta.annotations or {}
    mode, problem = _parse_mode(annotations.get(config.mode_key), config)
    if mode is Mode.OFF and not problem:
        return PodPlan(key, ours=True, mode=mode)
    containers = [
        c for c in (*(spec.init_containers or ()), *(spec.containers or ())) if c is not None
    ]
    artifacts, artifacts_problem = _parse_artifacts(
        annotations.get(config.artifacts_key), (c.name for c in containers if c.name), config
    )
    problem = problem or artifacts_problem
    by_key: dict[tuple[str, str], list[str]] = {}
    for container in containers:
        if not container.image:
            continue
        artifact = artifacts.get(container.name or "", "")
        by_key.setdefault((container.image, artifact), []).append(container.name or "")
    requirements = tuple(
        Requirement(image, artifact, tuple(names)) for (image, artifact), names in by_key.items()
    )
    secrets = tuple(s.name for s in spec.image_pull_secrets or () if s is not None and s.name)
    return PodPlan(
        key,
        ours=True,
        mode=mode,
        tags=_parse_tags(annotations.get(config.tags_key)),
        requirements=requirements,
        context=PullContext(pod.meta.namespace or "", secrets),
        problem=problem,
    )


# --------------------------------------------------------------------------------------------
# Verdicts through the memo

_NO_FEATURES = NodeFeatures.empty()
K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(OrderedDict[K, V], Generic[K, V]):
    """A dict that drops its oldest entry when full (FIFO).

    Not an LRU on purpose: a hit stays a bare ``get`` (an LRU reorders on every hit, which
    costs more than the rest of a node's work on the request path). With a bound well above
    the number of distinct node configurations, evictions are rare anyway.

    An OrderedDict, not a dict: ``del d[next(iter(d))]`` on a plain dict scans past the
    entries deleted before it, so under steady eviction each one cost ~10 µs at 65,536
    entries (a cold spec over 5,000 nodes took ~0.5 s); ``popitem(last=False)`` is O(1)
    and lookups cost the same.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: K, value: V) -> None:
        if key not in self and len(self) >= self.size:
            self.popitem(last=False)
        self[key] = value


class VerdictMemo:
    """DESIGN §4's two-level memo, with a direct first step for the warm path.

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


def normalise_score(raw: int, best: int) -> int:
    """round-half-up(10 * raw / best), in integers; 0 when ``best`` is 0."""
    if best <= 0:
        return 0
    return (2 * MAX_SCORE * raw + best) // (2 * best)


# --------------------------------------------------------------------------------------------
# The policy


@dataclass(frozen=True, slots=True)
class FilterDecision:
    """Which candidates pass (indices, in request order) and why the others do not."""

    passing: tuple[int, ...]
    unresolvable: Mapping[str, str]


# Label values of PolicyStats.pods (what filter saw) and PolicyStats.rejections (why a node
# was rejected): fixed sets, so metrics built from them have bounded cardinality.
POD_KINDS = ("enforce", "prefer", "off", "invalid", "not_ours")
REJECTION_CLASSES = (
    "incompatible",  # no set matched the node's features
    "no_features",  # the node has no NodeFeature
    "evaluation_error",  # a node-side value NFD cannot compare (e.g. a version string)
    "invalid_spec",  # the image's spec cannot be used: every node is rejected
    "invalid_annotation",  # the pod's annotations cannot be honoured: every node is rejected
)


def _zeros(keys: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(keys, 0)


@dataclass(slots=True)
class PolicyStats:
    """Counters for the metrics; plain integers, read at scrape time."""

    filter_requests: int = 0
    prioritize_requests: int = 0
    nodes_rejected: int = 0
    subset_problems: int = 0
    spec_waits: int = 0
    spec_wait_timeouts: int = 0
    source_failures: int = 0
    pods: dict[str, int] = field(default_factory=lambda: _zeros(POD_KINDS))  # per filter call
    rejections: dict[str, int] = field(default_factory=lambda: _zeros(REJECTION_CLASSES))


Slot = tuple[int, str]  # (requirement index, platform)


@dataclass(slots=True)
class _Resolved:
    """The specs of a pod's requirements per platform, after the failure rules."""

    specs: dict[Slot, CompiledSpec | None] = field(default_factory=dict)
    invalid: str = ""
    unavailable: str = ""

    @property
    def any_spec(self) -> bool:
        return any(spec is not None for spec in self.specs.values())

    def signature(self) -> tuple[tuple[int, str, str], ...]:
        return tuple(
            sorted((i, p, spec.digest if spec else "") for (i, p), spec in self.specs.items())
        )


class Policy:
    """DESIGN §2 as two async calls, :meth:`filter` and :meth:`prioritize`.

    When every spec a request needs is cached, neither call suspends: no awaits, no I/O,
    no locks. Otherwise loads start (single-flight per key) and the call waits at most
    ``spec_wait_budget``; loads that outlive a request keep running for the next one.
    """

    def __init__(self, config: PolicyConfig, store: FeatureStore, source: ArtifactSource) -> None:
        self.config = config
        self.store = store
        self.source = source
        self.memo = VerdictMemo(config.memo_size, config.set_semantics)
        self.stats = PolicyStats()
        self._loads: dict[tuple[SpecKey, PullContext], asyncio.Task[SpecLookup]] = {}
        self._subset_seen: BoundedDict[object, str] = BoundedDict(256)

    def plan(self, pod: Pod) -> PodPlan:
        return plan_pod(pod, self.config)

    # -- filter ------------------------------------------------------------------------------

    async def filter(self, pod: Pod, nodes: Sequence[Candidate]) -> FilterDecision:
        """Which nodes may run the pod. Raises :class:`PolicyUnavailableError`."""
        self.stats.filter_requests += 1
        plan = self.plan(pod)
        kind = "invalid" if plan.problem else plan.mode.value if plan.ours else "not_ours"
        self.stats.pods[kind] += 1
        everyone = FilterDecision(tuple(range(len(nodes))), {})
        if not plan.ours or (plan.mode is Mode.OFF and not plan.problem):
            return everyone
        if plan.problem:
            return self._reject_all(nodes, plan.problem, "invalid_annotation")
        if not plan.requirements or not nodes:
            return everyone
        snapshot = self.store.snapshot()
        platforms = _platforms(nodes, snapshot)
        if plan.mode is Mode.PREFER:
            self._prefetch(plan, set(platforms))  # so that prioritize finds them loaded
            return everyone
        resolved = await self._resolve(plan, set(platforms), strict=True)
        if resolved.invalid:
            return self._reject_all(nodes, resolved.invalid, "invalid_spec")
        if resolved.unavailable:
            raise PolicyUnavailableError(REASON_PREFIX + resolved.unavailable)
        if not resolved.any_spec:
            return everyone
        if not snapshot.synced:
            raise PolicyUnavailableError(_not_synced(snapshot))
        # Per platform, the (reason prefix, spec) of each image that has a spec, in pod order.
        # With several images a reason names the image that failed.
        name_images = len(plan.requirements) > 1
        checks = {
            platform: [
                (f"{REASON_PREFIX}{requirement.image}: " if name_images else REASON_PREFIX, spec)
                for index, requirement in enumerate(plan.requirements)
                if (spec := resolved.specs.get((index, platform))) is not None
            ]
            for platform in set(platforms)
        }
        verdict, tags, records = self.memo.verdict, plan.tags, snapshot.nodes
        passing: list[int] = []
        failed: dict[str, str] = {}
        # Rejections per verdict object (memoised verdicts are shared): classified once per
        # distinct verdict after the loop, since a verdict's error is not free to compute.
        rejected: dict[int, tuple[ImageVerdict, bool, int]] = {}
        for index, node in enumerate(nodes):
            record = records.get(node.name)
            for label, spec in checks[platforms[index]]:
                outcome = verdict(spec, tags, record)
                if not outcome.compatible:
                    failed[node.name] = label + outcome.reason
                    seen = rejected.get(id(outcome))
                    count = seen[2] + 1 if seen is not None else 1
                    rejected[id(outcome)] = (outcome, record is None, count)
                    break
            else:
                passing.append(index)
        self.stats.nodes_rejected += len(nodes) - len(passing)
        for outcome, no_record, count in rejected.values():
            self.stats.rejections[_rejection_class(outcome, no_record)] += count
        if not passing:
            self._check_subset(plan, resolved, snapshot, len(nodes))
        return FilterDecision(tuple(passing), failed)

    def _reject_all(self, nodes: Sequence[Candidate], reason: str, kind: str) -> FilterDecision:
        self.stats.nodes_rejected += len(nodes)
        self.stats.rejections[kind] += len(nodes)
        text = REASON_PREFIX + reason
        return FilterDecision((), {node.name: text for node in nodes})

    def _check_subset(
        self, plan: PodPlan, resolved: _Resolved, snapshot: FeatureSnapshot, offered: int
    ) -> None:
        """The subset problem: every offered node was rejected, yet the store holds a node
        that would pass (kube-scheduler showed us only part of the cluster, or in-tree
        filters removed the compatible nodes). Counted and logged; the answer stands."""
        key = (resolved.signature(), plan.tags, snapshot.version)
        example = self._subset_seen.get(key)
        if example is None:
            example = self._compatible_elsewhere(plan, resolved, snapshot) or ""
            self._subset_seen.put(key, example)
        if not example:
            return
        self.stats.subset_problems += 1
        log.warning(
            "subset problem: pod %s: all %d offered nodes rejected, but node %s (not offered) "
            "is compatible; if in-tree filters did not exclude it, set "
            "percentageOfNodesToScore: 100 in the scheduler profile",
            plan.pod,
            offered,
            example,
        )

    def _compatible_elsewhere(
        self, plan: PodPlan, resolved: _Resolved, snapshot: FeatureSnapshot
    ) -> str | None:
        for name, record in snapshot.nodes.items():
            platform = snapshot.platform(name)
            compatible = True
            for index, requirement in enumerate(plan.requirements):
                slot = (index, platform)
                if slot in resolved.specs:
                    spec = resolved.specs[slot]
                else:
                    # A platform this request did not need: use what is cached, never load.
                    found = self.source.get_cached(requirement.key(platform), plan.context)
                    if found is None or found.invalid or found.failure:
                        compatible = False
                        break
                    spec = found.spec
                if spec is not None and not self.memo.verdict(spec, plan.tags, record).compatible:
                    compatible = False
                    break
            if compatible:
                return name
        return None

    # -- prioritize --------------------------------------------------------------------------

    async def prioritize(self, pod: Pod, nodes: Sequence[Candidate]) -> list[tuple[str, int]]:
        """Integer scores 0..10 in request order. Raises :class:`PolicyUnavailableError`."""
        self.stats.prioritize_requests += 1
        zeros = [(node.name, 0) for node in nodes]
        plan = self.plan(pod)
        if not plan.ours or plan.mode is Mode.OFF or plan.problem or not plan.requirements:
            return zeros
        if not nodes:
            return zeros
        snapshot = self.store.snapshot()
        platforms = _platforms(nodes, snapshot)
        resolved = await self._resolve(plan, set(platforms), strict=False)
        if not resolved.any_spec:
            return zeros
        if not snapshot.synced:
            raise PolicyUnavailableError(_not_synced(snapshot))
        specs = {
            platform: [
                spec
                for index in range(len(plan.requirements))
                if (spec := resolved.specs.get((index, platform))) is not None
            ]
            for platform in set(platforms)
        }
        verdict, tags, records = self.memo.verdict, plan.tags, snapshot.nodes
        raws: list[int] = []
        for node, platform in zip(nodes, platforms, strict=True):
            record = records.get(node.name)
            raw = 0
            for spec in specs[platform]:
                raw += verdict(spec, tags, record).fit
            raws.append(raw)
        best = max(raws)
        return [
            (node.name, normalise_score(raw, best)) for node, raw in zip(nodes, raws, strict=True)
        ]

    # -- specs -------------------------------------------------------------------------------

    async def _resolve(self, plan: PodPlan, platforms: set[str], *, strict: bool) -> _Resolved:
        """Specs for every (requirement, platform), applying the failure rules of DESIGN §2.

        ``strict`` (filter): a spec not loaded within the budget raises, and a source failure
        is reported as ``unavailable`` unless ``--on-registry-error=ignore``. Otherwise
        (prioritize) both count as "no spec": the scheduler ignores prioritize errors anyway,
        so the other images still score.
        """
        ordered = sorted(platforms)
        lookups: dict[Slot, SpecLookup] = {}
        missing: dict[Slot, SpecKey] = {}
        for index, requirement in enumerate(plan.requirements):
            for platform in ordered:
                key = requirement.key(platform)
                cached = self.source.get_cached(key, plan.context)
                if cached is None:
                    missing[index, platform] = key
                else:
                    lookups[index, platform] = cached
        if missing:
            loaded = await self._wait_for(list(dict.fromkeys(missing.values())), plan.context)
            late = []
            for slot, key in missing.items():
                if key in loaded:
                    lookups[slot] = loaded[key]
                else:
                    late.append(key)
            if late and strict:
                budget_ms = round(self.config.spec_wait_budget * 1000)
                raise PolicyUnavailableError(
                    f"{REASON_PREFIX}spec for {late[0].reference} not loaded yet "
                    f"(waited {budget_ms} ms; the scheduler will retry)"
                )
        resolved = _Resolved()
        for index, requirement in enumerate(plan.requirements):
            for platform in ordered:
                found = lookups.get((index, platform), _NO_SPEC)
                slot = (index, platform)
                resolved.specs[slot] = None
                if found.invalid is not None:
                    if not resolved.invalid:
                        resolved.invalid = f"invalid spec for {requirement.image}: {found.invalid}"
                elif found.failure is not None:
                    self.stats.source_failures += 1
                    if self.config.on_registry_error is RegistryErrorPolicy.IGNORE:
                        log.warning(
                            "pod %s: no spec for %s (ignored: %s)",
                            plan.pod,
                            requirement.image,
                            found.failure,
                        )
                    elif not resolved.unavailable:
                        resolved.unavailable = (
                            f"cannot load spec for {requirement.image}: {found.failure}"
                        )
                else:
                    resolved.specs[slot] = found.spec
        if not strict:
            resolved.invalid = resolved.unavailable = ""
        return resolved

    async def _wait_for(
        self, keys: Sequence[SpecKey], context: PullContext
    ) -> dict[SpecKey, SpecLookup]:
        self.stats.spec_waits += 1
        tasks = {key: self._load_task(key, context) for key in keys}
        budget = self.config.spec_wait_budget
        if budget > 0:
            await asyncio.wait(tasks.values(), timeout=budget)
        done = {}
        for key, task in tasks.items():
            if task.done() and not task.cancelled():
                done[key] = task.result()
        if len(done) < len(tasks):
            self.stats.spec_wait_timeouts += 1
        return done

    def _load_task(self, key: SpecKey, context: PullContext) -> asyncio.Task[SpecLookup]:
        flight = (key, context)
        task = self._loads.get(flight)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key, context))
            self._loads[flight] = task
            task.add_done_callback(lambda _: self._loads.pop(flight, None))
        return task

    async def _load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        try:
            return await self.source.load(key, context)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("artifact source failed on %s", key.reference)
            return SpecLookup.failed(f"{type(err).__name__}: {err}")

    def _prefetch(self, plan: PodPlan, platforms: Iterable[str]) -> None:
        for requirement in plan.requirements:
            for platform in platforms:
                key = requirement.key(platform)
                if self.source.get_cached(key, plan.context) is None:
                    self._load_task(key, plan.context)

    def prefetch(self, pod: Pod, platforms: Iterable[str] = ("",)) -> None:
        """Start loading a pod's specs without waiting (an unbound pod seen early)."""
        plan = self.plan(pod)
        if plan.ours and plan.mode is not Mode.OFF and not plan.problem:
            self._prefetch(plan, platforms)

    async def aclose(self) -> None:
        """Cancel loads still in flight (at shutdown)."""
        tasks = list(self._loads.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _rejection_class(verdict: ImageVerdict, no_record: bool) -> str:
    if verdict.error is not None:
        return "evaluation_error"
    return "no_features" if no_record else "incompatible"


def _platforms(nodes: Sequence[Candidate], snapshot: FeatureSnapshot) -> list[str]:
    """Each node's platform: from the request (full-Nodes labels), else from the store."""
    known = snapshot.platforms
    if not known:
        return [node.platform for node in nodes]
    return [node.platform or known.get(node.name, "") for node in nodes]


def _not_synced(snapshot: FeatureSnapshot) -> str:
    waiting = ", ".join(snapshot.waiting) or "feature sources"
    return f"{REASON_PREFIX}node features not synced yet (waiting for {waiting})"
