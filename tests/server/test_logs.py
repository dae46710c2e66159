"""Structured logs: JSON or console lines, one access line per verb call with its fields, and
no credential in any line even at debug level."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from extender.server.logs import ConsoleFormatter, JsonFormatter, RedactingFilter, fields, redact
from tests.server.test_serve import NODEFEATURES, POD, Server

# Credentials as they could reach a log: a bearer token, a registry password, docker config auth.
TOKEN = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
PASSWORD = "hunter2-Kx9q"
DOCKER_AUTH = "Ym9iOmh1bnRlcjItS3g5cQ=="
SECRETS = (TOKEN, PASSWORD, DOCKER_AUTH)

# Required: a new kernel. Node "new" has one, "old" not.
AVX_OR_NEW_KERNEL = """
version: v1alpha1
compatibilities:
- description: new kernel
  rules:
  - name: kernel
    matchFeatures:
    - feature: kernel.version
      matchExpressions:
        major: {op: Ge, value: ["5"]}
"""


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {TOKEN}",
        f"headers={{'Authorization': 'Basic {DOCKER_AUTH}', 'Accept': '*/*'}}",
        f'response body: {{"auths": {{"registry.example": {{"auth": "{DOCKER_AUTH}"}}}}}}',
        f'{{"username": "bob", "password": "{PASSWORD}"}}',
        f"GET https://bob:{PASSWORD}@registry.example/v2/ 401",
        f"token={TOKEN}&scope=repository:app:pull",
        f"client-key-data: {DOCKER_AUTH}",
        f'response body: {{"data": {{".dockerconfigjson": "{DOCKER_AUTH}"}}}}',
    ],
)
def test_credentials_are_scrubbed(text: str) -> None:
    scrubbed = redact(text)
    assert not any(secret in scrubbed for secret in SECRETS), scrubbed
    assert "[REDACTED]" in scrubbed


def test_ordinary_text_is_left_alone() -> None:
    for text in (
        "image-compat: kernel.loadedmodule: vfio_pci Exists",
        "filter pod=shop/web nodes=3 rejected=1 duration_ms=0.4",
        "watching NodeFeatures in node-feature-discovery",
        "no usable Kubernetes configuration; give --kubeconfig",
    ):
        assert redact(text) == text


def test_json_lines_carry_the_fields_and_tracebacks_are_scrubbed() -> None:
    logger, stream = capture(JsonFormatter())
    logger.info("filter", extra=fields(verb="filter", pod="shop/web", nodes=3, rejected=1))
    try:
        raise RuntimeError(f"registry said no to Bearer {TOKEN}")
    except RuntimeError:
        logger.exception("loading %s failed", "registry.example/app:1")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "info" and first["logger"].startswith("test-logs")
    assert first["message"] == "filter"
    assert (first["verb"], first["pod"], first["nodes"], first["rejected"]) == (
        "filter",
        "shop/web",
        3,
        1,
    )
    assert second["level"] == "error" and "RuntimeError" in second["exception"]
    assert TOKEN not in stream.getvalue()


def test_console_lines_append_fields() -> None:
    logger, stream = capture(ConsoleFormatter())
    logger.warning("%s", "prioritize", extra=fields(pod="shop/web", nodes=2, note="a b"))
    line = stream.getvalue().strip()
    assert line.endswith("WARNING " + logger.name + ': prioritize pod=shop/web nodes=2 note="a b"')


@pytest.fixture
def secret_files(tmp_path: Path) -> Path:
    # A kubeconfig with a bearer token, for an API server that is not there: the watch fails
    # and retries, logging at debug level all the while.
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        f"users: [{{name: u, user: {{token: '{TOKEN}'}}}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    (tmp_path / "docker-config.json").write_text(
        json.dumps({"auths": {"registry.example": {"auth": DOCKER_AUTH}}})
    )
    return tmp_path


@pytest.fixture
def debug_server(secret_files: Path) -> Iterator[Server]:
    server = Server(
        [
            "--listen=127.0.0.1:0",
            f"--kubeconfig={secret_files / 'kubeconfig'}",
            "--log-level=debug",
            "--log-format=json",
            "--access-log",
        ],
        {"DOCKER_CONFIG": str(secret_files), "REGISTRY_PASSWORD": PASSWORD},
    )
    yield server
    server.stop()


async def test_no_credential_in_any_line_at_debug_level(debug_server: Server) -> None:
    base = f"http://127.0.0.1:{debug_server.port()}"
    secret_pod = json.loads(json.dumps(POD))
    secret_pod["metadata"]["annotations"] = {"note": f"password: {PASSWORD}"}
    secret_pod["spec"]["containers"][0]["env"] = [{"name": "TOKEN", "value": TOKEN}]
    secret_pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    args = {"Pod": secret_pod, "Nodes": None, "NodeNames": ["a", "b"]}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for verb in ("filter", "prioritize"):
            async with session.post(f"{base}/{verb}", json=args) as response:
                await response.read()
        bad = f'{{"Pod": {{"metadata": {{"name": "{PASSWORD}"}}}}, "NodeNames": "{TOKEN}"}}'
        async with session.post(f"{base}/filter", data=bad) as response:
            assert response.status == 400
    assert debug_server.stop() == 0
    lines = [line for line in debug_server.lines if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(r["level"] == "debug" for r in records), "ran at debug level"
    access = [r for r in records if r["logger"] == "extender.access" and "verb" in r]
    assert [(r["verb"], r["pod"], r["nodes"]) for r in access[:2]] == [
        ("filter", "shop/web", 2),
        ("prioritize", "shop/web", 2),
    ]
    assert all({"rejected", "duration_ms", "status"} <= set(r) for r in access)
    everything = "".join(lines)
    for secret in SECRETS:
        assert secret not in everything


def test_kubernetes_client_bodies_stay_out_of_debug_logs(tmp_path: Path) -> None:
    """The client logs whole response bodies (Secrets among them) at debug level."""
    import subprocess

    code = (
        "import logging; from extender.server.logs import configure_logging; "
        "configure_logging('DEBUG', 'console'); "
        f'logging.getLogger(\'kubernetes.client.rest\').debug(\'response body: {{"data": {{"x": "{DOCKER_AUTH}Zz"}}}}\'); '
        "logging.getLogger('extender').debug('still here')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ},
    )
    assert "still here" in result.stderr
    assert "response body" not in result.stderr


# A value that, written raw, would end the line and start a forged record of its own.
FORGED = "web\n2026-12-01T00:00:00.000Z ERROR extender.server.app: forged\r\x1b[2K\u2028x"


@pytest.mark.parametrize("formatter", [ConsoleFormatter(), JsonFormatter()])
def test_hostile_values_stay_on_one_line(formatter: logging.Formatter) -> None:
    logger, stream = capture(formatter)
    logger.warning("pod %s: no spec", FORGED, extra=fields(pod=FORGED, **{FORGED: 1}))
    try:
        raise RuntimeError(f"registry said {FORGED}")
    except RuntimeError:
        logger.exception("loading failed")
    lines = stream.getvalue().splitlines()
    timestamp = re.compile(r'^(\{"time": ")?2\d{3}-\d\d-\d\dT')
    records = [line for line in lines if timestamp.match(line)]
    assert len(records) == 2, lines
    for line in lines:
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", line), repr(line)
        assert not line.startswith("2026-12-01T00:00:00.000Z"), lines
    if isinstance(formatter, JsonFormatter):
        first = json.loads(lines[0])
        assert first["message"] == f"pod {FORGED}: no spec" and first["pod"] == FORGED
    else:
        assert all(line.startswith("    ") for line in lines[2:]), lines  # the traceback


async def test_a_pod_name_cannot_forge_a_log_line(tmp_path: Path) -> None:
    """The subset-problem warning names the pod in its message; the access line in a field."""
    (tmp_path / "nodes.yaml").write_text(
        NODEFEATURES.format(node="new", major=6)
        + "---\n"
        + NODEFEATURES.format(node="old", major=4)
    )
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "app.yaml").write_text(AVX_OR_NEW_KERNEL)
    (tmp_path / "map.yaml").write_text("- image: 'registry.example/*'\n  spec: specs/app.yaml\n")
    server = Server(
        ["--listen=127.0.0.1:0", f"--features-file={tmp_path / 'nodes.yaml'}", "--access-log"],
        {"IMAGE_COMPAT_SPEC_MAP": str(tmp_path / "map.yaml")},
    )
    try:
        base = f"http://127.0.0.1:{server.port()}"
        pod = json.loads(json.dumps(POD))
        pod["metadata"]["name"] = FORGED
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
            args = {"Pod": pod, "Nodes": None, "NodeNames": ["old"]}
            async with session.post(f"{base}/filter", json=args) as response:
                assert (await response.json())["NodeNames"] == []
    finally:
        assert server.stop() == 0
    forged = [line for line in server.lines if "forged" in line]
    assert any("subset problem" in line for line in forged), server.log
    assert len(forged) == 2, server.log  # the warning and the access line, nothing else
    assert not any(line.startswith("2026-12-01T00:00:00.000Z") for line in server.lines)
