"""Per-node answer tables kept per pod shape: filter and prioritize answer from them and catch
up with the feature store, one changed node at a time or all over again; and filter's
best-fit mode (the single-call profile), which keeps only the highest-fit tier."""

from __future__ import annotations

import pytest

from extender.nodes.model import NodeFeatures
from extender.nodes.store import FeatureStore
from extender.policy.decide import Policy
from tests.policy.helpers import (
    AVX512,
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    minimal,
    naming_config,
    nodes,
    old,
    pod,
    scores,
    store_with,
)

APP = "registry.example/app:1"
AVX = "registry.example/avx:1"
PREFER = {"image-compat.io/mode": "prefer"}
KINDS = {"fast": fast, "minimal": minimal, "old": old}


def make(cluster: dict[str, NodeFeatures]) -> tuple[Policy, FeatureStore]:
    store = store_with(cluster)
    source = FakeSource({APP: PREFERRED_FALLBACK, AVX: AVX512})
    return Policy(naming_config(), store, source), store


def fleet(count: int) -> dict[str, NodeFeatures]:
    kinds = (fast, minimal, old)
    return {f"n{i}": kinds[i % 3](f"n{i}") for i in range(count)}


async def answers(p: Policy, names: list[str]) -> tuple[set[str], dict[str, str], list[int]]:
    """filter's passing names and reasons, and prioritize's scores, for ``names``."""
    decision = await p.filter(pod(APP), nodes(*names))
    priorities = await p.prioritize(pod(APP), nodes(*names))
    return {names[i] for i in decision.passing}, dict(decision.unresolvable), scores(priorities)


async def cold(cluster: dict[str, NodeFeatures], names: list[str]) -> tuple[object, ...]:
    """The same answers from a policy that never saw another version of the store."""
    p, _ = make(cluster)
    return await answers(p, names)


# -- catching up with the store -------------------------------------------------------------------


async def test_a_node_changed_between_two_calls_is_answered_anew() -> None:
    cluster = fleet(12)
    names = [*cluster, "missing"]
    p, store = make(cluster)
    passing, reasons, first_scores = await answers(p, names)
    assert "n0" in passing and "n2" not in passing and reasons["missing"]
    assert first_scores[0] == 10  # n0 is fast

    # n0 loses vfio (fast -> old): rejected, and no longer top of prioritize.
    cluster["n0"] = old("n0")
    store.update("test", "n0", cluster["n0"])
    passing2, reasons2, scores2 = await answers(p, names)
    assert "n0" not in passing2 and reasons2["n0"] == reasons["n2"]
    assert passing2 == passing - {"n0"}
    assert {k: v for k, v in reasons2.items() if k != "n0"} == reasons
    assert scores2[0] == 0 and scores2[1:] == first_scores[1:]
    assert (passing2, reasons2, scores2) == await cold(cluster, names)

    # n2 gains it (old -> fast), n5's NodeFeature goes away, "missing" appears.
    cluster["n2"] = fast("n2")
    store.update("test", "n2", cluster["n2"])
    del cluster["n5"]
    store.update("test", "n5", None)
    cluster["missing"] = minimal("missing")
    store.update("test", "missing", cluster["missing"])
    passing3, reasons3, scores3 = await answers(p, names)
    assert {"n2", "missing"} <= passing3 and "n5" not in passing3
    assert reasons3["n5"] == reasons["missing"]  # no NodeFeature now
    assert scores3[2] == 10 and scores3[names.index("missing")] == 2
    assert (passing3, reasons3, scores3) == await cold({n: f for n, f in cluster.items()}, names)


async def test_a_change_the_spec_does_not_read_keeps_the_answer() -> None:
    cluster = fleet(6)
    names = list(cluster)
    p, store = make(cluster)
    before = await answers(p, names)
    store.update(
        "test",
        "n0",
        NodeFeatures.build(
            "n0",
            {"kernel.loadedmodule": ["vfio_pci"], "cpu.cpuid": ["SSE4"]},
            {"kernel.version": {"major": "6"}},
            {},
        ),
    )
    assert await answers(p, names) == before


@pytest.mark.parametrize("extra", [0, 1, 40])
async def test_more_changes_than_the_store_keeps_rebuild_the_tables(extra: int) -> None:
    cluster = fleet(9)
    names = list(cluster)
    p, store = make(cluster)
    versions = store.snapshot().version
    await answers(p, names)
    # One real change (n0: fast -> old), then enough churn on n1 that the store's change
    # log no longer reaches back to the tables' version; n1 ends where it started.
    cluster["n0"] = old("n0")
    store.update("test", "n0", cluster["n0"])
    churn = FeatureStore.CHANGES_KEPT + extra
    for step in range(churn):
        store.update("test", "n1", fast("n1") if step % 2 == 0 else minimal("n1"))
    store.update("test", "n1", minimal("n1"))
    snapshot = store.snapshot()
    assert snapshot.version > versions + FeatureStore.CHANGES_KEPT
    assert snapshot.changed_since(versions) is None  # the tables cannot catch up node by node
    passing, reasons, got = await answers(p, names)
    assert "n0" not in passing and "n3" in passing and "n1" in passing
    assert got[names.index("n1")] == 2 and got[0] == 0
    assert (passing, reasons, got) == await cold(cluster, names)


async def test_catching_up_covers_both_verbs_and_every_pod_shape() -> None:
    cluster = fleet(6)
    names = list(cluster)
    p, store = make(cluster)
    shapes = [
        pod(APP),
        pod(AVX),
        pod(APP, AVX),
        pod(APP, annotations={"image-compat.io/tags": "minimal"}),
    ]
    for shape in shapes:
        await p.filter(shape, nodes(*names))
        await p.prioritize(shape, nodes(*names))
    avx_fast = NodeFeatures.build(
        "n1",
        {"kernel.loadedmodule": ["vfio_pci"], "cpu.cpuid": ["AVX512F"]},
        {"kernel.version": {"major": "6"}},
        {},
    )
    cluster["n1"] = avx_fast
    store.update("test", "n1", avx_fast)
    fresh, _ = make(cluster)
    for shape in shapes:
        warm_decision = await p.filter(shape, nodes(*names))
        cold_decision = await fresh.filter(shape, nodes(*names))
        assert warm_decision == cold_decision
        assert scores(await p.prioritize(shape, nodes(*names))) == scores(
            await fresh.prioritize(shape, nodes(*names))
        )
    both = await p.filter(pod(APP, AVX), nodes(*names))
    assert both.passing == (1,)  # n1 alone is now fast and has AVX-512


async def test_requests_for_part_of_the_fleet_fill_the_table_as_they_come() -> None:
    cluster = fleet(9)
    p, store = make(cluster)
    first = await p.filter(pod(APP), nodes("n0", "n1", "n2"))
    assert first.passing == (0, 1)
    cluster["n3"] = old("n3")
    store.update("test", "n3", cluster["n3"])
    # n3..n8 were never asked about: answered now, on the current features.
    decision = await p.filter(pod(APP), nodes(*cluster))
    fresh, _ = make(cluster)
    assert decision == await fresh.filter(pod(APP), nodes(*cluster))
    assert "n3" in decision.unresolvable


# -- best fit ---------------------------------------------------------------------------------


async def test_best_fit_keeps_only_the_highest_fit_tier() -> None:
    cluster = {
        "fast-1": fast("fast-1"),
        "minimal-1": minimal("minimal-1"),
        "old-1": old("old-1"),
        "fast-2": fast("fast-2"),
    }
    p, _ = make(cluster)
    names = nodes("minimal-1", "fast-1", "old-1", "gone", "fast-2")
    plain = await p.filter(pod(APP), names)
    assert plain.passing == (0, 1, 4)
    assert p.stats.rejections["lower_fit"] == 0
    best = await p.filter(pod(APP), names, best_fit=True)
    assert best.passing == (1, 4)  # the fast tier, in request order
    # The nodes plain filter rejects keep their reasons; the lower tier gets its own.
    for name in ("old-1", "gone"):
        assert best.unresolvable[name] == plain.unresolvable[name]
    assert best.unresolvable["minimal-1"].startswith("image-compat: ")
    assert best.unresolvable["minimal-1"] not in plain.unresolvable.values()
    assert p.stats.rejections["lower_fit"] == 1
    assert p.stats.rejections["incompatible"] == 2  # old-1, by each filter call
    assert p.stats.rejections["no_features"] == 2  # gone, likewise
    # The tier kept is the one prioritize ranks first among the nodes plain filter passes.
    passed = [names[i] for i in plain.passing]
    ranked = dict(zip(passed, scores(await p.prioritize(pod(APP), passed)), strict=True))
    top = max(ranked.values())
    assert [names[i] for i in best.passing] == [n for n in passed if ranked[n] == top]


async def test_best_fit_ranks_only_the_nodes_that_pass() -> None:
    # The best fit among all candidates may be on a node filter rejects (incompatible with
    # another image): the tier is the best among those that pass.
    avx_minimal = NodeFeatures.build(
        "avx-minimal", {"cpu.cpuid": ["AVX512F"]}, {"kernel.version": {"major": "5"}}, {}
    )
    p, _ = make({"fast": fast("fast"), "avx-minimal": avx_minimal, "minimal": minimal("minimal")})
    decision = await p.filter(pod(APP, AVX), nodes("fast", "avx-minimal", "minimal"), best_fit=True)
    assert decision.passing == (1,)
    assert p.stats.rejections["lower_fit"] == 0


async def test_best_fit_for_a_prefer_pod_rejects_nothing_as_incompatible() -> None:
    p, _ = make({"fast": fast("fast"), "minimal": minimal("minimal"), "old": old("old")})
    prefer = pod(APP, annotations=PREFER)
    assert (await p.filter(prefer, nodes("fast", "minimal", "old"))).passing == (0, 1, 2)
    decision = await p.filter(prefer, nodes("minimal", "old", "fast"), best_fit=True)
    assert decision.passing == (2,)
    assert set(decision.unresolvable) == {"minimal", "old"}
    assert len(set(decision.unresolvable.values())) == 1  # both for the lower fit alone
    assert p.stats.rejections["lower_fit"] == 2
    assert p.stats.rejections["incompatible"] == 0
    # No node fits at all: every node stays (prefer never leaves a pod without a node).
    decision = await p.filter(prefer, nodes("old", "gone"), best_fit=True)
    assert decision.passing == (0, 1) and decision.unresolvable == {}


async def test_best_fit_passes_everyone_when_nothing_ranks() -> None:
    p, _ = make({"fast": fast("fast"), "old": old("old")})
    # No spec, not ours, mode off: nothing to rank by.
    for judged in (
        pod("no-spec:1"),
        pod(APP, scheduler="default-scheduler"),
        pod(APP, annotations={"image-compat.io/mode": "off"}),
    ):
        decision = await p.filter(judged, nodes("fast", "old"), best_fit=True)
        assert decision.passing == (0, 1) and decision.unresolvable == {}
    # One node passes: it stays, and the others keep filter's own reasons.
    decision = await p.filter(pod(APP), nodes("fast", "old", "fast-too"), best_fit=True)
    assert decision.passing == (0,) and p.stats.rejections["lower_fit"] == 0
    # Every passing node fits alike: all of them stay.
    p2, _ = make({"a": fast("a"), "b": fast("b")})
    assert (await p2.filter(pod(APP), nodes("a", "b"), best_fit=True)).passing == (0, 1)
    assert p2.stats.rejections["lower_fit"] == 0


async def test_best_fit_follows_a_changed_node() -> None:
    cluster = {"a": fast("a"), "b": minimal("b"), "c": minimal("c")}
    p, store = make(cluster)
    assert (await p.filter(pod(APP), nodes("a", "b", "c"), best_fit=True)).passing == (0,)
    store.update("test", "a", minimal("a"))
    assert (await p.filter(pod(APP), nodes("a", "b", "c"), best_fit=True)).passing == (0, 1, 2)
    store.update("test", "c", fast("c"))
    assert (await p.filter(pod(APP), nodes("a", "b", "c"), best_fit=True)).passing == (2,)
