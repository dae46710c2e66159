"""The golden request: a filter body kube-scheduler v1.34 really sent (nodeCacheCapable).

Captured by ``tests/e2e/test_golden_request.py`` from the real kube-scheduler running the
shipped profile (``IMAGE_COMPAT_UPDATE_GOLDEN=1`` refreshes it); names and times normalised.
"""

from __future__ import annotations

import json
from pathlib import Path

from extender.policy.pods import plan_pod
from extender.server.protocol import decode_extender_args
from tests.policy.helpers import policy_config

GOLDEN = Path(__file__).resolve().parent / "data" / "kube-scheduler-filter-request.json"


def test_golden_filter_request_decodes() -> None:
    body = GOLDEN.read_bytes()
    raw = json.loads(body)
    args = decode_extender_args(body)
    assert args.names_mode and not args.nodes_mode
    assert args.names == raw["NodeNames"] and args.nodes == ()
    assert args.pod.metadata is not None and args.pod.metadata.name == "golden"


def test_golden_pod_plans_as_ours_with_both_images_and_tags() -> None:
    args = decode_extender_args(GOLDEN.read_bytes())
    plan = plan_pod(args.pod, policy_config())
    assert plan.ours and not plan.problem
    assert plan.tags == frozenset({"cuda"})
    assert [r.containers for r in plan.requirements] == [("app",), ("sidecar",)]
    assert all(r.image.startswith("registry.example/e2e/") for r in plan.requirements)
