"""``serve`` with a kubeconfig against devcluster: NodeFeatures watched from the API server,
specs loaded from a real registry, pending pods prefetched before the first filter call (shown
with the registry client's request counter), per-platform specs through the whole path."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from kubernetes import client as k8s

from devcluster import nfd
from devcluster.controlplane import ControlPlane
from devcluster.faultproxy import Fault, FaultProxy
from devcluster.oci import attach_spec, push_index
from devcluster.registries import Registry
from extender.artifacts.registry_source import RegistrySource
from extender.artifacts.types import PullContext, SpecKey
from extender.policy.pods import DEFAULT_SCHEDULER_NAME
from extender.server.app import create_app
from extender.server.config import FeatureSourceKind, Settings
from extender.server.routes import ARTIFACT_SOURCE
from tests._support.polling import eventually_async
from tests.nodes.test_kubernetes_source import nodefeature, put

from .helpers import SPEC_A

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, tzinfo=UTC)
# arm64's own spec asks for a newer kernel than the index-level one.
SPEC_ARM = SPEC_A.replace("tag: a", "tag: arm").replace('value: ["3"]', 'value: ["5"]')


def registry_config(tmp_path: Path, *hosts: str) -> Path:
    path = tmp_path / "registries.yaml"
    path.write_text("registries:\n" + "".join(f"  '{h}': {{plainHTTP: true}}\n" for h in hosts))
    return path


def pod_object(namespace: str, image: str, name: str = "app") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedulerName": DEFAULT_SCHEDULER_NAME,
            "containers": [{"name": "app", "image": image}],
        },
    }


async def test_pending_pod_is_prefetched_before_filter(  # noqa: PLR0917 - fixtures
    devcluster: ControlPlane,
    k8s_api: Any,
    k8s_namespace: str,
    make_node: Any,
    oci_registry: Registry,
    unique_repo: str,
    tmp_path: Path,
    aiohttp_client: Any,
) -> None:
    nfd.install_crds(devcluster)
    suffix = uuid.uuid4().hex[:6]
    amd, arm = f"amd-{suffix}", f"arm-{suffix}"
    make_node(amd, arch="amd64")
    make_node(arm, arch="arm64")
    for node, major in ((amd, "6"), (arm, "4")):
        obj = nodefeature(node, node)
        obj["spec"]["features"]["attributes"] = {"kernel.version": {"elements": {"major": major}}}
        put(devcluster, obj)
    image = push_index(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, SPEC_A, created=T0)
    attach_spec(oci_registry, unique_repo, image.platforms["linux/arm64"], SPEC_ARM, created=T0)

    settings = Settings(
        kubeconfig=devcluster.kubeconfig,
        registry_config=registry_config(tmp_path, oci_registry.host),
        registry_allow_loopback=True,
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    app = client.app
    assert app is not None
    source = app[ARTIFACT_SOURCE]
    assert isinstance(source, RegistrySource)

    async def ready() -> bool:
        response = await client.get("/readyz")
        body = await response.json()
        return response.status == 200 and body["nodes"] >= 2

    await eventually_async(ready, "serve ready with both nodes", interval=0.1)

    assert source.client.requests == 0
    # The client sends a dict body as it is; its signature names only V1Pod.
    pod: Any = pod_object(k8s_namespace, image.tag_ref)
    await asyncio.to_thread(k8s.CoreV1Api(k8s_api).create_namespaced_pod, k8s_namespace, pod)
    context = PullContext(k8s_namespace)
    keys = [SpecKey(image.tag_ref, platform=p) for p in ("linux/amd64", "linux/arm64")]
    await eventually_async(
        lambda: all(source.get_cached(k, context) is not None for k in keys), "prefetch"
    )
    prefetched = source.client.requests
    assert prefetched > 0

    args = {"Pod": pod, "Nodes": None, "NodeNames": [amd, arm]}
    response = await client.post("/filter", json=args)
    answer = await response.json()
    assert not answer.get("Error"), answer
    assert answer["NodeNames"] == [amd]
    response = await client.post("/filter", json={**args, "NodeNames": [arm]})
    assert "kernel.version" in (await response.json())["FailedAndUnresolvableNodes"][arm]
    response = await client.post("/prioritize", json=args)
    assert response.status == 200
    # amd fits (1), arm not (0, the lowest: left out of the answer).
    assert await response.json() == [{"Host": amd, "Score": 10}]
    # Filter and prioritize were answered from memory: no registry request.
    assert source.client.requests == prefetched


async def test_filter_waits_at_most_the_budget_then_answers_error(
    fault_proxy: FaultProxy,
    oci_registry: Registry,
    unique_repo: str,
    tmp_path: Path,
    aiohttp_client: Any,
) -> None:
    image = await asyncio.to_thread(push_index, oci_registry, unique_repo, "v1")
    await asyncio.to_thread(
        attach_spec, oci_registry, unique_repo, image.digest, SPEC_A, created=T0
    )
    settings = Settings(
        feature_source=FeatureSourceKind.NONE,
        registry_config=registry_config(tmp_path, fault_proxy.host),
        registry_allow_loopback=True,
        prefetch=False,
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    assert client.app is not None
    source = client.app[ARTIFACT_SOURCE]
    assert isinstance(source, RegistrySource)
    await fault_proxy.set_fault(Fault("hang"))
    pod = pod_object("default", f"{fault_proxy.host}/{unique_repo}:v1")
    for _ in range(3):
        response = await client.post("/filter", json={"Pod": pod, "NodeNames": ["n1"]})
        answer = await response.json()
        assert "not loaded yet" in answer["Error"], answer
    # The load outlives each request: three filters, one load.
    assert source.stats.loads == 1
    await fault_proxy.set_fault(Fault("pass"))
