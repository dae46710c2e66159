"""The product stack on top of a devcluster control plane: our ``serve`` and its kube-scheduler.

Owns what the e2e tests and ``make demo`` both need beyond ``devcluster.controlplane``:

- :class:`Extender`: ``image-compat-extender serve`` as a real child process (the
  ``devcluster.processes`` lifecycle, like the control plane's components), on a fixed
  loopback port so that it can be stopped and started again behind the same scheduler URL;
  ready when its ``/readyz`` says the node features are synced; from the checkout, or from
  the built container image (``built=``, see devcluster/image.py);
- :func:`scheduler_config`: the shipped ``scheduler-config/image-compat-scheduler.yaml`` with
  only its two deployment-specific values changed (kubeconfig and urlPrefix);
- :func:`pod`, :func:`create_pod`, :func:`wait_bound`, :func:`wait_event`, :func:`events`,
  :func:`touch_node`: the small Kubernetes vocabulary the scenarios are written in
  (``wait_bound`` is the one wait for a pod's binding, for the control plane's tests too).

Everything polls with a deadline and says what it last saw when the deadline passes.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devcluster.controlplane import ControlPlane, ControlPlaneError
from devcluster.image import Built, Container, Mount, engine_env
from devcluster.processes import ManagedProcess, child_env, free_port, http_probe

__all__ = [
    "SCHEDULER_CONFIG",
    "SCHEDULER_NAME",
    "Extender",
    "create_pod",
    "events",
    "pod",
    "pod_phase_summary",
    "scheduler_config",
    "touch_node",
    "wait_bound",
    "wait_event",
]

ROOT = Path(__file__).resolve().parent.parent
SCHEDULER_CONFIG = ROOT / "scheduler-config" / "image-compat-scheduler.yaml"
SCHEDULER_NAME = "image-compat-scheduler"
_READY_TIMEOUT_S = 60.0


class Extender:
    """``python -m extender serve`` against a control plane, restartable on the same port."""

    def __init__(
        self,
        cluster: ControlPlane,
        *,
        args: Sequence[str] = (),
        port: int | None = None,
        name: str = "image-compat-extender",
        built: Built | None = None,
    ) -> None:
        self.cluster = cluster
        self.port = port or free_port()
        self.args = list(args)
        self.name = name
        self.container: Container | None = None
        log = cluster.log_dir / f"{name}.log"
        if built is not None:
            self.process = self._from_image(built, log)
            return
        argv = [
            sys.executable,
            "-m",
            "extender",
            "serve",
            f"--listen=127.0.0.1:{self.port}",
            f"--kubeconfig={cluster.kubeconfig}",
            "--log-level=DEBUG",
            "--access-log",
            *self.args,
        ]
        env = child_env(drop_prefixes=["IMAGE_COMPAT_"], import_repo=True)
        self.process = ManagedProcess(name, argv, log, env, error=ControlPlaneError)

    def _from_image(self, built: Built, log: Path) -> ManagedProcess:
        """The same serve from the built image, as its UID 65532 on the host's network.

        The kubeconfig and every file an argument names are copied into one directory that
        user can read, mounted at /etc/image-compat, and the arguments point there.
        """
        staged = log.parent / f"{self.name}-files"
        staged.mkdir(parents=True, exist_ok=True)
        staged.chmod(0o755)

        def stage(path: Path) -> str:
            copy = staged / path.name
            shutil.copyfile(path, copy)
            copy.chmod(0o644)  # a devcluster kubeconfig for a loopback control plane
            return f"/etc/image-compat/{path.name}"

        args = []
        for arg in self.args:
            flag, eq, value = arg.partition("=")
            args.append(f"{flag}={stage(Path(value))}" if eq and Path(value).is_file() else arg)
        command = [
            "image-compat-extender",
            "serve",
            f"--listen=127.0.0.1:{self.port}",
            f"--kubeconfig={stage(self.cluster.kubeconfig)}",
            "--log-level=DEBUG",
            "--access-log",
            *args,
        ]
        self.container = Container(built)
        argv = self.container.argv(
            command,
            mounts=[Mount(staged, "/etc/image-compat")],
            env={"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
        )
        return ManagedProcess(self.name, argv, log, engine_env(), error=ControlPlaneError)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = _READY_TIMEOUT_S) -> Extender:
        self.process.start()
        self.process.wait_ready(self._ready, timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and delete the working container when it runs from the image."""
        self.stop()
        if self.container is not None:
            self.container.remove()

    def alive(self) -> bool:
        return self.process.alive()

    def _ready(self) -> str | None:
        return http_probe(self.url + "readyz")

    def post(self, verb: str, body: Mapping[str, Any], timeout: float = 10) -> Any:
        """Call a verb as the scheduler does (a JSON POST) and return the decoded answer."""
        req = urllib.request.Request(
            self.url + verb,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def __enter__(self) -> Extender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def scheduler_config(
    extender_url: str, *, scheduler_name: str = SCHEDULER_NAME, path: Path = SCHEDULER_CONFIG
) -> dict[str, Any]:
    """The shipped scheduler profile, pointed at ``extender_url`` and at the devcluster.

    Only the file's two deployment-specific values change: ``clientConnection.kubeconfig``
    (``ControlPlane.start_scheduler`` fills in its own) and the extender's ``urlPrefix``.
    """
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc.pop("clientConnection", None)
    (extender,) = doc["extenders"]
    extender["urlPrefix"] = extender_url
    (profile,) = doc["profiles"]
    profile["schedulerName"] = scheduler_name
    if scheduler_name != SCHEDULER_NAME:
        doc["leaderElection"]["resourceName"] = scheduler_name
    return doc


# ---------------------------------------------------------------------------------------------
# Pods, events, nodes


def pod(
    name: str,
    images: Sequence[str] | Mapping[str, str],
    *,
    scheduler_name: str = SCHEDULER_NAME,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    cpu: str | None = None,
) -> dict[str, Any]:
    """A Pod manifest; ``images`` is a list (containers c0, c1, ...) or a name → image map."""
    named = images if isinstance(images, Mapping) else {f"c{i}": im for i, im in enumerate(images)}
    containers: list[dict[str, Any]] = []
    for cname, image in named.items():
        container: dict[str, Any] = {"name": cname, "image": image}
        if cpu:
            container["resources"] = {"requests": {"cpu": cpu}}
        containers.append(container)
    spec: dict[str, Any] = {
        "schedulerName": scheduler_name,
        "containers": containers,
        "terminationGracePeriodSeconds": 0,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": dict(annotations or {}),
            "labels": dict(labels or {}),
        },
        "spec": spec,
    }


def create_pod(cluster: ControlPlane, namespace: str, manifest: Mapping[str, Any]) -> str:
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", dict(manifest))
    return str(manifest["metadata"]["name"])


def get_pod(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}"))


def events(cluster: ControlPlane, namespace: str, pod_name: str) -> list[dict[str, Any]]:
    """The pod's events (core/v1 view), oldest first."""
    selector = urllib.parse.quote(f"involvedObject.name={pod_name},involvedObject.kind=Pod")
    items = cluster.request(
        "GET", f"/api/v1/namespaces/{namespace}/events?fieldSelector={selector}"
    )
    found = list(items.get("items") or [])
    found.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return found


def pod_phase_summary(cluster: ControlPlane, namespace: str, name: str) -> str:
    """One paragraph on where a pod stands: node, conditions, its events."""
    try:
        obj = get_pod(cluster, namespace, name)
    except urllib.error.HTTPError as e:
        return f"pod {namespace}/{name}: HTTP {e.code}"
    conds = [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in (obj.get("status") or {}).get("conditions") or []
    ]
    evs = [
        (
            e.get("reason"),
            e.get("source", {}).get("component") or e.get("reportingComponent"),
            e.get("message"),
        )
        for e in events(cluster, namespace, name)
    ]
    node = (obj.get("spec") or {}).get("nodeName") or "-"
    return f"pod {namespace}/{name}: node {node}; conditions {conds}; events {evs}"


def wait_bound(cluster: ControlPlane, namespace: str, name: str, timeout: float = 60) -> str:
    """Wait until the pod has ``spec.nodeName`` and return it.

    Fails with the pod's story (conditions, events) and where the schedulers log.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = (get_pod(cluster, namespace, name).get("spec") or {}).get("nodeName")
        if node:
            return str(node)
        time.sleep(0.1)
    logs = ", ".join(str(s.process.log_path) for s in cluster.schedulers.values()) or "none"
    raise ControlPlaneError(
        f"not bound within {timeout:.0f}s: {pod_phase_summary(cluster, namespace, name)}; "
        f"scheduler logs: {logs}"
    )


def wait_event(
    cluster: ControlPlane,
    namespace: str,
    name: str,
    reason: str,
    *,
    contains: str = "",
    timeout: float = 60,
    after: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Wait for an event of ``reason`` whose message contains ``contains``; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events(cluster, namespace, name):
            if event.get("reason") != reason or contains not in (event.get("message") or ""):
                continue
            if after is None or after(event):
                return event
        time.sleep(0.2)
    raise ControlPlaneError(
        f"no {reason} event containing {contains!r} within {timeout:.0f}s: "
        f"{pod_phase_summary(cluster, namespace, name)}"
    )


def touch_node(cluster: ControlPlane, node: str, reason: str = "features-changed") -> None:
    """Patch an annotation on the Node, as nfd-master does when a node's features change.

    A NodeFeature change is not an event kube-scheduler watches; a Node update is, and it
    moves pods that an extender rejected back to the active queue.
    """
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    patch = {"metadata": {"annotations": {"image-compat.devcluster/touched": f"{reason} {stamp}"}}}
    cluster.request(
        "PATCH", f"/api/v1/nodes/{node}", patch, content_type="application/merge-patch+json"
    )
