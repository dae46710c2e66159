"""Preemption with the real kube-scheduler: victims are evicted only where the pod can run.

The scheduler's preemption dry run uses only its in-tree filters. Node B below fails the pod
on CPU, so our filter never sees it, and B's pods are the cheaper victims: without the
preempt verb the scheduler evicts on B, nominates the pod there, and only then does our
filter reject B. With the verb, the extender removes B from the candidates.

Nodes here have no kubelet, so the test confirms the victims' deletion as a kubelet would
(a graceful deletion otherwise never completes) and records which pods were evicted.
"""

from __future__ import annotations

import time
import urllib.error
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster import nfd
from devcluster.controlplane import ControlPlane, ControlPlaneError
from devcluster.stack import create_pod, get_pod, pod, pod_phase_summary
from tests.e2e.conftest import Stack, node_feature
from tests.e2e.test_scheduling import filter_args

pytestmark = pytest.mark.e2e

ROUNDS = 3
ROUND_TIMEOUT = 90.0
SETTLE_S = 3.0  # after the binding, how long to watch for a late second eviction
POOL_LABEL = "e2e.image-compat.io/preemption-pool"
PRIORITIES = {"cheapest": 10, "cheap": 100, "urgent": 1000}


@pytest.fixture
def priority_classes(stack: Stack) -> Iterator[dict[str, str]]:
    """Three PriorityClasses (cluster-scoped, so named apart per test); role → class name."""
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"e2e-{role}-{suffix}" for role in PRIORITIES}
    for role, value in PRIORITIES.items():
        body = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": names[role]},
            "value": value,
        }
        stack.cluster.request("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", body)
    yield names
    for name in names.values():
        stack.cluster.request("DELETE", f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}")


def _filler(name: str, node: str, priority_class: str, image: str) -> dict[str, Any]:
    """A pod already bound to ``node`` holding 1 of its 2 CPUs."""
    manifest = pod(name, [image], scheduler_name="default-scheduler", cpu="1")
    manifest["spec"]["nodeName"] = node
    manifest["spec"]["priorityClassName"] = priority_class
    return manifest


def _pods(cluster: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    items = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods")["items"]
    return {p["metadata"]["name"]: p for p in items}


def _confirm_deletions(cluster: ControlPlane, ns: str, pods: dict[str, dict[str, Any]]) -> None:
    """What the kubelet does for a pod being deleted: confirm it, so it goes away."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    for name, obj in pods.items():
        if obj["metadata"].get("deletionTimestamp"):
            try:
                cluster.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", body)
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise


def _wait_features(stack: Stack, node: str, image: str) -> None:
    """Until the extender's filter passes ``node`` for ``image`` (its NodeFeature arrived)."""
    probe = pod("probe", [image])
    deadline = time.monotonic() + 30
    answer: Any = None
    while time.monotonic() < deadline:
        answer = stack.extender.post("filter", filter_args(stack, probe, [node]))
        if answer.get("NodeNames") == [node]:
            return
        time.sleep(0.2)
    raise AssertionError(f"the extender still rejects {node} after 30s: {answer}")


def _round(stack: Stack, ns: str, classes: dict[str, str], index: int) -> tuple[str, set[str]]:
    """One scenario on two fresh nodes; (where the pod was bound, the evicted fillers)."""
    cluster, image = stack.cluster, stack.images["dpdk-app"]
    pool = f"r{index}-{uuid.uuid4().hex[:5]}"
    node_a, node_b = f"e2e-pre-a-{pool}", f"e2e-pre-b-{pool}"
    fillers = {
        f"a{index}-1": (node_a, "cheap"),
        f"a{index}-2": (node_a, "cheap"),
        f"b{index}-1": (node_b, "cheapest"),
        f"b{index}-2": (node_b, "cheapest"),
    }
    features = {node_a: node_feature(stack.real_nodefeature, node_a, "dpdk")}
    features[node_b] = node_feature(stack.real_nodefeature, node_b, "plain")
    try:
        for node, nodefeature in features.items():
            cluster.create_node(node, cpu="2", labels={POOL_LABEL: pool})
            nfd.publish(cluster, nodefeature)
        for name, (node, role) in fillers.items():
            create_pod(cluster, ns, _filler(name, node, classes[role], stack.images["plain-app"]))
        _wait_features(stack, node_a, image)

        urgent = f"urgent{index}"
        manifest = pod(urgent, [image], node_selector={POOL_LABEL: pool}, cpu="1")
        manifest["spec"]["priorityClassName"] = classes["urgent"]
        create_pod(cluster, ns, manifest)

        evicted: set[str] = set()
        bound_at: float | None = None
        deadline = time.monotonic() + ROUND_TIMEOUT
        while bound_at is None or time.monotonic() < bound_at + SETTLE_S:
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"round {index}: not bound within {ROUND_TIMEOUT:.0f}s "
                    f"(evicted so far: {sorted(evicted)}): {pod_phase_summary(cluster, ns, urgent)}"
                )
            pods = _pods(cluster, ns)
            evicted |= {
                n for n in fillers if n not in pods or pods[n]["metadata"].get("deletionTimestamp")
            }
            _confirm_deletions(cluster, ns, pods)
            if bound_at is None and pods[urgent]["spec"].get("nodeName"):
                bound_at = time.monotonic()
            time.sleep(0.1)
        return str(get_pod(cluster, ns, urgent)["spec"]["nodeName"]), evicted
    finally:
        for node in features:
            cluster.delete_node(node)
            try:
                cluster.request(
                    "DELETE", nfd.NODEFEATURES.format(namespace=nfd.NFD_NAMESPACE, name=node)
                )
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise


def test_preemption_evicts_only_on_compatible_nodes(
    stack: Stack, ns: str, priority_classes: dict[str, str]
) -> None:
    # Node A: compatible (vfio_pci), two pods of priority 100. Node B: incompatible, two pods
    # of priority 10, the cheaper victims. Each node has 2 CPUs, each pod asks for 1, and the
    # priority-1000 pod asks for 1: one victim on A is enough.
    outcomes: list[tuple[str, list[str]]] = []
    for index in range(ROUNDS):
        node, evicted_set = _round(stack, ns, priority_classes, index)
        outcomes.append((node, sorted(evicted_set)))
    for index, (node, evicted) in enumerate(outcomes):
        assert node.startswith("e2e-pre-a-"), outcomes
        assert not [n for n in evicted if n.startswith("b")], f"evicted on B: {outcomes}"
        assert len(evicted) == 1 and evicted[0].startswith(f"a{index}-"), outcomes
