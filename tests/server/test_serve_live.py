"""``serve`` watching a real API server: Error before the first sync, decisions after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devcluster import nfd
from devcluster.controlplane import ControlPlane
from tests._support.polling import eventually_async
from tests.nodes.test_kubernetes_source import NS, nodefeature, put
from tests.policy.helpers import PREFERRED_FALLBACK
from tests.server.test_serve import POD, Server

pytestmark = pytest.mark.integration


@pytest.fixture
def bare_cluster() -> Iterator[ControlPlane]:
    """An apiserver without NFD's CRDs: the extender cannot sync until they appear."""
    cluster = ControlPlane()
    try:
        cluster.start_etcd()
        cluster.start_apiserver()
        yield cluster
    finally:
        cluster.stop()


async def test_filter_errors_until_synced_then_decides(
    bare_cluster: ControlPlane, tmp_path: Path
) -> None:
    (tmp_path / "app.yaml").write_text(PREFERRED_FALLBACK)
    (tmp_path / "map.yaml").write_text("- image: 'registry.example/*'\n  spec: app.yaml\n")
    server = Server(
        [
            "--listen=127.0.0.1:0",
            f"--kubeconfig={bare_cluster.kubeconfig}",
            f"--spec-map={tmp_path / 'map.yaml'}",
        ],
        {},
    )
    args = {"Pod": POD, "Nodes": None, "NodeNames": ["new", "old"]}
    try:
        base = f"http://127.0.0.1:{server.port()}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
            async with session.post(f"{base}/filter", json=args) as response:
                answer = await response.json()
            assert answer["Error"], answer  # not synced is an Error, not a verdict
            assert answer["NodeNames"] is None or answer["NodeNames"] == []

            nfd.install_crds(bare_cluster)
            nfd.ensure_namespace(bare_cluster, NS)
            put(bare_cluster, nodefeature("new", "new", attrs={}))
            new = nodefeature("new", "new")
            new["spec"]["features"]["attributes"] = {"kernel.version": {"elements": {"major": "6"}}}
            old = nodefeature("old", "old")
            old["spec"]["features"]["attributes"] = {"kernel.version": {"elements": {"major": "4"}}}
            put(bare_cluster, new)
            put(bare_cluster, old)

            async def decided() -> bool:
                nonlocal answer
                async with session.post(f"{base}/filter", json=args) as response:
                    answer = await response.json()
                return not answer.get("Error") and answer.get("NodeNames") == ["new"]

            await eventually_async(
                decided, lambda: f"a decision after sync: {answer}", interval=0.2
            )
            assert answer.get("NodeNames") == ["new"], answer
            # "new" passes, so "old" is rejected without being named; alone, it is named.
            async with session.post(f"{base}/filter", json={**args, "NodeNames": ["old"]}) as r:
                alone = await r.json()
            assert alone["NodeNames"] == [] and "old" in alone["FailedAndUnresolvableNodes"]
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
        assert "is NFD installed?" in server.log
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log
