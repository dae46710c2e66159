"""Filter, score and preemption candidates: the decisions, and what each failure becomes.

Owns :class:`Policy`: how specs are obtained (through an
:class:`~extender.artifacts.types.ArtifactSource`, waiting at most a small budget), how
verdicts are computed (through :class:`~extender.policy.memo.VerdictMemo`) and combined
(filter reasons, normalised and shifted scores, the best fit), kept per node and pod shape
(:class:`~extender.policy.memo.NodeTables`, so a warm call is one pass over the names), and
what each failure becomes. The server turns :class:`FilterDecision`, :class:`Priorities` and
:class:`PolicyUnavailableError` into responses.

It is over 500 lines because :class:`Policy` is one class: filter, prioritize, preempt, the
drift check and explain all go through the same plan, spec resolution and memo, and a split
would have each verb re-derive them.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import TypeVar, cast

import msgspec

from extender._util import BoundedDict
from extender.artifacts.types import NO_SPEC, ArtifactSource, PullContext, SpecKey, SpecLookup
from extender.nfd.rules import CompiledSpec, ImageVerdict
from extender.nodes.store import FeatureReader, FeatureSnapshot, NodeRecord
from extender.policy.memo import NodeTables, VerdictMemo
from extender.policy.pods import (
    FilterReasons,
    Mode,
    Pod,
    PodPlan,
    PolicyConfig,
    RegistryErrorPolicy,
    plan_pod,
)

__all__ = [
    "LOWER_FIT_REASON",
    "MAX_SCORE",
    "POD_KINDS",
    "REASON_PREFIX",
    "REJECTION_CLASSES",
    "FilterDecision",
    "Policy",
    "PolicyStats",
    "PolicyUnavailableError",
    "Priorities",
    "normalise_score",
    "short_image",
]

log = logging.getLogger(__name__)

REASON_PREFIX = "image-compat: "
IGNORED_LOG_S = 60.0  # an ignored spec failure is logged once per image and failure per this
MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority


class PolicyUnavailableError(Exception):
    """The policy cannot decide now (features not synced, spec not loaded, registry down).

    Filter answers it with ``Error`` (the scheduler backs off and retries); prioritize with
    a non-200 status (the scheduler then gives no extender score).
    """


V = TypeVar("V")


def normalise_score(raw: int, best: int) -> int:
    """round-half-up(10 * raw / best), in integers; 0 when ``best`` is 0."""
    if best <= 0:
        return 0
    return (2 * MAX_SCORE * raw + best) // (2 * best)


# --------------------------------------------------------------------------------------------
# The policy


@dataclass(frozen=True, slots=True)
class Priorities:
    """prioritize's answer: per name (request order), its score after the shift, so that the
    lowest is 0. ``scores`` is empty when every node scores 0."""

    names: Sequence[str]
    scores: Sequence[int]

    def listed(self) -> list[tuple[str, int]]:
        """The nodes the answer lists: those above 0, in request order."""
        if not self.scores:
            return []
        return [(n, score) for n, score in zip(self.names, self.scores, strict=True) if score]


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
    "lower_fit",  # compatible, but another node fits better (filter's best-fit mode)
)
LOWER_FIT_REASON = REASON_PREFIX + "another node fits the image better"


def _zeros(keys: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(keys, 0)


@dataclass(slots=True)
class PolicyStats:
    """Counters for the metrics; plain integers, read at scrape time."""

    filter_requests: int = 0
    prioritize_requests: int = 0
    preempt_requests: int = 0
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
    bad_annotation: str = ""  # an artifact the pod named cannot be used

    @property
    def any_spec(self) -> bool:
        return any(spec is not None for spec in self.specs.values())

    def signature(self) -> tuple[tuple[int, str, str], ...]:
        return tuple(
            sorted((i, p, spec.digest if spec else "") for (i, p), spec in self.specs.items())
        )


class Policy:
    """Filter, prioritize and preempt (docs/semantics.md) as async calls: :meth:`filter`,
    :meth:`prioritize`, and :meth:`preempt`, which is filter's answer on the scheduler's
    preemption candidates.

    When every spec a request needs is cached, neither call suspends: no awaits, no I/O,
    no locks. Otherwise loads start (single-flight per key) and the call waits at most
    ``spec_wait_budget``; loads that outlive a request keep running for the next one.
    """

    def __init__(self, config: PolicyConfig, store: FeatureReader, source: ArtifactSource) -> None:
        self.config = config
        self.store = store
        self.source = source
        self.memo = VerdictMemo(config.memo_size, config.set_semantics)
        self._filter_tables: NodeTables[str | None] = NodeTables(config.node_tables)
        self._fit_tables: NodeTables[int] = NodeTables(config.node_tables)
        # Filter tables hold reason strings (one object per distinct reason, so that the
        # answer is built by C-level passes); their rejection classes are kept here.
        self._reason_kinds: BoundedDict[str, str] = BoundedDict(8192)
        self._ignored_logged: BoundedDict[tuple[str, str], float] = BoundedDict(1024)
        self._ignored_repeats = 0
        self._plans: BoundedDict[tuple[str, str, str | None, str | None], PodPlan] = BoundedDict(
            4096
        )
        self.stats = PolicyStats()
        # Waits in progress, kept so that none is collected early and aclose can end them.
        # Single-flight is the source's (see ArtifactSource.load): these only wait.
        self._waits: set[asyncio.Task[SpecLookup]] = set()
        self._subset_seen: BoundedDict[object, str] = BoundedDict(256)

    def plan(self, pod: Pod) -> PodPlan:
        """The pod's plan; kept per pod version, as the scheduler asks filter and prioritize
        (and retries) about the same pod object."""
        meta, spec = pod.meta, pod.pod_spec
        if not meta.uid or not meta.resource_version:
            return plan_pod(pod, self.config)
        # What a caller may change on a pod it was given (drift judges as another scheduler).
        key = (meta.uid, meta.resource_version, spec.scheduler_name, spec.node_name)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_pod(pod, self.config)
            self._plans.put(key, plan)
        return plan

    # -- filter ------------------------------------------------------------------------------

    async def filter(
        self,
        pod: Pod,
        names: Sequence[str],
        platforms: Mapping[str, str] | None = None,
        *,
        best_fit: bool = False,
    ) -> FilterDecision:
        """Which nodes may run the pod. Raises :class:`PolicyUnavailableError`.

        ``names`` are the candidates in request order; ``platforms`` the ``os/arch`` a
        full-Nodes request gave some of them (the feature store's is used for the others).
        With ``best_fit`` (the single-call profile, docs/performance.md), only the nodes of
        the highest fit among those that pass are kept, as prioritize would rank them.
        """
        self.stats.filter_requests += 1
        return await self._filter(pod, names, platforms, self.stats, best_fit=best_fit)

    async def preempt(self, pod: Pod, nodes: Sequence[str]) -> tuple[str, ...]:
        """Which of the scheduler's preemption candidates may run the pod: exactly the nodes
        :meth:`filter` would pass, in request order. Raises :class:`PolicyUnavailableError`.

        Candidates are the nodes where evicting pods would make room, so the scheduler's
        in-tree filters had removed them before our filter could reject them. The filter's
        counters and the subset check are left out: these calls are not scheduling attempts,
        and a candidate list is a subset of the cluster by design.
        """
        self.stats.preempt_requests += 1
        decision = await self._filter(pod, nodes, None, PolicyStats(), subset_check=False)
        return tuple(nodes[i] for i in decision.passing)

    async def _filter(
        self,
        pod: Pod,
        names: Sequence[str],
        given: Mapping[str, str] | None,
        stats: PolicyStats,
        *,
        subset_check: bool = True,
        best_fit: bool = False,
    ) -> FilterDecision:
        plan = self.plan(pod)
        kind = "invalid" if plan.problem else plan.mode.value if plan.ours else "not_ours"
        stats.pods[kind] += 1
        if not plan.ours or (plan.mode is Mode.OFF and not plan.problem):
            return _everyone(names)
        if plan.problem:
            return _reject_all(stats, names, plan.problem, "invalid_annotation")
        if not plan.requirements or not names:
            return _everyone(names)
        snapshot = self.store.snapshot()
        overrides = _overrides(given, snapshot)
        platforms = _platform_set(names, snapshot, overrides)
        prefer = plan.mode is Mode.PREFER
        if prefer and not best_fit:
            self._prefetch(plan, platforms)  # so that prioritize finds them loaded
            return _everyone(names)
        resolved = await self._resolve(plan, platforms, strict=not prefer)
        if resolved.bad_annotation:
            return _reject_all(stats, names, resolved.bad_annotation, "invalid_annotation")
        if resolved.invalid:
            return _reject_all(stats, names, resolved.invalid, "invalid_spec")
        if resolved.unavailable:
            raise PolicyUnavailableError(REASON_PREFIX + resolved.unavailable)
        if not resolved.any_spec:
            return _everyone(names)
        if not snapshot.synced:
            raise PolicyUnavailableError(_not_synced(snapshot))
        if prefer:
            outcomes: list[str | None] = [None] * len(names)
        else:
            outcomes = await self._rejections(
                plan, resolved, platforms, names, snapshot=snapshot, overrides=overrides
            )
        if best_fit:
            outcomes = await self._keep_best_fit(
                plan, resolved, names, outcomes, snapshot=snapshot, overrides=overrides
            )
        # C-level passes: a reason is a non-empty string, None passes.
        passing = tuple(compress(range(len(names)), map(operator.not_, outcomes)))
        if len(passing) == len(names):
            return _everyone(names)
        kinds = self._reason_kinds
        for reason, count in Counter(filter(None, outcomes)).items():
            stats.rejections[kinds.get(reason, "incompatible")] += count
        stats.nodes_rejected += len(names) - len(passing)
        if passing and self.config.filter_reasons is FilterReasons.WHEN_ALL_REJECTED:
            return FilterDecision(passing, {})  # nobody reads them (see FilterReasons)
        failed = cast("dict[str, str]", dict(compress(zip(names, outcomes, strict=True), outcomes)))
        if not passing and subset_check:
            await self._check_subset(plan, resolved, snapshot, len(names))
        return FilterDecision(passing, failed)

    async def _rejections(
        self,
        plan: PodPlan,
        resolved: _Resolved,
        platforms: set[str],
        names: Sequence[str],
        *,
        snapshot: FeatureSnapshot,
        overrides: Mapping[str, str],
    ) -> list[str | None]:
        """Per name, why filter rejects the node (None: it passes)."""
        checks = {platform: _checks(plan, resolved, platform) for platform in platforms}
        shape = (
            plan.tags,
            tuple(
                (platform, tuple((label, tuple(s.digest for s in alts)) for label, alts in group))
                for platform, group in sorted(checks.items())
            ),
        )
        verdict, tags = self.memo.verdict, plan.tags

        def rejection(platform: str, record: NodeRecord | None) -> str | None:
            for label, alternatives in checks[platform]:
                first: ImageVerdict | None = None
                for spec in alternatives:
                    outcome = verdict(spec, tags, record)
                    if outcome.compatible:
                        break
                    first = first or outcome
                else:
                    assert first is not None  # a group has at least one alternative
                    return self._rejection(
                        label + first.reason, _rejection_class(first, record is None)
                    )
            return None

        return await self._per_node(
            self._filter_tables,
            shape,
            names,
            snapshot=snapshot,
            overrides=overrides,
            compute=rejection,
        )

    async def _keep_best_fit(
        self,
        plan: PodPlan,
        resolved: _Resolved,
        names: Sequence[str],
        outcomes: list[str | None],
        *,
        snapshot: FeatureSnapshot,
        overrides: Mapping[str, str],
    ) -> list[str | None]:
        """``outcomes`` with the passing nodes below the best fit among them rejected."""
        fits = await self._fits(plan, resolved, names, snapshot=snapshot, overrides=overrides)
        best = max((f for f, o in zip(fits, outcomes, strict=True) if o is None), default=0)
        if best == 0:
            return outcomes  # nothing fits better than "no spec": every passing node stays
        lower = self._rejection(LOWER_FIT_REASON, "lower_fit")
        return [
            lower if outcome is None and fit < best else outcome
            for fit, outcome in zip(fits, outcomes, strict=True)
        ]

    def _rejection(self, reason: str, kind: str) -> str:
        """``reason`` as the one string object filter tables share for it, its class noted."""
        reason = sys.intern(reason)
        if self._reason_kinds.get(reason) != kind:
            self._reason_kinds.put(reason, kind)
        return reason

    async def _per_node(
        self,
        tables: NodeTables[V],
        shape: Hashable,
        names: Sequence[str],
        *,
        snapshot: FeatureSnapshot,
        overrides: Mapping[str, str],
        compute: Callable[[str, NodeRecord | None], V],
    ) -> list[V]:
        """``compute(platform, record)`` for each name, through the table of ``shape``.

        Warm, one C-level pass over the names. Otherwise the missing nodes are computed
        first, giving the event loop back between cold evaluations (:class:`_Slicer`), and
        stored once no await separates the table from the snapshot they were computed on.
        Names whose platform the request gave differently are computed and never stored.
        """
        table = tables.table(shape, snapshot)
        if not overrides:
            try:
                return list(map(table.__getitem__, names))
            except KeyError:
                pass
        memo, slicer = self.memo, _Slicer()
        records, known = snapshot.nodes, snapshot.platforms
        fresh: dict[str, V] = {}
        for name in names:
            if name in table and name not in overrides:
                continue
            if memo.misses != slicer.misses:  # evaluations ran: time to let others in?
                await slicer.maybe_yield(memo.misses)
            platform = overrides.get(name) or known.get(name, "")
            fresh[name] = compute(platform, records.get(name))
        table = tables.table(shape, snapshot)  # the awaits above may have moved it on
        for name, value in fresh.items():
            if name not in overrides:
                table[name] = value
        answers: list[V] = []
        for name in names:
            if name in fresh:
                answers.append(fresh[name])
            elif name in table:
                answers.append(table[name])
            else:  # dropped by a catch-up during the awaits
                value = compute(known.get(name, ""), records.get(name))
                table[name] = value
                answers.append(value)
        return answers

    async def _check_subset(
        self, plan: PodPlan, resolved: _Resolved, snapshot: FeatureSnapshot, offered: int
    ) -> None:
        """The subset problem: every offered node was rejected, yet the store holds a node
        that would pass (kube-scheduler showed us only part of the cluster, or in-tree
        filters removed the compatible nodes). Counted and logged; the answer stands."""
        key = (resolved.signature(), plan.tags, snapshot.version)
        example = self._subset_seen.get(key)
        if example is None:
            example = await self._compatible_elsewhere(plan, resolved, snapshot) or ""
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

    async def _compatible_elsewhere(
        self, plan: PodPlan, resolved: _Resolved, snapshot: FeatureSnapshot
    ) -> str | None:
        memo, slicer = self.memo, _Slicer()
        for name, record in snapshot.nodes.items():
            if memo.misses != slicer.misses:
                await slicer.maybe_yield(memo.misses)
            platform = snapshot.platform(name)
            compatible = True
            for group in plan.groups:
                group_ok = False
                for index in group:
                    slot = (index, platform)
                    if slot in resolved.specs:
                        spec = resolved.specs[slot]
                    else:
                        # A platform this request did not need: use what is cached, never load.
                        key = plan.requirements[index].key(platform)
                        found = self.source.get_cached(key, plan.context)
                        if found is None or found.invalid or found.failure or found.unusable:
                            continue
                        spec = found.spec
                    if spec is None or self.memo.verdict(spec, plan.tags, record).compatible:
                        group_ok = True
                        break
                if not group_ok:
                    compatible = False
                    break
            if compatible:
                return name
        return None

    # -- drift -------------------------------------------------------------------------------

    async def drift_on(self, pod: Pod, node: str, *, any_scheduler: bool = False) -> str | None:
        """Why ``node``, where the pod already runs, would no longer pass filter for its images;
        None when it would, or when there is nothing the node could be blamed for.

        The same specs, memo and verdicts as :meth:`filter`. Only enforce pods drift: prefer
        pods were never promised a compatible node. An invalid spec or annotation is None
        too: the pod's to fix, and not a change of the node. ``any_scheduler`` judges pods
        of other schedulers as if they were ours. Raises :class:`PolicyUnavailableError` when
        it cannot decide now (features not synced, spec not loaded within the budget).
        """
        names = self.config.scheduler_names
        if any_scheduler and pod.pod_spec.scheduler_name not in names:
            as_ours = msgspec.structs.replace(pod.pod_spec, scheduler_name=min(names))
            pod = msgspec.structs.replace(pod, spec=as_ours)
        plan = self.plan(pod)
        if not plan.ours or plan.mode is not Mode.ENFORCE or plan.problem:
            return None
        if not plan.requirements:
            return None
        snapshot = self.store.snapshot()
        if not snapshot.synced:
            raise PolicyUnavailableError(_not_synced(snapshot))
        platform = snapshot.platform(node)
        resolved = await self._resolve(plan, {platform}, strict=True)
        if resolved.bad_annotation or resolved.invalid:
            return None
        if resolved.unavailable:
            raise PolicyUnavailableError(REASON_PREFIX + resolved.unavailable)
        record = snapshot.nodes.get(node)
        for label, alternatives in _checks(plan, resolved, platform, drift=True):
            outcomes = [self.memo.verdict(spec, plan.tags, record) for spec in alternatives]
            if not any(outcome.compatible for outcome in outcomes):
                rule = _failing_rule(outcomes[0])
                named = f"rule {rule!r}: " if rule else ""
                return f"{label}{named}{outcomes[0].reason}"
        return None

    # -- prioritize --------------------------------------------------------------------------

    async def prioritize(
        self, pod: Pod, names: Sequence[str], platforms: Mapping[str, str] | None = None
    ) -> Priorities:
        """Scores in request order, shifted so that the lowest among ``names`` is 0 (the
        answer lists only the nodes above it). Raises :class:`PolicyUnavailableError`.

        The scheduler adds score times weight for each node listed and nothing for the
        others, so subtracting one constant from every node's score changes no ranking, and
        the nodes at the lowest score need not be sent (docs/semantics.md). Before the shift a
        score is round-half-up(10 * fit / best fit among ``names``).
        """
        self.stats.prioritize_requests += 1
        nothing = Priorities(names, ())
        plan = self.plan(pod)
        if not plan.ours or plan.mode is Mode.OFF or plan.problem or not plan.requirements:
            return nothing
        if not names:
            return nothing
        snapshot = self.store.snapshot()
        overrides = _overrides(platforms, snapshot)
        resolved = await self._resolve(
            plan, _platform_set(names, snapshot, overrides), strict=False
        )
        if not resolved.any_spec:
            return nothing
        if not snapshot.synced:
            raise PolicyUnavailableError(_not_synced(snapshot))
        fits = await self._fits(plan, resolved, names, snapshot=snapshot, overrides=overrides)
        present = set(fits)
        best, low = max(present), min(present)
        if best == low:
            return nothing
        shift = normalise_score(low, best)
        by_fit = {fit: normalise_score(fit, best) - shift for fit in present}
        return Priorities(names, list(map(by_fit.__getitem__, fits)))

    async def _fits(
        self,
        plan: PodPlan,
        resolved: _Resolved,
        names: Sequence[str],
        *,
        snapshot: FeatureSnapshot,
        overrides: Mapping[str, str],
    ) -> list[int]:
        """Per name, prioritize's raw fit: per group, its best alternative's fit, summed."""
        groups, specs = plan.groups, resolved.specs
        shape = (
            plan.tags,
            groups,
            tuple(sorted((slot, spec.digest if spec else "") for slot, spec in specs.items())),
        )
        verdict, tags = self.memo.verdict, plan.tags

        def fit(platform: str, record: NodeRecord | None) -> int:
            raw = 0
            for group in groups:
                # A container with variants scores with its best variant on this node.
                best_fit = 0
                for index in group:
                    spec = specs.get((index, platform))
                    if spec is not None:
                        best_fit = max(best_fit, verdict(spec, tags, record).fit)
                raw += best_fit
            return raw

        return await self._per_node(
            self._fit_tables, shape, names, snapshot=snapshot, overrides=overrides, compute=fit
        )

    # -- bind --------------------------------------------------------------------------------

    async def choose_variants(self, pod: Pod, node: str) -> dict[str, str]:
        """For each container with variants, the image to run on ``node``: a compatible
        variant before an incompatible one, then the highest fit (as prioritize scores it),
        ties broken by the annotation's order. Empty when the pod has no variants, is not
        ours, or is ``mode: off`` (its variants are not read: it runs its own images).

        A variant whose spec is not loaded within the budget or cannot be loaded counts as
        without spec (compatible, fit 0): filter already passed the node with the specs it
        had, and bind must not fail for a spec that only ranks. Raises ValueError when the
        pod's annotations cannot be honoured (filter rejected every node then).
        """
        plan = self.plan(pod)
        if plan.problem:
            raise ValueError(plan.problem)
        if not plan.ours or not plan.variants:
            return {}
        snapshot = self.store.snapshot()
        platform = snapshot.platform(node)
        resolved = await self._resolve(plan, {platform}, strict=False)
        record = snapshot.nodes.get(node)
        chosen: dict[str, str] = {}
        for variants in plan.variants:
            ranked: list[tuple[bool, int, int]] = []
            for order, index in enumerate(variants.indices):
                spec = resolved.specs.get((index, platform))
                if spec is None:
                    ranked.append((True, 0, -order))
                    continue
                outcome = self.memo.verdict(spec, plan.tags, record)
                ranked.append((outcome.compatible, outcome.fit, -order))
            best = max(ranked)
            chosen[variants.container] = variants.images[-best[2]]
        return chosen

    # -- explain -----------------------------------------------------------------------------

    async def specs_for(
        self, plan: PodPlan, platforms: set[str]
    ) -> tuple[dict[Slot, CompiledSpec | None], str]:
        """The specs filter would use for ``plan`` (same loads, wait budget and failure rules)
        per (requirement index, platform), and the reason filter would reject every node
        with ("" when there is none). Raises :class:`PolicyUnavailableError` where filter
        could not decide. For ``explain``, which must show the decision filter makes."""
        resolved = await self._resolve(plan, platforms, strict=True)
        problem = resolved.bad_annotation or resolved.invalid
        if not problem and resolved.unavailable:
            raise PolicyUnavailableError(REASON_PREFIX + resolved.unavailable)
        return resolved.specs, problem

    # -- specs -------------------------------------------------------------------------------

    async def _resolve(self, plan: PodPlan, platforms: set[str], *, strict: bool) -> _Resolved:
        """Specs for every (requirement, platform), applying the failure rules of docs/semantics.md.

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
                found = lookups.get((index, platform), NO_SPEC)
                slot = (index, platform)
                resolved.specs[slot] = None
                failure = found.failure
                if found.unusable is not None:
                    if requirement.artifact:
                        # The pod chose this reference: a reference we cannot use is the
                        # pod's to fix, never "no spec", or naming one would be a way
                        # around enforce.
                        if not resolved.bad_annotation:
                            resolved.bad_annotation = (
                                f"annotation {self.config.artifacts_key}: cannot use "
                                f"{requirement.artifact}: {found.unusable}"
                            )
                        continue
                    failure = found.unusable
                if found.invalid is not None:
                    if not resolved.invalid:
                        resolved.invalid = f"invalid spec for {requirement.image}: {found.invalid}"
                elif failure is not None:
                    self.stats.source_failures += 1
                    if self.config.on_registry_error is RegistryErrorPolicy.IGNORE:
                        self._warn_ignored(plan.pod, requirement.image, failure)
                    elif not resolved.unavailable:
                        resolved.unavailable = (
                            f"cannot load spec for {requirement.image}: {failure}"
                        )
                else:
                    resolved.specs[slot] = found.spec
        if not strict:
            resolved.invalid = resolved.unavailable = resolved.bad_annotation = ""
        return resolved

    def _warn_ignored(self, pod: str, image: str, failure: str) -> None:
        """Log an ignored spec failure once per image and failure every IGNORED_LOG_S: during
        an outage every filter call of every pod of the image meets it."""
        now = time.monotonic()
        key = (image, failure)
        last = self._ignored_logged.get(key)
        if last is not None and now - last < IGNORED_LOG_S:
            self._ignored_repeats += 1
            return
        repeats, self._ignored_repeats = self._ignored_repeats, 0
        self._ignored_logged.put(key, now)
        more = f"; {repeats} more such calls since the last line" if repeats else ""
        log.warning("pod %s: no spec for %s (ignored: %s%s)", pod, image, failure, more)

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
        task = asyncio.get_running_loop().create_task(self._load(key, context))
        self._waits.add(task)
        task.add_done_callback(self._waits.discard)
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
        tasks = list(self._waits)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _Slicer:
    """Gives the event loop back between cold evaluations, at most every ``SLICE_S``.

    A warm call finds every verdict in the memo and never yields. A cold one (a new spec, new
    hardware) evaluates per node configuration; one heavy spec over many configurations would
    otherwise hold the loop for as long as it takes, and every other pod's filter would wait
    past the scheduler's timeout. The caller compares the memo's miss count first, so the
    warm path pays one integer comparison per node.
    """

    SLICE_S = 0.005

    __slots__ = ("_until", "misses")

    def __init__(self) -> None:
        self.misses = -1  # the first comparison starts the slice
        self._until = 0.0

    async def maybe_yield(self, misses: int) -> None:
        now = time.perf_counter()
        if self.misses == -1:
            self._until = now + self.SLICE_S
        elif now >= self._until:
            await asyncio.sleep(0)
            self._until = time.perf_counter() + self.SLICE_S
        self.misses = misses


def _checks(
    plan: PodPlan, resolved: _Resolved, platform: str, *, drift: bool = False
) -> list[tuple[str, list[CompiledSpec]]]:
    """What a node of ``platform`` must pass, in pod order: per group (a container's image,
    or its variants), the reason prefix and the specs of its alternatives. A group with an
    alternative without spec is left out: that alternative passes on every node."""
    name_images = len(plan.requirements) > 1 or drift
    prefix = "" if drift else REASON_PREFIX
    # Short names keep the scheduler's answers small; a drift event is read by people, once,
    # and names the full reference (docs/drift.md).
    named = str if drift else short_image
    plain = range(len(plan.requirements)) if plan.plain is None else plan.plain
    groups: list[tuple[tuple[int, ...], str]] = [
        ((i,), f"{named(plan.requirements[i].image)}: " if name_images else "") for i in plain
    ]
    for variants in plan.variants:
        first = named(variants.images[0])
        label = f"container {variants.container}: no compatible variant: {first}: "
        groups.append((variants.indices, label))
    checks: list[tuple[str, list[CompiledSpec]]] = []
    for group, label in groups:
        specs = [resolved.specs.get((index, platform)) for index in group]
        if any(spec is None for spec in specs):
            continue
        checks.append((prefix + label, [spec for spec in specs if spec is not None]))
    return checks


def short_image(image: str) -> str:
    """How reasons name an image: its last path component, tag kept, a digest cut to 12 hex
    digits (``registry.example/team/tool:1`` → ``tool:1``), so that reasons stay short for the
    scheduler to decode and read the same whichever registry or mirror serves the image."""
    name, at, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if not at:
        return last
    algorithm, _, value = digest.partition(":")
    return f"{last}@{algorithm}:{value[:12]}"


def _everyone(names: Sequence[str]) -> FilterDecision:
    return FilterDecision(tuple(range(len(names))), {})


def _reject_all(stats: PolicyStats, names: Sequence[str], reason: str, kind: str) -> FilterDecision:
    stats.nodes_rejected += len(names)
    stats.rejections[kind] += len(names)
    return FilterDecision((), dict.fromkeys(names, REASON_PREFIX + reason))


def _rejection_class(verdict: ImageVerdict, no_record: bool) -> str:
    if verdict.error is not None:
        return "evaluation_error"
    return "no_features" if no_record else "incompatible"


def _overrides(given: Mapping[str, str] | None, snapshot: FeatureSnapshot) -> dict[str, str]:
    """The nodes whose platform the request gave (full-Nodes labels) unlike the store."""
    if not given:
        return {}
    known = snapshot.platforms
    return {name: p for name, p in given.items() if p and p != known.get(name, "")}


def _platform_set(
    names: Sequence[str], snapshot: FeatureSnapshot, overrides: Mapping[str, str]
) -> set[str]:
    """The platforms of ``names``: the request's where it differs, else the store's ("" when
    neither knows)."""
    known = snapshot.platforms
    if overrides:
        return {overrides.get(name) or known.get(name, "") for name in names}
    if not known:
        return {""}
    found = set(map(known.get, names))  # one C-level pass; None for nodes it does not know
    platforms = {p for p in found if p is not None}
    if None in found:
        platforms.add("")
    return platforms


def _failing_rule(verdict: ImageVerdict) -> str:
    """The name of the rule the verdict's reason comes from ("" when none does, e.g. a node
    without features or no set with the pod's tags)."""
    for outcome in verdict.sets:
        for rule in outcome.rules:
            if not rule.matched and rule.first_failure() == verdict.reason:
                return rule.name
    return ""


def _not_synced(snapshot: FeatureSnapshot) -> str:
    waiting = ", ".join(snapshot.waiting) or "feature sources"
    return f"{REASON_PREFIX}node features not synced yet (waiting for {waiting})"
