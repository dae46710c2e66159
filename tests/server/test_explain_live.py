"""``explain`` against a real API server: a pending pod and a bound one, through ``serve``'s
``GET /explain``, the CLI asking that server, and the CLI evaluating on its own."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devcluster import nfd
from devcluster.controlplane import ControlPlane
from devcluster.stack import create_pod, get_pod, pod
from extender.policy.decide import normalise_score
from tests._support.polling import eventually_async
from tests.nodes.test_kubernetes_source import NS, node_with_kernel
from tests.policy.helpers import PREFERRED_FALLBACK
from tests.server.test_serve import Server

pytestmark = pytest.mark.integration

IMAGE = "registry.example/app:1"


class Scene:
    def __init__(self, cluster: ControlPlane, tmp_path: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.new, self.old = f"explain-new-{suffix}", f"explain-old-{suffix}"
        nfd.install_crds(cluster)
        nfd.ensure_namespace(cluster, NS)
        node_with_kernel(cluster, self.new, "6")
        node_with_kernel(cluster, self.old, "4")
        self.ns = cluster.create_namespace()
        # No scheduler serves image-compat-scheduler here: the first pod stays pending.
        create_pod(cluster, self.ns, pod("pending", [IMAGE]))
        bound = pod("bound", [IMAGE])
        bound["spec"]["nodeName"] = self.old  # placed by hand on the incompatible node
        create_pod(cluster, self.ns, bound)
        (tmp_path / "app.yaml").write_text(PREFERRED_FALLBACK)
        (tmp_path / "map.yaml").write_text("- image: 'registry.example/*'\n  spec: app.yaml\n")
        self.flags = [f"--kubeconfig={cluster.kubeconfig}", f"--spec-map={tmp_path / 'map.yaml'}"]

    def check(self, answer: dict[str, Any], name: str) -> None:
        assert answer["pod"] == f"{self.ns}/{name}"
        assert (answer["ours"], answer["mode"], answer["problem"]) == (True, "enforce", "")
        rows = {row["node"]: row for row in answer["nodes"]}
        new, old = rows[self.new], rows[self.old]
        # The score is normalised over every node in the store, other tests' included.
        score = normalise_score(2, max(row["fit"] for row in rows.values()))
        assert (new["passes"], new["compatible"], new["fit"], new["score"]) == (
            True,
            True,
            2,
            score,
        )
        assert (old["passes"], old["compatible"], old["fit"], old["score"]) == (False, False, 0, 0)
        (entry,) = old["images"]
        assert entry["image"] == IMAGE
        failing = {f["name"]: f["failures"] for f in entry["failures"]}
        assert failing["kernel"] == ["kernel.version: major Ge [5] (node: '4')"]


@pytest.fixture
def scene(devcluster: ControlPlane, tmp_path: Path) -> Iterator[Scene]:
    made = Scene(devcluster, tmp_path)
    try:
        yield made
    finally:
        for node in (made.new, made.old):
            devcluster.delete_node(node)
        devcluster.delete_namespace(made.ns)


def explain_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extender", "explain", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_evaluates_pending_and_bound_pods_on_its_own(
    devcluster: ControlPlane, scene: Scene
) -> None:
    assert not get_pod(devcluster, scene.ns, "pending")["spec"].get("nodeName")
    for name in ("pending", "bound"):
        done = explain_cli(f"{scene.ns}/{name}", *scene.flags, "--output=json")
        assert done.returncode == 0, done.stderr
        scene.check(json.loads(done.stdout), name)
    table = explain_cli(f"{scene.ns}/bound", *scene.flags, f"--node={scene.old}")
    assert table.returncode == 3, table.stderr  # filter rejects the node it is bound to
    assert f"{IMAGE} on node {scene.old}: NOT compatible" in table.stdout
    assert "FAIL  kernel: kernel.version: major Ge [5] (node: '4')" in table.stdout
    gone = explain_cli(f"{scene.ns}/gone", *scene.flags)
    assert gone.returncode == 1
    assert f"pod {scene.ns}/gone not found" in gone.stderr


async def test_server_and_cli_through_it(scene: Scene) -> None:
    server = Server(["--listen=127.0.0.1:0", *scene.flags], {})
    try:
        base = f"http://127.0.0.1:{server.port()}"
        async with aiohttp.ClientSession() as session:
            answer: dict[str, Any] = {}

            async def synced() -> bool:
                nonlocal answer
                params = {"pod": f"{scene.ns}/pending"}
                async with session.get(f"{base}/explain", params=params) as response:
                    answer = await response.json()
                    return response.status == 200 and scene.old in str(answer)

            await eventually_async(synced, lambda: f"an answer after sync: {answer}", interval=0.2)
            scene.check(answer, "pending")
            params = {"pod": f"{scene.ns}/bound", "node": scene.new}
            async with session.get(f"{base}/explain", params=params) as response:
                assert response.status == 200
                (row,) = (await response.json())["nodes"]
                assert (row["node"], row["passes"], row["fit"]) == (scene.new, True, 2)
        done = explain_cli(f"{scene.ns}/bound", f"--server={base}", "--output=json")
        assert done.returncode == 0, done.stderr
        scene.check(json.loads(done.stdout), "bound")
        missing = explain_cli(f"{scene.ns}/gone", f"--server={base}")
        assert missing.returncode == 1
        assert f"404: pod {scene.ns}/gone not found" in missing.stderr
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log
