"""The two-level memo: identical hardware is evaluated once; mode after the verdict;
and the subset problem is detected and counted."""

from __future__ import annotations

import logging

import pytest

from extender.policy.decide import Policy
from tests.policy.helpers import (
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    features,
    minimal,
    nodes,
    old,
    pod,
    policy_config,
    store_with,
)

APP = "registry.example/app:1"


async def test_identical_hardware_is_evaluated_once() -> None:
    cluster = {f"n{i}": (fast, minimal, old)[i % 3](f"n{i}") for i in range(300)}
    p = Policy(policy_config(), store_with(cluster), FakeSource({APP: PREFERRED_FALLBACK}))
    decision = await p.filter(pod(APP), nodes(*cluster, "unknown"))
    assert len(decision.passing) == 200
    assert p.memo.misses == 4  # three node types plus "no NodeFeature"
    await p.prioritize(pod(APP), nodes(*cluster))
    assert p.memo.misses == 4


async def test_mode_is_applied_after_the_verdict() -> None:
    store = store_with({"a": fast("a"), "b": old("b")})
    p = Policy(policy_config(), store, FakeSource({APP: PREFERRED_FALLBACK}))
    await p.prioritize(pod(APP), nodes("a", "b"))
    misses = p.memo.misses
    prefer = pod(APP, annotations={"image-compat.io/mode": "prefer"})
    await p.prioritize(prefer, nodes("a", "b"))
    await p.filter(pod(APP), nodes("a", "b"))
    assert p.memo.misses == misses


async def test_features_the_spec_does_not_read_do_not_cause_evaluations() -> None:
    store = store_with({"a": fast("a")})
    p = Policy(policy_config(), store, FakeSource({APP: PREFERRED_FALLBACK}))
    await p.filter(pod(APP), nodes("a"))
    changed = features(
        "a",
        flags={"kernel.loadedmodule": ["vfio_pci"], "cpu.cpuid": ["SSE4"]},
        attributes={"kernel.version": {"major": "6"}},
    )
    store.update("test", "a", changed)
    await p.filter(pod(APP), nodes("a"))
    assert p.memo.misses == 1
    store.update("test", "a", old("a"))
    decision = await p.filter(pod(APP), nodes("a"))
    assert decision.passing == () and p.memo.misses == 2


async def test_tags_are_part_of_the_verdict_key() -> None:
    p = Policy(
        policy_config(), store_with({"m": minimal("m")}), FakeSource({APP: PREFERRED_FALLBACK})
    )
    assert (await p.filter(pod(APP), nodes("m"))).passing == (0,)
    tagged = pod(APP, annotations={"image-compat.io/tags": "fast"})
    assert (await p.filter(tagged, nodes("m"))).passing == ()


async def test_memo_is_bounded() -> None:
    cluster = {
        f"n{i}": features(attributes={"kernel.version": {"major": str(i)}}) for i in range(50)
    }
    p = Policy(
        policy_config(memo_size=8), store_with(cluster), FakeSource({APP: PREFERRED_FALLBACK})
    )
    await p.filter(pod(APP), nodes(*cluster))
    assert len(p.memo) <= 8


# -- the subset problem -----------------------------------------------------------------------


async def test_subset_problem_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = store_with({"a-old": old("a-old"), "b-old": old("b-old"), "fast": fast("fast")})
    p = Policy(policy_config(), store, FakeSource({APP: PREFERRED_FALLBACK}))
    with caplog.at_level(logging.WARNING, logger="extender.policy"):
        decision = await p.filter(pod(APP, name="web"), nodes("a-old", "b-old"))
    assert decision.passing == ()
    assert p.stats.subset_problems == 1
    assert "subset problem: pod default/web: all 2 offered nodes rejected" in caplog.text
    assert "node fast (not offered) is compatible" in caplog.text
    assert "percentageOfNodesToScore: 100" in caplog.text
    await p.filter(pod(APP, name="web"), nodes("a-old", "b-old"))
    assert p.stats.subset_problems == 2


async def test_no_subset_problem_when_nothing_in_the_store_fits() -> None:
    store = store_with({"a-old": old("a-old"), "b-old": old("b-old")})
    p = Policy(policy_config(), store, FakeSource({APP: PREFERRED_FALLBACK}))
    await p.filter(pod(APP), nodes("a-old"))
    assert p.stats.subset_problems == 0


async def test_no_subset_problem_when_some_offered_node_passes() -> None:
    store = store_with({"old": old("old"), "fast": fast("fast"), "fast2": fast("fast2")})
    p = Policy(policy_config(), store, FakeSource({APP: PREFERRED_FALLBACK}))
    await p.filter(pod(APP), nodes("old", "fast"))
    assert p.stats.subset_problems == 0


async def test_invalid_spec_is_not_a_subset_problem() -> None:
    from tests.policy.helpers import INVALID_WEIGHT

    store = store_with({"fast": fast("fast")})
    p = Policy(policy_config(), store, FakeSource({APP: INVALID_WEIGHT}))
    await p.filter(pod(APP), nodes("x"))
    assert p.stats.subset_problems == 0


async def test_warm_requests_complete_without_suspending() -> None:
    """When every spec is cached, filter and prioritize never yield to the event loop:
    no awaits, no I/O, no locks on the request path."""
    store = store_with({"a": fast("a"), "b": old("b")})
    p = Policy(policy_config(), store, FakeSource({APP: PREFERRED_FALLBACK}))
    for call in (p.filter(pod(APP), nodes("a", "b")), p.prioritize(pod(APP), nodes("a", "b"))):
        with pytest.raises(StopIteration):
            call.send(None)


def test_bounded_dict_drops_the_oldest_entry() -> None:
    from extender._util import BoundedDict

    bounded: BoundedDict[str, int] = BoundedDict(2)
    bounded.put("a", 1)
    bounded.put("b", 2)
    bounded.put("a", 3)  # replacing a key evicts nothing
    assert dict(bounded) == {"a": 3, "b": 2}
    bounded.put("c", 4)
    assert dict(bounded) == {"b": 2, "c": 4}
