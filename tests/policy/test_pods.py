"""Which pods are judged, which images of a pod, and the pod's own controls (annotations)."""

from __future__ import annotations

import pytest

from extender.artifacts.types import PullContext, SpecKey
from extender.policy.decide import Policy, short_image
from extender.policy.explain import explain
from extender.policy.pods import Mode, Pod, PolicyConfig, plan_pod
from extender.server.protocol import pod_from_object
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

APP = "registry.example/app:1"
AVX = "registry.example/avx:1"
CLUSTER = {"fast": fast("fast"), "minimal": minimal("minimal"), "old": old("old")}
ALL = nodes("fast", "minimal", "old")


def policy(config: PolicyConfig | None = None, /, **specs: str) -> Policy:
    source = FakeSource({APP: PREFERRED_FALLBACK, AVX: AVX512, **specs})
    return Policy(config or naming_config(), store_with(CLUSTER), source)


# -- which pods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", ["default-scheduler", None, "Image-Compat-Scheduler"])
async def test_pods_of_other_schedulers_pass_untouched(scheduler: str | None) -> None:
    p = policy()
    decision = await p.filter(pod(APP, scheduler=scheduler), ALL)
    assert decision.passing == (0, 1, 2) and decision.unresolvable == {}
    priorities = await p.prioritize(pod(APP, scheduler=scheduler), ALL)
    assert priorities.listed() == [] and not priorities.scores


async def test_several_scheduler_names_can_be_ours() -> None:
    config = policy_config(scheduler_names=frozenset({"a", "b"}))
    p = policy(config)
    for name in ("a", "b"):
        assert (await p.filter(pod(APP, scheduler=name), ALL)).passing == (0, 1)
    assert (await p.filter(pod(APP), ALL)).passing == (0, 1, 2)


# -- images of a pod ----------------------------------------------------------------------------


def test_images_of_init_and_regular_containers_deduped_in_order() -> None:
    plan = plan_pod(
        pod("b:1", "a:1", "b:1", init=["a:1", "c:1"]),
        policy_config(),
    )
    assert [r.image for r in plan.requirements] == ["a:1", "c:1", "b:1"]
    assert plan.requirements[0].containers == ("i0", "c1")
    assert plan.requirements[2].containers == ("c0", "c2")


async def test_an_init_container_image_is_checked_like_any_other() -> None:
    decision = await policy().filter(pod("plain:1", init=[AVX]), ALL)
    assert decision.passing == ()
    # Named by its short name: no registry host.
    assert decision.unresolvable["fast"] == "image-compat: avx:1: cpu.cpuid: feature missing"


async def test_every_image_with_a_spec_must_be_compatible() -> None:
    cluster = {
        "both": features(
            flags={"kernel.loadedmodule": ["vfio_pci"], "cpu.cpuid": ["AVX512F"]},
            attributes={"kernel.version": {"major": "6"}},
        ),
        "app-only": fast("app-only"),
        "avx-only": features(flags={"cpu.cpuid": ["AVX512F"]}),
    }
    source = FakeSource({APP: PREFERRED_FALLBACK, AVX: AVX512})
    p = Policy(naming_config(), store_with(cluster), source)
    decision = await p.filter(pod(APP, AVX, "no-spec:1"), nodes("both", "app-only", "avx-only"))
    assert decision.passing == (0,)
    # With several images the reason names the image that failed (the first, in pod order)
    # by its short name.
    assert decision.unresolvable == {
        "app-only": "image-compat: avx:1: cpu.cpuid: feature missing",
        "avx-only": "image-compat: app:1: kernel.loadedmodule: feature missing",
    }


async def test_explain_names_the_image_as_filter_does() -> None:
    # explain's reason is filter's words: the short name, too (regression: the full reference).
    p = policy()
    several = pod(APP, AVX)
    decision = await p.filter(several, ALL)
    rows = {row["node"]: row for row in (await explain(p, several))["nodes"]}
    assert (
        decision.unresolvable["old"] == "image-compat: app:1: kernel.loadedmodule: feature missing"
    )
    for name in ALL:
        assert rows[name].get("reason", "") == decision.unresolvable.get(name, ""), name
    assert [image["image"] for image in (await explain(p, several))["images"]] == [APP, AVX]


@pytest.mark.parametrize(
    ("image", "short"),
    [
        ("tool:1", "tool:1"),
        ("registry.example/team/tool:1", "tool:1"),
        ("registry.example:5000/tool", "tool"),
        (
            "registry.example/tool@sha256:" + "0123456789abcdef" * 4,
            "tool@sha256:0123456789ab",
        ),
    ],
)
def test_short_image(image: str, short: str) -> None:
    assert short_image(image) == short


async def test_single_image_reason_does_not_name_the_image() -> None:
    decision = await policy().filter(pod(APP), ALL)
    assert decision.unresolvable == {"old": "image-compat: kernel.loadedmodule: feature missing"}


async def test_prioritize_sums_fit_over_images() -> None:
    # fit: APP 11 (fast) / 2 (minimal) / 0; the same image twice counts once (deduped).
    priorities = await policy().prioritize(pod(APP, APP, "no-spec:1"), ALL)
    assert scores(priorities) == [10, 2, 0]


# -- tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "passing", "expected"),
    [
        (None, (0, 1), [10, 2, 0]),
        ("", (0, 1), [10, 2, 0]),
        ("minimal", (0, 1), [10, 10, 0]),  # only the fallback set counts: fit 2 on both
        ("fast", (0,), [10, 0, 0]),
        (" fast , other ", (0,), [10, 0, 0]),
        ("other", (), [0, 0, 0]),
    ],
)
async def test_tags_select_the_sets_that_count(
    tags: str | None, passing: tuple[int, ...], expected: list[int]
) -> None:
    annotations = None if tags is None else {"image-compat.io/tags": tags}
    p = policy()
    decision = await p.filter(pod(APP, annotations=annotations), ALL)
    assert decision.passing == passing
    assert scores(await p.prioritize(pod(APP, annotations=annotations), ALL)) == expected


async def test_tags_nothing_matches_reason() -> None:
    annotations = {"image-compat.io/tags": "gpu,other"}
    decision = await policy().filter(pod(APP, annotations=annotations), ALL)
    assert decision.unresolvable["fast"] == "image-compat: no compatibility set is tagged gpu,other"


# -- modes --------------------------------------------------------------------------------------


async def test_enforce_is_the_default_mode() -> None:
    assert plan_pod(pod(APP), policy_config()).mode is Mode.ENFORCE
    explicit = pod(APP, annotations={"image-compat.io/mode": "enforce"})
    assert (await policy().filter(explicit, ALL)).passing == (0, 1)


async def test_prefer_filters_nothing_and_scores() -> None:
    p = policy()
    prefer = pod(APP, annotations={"image-compat.io/mode": "prefer"})
    assert (await p.filter(prefer, ALL)).passing == (0, 1, 2)
    assert (await p.prioritize(prefer, ALL)).listed() == [("fast", 10), ("minimal", 2)]


async def test_prefer_ignores_an_invalid_spec_in_filter() -> None:
    from tests.policy.helpers import INVALID_WEIGHT

    p = policy(**{"bad:1": INVALID_WEIGHT})
    prefer = pod("bad:1", annotations={"image-compat.io/mode": "prefer"})
    assert (await p.filter(prefer, ALL)).passing == (0, 1, 2)
    assert (await p.prioritize(prefer, ALL)).listed() == []


async def test_off_judges_nothing() -> None:
    p = policy()
    off = pod(APP, annotations={"image-compat.io/mode": " OFF "})
    assert (await p.filter(off, ALL)).passing == (0, 1, 2)
    assert (await p.prioritize(off, ALL)).listed() == []


async def test_a_mode_outside_the_allow_list_is_refused_on_every_node() -> None:
    config = policy_config(allowed_modes=frozenset({Mode.ENFORCE}))
    p = policy(config)
    off = pod(APP, annotations={"image-compat.io/mode": "off"})
    decision = await p.filter(off, ALL)
    assert decision.passing == ()
    assert set(decision.unresolvable.values()) == {
        "image-compat: annotation image-compat.io/mode: mode off is not allowed (enforce)"
    }
    assert (await p.prioritize(off, ALL)).listed() == []


async def test_an_unknown_mode_is_refused_on_every_node() -> None:
    decision = await policy().filter(pod(APP, annotations={"image-compat.io/mode": "strict"}), ALL)
    assert set(decision.unresolvable.values()) == {
        "image-compat: invalid annotation image-compat.io/mode: 'strict' (use enforce, prefer, off)"
    }


async def test_default_mode_can_be_prefer() -> None:
    config = policy_config(
        allowed_modes=frozenset({Mode.PREFER, Mode.OFF}), default_mode=Mode.PREFER
    )
    assert (await policy(config).filter(pod(APP), ALL)).passing == (0, 1, 2)


def test_default_mode_must_be_allowed() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        policy_config(allowed_modes=frozenset({Mode.PREFER}))


# -- annotation prefix --------------------------------------------------------------------------


async def test_annotation_prefix_is_configurable() -> None:
    config = policy_config(annotation_prefix="example.com/compat-")
    p = policy(config)
    off = pod(APP, annotations={"example.com/compat-mode": "off"})
    assert (await p.filter(off, ALL)).passing == (0, 1, 2)
    ignored = pod(APP, annotations={"image-compat.io/mode": "off"})
    assert (await p.filter(ignored, ALL)).passing == (0, 1)


@pytest.mark.parametrize(
    "prefix", ["Image-Compat.io/", "x" * 64 + ".io/", "a/b/", "image compat/", "/" + "a" * 60]
)
def test_annotation_prefix_must_give_valid_keys(prefix: str) -> None:
    with pytest.raises(ValueError, match="annotation key"):
        policy_config(annotation_prefix=prefix)


def test_annotation_prefix_near_the_limit() -> None:
    policy_config(annotation_prefix="example.com/" + "a" * 54)  # "...artifacts" is 63 long
    with pytest.raises(ValueError):
        policy_config(annotation_prefix="example.com/" + "a" * 55)


# -- artifacts ----------------------------------------------------------------------------------


async def test_artifacts_annotation_names_an_explicit_spec_per_container() -> None:
    source = FakeSource({"registry.example/specs/avx:v1": AVX512})
    p = Policy(naming_config(), store_with(CLUSTER), source)
    annotated = pod(
        "plain:1",
        "plain:1",
        names=["app", "sidecar"],
        annotations={"image-compat.io/artifacts": '{"app": "registry.example/specs/avx:v1"}'},
    )
    plan = p.plan(annotated)
    assert [(r.image, r.artifact, r.containers) for r in plan.requirements] == [
        ("plain:1", "registry.example/specs/avx:v1", ("app",)),
        ("plain:1", "", ("sidecar",)),
    ]
    decision = await p.filter(annotated, ALL)
    assert decision.passing == ()
    assert decision.unresolvable["fast"] == "image-compat: plain:1: cpu.cpuid: feature missing"
    assert SpecKey("plain:1", "registry.example/specs/avx:v1", "") in {
        SpecKey(r.image, r.artifact) for r in plan.requirements
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not json", "not JSON"),
        ('["a"]', "expected a JSON object of container: reference"),
        ('{"c0": 5}', "expected a JSON object of container: reference"),
        ('{"c0": ""}', "expected a JSON object of container: reference"),
        ('{"nope": "x:1"}', "no container named 'nope'"),
    ],
)
async def test_bad_artifacts_annotation_is_refused_on_every_node(value: str, problem: str) -> None:
    decision = await policy().filter(
        pod(APP, annotations={"image-compat.io/artifacts": value}), ALL
    )
    assert decision.passing == ()
    assert set(decision.unresolvable.values()) == {
        f"image-compat: invalid annotation image-compat.io/artifacts: {problem}"
    }


def test_pull_context_carries_namespace_and_pull_secrets() -> None:
    obj = {
        "metadata": {"name": "p", "namespace": "team"},
        "spec": {
            "schedulerName": "image-compat-scheduler",
            "containers": [{"name": "c", "image": APP}],
            "imagePullSecrets": [{"name": "one"}, None, {"name": None}, {"name": "two"}],
        },
    }
    plan = plan_pod(pod_from_object(obj), policy_config())
    assert plan.context == PullContext("team", ("one", "two"))


async def test_containers_without_image_and_empty_pods() -> None:
    obj = {"spec": {"schedulerName": "image-compat-scheduler", "containers": [{"name": "x"}]}}
    p = policy()
    assert (await p.filter(pod_from_object(obj), ALL)).passing == (0, 1, 2)
    assert (await p.filter(pod(APP), ())).passing == ()
    assert (await p.prioritize(pod(APP), ())).listed() == []


async def test_a_new_pod_version_is_planned_anew() -> None:
    # Plans are kept per pod version; a changed pod comes with a new resourceVersion.
    def versioned(version: str, mode: str, scheduler: str = "image-compat-scheduler") -> Pod:
        return pod_from_object(
            {
                "metadata": {
                    "name": "p",
                    "uid": "uid-1",
                    "resourceVersion": version,
                    "annotations": {"image-compat.io/mode": mode},
                },
                "spec": {"schedulerName": scheduler, "containers": [{"name": "c", "image": APP}]},
            }
        )

    p = policy()
    assert (await p.filter(versioned("1", "enforce"), ALL)).passing == (0, 1)
    assert (await p.filter(versioned("1", "enforce"), ALL)).passing == (0, 1)
    assert (await p.filter(versioned("2", "prefer"), ALL)).passing == (0, 1, 2)
    assert (await p.filter(versioned("3", "enforce"), ALL)).passing == (0, 1)
    # Another scheduler name on the same version (as drift judges pods): not ours.
    other = versioned("3", "enforce", scheduler="default-scheduler")
    assert (await p.filter(other, ALL)).passing == (0, 1, 2)
