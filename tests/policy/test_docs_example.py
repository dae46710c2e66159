"""docs/semantics.md's worked example is what the policy answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from extender.policy.decide import Policy
from extender.server.protocol import (
    FilterRequest,
    decode_preemption_args,
    encode_filter_result,
    encode_preemption_result,
    encode_priorities,
)
from tests.policy.helpers import FakeSource, features, naming_config, nodes, pod, store_with

DOC = Path(__file__).resolve().parents[2] / "docs" / "semantics.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


async def test_worked_example_matches_the_policy() -> None:
    spec = blocks("yaml")[0]
    filter_json, prioritize_json, preempt_args, preempt_json = blocks("json")[:4]
    cluster = {
        "node-a": features(
            flags={"kernel.loadedmodule": ["vfio_pci"]},
            attributes={"kernel.version": {"major": "6", "minor": "8"}},
        ),
        "node-b": features(attributes={"kernel.version": {"major": "5", "minor": "15"}}),
        "node-c": features(attributes={"kernel.version": {"major": "4", "minor": "18"}}),
    }
    image = "registry.example/dpdk-app:2.1"
    # The page shows the reasons as --filter-reasons=always answers them.
    policy = Policy(naming_config(), store_with(cluster), FakeSource({image: spec}))
    candidates = nodes("node-a", "node-b", "node-c", "node-d")
    decision = await policy.filter(pod(image), candidates)
    request = FilterRequest(pod(image), list(candidates), names_mode=True, nodes_mode=False)
    answer = encode_filter_result(request, decision.passing, unresolvable=decision.unresolvable)
    assert json.loads(answer) == json.loads(filter_json)
    priorities = await policy.prioritize(pod(image), candidates)
    scores = encode_priorities(priorities.names, priorities.scores)
    assert json.loads(scores) == json.loads(prioritize_json)
    args = decode_preemption_args(preempt_args.encode())
    keep = await policy.preempt(args.pod, list(args.victims))
    answer = encode_preemption_result({node: args.victims[node] for node in keep})
    assert json.loads(answer) == json.loads(preempt_json)
