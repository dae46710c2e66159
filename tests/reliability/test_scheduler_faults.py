"""The extender dies under a running real kube-scheduler, with pods in flight: killed and
restarted, or one of two replicas behind one address killed. No pod lands on a node its
image's spec rejects, and every pod is bound in the end.

The real kube-scheduler runs the shipped ``scheduler-config/`` profile (only its URL, its
scheduler name and its lease name changed); the extender is ``python -m extender serve``
watching the devcluster API server, reading specs that ``oras attach`` put on images in a
real registry. The fleet is four nodes of two types told apart by kernel version, and two
images that each fit one type only, so a placement is right or wrong by the node's type.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from devcluster import nfd, oci
from devcluster.balancer import Balancer
from devcluster.controlplane import ControlPlane
from devcluster.registries import Registry
from devcluster.stack import Extender, create_pod, pod, scheduler_config
from tests._support.polling import eventually
from tests.nodes.test_kubernetes_source import NS, nodefeature, put
from tests.reliability.helpers import (
    NEW_KERNEL,
    OLD_KERNEL,
    SPEC_NEW,
    SPEC_OLD,
    registry_config,
    sample,
    scrape,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SCHEDULER = "image-compat-reliability"  # the profile's schedulerName, the pods' too
FLEET_LABEL = "reliability.image-compat.io/fleet"
PODS = 40
# Pods created before the kill (the kill comes once a few are bound, with the rest in flight)
# and after it (certain to meet the outage whatever the scheduler's pace).
FIRST = 30
BIND_WITHIN = 150.0  # generous: pods that met the dead extender wait out their backoff


@dataclass
class Fleet:
    cluster: ControlPlane
    nodes: dict[str, str]  # node → kernel major
    images: dict[str, str]  # reference → the kernel major its spec needs
    args: list[str]  # serve flags every extender of these tests gets

    def compatible(self, image: str, node: str) -> bool:
        return self.nodes[node] == self.images[image]


@pytest.fixture(scope="module")
def fleet(
    devcluster: ControlPlane, oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    nfd.install_crds(devcluster)
    nfd.ensure_namespace(devcluster, NS)
    suffix = uuid.uuid4().hex[:5]
    nodes = {
        f"rel-{kind}-{i}-{suffix}": major
        for kind, major in (("new", NEW_KERNEL), ("old", OLD_KERNEL))
        for i in (1, 2)
    }
    for name, major in nodes.items():
        devcluster.create_node(name, labels={FLEET_LABEL: "true"})
        obj = nodefeature(name, name)
        obj["spec"]["features"]["attributes"] = {"kernel.version": {"elements": {"major": major}}}
        put(devcluster, obj)
    images = {}
    for kind, spec, major in (("new", SPEC_NEW, NEW_KERNEL), ("old", SPEC_OLD, OLD_KERNEL)):
        repo = f"reliability/{kind}-app-{suffix}"
        image = oci.push_image(oci_registry.endpoint, repo, "v1", label=repo)
        oci.attach_spec(oci_registry.endpoint, repo, image.digest, spec, created=datetime.now(UTC))
        images[f"{oci_registry.host}/{repo}:v1"] = major
    work = tmp_path_factory.mktemp("reliability-scheduler")
    args = [
        f"--registry-config={registry_config(work / 'registries.yaml', oci_registry.host)}",
        "--registry-allow-loopback",
        f"--scheduler-name={SCHEDULER}",
    ]
    try:
        yield Fleet(devcluster, nodes, images, args)
    finally:
        for name in nodes:
            devcluster.delete_node(name)
            devcluster.request(
                "DELETE", f"/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/{NS}/nodefeatures/{name}"
            )


def start_scheduler(fleet: Fleet, url: str, lease: str) -> str:
    """The shipped profile pointed at ``url``; its own lease, so schedulers of earlier tests
    (stopped, lease not yet expired) never hold this one up."""
    config = scheduler_config(url, scheduler_name=SCHEDULER)
    config["leaderElection"]["resourceName"] = lease
    fleet.cluster.start_scheduler(config, name=lease)
    return lease


def create_pods(fleet: Fleet, namespace: str, indexes: range) -> None:
    images = sorted(fleet.images)
    for i in indexes:
        manifest = pod(
            f"p-{i:02d}",
            [images[i % len(images)]],
            scheduler_name=SCHEDULER,
            node_selector={FLEET_LABEL: "true"},
        )
        create_pod(fleet.cluster, namespace, manifest)


def pods(fleet: Fleet, namespace: str) -> list[dict[str, Any]]:
    return list(fleet.cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")["items"])


def bound(fleet: Fleet, namespace: str) -> dict[str, tuple[str, str]]:
    """Bound pods: name → (image, node)."""
    out = {}
    for item in pods(fleet, namespace):
        node = item["spec"].get("nodeName")
        if node:
            out[item["metadata"]["name"]] = (item["spec"]["containers"][0]["image"], node)
    return out


def met_an_error(fleet: Fleet, namespace: str) -> bool:
    """Some pod's last scheduling attempt failed with an error (not "unschedulable"): the
    scheduler called the extender and got no answer."""
    for item in pods(fleet, namespace):
        for condition in (item.get("status") or {}).get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("reason") == "SchedulerError"
            ):
                return True
    return False


def failed_attempts(fleet: Fleet, namespace: str) -> int:
    """FailedScheduling events in the namespace (each counts its repeats): for the figures."""
    items = fleet.cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return sum(int(e.get("count") or 1) for e in items if e.get("reason") == "FailedScheduling")


def wait_all_bound(fleet: Fleet, namespace: str) -> dict[str, tuple[str, str]]:
    placed: dict[str, tuple[str, str]] = {}

    def done() -> bool:
        nonlocal placed
        placed = bound(fleet, namespace)
        return len(placed) == PODS

    eventually(done, lambda: f"{len(placed)}/{PODS} pods bound", within=BIND_WITHIN, interval=0.5)
    return placed


def placements(fleet: Fleet, placed: dict[str, tuple[str, str]]) -> Counter[str]:
    """Placements counted as compatible or incompatible with the pod's image."""
    return Counter(
        "compatible" if fleet.compatible(image, node) else "incompatible"
        for image, node in placed.values()
    )


def filter_answers(extender: Extender, outcome: str) -> float:
    samples = scrape(extender.url + "metrics")
    return samples.get(sample("image_compat_requests_total", verb="filter", outcome=outcome), 0.0)


def test_extender_killed_and_restarted_with_pods_in_flight(
    fleet: Fleet, k8s_namespace: str
) -> None:
    extender = Extender(fleet.cluster, args=fleet.args, name="reliability-extender")
    extender.start()
    lease = start_scheduler(fleet, extender.url, f"{SCHEDULER}-restart")
    try:
        create_pods(fleet, k8s_namespace, range(FIRST))
        eventually(lambda: len(bound(fleet, k8s_namespace)) >= 3, "the first pods bound")
        extender.process.kill()  # SIGKILL: no graceful shutdown, open connections reset
        create_pods(fleet, k8s_namespace, range(FIRST, PODS))
        eventually(
            lambda: met_an_error(fleet, k8s_namespace),
            "a pod whose scheduling attempt met the dead extender",
        )
        before_restart = len(bound(fleet, k8s_namespace))
        extender.start()  # the same port: the scheduler's URL is unchanged
        restarted = time.monotonic()
        placed = wait_all_bound(fleet, k8s_namespace)
        took = time.monotonic() - restarted
        failures = failed_attempts(fleet, k8s_namespace)
    finally:
        fleet.cluster.stop_scheduler(lease)
        extender.stop()
    counted = placements(fleet, placed)
    print(
        f"\nkill -9 and restart: {before_restart}/{PODS} bound before the restart, all "
        f"{took:.1f}s after it; {failures} failed attempts; {dict(counted)}"
    )
    assert counted == Counter(compatible=PODS)


def test_one_of_two_replicas_killed_behind_one_address(fleet: Fleet, k8s_namespace: str) -> None:
    replicas = [
        Extender(fleet.cluster, args=fleet.args, name=f"reliability-replica-{i}") for i in (1, 2)
    ]
    balancer = Balancer([("127.0.0.1", r.port) for r in replicas])
    lease = ""
    try:
        for replica in replicas:
            replica.start()
        balancer.start()
        lease = start_scheduler(fleet, balancer.url, f"{SCHEDULER}-replicas")
        create_pods(fleet, k8s_namespace, range(FIRST))
        eventually(lambda: len(bound(fleet, k8s_namespace)) >= 3, "the first pods bound")
        # Kill the replica that answered the scheduler most (kube-scheduler keeps keep-alive
        # connections, each staying with the replica it was given): the other must take over.
        answered = {r.name: filter_answers(r, "ok") for r in replicas}
        survivor, victim = sorted(replicas, key=lambda r: answered[r.name])
        answered_before = answered[survivor.name]
        victim.process.kill()
        killed = time.monotonic()
        create_pods(fleet, k8s_namespace, range(FIRST, PODS))
        placed = wait_all_bound(fleet, k8s_namespace)
        took = time.monotonic() - killed
        failures = failed_attempts(fleet, k8s_namespace)
        answered_after = filter_answers(survivor, "ok")
    finally:
        if lease:
            fleet.cluster.stop_scheduler(lease)
        balancer.stop()
        for replica in replicas:
            replica.stop()
    counted = placements(fleet, placed)
    print(
        f"\nreplica killed: {dict(counted)}; filter answers before the kill {answered}; the "
        f"survivor answered {answered_after - answered_before:g} after it; all bound "
        f"{took:.1f}s after the kill; {failures} failed attempts; balancer "
        f"connections {dict(balancer.connections)}, connect failures "
        f"{dict(balancer.connect_failures)}"
    )
    assert counted == Counter(compatible=PODS)
    assert answered[victim.name] > 0, "the killed replica was serving the scheduler"
    # Pods created after the kill can only have been decided by the survivor, through the
    # one address the scheduler knows.
    assert answered_after - answered_before >= PODS - FIRST
