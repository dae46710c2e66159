"""scheduler-config/: the KubeSchedulerConfiguration for the dedicated scheduler."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "scheduler-config"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def test_there_is_a_config() -> None:
    assert [p.name for p in CONFIGS] == ["image-compat-scheduler.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_dedicated_scheduler_with_the_extender(path: Path) -> None:
    config = load(path)
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert [p["schedulerName"] for p in config["profiles"]] == ["image-compat-scheduler"]
    assert config["percentageOfNodesToScore"] == 100
    election = config["leaderElection"]
    assert election["leaderElect"] is True
    assert election["resourceName"] not in ("", "kube-scheduler")
    [extender] = config["extenders"]
    assert extender["filterVerb"] == "filter"
    assert extender["prioritizeVerb"] == "prioritize"
    assert extender["nodeCacheCapable"] is True
    assert extender["ignorable"] is False
    assert isinstance(extender["weight"], int) and extender["weight"] > 0
    assert extender["httpTimeout"].endswith("s")
    assert extender["urlPrefix"].endswith("/")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_values_to_substitute_appear_once_each(path: Path) -> None:
    text = path.read_text()
    assert text.count("urlPrefix:") == 1
    assert text.count("kubeconfig:") == 1


@pytest.mark.integration
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_kube_scheduler_accepts_the_config(path: Path, tmp_path: Path) -> None:
    from devcluster import build

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    config = load(path)
    config["clientConnection"]["kubeconfig"] = str(kubeconfig)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            str(build.binary("kube-scheduler")),
            f"--config={tmp_path / 'config.yaml'}",
            f"--write-config-to={tmp_path / 'out.yaml'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = load(tmp_path / "out.yaml")
    assert written["extenders"][0]["urlPrefix"] == config["extenders"][0]["urlPrefix"]
