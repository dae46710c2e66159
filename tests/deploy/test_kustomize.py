"""deploy/ renders with kubectl's kustomize and passes a server-side dry run on devcluster.

Every overlay, the base alone, and the base with each component alone (so a component never
depends on another by accident).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane
from tests.deploy.conftest import DEPLOY, NAMESPACE, by_kind, compose, dry_run, kustomize, one

OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
COMPONENTS = sorted(p.name for p in (DEPLOY / "components").iterdir() if p.is_dir())
# A component that only wires something another one provides is tested with its provider.
COMPONENT_NEEDS = {"tls": ["cert-manager", "tls"]}


def test_the_expected_overlays_and_components_exist() -> None:
    assert OVERLAYS == ["all", "default", "sidecar", "single-call", "tls", "variants"]
    assert COMPONENTS == [
        "cert-manager",
        "drift-label",
        "prometheus",
        "pull-secrets",
        "registry-auth",
        "registry-config",
        "single-call",
        "spec-map",
        "tls",
        "variants",
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_server_side_dry_run(
    overlay: str, kubectl: Path, cluster_for_deploy: ControlPlane
) -> None:
    objects = kustomize(kubectl, DEPLOY / "overlays" / overlay)
    out = dry_run(cluster_for_deploy, kubectl, objects)
    assert out.count("(server dry run)") == len(objects)


@pytest.mark.parametrize("component", COMPONENTS)
def test_base_with_one_component_passes_server_side_dry_run(
    component: str, tmp_path: Path, kubectl: Path, cluster_for_deploy: ControlPlane
) -> None:
    names = COMPONENT_NEEDS.get(component, [component])
    directory = compose(tmp_path, [DEPLOY / "base"], [DEPLOY / "components" / n for n in names])
    objects = kustomize(kubectl, directory)
    dry_run(cluster_for_deploy, kubectl, objects)


def test_base_objects(kubectl: Path) -> None:
    objects = kustomize(kubectl, DEPLOY / "base")
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    scheduler = one(objects, "Deployment", "image-compat-scheduler")
    extender = one(objects, "Deployment", "image-compat-extender")
    # Separate identities: the extender never runs with the scheduler's powers.
    assert scheduler["spec"]["template"]["spec"]["serviceAccountName"] == "image-compat-scheduler"
    assert extender["spec"]["template"]["spec"]["serviceAccountName"] == "image-compat-extender"
    for deployment in (scheduler, extender):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "livenessProbe" in container and "readinessProbe" in container
            assert container["resources"]["requests"]
    # The upstream scheduler image, pinned.
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.k8s.io/kube-scheduler:v1.34.4"
    # The NetworkPolicy admits the scheduler's pods to the extender's port, nothing else.
    (policy,) = by_kind(objects, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == NAMESPACE
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "image-compat-scheduler"}}}
    ]


def test_sidecar_overlay_has_one_deployment_on_loopback(kubectl: Path) -> None:
    objects = kustomize(kubectl, DEPLOY / "overlays" / "sidecar")
    (deployment,) = by_kind(objects, "Deployment")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"kube-scheduler", "extender"}
    env = {e["name"]: e["value"] for e in containers["extender"]["env"]}
    assert env["IMAGE_COMPAT_LISTEN"] == "127.0.0.1:8888"
    assert not by_kind(objects, "Service")
    assert not by_kind(objects, "NetworkPolicy")
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        for subject in binding["subjects"]:
            assert subject["name"] != "image-compat-extender"


def test_dry_run_rejects_a_misspelt_field(kubectl: Path, cluster_for_deploy: ControlPlane) -> None:
    """The dry run checks fields against the real schemas (here the ServiceMonitor CRD's)."""
    objects = kustomize(kubectl, DEPLOY / "overlays" / "all")
    monitor = one(objects, "ServiceMonitor", "image-compat-extender")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(AssertionError, match="intervall"):
        dry_run(cluster_for_deploy, kubectl, [monitor])


def test_quickstart_overlay(
    tmp_path: Path, kubectl: Path, cluster_for_deploy: ControlPlane
) -> None:
    """docs/quickstart.md's own overlay: the default overlay, the spec map, your image."""
    directory = compose(
        tmp_path,
        [DEPLOY / "overlays" / "default"],
        [DEPLOY / "components" / "spec-map"],
        images=[
            {
                "name": "image-compat-extender",
                "newName": "registry.example.com/image-compat-extender",
                "newTag": "0.1.0",
            }
        ],
    )
    objects = kustomize(kubectl, directory)
    extender = one(objects, "Deployment", "image-compat-extender")
    (container,) = extender["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/image-compat-extender:0.1.0"
    dry_run(cluster_for_deploy, kubectl, objects)
