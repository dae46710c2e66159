"""--filter-reasons: by default filter names the rejected nodes (with why) only when no node
passes, the one time kube-scheduler reads them; rejections are counted either way."""

from __future__ import annotations

from extender.policy.decide import LOWER_FIT_REASON, Policy
from extender.policy.pods import FilterReasons
from tests.policy.helpers import (
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    minimal,
    nodes,
    old,
    pod,
    policy_config,
    store_with,
)

APP = "registry.example/app:1"
CLUSTER = {"fast": fast("fast"), "minimal": minimal("minimal"), "old": old("old")}


def make(reasons: FilterReasons | None = None) -> Policy:
    config = policy_config() if reasons is None else policy_config(filter_reasons=reasons)
    return Policy(config, store_with(CLUSTER), FakeSource({APP: PREFERRED_FALLBACK}))


def test_the_default_is_when_all_rejected() -> None:
    assert policy_config().filter_reasons is FilterReasons.WHEN_ALL_REJECTED


async def test_reasons_are_left_out_when_a_node_passes_but_counted() -> None:
    p = make()
    decision = await p.filter(pod(APP), nodes("fast", "old", "minimal", "unknown"))
    assert decision.passing == (0, 2)
    assert decision.unresolvable == {}
    assert p.stats.rejections["incompatible"] == 1
    assert p.stats.rejections["no_features"] == 1
    assert p.stats.nodes_rejected == 2


async def test_every_reason_is_given_when_no_node_passes() -> None:
    decision = await make().filter(pod(APP), nodes("old", "unknown"))
    assert decision.passing == ()
    assert decision.unresolvable == {
        "old": "image-compat: kernel.loadedmodule: feature missing",
        "unknown": "image-compat: no NFD features",
    }


async def test_always_names_every_rejected_node() -> None:
    decision = await make(FilterReasons.ALWAYS).filter(pod(APP), nodes("fast", "old"))
    assert decision.passing == (0,)
    assert decision.unresolvable == {"old": "image-compat: kernel.loadedmodule: feature missing"}


async def test_best_fit_names_lower_fits_only_with_always() -> None:
    candidates = nodes("fast", "minimal", "old")
    quiet = await make().filter(pod(APP), candidates, best_fit=True)
    assert quiet.passing == (0,) and quiet.unresolvable == {}
    named = await make(FilterReasons.ALWAYS).filter(pod(APP), candidates, best_fit=True)
    assert named.passing == (0,)
    assert named.unresolvable == {
        "minimal": LOWER_FIT_REASON,
        "old": "image-compat: kernel.loadedmodule: feature missing",
    }
