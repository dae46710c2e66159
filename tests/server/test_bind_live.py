"""The ``bind`` verb against a real API server: the variant for the node is set and the pod
bound, retries and concurrent calls, a pod without variants, a replaced pod, and a patch the
API server refuses (the pod is then not bound)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from devcluster import nfd
from devcluster.controlplane import ControlPlane
from devcluster.stack import create_pod, get_pod, pod, wait_event
from tests._support.polling import eventually_async
from tests.nodes.test_kubernetes_source import NS, node_with_kernel
from tests.policy.helpers import PREFERRED_FALLBACK
from tests.server.test_serve import Server

pytestmark = pytest.mark.integration

NEW = "registry.example/app:new-kernel"  # its spec needs kernel major >= 5
ANY = "registry.example/app:portable"  # no spec: runs anywhere
VARIANTS = {"image-compat.io/variants": json.dumps({"c0": [NEW, ANY]})}


class Scene:
    def __init__(self, cluster: ControlPlane, tmp_path: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.new, self.old = f"bind-new-{suffix}", f"bind-old-{suffix}"
        nfd.install_crds(cluster)
        nfd.ensure_namespace(cluster, NS)
        node_with_kernel(cluster, self.new, "6")
        node_with_kernel(cluster, self.old, "4")
        self.ns = cluster.create_namespace()
        (tmp_path / "app.yaml").write_text(PREFERRED_FALLBACK)
        (tmp_path / "map.yaml").write_text(f"- image: '{NEW}'\n  spec: app.yaml\n")
        self.flags = [f"--kubeconfig={cluster.kubeconfig}", f"--spec-map={tmp_path / 'map.yaml'}"]

    def args(self, cluster: ControlPlane, name: str, node: str) -> dict[str, str]:
        uid = get_pod(cluster, self.ns, name)["metadata"]["uid"]
        return {"PodName": name, "PodNamespace": self.ns, "PodUID": uid, "Node": node}


@pytest.fixture
def scene(devcluster: ControlPlane, tmp_path: Path) -> Iterator[Scene]:
    made = Scene(devcluster, tmp_path)
    try:
        yield made
    finally:
        for node in (made.new, made.old):
            devcluster.delete_node(node)
        devcluster.delete_namespace(made.ns)


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


def _image(cluster: ControlPlane, ns: str, name: str) -> tuple[str, str]:
    obj = get_pod(cluster, ns, name)
    return obj["spec"].get("nodeName", ""), obj["spec"]["containers"][0]["image"]


async def test_bind_sets_the_variant_for_the_node(devcluster: ControlPlane, scene: Scene) -> None:
    for name in ("on-new", "on-old", "twice", "plain"):
        annotations = VARIANTS if name != "plain" else {}
        create_pod(devcluster, scene.ns, pod(name, ["app:placeholder"], annotations=annotations))
    server = Server(["--listen=127.0.0.1:0", *scene.flags], {})
    try:
        base = f"http://127.0.0.1:{server.port()}"
        async with aiohttp.ClientSession() as session:
            # Wait for the feature store: filter passes the new node only once it knows it.
            filter_args = {
                "Pod": get_pod(devcluster, scene.ns, "on-new"),
                "NodeNames": [scene.new, scene.old],
            }

            async def synced() -> bool:
                async with session.post(f"{base}/filter", json=filter_args) as response:
                    names = (await response.json()).get("NodeNames")
                    return bool(names == [scene.new, scene.old])

            await eventually_async(synced, lambda: "filter passing both nodes", interval=0.2)

            answer = await _post(
                session, f"{base}/bind", scene.args(devcluster, "on-new", scene.new)
            )
            assert answer == {"Error": ""}
            assert _image(devcluster, scene.ns, "on-new") == (scene.new, NEW)
            event = wait_event(devcluster, scene.ns, "on-new", "VariantChosen", timeout=30)
            assert f"variant chosen for node {scene.new}: container c0: {NEW}" == event["message"]

            answer = await _post(
                session, f"{base}/bind", scene.args(devcluster, "on-old", scene.old)
            )
            assert answer == {"Error": ""}
            assert _image(devcluster, scene.ns, "on-old") == (scene.old, ANY)

            # Concurrent calls for one pod, then a retry: one binding, no error.
            twice = scene.args(devcluster, "twice", scene.old)
            answers = await asyncio.gather(
                *(_post(session, f"{base}/bind", twice) for _ in range(3))
            )
            assert answers == [{"Error": ""}] * 3
            assert _image(devcluster, scene.ns, "twice") == (scene.old, ANY)
            assert (await _post(session, f"{base}/bind", twice)) == {"Error": ""}
            moved = {**twice, "Node": scene.new}
            answer = await _post(session, f"{base}/bind", moved)
            assert answer["Error"] == f"pod {scene.ns}/twice is already bound to {scene.old}"

            # A pod without variants is bound unchanged.
            answer = await _post(
                session, f"{base}/bind", scene.args(devcluster, "plain", scene.old)
            )
            assert answer == {"Error": ""}
            assert _image(devcluster, scene.ns, "plain") == (scene.old, "app:placeholder")

            # A replaced pod (another uid) is neither patched nor bound.
            create_pod(
                devcluster, scene.ns, pod("replaced", ["app:placeholder"], annotations=VARIANTS)
            )
            stale = {**scene.args(devcluster, "replaced", scene.new), "PodUID": "not-the-uid"}
            answer = await _post(session, f"{base}/bind", stale)
            assert "was replaced" in answer["Error"]
            assert _image(devcluster, scene.ns, "replaced") == ("", "app:placeholder")
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log


def _kubeconfig_without_patch(cluster: ControlPlane, ns: str, path: Path) -> tuple[Path, str]:
    """A ServiceAccount's kubeconfig that may do all that serve and bind do but patch pods;
    and the name of its ClusterRole and ClusterRoleBinding (for the caller to delete)."""
    account = "binder-without-patch"
    name = f"{account}-{ns}"
    cluster.request(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    rules = [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["nfd.k8s-sigs.io"],
            "resources": ["nodefeatures"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    cluster.request(
        "POST", f"{rbac}/clusterroles", {**role, "metadata": {"name": name}, "rules": rules}
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
    }
    cluster.request("POST", f"{rbac}/clusterrolebindings", binding)
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    answer = cluster.request(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{account}/token", request
    )
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": answer["status"]["token"]}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    return path, name


async def test_a_failed_patch_does_not_bind(
    devcluster: ControlPlane, scene: Scene, tmp_path: Path
) -> None:
    create_pod(devcluster, scene.ns, pod("denied", ["app:placeholder"], annotations=VARIANTS))
    kubeconfig, rbac_name = _kubeconfig_without_patch(
        devcluster, scene.ns, tmp_path / "sa.kubeconfig"
    )
    args = scene.args(devcluster, "denied", scene.new)
    server = Server(["--listen=127.0.0.1:0", f"--kubeconfig={kubeconfig}", scene.flags[1]], {})
    try:
        base = f"http://127.0.0.1:{server.port()}"
        async with aiohttp.ClientSession() as session:
            answer = await _post(session, f"{base}/bind", args)
        assert answer["Error"].startswith(
            f"pod {scene.ns}/denied not bound: cannot set its variant images: 403"
        ), answer
        # Not bound, image unchanged: the scheduler retries.
        assert _image(devcluster, scene.ns, "denied") == ("", "app:placeholder")
    finally:
        assert server.stop() == 0
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        devcluster.request("DELETE", f"{rbac}/clusterrolebindings/{rbac_name}")
        devcluster.request("DELETE", f"{rbac}/clusterroles/{rbac_name}")
