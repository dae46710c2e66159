"""Shared helpers for the deployment tests: render deploy/ and dry-run it on devcluster.

kubectl (with its built-in kustomize) and Helm come from devcluster's own build; the CRDs
that components need (cert-manager's, prometheus-operator's ServiceMonitor, NFD's) are read
from those projects' Go modules at pinned versions (through the Go module cache, never
copied into this repository), so the server-side dry run validates our objects against the
real schemas.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster import build, nfd
from devcluster.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "image-compat-extender"
NAMESPACE = "image-compat-system"
NFD_NAMESPACE = "node-feature-discovery"

# Third-party CRDs the components use, from each project's Go module at a pinned version.
CRD_SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "cert-manager": (
        "github.com/cert-manager/cert-manager",
        "v1.19.2",
        (
            "deploy/crds/cert-manager.io_issuers.yaml",
            "deploy/crds/cert-manager.io_certificates.yaml",
        ),
    ),
    "prometheus-operator": (
        "github.com/prometheus-operator/prometheus-operator",
        "v0.85.0",
        ("example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",),
    ),
}


def module_file(module: str, version: str, path: str) -> Path:
    """A file of a Go module at a version, from devcluster's module cache (downloaded once)."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=build.GO_MODULES["go-helm"],
        env=build.go_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"go mod download {module}@{version}:\n{done.stderr[-2000:]}"
    return Path(json.loads(done.stdout)["Dir"]) / path


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return build.binary("kubectl")


@pytest.fixture(scope="session")
def helm() -> Path:
    return build.binary("helm")


def kustomize(kubectl: Path, directory: Path) -> list[dict[str, Any]]:
    return documents(run([str(kubectl), "kustomize", str(directory)]))


def compose(
    tmp: Path,
    resources: Iterable[Path],
    components: Iterable[Path] = (),
    **extra: Any,
) -> Path:
    """A throwaway kustomization over deploy/ (kustomize only accepts relative paths)."""
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(p, tmp) for p in resources],
        "components": [os.path.relpath(p, tmp) for p in components],
        **extra,
    }
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    return tmp


@pytest.fixture(scope="session")
def cluster_for_deploy(devcluster: ControlPlane, kubectl: Path) -> Iterator[ControlPlane]:
    """devcluster with the namespaces and every CRD the manifests refer to."""
    for namespace in (NAMESPACE, NFD_NAMESPACE):
        nfd.ensure_namespace(devcluster, namespace)
    # As deploy/base/namespace.yaml labels it, so the dry run warns about any pod template
    # the restricted Pod Security profile would refuse.
    env = {**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)}
    label = "pod-security.kubernetes.io/enforce=restricted"
    run([str(kubectl), "label", "--overwrite", "namespace", NAMESPACE, label], env=env)
    nfd.install_crds(devcluster)
    for module, version, paths in CRD_SOURCES.values():
        for path in paths:
            for doc in documents(module_file(module, version, path).read_text()):
                devcluster.install_crd(doc)
    yield devcluster


def dry_run(cluster: ControlPlane, kubectl: Path, objects: list[dict[str, Any]]) -> str:
    """kubectl apply --dry-run=server with strict field validation; returns its stdout.

    Warnings (e.g. Pod Security "would violate" or unknown fields) fail the test too.
    """
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    text = yaml.safe_dump_all(objects, sort_keys=False)
    done = subprocess.run(
        [str(kubectl), "apply", "--dry-run=server", "--validate=strict", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"dry run failed:\n{done.stderr}"
    warnings = [
        line
        for line in done.stderr.splitlines()
        if line.startswith("Warning:") and "last-applied-configuration" not in line
    ]
    assert not warnings, "\n".join(warnings)
    return done.stdout


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def scheduler_config(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    (config,) = [
        o
        for o in by_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("image-compat-scheduler-config")
    ]
    doc: dict[str, Any] = yaml.safe_load(config["data"]["config.yaml"])
    return doc
