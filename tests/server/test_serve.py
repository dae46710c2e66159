"""A real ``image-compat-extender serve`` on 127.0.0.1: startup, requests, SIGTERM shutdown,
configuration errors; and a graceful shutdown that lets a running request finish."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from extender.server.app import create_app, serve
from extender.server.config import Settings
from tests._support.polling import eventually_async
from tests.policy.helpers import PREFERRED_FALLBACK, FakeSource, fast, store_with

NODEFEATURES = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeature
metadata: {{name: {node}, labels: {{nfd.node.kubernetes.io/node-name: {node}}}}}
spec:
  features:
    attributes: {{kernel.version: {{elements: {{major: "{major}"}}}}}}
"""
POD = {
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "schedulerName": "image-compat-scheduler",
        "containers": [{"name": "app", "image": "registry.example/app:1"}],
    },
}
STARTUP_LINES = 200


class Server:
    """A ``serve`` subprocess; stderr is collected by a thread so the pipe never fills."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "extender", "serve", *argv],
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            # preexec only sets resource limits (setrlimit), safe between fork and exec.
            preexec_fn=preexec,  # noqa: PLW1509
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self._listening.set()
        self._listening.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def port(self) -> int:
        assert self._listening.wait(timeout=60), self.log
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log)
        assert match, self.log
        return int(match.group(1))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "nodes.yaml").write_text(
        NODEFEATURES.format(node="new", major=6)
        + "---\n"
        + NODEFEATURES.format(node="old", major=4)
    )
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "app.yaml").write_text(PREFERRED_FALLBACK)
    (tmp_path / "map.yaml").write_text("- image: 'registry.example/*'\n  spec: specs/app.yaml\n")
    return tmp_path


@pytest.fixture
def server(files: Path) -> Iterator[Server]:
    running = Server(
        ["--listen", "127.0.0.1:0", "--features-file", str(files / "nodes.yaml")],
        {"IMAGE_COMPAT_SPEC_MAP": str(files / "map.yaml"), "IMAGE_COMPAT_PATH_PREFIX": "/ext/"},
    )
    yield running
    running.stop()


async def test_serve_answers_and_stops_on_sigterm(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port()}"
    args = {"Pod": POD, "Nodes": None, "NodeNames": ["new", "old", "gone"]}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 200
        async with session.post(f"{base}/ext/filter", json=args) as response:
            answer = await response.json()
        assert answer["NodeNames"] == ["new"]
        assert answer["FailedAndUnresolvableNodes"] == {}  # a node passes: none named
        rejected = {**args, "NodeNames": ["old", "gone"]}
        async with session.post(f"{base}/ext/filter", json=rejected) as response:
            answer = await response.json()
        assert answer["NodeNames"] == []
        assert answer["FailedAndUnresolvableNodes"] == {
            "old": "image-compat: kernel.loadedmodule: feature missing",
            "gone": "image-compat: no NFD features",
        }
        async with session.post(f"{base}/ext/prioritize", json=args) as response:
            # old and gone score the lowest, 0: left out of the answer.
            assert await response.json() == [{"Host": "new", "Score": 10}]
        # Bad input on the real server: clear answers, and it keeps serving.
        for body in (b"", b"junk", b'{"Pod": null}', b'{"Pod": {}, "NodeNames": 3}'):
            async with session.post(f"{base}/ext/filter", data=body) as response:
                assert response.status == 400
                assert "error" in json.loads(await response.read())
        async with session.post(f"{base}/ext/filter", json=args) as response:
            assert (await response.json())["NodeNames"] == ["new"]
    assert server.stop() == 0
    assert "shutting down" in server.log and "stopped" in server.log
    assert "Traceback" not in server.log


async def test_serve_rejects_oversized_bodies(files: Path) -> None:
    running = Server(
        ["--listen", "127.0.0.1:0", "--max-body-bytes", "2Ki", "--feature-source", "none"], {}
    )
    try:
        base = f"http://127.0.0.1:{running.port()}"
        big = {"Pod": POD, "NodeNames": [f"node-{i}" for i in range(1000)]}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/filter", json=big) as response:
                assert response.status == 413
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
    finally:
        assert running.stop() == 0


def test_serve_refuses_bad_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extender", "serve", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--listen: 'nowhere' is not HOST:PORT" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "extender", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "IMAGE_COMPAT_SET_SEMANTICS": "some"},
    )
    assert result.returncode == 2 and "IMAGE_COMPAT_SET_SEMANTICS" in result.stderr


def test_serve_refuses_a_bad_spec_map(tmp_path: Path) -> None:
    (tmp_path / "map.yaml").write_text("{not: a list}")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "extender", "serve", "--feature-source=none"),
            *("--spec-map", str(tmp_path / "map.yaml")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "expected a list of {image, spec} entries" in result.stderr
    assert "Traceback" not in result.stderr


async def test_graceful_shutdown_lets_a_running_request_finish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()
    source = FakeSource({"registry.example/app:1": PREFERRED_FALLBACK}, cached=False, gate=gate)
    settings = Settings(listen=("127.0.0.1", 0), spec_wait_budget=60, shutdown_timeout=60)
    app = create_app(
        settings, feature_store=store_with({"new": fast("new")}), artifact_source=source
    )

    async def until(condition: str) -> None:
        await eventually_async(
            lambda: condition in caplog.text,
            lambda: f"the log line {condition!r}: {caplog.text}",
            interval=0.01,
        )

    with caplog.at_level(logging.INFO, logger="extender.server"):
        serving = asyncio.create_task(serve(app, settings))
        await until("listening on")
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", caplog.text).group(1)  # type: ignore[union-attr]
        args = {"Pod": POD, "Nodes": None, "NodeNames": ["new"]}
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(
                session.post(f"http://127.0.0.1:{port}/filter", json=args)
            )
            await eventually_async(
                lambda: source.load_calls, "the request to reach the policy", interval=0.01
            )
            os.kill(os.getpid(), signal.SIGTERM)
            await until("shutting down")
            gate.set()
            response = await request
            assert response.status == 200
            assert (await response.json())["NodeNames"] == ["new"]
        await serving
    assert "stopped" in caplog.text


def test_serve_without_kubernetes_configuration_says_what_to_do(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "absent")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    result = subprocess.run(
        [sys.executable, "-m", "extender", "serve", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 1
    assert "no usable Kubernetes configuration" in result.stderr
    assert "--features-file" in result.stderr
    assert "Traceback" not in result.stderr
