"""No policy bypass (issue 22): a pod whose ``artifacts`` annotation names a reference the
extender cannot use (unparseable, or on a host the host policy refuses) is rejected with a
reason, whatever ``--on-registry-error`` says; it never becomes "passes everywhere".

The source is the real one: a RegistrySource over a RegistryClient with the default host
policy. Nothing here connects anywhere: both references are refused before any lookup."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from extender.artifacts.registry_source import RegistrySource
from extender.policy.decide import Policy
from extender.policy.pods import Mode, PolicyConfig, RegistryErrorPolicy
from extender.registry.client import RegistryClient
from extender.registry.hosts import HostPolicy
from extender.server.config import Settings
from tests.policy.helpers import fast, minimal, nodes, pod, policy_config, store_with

IMAGE = "registry.example/app:1"
ALL = nodes("fast", "minimal")
UNUSABLE = {
    "169.254.169.254/evil:v1": "refused by the extender's host policy",
    "127.1:5000/evil:v1": "refused by the extender's host policy",
    "Not A Reference!": "not a valid image reference",
}


def _annotated(reference: str, mode: str | None = None) -> dict[str, str]:
    annotations = {"image-compat.io/artifacts": json.dumps({"c0": reference})}
    if mode is not None:
        annotations["image-compat.io/mode"] = mode
    return annotations


async def _policy(config: PolicyConfig) -> tuple[Policy, RegistryClient]:
    client = RegistryClient(policy=HostPolicy())
    await client.__aenter__()
    source = RegistrySource(client, Settings().artifact_cache_config())
    cluster = {"fast": fast("fast"), "minimal": minimal("minimal")}
    return Policy(config, store_with(cluster), source), client


@pytest.mark.parametrize("on_error", list(RegistryErrorPolicy))
@pytest.mark.parametrize("reference", sorted(UNUSABLE))
async def test_an_unusable_artifact_rejects_every_node_in_enforce(
    reference: str, on_error: RegistryErrorPolicy
) -> None:
    config = policy_config(allowed_modes=frozenset({Mode.ENFORCE}), on_registry_error=on_error)
    policy, client = await _policy(config)
    try:
        decision = await policy.filter(pod(IMAGE, annotations=_annotated(reference)), ALL)
    finally:
        await client.__aexit__(None, None, None)
    assert decision.passing == ()
    for reason in decision.unresolvable.values():
        assert reason.startswith(
            f"image-compat: annotation image-compat.io/artifacts: cannot use {reference}: "
        )
        assert reason.endswith(UNUSABLE[reference])
    assert policy.stats.rejections["invalid_annotation"] == len(ALL)


async def test_prefer_and_off_stay_as_they_are_with_an_unusable_artifact() -> None:
    config = replace(policy_config(), on_registry_error=RegistryErrorPolicy.IGNORE)
    policy, client = await _policy(config)
    try:
        for mode in ("prefer", "off"):
            annotated = pod(IMAGE, annotations=_annotated("169.254.169.254/evil:v1", mode))
            assert (await policy.filter(annotated, ALL)).passing == (0, 1)
            priorities = await policy.prioritize(annotated, ALL)
            assert priorities.listed() == [] and not priorities.scores
    finally:
        await client.__aexit__(None, None, None)
