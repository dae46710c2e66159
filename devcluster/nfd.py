"""NFD's own tools against devcluster: CRDs, a one-shot ``nfd-worker``, and NodeFeature variants.

Owns running Node Feature Discovery's real ``nfd-worker`` (built from
``sigs.k8s.io/node-feature-discovery`` by ``devcluster.build``) once against our local
apiserver, so that it publishes a real NodeFeature for this machine; installing NFD's CRDs
from the module's own ``deployment/base/nfd-crds`` (read from the Go module cache at run time,
never copied into this repository); and cloning that real object into variants for fake nodes
(drop a kernel module, change the CPU vendor, add a GPU), so tests and the demo carry real
feature names and shapes.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import tempfile
import urllib.error
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from devcluster import build
from devcluster.controlplane import ControlPlane
from devcluster.processes import free_port

NFD_MODULE = "sigs.k8s.io/node-feature-discovery"
NFD_NAMESPACE = "node-feature-discovery"
NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
NODEFEATURES = "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/{namespace}/nodefeatures/{name}"

# Sources whose data this sandbox cannot provide, and why (the worker logs these and goes on).
KNOWN_FAILING_SOURCES = {
    "kernel.loadedmodule": "/proc/modules does not exist in this sandbox",
    "kernel.enabledmodule": "/lib/modules/<release>/modules.builtin is missing",
    "system.dmiid": "/sys/devices/virtual/dmi/id is not exposed",
}


class NfdError(RuntimeError):
    """An NFD tool failed; the message carries its output."""


def ensure_namespace(cluster: ControlPlane, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.create_namespace(name)
    except ApiException as err:
        if err.status != 409:
            raise


def module_dir() -> Path:
    """Where the Go module cache holds NFD's source at the version devcluster/go pins."""
    version = build.versions()["nfd-worker"]
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{NFD_MODULE}@{version}"],
        cwd=build.HERE / "go",
        env=build.go_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise NfdError(f"go mod download {NFD_MODULE}@{version} failed:\n{done.stderr[-2000:]}")
    return Path(json.loads(done.stdout)["Dir"])


def crd_documents() -> list[dict[str, Any]]:
    """NFD's CRDs (NodeFeature, NodeFeatureRule, NodeFeatureGroup) from the module itself."""
    path = module_dir() / "deployment" / "base" / "nfd-crds" / "nfd-api-crds.yaml"
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def install_crds(cluster: ControlPlane) -> list[str]:
    """Install NFD's CRDs (idempotent) and wait until they are served."""
    return [cluster.install_crd(doc) for doc in crd_documents()]


def host_node_name() -> str:
    """The Node name this machine's own NodeFeature is published under (its short hostname)."""
    return socket.gethostname().lower().split(".")[0] or "localhost"


def publish_host(cluster: ControlPlane) -> dict[str, Any]:
    """This machine's NodeFeature, published by the real nfd-worker for a Node named after it.

    Idempotent: the Node is created only when missing, so several test modules (or a rerun on
    the same cluster) can ask for it.
    """
    node = host_node_name()
    try:
        cluster.request("GET", f"/api/v1/nodes/{node}")
    except urllib.error.HTTPError as err:
        if err.code != 404:
            raise
        cluster.create_node(node)
    published = run_worker_once(cluster, node)
    published.pop("_workerLog", None)
    return published


def run_worker_once(
    cluster: ControlPlane,
    node: str,
    *,
    namespace: str = NFD_NAMESPACE,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Run the real ``nfd-worker -oneshot`` for ``node``; return the NodeFeature it published.

    The Node must exist (the worker updates nothing on it, but NFD expects one). The worker runs
    outside a pod, so owner references are off and the namespace comes from the environment.
    """
    install_crds(cluster)
    ensure_namespace(cluster, namespace)
    with tempfile.TemporaryDirectory(prefix="nfd-worker-") as scratch:
        config = Path(scratch) / "nfd-worker.conf"
        config.write_text("core: {}\n")
        env = dict(build.go_env())
        env.update(NODE_NAME=node, KUBERNETES_NAMESPACE=namespace)
        done = subprocess.run(
            [
                str(build.binary("nfd-worker")),
                "-oneshot",
                "-no-owner-refs",
                f"-kubeconfig={cluster.kubeconfig}",
                f"-config={config}",
                f"-port={free_port()}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise NfdError(f"nfd-worker exited {done.returncode}:\n{done.stderr[-4000:]}")
    published = cluster.request("GET", NODEFEATURES.format(namespace=namespace, name=node))
    published["_workerLog"] = done.stderr
    return dict(published)


def worker_source_errors(worker_log: str) -> list[str]:
    """The discovery errors the worker logged (``E`` lines), to record what failed here."""
    return [line for line in worker_log.splitlines() if line.startswith("E")]


def sanitized(nodefeature: Mapping[str, Any], node: str) -> dict[str, Any]:
    """A copy fit to commit as a fixture: no server metadata, no host name, renamed to ``node``.

    What a NodeFeature holds is hardware and OS facts; the host's own name (``system.name``)
    and network interface names are the only host-identifying values, so those are replaced.
    """
    spec = copy.deepcopy(dict(nodefeature.get("spec") or {}))
    features = spec.setdefault("features", {})
    attributes = features.setdefault("attributes", {})
    if "system.name" in attributes:
        attributes["system.name"] = {"elements": {"nodename": node}}
    instances = features.get("instances") or {}
    for feature in ("network.device", "network.virtual"):
        for i, element in enumerate((instances.get(feature) or {}).get("elements") or []):
            attrs = element.get("attributes") or {}
            if "name" in attrs:
                attrs["name"] = f"eth{i}" if feature == "network.device" else f"virt{i}"
    spec["labels"] = {}
    return {
        "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
        "kind": "NodeFeature",
        "metadata": {"name": node, "namespace": NFD_NAMESPACE, "labels": {NODE_NAME_LABEL: node}},
        "spec": spec,
    }


def variant(
    nodefeature: Mapping[str, Any],
    node: str,
    *,
    drop_modules: Iterable[str] = (),
    add_modules: Iterable[str] = (),
    cpu_vendor: str | None = None,
    add_pci: Iterable[Mapping[str, str]] = (),
    kernel_version: str | None = None,
    attributes: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """A NodeFeature for another (fake) node, cloned from a real one and changed as asked."""
    clone = sanitized(nodefeature, node)
    features = clone["spec"]["features"]
    flags = features.setdefault("flags", {})
    modules = flags.setdefault("kernel.loadedmodule", {"elements": {}})
    elements = modules.get("elements") or {}
    for module in drop_modules:
        elements.pop(module, None)
    for module in add_modules:
        elements[module] = {}
    modules["elements"] = elements
    attrs = features.setdefault("attributes", {})
    if cpu_vendor is not None:
        model = attrs.setdefault("cpu.model", {"elements": {}})
        model.setdefault("elements", {})["vendor_id"] = cpu_vendor
    if kernel_version is not None:
        major, minor, *rest = [*kernel_version.split("-")[0].split("."), "0", "0"]
        attrs["kernel.version"] = {
            "elements": {
                "full": kernel_version,
                "major": major,
                "minor": minor,
                "revision": rest[0],
            }
        }
    for feature, values in (attributes or {}).items():
        attrs.setdefault(feature, {"elements": {}}).setdefault("elements", {}).update(values)
    instances = features.setdefault("instances", {})
    pci = instances.setdefault("pci.device", {"elements": []})
    for device in add_pci:
        pci.setdefault("elements", []).append({"attributes": dict(device)})
    return clone


def publish(cluster: ControlPlane, nodefeature: Mapping[str, Any]) -> dict[str, Any]:
    """Create or replace a NodeFeature object through the apiserver."""
    metadata = nodefeature["metadata"]
    namespace, name = metadata.get("namespace", NFD_NAMESPACE), metadata["name"]
    ensure_namespace(cluster, namespace)
    body = {k: v for k, v in nodefeature.items() if not k.startswith("_")}
    path = NODEFEATURES.format(namespace=namespace, name=name)
    try:
        current = cluster.request("GET", path)
    except Exception:
        collection = path.rsplit("/", 1)[0]
        return dict(cluster.request("POST", collection, body))
    body = copy.deepcopy(body)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    return dict(cluster.request("PUT", path, body))


NVIDIA_H100 = {
    "class": "0302",
    "vendor": "10de",
    "device": "2330",
    "subsystem_vendor": "10de",
    "subsystem_device": "16c1",
}
