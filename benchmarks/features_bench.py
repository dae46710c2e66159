"""Live-features benchmark: a real ``serve`` watching a real kube-apiserver.

What it measures (the targets in docs/performance.md):

* **filter latency under churn**: p50/p99/max of ``POST /filter`` for one pod over 1,000 node
  names, first with the NodeFeatures quiet, then while 50 NodeFeatures per second are patched
  through the apiserver (each patch changes a feature the pod's spec reads, so the memo misses
  for that node and the watch thread applies the update while requests are served);
* **memory**: the ``serve`` process's resident set (VmRSS, and its peak VmHWM) after it has
  listed and merged 1,000 and 5,000 realistic NodeFeatures (the example fleet, including
  NFD's real nfd-worker output for this machine, each node with its own hostname), and the
  time from start to ready.

Prints a table, writes ``benchmarks/results/features.json`` and ``features.png``. Nothing is
asserted: numbers depend on the machine. Only loopback is used.

    .venv/bin/python benchmarks/features_bench.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import aiohttp
import yaml
from bench_output import pyplot, write_results
from serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # devcluster is the repository's, not an installed package

from devcluster import nfd  # noqa: E402
from devcluster.controlplane import ControlPlane  # noqa: E402
from extender.kube.client import kubernetes_api_client  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FLEET = ROOT / "examples" / "nodes" / "all-nodes.yaml"
SPEC = ROOT / "examples" / "specs" / "multi-variant.yaml"
IMAGE = "registry.example/bench/app:1"
GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeatures"
CHURN_FEATURE = "kernel.loadedmodule"  # read by the spec: a patch makes the memo miss


def node_name(i: int) -> str:
    return f"bench-{i:05d}"


def fleet_templates() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(FLEET.read_text()) if d]
    items: list[dict[str, Any]] = []
    for doc in docs:
        items.extend(doc.get("items") or [doc])
    return items


def nodefeature(template: dict[str, Any], i: int) -> dict[str, Any]:
    """A copy of a fleet node as node ``i``, with its own hostname as a real fleet has."""
    name = node_name(i)
    features = copy.deepcopy(template["spec"]["features"])
    attributes = features.setdefault("attributes", {})
    system_name = attributes.setdefault("system.name", {"elements": {}})
    system_name.setdefault("elements", {})["nodename"] = name
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NodeFeature",
        "metadata": {
            "name": name,
            "namespace": nfd.NFD_NAMESPACE,
            "labels": {nfd.NODE_NAME_LABEL: name},
        },
        "spec": {"features": features},
    }


class Patcher:
    """Changes one feature the spec reads on a node: the memo misses there next time."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(kubernetes_api_client(kubeconfig))

    def patch(self, i: int, turn: int) -> None:
        """Toggle a module flag on node ``i`` (merge patch: null removes the key)."""
        value: dict[str, Any] | None = {} if turn % 2 == 0 else None
        body = {
            "spec": {"features": {"flags": {CHURN_FEATURE: {"elements": {"bench_mod": value}}}}}
        }
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, nfd.NFD_NAMESPACE, PLURAL, node_name(i), body
        )


class Fleet:
    """Creates NodeFeatures and Nodes through the apiserver with a few client threads."""

    def __init__(self, cluster: ControlPlane) -> None:
        self.cluster = cluster
        self.api = kubernetes_api_client(str(cluster.kubeconfig))
        from kubernetes import client

        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.templates = fleet_templates()
        self.size = 0

    def grow(self, size: int) -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._create, range(self.size, size)))
        self.size = max(self.size, size)
        return time.perf_counter() - start

    def _create(self, i: int) -> None:
        body = nodefeature(self.templates[i % len(self.templates)], i)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, nfd.NFD_NAMESPACE, PLURAL, body)
        arch = "arm64" if i % 7 == 6 else "amd64"
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node_name(i),
                "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": arch},
            },
        }
        self.core.create_node(cast(Any, node))  # the client takes plain dicts too


def _churn(kubeconfig: str, nodes: int, rate: float, stop: Any, counts: Any) -> None:
    """Child process: patch NodeFeatures at ``rate`` per second until ``stop`` is set.

    A process of its own, so neither its client threads nor the GIL touch the latencies the
    parent measures. Patches that cannot start on time are dropped, not queued: ``counts``
    then tells the rate the apiserver really took.
    """
    patcher = Patcher(kubeconfig)
    in_flight = threading.Semaphore(32)
    lock = threading.Lock()

    def one(i: int, turn: int) -> None:
        try:
            patcher.patch(i, turn)
            with lock:
                counts[0] += 1
        except Exception:
            with lock:
                counts[1] += 1
        finally:
            in_flight.release()

    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        turn = 0
        while not stop.is_set():
            stop.wait(max(0.0, start + turn / rate - time.perf_counter()))
            if in_flight.acquire(blocking=False):
                pool.submit(one, (turn * 7919) % nodes, turn)
            else:
                with lock:
                    counts[2] += 1
            turn += 1
    counts[3] = time.perf_counter() - start


class Churn:
    """NodeFeature patches at a fixed rate from a child process, while the block runs."""

    def __init__(self, kubeconfig: str, nodes: int, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.rate = rate
        self._stop = context.Event()
        self._counts = context.Array("d", 4)  # done, errors, dropped, seconds
        self._process = context.Process(
            target=_churn, args=(kubeconfig, nodes, rate, self._stop, self._counts)
        )

    def __enter__(self) -> Churn:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(60)

    def result(self) -> dict[str, float]:
        done, errors, dropped, seconds = self._counts[:]
        return {
            "target_per_s": self.rate,
            "achieved_per_s": done / seconds if seconds else 0.0,
            "patches": done,
            "errors": errors,
            "dropped": dropped,
            "seconds": seconds,
        }


def start_serve(cluster: ControlPlane, workdir: Path) -> ServeProcess:
    """A real ``image-compat-extender serve`` watching the cluster, with the image's spec."""
    (workdir / "map.yaml").write_text(f"- image: '{IMAGE}'\n  spec: {SPEC}\n")
    return ServeProcess(
        [f"--kubeconfig={cluster.kubeconfig}", f"--spec-map={workdir / 'map.yaml'}"]
    )


def memory_mb(serve: ServeProcess) -> dict[str, float]:
    return {k: kb / 1024 for k, kb in serve.memory_kb().items()}


def pod_args(nodes: int) -> dict[str, Any]:
    pod = {
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "schedulerName": "image-compat-scheduler",
            "containers": [{"name": "app", "image": IMAGE}],
        },
    }
    return {"Pod": pod, "Nodes": None, "NodeNames": [node_name(i) for i in range(nodes)]}


async def latencies(serve: ServeProcess, nodes: int, requests: int) -> dict[str, list[float]]:
    """Milliseconds per call, one call at a time as the scheduler makes them."""
    body = json.dumps(pod_args(nodes)).encode()
    headers = {"Content-Type": "application/json"}
    out: dict[str, list[float]] = {"filter": [], "prioritize": []}
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            for verb, samples in out.items():
                start = time.perf_counter()
                async with session.post(f"{serve.base}/{verb}", data=body, headers=headers) as r:
                    answer = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{verb}: HTTP {r.status}: {answer[:200]!r}")
                samples.append((time.perf_counter() - start) * 1000)
                if verb == "filter" and json.loads(answer).get("Error"):
                    raise RuntimeError(f"filter answered Error: {answer[:300]!r}")
    return out


def summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "count": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p99_ms": p99,
        "max_ms": ordered[-1],
    }


def table(results: dict[str, Any]) -> str:
    rows = ["| phase | verb | calls | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    for phase, verbs in results["latency"].items():
        for verb, s in verbs.items():
            rows.append(
                f"| {phase} | {verb} | {s['count']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} "
                f"| {s['max_ms']:.2f} |"
            )
    rows += ["", "| NodeFeatures | ready after s | RSS MB | peak RSS MB |", "|---|---|---|---|"]
    for size, m in results["memory"].items():
        rows.append(f"| {size} | {m['ready_s']:.1f} | {m['VmRSS']:.0f} | {m['VmHWM']:.0f} |")
    churn = results["churn"]
    rows.append("")
    rows.append(
        f"churn: {churn['patches']:.0f} patches in {churn['seconds']:.1f} s "
        f"({churn['achieved_per_s']:.1f}/s, target {churn['target_per_s']}/s, "
        f"{churn['errors']:.0f} errors, {churn['dropped']:.0f} dropped because 32 were in flight)"
    )
    return "\n".join(rows)


def plot(results: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for phase, samples in results["samples"].items():
        ordered = sorted(samples)
        ys = [(k + 1) / len(ordered) for k in range(len(ordered))]
        left.plot(ordered, ys, label=phase)
    left.set_xscale("log")
    left.set_xlabel("filter latency (ms, log)")
    left.set_ylabel("fraction of calls")
    left.set_title(f"filter over {results['nodes']} nodes")
    left.legend(fontsize=8)
    sizes = list(results["memory"])
    rss = [results["memory"][s]["VmRSS"] for s in sizes]
    right.bar([str(s) for s in sizes], rss, color="#4c72b0")
    right.axhline(300, color="#c44e52", linestyle="--", label="target 300 MB at 5,000")
    right.set_xlabel("NodeFeatures loaded")
    right.set_ylabel("serve RSS (MB)")
    right.set_title("memory")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


@contextlib.contextmanager
def cluster_with_nfd() -> Iterator[ControlPlane]:
    cluster = ControlPlane()
    try:
        cluster.start_etcd()
        # Room for 5,000 creates from a few client threads without 429s.
        cluster.start_apiserver(["--max-requests-inflight=800"])
        nfd.install_crds(cluster)
        nfd.ensure_namespace(cluster, nfd.NFD_NAMESPACE)
        yield cluster
    finally:
        cluster.stop()


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"latency": {}, "samples": {}, "memory": {}}
    with cluster_with_nfd() as cluster:
        fleet = Fleet(cluster)
        sizes = sorted({args.nodes, *args.rss_nodes})
        for size in sizes:
            created = fleet.grow(size)
            print(f"{size} NodeFeatures and Nodes in the apiserver ({created:.1f} s to create)")
            serve = start_serve(cluster, workdir)
            try:
                ready = await serve.wait_ready(size)
                await latencies(serve, min(size, 10), 5)  # warm the spec and the connection
                await asyncio.sleep(2)
                results["memory"][size] = {"ready_s": ready, **memory_mb(serve)}
                if size != args.nodes:
                    continue
                quiet = await latencies(serve, size, args.requests)
                with Churn(str(cluster.kubeconfig), size, args.rate) as churn:
                    await asyncio.sleep(3)  # the child is up and patching before the samples
                    busy = await latencies(serve, size, args.requests)
                    # Long enough a window that the rate is a rate, not a burst.
                    until = time.perf_counter() + args.churn_seconds
                    while time.perf_counter() < until:
                        more = await latencies(serve, size, 20)
                        for verb, samples in more.items():
                            busy[verb].extend(samples)
                results["churn"] = churn.result()
                achieved = results["churn"]["achieved_per_s"]
                under = f"{achieved:.0f} updates/s (target {args.rate:g})"
                for phase, data in (("quiet", quiet), (under, busy)):
                    results["latency"][phase] = {v: summary(x) for v, x in data.items()}
                    results["samples"][phase] = data["filter"]
                # After churn the store holds the patched objects: memory again.
                results["memory"][size].update(
                    {f"after_churn_{k}": v for k, v in memory_mb(serve).items()}
                )
            except Exception:
                print("".join(serve.lines[-30:]), file=sys.stderr)
                raise
            finally:
                serve.stop()
    results["nodes"] = args.nodes
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="nodes per filter call")
    parser.add_argument(
        "--rss-nodes", type=lambda t: [int(x) for x in t.split(",")], default=[1000, 5000]
    )
    parser.add_argument("--rate", type=float, default=50.0, help="NodeFeature patches per second")
    parser.add_argument("--requests", type=int, default=300, help="calls per phase and verb")
    parser.add_argument(
        "--churn-seconds", type=float, default=20.0, help="at least this long under updates"
    )
    parser.add_argument("--quick", action="store_true", help="200 nodes, 500 for memory")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.rss_nodes, args.requests, args.churn_seconds = 200, [200, 500], 50, 3
    with tempfile.TemporaryDirectory(prefix="features-bench-") as tmp:
        results = asyncio.run(measure(args, Path(tmp)))
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print(table(results))
    document = {
        "benchmark": "features",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "command": "benchmarks/features_bench.py " + " ".join(argv or sys.argv[1:]),
        **{k: v for k, v in results.items() if k != "samples"},
    }
    write_results(args.out, "features", document, lambda path: plot(results, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
