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


def test_there_is_a_config_per_feature() -> None:
    assert [p.name for p in CONFIGS] == [
        "image-compat-scheduler-single-call.yaml",
        "image-compat-scheduler-tls.yaml",
        "image-compat-scheduler-variants.yaml",
        "image-compat-scheduler.yaml",
    ]


def test_variants_config_is_the_plain_one_with_bind() -> None:
    plain = load(CONFIG_DIR / "image-compat-scheduler.yaml")
    variants = load(CONFIG_DIR / "image-compat-scheduler-variants.yaml")
    [extender] = variants["extenders"]
    assert extender.pop("bindVerb") == "bind"
    assert variants == plain
    # The shipped file has no bindVerb: a cluster without variants keeps the default binder.
    assert "bindVerb" not in plain["extenders"][0]


def test_single_call_config_is_the_plain_one_with_one_verb() -> None:
    plain = load(CONFIG_DIR / "image-compat-scheduler.yaml")
    single = load(CONFIG_DIR / "image-compat-scheduler-single-call.yaml")
    [extender] = single["extenders"]
    [plain_extender] = plain["extenders"]
    # One call per attempt: filter keeps the best fit, nothing is scored, so no weight.
    assert extender.pop("filterVerb") == "filter-best-fit"
    assert plain_extender.pop("filterVerb") == "filter"
    assert "prioritizeVerb" not in extender and "weight" not in extender
    del plain_extender["prioritizeVerb"], plain_extender["weight"]
    assert single == plain


def test_tls_variant_verifies_the_extender_and_presents_a_client_certificate() -> None:
    path = CONFIG_DIR / "image-compat-scheduler-tls.yaml"
    [extender] = load(path)["extenders"]
    assert extender["enableHTTPS"] is True
    assert extender["urlPrefix"].startswith("https://")  # enableHTTPS does not change it
    tls = extender["tlsConfig"]
    assert set(tls) == {"caFile", "certFile", "keyFile"}
    assert "insecure" not in tls
    # The one fact an operator must not miss, next to the value it is about.
    assert "SILENTLY SKIPS" in path.read_text()
    plain = load(CONFIG_DIR / "image-compat-scheduler.yaml")
    tls_config = load(path)
    for key in ("leaderElection", "percentageOfNodesToScore", "profiles"):
        assert tls_config[key] == plain[key]
    [plain_extender] = plain["extenders"]
    for key, value in plain_extender.items():
        if key != "urlPrefix":
            assert extender[key] == value, key


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
    if path.name == "image-compat-scheduler-single-call.yaml":
        assert extender["filterVerb"] == "filter-best-fit"
        assert "prioritizeVerb" not in extender
    else:
        assert extender["filterVerb"] == "filter"
        assert extender["prioritizeVerb"] == "prioritize"
        assert isinstance(extender["weight"], int) and extender["weight"] > 0
    assert extender["preemptVerb"] == "preempt"
    assert extender["nodeCacheCapable"] is True
    assert extender["ignorable"] is False
    assert extender["httpTimeout"].endswith("s")
    assert extender["urlPrefix"].endswith("/")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_values_to_substitute_appear_once_each(path: Path) -> None:
    text = path.read_text()
    assert text.count("urlPrefix:") == 1
    assert text.count("kubeconfig:") == 1
    for key in ("caFile:", "certFile:", "keyFile:"):
        assert text.count(key) <= 1


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
    tls = config["extenders"][0].get("tlsConfig")
    if tls is not None:  # the scheduler reads these files when it builds the extender
        from devcluster.pki import TestCA

        ca = TestCA("extender-ca")
        tls["caFile"] = str(ca.write_cert(tmp_path / "ca.crt"))
        cert, key = ca.issue_client_cert("image-compat-scheduler").write(
            tmp_path / "client.crt", tmp_path / "client.key"
        )
        tls["certFile"], tls["keyFile"] = str(cert), str(key)
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
