"""Verdicts: sets as alternatives, fit, --set-semantics, filter reasons, normalised scores,
no spec, no features, node-side evaluation errors, determinism."""

from __future__ import annotations

import random

import pytest

from extender.nfd.rules import SetSemantics
from extender.policy.decide import Policy, normalise_score
from extender.policy.pods import PolicyConfig
from tests.policy.helpers import (
    NUMA,
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    features,
    minimal,
    naming_config,
    nodes,
    old,
    pod,
    policy_config,
    scores,
    store_with,
)

APP = "registry.example/app:1"
CLUSTER = {"fast": fast("fast"), "minimal": minimal("minimal"), "old": old("old")}


def policy(
    spec: str = PREFERRED_FALLBACK,
    cluster: dict | None = None,  # type: ignore[type-arg]
    config: PolicyConfig | None = None,
) -> Policy:
    return Policy(
        config or naming_config(), store_with(cluster or CLUSTER), FakeSource({APP: spec})
    )


async def test_sets_are_alternatives_and_fit_is_one_plus_best_weight() -> None:
    p = policy()
    decision = await p.filter(pod(APP), nodes("fast", "minimal", "old"))
    assert decision.passing == (0, 1)  # one matching set is enough
    # fit 11, 2 and 0: 10*2/11 = 1.8 -> 2; old is at the lowest (0) already, so no shift
    priorities = await p.prioritize(pod(APP), nodes("fast", "minimal", "old"))
    assert scores(priorities) == [10, 2, 0]
    assert priorities.listed() == [("fast", 10), ("minimal", 2)]


async def test_set_semantics_all_requires_every_set() -> None:
    p = policy(config=naming_config(set_semantics=SetSemantics.ALL))
    decision = await p.filter(pod(APP), nodes("fast", "minimal", "old"))
    assert decision.passing == (0,)
    # With all: the first failing set names the reason.
    assert decision.unresolvable["minimal"] == (
        "image-compat: kernel.loadedmodule: feature missing"
    )
    assert scores(await p.prioritize(pod(APP), nodes("fast", "minimal"))) == [10, 0]


async def test_reason_is_the_first_failing_expression_of_the_closest_set() -> None:
    # The closest set is the one with the fewest failing rules (earlier sets win ties).
    spec = """
version: v1alpha1
compatibilities:
- rules:
  - name: first-of-two
    matchFeatures:
    - feature: kernel.loadedmodule
      matchExpressions: {vfio_pci: {op: Exists}}
  - name: second-of-two
    matchFeatures:
    - feature: cpu.cpuid
      matchExpressions: {SGX: {op: Exists}}
- rules:
  - name: one-rule
    matchFeatures:
    - feature: cpu.cpuid
      matchExpressions: {AVX512F: {op: Exists}, AMXBF16: {op: Exists}}
"""
    cluster = {"n": features(flags={"cpu.cpuid": ["AVX512F"], "kernel.loadedmodule": []})}
    decision = await policy(spec, cluster).filter(pod(APP), nodes("n"))
    assert decision.unresolvable == {"n": "image-compat: cpu.cpuid: AMXBF16 Exists"}


async def test_image_without_spec_is_neutral() -> None:
    p = Policy(policy_config(), store_with(CLUSTER), FakeSource({}))
    assert (await p.filter(pod("other:1"), nodes("fast", "old", "unknown"))).passing == (0, 1, 2)
    assert (await p.prioritize(pod("other:1"), nodes("fast", "old"))).listed() == []


async def test_spec_without_sets_requires_nothing() -> None:
    p = policy("version: v1alpha1\ncompatibilities: []\n")
    assert (await p.filter(pod(APP), nodes("fast", "unknown"))).passing == (0, 1)
    assert (await p.prioritize(pod(APP), nodes("fast", "unknown"))).listed() == []


async def test_node_without_nodefeature_reads_no_nfd_features() -> None:
    p = policy(cluster={"empty": features(), "fast": fast("fast")})
    decision = await p.filter(pod(APP), nodes("fast", "unknown", "empty"))
    assert decision.passing == (0,)
    assert decision.unresolvable == {
        "unknown": "image-compat: no NFD features",
        # A NodeFeature without the feature names the missing feature instead.
        "empty": "image-compat: kernel.loadedmodule: feature missing",
    }
    assert scores(await p.prioritize(pod(APP), nodes("fast", "unknown"))) == [10, 0]


async def test_node_side_evaluation_error_fails_that_set_with_the_error_as_reason() -> None:
    cluster = {
        "bad": features(attributes={"memory.numa": {"node_count": "two"}}),
        "good": features(attributes={"memory.numa": {"node_count": "2"}}),
    }
    p = policy(NUMA, cluster)
    decision = await p.filter(pod(APP), nodes("bad", "good"))
    assert decision.passing == (1,)
    assert decision.unresolvable == {
        "bad": "image-compat: memory.numa: node_count Gt [1]: not a number 'two'"
    }


async def test_node_side_error_in_one_set_leaves_the_alternative() -> None:
    spec = (
        NUMA
        + """\
- weight: 0
  rules:
  - name: anything
    matchFeatures:
    - feature: memory.numa
      matchExpressions: {node_count: {op: Exists}}
"""
    )
    cluster = {"bad": features(attributes={"memory.numa": {"node_count": "two"}})}
    p = policy(spec, cluster)
    assert (await p.filter(pod(APP), nodes("bad"))).passing == (0,)


@pytest.mark.parametrize(
    ("raw", "best", "score"),
    [
        (0, 0, 0),
        (5, 0, 0),
        (0, 7, 0),
        (7, 7, 10),
        (1, 4, 3),  # 2.5 rounds half up (Python's round() would give 2)
        (3, 4, 8),  # 7.5 -> 8
        (1, 20, 1),  # 0.5 -> 1
        (1, 21, 0),  # 0.476 -> 0
        (2, 11, 2),  # 1.82 -> 2
        (1, 3, 3),  # 3.33 -> 3
        (2, 3, 7),  # 6.67 -> 7
    ],
)
def test_normalise_score(raw: int, best: int, score: int) -> None:
    assert normalise_score(raw, best) == score


def test_normalised_scores_are_integers_0_to_10() -> None:
    for best in range(1, 400):
        scores = [normalise_score(raw, best) for raw in range(best + 1)]
        assert scores[0] == 0 and scores[-1] == 10
        assert scores == sorted(scores)
        assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores)


async def test_round_half_up_end_to_end() -> None:
    spec = """
version: v1alpha1
compatibilities:
- weight: 3
  rules:
  - name: x
    matchFeatures: [{feature: cpu.cpuid, matchExpressions: {AVX512F: {op: Exists}}}]
- weight: 0
  rules:
  - name: y
    matchFeatures: [{feature: kernel.version, matchExpressions: {major: {op: Exists}}}]
"""
    cluster = {
        "four": features(flags={"cpu.cpuid": ["AVX512F"]}),
        "one": features(attributes={"kernel.version": {"major": "5"}}),
        "none": features(),
    }
    # "none" (fit 0) keeps the lowest at 0, so the rounding shows unshifted.
    priorities = await policy(spec, cluster).prioritize(pod(APP), nodes("four", "one", "none"))
    assert priorities.listed() == [("four", 10), ("one", 3)]  # 10 * 1/4 = 2.5 -> 3
    # Without it, the shift takes the rounded 3 off both: 10 - 3 = 7, "one" is left out.
    priorities = await policy(spec, cluster).prioritize(pod(APP), nodes("four", "one"))
    assert priorities.listed() == [("four", 7)]


async def test_all_zero_when_no_node_fits() -> None:
    prefer = pod(APP, annotations={"image-compat.io/mode": "prefer"})
    priorities = await policy().prioritize(prefer, nodes("old", "unknown"))
    assert priorities.listed() == [] and not priorities.scores


async def test_determinism_under_shuffled_node_order() -> None:
    cluster = {f"n{i}": (fast, minimal, old)[i % 3](f"n{i}") for i in range(60)}
    names = [*cluster, "missing-1", "missing-2"]
    p = policy(cluster=cluster)
    first = await p.filter(pod(APP), nodes(*names))
    first_passing = {names[i] for i in first.passing}
    first_scores = dict(
        zip(names, scores(await p.prioritize(pod(APP), nodes(*names))), strict=True)
    )
    assert first_scores["n0"] == 10 and first_scores["missing-1"] == 0
    rng = random.Random(7)
    for _ in range(20):
        shuffled = names[:]
        rng.shuffle(shuffled)
        fresh = policy(cluster=cluster)  # a cold memo must agree with a warm one
        for q in (p, fresh):
            decision = await q.filter(pod(APP), nodes(*shuffled))
            assert {shuffled[i] for i in decision.passing} == first_passing
            assert decision.passing == tuple(sorted(decision.passing))  # request order
            assert dict(decision.unresolvable) == dict(first.unresolvable)
            priorities = await q.prioritize(pod(APP), nodes(*shuffled))
            assert list(priorities.names) == shuffled
            assert dict(zip(shuffled, scores(priorities), strict=True)) == first_scores


async def test_prioritize_shifts_so_that_the_lowest_is_0_and_leaves_it_out() -> None:
    cluster = {**CLUSTER, "fast-2": fast("fast-2"), "minimal-2": minimal("minimal-2")}
    p = policy(cluster=cluster)
    # Unshifted: fast 10, minimal 2, old 0 (fits 11, 2, 0).
    priorities = await p.prioritize(pod(APP), nodes("minimal", "fast", "minimal-2", "fast-2"))
    assert list(priorities.scores) == [0, 8, 0, 8]
    assert priorities.listed() == [("fast", 8), ("fast-2", 8)]
    # Every candidate alike, whether fit 0 or not: nothing is listed, scores are empty.
    for alike in (("fast", "fast-2"), ("minimal", "minimal-2"), ("old", "unknown"), ("fast",)):
        priorities = await p.prioritize(pod(APP), nodes(*alike))
        assert priorities.listed() == [] and not priorities.scores, alike
    assert (await p.prioritize(pod(APP), nodes())).listed() == []


async def test_the_shift_keeps_every_difference_between_candidates() -> None:
    # Three sets of weights 7, 3 and 0, a node matching one or none: fits 8, 4, 1 or 0,
    # normalised over the best among the candidates, then shifted by the lowest.
    spec = """
version: v1alpha1
compatibilities:
- weight: 7
  rules: [{name: a, matchFeatures: [{feature: cpu.cpuid, matchExpressions: {A: {op: Exists}}}]}]
- weight: 3
  rules: [{name: b, matchFeatures: [{feature: cpu.cpuid, matchExpressions: {B: {op: Exists}}}]}]
- weight: 0
  rules: [{name: c, matchFeatures: [{feature: cpu.cpuid, matchExpressions: {C: {op: Exists}}}]}]
"""
    kinds = {"a": ["A"], "b": ["B"], "c": ["C"], "none": []}
    cluster = {
        f"{kind}{i}": features(flags={"cpu.cpuid": flags})
        for kind, flags in kinds.items()
        for i in range(2)
    }
    fit = {"a": 8, "b": 4, "c": 1, "none": 0}
    p = Policy(naming_config(), store_with(cluster), FakeSource({APP: spec}))
    rng = random.Random(21)
    for _ in range(30):
        names = rng.sample(sorted(cluster), rng.randint(1, len(cluster)))
        fits = [fit[name[:-1]] for name in names]
        unshifted = [normalise_score(f, max(fits)) for f in fits]
        got = scores(await p.prioritize(pod(APP), nodes(*names)))
        assert got == [s - min(unshifted) for s in unshifted], names
        if len(set(unshifted)) == 1:
            assert not (await p.prioritize(pod(APP), nodes(*names))).scores
