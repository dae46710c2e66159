"""GET /metrics: it parses, holds every documented metric after a few requests, counts what
happened, and never labels a series with a pod, node or image name."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from extender.policy.decide import Policy
from extender.server.app import create_app
from extender.server.config import Settings
from extender.server.metrics import METRICS, Metrics
from tests.policy.helpers import (
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    old,
    policy_config,
    store_with,
)
from tests.server.test_app import APP, POD

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def names_args(*names: str, pod: object = POD) -> dict[str, object]:
    return {"Pod": pod, "Nodes": None, "NodeNames": list(names)}


async def scrape(client: TestClient[web.Request, web.Application]) -> tuple[str, Samples]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def test_every_documented_metric_after_a_few_requests(aiohttp_client: Any) -> None:
    store = store_with({"fast-1": fast("fast-1"), "old-1": old("old-1")})
    app = create_app(
        Settings(spec_wait_budget=0.01),
        feature_store=store,
        artifact_source=FakeSource({APP: PREFERRED_FALLBACK}),
    )
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    for _ in range(3):
        response = await client.post("/filter", json=names_args("fast-1", "old-1", "gone-1"))
        assert response.status == 200
    assert (await client.post("/prioritize", json=names_args("fast-1", "old-1"))).status == 200
    assert (await client.post("/filter", data=b"junk")).status == 400
    foreign = {"metadata": {"name": "x"}, "spec": {"schedulerName": "default-scheduler"}}
    await client.post("/filter", json=names_args("fast-1", pod=foreign))
    invalid = {
        "metadata": {"name": "y", "annotations": {"image-compat.io/mode": "loose"}},
        "spec": {"schedulerName": "image-compat-scheduler", "containers": [{"image": APP}]},
    }
    await client.post("/filter", json=names_args("fast-1", "old-1", pod=invalid))

    text, samples = await scrape(client)
    families = {f.name for f in text_string_to_metric_families(text)}
    for metric in METRICS:
        assert metric.family in families, metric.name
        for label, allowed in metric.labels:
            if not allowed:  # values from the cluster (namespaces): tests/e2e/test_drift.py
                continue
            seen = {
                dict(labels)[label]
                for name, labels in samples
                if name.startswith(metric.family) and label in dict(labels)
            }
            assert seen == set(allowed), (metric.name, label, seen)

    duration = "image_compat_request_duration_seconds_count"
    assert value(samples, duration, verb="filter") == 6
    assert value(samples, duration, verb="prioritize") == 1
    assert value(samples, "image_compat_requests_total", verb="filter", outcome="ok") == 5
    assert value(samples, "image_compat_requests_total", verb="filter", outcome="bad_request") == 1
    assert value(samples, "image_compat_pods_seen_total", mode="enforce") == 3
    assert value(samples, "image_compat_pods_seen_total", mode="not_ours") == 1
    assert value(samples, "image_compat_pods_seen_total", mode="invalid") == 1
    rejected = "image_compat_nodes_rejected_total"
    assert value(samples, rejected, reason="incompatible") == 3
    assert value(samples, rejected, reason="no_features") == 3
    assert value(samples, rejected, reason="invalid_annotation") == 2
    # Two distinct node configurations and a node without features: 3 evaluations. The
    # second and third filter answer from filter's node table, without the memo; prioritize
    # fills its own table from the memo: 2 hits.
    assert value(samples, "image_compat_memo_misses_total") == 3
    assert value(samples, "image_compat_memo_hits_total") == 2
    assert value(samples, "image_compat_feature_store_synced") == 1
    assert value(samples, "image_compat_feature_store_nodes") == 2
    assert value(samples, "image_compat_artifact_source_ready") == 1
    # Bounded cardinality: no pod, node or image name anywhere in the exposition.
    for name in ("fast-1", "old-1", "gone-1", "web", "shop", APP):
        assert f'"{name}"' not in text


async def test_unavailable_calls_are_counted_as_such(aiohttp_client: Any) -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=asyncio.Event())
    app = create_app(
        Settings(spec_wait_budget=0.01),
        feature_store=store_with({"fast-1": fast("fast-1")}),
        artifact_source=source,
    )
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    response = await client.post("/filter", json=names_args("fast-1"))
    assert (await response.json())["Error"]
    _, samples = await scrape(client)
    assert value(samples, "image_compat_requests_total", verb="filter", outcome="unavailable") == 1
    assert value(samples, "image_compat_spec_waits_total") == 1
    assert value(samples, "image_compat_spec_wait_timeouts_total") == 1


def test_unknown_labels_are_ignored_and_relists_are_read_live() -> None:
    relists = {"nodefeatures": 0, "nodes": 0}
    store = store_with({})
    policy = Policy(policy_config(), store, FakeSource({}))
    metrics = Metrics(policy, store, FakeSource({}), relists=lambda: relists)
    metrics.observe("unbind", "ok", 0.1)  # not a verb we count: no new series
    metrics.observe("filter", "teapot", 0.1)
    relists["nodes"] += 2
    text = metrics.exposition().decode()
    assert "unbind" not in text and "teapot" not in text
    assert 'image_compat_feature_relists_total{kind="nodes"} 2.0' in text


async def test_rejections_are_counted_per_reason_class() -> None:
    from tests.policy.helpers import NUMA, features, nodes, pod

    cluster = {
        "bad-1": features(attributes={"memory.numa": {"node_count": "two"}}),
        "bad-2": features(attributes={"memory.numa": {"node_count": "three"}}),
        "one-socket": features(attributes={"memory.numa": {"node_count": "1"}}),
        "good": features(attributes={"memory.numa": {"node_count": "2"}}),
    }
    policy = Policy(policy_config(), store_with(cluster), FakeSource({APP: NUMA}))
    offered = nodes("bad-1", "bad-2", "one-socket", "good", "unknown")
    decision = await policy.filter(pod(APP), offered)
    # "good" passes, so the answer names no rejected node; the metrics count them all.
    assert decision.passing == (3,) and decision.unresolvable == {}
    assert policy.stats.rejections == {
        "incompatible": 1,
        "no_features": 1,
        "evaluation_error": 2,
        "invalid_spec": 0,
        "invalid_annotation": 0,
        "lower_fit": 0,
    }
    assert policy.stats.nodes_rejected == 4
