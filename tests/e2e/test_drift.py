"""Drift with the real API server: a running DPDK pod whose node loses ``vfio_pci`` gets a
NodeCompatibilityDrift event and is counted in ``image_compat_drifted_pods``; when the module
comes back, a NodeCompatibilityRestored event follows and the count drops.

The pod is created already bound (``spec.nodeName``) with our schedulerName, as if our
scheduler had placed it; nodes here have no kubelet, so it stays Pending, which is still a
pod that is neither Succeeded nor Failed.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from devcluster import nfd
from devcluster.stack import create_pod, events, get_pod, pod, wait_event
from extender.kube.client import kubernetes_api_client
from extender.kube.events import KubernetesEvents, PodRef
from extender.kube.pods import (
    ALL_SCHEDULERS,
    DRIFT_ANNOTATION,
    DRIFT_LABEL,
    DRIFT_NODE_LABEL,
    BoundPodWatch,
)
from tests.e2e.conftest import Stack, node_feature

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0


def drifted(stack: Stack, namespace: str) -> float | None:
    """The ``image_compat_drifted_pods`` sample of ``namespace``; None when it has none."""
    with urllib.request.urlopen(stack.extender.url + "metrics", timeout=10) as resp:
        text = resp.read().decode()
    pattern = rf'^image_compat_drifted_pods\{{namespace="{re.escape(namespace)}"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def wait_labels(stack: Stack, ns: str, name: str, expected: dict[str, str]) -> dict[str, str]:
    """Until the pod's drift labels are ``expected``; its annotations then."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        meta = get_pod(stack.cluster, ns, name)["metadata"]
        labels = meta.get("labels") or {}
        seen = {k: v for k, v in labels.items() if k in (DRIFT_LABEL, DRIFT_NODE_LABEL)}
        if seen == expected:
            return dict(meta.get("annotations") or {})
        assert time.monotonic() < deadline, f"drift labels of {name}: {seen}"
        time.sleep(0.3)


def wait_drifted(stack: Stack, namespace: str, expected: float | None) -> None:
    deadline = time.monotonic() + TIMEOUT
    seen = drifted(stack, namespace)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.3)
        seen = drifted(stack, namespace)
    assert seen == expected, f"image_compat_drifted_pods{{namespace={namespace}}}: {seen}"


@pytest.fixture
def dpdk_node(stack: Stack) -> Iterator[str]:
    """A fresh node with vfio_pci and vfio_iommu_type1 loaded (the fleet's dpdk type)."""
    node = f"e2e-drift-{uuid.uuid4().hex[:6]}"
    stack.cluster.create_node(node, cpu="2")
    nfd.publish(stack.cluster, node_feature(stack.real_nodefeature, node, "dpdk"))
    try:
        yield node
    finally:
        stack.cluster.delete_node(node)
        try:
            stack.cluster.request(
                "DELETE", nfd.NODEFEATURES.format(namespace=nfd.NFD_NAMESPACE, name=node)
            )
        except urllib.error.HTTPError as err:
            if err.code != 404:
                raise


def test_a_node_losing_vfio_pci_drifts_its_dpdk_pod_and_recovers(
    stack: Stack, ns: str, dpdk_node: str
) -> None:
    cluster, image = stack.cluster, stack.images["dpdk-app"]
    manifest = pod("dpdk", [image])
    manifest["spec"]["nodeName"] = dpdk_node
    create_pod(cluster, ns, manifest)
    # A bound pod on a compatible node: neither an event nor a count. Give the watch and a
    # few drift rounds the time to have seen it before the node changes.
    time.sleep(3)
    assert drifted(stack, ns) is None
    assert not [
        e for e in events(cluster, ns, "dpdk") if e.get("reason") == "NodeCompatibilityDrift"
    ]

    dpdk = node_feature(stack.real_nodefeature, dpdk_node, "dpdk")
    nfd.publish(cluster, nfd.variant(dpdk, dpdk_node, drop_modules=["vfio_pci"]))
    warning = wait_event(
        cluster, ns, "dpdk", "NodeCompatibilityDrift", contains="vfio_pci", timeout=TIMEOUT
    )
    assert warning["type"] == "Warning"
    assert warning["involvedObject"]["kind"] == "Pod"
    assert warning["source"]["component"] == "image-compat-extender"
    assert warning["message"].startswith(f"node {dpdk_node} no longer satisfies the pod's images")
    assert "rule 'vfio-pci driver loaded'" in warning["message"]
    wait_drifted(stack, ns, 1.0)
    annotations = wait_labels(stack, ns, "dpdk", {DRIFT_LABEL: "true", DRIFT_NODE_LABEL: dpdk_node})
    assert annotations[DRIFT_ANNOTATION].endswith("Z")

    nfd.publish(cluster, dpdk)
    restored = wait_event(cluster, ns, "dpdk", "NodeCompatibilityRestored", timeout=TIMEOUT)
    assert restored["type"] == "Normal"
    wait_drifted(stack, ns, None)
    assert DRIFT_ANNOTATION not in wait_labels(stack, ns, "dpdk", {})
    # Once per change: the drift was told once.
    warnings = [
        e for e in events(cluster, ns, "dpdk") if e.get("reason") == "NodeCompatibilityDrift"
    ]
    assert len(warnings) == 1, warnings
    print(
        "\n".join(
            f"{e['type']:8} {e['reason']:22} pod/{e['involvedObject']['name']}  {e['message']}"
            for e in events(cluster, ns, "dpdk")
        )
    )


def test_replicas_telling_the_same_drift_make_one_event(stack: Stack, ns: str) -> None:
    """Every replica sees the same drift; the event's name comes from the drift, so the
    API server keeps one event however many replicas create it."""
    cluster = stack.cluster
    manifest = pod("twice", [stack.images["plain-app"]])
    manifest["spec"]["nodeName"] = "e2e-plain-1"
    create_pod(cluster, ns, manifest)
    uid = get_pod(cluster, ns, "twice")["metadata"]["uid"]
    ref = PodRef(ns, "twice", uid)
    clients = [kubernetes_api_client(str(cluster.kubeconfig)) for _ in "ab"]
    try:
        replicas = [KubernetesEvents(api_client) for api_client in clients]
        for replica in replicas:
            assert asyncio.run(replica.emit(ref, "Warning", "NodeCompatibilityDrift", "m", "k1"))
        assert [r.created for r in replicas] == [1, 0]
        asyncio.run(replicas[0].emit(ref, "Warning", "NodeCompatibilityDrift", "m", "k2"))
    finally:
        for api_client in clients:
            api_client.close()
    assert len(events(cluster, ns, "twice")) == 2


def test_all_pods_mode_watches_bound_pods_of_every_scheduler(stack: Stack, ns: str) -> None:
    """--drift-all-pods: one stream over every bound pod, whatever its schedulerName; pods
    not yet bound, and pods that ended, are left out by the API server's field selector."""
    cluster = stack.cluster
    for name, scheduler, node in (
        ("other", "default-scheduler", "e2e-plain-1"),
        ("ours", "image-compat-scheduler", "e2e-plain-1"),
        ("unbound", "no-such-scheduler", ""),
    ):
        manifest = pod(name, [stack.images["plain-app"]], scheduler_name=scheduler)
        if node:
            manifest["spec"]["nodeName"] = node
        create_pod(cluster, ns, manifest)
    seen: dict[str, str] = {}
    api_client = kubernetes_api_client(str(cluster.kubeconfig))

    def on_pod(uid: str, obj: Mapping[str, Any] | None, stream: str) -> None:
        if obj is not None and obj["metadata"]["namespace"] == ns:
            seen[obj["metadata"]["name"]] = stream

    def on_listed(stream: str, uids: frozenset[str]) -> None:
        watch.stop()

    watch = BoundPodWatch(api_client, [ALL_SCHEDULERS], on_pod, on_listed, watch_timeout_s=1)
    try:
        asyncio.run(asyncio.wait_for(watch.run(), timeout=TIMEOUT))
    finally:
        api_client.close()
    assert seen == {"other": ALL_SCHEDULERS, "ours": ALL_SCHEDULERS}
