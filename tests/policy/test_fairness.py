"""One pod cannot stall the others: a heavy spec's first evaluation shares the event loop.

Ordering, not timing: a light pod's filter sent while a heavy spec is being evaluated for
the first time must be answered before the heavy one is.
"""

from __future__ import annotations

import asyncio

from extender.policy.decide import Policy
from tests.policy.helpers import (
    AVX512,
    FakeSource,
    features,
    nodes,
    pod,
    policy_config,
    store_with,
)

HEAVY_IMAGE = "registry.example/heavy:1"
LIGHT_IMAGE = "registry.example/light:1"
NODE_TYPES = 40


def heavy_spec(sets: int = 16, rules: int = 4, expressions: int = 4) -> str:
    """A spec well within the default limits whose every set reads many features and fails
    late, so that each node configuration costs a full evaluation."""
    lines = ["version: v1alpha1", "compatibilities:"]
    for s in range(sets):
        lines += [f"- description: set{s}", "  rules:"]
        for r in range(rules):
            lines += [
                f"  - name: r{s}-{r}",
                "    matchAny:",
            ]
            for e in range(expressions):
                lines += [
                    "    - matchFeatures:",
                    "      - feature: kernel.config",
                    "        matchExpressions:",
                    f"          OPTION_{s}_{r}_{e}: {{op: InRegexp, value: ['^(y|m)$', 'x{e}']}}",
                ]
    return "\n".join(lines) + "\n"


def node_types() -> dict[str, object]:
    """NODE_TYPES distinct hardware configurations (their kernel configs differ)."""
    return {
        f"n{i}": features(
            f"n{i}",
            attributes={"kernel.config": {f"OTHER_{i}_{k}": "y" for k in range(50)}},
            flags={"cpu.cpuid": ["AVX512F"]},
        )
        for i in range(NODE_TYPES)
    }


async def test_a_light_filter_is_answered_while_a_heavy_spec_is_evaluated() -> None:
    cluster = node_types()
    source = FakeSource({HEAVY_IMAGE: heavy_spec(), LIGHT_IMAGE: AVX512})
    policy = Policy(policy_config(), store_with(cluster), source)  # type: ignore[arg-type]
    candidates = nodes(*cluster)
    # Warm the light spec, so its filter is memoised work only.
    await policy.filter(pod(LIGHT_IMAGE, name="warm"), candidates)

    finished: list[str] = []

    async def run(name: str, image: str) -> None:
        await policy.filter(pod(image, name=name), candidates)
        finished.append(name)

    heavy = asyncio.create_task(run("heavy", HEAVY_IMAGE))
    await asyncio.sleep(0)  # the heavy filter starts evaluating
    light = asyncio.create_task(run("light", LIGHT_IMAGE))
    await asyncio.gather(heavy, light)
    assert finished == ["light", "heavy"]
