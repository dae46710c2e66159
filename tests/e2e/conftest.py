"""The e2e stack: a real control plane, NFD's real nfd-worker output, a registry behind the
fault proxy with specs attached by the real oras CLI, our ``serve``, and two kube-schedulers
calling it: one running the shipped ``scheduler-config/image-compat-scheduler.yaml`` (filter
and prioritize), one ``image-compat-scheduler-single-call.yaml`` (filter-best-fit only) under
the schedulerName ``image-compat-single-call``. Scenarios that place pods run under both
(the ``scheduler_name`` fixture), so the two profiles are shown to place pods alike.

Built once for tests/e2e (a few seconds on a warm machine); scenarios keep apart by
namespace and by image. The fleet is 8 nodes of 4 hardware types, all cloned from the
NodeFeature that NFD's own nfd-worker published for this machine:

====== ============================== =================================================
type   nodes                          differs from the real machine by
====== ============================== =================================================
plain  e2e-plain-1 (the real one),    nothing
       e2e-plain-2
dpdk   e2e-dpdk-1, e2e-dpdk-2         vfio_pci + vfio_iommu_type1 loaded
gpu    e2e-gpu-1, e2e-gpu-2           an NVIDIA H100 (PCI 10de:2330), nvidia + nvidia_uvm
                                      and vfio_pci + vfio_iommu_type1 loaded
amx    e2e-amx-1, e2e-amx-2           cpuid AMXTILE, AMXBF16, AMXINT8 (Sapphire Rapids)
====== ============================== =================================================

Every node has 2 CPUs allocatable, so a pod asking for 1500m fills one (how the preferred /
fallback scenario runs out of preferred nodes). The markers the specs test for are removed
from the machine's own features first, so the fleet means the same on any CI host.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster import nfd, oci
from devcluster.controlplane import ControlPlane
from devcluster.faultproxy import FaultProxyProcess, start_fault_proxy_process
from devcluster.registries import Registry
from devcluster.stack import SCHEDULER_CONFIG, SCHEDULER_NAME, Extender, scheduler_config

SPECS = Path(__file__).resolve().parent / "specs"
FLEET_LABEL = "e2e.image-compat.io/fleet"
TYPE_LABEL = "e2e.image-compat.io/type"
SELECTOR = {FLEET_LABEL: "true"}
SCHEDULER = "image-compat-e2e"  # the kube-scheduler process's name in devcluster logs
SINGLE_CALL_SCHEDULER = "image-compat-e2e-single-call"  # the single-call one's
SINGLE_CALL = "image-compat-single-call"  # its profile's schedulerName
SINGLE_CALL_CONFIG = SCHEDULER_CONFIG.parent / "image-compat-scheduler-single-call.yaml"

MARKER_MODULES = ("vfio_pci", "vfio_iommu_type1", "nvidia", "nvidia_uvm", "irdma")
MARKER_CPUID = ("AMXTILE", "AMXBF16", "AMXINT8")
MARKER_PCI_VENDORS = ("10de", "1da3")

NODE_TYPES: dict[str, dict[str, Any]] = {
    "plain": {},
    "dpdk": {"add_modules": ["vfio_pci", "vfio_iommu_type1"]},
    "gpu": {
        "add_modules": ["nvidia", "nvidia_uvm", "vfio_pci", "vfio_iommu_type1"],
        "add_pci": [nfd.NVIDIA_H100],
    },
    "amx": {"cpuid": list(MARKER_CPUID)},
}

# Image name in the registry → spec attached to it (None: pushed with no artifact).
IMAGES: dict[str, str | None] = {
    "preferred-fallback": "preferred-fallback.yaml",
    "gpu-app": "gpu-app.yaml",
    "dpdk-app": "dpdk-app.yaml",
    "variants": "variants.yaml",
    "rdma-app": "rdma-app.yaml",
    "gaudi-app": "gaudi-app.yaml",
    "plain-app": None,
}


@dataclass
class Stack:
    cluster: ControlPlane
    registry: Registry
    proxy: FaultProxyProcess
    extender: Extender
    real_nodefeature: dict[str, Any]
    nodes: dict[str, str] = field(default_factory=dict)  # node → type
    images: dict[str, str] = field(default_factory=dict)  # name → reference through the proxy

    def nodes_of(self, *types: str) -> set[str]:
        return {n for n, t in self.nodes.items() if t in types}

    def push(self, name: str, spec: str | None) -> str:
        """Push an image (and attach ``spec`` from tests/e2e/specs with oras); its reference
        through the fault proxy, which is how pods name it."""
        return push_image(self.registry, self.proxy, name, spec)


def push_image(registry: Registry, proxy: FaultProxyProcess, name: str, spec: str | None) -> str:
    repo = f"e2e/{name}"
    image = oci.push_image(registry.endpoint, repo, "v1", label=f"{name}-{uuid.uuid4().hex}")
    if spec is not None:
        oci.attach_spec(
            registry.endpoint, repo, image.digest, SPECS / spec, created=datetime.now(UTC)
        )
    return f"{proxy.host}/{repo}:v1"


def _neutral(real: dict[str, Any], node: str) -> dict[str, Any]:
    """The machine's NodeFeature for ``node`` with the fleet's marker features removed."""
    clone = nfd.variant(real, node, drop_modules=MARKER_MODULES)
    features = clone["spec"]["features"]
    cpuid = (features.get("flags") or {}).get("cpu.cpuid", {}).get("elements") or {}
    for flag in MARKER_CPUID:
        cpuid.pop(flag, None)
    pci = (features.get("instances") or {}).get("pci.device", {}).get("elements") or []
    pci[:] = [d for d in pci if (d.get("attributes") or {}).get("vendor") not in MARKER_PCI_VENDORS]
    return clone


def node_feature(real: dict[str, Any], node: str, kind: str) -> dict[str, Any]:
    """The NodeFeature of a fleet node of type ``kind``, cloned from the real one."""
    changes = dict(NODE_TYPES[kind])
    cpuid = changes.pop("cpuid", [])
    obj = nfd.variant(_neutral(real, node), node, **changes)
    flags = obj["spec"]["features"].setdefault("flags", {})
    elements = flags.setdefault("cpu.cpuid", {"elements": {}}).setdefault("elements", {})
    for flag in cpuid:
        elements[flag] = {}
    return obj


def build_fleet(cluster: ControlPlane) -> tuple[dict[str, Any], dict[str, str]]:
    """Create the 8 nodes and publish their NodeFeatures; (the real NodeFeature, node → type)."""
    nodes: dict[str, str] = {}
    for kind in NODE_TYPES:
        for i in (1, 2):
            name = f"e2e-{kind}-{i}"
            cluster.create_node(name, cpu="2", labels={FLEET_LABEL: "true", TYPE_LABEL: kind})
            nodes[name] = kind
    # NFD's own nfd-worker publishes this machine's features as e2e-plain-1's NodeFeature.
    real = nfd.run_worker_once(cluster, "e2e-plain-1")
    real.pop("_workerLog", None)
    neutral = _neutral(real, "e2e-plain-1")
    if neutral["spec"]["features"] != real["spec"]["features"]:
        nfd.publish(cluster, neutral)  # this machine has a marker: take it away
    for name, kind in nodes.items():
        if name != "e2e-plain-1":
            nfd.publish(cluster, node_feature(real, name, kind))
    return real, nodes


@pytest.fixture(scope="session")
def e2e_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    from devcluster.registries import start_oci_registry

    with start_oci_registry(tmp_path_factory.mktemp("e2e-registry"), referrers=True) as reg:
        yield reg


@pytest.fixture(scope="session")
def e2e_proxy(
    e2e_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultProxyProcess]:
    with start_fault_proxy_process(
        e2e_registry.endpoint, tmp_path_factory.mktemp("e2e-faultproxy")
    ) as proxy:
        yield proxy


def registry_config(path: Path, proxy: FaultProxyProcess) -> Path:
    path.write_text(yaml.safe_dump({"registries": {proxy.host: {"plainHTTP": True}}}))
    return path


# Package scope: the fleet's nodes go away when tests/e2e is done, so later tests never see them.
@pytest.fixture(scope="package")
def stack(
    devcluster: ControlPlane,
    e2e_registry: Registry,
    e2e_proxy: FaultProxyProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    real, nodes = build_fleet(devcluster)
    images = {name: push_image(e2e_registry, e2e_proxy, name, s) for name, s in IMAGES.items()}
    work = tmp_path_factory.mktemp("e2e-extender")
    args = [
        f"--registry-config={registry_config(work / 'registries.yaml', e2e_proxy)}",
        "--registry-allow-loopback",
        "--drift-interval=1s",  # tests/e2e/test_drift.py waits for drift to be seen
        "--drift-label",
        f"--scheduler-name={SCHEDULER_NAME},{SINGLE_CALL}",
    ]
    extender = Extender(devcluster, args=args, name="image-compat-extender-e2e")
    extender.start()
    devcluster.start_scheduler(scheduler_config(extender.url), name=SCHEDULER)
    single_call = scheduler_config(
        extender.url, scheduler_name=SINGLE_CALL, path=SINGLE_CALL_CONFIG
    )
    devcluster.start_scheduler(single_call, name=SINGLE_CALL_SCHEDULER)
    try:
        yield Stack(devcluster, e2e_registry, e2e_proxy, extender, real, nodes, images)
    finally:
        devcluster.stop_scheduler(SINGLE_CALL_SCHEDULER)
        devcluster.stop_scheduler(SCHEDULER)
        extender.stop()
        for name in nodes:
            devcluster.delete_node(name)


@pytest.fixture
def ns(stack: Stack, k8s_namespace: str) -> str:
    return k8s_namespace


@pytest.fixture(params=[SCHEDULER_NAME, SINGLE_CALL], ids=["shipped", "single-call"])
def scheduler_name(request: pytest.FixtureRequest) -> str:
    """The schedulerName a placing scenario's pods use: each profile places them once."""
    return str(request.param)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    stack: Stack | None = getattr(item, "funcargs", {}).get("stack")
    if report.failed and stack is not None:
        report.sections.append(("image-compat-extender log", stack.extender.process.tail(120)))
