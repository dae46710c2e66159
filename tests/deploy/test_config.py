"""What the manifests tell the two programs agrees with the programs and with each other.

- every IMAGE_COMPAT_* variable in deploy/ (kustomize and Helm) is a real `serve` option
  with a valid value;
- the in-cluster scheduler configurations differ from scheduler-config/ only where a cluster
  must (kubeconfig, Lease namespace, extender URL, TLS), and their URLs reach the Service and
  the container port;
- the real kube-scheduler (devcluster's, the version the manifests pin) starts with them.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.controlplane import ControlPlane
from extender.artifacts.spec_map import SpecMapSource
from extender.server.config import OPTIONS
from tests.deploy.conftest import (
    DEPLOY,
    NAMESPACE,
    ROOT,
    by_kind,
    kustomize,
    one,
    scheduler_config,
)

OPTION_BY_ENV = {o.env: o for o in OPTIONS}
# Options the manifests already set for work not merged yet, by feature. Until a feature's
# options appear in `serve`, they are accepted here (the current server ignores unknown
# IMAGE_COMPAT_* variables); once any of them appears, all of them must.
PENDING_OPTIONS = {
    "TLS serving": {"IMAGE_COMPAT_TLS_CERT", "IMAGE_COMPAT_TLS_KEY"},
    "registry source": {
        "IMAGE_COMPAT_REGISTRY_CONFIG",
        "IMAGE_COMPAT_DOCKER_CONFIG",
        "IMAGE_COMPAT_SCHEDULER_HTTP_TIMEOUT",
    },
}
PENDING = {
    name for names in PENDING_OPTIONS.values() if not names & OPTION_BY_ENV.keys() for name in names
}
OVERLAYS = ("default", "tls", "sidecar", "all")


def containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for d in by_kind(objects, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def check_environment(objects: list[dict[str, Any]]) -> None:
    for container in containers(objects):
        for var in container.get("env") or ():
            name = var["name"]
            if not name.startswith("IMAGE_COMPAT_"):
                continue
            if name in PENDING:
                continue
            assert name in OPTION_BY_ENV, f"{name} is not an option of serve"
            OPTION_BY_ENV[name].parse(var["value"])


def test_pending_options_arrive_together() -> None:
    for feature, names in PENDING_OPTIONS.items():
        arrived = names & OPTION_BY_ENV.keys()
        assert not arrived or arrived == names, f"{feature}: {names - arrived} not in serve"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_variables_are_serve_options(overlay: str, kubectl: Path) -> None:
    check_environment(kustomize(kubectl, DEPLOY / "overlays" / overlay))


def _without(config: dict[str, Any], *paths: tuple[str, ...]) -> dict[str, Any]:
    doc = copy.deepcopy(config)
    for path in paths:
        node: Any = doc
        for key in path[:-1]:
            node = node[key] if not isinstance(node, list) else node[int(key)]
        del node[path[-1]]
    return doc


DEPLOY_SPECIFIC = (
    ("clientConnection",),
    ("leaderElection", "resourceNamespace"),
    ("extenders", "0", "urlPrefix"),
)


def test_base_scheduler_config_matches_the_reference_config(kubectl: Path) -> None:
    reference = yaml.safe_load(
        (ROOT / "scheduler-config" / "image-compat-scheduler.yaml").read_text()
    )
    ours = scheduler_config(kustomize(kubectl, DEPLOY / "base"))
    assert _without(ours, *DEPLOY_SPECIFIC) == _without(reference, *DEPLOY_SPECIFIC)
    assert ours["clientConnection"]["kubeconfig"] == ""  # the ServiceAccount
    assert ours["leaderElection"]["resourceNamespace"] == NAMESPACE


def test_single_call_overlay_matches_its_reference_config(kubectl: Path) -> None:
    reference = yaml.safe_load(
        (ROOT / "scheduler-config" / "image-compat-scheduler-single-call.yaml").read_text()
    )
    ours = scheduler_config(kustomize(kubectl, DEPLOY / "overlays" / "single-call"))
    assert _without(ours, *DEPLOY_SPECIFIC) == _without(reference, *DEPLOY_SPECIFIC)
    assert (
        ours["extenders"][0]["urlPrefix"] == f"http://image-compat-extender.{NAMESPACE}.svc:8888/"
    )


@pytest.mark.parametrize(
    ("overlay", "scheme", "host"),
    [
        ("default", "http", f"image-compat-extender.{NAMESPACE}.svc"),
        ("tls", "https", f"image-compat-extender.{NAMESPACE}.svc"),
        ("sidecar", "http", "127.0.0.1"),
    ],
)
def test_scheduler_reaches_the_extender(
    overlay: str, scheme: str, host: str, kubectl: Path
) -> None:
    objects = kustomize(kubectl, DEPLOY / "overlays" / overlay)
    config = scheduler_config(objects)
    base = scheduler_config(kustomize(kubectl, DEPLOY / "base"))
    (extender,) = config["extenders"]
    url = f"{scheme}://{host}:8888/"
    assert extender["urlPrefix"] == url
    tls_keys = {"enableHTTPS", "tlsConfig"}
    assert {k: v for k, v in extender.items() if k not in tls_keys | {"urlPrefix"}} == {
        k: v for k, v in base["extenders"][0].items() if k != "urlPrefix"
    }
    assert _without(config, ("extenders",)) == _without(base, ("extenders",))
    if scheme == "https":
        assert extender["enableHTTPS"] is True
        ca_file = extender["tlsConfig"]["caFile"]
        scheduler = one(objects, "Deployment", "image-compat-scheduler")
        mounts = scheduler["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert any(ca_file == f"{m['mountPath']}/ca.crt" for m in mounts)
    else:
        assert tls_keys.isdisjoint(extender)
    # The extender listens where the URL points.
    (container,) = [c for c in containers(objects) if c["name"] == "extender"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["IMAGE_COMPAT_LISTEN"].endswith(":8888")
    # The extender checks its wait budget against the scheduler's timeout: the same value.
    assert env["IMAGE_COMPAT_SCHEDULER_HTTP_TIMEOUT"] == extender["httpTimeout"]
    if overlay != "sidecar":
        service = one(objects, "Service", "image-compat-extender")
        assert service["spec"]["ports"][0]["port"] == 8888
        assert container["ports"][0]["containerPort"] == 8888


@pytest.mark.parametrize("overlay", ["default", "tls"])
def test_kube_scheduler_starts_with_the_rendered_config(
    overlay: str, kubectl: Path, devcluster: ControlPlane
) -> None:
    """The real kube-scheduler loads the configuration (profiles, extender, TLS files)."""
    config = scheduler_config(kustomize(kubectl, DEPLOY / "overlays" / overlay))
    # Out of cluster: devcluster's admin identity, no leader election (as devcluster does).
    config.pop("clientConnection")
    config.pop("leaderElection")
    extender = config["extenders"][0]
    if "tlsConfig" in extender:
        assert devcluster.pki is not None
        extender["tlsConfig"]["caFile"] = str(devcluster.pki.ca_file)  # a real CA file
    name = f"deploy-{overlay}"
    devcluster.start_scheduler(config, name=name)
    try:
        assert devcluster.schedulers[name].process.alive()
    finally:
        devcluster.stop_scheduler(name)


def check_spec_map_files(directory: Path) -> None:
    """The extender loads the map, and check-spec finds no error in the specs it names."""
    source = SpecMapSource(directory / "spec-map.yaml")
    assert source.ready
    entries = yaml.safe_load((directory / "spec-map.yaml").read_text())
    specs = [str(directory / entry["spec"]) for entry in entries]
    done = subprocess.run(
        [sys.executable, "-m", "extender", "check-spec", *specs],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_spec_map_component_is_loadable(kubectl: Path, tmp_path: Path) -> None:
    objects = kustomize(kubectl, DEPLOY / "overlays" / "all")
    (config_map,) = [
        o
        for o in by_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("image-compat-spec-map")
    ]
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    check_spec_map_files(tmp_path)
    (container,) = [c for c in containers(objects) if c["name"] == "extender"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spec-map")
    assert env["IMAGE_COMPAT_SPEC_MAP"] == f"{mount['mountPath']}/spec-map.yaml"
