"""The ``variants`` annotation: its syntax, filter (any variant passes), prioritize (the best
variant per node) and the variant bind chooses."""

from __future__ import annotations

import json

import msgspec
import pytest

from extender.nodes.model import NodeFeatures
from extender.policy.decide import Policy
from extender.policy.explain import explain
from extender.policy.pods import MAX_VARIANTS, Container, Pod, plan_pod
from tests.policy.helpers import (
    AVX512,
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

KEY = "image-compat.io/variants"
AVX = "registry.example/app:avx512"
TUNED = "registry.example/app:tuned"
GENERIC = "registry.example/app:generic"
SIDECAR = "registry.example/sidecar:1"


def avx512(node: str) -> NodeFeatures:
    return features(
        node,
        flags={"cpu.cpuid": ["AVX512F"], "kernel.loadedmodule": ["vfio_pci"]},
        attributes={"kernel.version": {"major": "6"}},
    )


def variants_pod(value: object, *images: str) -> Pod:
    raw = value if isinstance(value, str) else json.dumps(value)
    return pod(*(images or ("app:placeholder",)), annotations={KEY: raw})


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("[", "invalid annotation image-compat.io/variants: not JSON"),
        ('["a"]', "expected a JSON object of container: [image, ...]"),
        ('{"c0": "a"}', "expected a JSON object of container: [image, ...]"),
        ('{"c0": ["a", 3]}', "expected a JSON object of container: [image, ...]"),
        ('{"c0": ["a", " "]}', "expected a JSON object of container: [image, ...]"),
        ('{"web": ["a"]}', "no container named 'web'"),
        ('{"c0": []}', "no variants for container 'c0'"),
        (
            json.dumps({"c0": [f"a:{i}" for i in range(MAX_VARIANTS + 1)]}),
            f"{MAX_VARIANTS + 1} variants for container 'c0' (at most {MAX_VARIANTS})",
        ),
    ],
)
async def test_bad_syntax_is_the_pods_problem_and_rejects_every_node(
    raw: str, problem: str
) -> None:
    p = variants_pod(raw)
    plan = plan_pod(p, policy_config())
    assert problem in plan.problem
    policy = Policy(policy_config(), store_with({"n": fast("n")}), FakeSource())
    decision = await policy.filter(p, nodes("n"))
    assert decision.passing == ()
    assert problem in decision.unresolvable["n"]
    assert policy.stats.rejections["invalid_annotation"] == 1


def test_variants_and_artifacts_on_one_container_is_a_problem() -> None:
    p = pod(
        "app:1",
        annotations={KEY: json.dumps({"c0": [AVX]}), "image-compat.io/artifacts": '{"c0": "x"}'},
    )
    assert "also in image-compat.io/artifacts" in plan_pod(p, policy_config()).problem


def test_plan_groups_variants_and_keeps_other_images_alone() -> None:
    p = pod("app:placeholder", SIDECAR, annotations={KEY: json.dumps({"c0": [AVX, GENERIC]})})
    plan = plan_pod(p, policy_config())
    assert not plan.problem
    # The container's own image is not judged: one of its variants runs.
    assert [r.image for r in plan.requirements] == [AVX, GENERIC, SIDECAR]
    assert plan.groups == ((2,), (0, 1))
    assert plan.variants[0].container == "c0"
    assert plan.variants[0].images == (AVX, GENERIC)


def test_prefix_is_configurable() -> None:
    config = policy_config(annotation_prefix="example.com/")
    p = pod("app:1", annotations={"example.com/variants": json.dumps({"c0": [AVX]})})
    assert plan_pod(p, config).variants[0].images == (AVX,)


CLUSTER = {
    "avx": avx512("avx"),
    "fast": fast("fast"),
    "minimal": minimal("minimal"),
    "old": old("old"),
}


def policy(**specs: str) -> Policy:
    source = FakeSource({AVX: AVX512, TUNED: PREFERRED_FALLBACK, **specs})
    return Policy(naming_config(), store_with(CLUSTER), source)


async def test_filter_passes_a_node_where_any_variant_is_compatible() -> None:
    p = policy()
    pod_ = variants_pod({"c0": [AVX, TUNED]})
    decision = await p.filter(pod_, nodes("avx", "fast", "minimal", "old"))
    assert decision.passing == (0, 1, 2)
    reason = decision.unresolvable["old"]
    # The first variant names the failure, by its short name.
    assert reason.startswith("image-compat: container c0: no compatible variant: app:avx512: ")


async def test_a_variant_without_spec_passes_everywhere() -> None:
    decision = await policy().filter(
        variants_pod({"c0": [AVX, GENERIC]}),
        nodes("avx", "old"),
    )
    assert decision.passing == (0, 1)


async def test_other_images_still_pass_as_usual() -> None:
    p = policy(**{SIDECAR: AVX512})
    pod_ = variants_pod({"c0": [TUNED, GENERIC]}, "app:placeholder", SIDECAR)
    decision = await p.filter(pod_, nodes("avx", "fast"))
    assert decision.passing == (0,)
    assert decision.unresolvable["fast"].startswith("image-compat: sidecar:1: ")


async def test_prioritize_scores_the_best_variant_per_node() -> None:
    p = policy()
    pod_ = variants_pod({"c0": [AVX, TUNED]})
    # avx: AVX512 fits 1, TUNED fits 11 -> 11; fast: 11; minimal: TUNED 2; old: 0.
    priorities = await p.prioritize(pod_, nodes("avx", "fast", "minimal", "old"))
    assert scores(priorities) == [10, 10, 2, 0]
    # Without old, minimal is the lowest: the shift takes its 2 off every node.
    priorities = await p.prioritize(pod_, nodes("avx", "fast", "minimal"))
    assert priorities.listed() == [("avx", 8), ("fast", 8)]


async def test_choose_prefers_compatible_then_fit_then_list_order() -> None:
    p = policy()
    pod_ = variants_pod({"c0": [AVX, TUNED, GENERIC]})
    assert await p.choose_variants(pod_, "avx") == {"c0": TUNED}
    assert await p.choose_variants(pod_, "minimal") == {"c0": TUNED}
    # old: AVX and TUNED incompatible, GENERIC has no spec (compatible, fit 0).
    assert await p.choose_variants(pod_, "old") == {"c0": GENERIC}
    # Equal fits: the first in the annotation wins.
    tie = variants_pod({"c0": [GENERIC, "registry.example/app:other"]})
    assert await p.choose_variants(tie, "old") == {"c0": GENERIC}


async def test_choose_without_variants_is_empty_and_a_bad_annotation_raises() -> None:
    p = policy()
    assert await p.choose_variants(pod("app:1"), "avx") == {}
    with pytest.raises(ValueError, match="not JSON"):
        await p.choose_variants(variants_pod("{"), "avx")


async def test_explain_agrees_with_filter_and_prioritize() -> None:
    p = policy()
    pod_ = variants_pod({"c0": [AVX, TUNED]})
    names = ("avx", "fast", "minimal", "old")
    decision = await p.filter(pod_, nodes(*names))
    shifted = dict(zip(names, scores(await p.prioritize(pod_, nodes(*names))), strict=True))
    answer = await explain(p, pod_)
    rows = {row["node"]: row for row in answer["nodes"]}
    # explain shows the score before the shift (normalised over every node); prioritize
    # takes the lowest among its candidates off each one (here: every node, lowest 0).
    lowest = min(rows[name]["score"] for name in names)
    assert lowest == 0
    for index, name in enumerate(names):
        assert rows[name]["passes"] == (index in decision.passing), name
        assert rows[name]["score"] - lowest == shifted[name], name
        assert rows[name].get("reason", "") == decision.unresolvable.get(name, ""), name


async def test_mode_off_runs_its_own_image() -> None:
    off = pod(
        "app:1",
        annotations={KEY: json.dumps({"c0": [AVX]}), "image-compat.io/mode": "off"},
    )
    assert await policy().choose_variants(off, "old") == {}


async def test_a_bound_pod_is_judged_by_the_variant_it_runs() -> None:
    p = policy()
    obj = variants_pod({"c0": [AVX, TUNED]})
    bound = msgspec.structs.replace(obj, spec=msgspec.structs.replace(obj.pod_spec, node_name="x"))
    running = msgspec.structs.replace(
        bound,
        spec=msgspec.structs.replace(bound.pod_spec, containers=[Container(name="c0", image=AVX)]),
    )
    # minimal: TUNED would fit, but the AVX-512 build runs there.
    assert await p.drift_on(running, "minimal") is not None
    assert await p.drift_on(running, "avx") is None
    assert plan_pod(running, policy_config()).variants == ()
