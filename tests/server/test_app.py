"""The app through aiohttp's test client: routes, both node modes, readiness, and bad input
(each gets a clear answer and the server keeps serving)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from extender.artifacts.spec_map import SpecMapError
from extender.artifacts.types import ArtifactSource, PullContext, SpecKey, SpecLookup
from extender.nodes.store import FeatureStore
from extender.policy.pods import FilterReasons
from extender.server.app import create_app
from extender.server.config import ArtifactSourceKind, FeatureSourceKind, Settings
from extender.server.routes import POLICY
from tests.policy.helpers import (
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    minimal,
    old,
    store_with,
)

APP = "registry.example/app:1"
ALWAYS = FilterReasons.ALWAYS
CLUSTER = {"fast": fast("fast"), "minimal": minimal("minimal"), "old": old("old")}
POD = {
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "schedulerName": "image-compat-scheduler",
        "containers": [{"name": "app", "image": APP}],
    },
}
NODE = '{{"metadata":{{"name":"{name}","labels":{{"kubernetes.io/os":"linux"}}}},"status":{{}}}}'

MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def make_client(aiohttp_client: Any) -> MakeClient:
    async def make(
        settings: Settings | None = None,
        store: FeatureStore | None = None,
        source: ArtifactSource | None = None,
    ) -> TestClient[web.Request, web.Application]:
        app = create_app(
            settings or Settings(spec_wait_budget=0.01),
            feature_store=store if store is not None else store_with(CLUSTER),
            artifact_source=source if source is not None else FakeSource({APP: PREFERRED_FALLBACK}),
        )
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return make


def names_args(*names: str, pod: object = POD) -> dict[str, object]:
    return {"Pod": pod, "Nodes": None, "NodeNames": list(names)}


async def assert_still_serving(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.post("/filter", json=names_args("fast", "old"))
    assert response.status == 200
    assert (await response.json())["NodeNames"] == ["fast"]


async def test_filter_names_mode(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post("/filter", json=names_args("fast", "minimal", "old", "gone"))
    assert response.status == 200
    assert response.content_type == "application/json"
    # Nodes pass: the rejected ones are left out (--filter-reasons=when-all-rejected).
    assert await response.read() == (
        b'{"Nodes":null,"NodeNames":["fast","minimal"],"FailedNodes":{},'
        b'"FailedAndUnresolvableNodes":{},"Error":""}'
    )
    # None passes: each is named, with why.
    response = await client.post("/filter", json=names_args("old", "gone"))
    assert await response.read() == (
        b'{"Nodes":null,"NodeNames":[],"FailedNodes":{},'
        b'"FailedAndUnresolvableNodes":{"old":"image-compat: kernel.loadedmodule: feature missing",'
        b'"gone":"image-compat: no NFD features"},"Error":""}'
    )


async def test_filter_reasons_always_names_every_rejected_node(make_client: MakeClient) -> None:
    client = await make_client(Settings(spec_wait_budget=0.01, filter_reasons=ALWAYS))
    response = await client.post("/filter", json=names_args("fast", "minimal", "old", "gone"))
    assert (await response.json())["FailedAndUnresolvableNodes"] == {
        "old": "image-compat: kernel.loadedmodule: feature missing",
        "gone": "image-compat: no NFD features",
    }


async def test_filter_full_nodes_mode_returns_items_unchanged(make_client: MakeClient) -> None:
    client = await make_client(Settings(spec_wait_budget=0.01, filter_reasons=ALWAYS))
    items = [NODE.format(name=n) for n in ("fast", "old", "minimal")]
    body = (
        '{"Pod":' + json.dumps(POD) + ',"Nodes":{"metadata":{},"items":[' + ",".join(items) + "]},"
        '"NodeNames":null}'
    )
    response = await client.post("/filter", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200
    raw = await response.read()
    assert raw.startswith(
        b'{"Nodes":{"metadata":{},"items":[' + items[0].encode() + b"," + items[2].encode() + b"]},"
        b'"NodeNames":null,'
    )
    assert json.loads(raw)["FailedAndUnresolvableNodes"] == {
        "old": "image-compat: kernel.loadedmodule: feature missing"
    }


async def test_prioritize(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post("/prioritize", json=names_args("fast", "minimal", "old"))
    assert response.status == 200
    # old scores the lowest, 0: left out.
    assert await response.read() == b'[{"Host":"fast","Score":10},{"Host":"minimal","Score":2}]'
    # Without old, minimal's 2 is the lowest: taken off fast too, minimal left out.
    response = await client.post("/prioritize", json=names_args("fast", "minimal"))
    assert await response.read() == b'[{"Host":"fast","Score":8}]'
    # Every candidate alike: nothing to list.
    response = await client.post("/prioritize", json=names_args("minimal"))
    assert response.status == 200 and await response.read() == b"[]"


async def test_filter_best_fit_keeps_the_highest_fit_tier(make_client: MakeClient) -> None:
    client = await make_client(Settings(spec_wait_budget=0.01, filter_reasons=ALWAYS))
    args = names_args("minimal", "fast", "old", "fast-2")
    response = await client.post("/filter-best-fit", json=args)
    assert response.status == 200
    answer = await response.json()
    assert answer["NodeNames"] == ["fast"]  # fast-2 has no NodeFeature: rejected as usual
    failed = answer["FailedAndUnresolvableNodes"]
    assert sorted(failed) == ["fast-2", "minimal", "old"]
    # Three reasons: a lower fit, incompatible, no NodeFeature.
    assert len(set(failed.values())) == 3
    assert all(reason.startswith("image-compat: ") for reason in failed.values())
    # The plain filter still passes both compatible nodes.
    plain = await (await client.post("/filter", json=args)).json()
    assert plain["NodeNames"] == ["minimal", "fast"]
    metrics = await (await client.get("/metrics")).text()
    assert 'image_compat_requests_total{outcome="ok",verb="filter-best-fit"} 1.0' in metrics
    assert 'image_compat_nodes_rejected_total{reason="lower_fit"} 1.0' in metrics
    # The plain filter's rejections of old and fast-2 counted too, by their own classes.
    assert 'image_compat_nodes_rejected_total{reason="incompatible"} 2.0' in metrics
    assert 'image_compat_nodes_rejected_total{reason="no_features"} 2.0' in metrics


async def test_filter_best_fit_answers_an_error_as_filter_does(make_client: MakeClient) -> None:
    client = await make_client(store=store_with({}, synced=False))
    response = await client.post("/filter-best-fit", json=names_args("fast"))
    assert response.status == 200
    answer = await response.json()
    assert answer["NodeNames"] == [] and "not synced" in answer["Error"]


async def test_path_prefix(make_client: MakeClient) -> None:
    client = await make_client(Settings(path_prefix="/scheduler/"))
    assert (await client.post("/scheduler/filter", json=names_args("fast"))).status == 200
    assert (await client.post("/scheduler/prioritize", json=names_args("fast"))).status == 200
    missing = await client.post("/filter", json=names_args("fast"))
    assert missing.status == 404 and "error" in await missing.json()
    assert (await client.get("/healthz")).status == 200


async def test_health_and_readiness(make_client: MakeClient) -> None:
    client = await make_client()
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200 and await ready.json() == {"status": "ready", "nodes": 3}


async def test_not_ready_until_sources_have_loaded(make_client: MakeClient) -> None:
    source = FakeSource({APP: PREFERRED_FALLBACK})
    source.ready = False
    client = await make_client(store=store_with({}, synced=False), source=source)
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "not ready", "waiting": ["test", "artifact source"]}


async def test_not_synced_is_200_with_error_for_filter_and_503_for_prioritize(
    make_client: MakeClient,
) -> None:
    client = await make_client(store=store_with({}, synced=False))
    response = await client.post("/filter", json=names_args("fast"))
    assert response.status == 200
    assert await response.json() == {
        "Nodes": None,
        "NodeNames": [],
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": {},
        "Error": "image-compat: node features not synced yet (waiting for test)",
    }
    response = await client.post("/prioritize", json=names_args("fast"))
    assert response.status == 503
    assert "not synced" in (await response.json())["error"]


async def test_spec_not_loaded_is_200_with_error(make_client: MakeClient) -> None:
    import asyncio

    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=asyncio.Event())
    client = await make_client(source=source)
    response = await client.post("/filter", json=names_args("fast"))
    assert response.status == 200
    assert "not loaded yet" in (await response.json())["Error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty request body"),
        (b"{", "truncated"),
        (b"<xml/>", "JSON is malformed"),
        (b'"a string"', "Expected `object`"),
        (b'{"Pod": null, "NodeNames": ["a"]}', "Pod is missing or null"),
        (b'{"Pod": {}, "NodeNames": {"a": 1}}', "$.NodeNames"),
        (b'{"Pod": {"spec": {"schedulerName": 7}}, "NodeNames": []}', "$.Pod.spec.schedulerName"),
        (b'{"Pod": {}, "Nodes": {"items": [{"metadata": null}]}}', "metadata.name is missing"),
    ],
)
@pytest.mark.parametrize("verb", ["filter", "prioritize"])
async def test_bad_bodies_get_400_and_the_server_keeps_serving(
    make_client: MakeClient, verb: str, body: bytes, message: str
) -> None:
    client = await make_client()
    response = await client.post(f"/{verb}", data=body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert message in error
    assert "Traceback" not in error
    await assert_still_serving(client)


async def test_oversized_body_gets_413(make_client: MakeClient) -> None:
    client = await make_client(Settings(max_body_bytes=4096))
    huge = json.dumps(names_args(*(f"node-{i:05d}" for i in range(1000)))).encode()
    response = await client.post("/filter", data=huge)
    assert response.status == 413
    assert "4096" in (await response.json())["error"]
    await assert_still_serving(client)


async def test_ten_thousand_node_names(make_client: MakeClient) -> None:
    cluster = {f"node-{i:05d}": (fast, minimal, old)[i % 3](f"node-{i:05d}") for i in range(10_000)}
    client = await make_client(store=store_with(cluster))
    names = list(cluster)
    response = await client.post("/filter", json=names_args(*names))
    assert response.status == 200
    answer = await response.json()
    assert len(answer["NodeNames"]) == 6667 and not answer["FailedAndUnresolvableNodes"]
    response = await client.post("/prioritize", json=names_args(*names))
    scores = await response.json()
    # Fits 11, 2 and 0 score 10, 2 and 0: the third of nodes at 0 is left out.
    assert len(scores) == 6667 and {s["Score"] for s in scores} == {2, 10}
    assert [s["Host"] for s in scores] == [n for i, n in enumerate(names) if i % 3 != 2]
    assert (await client.get("/healthz")).status == 200


async def test_wrong_method_and_unknown_path_are_json(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get("/filter")
    assert response.status == 405 and "error" in await response.json()
    assert "POST" in response.headers["Allow"]
    response = await client.post("/nothing", json={})
    assert response.status == 404 and "error" in await response.json()


async def test_unexpected_error_is_500_without_a_traceback(make_client: MakeClient) -> None:
    class Exploding(FakeSource):
        def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None:
            raise RuntimeError("secret internal detail")

    client = await make_client(source=Exploding())
    response = await client.post("/filter", json=names_args("fast"))
    assert response.status == 500
    text = await response.text()
    assert "secret" not in text and "Traceback" not in text
    assert json.loads(text) == {"error": "internal error (see the extender's log)"}


async def test_foreign_pod_passes_through_the_server(make_client: MakeClient) -> None:
    client = await make_client()
    foreign = {**POD, "spec": {**POD["spec"], "schedulerName": "default-scheduler"}}  # type: ignore[dict-item]
    response = await client.post("/filter", json=names_args("old", pod=foreign))
    assert (await response.json())["NodeNames"] == ["old"]


# -- sources from settings ------------------------------------------------------------------------

NODEFEATURES = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeature
metadata: {name: fast, labels: {nfd.node.kubernetes.io/node-name: fast}}
spec:
  features:
    flags: {kernel.loadedmodule: {elements: {vfio_pci: {}}}}
    attributes: {kernel.version: {elements: {major: "6"}}}
"""


async def test_sources_from_settings_are_loaded_at_startup(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    (tmp_path / "nodes.yaml").write_text(NODEFEATURES)
    (tmp_path / "app.yaml").write_text(PREFERRED_FALLBACK)
    (tmp_path / "map.yaml").write_text("- {image: 'registry.example/*', spec: app.yaml}\n")
    settings = Settings(features_file=tmp_path / "nodes.yaml", spec_map=tmp_path / "map.yaml")
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/readyz")).status == 200
    response = await client.post("/filter", json=names_args("fast", "other"))
    assert (await response.json())["NodeNames"] == ["fast"]
    assert client.app is not None and client.app[POLICY].stats.filter_requests == 1


async def test_missing_features_file_is_not_ready(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(Settings(features_file=tmp_path / "none.yaml")))
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["waiting"] == ["features-file"]


async def test_without_sources_every_image_is_neutral(aiohttp_client: Any) -> None:
    settings = Settings(
        feature_source=FeatureSourceKind.NONE, artifact_source=ArtifactSourceKind.NONE
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.post("/filter", json=names_args("a", "b"))
    assert (await response.json())["NodeNames"] == ["a", "b"]


def test_bad_spec_map_fails_create_app(tmp_path: Path) -> None:
    (tmp_path / "map.yaml").write_text("not: a list")
    with pytest.raises(SpecMapError):
        create_app(Settings(spec_map=tmp_path / "map.yaml", feature_source=FeatureSourceKind.NONE))
