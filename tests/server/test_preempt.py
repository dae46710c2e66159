"""POST /preempt: the scheduler's preemption candidates, cut to the nodes filter would pass.

Both wire shapes (victims by UID with ``nodeCacheCapable: true``, full Pods without), the
pods the policy does not judge (every candidate kept), and failing closed: when the policy
cannot decide, no candidate is kept, so no pod is evicted on a node nobody checked.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from extender.nodes.store import FeatureStore
from extender.server.app import create_app
from extender.server.config import Settings
from extender.server.routes import POLICY
from tests.policy.helpers import PREFERRED_FALLBACK, FakeSource, store_with
from tests.server.test_app import APP, CLUSTER, POD
from tests.server.test_metrics import scrape, value

Client = TestClient[web.Request, web.Application]

# fast and minimal are compatible with APP's spec, old is not, gone has no features.
META = {
    "fast": {"Pods": [{"UID": "u-fast-1"}, {"UID": "u-fast-2"}], "NumPDBViolations": 1},
    "old": {"Pods": [{"UID": "u-old-1"}], "NumPDBViolations": 0},
    "minimal": {"Pods": [], "NumPDBViolations": 0},
    "gone": {"Pods": [{"UID": "u-gone-1"}], "NumPDBViolations": 0},
}


async def client_for(
    aiohttp_client: Any,
    *,
    store: FeatureStore | None = None,
    source: FakeSource | None = None,
) -> Client:
    app = create_app(
        Settings(spec_wait_budget=0.01),
        feature_store=store if store is not None else store_with(CLUSTER),
        artifact_source=source if source is not None else FakeSource({APP: PREFERRED_FALLBACK}),
    )
    client: Client = await aiohttp_client(app)
    return client


def meta_args(pod: object = POD, victims: object = META) -> dict[str, object]:
    """ExtenderPreemptionArgs as kube-scheduler sends them with nodeCacheCapable: true."""
    return {"Pod": pod, "NodeNameToVictims": None, "NodeNameToMetaVictims": victims}


def victim(uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"pod-{uid}", "namespace": "shop", "uid": uid},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "priority": 10},
        "status": {"phase": "Running"},
    }


async def test_meta_victims_of_incompatible_nodes_are_dropped(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    response = await client.post("/preempt", json=meta_args())
    assert response.status == 200
    assert response.content_type == "application/json"
    # Exactly the Go shape: one key, the kept nodes in request order, victims as sent.
    assert await response.read() == (
        b'{"NodeNameToMetaVictims":{'
        b'"fast":{"Pods":[{"UID":"u-fast-1"},{"UID":"u-fast-2"}],"NumPDBViolations":1},'
        b'"minimal":{"Pods":[],"NumPDBViolations":0}}}'
    )


async def test_full_victims_are_answered_by_uid(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    body = {
        "Pod": POD,
        "NodeNameToVictims": {
            "fast": {"Pods": [victim("a"), victim("b")], "NumPDBViolations": 2},
            "old": {"Pods": [victim("c")], "NumPDBViolations": 0},
        },
        "NodeNameToMetaVictims": None,
    }
    response = await client.post("/preempt", json=body)
    assert response.status == 200
    assert await response.json() == {
        "NodeNameToMetaVictims": {
            "fast": {"Pods": [{"UID": "a"}, {"UID": "b"}], "NumPDBViolations": 2}
        }
    }


def _pod(scheduler: str = "image-compat-scheduler", **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"schedulerName": scheduler, "containers": [{"name": "app", "image": APP}]},
    }


@pytest.mark.parametrize(
    "pod",
    [
        pytest.param(_pod("default-scheduler"), id="not-ours"),
        pytest.param(_pod(**{"image-compat.io/mode": "off"}), id="mode-off"),
        pytest.param(_pod(**{"image-compat.io/mode": "prefer"}), id="mode-prefer"),
        pytest.param(
            {**_pod(), "spec": {"schedulerName": "image-compat-scheduler", "containers": []}},
            id="no-images",
        ),
    ],
)
async def test_pods_filter_does_not_judge_keep_every_candidate(
    aiohttp_client: Any, pod: dict[str, Any]
) -> None:
    client = await client_for(aiohttp_client)
    response = await client.post("/preempt", json=meta_args(pod))
    assert response.status == 200
    assert (await response.json())["NodeNameToMetaVictims"] == META


async def test_invalid_annotation_keeps_no_candidate(aiohttp_client: Any) -> None:
    # filter rejects every node for such a pod, so no node is worth evicting for.
    client = await client_for(aiohttp_client)
    pod = _pod(**{"image-compat.io/mode": "loose"})
    response = await client.post("/preempt", json=meta_args(pod))
    assert await response.json() == {"NodeNameToMetaVictims": {}}


async def test_features_not_synced_fails_closed(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, store=store_with({}, synced=False))
    response = await client.post("/preempt", json=meta_args())
    assert response.status == 200
    assert await response.json() == {"NodeNameToMetaVictims": {}}
    _, samples = await scrape(client)
    total = "image_compat_requests_total"
    assert value(samples, total, verb="preempt", outcome="unavailable") == 1


async def test_spec_not_loaded_fails_closed(aiohttp_client: Any) -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=asyncio.Event())
    client = await client_for(aiohttp_client, source=source)
    response = await client.post("/preempt", json=meta_args())
    assert response.status == 200
    assert await response.json() == {"NodeNameToMetaVictims": {}}


async def test_no_candidates_and_path_prefix(aiohttp_client: Any) -> None:
    app = create_app(
        Settings(path_prefix="/scheduler/", spec_wait_budget=0.01),
        feature_store=store_with(CLUSTER),
        artifact_source=FakeSource({APP: PREFERRED_FALLBACK}),
    )
    client: Client = await aiohttp_client(app)
    body = {"Pod": POD, "NodeNameToVictims": None, "NodeNameToMetaVictims": None}
    response = await client.post("/scheduler/preempt", json=body)
    assert await response.json() == {"NodeNameToMetaVictims": {}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty request body"),
        (b"{", "truncated"),
        (b'{"Pod": null, "NodeNameToMetaVictims": {}}', "Pod is missing or null"),
        (b'{"Pod": {}, "NodeNameToMetaVictims": {"a": {"Pods": 3}}}', "$.NodeNameToMetaVictims"),
        (
            b'{"Pod": {}, "NodeNameToVictims": {"a": {"Pods": [{"metadata": {}}]}}}',
            "metadata.uid is missing",
        ),
    ],
)
async def test_bad_bodies_get_400(aiohttp_client: Any, body: bytes, message: str) -> None:
    client = await client_for(aiohttp_client)
    response = await client.post("/preempt", data=body)
    assert response.status == 400
    assert message in (await response.json())["error"]


async def test_preempt_is_counted_apart_from_filter(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    for _ in range(2):
        assert (await client.post("/preempt", json=meta_args())).status == 200
    stats = client.app[POLICY].stats
    assert (stats.preempt_requests, stats.filter_requests, stats.nodes_rejected) == (2, 0, 0)
    text, samples = await scrape(client)
    duration = "image_compat_request_duration_seconds_count"
    assert value(samples, duration, verb="preempt") == 2
    assert value(samples, "image_compat_requests_total", verb="preempt", outcome="ok") == 2
    assert json.dumps("u-fast-1") not in text
