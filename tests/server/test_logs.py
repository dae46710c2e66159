"""Structured logs: JSON or console lines, one access line per verb call with its fields, and
no credential in any line even at debug level."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from extender.server.logs import ConsoleFormatter, JsonFormatter, RedactingFilter, fields, redact
from tests.server.test_serve import POD, Server

# Credentials as they could reach a log: a bearer token, a registry password, docker config auth.
TOKEN = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
PASSWORD = "hunter2-Kx9q"
DOCKER_AUTH = "Ym9iOmh1bnRlcjItS3g5cQ=="
SECRETS = (TOKEN, PASSWORD, DOCKER_AUTH)


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
