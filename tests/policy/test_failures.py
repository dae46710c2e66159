"""What failures decide: invalid spec, node-side errors (see test_verdicts), feature store
not synced, registry/source failure (fail or ignore), spec not loaded within the budget."""

from __future__ import annotations

import asyncio
import logging

import pytest

from extender.artifacts.types import PullContext, SpecKey, SpecLookup
from extender.policy.decide import Policy, PolicyUnavailableError
from extender.policy.pods import PolicyConfig, RegistryErrorPolicy
from tests.policy.helpers import (
    AVX512,
    INVALID_WEIGHT,
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    minimal,
    nodes,
    pod,
    policy_config,
    scores,
    store_with,
)

APP = "registry.example/app:1"
BAD = "registry.example/bad:1"
DOWN = "registry.example/down:1"
CLUSTER = {"fast": fast("fast"), "minimal": minimal("minimal")}
ALL = nodes("fast", "minimal")


def make(source: FakeSource, config: PolicyConfig | None = None, *, synced: bool = True) -> Policy:
    return Policy(config or policy_config(), store_with(CLUSTER, synced=synced), source)


# -- invalid spec --------------------------------------------------------------------------------


async def test_invalid_spec_rejects_every_node_with_path_and_problem() -> None:
    p = make(FakeSource({APP: PREFERRED_FALLBACK, BAD: INVALID_WEIGHT}))
    decision = await p.filter(pod(APP, BAD), ALL)
    assert decision.passing == ()
    reason = (
        f"image-compat: invalid spec for {BAD}: compatibilities[0].weight: 101 is outside 0..100"
    )
    assert decision.unresolvable == {"fast": reason, "minimal": reason}


async def test_invalid_spec_scores_nothing_but_other_images_still_score() -> None:
    p = make(FakeSource({APP: PREFERRED_FALLBACK, BAD: INVALID_WEIGHT}))
    # fits 11 and 2 score 10 and 2, shifted by the lowest: 8 and 0
    assert scores(await p.prioritize(pod(APP, BAD), ALL)) == [8, 0]


async def test_invalid_spec_wins_over_a_source_failure() -> None:
    source = FakeSource({DOWN: SpecLookup.failed("503 Service Unavailable"), BAD: INVALID_WEIGHT})
    decision = await make(source).filter(pod(DOWN, BAD), ALL)
    assert decision.passing == ()


# -- feature store not synced --------------------------------------------------------------------


async def test_store_not_synced_is_an_error_for_filter_and_prioritize() -> None:
    p = make(FakeSource({APP: PREFERRED_FALLBACK}), synced=False)
    with pytest.raises(
        PolicyUnavailableError, match=r"node features not synced yet \(waiting for test\)"
    ):
        await p.filter(pod(APP), ALL)
    with pytest.raises(PolicyUnavailableError):
        await p.prioritize(pod(APP), ALL)


async def test_store_not_synced_does_not_matter_when_no_features_are_needed() -> None:
    p = make(FakeSource({APP: PREFERRED_FALLBACK}), synced=False)
    assert (await p.filter(pod("no-spec:1"), ALL)).passing == (0, 1)
    assert (await p.filter(pod(APP, scheduler="default-scheduler"), ALL)).passing == (0, 1)
    assert (await p.prioritize(pod("no-spec:1"), ALL)).listed() == []


# -- registry / source failure -------------------------------------------------------------------


async def test_source_failure_is_an_error_by_default() -> None:
    p = make(FakeSource({DOWN: SpecLookup.failed("GET /v2/: 503 Service Unavailable")}))
    with pytest.raises(PolicyUnavailableError) as caught:
        await p.filter(pod(DOWN), ALL)
    assert str(caught.value) == (
        f"image-compat: cannot load spec for {DOWN}: GET /v2/: 503 Service Unavailable"
    )
    assert p.stats.source_failures == 1


async def test_source_failure_ignored_treats_the_image_as_having_no_spec(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = policy_config(on_registry_error=RegistryErrorPolicy.IGNORE)
    source = FakeSource({DOWN: SpecLookup.failed("timeout"), APP: PREFERRED_FALLBACK})
    p = make(source, config)
    with caplog.at_level(logging.WARNING, logger="extender.policy"):
        assert (await p.filter(pod(DOWN), ALL)).passing == (0, 1)
    assert f"no spec for {DOWN} (ignored: timeout)" in caplog.text
    assert scores(await p.prioritize(pod(DOWN, APP), ALL)) == [8, 0]


async def test_source_failure_in_prioritize_only_zeroes_that_image() -> None:
    source = FakeSource({DOWN: SpecLookup.failed("timeout"), APP: PREFERRED_FALLBACK})
    assert scores(await make(source).prioritize(pod(DOWN, APP), ALL)) == [8, 0]


async def test_a_source_that_raises_counts_as_a_failure() -> None:
    class Broken(FakeSource):
        async def load(self, key: SpecKey, context: PullContext) -> SpecLookup:
            raise RuntimeError("boom")

    p = make(Broken({APP: PREFERRED_FALLBACK}, cached=False))
    with pytest.raises(PolicyUnavailableError, match="RuntimeError: boom"):
        await p.filter(pod(APP), ALL)


# -- spec not yet loaded -------------------------------------------------------------------------


async def test_spec_not_loaded_within_budget_is_an_error_and_loading_continues() -> None:
    gate = asyncio.Event()
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=gate)
    p = make(source, policy_config(spec_wait_budget=0.01))
    with pytest.raises(PolicyUnavailableError, match=f"spec for {APP} not loaded yet"):
        await p.filter(pod(APP), ALL)
    assert p.stats.spec_wait_timeouts == 1
    gate.set()
    for _ in range(10):  # let the background load finish
        await asyncio.sleep(0)
    assert (await p.filter(pod(APP), ALL)).passing == (0, 1)
    assert len(source.load_calls) == 1


async def test_spec_loaded_within_budget_is_used() -> None:
    gate = asyncio.Event()
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=gate)
    p = make(source, policy_config(spec_wait_budget=30))
    asyncio.get_running_loop().call_soon(gate.set)
    assert (await p.filter(pod(APP), ALL)).passing == (0, 1)


async def test_loads_are_single_flight() -> None:
    gate = asyncio.Event()
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=gate)
    p = make(source, policy_config(spec_wait_budget=30))
    calls = [asyncio.ensure_future(p.filter(pod(APP, name=f"p{i}"), ALL)) for i in range(5)]
    await asyncio.sleep(0)
    gate.set()
    for decision in await asyncio.gather(*calls):
        assert decision.passing == (0, 1)
    assert source.load_calls == [SpecKey(APP)]


async def test_zero_budget_answers_at_once_but_starts_the_load() -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False)
    p = make(source, policy_config(spec_wait_budget=0))
    with pytest.raises(PolicyUnavailableError, match="waited 0 ms"):
        await p.filter(pod(APP), ALL)
    await asyncio.sleep(0)
    assert source.load_calls == [SpecKey(APP)]


async def test_prioritize_scores_without_a_spec_that_is_not_loaded() -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=asyncio.Event())
    p = make(source, policy_config(spec_wait_budget=0.01))
    priorities = await p.prioritize(pod(APP), ALL)
    assert priorities.listed() == [] and not priorities.scores
    await p.aclose()


async def test_prefer_mode_prefetches_for_prioritize() -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK, "x:1": AVX512}, cached=False)
    p = make(source)
    prefer = pod(APP, annotations={"image-compat.io/mode": "prefer"})
    assert (await p.filter(prefer, ALL)).passing == (0, 1)
    await asyncio.sleep(0)
    assert source.load_calls == [SpecKey(APP)]
    assert (await p.prioritize(prefer, ALL)).listed() == [("fast", 8)]
    p.prefetch(pod("x:1"))
    await asyncio.sleep(0)
    assert SpecKey("x:1") in source.load_calls


async def test_aclose_cancels_loads_in_flight() -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=asyncio.Event())
    p = make(source, policy_config(spec_wait_budget=0))
    with pytest.raises(PolicyUnavailableError):
        await p.filter(pod(APP), ALL)
    await p.aclose()
    assert not p._waits


async def test_pull_context_reaches_the_source() -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False)
    p = make(source, policy_config(spec_wait_budget=30))
    await p.filter(pod(APP, namespace="team"), ALL)
    assert PullContext("team", ()) in source.contexts
