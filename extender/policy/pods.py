"""What a pod asks for: its images, our annotations, and the pod model they are read from.

Owns which pods we judge (our schedulerNames), the images of a pod (init containers
included, deduplicated), the ``tags``/``mode``/``artifacts``/``variants`` annotations and
their syntax
(:func:`plan_pod` turns a pod into a :class:`PodPlan`), the policy's settings
(:class:`PolicyConfig`), and :class:`Pod`, the parts of a Kubernetes Pod the policy reads
(decoded from the wire by :mod:`extender.server.protocol`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from extender.artifacts.types import PullContext, SpecKey
from extender.nfd.rules import SetSemantics

__all__ = [
    "DEFAULT_ANNOTATION_PREFIX",
    "DEFAULT_SCHEDULER_NAME",
    "Container",
    "LocalObjectReference",
    "Mode",
    "ObjectMeta",
    "Pod",
    "PodPlan",
    "PodSpec",
    "PolicyConfig",
    "RegistryErrorPolicy",
    "Requirement",
    "VariantSet",
    "check_annotation_prefix",
]

DEFAULT_SCHEDULER_NAME = "image-compat-scheduler"
DEFAULT_ANNOTATION_PREFIX = "image-compat.io/"


class Mode(StrEnum):
    """The ``mode`` annotation."""

    ENFORCE = "enforce"  # filter rejects incompatible nodes; prioritize scores
    PREFER = "prefer"  # nothing is filtered; only the score counts
    OFF = "off"  # the pod is not judged at all


class RegistryErrorPolicy(StrEnum):
    """``--on-registry-error``: what filter does when a spec cannot be obtained."""

    FAIL = "fail"  # answer Error: the scheduler retries; no pod lands unchecked
    IGNORE = "ignore"  # treat the image as having no spec


class FilterReasons(StrEnum):
    """``--filter-reasons``: which rejected nodes filter's answer names, with why."""

    # Only when no node passes. When one does, the scheduler places the pod among those that
    # pass and never reads the others' reasons; a node left out of the answer counts as
    # UnschedulableAndUnresolvable, as FailedAndUnresolvableNodes would say.
    WHEN_ALL_REJECTED = "when-all-rejected"
    ALWAYS = "always"  # every rejected node, every time (another extender runs after us)


# --------------------------------------------------------------------------------------------
# Configuration

# Kubernetes annotation keys: an optional DNS-subdomain prefix and "/", then a name of at most
# 63 characters.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_ANNOTATIONS = ("tags", "mode", "artifacts", "variants")
MAX_VARIANTS = 8  # per container: each is a spec to load and a verdict per node


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
    """The policy's settings. No defaults here: ``serve``'s option table declares them, and
    ``Settings.policy_config()`` derives this from it."""

    scheduler_names: frozenset[str]
    annotation_prefix: str
    allowed_modes: frozenset[Mode]
    default_mode: Mode
    set_semantics: SetSemantics
    on_registry_error: RegistryErrorPolicy
    spec_wait_budget: float  # seconds
    memo_size: int
    node_tables: int
    filter_reasons: FilterReasons

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
        if self.node_tables < 1:
            raise ValueError("the node table count must be at least 1")

    @property
    def tags_key(self) -> str:
        return self.annotation_prefix + "tags"

    @property
    def mode_key(self) -> str:
        return self.annotation_prefix + "mode"

    @property
    def artifacts_key(self) -> str:
        return self.annotation_prefix + "artifacts"

    @property
    def variants_key(self) -> str:
        return self.annotation_prefix + "variants"


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
class VariantSet:
    """A container's images in order of preference (the ``variants`` annotation): any one of
    them may run. ``indices`` are the positions of their requirements in the plan."""

    container: str
    images: tuple[str, ...]
    indices: tuple[int, ...]


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
    context: PullContext = field(default_factory=PullContext)
    problem: str = ""
    variants: tuple[VariantSet, ...] = ()
    # Requirements that must each pass on their own (containers without variants); None: all.
    plain: tuple[int, ...] | None = None

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """What a node must satisfy: per group, at least one requirement (by index) passes.
        A container without variants is a group of one; one with variants, its variants in
        order of preference."""
        plain = range(len(self.requirements)) if self.plain is None else self.plain
        return (*((i,) for i in plain), *(v.indices for v in self.variants))


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


def _parse_variants(
    raw: str | None, containers: Iterable[str], config: PolicyConfig
) -> tuple[dict[str, tuple[str, ...]], str]:
    if raw is None:
        return {}, ""
    key = config.variants_key
    try:
        value = json.loads(raw)
    except ValueError:
        return {}, f"invalid annotation {key}: not JSON"
    shape = f"invalid annotation {key}: expected a JSON object of container: [image, ...]"
    if not isinstance(value, dict):
        return {}, shape
    known = set(containers)
    parsed: dict[str, tuple[str, ...]] = {}
    for name, images in value.items():
        if not isinstance(images, list) or not all(
            isinstance(i, str) and i.strip() for i in images
        ):
            return {}, shape
        if name not in known:
            return {}, f"invalid annotation {key}: no container named {name!r}"
        if not images:
            return {}, f"invalid annotation {key}: no variants for container {name!r}"
        if len(images) > MAX_VARIANTS:
            return {}, (
                f"invalid annotation {key}: {len(images)} variants for container {name!r} "
                f"(at most {MAX_VARIANTS})"
            )
        parsed[name] = tuple(dict.fromkeys(i.strip() for i in images))
    return parsed, ""


def plan_pod(pod: Pod, config: PolicyConfig) -> PodPlan:
    """Read what the pod asks for: which pods, images and pod controls (docs/semantics.md)."""
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
    variants, variants_problem = _parse_variants(
        annotations.get(config.variants_key), (c.name for c in containers if c.name), config
    )
    both = sorted(set(variants) & set(artifacts))
    if both and not variants_problem:
        # An artifact names the spec of one image; which variant would it belong to?
        variants_problem = (
            f"invalid annotation {config.variants_key}: container {both[0]!r} is also in "
            f"{config.artifacts_key} (a variant's spec must be attached to it)"
        )
    problem = problem or artifacts_problem or variants_problem
    if spec.node_name:
        # A bound pod runs the images it has (bind set the chosen variants): drift and
        # explain judge those, not the alternatives.
        variants = {}
    by_key: dict[tuple[str, str], list[str]] = {}
    plain_keys: list[tuple[str, str]] = []
    for container in containers:
        name = container.name or ""
        if name in variants:
            # The container runs one of its variants (chosen at bind), not its image.
            for image in variants[name]:
                by_key.setdefault((image, ""), []).append(name)
            continue
        if not container.image:
            continue
        artifact = artifacts.get(name, "")
        by_key.setdefault((container.image, artifact), []).append(name)
        plain_keys.append((container.image, artifact))
    index = {k: i for i, k in enumerate(by_key)}
    requirements = tuple(
        Requirement(image, artifact, tuple(names)) for (image, artifact), names in by_key.items()
    )
    variant_sets = tuple(
        VariantSet(name, images, tuple(index[image, ""] for image in images))
        for name, images in variants.items()
        if not problem
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
        variants=variant_sets,
        plain=tuple(dict.fromkeys(index[k] for k in plain_keys)) if variant_sets else None,
    )


# --------------------------------------------------------------------------------------------
# Kubernetes objects: only the fields we read


class ObjectMeta(msgspec.Struct, frozen=True, rename="camel"):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    annotations: dict[str, str] | None = None
    labels: dict[str, str] | None = None


class Container(msgspec.Struct, frozen=True):
    name: str | None = None
    image: str | None = None


class LocalObjectReference(msgspec.Struct, frozen=True):
    name: str | None = None


class PodSpec(msgspec.Struct, frozen=True, rename="camel"):
    scheduler_name: str | None = None
    node_name: str | None = None
    init_containers: list[Container | None] | None = None
    containers: list[Container | None] | None = None
    image_pull_secrets: list[LocalObjectReference | None] | None = None


class Pod(msgspec.Struct, frozen=True):
    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None

    @property
    def meta(self) -> ObjectMeta:
        return self.metadata or _EMPTY_META

    @property
    def pod_spec(self) -> PodSpec:
        return self.spec or _EMPTY_SPEC

    @property
    def key(self) -> str:
        """``namespace/name`` for logs."""
        meta = self.meta
        return f"{meta.namespace or ''}/{meta.name or ''}"


_EMPTY_META = ObjectMeta()
_EMPTY_SPEC = PodSpec()
