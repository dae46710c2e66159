"""No credential in any log line at debug level, with real credentials in use: ``serve``
at ``--log-level DEBUG`` loads a spec from Debian's docker-registry (TLS, htpasswd), with a
docker config of its own and a pod's pull secret read from a real API server."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from devcluster.controlplane import ControlPlane
from devcluster.oci import attach_spec, push_image
from devcluster.registries import Registry
from tests.server.test_serve import Server

pytestmark = pytest.mark.integration

SPEC = "version: v1alpha1\ncompatibilities:\n- tag: any\n  rules: []\n"
# The extender's own docker config carries a wrong password: it is tried, refused, and must
# not be logged either.
OWN_PASSWORD = "own-config-Zq81-wrong"


async def test_no_credential_in_debug_logs_with_registry_auth(
    *,
    devcluster: ControlPlane,
    k8s_api: Any,
    k8s_namespace: str,
    docker_registry: Registry,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    image = push_image(docker_registry.endpoint, unique_repo, "v1")
    attach_spec(
        docker_registry.endpoint,
        unique_repo,
        image.digest,
        SPEC,
        created=datetime.now(UTC),
        distribution_spec="v1.1-referrers-tag",
    )
    host, user, password = docker_registry.host, docker_registry.username, docker_registry.password
    assert user and password
    pull_auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    own_auth = base64.b64encode(f"{user}:{OWN_PASSWORD}".encode()).decode()
    pull_config = json.dumps({"auths": {host: {"auth": pull_auth}}})
    client.CoreV1Api(k8s_api).create_namespaced_secret(
        k8s_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="regcred"),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": pull_config},
        ),
    )
    (tmp_path / "docker.json").write_text(json.dumps({"auths": {host: {"auth": own_auth}}}))
    (tmp_path / "registries.yaml").write_text(
        f"registries:\n  '{host}': {{caFile: '{docker_registry.ca_file}'}}\n"
    )
    server = Server(
        [
            "--listen=127.0.0.1:0",
            "--log-level=DEBUG",
            "--access-log",
            f"--kubeconfig={devcluster.kubeconfig}",
            "--feature-source=none",
            "--artifact-source=registry",
            f"--docker-config={tmp_path / 'docker.json'}",
            f"--registry-config={tmp_path / 'registries.yaml'}",
            "--registry-allow-loopback",
        ],
        {},
    )
    secrets = {
        "registry password": password,
        "pull secret auth": pull_auth,
        "own docker config password": OWN_PASSWORD,
        "own docker config auth": own_auth,
        "pull secret document": base64.b64encode(pull_config.encode()).decode(),
    }
    try:
        base = f"http://127.0.0.1:{server.port()}"
        pod = {
            "metadata": {"name": "web", "namespace": k8s_namespace},
            "spec": {
                "schedulerName": "image-compat-scheduler",
                "containers": [{"name": "app", "image": image.tag_ref}],
                "imagePullSecrets": [{"name": "regcred"}],
            },
        }
        args = {"Pod": pod, "Nodes": None, "NodeNames": ["a"]}
        answer: dict[str, Any] = {}
        async with aiohttp.ClientSession() as session:
            for _ in range(60):  # the spec loads in the background; bounded retries
                async with session.post(f"{base}/filter", json=args) as response:
                    answer = await response.json()
                if not answer["Error"]:
                    break
                await asyncio.sleep(0.5)
        assert not answer["Error"], (answer, server.log)
    finally:
        server.stop()
    log = server.log
    assert " DEBUG " in log, "ran at debug level"
    assert unique_repo in log, "the registry calls were logged"
    for what, secret in secrets.items():
        assert secret not in log, f"{what} in the log"
