"""GET /explain: why a pod fits each node, with in-process sources and a fake pod reader.

The answer is filter's and prioritize's own decision (pass/reject, fit, score normalised over
the whole store) with each image's validate report and the failing expressions' node values;
the errors say what is missing (no API access, unknown pod or node, a spec not loaded yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from extender.kube.pods import PodNotFoundError, PodReader
from extender.policy.explain import render_explanation
from extender.server.app import create_app
from extender.server.config import Settings
from extender.server.routes import POD_READER
from tests.policy.helpers import PREFERRED_FALLBACK, FakeSource, store_with
from tests.server.test_app import APP, CLUSTER, POD

Client = TestClient[web.Request, web.Application]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "explain.md"


class FakePods(PodReader):
    """Pods by ``namespace/name``, as the API server would return them."""

    def __init__(self, pods: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__()
        self.pods = pods
        self.api_client = object()  # "has API access"

    async def read(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.pods.get(f"{namespace}/{name}")
        if found is None:
            raise PodNotFoundError(f"pod {namespace}/{name} not found")
        return dict(found)


async def client_for(
    aiohttp_client: Any,
    *,
    pods: PodReader | None = None,
    source: FakeSource | None = None,
) -> Client:
    app = create_app(
        Settings(spec_wait_budget=0.01),
        feature_store=store_with(CLUSTER),
        artifact_source=source if source is not None else FakeSource({APP: PREFERRED_FALLBACK}),
    )
    app[POD_READER] = pods if pods is not None else FakePods({"shop/web": POD})
    client: Client = await aiohttp_client(app)
    return client


async def test_every_node_with_decision_fit_score_and_failing_expressions(
    aiohttp_client: Any,
) -> None:
    client = await client_for(aiohttp_client)
    response = await client.get("/explain", params={"pod": "shop/web"})
    assert response.status == 200
    body = await response.json()
    assert (body["pod"], body["ours"], body["mode"], body["problem"]) == (
        "shop/web",
        True,
        "enforce",
        "",
    )
    assert body["images"][0]["image"] == APP
    rows = {row["node"]: row for row in body["nodes"]}
    assert list(rows) == ["fast", "minimal", "old"]
    summary = {n: (r["passes"], r["compatible"], r["fit"], r["score"]) for n, r in rows.items()}
    # Fits are 1 + the best matched weight; scores as prioritize normalises them (10*2/11).
    assert summary == {
        "fast": (True, True, 11, 10),
        "minimal": (True, True, 2, 2),
        "old": (False, False, 0, 0),
    }
    old = rows["old"]
    assert old["reason"] == "image-compat: kernel.loadedmodule: feature missing"  # filter's
    (entry,) = old["images"]
    # The validate report of the spec on the node, unchanged...
    assert entry["node"] == "old"
    assert entry["image"] == APP
    assert [s["matched"] for s in entry["sets"]] == [False, False]
    assert entry["sets"][1]["rules"][0]["matchedExpressions"][0]["isMatch"] is False
    # ...and why each failing rule failed, with the node's value.
    failures = {(f["set"], f["name"]): f["failures"] for f in entry["failures"]}
    assert failures[(0, "vfio")] == ["kernel.loadedmodule: the node has no such feature"]
    assert failures[(1, "kernel")] == ["kernel.version: major Ge [5] (node: '4')"]


async def test_node_filter_keeps_the_score_of_the_whole_store(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    response = await client.get("/explain", params={"pod": "shop/web", "node": "minimal"})
    assert response.status == 200
    (row,) = (await response.json())["nodes"]
    assert (row["node"], row["fit"], row["score"]) == ("minimal", 2, 2)


async def test_table_names_the_failing_rule_and_the_node_value(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    body = await (await client.get("/explain", params={"pod": "shop/web"})).json()
    text = render_explanation(body)
    lines = text.splitlines()
    assert lines[0] == "pod shop/web: mode enforce"
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
    assert lines[header].split() == ["NODE", "FILTER", "COMPATIBLE", "FIT", "SCORE", "REASON"]
    assert lines[header + 1].split()[:5] == ["fast", "pass", "yes", "11", "10"]
    assert lines[header + 3].split()[:5] == ["old", "reject", "no", "0", "0"]
    assert f"{APP} on node old: NOT compatible" in text
    assert "FAIL  kernel: kernel.version: major Ge [5] (node: '4')" in text


async def test_a_pod_not_ours_passes_everywhere(aiohttp_client: Any) -> None:
    other = {**POD, "spec": {**POD["spec"], "schedulerName": "default-scheduler"}}  # type: ignore[dict-item]
    client = await client_for(aiohttp_client, pods=FakePods({"shop/web": other}))
    body = await (await client.get("/explain", params={"pod": "shop/web"})).json()
    assert body["ours"] is False
    assert [(r["passes"], r["score"], r["images"]) for r in body["nodes"]] == [(True, 0, [])] * 3


async def test_errors_say_what_is_missing(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    for params, status, words in (
        ({}, 400, "?pod=NAMESPACE/NAME"),
        ({"pod": "web"}, 400, "?pod=NAMESPACE/NAME"),
        ({"pod": "shop/gone"}, 404, "pod shop/gone not found"),
        ({"pod": "shop/web", "node": "nowhere"}, 404, "'nowhere' is not in the feature store"),
    ):
        response = await client.get("/explain", params=params)
        assert response.status == status, params
        assert words in (await response.json())["error"], params


async def test_without_api_access_the_answer_says_so(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, pods=PodReader())
    response = await client.get("/explain", params={"pod": "shop/web"})
    assert response.status == 503
    assert "no Kubernetes API access" in (await response.json())["error"]


async def test_a_spec_not_loaded_within_the_budget_is_not_loaded_yet(aiohttp_client: Any) -> None:
    gate = asyncio.Event()
    source = FakeSource({APP: PREFERRED_FALLBACK}, cached=False, gate=gate)
    client = await client_for(aiohttp_client, source=source)
    response = await client.get("/explain", params={"pod": "shop/web"})
    assert response.status == 503
    error = (await response.json())["error"]
    assert f"spec for {APP} not loaded yet" in error
    gate.set()  # the load started by the first call ends; the next call finds the spec
    for _ in range(100):
        if source.loaded:
            break
        await asyncio.sleep(0.01)
    response = await client.get("/explain", params={"pod": "shop/web"})
    assert response.status == 200


async def test_the_table_in_the_docs_is_what_explain_prints(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    body = await (await client.get("/explain", params={"pod": "shop/web"})).json()
    docs = DOCS.read_text()
    assert "```\n" + render_explanation(body) + "```\n" in docs
