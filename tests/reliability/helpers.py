"""Shared pieces of the fault tests: a ``serve`` child process, metric scrapes, the scheduler's
httpTimeout, and the two specs and node types the scenarios use."""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devcluster.processes import ManagedProcess, child_env, free_port, http_probe
from devcluster.stack import SCHEDULER_CONFIG

# kube-scheduler gives up on a filter call after the extender's httpTimeout (2s as shipped):
# the natural bound on every answer the extender gives, whatever fails behind it.
HTTP_TIMEOUT_S = float(
    str(yaml.safe_load(SCHEDULER_CONFIG.read_text())["extenders"][0]["httpTimeout"]).rstrip("s")
)

# Two node types told apart by their kernel major version, and an image spec for each.
NEW_KERNEL, OLD_KERNEL = "6", "4"
SPEC_TEMPLATE = """\
version: v1alpha1
compatibilities:
- description: {what}
  rules:
  - name: kernel
    matchFeatures:
    - feature: kernel.version
      matchExpressions:
        major: {{op: {op}, value: ["5"]}}
"""
SPEC_NEW = SPEC_TEMPLATE.format(what="needs a kernel newer than 5", op="Gt")
SPEC_OLD = SPEC_TEMPLATE.format(what="needs a kernel older than 5", op="Lt")

NODEFEATURE = """\
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeature
metadata: {{name: {node}, labels: {{nfd.node.kubernetes.io/node-name: {node}}}}}
spec:
  features:
    attributes: {{kernel.version: {{elements: {{major: "{major}"}}}}}}
"""


def features_file(path: Path, nodes: Mapping[str, str]) -> Path:
    """A --features-file with one NodeFeature per node (name → kernel major)."""
    path.write_text(
        "---\n".join(NODEFEATURE.format(node=n, major=major) for n, major in nodes.items())
    )
    return path


def registry_config(path: Path, *hosts: str) -> Path:
    path.write_text(yaml.safe_dump({"registries": {h: {"plainHTTP": True} for h in hosts}}))
    return path


class Serve:
    """``image-compat-extender serve`` as a child process on a loopback port, logging to a file.

    Started the way a deployment runs it (``python -m extender serve``, flags only); the tests
    read it only through HTTP answers, ``/metrics`` and its log.
    """

    def __init__(self, name: str, args: Sequence[str], log_dir: Path) -> None:
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "extender",
            "serve",
            f"--listen=127.0.0.1:{self.port}",
            *args,
        ]
        env = child_env(drop_prefixes=["IMAGE_COMPAT_"], import_repo=True)
        self.process = ManagedProcess(name, argv, log_dir / f"{name}.log", env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 60.0) -> Serve:
        self.process.start()
        self.process.wait_ready(lambda: http_probe(self.url + "readyz"), timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    @property
    def log(self) -> str:
        return self.process.output()

    def metrics(self) -> dict[str, float]:
        return scrape(self.url + "metrics")

    def __enter__(self) -> Serve:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def sample(name: str, **labels: str) -> str:
    """The key :func:`scrape` files a sample under: its name and its labels, sorted."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text page as ``{sample(name, **labels): value}`` (comments left out)."""
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S * 5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            samples[sample(m.group(1), **labels)] = float(m.group(3))
    return samples


def delta(after: Mapping[str, float], before: Mapping[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def filter_body(image: str, nodes: Sequence[str], scheduler_name: str) -> dict[str, Any]:
    """An ExtenderArgs body as kube-scheduler sends it (nodeCacheCapable: names only)."""
    pod = {
        "metadata": {"name": "app", "namespace": "default", "uid": "reliability"},
        "spec": {"schedulerName": scheduler_name, "containers": [{"name": "c", "image": image}]},
    }
    return {"Pod": pod, "Nodes": None, "NodeNames": list(nodes)}


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body).encode()
