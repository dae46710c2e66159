"""The real kube-scheduler, running the shipped profiles, places real pods through our extender.

Every scenario asserts the node a pod was bound to (or that it was not bound, and why) through
the API server, as a user would see it. The stack and its fleet are described in conftest.py.
Scenarios taking ``scheduler_name`` run under both shipped profiles (two calls per pod, and
the single-call one): the same assertions hold for both.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from devcluster import nfd
from devcluster.stack import (
    SCHEDULER_NAME,
    create_pod,
    get_pod,
    pod,
    touch_node,
    wait_bound,
    wait_event,
)
from extender.policy.decide import short_image
from tests._support.polling import eventually
from tests.e2e.conftest import SELECTOR, Stack, node_feature

pytestmark = pytest.mark.e2e

BIND_TIMEOUT = 90.0
TAGS = "image-compat.io/tags"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def place(stack: Stack, ns: str, name: str, images: Any, **kwargs: Any) -> str:
    """Create a pod for our scheduler on the fleet and return the node it is bound to."""
    create_pod(stack.cluster, ns, pod(name, images, node_selector=SELECTOR, **kwargs))
    return wait_bound(stack.cluster, ns, name, BIND_TIMEOUT)


def rejected(stack: Stack, ns: str, name: str, images: Any, contains: str, **kwargs: Any) -> str:
    """Create a pod that must not fit; return the FailedScheduling message carrying ``contains``."""
    create_pod(stack.cluster, ns, pod(name, images, node_selector=SELECTOR, **kwargs))
    event = wait_event(stack.cluster, ns, name, "FailedScheduling", contains=contains)
    assert not get_pod(stack.cluster, ns, name)["spec"].get("nodeName")
    return str(event["message"])


def filter_args(stack: Stack, manifest: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
    """An ExtenderArgs body as kube-scheduler sends it (nodeCacheCapable: names only)."""
    obj = {**manifest, "metadata": {**manifest["metadata"], "namespace": "default", "uid": "x"}}
    return {"Pod": obj, "Nodes": None, "NodeNames": nodes}


# ---------------------------------------------------------------------------------------------


def test_preferred_nodes_first_then_fallback_when_none_is_left(
    stack: Stack, ns: str, scheduler_name: str
) -> None:
    # Each pod asks for 1500m of a node's 2 CPUs, so every pod fills the node it lands on.
    # With the shipped profile the fallback nodes score 0 after prioritize's shift and are
    # left out of its answer: the real scheduler ranks the nodes as with unshifted scores.
    image = stack.images["preferred-fallback"]
    amx = stack.nodes_of("amx")
    on = {"cpu": "1500m", "scheduler_name": scheduler_name}
    first = place(stack, ns, "infer-1", [image], **on)
    second = place(stack, ns, "infer-2", [image], **on)
    assert {first, second} == amx, "both preferred (AMX) nodes are taken first"
    third = place(stack, ns, "infer-3", [image], **on)
    assert third in stack.nodes_of("plain", "dpdk", "gpu"), "then a fallback node"


def test_image_needing_a_gpu_lands_only_on_gpu_nodes(
    stack: Stack, ns: str, scheduler_name: str
) -> None:
    gpu = stack.nodes_of("gpu")
    image = [stack.images["gpu-app"]]
    placed = {place(stack, ns, f"cuda-{i}", image, scheduler_name=scheduler_name) for i in range(4)}
    assert placed <= gpu


def test_tags_annotation_changes_the_outcome(stack: Stack, ns: str, scheduler_name: str) -> None:
    image = stack.images["variants"]
    on = {"scheduler_name": scheduler_name}
    cuda = place(stack, ns, "build-cuda", [image], annotations={TAGS: "cuda"}, **on)
    amx = place(stack, ns, "build-amx", [image], annotations={TAGS: "amx"}, **on)
    either = place(stack, ns, "build-any", [image], **on)
    assert cuda in stack.nodes_of("gpu")
    assert amx in stack.nodes_of("amx")
    assert either in stack.nodes_of("gpu", "amx")


def test_image_without_artifact_schedules_anywhere(
    stack: Stack, ns: str, scheduler_name: str
) -> None:
    image = stack.images["plain-app"]
    manifest = pod("plain", [image], node_selector=SELECTOR, scheduler_name=scheduler_name)
    verb = "filter" if scheduler_name == SCHEDULER_NAME else "filter-best-fit"
    answer = stack.extender.post(verb, filter_args(stack, manifest, sorted(stack.nodes)))
    assert sorted(answer["NodeNames"]) == sorted(stack.nodes)
    assert not answer["FailedAndUnresolvableNodes"]
    assert place(stack, ns, "plain", [image], scheduler_name=scheduler_name) in stack.nodes


def test_both_containers_of_a_pod_must_fit(stack: Stack, ns: str, scheduler_name: str) -> None:
    dpdk, gpu = stack.images["dpdk-app"], stack.images["gpu-app"]
    on = {"scheduler_name": scheduler_name}
    # dpdk-app alone fits dpdk and gpu nodes, gpu-app alone the gpu nodes: together, gpu nodes.
    both = place(stack, ns, "dpdk-and-cuda", {"dataplane": dpdk, "cuda": gpu}, **on)
    assert both in stack.nodes_of("gpu")
    gaudi = stack.images["gaudi-app"]
    images = {"dataplane": dpdk, "ml": gaudi}
    message = rejected(stack, ns, "dpdk-and-gaudi", images, "1da3", **on)
    # Reasons name the image short, without the registry host (gaudi-app:v1).
    assert f"image-compat: {short_image(gaudi)}: pci.device" in message
    assert stack.proxy.host not in message


def test_incompatible_pod_stays_pending_with_our_reason(
    stack: Stack, ns: str, scheduler_name: str
) -> None:
    image = [stack.images["gaudi-app"]]
    message = rejected(stack, ns, "gaudi", image, "image-compat:", scheduler_name=scheduler_name)
    assert "0/" in message and "image-compat: pci.device: vendor In [1da3]" in message


def test_registry_unreachable_then_back(stack: Stack, ns: str) -> None:
    # A new image, so nothing about it is cached; its spec needs a GPU.
    image = stack.push(_name("cuda-fresh"), "gpu-app.yaml")
    stack.proxy.set_fault("refuse")
    try:
        create_pod(stack.cluster, ns, pod("cuda-fresh", [image], node_selector=SELECTOR))
        wait_event(stack.cluster, ns, "cuda-fresh", "FailedScheduling", contains="image-compat")
        assert not get_pod(stack.cluster, ns, "cuda-fresh")["spec"].get("nodeName")
    finally:
        stack.proxy.set_fault("pass")
    assert wait_bound(stack.cluster, ns, "cuda-fresh", BIND_TIMEOUT) in stack.nodes_of("gpu")


def test_node_gaining_a_module_makes_a_pending_pod_schedulable(stack: Stack, ns: str) -> None:
    rejected(stack, ns, "rdma", [stack.images["rdma-app"]], "irdma")
    node = "e2e-plain-2"
    gained = node_feature(stack.real_nodefeature, node, "plain")
    gained = nfd.variant(gained, node, add_modules=["irdma"])
    nfd.publish(stack.cluster, gained)
    try:
        # The extender learns the change from its NodeFeature watch. The scheduler does not
        # watch NodeFeatures: nfd-master would update the Node (labels), and that Node update
        # is what requeues the pod. Touch the Node only once the extender has the change, as
        # nfd-master's update would come after the NodeFeature it is derived from.
        manifest = pod("probe", [stack.images["rdma-app"]], node_selector=SELECTOR)
        _wait_filter_passes(stack, manifest, node)
        touch_node(stack.cluster, node)
        assert wait_bound(stack.cluster, ns, "rdma", BIND_TIMEOUT) == node
    finally:
        nfd.publish(stack.cluster, node_feature(stack.real_nodefeature, node, "plain"))


def _wait_filter_passes(stack: Stack, manifest: dict[str, Any], node: str) -> None:
    answer: Any = None

    def passes() -> bool:
        nonlocal answer
        answer = stack.extender.post("filter", filter_args(stack, manifest, [node]))
        return bool(answer.get("NodeNames") == [node])

    eventually(passes, lambda: f"the extender to accept {node}: {answer}", interval=0.2)


def test_extender_restarted_mid_run(stack: Stack, ns: str) -> None:
    before = place(stack, ns, "before", [stack.images["gpu-app"]])
    assert before in stack.nodes_of("gpu")
    image = stack.push(_name("dpdk-fresh"), "dpdk-app.yaml")
    stack.extender.stop()
    try:
        create_pod(stack.cluster, ns, pod("during", [image], node_selector=SELECTOR))
        # The scheduler cannot reach the extender: the attempt fails and the pod waits.
        wait_event(stack.cluster, ns, "during", "FailedScheduling", contains="/filter")
        assert not get_pod(stack.cluster, ns, "during")["spec"].get("nodeName")
    finally:
        stack.extender.start()
    assert wait_bound(stack.cluster, ns, "during", BIND_TIMEOUT) in stack.nodes_of("dpdk", "gpu")
    after = place(stack, ns, "after", [stack.images["gpu-app"]])
    assert after in stack.nodes_of("gpu")


def test_pod_of_another_scheduler_is_not_touched(stack: Stack, ns: str) -> None:
    # An image no node is compatible with, but the pod belongs to the default scheduler.
    manifest = pod(
        "elsewhere",
        [stack.images["gaudi-app"]],
        scheduler_name="default-scheduler",
        node_selector=SELECTOR,
    )
    answer = stack.extender.post("filter", filter_args(stack, manifest, sorted(stack.nodes)))
    assert sorted(answer["NodeNames"]) == sorted(stack.nodes)
    create_pod(stack.cluster, ns, manifest)
    assert wait_bound(stack.cluster, ns, "elsewhere", BIND_TIMEOUT) in stack.nodes
    scheduled = wait_event(stack.cluster, ns, "elsewhere", "Scheduled")
    assert (scheduled.get("reportingComponent") or scheduled["source"]["component"]) == (
        "default-scheduler"
    )
