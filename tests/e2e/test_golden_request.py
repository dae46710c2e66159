"""One real request body from kube-scheduler, kept as the golden fixture for the wire tests.

A second kube-scheduler runs the shipped profile pointed at a recording server (which passes
every node), schedules one pod, and the bodies it POSTed to ``filter`` and ``prioritize`` are
compared, by shape, with ``tests/server/data/kube-scheduler-filter-request.json``. Set
``IMAGE_COMPAT_UPDATE_GOLDEN=1`` to rewrite the fixture from this run (then review the diff:
the pod's names, uids and timestamps are normalised so that it stays stable).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devcluster.processes import free_port
from devcluster.stack import create_pod, pod, scheduler_config, wait_bound
from extender.server import protocol
from tests.e2e.conftest import SELECTOR, Stack

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).resolve().parents[1] / "server" / "data"
FILTER_GOLDEN = GOLDEN / "kube-scheduler-filter-request.json"
CAPTURE_SCHEDULER = "image-compat-capture"


class _Recorder(BaseHTTPRequestHandler):
    bodies: dict[str, bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        verb = self.path.strip("/")
        self.server.bodies.setdefault(verb, body)  # type: ignore[attr-defined]
        args = json.loads(body)
        names = args.get("NodeNames") or []
        if verb == "filter":
            answer: Any = {"NodeNames": names, "FailedNodes": {}, "Error": ""}
        else:
            answer = [{"Host": n, "Score": 0} for n in names]
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    server.bodies = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _shape(value: Any) -> Any:
    """Keys and types, not values: what must not change between Kubernetes versions."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _normalised(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["Pod"]["metadata"]
    meta["uid"] = "00000000-0000-0000-0000-000000000000"
    meta["namespace"] = "demo"
    meta["resourceVersion"] = "1"
    meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
    body["Pod"]["spec"]["schedulerName"] = "image-compat-scheduler"
    for entry in meta.get("managedFields") or []:
        entry["time"] = "2026-01-01T00:00:00Z"
    for container in body["Pod"]["spec"].get("containers") or []:
        container["image"] = "registry.example/" + container["image"].split("/", 1)[1]
    return body


def test_scheduler_request_matches_the_golden_fixture(
    stack: Stack, ns: str, recorder: ThreadingHTTPServer
) -> None:
    url = f"http://127.0.0.1:{recorder.server_address[1]}/"
    cluster = stack.cluster
    cluster.start_scheduler(
        scheduler_config(url, scheduler_name=CAPTURE_SCHEDULER), name=CAPTURE_SCHEDULER
    )
    try:
        manifest = pod(
            "golden",
            {"app": stack.images["gpu-app"], "sidecar": stack.images["plain-app"]},
            scheduler_name=CAPTURE_SCHEDULER,
            node_selector=SELECTOR,
            annotations={"image-compat.io/tags": "cuda"},
        )
        create_pod(cluster, ns, manifest)
        wait_bound(cluster, ns, "golden", 60)
    finally:
        cluster.stop_scheduler(CAPTURE_SCHEDULER)
    bodies: dict[str, bytes] = recorder.bodies  # type: ignore[attr-defined]
    assert set(bodies) == {"filter", "prioritize"}
    live = json.loads(bodies["filter"])
    # nodeCacheCapable: node names only, PascalCase keys, Nodes null.
    assert set(live) == {"Pod", "Nodes", "NodeNames"} and live["Nodes"] is None
    assert sorted(live["NodeNames"]) == sorted(stack.nodes)
    assert json.loads(bodies["prioritize"])["NodeNames"] == live["NodeNames"]
    args = protocol.decode_extender_args(bodies["filter"])
    assert args.names == live["NodeNames"] and args.nodes == ()

    if os.environ.get("IMAGE_COMPAT_UPDATE_GOLDEN"):
        FILTER_GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        FILTER_GOLDEN.write_text(json.dumps(_normalised(live), indent=1, sort_keys=True) + "\n")
    golden = json.loads(FILTER_GOLDEN.read_text())
    assert _shape(_normalised(live)) == _shape(golden)
