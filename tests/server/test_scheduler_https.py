"""A real kube-scheduler, configured by scheduler-config/image-compat-scheduler-tls.yaml,
places a pod through a real ``serve`` over HTTPS with client certificates (mTLS)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from devcluster.controlplane import ControlPlane
from devcluster.pki import TestCA
from devcluster.pytest_plugin import MakeNode
from devcluster.stack import wait_bound
from tests.deploy.test_scheduler_config import CONFIG_DIR
from tests.policy.helpers import PREFERRED_FALLBACK
from tests.server.test_serve import NODEFEATURES, Server


def test_kube_scheduler_places_a_pod_over_mtls(
    devcluster: ControlPlane, make_node: MakeNode, k8s_namespace: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    new, old = f"tls-new-{suffix}", f"tls-old-{suffix}"
    make_node(new)
    make_node(old)
    (tmp_path / "nodes.yaml").write_text(
        NODEFEATURES.format(node=new, major=6) + "---\n" + NODEFEATURES.format(node=old, major=4)
    )
    (tmp_path / "app.yaml").write_text(PREFERRED_FALLBACK)
    (tmp_path / "map.yaml").write_text("- image: 'registry.example/*'\n  spec: app.yaml\n")

    ca, client_ca = TestCA("extender-ca"), TestCA("scheduler-client-ca")
    ca.write_cert(tmp_path / "ca.crt")
    client_ca.write_cert(tmp_path / "client-ca.crt")
    ca.issue_server_cert(["localhost", "127.0.0.1"]).write(
        tmp_path / "tls.crt", tmp_path / "tls.key"
    )
    client_cert, client_key = client_ca.issue_client_cert("image-compat-scheduler").write(
        tmp_path / "client.crt", tmp_path / "client.key"
    )

    server = Server(
        [
            "--listen=127.0.0.1:0",
            f"--features-file={tmp_path / 'nodes.yaml'}",
            f"--spec-map={tmp_path / 'map.yaml'}",
            f"--tls-cert={tmp_path / 'tls.crt'}",
            f"--tls-key={tmp_path / 'tls.key'}",
            f"--client-ca={tmp_path / 'client-ca.crt'}",
            "--access-log",
        ],
        {},
    )
    config: dict[str, Any] = yaml.safe_load(
        (CONFIG_DIR / "image-compat-scheduler-tls.yaml").read_text()
    )
    del config["clientConnection"]  # devcluster's admin kubeconfig
    config["leaderElection"] = {"leaderElect": False}
    [extender] = config["extenders"]
    extender["urlPrefix"] = f"https://127.0.0.1:{server.port()}/"
    extender["tlsConfig"] = {
        "caFile": str(tmp_path / "ca.crt"),
        "certFile": str(client_cert),
        "keyFile": str(client_key),
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": k8s_namespace},
        "spec": {
            "schedulerName": "image-compat-scheduler",
            "containers": [{"name": "app", "image": "registry.example/app:1"}],
        },
    }
    try:
        devcluster.start_scheduler(config, name="image-compat-scheduler")
        devcluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
        assert wait_bound(devcluster, k8s_namespace, "web", timeout=60) == new
    finally:
        devcluster.stop_scheduler("image-compat-scheduler")
        code = server.stop()
    assert code == 0, server.log
    assert "HTTPS, client certificates required" in server.log
    # The scheduler's calls arrived (so its client certificate was accepted) and were logged.
    assert f"filter pod={k8s_namespace}/web" in server.log
    assert "Traceback" not in server.log
