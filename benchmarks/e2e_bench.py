"""End-to-end benchmark: what the extender costs kube-scheduler, against the same scheduler
without it and against a null extender.

One devcluster control plane (etcd, kube-apiserver) with N fake Ready Nodes (1,000 by default),
each with the NodeFeature of one of ten hardware types cloned from ``examples/nodes``; an OCI
registry holding an image whose spec (``examples/specs/preferred-fallback.yaml``, attached with
the real ``oras attach``) has a preferred and a fallback set. Then, one at a time and in
alternating phases, a fresh kube-scheduler schedules the same number of pods of that image under
each configuration:

- ``default``: the scheduler without an extender (adaptive percentageOfNodesToScore);
- ``default-p100``: the same with percentageOfNodesToScore 100;
- ``ours``: ``scheduler-config/image-compat-scheduler.yaml`` as shipped (filter and
  prioritize), calling ``image-compat-extender serve``;
- ``ours-adaptive``: the same without percentageOfNodesToScore;
- ``ours-single-call``: ``scheduler-config/image-compat-scheduler-single-call.yaml`` (one
  ``filter-best-fit`` call per pod);
- each ``--variant NAME=CONFIG[::EXTENDER ARGS[::NULL ARGS]]``: a profile of ours under study,
  e.g. ``--variant big-memo=scheduler-config/image-compat-scheduler.yaml::--memo-size=262144``;
- ``null-PROFILE`` beside each profile of ours: the same scheduler profile calling
  ``null-extender`` (a Go server that computes nothing) with that profile's verbs, answering
  in the same shape as ours does on this fleet (``-pass-fraction``: the share filter passes;
  ``-reasons=false``: rejected nodes left out, as ours leaves them when a node passes;
  ``-prioritize-fraction``: the share prioritize lists; ``-score``): the protocol's floor for
  that profile. A variant without null args gets ``null-VERBS`` (passes all, scores 0).

Two modes: ``backlog`` (the pods exist before the scheduler starts; pods/s is the drain rate from
the first binding to the last) and ``paced`` (the scheduler runs while the pods are created;
pods/s is pods over first creation to last binding). Each phase has a namespace of its own,
deleted afterwards, and a scheduler and extender process of its own.

Measured per phase: pods/s; per-pod latency p50/p99 (from creation, or from the scheduler's
start in backlog mode, to the binding: the time of the scheduler's own Scheduled event, or when
a watch saw the pod bound if that event is missing); CPU seconds of kube-scheduler, the
extender, kube-apiserver, etcd, this harness and the rest of the machine (``/proc``); the
machine's load before and after; where the pods went (compatible and preferred node types).
Once per extender configuration, a short untimed run through ``count-proxy`` measures the bytes
of each verb's requests and answers on the wire. A correctness scenario places pods whose only
compatible node is one of N, with and without percentageOfNodesToScore 100.

Prints tables, writes ``benchmarks/results/e2e.json`` and ``e2e.png``. Nothing is asserted:
numbers depend on the machine (shared machines: read the load columns). Only loopback is used.

    .venv/bin/python benchmarks/e2e_bench.py [--nodes 1000] [--pods 1000] [--rounds 2]
        [--modes backlog,paced] [--variant NAME=CONFIG[::EXTENDER ARGS[::NULL ARGS]]]
        [--configs NAME,...] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from bench_output import pyplot, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # devcluster is the repository's, not an installed package

from devcluster import build, nfd, oci  # noqa: E402
from devcluster.controlplane import ControlPlane  # noqa: E402
from devcluster.processes import ManagedProcess, free_port  # noqa: E402
from devcluster.registries import start_oci_registry  # noqa: E402
from devcluster.stack import SCHEDULER_CONFIG, SCHEDULER_NAME, Extender, pod  # noqa: E402

SINGLE_CALL_CONFIG = ROOT / "scheduler-config" / "image-compat-scheduler-single-call.yaml"

RESULTS = ROOT / "benchmarks" / "results"
FLEET = ROOT / "examples" / "nodes" / "all-nodes.yaml"
SPEC = ROOT / "examples" / "specs" / "preferred-fallback.yaml"
NEEDLE_MODULE = "bench_needle"
NEEDLE_SPEC = f"""\
# Only a node with the {NEEDLE_MODULE} kernel module loaded is compatible: one node of the fleet.
version: v1alpha1
compatibilities:
- tag: needle
  weight: 1
  description: "the one node with the {NEEDLE_MODULE} module"
  rules:
  - name: "{NEEDLE_MODULE} loaded"
    matchFeatures:
    - feature: kernel.loadedmodule
      matchExpressions:
        {NEEDLE_MODULE}: {{op: Exists}}
"""
NEEDED_BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "oci-registry", "oras")
TOOLS = ("null-extender", "count-proxy")
# Classes of a node type for the benchmark's image, from its spec's sets.
PREFERRED, FALLBACK, INCOMPATIBLE = "preferred", "fallback", "incompatible"


# ---------------------------------------------------------------------------------------------
# The fleet: ten hardware types from the six example nodes


def _example_nodes() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(FLEET.read_text()) if d]
    return {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in docs}


def _without_cpuid(nodefeature: dict[str, Any], flags: Sequence[str]) -> dict[str, Any]:
    clone = copy.deepcopy(nodefeature)
    elements = clone["spec"]["features"]["flags"]["cpu.cpuid"]["elements"]
    for flag in flags:
        elements.pop(flag, None)
    return clone


def hardware_types() -> dict[str, dict[str, Any]]:
    """Type name → NodeFeature template: the six example nodes and four variants of them.

    The variants are what fleets hold besides: the same servers as KVM guests (the spec's
    preferred set wants bare metal), a newer kernel, and an older CPU model without AVX2.
    """
    base = _example_nodes()
    kvm = {"cpu.model": {"hypervisor": "kvm"}}
    types = {name: nfd.sanitized(doc, name) for name, doc in base.items()}
    types["dpdk-spr-kvm"] = nfd.variant(base["dpdk-spr"], "dpdk-spr-kvm", attributes=kvm)
    types["mlx-genoa-kvm"] = nfd.variant(base["mlx-genoa"], "mlx-genoa-kvm", attributes=kvm)
    types["gpu-h100-k611"] = nfd.variant(
        base["gpu-h100"], "gpu-h100-k611", kernel_version="6.11.0-19-generic"
    )
    types["vm-ivybridge"] = _without_cpuid(
        nfd.variant(base["vm-focal"], "vm-ivybridge"),
        ["AVX2", "FMA3", "BMI1", "BMI2", "X86_64_V3", "X86_64_V4"],
    )
    return types


def classify(types: Mapping[str, dict[str, Any]], spec: bytes) -> dict[str, str]:
    """Type → preferred / fallback / incompatible for ``spec``, by our own rule engine."""
    from extender.nfd.rules import evaluate, load_spec
    from extender.nodes.model import load_node_features

    compiled = load_spec(spec)
    features = load_node_features(yaml.safe_dump_all(list(types.values())))
    out: dict[str, str] = {}
    for name in types:
        verdict = evaluate(compiled, features[name])
        matched = [s for s in verdict.sets if s.matched]
        if not verdict.compatible:
            out[name] = INCOMPATIBLE
        elif any(s.tag == PREFERRED for s in matched):
            out[name] = PREFERRED
        else:
            out[name] = FALLBACK
    return out


def node_name(i: int) -> str:
    return f"bench-{i:05d}"


def needle_index(nodes: int) -> int:
    # Past the middle: with the adaptive percentage, the scheduler's first look (from index 0)
    # does not reach it.
    return nodes * 3 // 4


# ---------------------------------------------------------------------------------------------
# Talking to the apiserver: pooled admin connections (urllib would open one per call)


class Api:
    """Admin HTTPS calls to kube-apiserver over one kept-alive connection per thread."""

    def __init__(self, cluster: ControlPlane) -> None:
        assert cluster.pki is not None
        self.port = cluster.apiserver_port
        self.ctx = ssl.create_default_context(cafile=str(cluster.pki.ca_file))
        self.ctx.load_cert_chain(cluster.pki.admin_cert_file, cluster.pki.admin_key_file)
        self._local = threading.local()

    def connection(self, timeout: float | None = 60) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ctx, timeout=timeout
        )

    def call(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type or "application/json"
        for attempt in range(2):
            if conn is None:
                conn = self._local.conn = self.connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = self._local.conn = None
                if attempt:
                    raise
                continue
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status} {raw[:300]!r}")
            return json.loads(raw) if raw else None
        raise AssertionError("unreachable")


class BindWatch:
    """Watches a namespace's pods and notes when each is first seen bound, and where.

    The apiserver ends a watch whose reader falls behind (a busy machine), so a watch that ends
    is resumed from the last resourceVersion seen (or restarted when that is too old), and the
    restarts are counted.
    """

    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.bound: dict[str, tuple[float, str]] = {}
        self.restarts = 0
        self.late = 0  # bindings first seen by the final list, not by the watch
        self._rv = ""
        self._closing = False
        self._conn: http.client.HTTPSConnection | None = None
        self._changed = threading.Condition()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._opened.wait(30):
            raise RuntimeError(f"could not watch pods in {namespace}")

    def _open(self) -> http.client.HTTPResponse:
        self._conn = self.api.connection(timeout=None)
        query = "watch=1" + (f"&resourceVersion={self._rv}" if self._rv else "")
        self._conn.request("GET", f"/api/v1/namespaces/{self.namespace}/pods?{query}")
        resp = self._conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"watch pods in {self.namespace}: HTTP {resp.status}")
        return resp

    def _run(self) -> None:
        while not self._closing:
            try:
                resp = self._open()
                self._opened.set()
                while line := resp.readline():
                    self._event(json.loads(line), time.monotonic())
            except (OSError, ValueError, RuntimeError, http.client.HTTPException):
                if not self._opened.is_set():
                    return
            if not self._closing:
                self.restarts += 1
                time.sleep(0.05)

    def _event(self, event: Mapping[str, Any], now: float) -> None:
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":  # e.g. 410 Gone: resume from the current state
            self._rv = ""
            return
        metadata = obj.get("metadata") or {}
        self._rv = metadata.get("resourceVersion") or self._rv
        node = (obj.get("spec") or {}).get("nodeName")
        name = metadata.get("name")
        with self._changed:
            if node and name and name not in self.bound:
                self.bound[name] = (now, node)
            self._changed.notify_all()

    def wait(self, count: int, stall_s: float) -> bool:
        """Until ``count`` pods are bound (True) or none more was bound for ``stall_s``."""
        with self._changed:
            seen, last = len(self.bound), time.monotonic()
            while len(self.bound) < count:
                self._changed.wait(1.0)
                if len(self.bound) != seen:
                    seen, last = len(self.bound), time.monotonic()
                elif time.monotonic() - last > stall_s:
                    break
        # What the watch may have missed: the list is the truth on where pods are.
        listed = self.api.call("GET", f"/api/v1/namespaces/{self.namespace}/pods")
        now = time.monotonic()
        with self._changed:
            for obj in listed.get("items") or []:
                node = (obj.get("spec") or {}).get("nodeName")
                name = obj["metadata"]["name"]
                if node and name not in self.bound:
                    self.bound[name] = (now, node)
                    self.late += 1
            return len(self.bound) >= count

    def close(self) -> None:
        # Shut the socket down and let the reader see the end of the stream before closing:
        # closing under a blocked readline races with http.client's own clean-up.
        self._closing = True
        conn = self._conn
        with contextlib.suppress(OSError):
            if conn is not None and conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        if conn is not None:
            conn.close()


# ---------------------------------------------------------------------------------------------
# Process accounting


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICK


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    machine: float
    load: float


def snapshot(pids: Mapping[str, int | None]) -> Snapshot:
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu["harness"] = self_cpu_seconds()
    return Snapshot(time.monotonic(), cpu, machine_busy_seconds(), load_average())


def cpu_between(a: Snapshot, b: Snapshot) -> dict[str, float]:
    out = {name: max(0.0, b.cpu.get(name, 0.0) - a.cpu[name]) for name in a.cpu}
    # What the rest of the machine took meanwhile: other users of a shared machine.
    out["others"] = max(0.0, (b.machine - a.machine) - sum(out.values()))
    return out


# ---------------------------------------------------------------------------------------------
# Configurations


@dataclass(frozen=True)
class Config:
    """One scheduler setup: its KubeSchedulerConfiguration and what answers its extender."""

    name: str
    kind: str  # "default", "extender" (ours) or "null"
    doc: Mapping[str, Any]
    description: str
    extender_args: tuple[str, ...] = ()
    null_args: tuple[str, ...] = ()  # the answer shape of this profile's null (e.g. -score=1)
    beside: tuple[str, ...] = ()  # for a null: the profiles of ours it is the floor of

    @property
    def verbs(self) -> tuple[str, ...]:
        exts = self.doc.get("extenders") or []
        if not exts:
            return ()
        return tuple(
            v
            for v, key in (("filter", "filterVerb"), ("prioritize", "prioritizeVerb"))
            if exts[0].get(key)
        )

    def scheduler_doc(self, url: str, qps: float, burst: int) -> dict[str, Any]:
        doc = copy.deepcopy(dict(self.doc))
        if self.kind == "null":
            for ext in doc.get("extenders") or []:
                if ext.get("filterVerb"):
                    ext["filterVerb"] = "filter"  # the null serves one filter, in ours' shape
        doc["clientConnection"] = {"qps": qps, "burst": burst}
        doc["leaderElection"] = {"leaderElect": False}
        profiles = doc.get("profiles") or [{}]
        doc["profiles"] = [{**profiles[0], "schedulerName": SCHEDULER_NAME}]
        for ext in doc.get("extenders") or []:
            ext["urlPrefix"] = url
        return doc


def _base_doc() -> dict[str, Any]:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "profiles": [{"schedulerName": SCHEDULER_NAME}],
    }


def _profile(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc.pop("clientConnection", None)
    if len(doc.get("extenders") or []) != 1:
        raise SystemExit(f"{path}: a profile of ours has exactly one extender")
    return doc


def configurations(variants: Sequence[str], only: Sequence[str] | None) -> list[Config]:
    """The phases' configurations, in the order they alternate; nulls follow the profiles."""
    p100 = {**_base_doc(), "percentageOfNodesToScore": 100}
    shipped = _profile(SCHEDULER_CONFIG)
    adaptive = {k: v for k, v in shipped.items() if k != "percentageOfNodesToScore"}
    # Each profile of ours has a null beside it that answers in the same shape on this fleet:
    # filter passes the compatible 70% (3 of the 10 types are incompatible) and, since a node
    # passes, names none of the rejected; prioritize lists the preferred nodes only (3 types,
    # 43% of those it is sent), the others score 0 after the shift; filter-best-fit keeps the
    # preferred 30%.
    configs = [
        Config("default", "default", _base_doc(), "no extender, adaptive percentageOfNodesToScore"),
        Config("default-p100", "default", p100, "no extender, percentageOfNodesToScore 100"),
        Config(
            "ours",
            "extender",
            shipped,
            "scheduler-config/image-compat-scheduler.yaml",
            null_args=(
                "-pass-fraction=0.7",
                "-reasons=false",
                "-prioritize-fraction=0.43",
                "-score=8",
            ),
        ),
        Config("ours-adaptive", "extender", adaptive, "ours without percentageOfNodesToScore"),
        Config(
            "ours-single-call",
            "extender",
            _profile(SINGLE_CALL_CONFIG),
            "scheduler-config/image-compat-scheduler-single-call.yaml",
            null_args=("-pass-fraction=0.3", "-reasons=false"),
        ),
    ]
    for spec in variants:
        name, _, rest = spec.partition("=")
        path, _, rest = rest.partition("::")
        extra, _, null_extra = rest.partition("::")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or any(c.name == name for c in configs):
            raise SystemExit(f"--variant {spec!r}: NAME must be new, lowercase letters, digits, -")
        doc = _profile(Path(path)) if path else shipped
        what = f"{path or 'shipped config'}" + (f" with {extra}" if extra else "")
        configs.append(
            Config(
                name,
                "extender",
                doc,
                what,
                tuple(shlex.split(extra)),
                tuple(shlex.split(null_extra)),
            )
        )
    # A null extender per verb set, on the scheduler profile of the first of ours using it
    # (so percentageOfNodesToScore and the weight are those of the profile it stands beside).
    # ours-adaptive has no null of its own: it is compared with the default scheduler.
    nulls: dict[tuple[tuple[str, ...], tuple[str, ...]], Config] = {}
    for c in [c for c in configs if c.kind == "extender" and c.name != "ours-adaptive"]:
        key = (c.verbs, c.null_args)
        if key in nulls:
            nulls[key] = dataclasses.replace(nulls[key], beside=(*nulls[key].beside, c.name))
        else:
            # Names end up in namespace and process names (lowercase letters, digits and '-',
            # at most 63): a null shaped like a profile is named after the profile.
            nulls[key] = Config(
                f"null-{c.name}" if c.null_args else f"null-{'-'.join(c.verbs) or 'none'}",
                "null",
                c.doc,
                f"null extender, verbs {', '.join(c.verbs)}"
                + (f" ({' '.join(c.null_args)})" if c.null_args else "")
                + f", on {c.name}'s profile",
                null_args=c.null_args,
                beside=(c.name,),
            )
    configs += list(nulls.values())
    if only is not None:
        unknown = set(only) - {c.name for c in configs}
        if unknown:
            raise SystemExit(
                f"--configs: unknown {sorted(unknown)}; known {[c.name for c in configs]}"
            )
        configs = [c for c in configs if c.name in only]
    return configs


# ---------------------------------------------------------------------------------------------
# The bench


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    cluster: ControlPlane = field(init=False)
    api: Api = field(init=False)
    image: str = ""
    needle_image: str = ""
    node_type: dict[str, str] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    registry_args: list[str] = field(default_factory=list)
    _phase_no: int = 0

    # -- set-up ------------------------------------------------------------------------------

    def start(self, stack: contextlib.ExitStack) -> None:
        build.build_all([*NEEDED_BINARIES, *TOOLS])
        self.cluster = ControlPlane(workdir=self.workdir / "cluster", cleanup=False, log_level=1)
        self.cluster.start_etcd()
        stack.callback(self.cluster.stop)
        # Room for the fleet's creates and a scheduler at high QPS without 429s.
        self.cluster.start_apiserver(
            ["--max-requests-inflight=1000", "--max-mutating-requests-inflight=500"]
        )
        self.api = Api(self.cluster)
        nfd.install_crds(self.cluster)
        nfd.ensure_namespace(self.cluster, nfd.NFD_NAMESPACE)

        registry = start_oci_registry(self.workdir / "registry", referrers=True, quiet=True)
        stack.callback(registry.stop)
        created = datetime.now(UTC)
        refs = []
        for repo, spec in (
            ("bench/app", SPEC.read_bytes()),
            ("bench/needle", NEEDLE_SPEC.encode()),
        ):
            image = oci.push_image(registry.endpoint, repo, "1")
            path = self.workdir / f"{repo.replace('/', '-')}.yaml"
            path.write_bytes(spec)
            oci.attach_spec(registry.endpoint, repo, image.digest, path, created=created)
            refs.append(f"{registry.host}/{repo}:1")
        self.image, self.needle_image = refs
        config = self.workdir / "registries.yaml"
        config.write_text(yaml.safe_dump({"registries": {registry.host: {"plainHTTP": True}}}))
        self.registry_args = [f"--registry-config={config}", "--registry-allow-loopback"]

        types = hardware_types()
        self.classes = classify(types, SPEC.read_bytes())
        started = time.monotonic()
        self._create_fleet(types)
        print(
            f"{self.args.nodes} Nodes and NodeFeatures of {len(types)} hardware types created in "
            f"{time.monotonic() - started:.1f} s; image {self.image}",
            file=sys.stderr,
        )

    def _create_fleet(self, types: Mapping[str, dict[str, Any]]) -> None:
        names = list(types)
        needle = needle_index(self.args.nodes)
        version = build.versions()["kube-apiserver"]

        def create(i: int) -> None:
            kind = names[i % len(names)]
            name = node_name(i)
            modules = [NEEDLE_MODULE] if i == needle else []
            feature = nfd.variant(types[kind], name, add_modules=modules)
            self.api.call(
                "POST",
                f"/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/{nfd.NFD_NAMESPACE}/nodefeatures",
                feature,
            )
            capacity = {"cpu": "64", "memory": "256Gi", "pods": "110"}
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "bench/type": kind,
                    },
                },
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "fake",
                        }
                    ],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "kubeletVersion": version,
                        **dict.fromkeys(
                            (
                                "bootID",
                                "containerRuntimeVersion",
                                "kernelVersion",
                                "kubeProxyVersion",
                                "machineID",
                                "osImage",
                                "systemUUID",
                            ),
                            "",
                        ),
                    },
                },
            }
            made = self.api.call("POST", "/api/v1/nodes", node)
            # TaintNodesByCondition adds not-ready on create; no node controller lifts it here.
            if (made.get("spec") or {}).get("taints"):
                self.api.call(
                    "PATCH",
                    f"/api/v1/nodes/{name}",
                    [{"op": "replace", "path": "/spec/taints", "value": []}],
                    "application/json-patch+json",
                )
            self.node_type[name] = kind

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(self.args.nodes)))

    # -- one phase ---------------------------------------------------------------------------

    def _namespace(self, label: str) -> str:
        self._phase_no += 1
        ns = f"p{self._phase_no:03d}-{label}"[:63].rstrip("-")
        self.api.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        return ns

    def _delete_namespace(self, ns: str) -> None:
        self.cluster.delete_namespace(ns)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = self.api.call("GET", f"/api/v1/namespaces/{ns}/pods?limit=1")
            if not left.get("items"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"pods of {ns} still there after 120 s")

    @contextlib.contextmanager
    def _extender(self, config: Config, tag: str) -> Iterator[tuple[str, int | None, str]]:
        """(URL, PID, stats URL) of the extender a configuration calls, running meanwhile."""
        if config.kind == "default":
            yield "", None, ""
            return
        if config.kind == "extender":
            ours = Extender(
                self.cluster,
                args=[
                    "--log-level=info",
                    "--no-access-log",
                    *self.registry_args,
                    *config.extender_args,
                ],
                name=f"extender-{tag}",
            )
            ours.start(timeout=300)
            try:
                yield ours.url, ours.process.pid, ours.url + "metrics"
            finally:
                ours.stop()
            return
        port = free_port()
        argv = [
            str(build.binary("null-extender")),
            f"-listen=127.0.0.1:{port}",
            f"-verbs={','.join(config.verbs)}",
            *config.null_args,
        ]
        proc = ManagedProcess(f"null-{tag}", argv, self.cluster.log_dir / f"null-{tag}.log")
        proc.start()
        url = f"http://127.0.0.1:{port}/"
        try:
            proc.wait_ready(lambda: _get_error(url + "readyz"), 30)
            yield url, proc.pid, url + "stats"
        finally:
            proc.stop()

    @contextlib.contextmanager
    def _proxy(self, upstream: str) -> Iterator[str]:
        port = free_port()
        argv = [
            str(build.binary("count-proxy")),
            f"-listen=127.0.0.1:{port}",
            f"-upstream={upstream}",
        ]
        proc = ManagedProcess("count-proxy", argv, self.cluster.log_dir / "count-proxy.log")
        proc.start()
        url = f"http://127.0.0.1:{port}/"
        try:
            proc.wait_ready(lambda: _get_error(url + "proxy-stats"), 30)
            yield url
        finally:
            proc.stop()

    def _create_pods(self, ns: str, names: Sequence[str], image: str) -> dict[str, float]:
        """Create the pods with a few client threads; name → when its create returned."""
        created: dict[str, float] = {}
        rate = self.args.create_rate
        start = time.monotonic()

        def create(k: int) -> None:
            if rate:
                time.sleep(max(0.0, start + k / rate - time.monotonic()))
            body = pod(names[k], [image], scheduler_name=SCHEDULER_NAME)
            self.api.call("POST", f"/api/v1/namespaces/{ns}/pods", body)
            created[names[k]] = time.monotonic()

        with ThreadPoolExecutor(self.args.create_threads) as pool:
            list(pool.map(create, range(len(names))))
        return created

    def phase(
        self, config: Config, mode: str, pods: int, *, round_no: int, bytes_run: bool = False
    ) -> dict[str, Any]:
        """Schedule ``pods`` pods under ``config`` in ``mode``; the phase's figures."""
        tag = f"{config.name}-{mode}" + ("-bytes" if bytes_run else f"-r{round_no}")
        ns = self._namespace(tag)
        names = [f"pod-{k:05d}" for k in range(pods)]
        watch = BindWatch(self.api, ns)
        result: dict[str, Any] = {
            "config": config.name,
            "mode": mode,
            "round": round_no,
            "pods": pods,
        }
        try:
            with contextlib.ExitStack() as stack:
                url, ext_pid, stats_url = stack.enter_context(self._extender(config, tag))
                if bytes_run:
                    url = stack.enter_context(self._proxy(url))
                    stats_url = url + "proxy-stats"
                doc = config.scheduler_doc(url, self.args.qps, self.args.burst)
                sched_name = f"sched-{tag}"[:60].rstrip("-")
                created: dict[str, float] = {}
                if mode == "backlog":
                    created = self._create_pods(ns, names, self.image)
                pids = {
                    "extender": ext_pid,
                    "kube-apiserver": self.cluster.apiserver.pid
                    if self.cluster.apiserver
                    else None,
                    "etcd": self.cluster.etcd.pid if self.cluster.etcd else None,
                }
                before = snapshot(pids)
                t0 = time.monotonic()
                proc = self.cluster.start_scheduler(doc, name=sched_name)
                pids["kube-scheduler"] = proc.pid
                before.cpu["kube-scheduler"] = 0.0  # a new process: all of its CPU counts
                ready = time.monotonic()
                if mode == "paced":
                    before = snapshot(pids)
                    t0 = time.monotonic()
                    created = self._create_pods(ns, names, self.image)
                complete = watch.wait(pods, self.args.stall_s)
                after = snapshot(pids)
                stats = (
                    _get_json(stats_url)
                    if stats_url and not stats_url.endswith("metrics")
                    else None
                )
                metrics = _get_text(stats_url) if stats_url.endswith("metrics") else ""
                # The scheduler's own Scheduled events carry when it bound each pod, to the
                # microsecond; the watch says when this process read it, late on a busy
                # machine. Its event broadcaster writes them asynchronously: a moment first.
                time.sleep(2)
                scheduled = self._scheduled_at(ns)
                self.cluster.stop_scheduler(sched_name)
        finally:
            watch.close()
        bound = dict(watch.bound)
        timed_by_event = 0
        for name, (_seen, node) in list(bound.items()):
            if name in scheduled:
                bound[name] = (scheduled[name], node)
                timed_by_event += 1
        times = sorted(t for t, _ in bound.values())
        result.update(
            bound=len(bound),
            timed_by_event=timed_by_event,
            complete=complete,
            watch_restarts=watch.restarts,
            seen_late=watch.late,
            scheduler_ready_s=ready - t0,
            cpu_s=cpu_between(before, after),
            load={"before": before.load, "after": after.load},
            wall_s=after.at - before.at,
            placement=self._placement(bound.values()),
        )
        if stats is not None:
            result["wire"] = _per_call(stats)
        if metrics:
            result["extender_metrics"] = _our_counters(metrics)
        if len(times) >= 2:
            if mode == "backlog":
                result["pods_per_s"] = (len(times) - 1) / (times[-1] - times[0])
                origin = dict.fromkeys(bound, t0)
            else:
                result["pods_per_s"] = len(times) / (times[-1] - min(created.values()))
                origin = created
            lat = sorted((bound[n][0] - origin[n]) * 1000 for n in bound if n in origin)
            result["latency_ms"] = {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99)}
            result["first_bind_after_s"] = times[0] - t0
        self._delete_namespace(ns)
        return result

    def _scheduled_at(self, ns: str) -> dict[str, float]:
        """Pod → when kube-scheduler recorded its binding, on this process's monotonic clock."""
        listed = self.api.call(
            "GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=reason%3DScheduled"
        )
        offset = time.monotonic() - time.time()
        out: dict[str, float] = {}
        for event in listed.get("items") or []:
            stamp = event.get("eventTime")
            name = (event.get("involvedObject") or {}).get("name")
            if stamp and name:
                wall = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                out[name] = min(out.get(name, wall + offset), wall + offset)
        return out

    def _placement(self, bound: Any) -> dict[str, float]:
        classes = Counter(
            self.classes.get(self.node_type.get(node, ""), INCOMPATIBLE) for _, node in bound
        )
        total = sum(classes.values()) or 1
        return {
            "compatible": (classes[PREFERRED] + classes[FALLBACK]) / total,
            "preferred": classes[PREFERRED] / total,
        }

    # -- correctness at scale ------------------------------------------------------------------

    def needle(self, config: Config, pods: int, wait_s: float) -> dict[str, Any]:
        """Pods whose only compatible node is one of N: where do they go under ``config``?"""
        ns = self._namespace(f"needle-{config.name}")
        names = [f"needle-{k}" for k in range(pods)]
        watch = BindWatch(self.api, ns)
        target = node_name(needle_index(self.args.nodes))
        try:
            with self._extender(config, f"needle-{config.name}") as (url, _pid, stats_url):
                doc = config.scheduler_doc(url, self.args.qps, self.args.burst)
                sched = f"sched-needle-{config.name}"
                self.cluster.start_scheduler(doc, name=sched)
                created = self._create_pods(ns, names, self.needle_image)
                watch.wait(pods, wait_s)
                metrics = _our_counters(_get_text(stats_url)) if stats_url else {}
                self.cluster.stop_scheduler(sched)
        finally:
            watch.close()
        bound = dict(watch.bound)
        events = self.api.call(
            "GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=reason%3DFailedScheduling"
        )
        failures = sum(int(e.get("count") or 1) for e in events.get("items") or [])
        messages = sorted({(e.get("message") or "")[:160] for e in events.get("items") or []})
        self._delete_namespace(ns)
        waited = [bound[n][0] - created[n] for n in bound]
        return {
            "config": config.name,
            "pods": pods,
            "on_needle": sum(1 for _, node in bound.values() if node == target),
            "elsewhere": sum(1 for _, node in bound.values() if node != target),
            "pending": pods - len(bound),
            "waited_s": wait_s,
            "bind_s_max": max(waited) if waited else None,
            "failed_scheduling_events": failures,
            "failed_scheduling_messages": messages[:3],
            "subset_problems": metrics.get("image_compat_subset_problems_total"),
        }


def _get_error(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            resp.read()
    except (OSError, urllib.error.URLError) as e:
        return f"GET {url}: {e}"
    return None


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def _get_json(url: str) -> Any:
    return json.loads(_get_text(url))


_COUNTER = re.compile(
    r"(image_compat_(?:subset_problems|memo_hits|memo_misses|requests)_total)(\{[^}]*\})? (\S+)"
)


def _our_counters(text: str) -> dict[str, float]:
    """The extender's counters a phase reports (unlabelled ones, and requests by verb)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _COUNTER.match(line)
        if m:
            key = m.group(1) + (m.group(2) or "")
            out[key] = float(m.group(3))
    return out


def _per_call(stats: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for verb, s in stats.items():
        calls = s.get("calls") or 0
        if calls:
            out[verb] = {
                "calls": calls,
                "request_bytes": s["request_bytes"] / calls,
                "response_bytes": s["response_bytes"] / calls,
            }
    return out


def _pct(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------------------------
# Summary, tables, plot


def summarize(configs: Sequence[Config], phases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per mode and configuration: means over rounds; ratios of ours against the others."""
    out: dict[str, Any] = {}
    for mode in sorted({p["mode"] for p in phases}):
        per: dict[str, Any] = {}
        for c in configs:
            runs = [p for p in phases if p["mode"] == mode and p["config"] == c.name]
            if not runs:
                continue
            rates = [p.get("pods_per_s", 0.0) for p in runs]
            per[c.name] = {
                "pods_per_s": statistics.fmean(rates),
                "pods_per_s_rounds": rates,
                "p50_ms": statistics.fmean(p.get("latency_ms", {}).get("p50", 0.0) for p in runs),
                "p99_ms": statistics.fmean(p.get("latency_ms", {}).get("p99", 0.0) for p in runs),
                "cpu_s": {
                    k: statistics.fmean(p["cpu_s"].get(k, 0.0) for p in runs)
                    for k in runs[0]["cpu_s"]
                },
                "load": [p["load"]["before"] for p in runs] + [runs[-1]["load"]["after"]],
                "compatible": statistics.fmean(p["placement"]["compatible"] for p in runs),
                "preferred": statistics.fmean(p["placement"]["preferred"] for p in runs),
                "complete": all(p["complete"] for p in runs),
            }
        ratios: dict[str, float] = {}
        for c in configs:
            if c.kind != "extender" or c.name not in per:
                continue
            mine = per[c.name]["pods_per_s"]
            null = next((n for n in configs if n.kind == "null" and c.name in n.beside), None)
            for other in [*(["null"] if null else []), "default-p100", "default"]:
                key = null.name if other == "null" and null else other
                if key in per and per[key]["pods_per_s"]:
                    ratios[f"{c.name}/{other}"] = mine / per[key]["pods_per_s"]
        for n in configs:
            if n.kind == "null" and n.name in per and "default-p100" in per:
                ratios[f"{n.name}/default-p100"] = (
                    per[n.name]["pods_per_s"] / per["default-p100"]["pods_per_s"]
                )
        out[mode] = {"configs": per, "ratios": ratios}
    return out


def tables(document: Mapping[str, Any]) -> str:
    rows: list[str] = []
    for mode, data in document["summary"].items():
        rows += [
            f"\n{mode}: {document['pods']} pods, {document['nodes']} nodes, "
            f"{document['rounds']} round(s); CPU seconds per phase"
            + (" (the scheduler's include its start-up)" if mode == "backlog" else ""),
            "",
            "| configuration | pods/s (rounds) | mean | p50 ms | p99 ms | scheduler | extender "
            "| apiserver | etcd | harness | others | load 1m | compatible | preferred |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, s in data["configs"].items():
            cpu = s["cpu_s"]
            each = ", ".join(f"{r:.0f}" for r in s["pods_per_s_rounds"])
            load = " to ".join(f"{x:.1f}" for x in (min(s["load"]), max(s["load"])))
            rows.append(
                f"| {name}{'' if s['complete'] else ' (incomplete)'} | {each} "
                f"| {s['pods_per_s']:.0f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} "
                f"| {cpu['kube-scheduler']:.2f} | {cpu['extender']:.2f} "
                f"| {cpu['kube-apiserver']:.2f} | {cpu['etcd']:.2f} | {cpu['harness']:.2f} "
                f"| {cpu['others']:.2f} | {load} | {s['compatible']:.0%} | {s['preferred']:.0%} |"
            )
        rows += ["", "| ratio | pods/s |", "|---|---|"]
        rows += [f"| {k} | {v:.2f} |" for k, v in data["ratios"].items()]
    if document.get("wire"):
        rows += [
            "",
            "Bytes per call on the wire (count-proxy between the scheduler and the extender):",
            "",
            "| configuration | verb | calls | request bytes | answer bytes |",
            "|---|---|---|---|---|",
        ]
        for name, verbs in document["wire"].items():
            for verb, w in verbs.items():
                rows.append(
                    f"| {name} | {verb} | {w['calls']:.0f} | {w['request_bytes']:,.0f} "
                    f"| {w['response_bytes']:,.0f} |"
                )
    if document.get("needle"):
        rows += [
            "",
            f"Correctness at scale: {document['needle'][0]['pods']} pods whose only compatible "
            f"node is 1 of {document['nodes']} (waited {document['needle'][0]['waited_s']:.0f} s):",
            "",
            "| configuration | on that node | elsewhere | pending | FailedScheduling | subset "
            "problems logged |",
            "|---|---|---|---|---|---|",
        ]
        for n in document["needle"]:
            subset = "-" if n["subset_problems"] is None else f"{n['subset_problems']:.0f}"
            rows.append(
                f"| {n['config']} | {n['on_needle']} | {n['elsewhere']} | {n['pending']} "
                f"| {n['failed_scheduling_events']} | {subset} |"
            )
    return "\n".join(rows)


def plot(document: Mapping[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    modes = list(document["summary"])
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(5.5 * (len(modes) + 1), 4.4))
    colors = {"default": "#8c8c8c", "extender": "#4c72b0", "null": "#dd8452"}
    kinds = {c["name"]: c["kind"] for c in document["configs"]}
    for ax, mode in zip(axes, modes, strict=False):
        per = document["summary"][mode]["configs"]
        names = list(per)
        ax.bar(
            names, [per[n]["pods_per_s"] for n in names], color=[colors[kinds[n]] for n in names]
        )
        for i, n in enumerate(names):
            rates = per[n]["pods_per_s_rounds"]
            ax.scatter([i] * len(rates), rates, color="black", s=10, zorder=3)
        ax.set_title(f"{mode}: pods/s ({document['nodes']} nodes)")
        ax.tick_params(axis="x", rotation=35, labelsize=8)
    ax = axes[-1]
    per = document["summary"][modes[0]]["configs"]
    names = list(per)
    bottom = [0.0] * len(names)
    for proc, color in (
        ("kube-scheduler", "#4c72b0"),
        ("extender", "#dd8452"),
        ("kube-apiserver", "#55a868"),
        ("etcd", "#c44e52"),
    ):
        values = [per[n]["cpu_s"].get(proc, 0.0) for n in names]
        ax.bar(names, values, bottom=bottom, label=proc, color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title(f"{modes[0]}: CPU seconds per {document['pods']} pods")
    ax.tick_params(axis="x", rotation=35, labelsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------


def preflight(nodes: int) -> str | None:
    """Why this machine cannot hold the fleet, or None. About 1 MB per node across kube-apiserver,
    etcd, the extender and the scheduler, plus 2 GB for everything else."""
    meminfo = Path("/proc/meminfo").read_text()
    available_kb = int(re.search(r"MemAvailable:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    want_mb = 2048 + nodes
    if available_kb // 1024 < want_mb:
        return f"{available_kb // 1024} MB available, about {want_mb} MB needed for {nodes} nodes"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="fake Ready Nodes (e.g. 5000)")
    parser.add_argument("--pods", type=int, default=1000, help="pods per phase")
    parser.add_argument("--rounds", type=int, default=2, help="phases of each configuration")
    parser.add_argument("--modes", default="backlog,paced", help="backlog, paced or both")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=CONFIG[::EXTENDER ARGS[::NULL ARGS]]",
        help="a profile of ours under study: a KubeSchedulerConfiguration (empty: the shipped "
        "one), extra flags for serve, and flags giving its null extender the same answer shape "
        "(e.g. -prioritize-empty); repeatable. A null extender with its verbs joins.",
    )
    parser.add_argument("--configs", help="only these configurations (comma list)")
    parser.add_argument("--qps", type=float, default=5000, help="scheduler client QPS")
    parser.add_argument("--burst", type=int, default=5000, help="scheduler client burst")
    parser.add_argument("--create-threads", type=int, default=4, help="pod-creating threads")
    parser.add_argument("--create-rate", type=float, default=0, help="pods/s when paced (0: max)")
    parser.add_argument("--stall-s", type=float, default=60, help="give up after no binding for")
    parser.add_argument("--bytes-pods", type=int, default=100, help="pods of the bytes runs")
    parser.add_argument("--needle-pods", type=int, default=5, help="pods of the needle scenario")
    parser.add_argument("--needle-wait-s", type=float, default=30, help="how long they may take")
    parser.add_argument("--quick", action="store_true", help="smoke: 60 nodes, 30 pods, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.pods, args.rounds, args.bytes_pods = 60, 30, 1, 10
        args.needle_pods, args.needle_wait_s, args.stall_s = 2, 10, 30
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - {"backlog", "paced"}:
        parser.error("--modes: backlog, paced")
    cannot = preflight(args.nodes)
    if cannot:
        print(f"this machine cannot run {args.nodes} nodes: {cannot}", file=sys.stderr)
        return 2
    only = args.configs.split(",") if args.configs else None
    configs = configurations(args.variant, only)
    phases: list[dict[str, Any]] = []
    wire: dict[str, Any] = {}
    needles: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    bench = Bench(args, workdir)
    with contextlib.ExitStack() as stack:
        try:
            bench.start(stack)
            for round_no in range(args.rounds):
                for mode in modes:
                    # Rotated each round, so no configuration always follows the same one.
                    shift = round_no % len(configs)
                    for config in [*configs[shift:], *configs[:shift]]:
                        result = bench.phase(config, mode, args.pods, round_no=round_no)
                        phases.append(result)
                        print(_progress(result), file=sys.stderr, flush=True)
            for config in configs:
                # ours-adaptive sends what ours sends, to fewer nodes: no run of its own.
                if config.kind != "default" and config.name != "ours-adaptive":
                    run = bench.phase(
                        config, "backlog", args.bytes_pods, round_no=0, bytes_run=True
                    )
                    wire[config.name] = run.get("wire", {})
            by_name = {c.name: c for c in configs}
            for name in ("ours", "ours-adaptive", "default"):
                if name in by_name:
                    needles.append(
                        bench.needle(by_name[name], args.needle_pods, args.needle_wait_s)
                    )
        except BaseException:
            print(f"e2e_bench failed; logs kept in {workdir}", file=sys.stderr)
            raise
    shutil.rmtree(workdir, ignore_errors=True)
    document = {
        "benchmark": "e2e",
        "command": "benchmarks/e2e_bench.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "kubernetes": build.versions()["kube-scheduler"],
        "nodes": args.nodes,
        "pods": args.pods,
        "rounds": args.rounds,
        "qps": args.qps,
        "hardware_types": {t: bench.classes[t] for t in bench.classes},
        "configs": [
            {"name": c.name, "kind": c.kind, "description": c.description, "beside": list(c.beside)}
            for c in configs
        ],
        "phases": phases,
        "summary": summarize(configs, phases),
        "wire": wire,
        "needle": needles,
    }
    machine = f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    print(f"\n{machine}, load now {load_average():.1f}")
    print(tables(document))
    write_results(args.out, "e2e", document, lambda path: plot(document, path))
    return 0


def _progress(r: Mapping[str, Any]) -> str:
    cpu = r["cpu_s"]
    return (
        f"[{r['mode']} r{r['round']}] {r['config']}: {r['bound']}/{r['pods']} bound, "
        f"{r.get('pods_per_s', 0):.0f} pods/s, p99 {r.get('latency_ms', {}).get('p99', 0):.0f} ms, "
        f"scheduler {cpu['kube-scheduler']:.2f} s CPU, extender {cpu['extender']:.2f} s, "
        f"others {cpu['others']:.2f} s, load {r['load']['before']:.1f}→{r['load']['after']:.1f}"
        + f", {r['timed_by_event']} timed by Scheduled events"
        + (f", watch restarted {r['watch_restarts']}x" if r["watch_restarts"] else "")
        + (f", {r['seen_late']} bindings seen only by the final list" if r["seen_late"] else "")
    )


if __name__ == "__main__":
    sys.exit(main())
