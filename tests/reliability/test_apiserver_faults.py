"""A running ``serve`` while its API server is killed and restarted, and while NFD's CRD is
deleted and installed again: readiness tells the truth, filter fails closed in bounded time
(never a verdict from features it cannot vouch for), and decisions resume with the changes
made meanwhile.

What the feature watch does underneath (410 Gone and relist, restart mid-watch, CRD missing
at start) is tested at the source level in tests/nodes/test_kubernetes_source.py, and a
``serve`` starting before the CRD exists in tests/server/test_serve_live.py; these tests are
the same faults seen from the scheduler's side of a running process. The control plane is
private to this module: the faults would disturb the shared one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devcluster import nfd
from devcluster.controlplane import ControlPlane
from tests._support.polling import eventually_async
from tests.nodes.test_kubernetes_source import NS, PRIVATE_APISERVER_ARGS, nodefeature, put
from tests.reliability.helpers import (
    HTTP_TIMEOUT_S,
    NEW_KERNEL,
    OLD_KERNEL,
    SPEC_NEW,
    Serve,
    delta,
    filter_body,
    sample,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

IMAGE = "registry.example/app:1"
SCHEDULER = "image-compat-scheduler"
NODEFEATURE_CRD = "nodefeatures.nfd.k8s-sigs.io"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ControlPlane]:
    cluster = ControlPlane()
    try:
        cluster.start_etcd()
        cluster.start_apiserver(PRIVATE_APISERVER_ARGS)
        nfd.install_crds(cluster)
        nfd.ensure_namespace(cluster, NS)
        yield cluster
    finally:
        cluster.stop()


def kernel(cluster: ControlPlane, node: str, major: str) -> None:
    obj = nodefeature(node, node)
    obj["spec"]["features"]["attributes"] = {"kernel.version": {"elements": {"major": major}}}
    put(cluster, obj)


@pytest.fixture
def serve(cluster: ControlPlane, tmp_path: Path) -> Iterator[Serve]:
    for node, major in (("new", NEW_KERNEL), ("old", OLD_KERNEL)):
        kernel(cluster, node, major)
    (tmp_path / "app.yaml").write_text(SPEC_NEW)
    (tmp_path / "map.yaml").write_text(f"- image: '{IMAGE}'\n  spec: app.yaml\n")
    args = [
        f"--kubeconfig={cluster.kubeconfig}",
        f"--spec-map={tmp_path / 'map.yaml'}",
        "--log-level=info",
    ]
    with Serve("serve-apiserver", args, tmp_path) as running:
        yield running


class Scheduler:
    """Filter and readiness calls as kube-scheduler and the kubelet make them; every answer
    must come within the scheduler's httpTimeout (the session's total timeout)."""

    def __init__(self, session: aiohttp.ClientSession, serve: Serve) -> None:
        self.session, self.serve = session, serve
        self.answers: list[dict[str, Any]] = []

    async def filter(self) -> dict[str, Any]:
        body = filter_body(IMAGE, ["new", "old"], SCHEDULER)
        async with self.session.post(self.serve.url + "filter", json=body) as response:
            assert response.status == 200
            answer: dict[str, Any] = await response.json()
        self.answers.append(answer)
        return answer

    async def ready(self) -> bool:
        async with self.session.get(self.serve.url + "readyz") as response:
            return response.status == 200

    async def decides(self, *passing: str) -> bool:
        answer = await self.filter()
        return not answer.get("Error") and answer.get("NodeNames") == list(passing)

    async def fails_closed(self) -> bool:
        return not await self.ready() and bool((await self.filter()).get("Error"))

    def assert_never_wrong(self, passable: set[str], until: int | None = None) -> None:
        """Every answer (the first ``until``) was an Error or passed only nodes in
        ``passable``: none passed a node on features the extender could not vouch for."""
        for answer in self.answers[:until]:
            if answer.get("Error"):
                assert not answer.get("NodeNames"), answer
            else:
                assert set(answer["NodeNames"]) <= passable, answer


@pytest.fixture
async def scheduler(serve: Serve) -> Any:
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield Scheduler(session, serve)


async def test_apiserver_killed_and_restarted(
    cluster: ControlPlane, serve: Serve, scheduler: Scheduler
) -> None:
    assert await scheduler.decides("new")
    before = serve.metrics()
    cluster.stop_apiserver(kill=True)
    try:
        # The watch breaks: not ready, and filter answers Error rather than decide on
        # features that may have changed meanwhile.
        await eventually_async(scheduler.fails_closed, "readiness down, filter Error")
        for _ in range(10):
            assert (await scheduler.filter())["Error"]
    finally:
        # From the test's own thread: the child dies with the thread that started it.
        cluster.start_apiserver(PRIVATE_APISERVER_ARGS)
    changed = len(scheduler.answers)
    kernel(cluster, "old", NEW_KERNEL)  # a change the relist (or the new watch) must bring
    await eventually_async(lambda: scheduler.decides("new", "old"), "decisions with the change")
    assert await scheduler.ready()
    scheduler.assert_never_wrong({"new"}, until=changed)
    after = serve.metrics()
    relists = sample("image_compat_feature_relists_total", kind="nodefeatures")
    assert delta(after, before, relists) >= 1
    outage = sample("image_compat_requests_total", verb="filter", outcome="unavailable")
    assert delta(after, before, outage) >= 10
    assert "watch failed" in serve.log and "not ready, retrying" in serve.log
    assert "Traceback" not in serve.log


async def test_nfd_crd_deleted_then_installed_again(
    cluster: ControlPlane, serve: Serve, scheduler: Scheduler
) -> None:
    assert await scheduler.decides("new")
    # Deleting the CRD deletes every NodeFeature with it: NFD is gone from the cluster.
    cluster.request(
        "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{NODEFEATURE_CRD}"
    )
    await eventually_async(scheduler.fails_closed, "readiness down, filter Error", within=60)
    assert "is NFD installed?" in serve.log
    nfd.install_crds(cluster)
    for node, major in (("new", NEW_KERNEL), ("old", OLD_KERNEL)):
        kernel(cluster, node, major)
    await eventually_async(lambda: scheduler.decides("new"), "decisions after reinstall", within=60)
    assert await scheduler.ready()
    # Between the deletion and the reinstall, nodes had no features: a pass was never right.
    scheduler.assert_never_wrong({"new"})
    assert "Traceback" not in serve.log
