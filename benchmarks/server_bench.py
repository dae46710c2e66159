"""Server benchmark: filter and prioritize latency as kube-scheduler sees it.

A cluster of 5,000 nodes of 50 hardware types (the six example nodes, each with several
kernel revisions), the example ``multi-variant`` spec for the pod's image, and for each of
100, 500, 1,000 and 5,000 candidate nodes:

* **warm**: the spec's verdicts are memoised (every pod after the first with that image);
* **cold** (5,000 node names only): each call uses an image whose spec was never evaluated:
  the 50 hardware types are evaluated once each (the nodes' fingerprints of the features it
  reads are already memoised, as they are in a running server; the spec itself is compiled
  when its source loads it, ``rules_bench.py`` measures compilation);
* **fresh** (in-process only): the same with nothing memoised at all (the first pod after a
  restart): every one of the 5,000 nodes is fingerprinted too;
* **names** (``nodeCacheCapable: true``, the default) and **nodes** (full ``Nodes``: realistic
  ~4 KB Node objects, which the scheduler sends when ``nodeCacheCapable`` is false);
* **in-process** (decode, policy, encode: the handler's work, no socket) and **http**: a real
  ``serve`` of the application in another process (the same aiohttp app and ``serve()`` the
  CLI runs), called over loopback by this process sequentially on one keep-alive connection,
  as kube-scheduler's single scheduling thread calls it. Request bodies are encoded up front
  (the scheduler's own JSON marshalling is not counted).

Prints a table of p50/p99/max in milliseconds against the targets (warm p99 ≤ 1 ms at 500
names, ≤ 5 ms at 5,000; cold ≤ 20 ms), profiles the slowest case with cProfile, and writes
``benchmarks/results/server.json`` and ``server.png``. No timing is asserted anywhere.

    .venv/bin/python benchmarks/server_bench.py [--quick] [--sizes 100,500] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import http.client
import io
import json
import os
import platform
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_output import pyplot, write_results

from extender.artifacts.spec_map import SpecMapSource
from extender.nodes.model import NodeFeatures, load_node_features
from extender.nodes.store import FeatureStore
from extender.policy.decide import Policy
from extender.server import protocol
from extender.server.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "specs" / "multi-variant.yaml"
NODES = ROOT / "examples" / "nodes" / "all-nodes.yaml"
RESULTS = ROOT / "benchmarks" / "results"

SIZES = (100, 500, 1000, 5000)
TYPES = 50
CLUSTER = 5000
APP = "registry.example/app:1"
TARGETS_MS = {"warm@500": 1.0, "warm@5000": 5.0, "cold@5000": 20.0, "fresh@5000": 20.0}
# A pod (filter and prioritize together), warm, in-process: p50 and p99 at 1,000 names.
POD_TARGETS_MS = {"p50_ms": 0.3, "p99_ms": 1.0}

# --------------------------------------------------------------------------------------------
# The cluster and the requests (built the same way in both processes)


def hardware_types() -> list[NodeFeatures]:
    """50 distinct configurations: each example node with several kernel revisions."""
    bases = list(load_node_features(NODES.read_bytes()).values())
    types = []
    for index in range(TYPES):
        base = bases[index % len(bases)]
        revision = index // len(bases)
        attributes = dict(base.attributes)
        kernel = dict(attributes.get("kernel.version") or {})
        kernel["revision"] = str(revision)
        kernel["full"] = f"{kernel.get('major', '5')}.{kernel.get('minor', '0')}.{revision}-bench"
        attributes["kernel.version"] = kernel
        types.append(NodeFeatures.build(f"type-{index}", base.flags, attributes, base.instances))
    return types


def node_name(index: int) -> str:
    return f"node-{index:05d}"


def cluster() -> dict[str, NodeFeatures]:
    """5,000 nodes; node i has type i % 50, so any prefix of the list mixes all types."""
    types = hardware_types()
    return {
        node_name(i): dataclasses.replace(types[i % TYPES], node=node_name(i))
        for i in range(CLUSTER)
    }


def pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d4b9c",
            "namespace": "shop",
            # One pod per image, as the scheduler sends them: a distinct UID and a version.
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, image)),
            "resourceVersion": "4711",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
            "annotations": {"image-compat.io/mode": "enforce"},
        },
        "spec": {
            "schedulerName": "image-compat-scheduler",
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
                    "env": [{"name": "MODE", "value": "production"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                }
            ],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def node_object(index: int) -> dict[str, Any]:
    """A Node as the API serves it (~4 KB): labels, conditions, addresses, images."""
    name = node_name(index)
    arch = "amd64"
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
        "node.kubernetes.io/instance-type": f"type-{index % TYPES}",
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": f"eu-west-1{'abc'[index % 3]}",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true",
        "feature.node.kubernetes.io/kernel-version.major": "6",
        "feature.node.kubernetes.io/pci-0300_10de.present": "true",
    }
    conditions = [
        {"type": kind, "status": "False", "reason": f"Kubelet{reason}",
         "message": f"kubelet has {reason.lower()}", "lastHeartbeatTime": "2026-11-24T10:00:00Z",
         "lastTransitionTime": "2026-11-01T10:00:00Z"}
        for kind, reason in (("MemoryPressure", "HasSufficientMemory"),
                             ("DiskPressure", "HasNoDiskPressure"),
                             ("PIDPressure", "HasSufficientPID"))
    ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady",
          "message": "kubelet is posting ready status", "lastHeartbeatTime": "2026-11-24T10:00:00Z",
          "lastTransitionTime": "2026-11-01T10:00:00Z"}]  # fmt: skip
    images = [
        {"names": [f"registry.example/team-{j}/service@sha256:{(index * 31 + j):064x}",
                   f"registry.example/team-{j}/service:v1.{j}"], "sizeBytes": 50_000_000 + j}
        for j in range(8)
    ]  # fmt: skip
    capacity = {
        "cpu": "64",
        "memory": "263921284Ki",
        "pods": "110",
        "ephemeral-storage": "489702808Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    return {
        "metadata": {
            "name": name,
            "uid": f"00000000-0000-4000-8000-{index:012d}",
            "resourceVersion": str(100000 + index),
            "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": f"10.{index // 256 % 256}.{index % 256}.0/24",
            "providerID": f"aws:///eu-west-1a/i-{index:017x}",
        },
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": f"10.0.{index // 256 % 256}.{index % 256}"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{index:032x}",
                "systemUUID": f"{index:032x}",
                "bootID": f"{index:032x}",
                "kernelVersion": "6.8.0-47-generic",
                "osImage": "Ubuntu 24.04.1 LTS",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": "v1.34.4",
                "kubeProxyVersion": "v1.34.4",
                "operatingSystem": "linux",
                "architecture": arch,
            },
            "images": images,
        },
    }


def body(image: str, size: int, full_nodes: bool) -> bytes:
    args: dict[str, Any]
    if full_nodes:
        nodes = {"metadata": {}, "items": [node_object(i) for i in range(size)]}
        args = {"Pod": pod(image), "Nodes": nodes, "NodeNames": None}
    else:
        args = {"Pod": pod(image), "Nodes": None, "NodeNames": [node_name(i) for i in range(size)]}
    return json.dumps(args, separators=(",", ":")).encode()


def cold_image(verb: str, transport: str, index: int) -> str:
    return f"registry.example/cold-{verb}-{transport}-{index}:1"


def write_specs(directory: Path, cold: int) -> Path:
    """A spec map: the app's spec, and ``cold`` distinct specs (same rules, a different
    description, so a different digest) per verb and transport for the cold calls."""
    text = SPEC.read_text()
    lines = [f"- image: '{APP}'\n  spec: app.yaml\n"]
    (directory / "app.yaml").write_text(text)
    for verb in ("filter", "prioritize"):
        for transport in ("in-process", "http"):
            for index in range(cold):
                name = f"cold-{verb}-{transport}-{index}.yaml"
                described = text.replace(
                    'description: "Portable build', f'description: "{name}: Portable build', 1
                )
                assert described != text
                (directory / name).write_text(described)
                lines.append(f"- image: '{cold_image(verb, transport, index)}'\n  spec: {name}\n")
    (directory / "map.yaml").write_text("".join(lines))
    return directory / "map.yaml"


def build_app_parts(spec_map: Path) -> tuple[FeatureStore, SpecMapSource]:
    store = FeatureStore()
    store.add_source("bench")
    store.replace("bench", cluster())
    return store, SpecMapSource(spec_map)


# --------------------------------------------------------------------------------------------
# Measuring


def summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return {
        "n": len(ordered),
        "min_ms": round(ordered[0] * 1000, 4),
        "p50_ms": round(pick(0.50), 4),
        "p99_ms": round(pick(0.99), 4),
        "max_ms": round(ordered[-1] * 1000, 4),
    }


def repeat_count(first: float, budget: float, low: int, high: int) -> int:
    return max(low, min(high, int(budget / max(first, 1e-6))))


class InProcess:
    """The handler's work without a socket: decode, policy, encode."""

    def __init__(self, spec_map: Path) -> None:
        self.store, self.source = build_app_parts(spec_map)
        self.policy = Policy(Settings().policy_config(), self.store, self.source)
        self.loop = asyncio.new_event_loop()

    def forget(self) -> None:
        """A new policy: nothing memoised (as after a restart)."""
        self.policy = Policy(Settings().policy_config(), self.store, self.source)

    async def _filter(self, data: bytes) -> bytes:
        args = protocol.decode_extender_args(data)
        decision = await self.policy.filter(args.pod, args.names, args.platforms)
        return protocol.encode_filter_result(
            args, decision.passing, unresolvable=decision.unresolvable
        )

    async def _prioritize(self, data: bytes) -> bytes:
        args = protocol.decode_extender_args(data)
        scores = await self.policy.prioritize(args.pod, args.names, args.platforms)
        return protocol.encode_priorities(scores.names, scores.scores)

    def call(self, verb: str, data: bytes) -> float:
        work = self._filter if verb == "filter" else self._prioritize
        start = time.perf_counter()
        answer = self.loop.run_until_complete(work(data))
        elapsed = time.perf_counter() - start
        assert answer
        return elapsed

    def close(self) -> None:
        self.loop.close()


class OverHTTP:
    """A real serve of the app in another process; one keep-alive connection to it."""

    def __init__(self, spec_map: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(spec_map)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stderr is not None
        self.log: list[str] = []
        port = None
        for line in self.process.stderr:
            self.log.append(line)
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        if port is None:
            raise RuntimeError("the server did not start:\n" + "".join(self.log))
        # Keep draining stderr so the pipe never fills.
        threading.Thread(target=self._drain, daemon=True).start()
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def call(self, verb: str, data: bytes) -> float:
        headers = {"Content-Type": "application/json"}
        start = time.perf_counter()
        self.connection.request("POST", f"/{verb}", body=data, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{verb}: {response.status} {answer[:200]!r}")
        return elapsed

    def close(self) -> None:
        self.connection.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


Caller = Callable[[str, bytes], float]


def measure_warm(call: Caller, verb: str, data: bytes, budget: float, high: int) -> list[float]:
    for _ in range(3):  # warm the memo and the connection
        call(verb, data)
    first = call(verb, data)
    return [first] + [call(verb, data) for _ in range(repeat_count(first, budget, 20, high) - 1)]


def run_cells(args: argparse.Namespace, spec_map: Path) -> list[dict[str, Any]]:
    budget, high, cold = (0.05, 20, 5) if args.quick else (args.budget, 2000, args.cold)
    print("building requests...", file=sys.stderr)
    bodies = {
        (size, full): body(APP, size, full)
        for size in args.sizes
        for full in (False, True)
    }  # fmt: skip
    largest = max(args.sizes)
    cells: list[dict[str, Any]] = []
    transports: list[tuple[str, Callable[[Path], Any]]] = [
        ("in-process", InProcess),
        ("http", OverHTTP),
    ]
    for transport, make in transports:
        print(f"{transport}...", file=sys.stderr)
        runner = make(spec_map)
        try:
            for verb in ("filter", "prioritize"):
                for full in (False, True):
                    for size in args.sizes:
                        data = bodies[size, full]
                        samples = measure_warm(runner.call, verb, data, budget, high)
                        cells.append(
                            cell(
                                verb=verb,
                                transport=transport,
                                full=full,
                                memo="warm",
                                size=size,
                                size_bytes=len(data),
                                samples=samples,
                            )
                        )
                # Cold: each call a spec never evaluated, over the largest size, names only.
                samples = []
                size_bytes = 0
                for index in range(cold):
                    data = body(cold_image(verb, transport, index), largest, False)
                    size_bytes = len(data)
                    samples.append(runner.call(verb, data))
                cells.append(
                    cell(
                        verb=verb,
                        transport=transport,
                        full=False,
                        memo="cold",
                        size=largest,
                        size_bytes=size_bytes,
                        samples=samples,
                    )
                )
                if isinstance(runner, InProcess):
                    data = body(APP, largest, False)
                    samples = []
                    for _ in range(cold):
                        runner.forget()
                        samples.append(runner.call(verb, data))
                    cells.append(
                        cell(
                            verb=verb,
                            transport=transport,
                            full=False,
                            memo="fresh",
                            size=largest,
                            size_bytes=len(data),
                            samples=samples,
                        )
                    )
            # A pod as the shipped profile costs it: filter then prioritize, warm, names.
            for size in args.sizes:
                data = bodies[size, False]

                def pod_call(
                    _verb: str, data: bytes = data, runner: InProcess | OverHTTP = runner
                ) -> float:
                    return runner.call("filter", data) + runner.call("prioritize", data)

                samples = measure_warm(pod_call, "pod", data, budget, high)
                cells.append(
                    cell(
                        verb="pod",
                        transport=transport,
                        full=False,
                        memo="warm",
                        size=size,
                        size_bytes=len(data),
                        samples=samples,
                    )
                )
        finally:
            runner.close()
    return cells


def cell(
    *,
    verb: str,
    transport: str,
    full: bool,
    memo: str,
    size: int,
    size_bytes: int,
    samples: Sequence[float],
) -> dict[str, Any]:
    return {
        "verb": verb,
        "transport": transport,
        "request": "nodes" if full else "names",
        "memo": memo,
        "nodes": size,
        "request_bytes": size_bytes,
        **summary(samples),
    }


def profile(spec_map: Path, *, size: int, full: bool, memo: str, cold: int, top: int = 12) -> str:
    """cProfile of in-process filter calls in the given case; the top functions by own time."""
    runner = InProcess(spec_map)
    try:
        if memo == "warm":
            data = body(APP, size, full)
            runner.call("filter", data)
            calls = [data] * 20
        else:
            # A fresh policy: the cold entries of the map are cold again for it.
            calls = [body(cold_image("filter", "in-process", i), size, full) for i in range(cold)]
        profiler = cProfile.Profile()
        profiler.enable()
        for data in calls:
            runner.call("filter", data)
        profiler.disable()
    finally:
        runner.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    return text[text.find("   ncalls") :].rstrip() if "   ncalls" in text else text


# --------------------------------------------------------------------------------------------
# Output


def table(cells: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'verb':<10} {'transport':<10} {'request':<7} {'memo':<5} {'nodes':>5} "
        f"{'req KB':>8} {'n':>5} {'min ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target"
    )
    lines = [header, "-" * len(header)]
    for c in cells:
        target = target_for(c)
        verdict = ""
        if target is not None:
            verdict = f"p99 ≤ {target:g} ms: {'met' if c['p99_ms'] <= target else 'MISSED'}"
            if c["verb"] == "pod":
                p50 = POD_TARGETS_MS["p50_ms"]
                verdict += f"; p50 ≤ {p50:g} ms: {'met' if c['p50_ms'] <= p50 else 'MISSED'}"
        lines.append(
            f"{c['verb']:<10} {c['transport']:<10} {c['request']:<7} {c['memo']:<5} "
            f"{c['nodes']:>5} {c['request_bytes'] / 1024:>8.1f} {c['n']:>5} {c['min_ms']:>8.3f} "
            f"{c['p50_ms']:>8.3f} "
            f"{c['p99_ms']:>8.3f} {c['max_ms']:>8.3f}  {verdict}"
        )
    return "\n".join(lines)


def target_for(c: dict[str, Any]) -> float | None:
    """The p99 targets apply to node names (the default mode); a pod's to 1,000 names."""
    if c["request"] != "names":
        return None
    if c["verb"] == "pod":
        if c["nodes"] == 1000 and c["transport"] == "in-process":
            return POD_TARGETS_MS["p99_ms"]
        return None
    return TARGETS_MS.get(f"{c['memo']}@{c['nodes']}")


def plot(cells: Sequence[dict[str, Any]], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    colors = {("in-process", "names"): "C0", ("http", "names"): "C1",
              ("in-process", "nodes"): "C2", ("http", "nodes"): "C3"}  # fmt: skip
    for axis, verb in zip(axes, ("filter", "prioritize"), strict=True):
        for (transport, request), color in colors.items():
            warm = sorted(
                (c["nodes"], c["p50_ms"], c["p99_ms"])
                for c in cells
                if (c["verb"], c["transport"], c["request"], c["memo"])
                == (verb, transport, request, "warm")
            )
            if warm:
                x, p50, p99 = zip(*warm, strict=True)
                axis.plot(x, p50, "-" if transport == "http" else "--", marker="o", color=color,
                          label=f"warm p50, {request}, {transport}")  # fmt: skip
                axis.plot(x, p99, linestyle="none", marker="_", markersize=10, color=color,
                          alpha=0.6)  # fmt: skip
        for c in cells:
            if c["verb"] == verb and c["memo"] != "warm":
                color = colors[c["transport"], c["request"]]
                axis.plot([c["nodes"]], [c["p50_ms"]], marker="*" if c["memo"] == "cold"
                          else "X", markersize=11, linestyle="none", color=color,
                          label=f"{c['memo']} p50, names, {c['transport']}")  # fmt: skip
        for size, target in sorted({(int(k.split("@")[1]), v) for k, v in TARGETS_MS.items()}):
            names = "/".join(k.split("@")[0] for k, v in TARGETS_MS.items()
                             if v == target and k.endswith(f"@{size}"))  # fmt: skip
            axis.plot([size], [target], marker="_", markersize=25, color="red", linestyle="none")
            axis.annotate(f"target p99 {names}", (size, target), xytext=(-60, 4),
                          textcoords="offset points", fontsize=7, color="red")  # fmt: skip
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("candidate nodes per call (log)")
        axis.set_title(f"{verb} (dashes: p99)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency per call, ms (log)")
    axes[1].legend(fontsize=7, loc="upper left")
    figure.suptitle("image-compat-extender: latency per call (names = nodeCacheCapable)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


# --------------------------------------------------------------------------------------------
# Entry points


def serve_for_benchmark(spec_map: Path) -> int:
    """The server side (``--serve``): the real app and serve(), fed the synthetic cluster."""
    from extender.server.app import create_app, serve
    from extender.server.logs import configure_logging

    configure_logging("INFO")
    settings = Settings(listen=("127.0.0.1", 0))
    store, source = build_app_parts(spec_map)
    app = create_app(settings, feature_store=store, artifact_source=source)
    asyncio.run(serve(app, settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=SIZES,
        help="candidate node counts (comma list; at most 5000)",
    )
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per warm cell")
    parser.add_argument("--cold", type=int, default=60, help="cold calls per verb and transport")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve_for_benchmark(args.serve)
    if max(args.sizes) > CLUSTER or min(args.sizes) < 1:
        parser.error(f"--sizes: between 1 and {CLUSTER}")
    cold = 5 if args.quick else args.cold

    with tempfile.TemporaryDirectory(prefix="server-bench-") as directory:
        spec_map = write_specs(Path(directory), cold)
        cells = run_cells(args, spec_map)
        profiles = {}
        if not args.no_profile:
            largest = max(args.sizes)
            for name, full, memo in (("warm-nodes", True, "warm"), ("cold-names", False, "cold")):
                profiles[name] = profile(
                    spec_map, size=largest, full=full, memo=memo, cold=min(cold, 5)
                )

    load = [round(x, 2) for x in os.getloadavg()]
    print(
        f"{CLUSTER} nodes of {TYPES} hardware types, spec {SPEC.name}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {load} "
        "(p99 and max on a busy machine mostly measure other processes)\n"
    )
    print(table(cells))
    for name, text in profiles.items():
        print(f"\nprofile, in-process filter, {name} at {max(args.sizes)} nodes (by own time):")
        print(text)

    document = {
        "benchmark": "server",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": load,
        "quick": args.quick,
        "cluster": {"nodes": CLUSTER, "hardware_types": TYPES, "spec": SPEC.name},
        "targets_ms": TARGETS_MS,
        "pod_targets_ms": POD_TARGETS_MS,
        "results": cells,
        "profiles": profiles,
    }
    write_results(args.out, "server", document, lambda path: plot(cells, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
