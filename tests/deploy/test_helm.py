"""The Helm chart: lint, render, server-side dry run, and agreement with the kustomize tree.

Helm is devcluster's own build (helm.sh/helm/v3 from the Go module proxy).
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.controlplane import ControlPlane
from extender.server.config import settings_from
from tests.deploy.conftest import (
    CHART,
    DEPLOY,
    NAMESPACE,
    ROOT,
    by_kind,
    documents,
    dry_run,
    kustomize,
    run,
    scheduler_config,
)
from tests.deploy.test_config import check_environment, check_spec_map_files
from tests.deploy.test_rbac import granted

ALL_ON = [
    "tls.enabled=true",
    "prometheus.serviceMonitor.enabled=true",
    "pullSecrets.enabled=true",
    "registryConfig.enabled=true",
    "registryAuth.enabled=true",
    "specMap.enabled=true",
    "drift.label=true",
]
# The kustomize tree each set of values must agree with.
VARIANTS = {
    "default": ([], "default"),
    "all-on": (ALL_ON, "all"),
    "variants": (["variants.enabled=true"], "variants"),
    "single-call": (["scheduler.singleCall=true"], "single-call"),
}


def unhashed(obj: dict[str, Any]) -> str:
    name: str = obj["metadata"]["name"]
    return name.rsplit("-", 1)[0] if obj["kind"] == "ConfigMap" else name


def template(helm: Path, settings: list[str]) -> list[dict[str, Any]]:
    args = [str(helm), "template", "image-compat", str(CHART), "--namespace", NAMESPACE]
    for setting in settings:
        args += ["--set", setting]
    return documents(run(args))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint(variant: str, helm: Path) -> None:
    args = [str(helm), "lint", "--strict", str(CHART)]
    for setting in VARIANTS[variant][0]:
        args += ["--set", setting]
    assert "0 chart(s) failed" in run(args)


# docs/quickstart.md's install command.
QUICKSTART = [
    "extender.image.repository=registry.example.com/image-compat-extender",
    "specMap.enabled=true",
]


# The free-form values: extra environment and volumes.
EXTRAS = [
    "extender.extraEnv[0].name=IMAGE_COMPAT_ON_REGISTRY_ERROR",
    "extender.extraEnv[0].value=ignore",
    "extender.extraVolumes[0].name=ca",
    "extender.extraVolumes[0].configMap.name=my-ca",
    "extender.extraVolumeMounts[0].name=ca",
    "extender.extraVolumeMounts[0].mountPath=/etc/my-ca",
]
OTHER_VARIANTS = {"quickstart": QUICKSTART, "extras": [*ALL_ON, *EXTRAS]}


@pytest.mark.parametrize("variant", [*sorted(VARIANTS), *sorted(OTHER_VARIANTS)])
def test_helm_template_passes_server_side_dry_run(
    variant: str, helm: Path, kubectl: Path, cluster_for_deploy: ControlPlane
) -> None:
    settings = OTHER_VARIANTS.get(variant) or VARIANTS[variant][0]
    objects = template(helm, settings)
    check_environment(objects)
    out = dry_run(cluster_for_deploy, kubectl, objects)
    assert out.count("(server dry run)") == len(objects)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_and_kustomize_agree(variant: str, helm: Path, kubectl: Path) -> None:
    settings, overlay = VARIANTS[variant]
    chart = template(helm, settings)
    tree = kustomize(kubectl, DEPLOY / "overlays" / overlay)
    # The same RBAC rules, for both accounts, in the same namespaces.
    for account in ("image-compat-extender", "image-compat-scheduler"):
        assert granted(chart, account) == granted(tree, account), account
    # The same objects (the Namespace is Helm's --create-namespace; kustomize's generated
    # ConfigMaps carry a content hash, Helm's a checksum annotation on the pod template).
    names = {(o["kind"], o["metadata"]["name"]) for o in chart}
    tree_names = {(o["kind"], unhashed(o)) for o in tree if o["kind"] != "Namespace"}
    assert names == tree_names
    # The same scheduler configuration.
    assert scheduler_config(chart) == scheduler_config(tree)
    check_environment(chart)


def test_values_schema_rejects_wrong_types(helm: Path) -> None:
    for setting in (
        "extender.replicas=two",
        "tls.enabled=maybe",
        "scheduler.percentageOfNodesToScore=101",
        "scheduler.httpTimeout=soon",
        "extender.imageTag=typo",
    ):
        done = subprocess.run(
            [str(helm), "template", "x", str(CHART), "--set", setting],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0, f"{setting} was accepted"
        assert "values don't meet the specifications of the schema" in done.stderr, done.stderr


def test_chart_versions_follow_the_package() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == version
    assert chart["appVersion"] == version


def test_image_defaults_to_the_app_version(helm: Path) -> None:
    objects = template(helm, [])
    (extender,) = [d for d in by_kind(objects, "Deployment") if "extender" in d["metadata"]["name"]]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = extender["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"image-compat-extender:{chart['appVersion']}"


def test_notes_tell_how_to_use_the_scheduler(helm: Path, devcluster: ControlPlane) -> None:
    env = {**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)}
    out = run(
        [
            str(helm),
            "install",
            "image-compat",
            str(CHART),
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            "--set",
            "scheduler.schedulerName=my-scheduler",
        ],
        env=env,
    )
    assert "schedulerName: my-scheduler" in out


def test_spec_map_values_are_loadable(helm: Path, tmp_path: Path) -> None:
    objects = template(helm, ["specMap.enabled=true"])
    (config_map,) = [
        o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "image-compat-spec-map"
    ]
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    check_spec_map_files(tmp_path)


def test_one_timeout_value_for_scheduler_and_extender(helm: Path) -> None:
    objects = template(helm, ["scheduler.httpTimeout=3s"])
    (extender,) = scheduler_config(objects)["extenders"]
    (deployment,) = [
        d for d in by_kind(objects, "Deployment") if "extender" in d["metadata"]["name"]
    ]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert extender["httpTimeout"] == env["IMAGE_COMPAT_SCHEDULER_HTTP_TIMEOUT"] == "3s"


def test_registry_host_lists_reach_serve(helm: Path) -> None:
    objects = template(
        helm,
        [
            "registryHosts.allow={registry.example.com,*.pkg.dev,10.20.0.0/16}",
            "registryHosts.deny={10.20.9.0/24}",
        ],
    )
    check_environment(objects)
    (deployment,) = [
        d for d in by_kind(objects, "Deployment") if "extender" in d["metadata"]["name"]
    ]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    settings = settings_from(None, env)
    assert settings.registry_allow == ("registry.example.com", "*.pkg.dev", "10.20.0.0/16")
    assert settings.registry_deny == ("10.20.9.0/24",)
