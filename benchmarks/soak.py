"""Soak: a fixed rate of pods through filter and prioritize for a bounded time, every answer
checked, while NodeFeatures change under a real kube-apiserver; the extender's RSS sampled.

The setup, all on loopback:

* etcd and kube-apiserver from devcluster, NFD's CRDs, and ``--nodes`` Nodes with their
  NodeFeatures, cloned from the six example nodes (node ``i`` is type ``i % 6``);
* a real ``image-compat-extender serve`` watching that apiserver (the production feature path:
  list, then watch, into the feature store), with a spec map giving four images the four
  example specs;
* churn: the last ``--churn-share`` of the nodes swap their whole NodeFeature between two
  hardware types, ``--churn-rate`` updates per second through the apiserver, so their verdicts
  flip while requests are served.

Each pod, as kube-scheduler does it: ``POST /filter`` with every node's name, then
``POST /prioritize`` with the names that passed. Pods start on a fixed schedule (``--rate``
per second, images in turn, at most ``--in-flight`` pods at once: a pod that cannot start on
time starts late and is counted; none starts after ``--duration``). Every answer is checked:
HTTP 200, no ``Error``, each asked node exactly once among passing and rejected, and each node's
verdict and score equal to the reference. The reference comes from sequential calls before the
load, over the nodes that never change: a verdict and a score per image and hardware type. A
churning node may be in any state it held between ``--lag`` seconds before the call and its
answer (the watch's propagation allowance), and no other.

The extender's VmRSS is read from /proc every ``--rss-interval`` seconds; the least-squares
slope over the samples after ``--warmup`` seconds tells growth. Each NodeFeature update gives
the node a new generation, and the verdict memo keeps entries per generation until its bound
(``--memo-size``): the soak runs serve with a bound the churn reaches within the warm-up, so
growth after it is not the memo filling up. The extender's CPU time per pod is sampled with
the RSS, to tell a slower extender from a busier machine.

The run fails (exit 1) on any error (non-200, an ``Error`` answer, a wrong answer), a failed
NodeFeature update, an achieved rate below ``--min-rate`` of the target, or a slope above
``--max-rss-slope``.

Prints a table; writes ``soak.json`` and ``soak.png`` under ``benchmarks/results/``.

    .venv/bin/python benchmarks/soak.py --duration 600 --rate 50 --nodes 1000
    .venv/bin/python benchmarks/soak.py --smoke --out /tmp/soak   # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import yaml
from bench_output import pyplot, write_results
from serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # devcluster is the repository's, not an installed package

from devcluster import build, nfd  # noqa: E402
from devcluster.controlplane import ControlPlane  # noqa: E402
from extender.kube.client import kubernetes_api_client  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FLEET = ROOT / "examples" / "nodes" / "all-nodes.yaml"
SPECS = ROOT / "examples" / "specs"
GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeatures"
SCHEDULER = "image-compat-scheduler"
MAX_ERRORS_KEPT = 20
HEADERS = {"Content-Type": "application/json"}
LATE_S = 0.1  # a pod started this much after its slot in the schedule counts as late

# --------------------------------------------------------------------------------------------
# The fleet


def templates() -> list[dict[str, Any]]:
    """The example nodes' NodeFeature objects, in file order: hardware type k is the k-th."""
    items: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(FLEET.read_text()):
        if doc:
            items.extend(doc.get("items") or [doc])
    return items


def node_name(i: int) -> str:
    return f"soak-{i:05d}"


def nodefeature(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of an example node as node ``name``, with its own hostname as a real fleet has."""
    features = copy.deepcopy(template["spec"]["features"])
    attributes = features.setdefault("attributes", {})
    system = attributes.setdefault("system.name", {"elements": {}})
    system.setdefault("elements", {})["nodename"] = name
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


@dataclass
class Fleet:
    """Which hardware type each node starts as, and which ones churn (between two types)."""

    nodes: int
    types: int
    churn_share: float

    @property
    def names(self) -> list[str]:
        return [node_name(i) for i in range(self.nodes)]

    @property
    def churning(self) -> list[int]:
        count = max(1, round(self.nodes * self.churn_share)) if self.churn_share > 0 else 0
        return list(range(self.nodes - count, self.nodes))

    @property
    def stable(self) -> list[int]:
        return list(range(self.nodes - len(self.churning)))

    def initial_type(self, i: int) -> int:
        return i % self.types

    def other_type(self, i: int) -> int:
        """The type a churning node swaps with: half the example list away, so most swaps
        change some image's verdict."""
        return (i + self.types // 2) % self.types


class History:
    """Per churning node: when each state was sent to the apiserver, and when it was accepted.

    State k holds from the moment its update was sent until ``lag`` seconds after the next
    update was accepted; an answer about the node is right if it matches a state that held at
    some instant between the call's start and its answer. A state is entered in the history
    before its update is sent (accepted at infinity until the apiserver answers), so a check
    never races the update it is about.
    """

    def __init__(self, initial: dict[int, int], lag: float) -> None:
        self.lag = lag
        # node -> [[sent, accepted, type]], in order
        self.states: dict[int, list[list[float]]] = {
            i: [[-math.inf, -math.inf, t]] for i, t in initial.items()
        }
        self.lock = threading.Lock()

    def send(self, i: int, kind: int) -> None:
        """Type ``kind`` is about to be sent for node ``i``."""
        with self.lock:
            self.states[i].append([time.monotonic(), math.inf, kind])

    def accepted(self, i: int) -> None:
        """The apiserver accepted the last update of node ``i``. (Never called for an update
        that failed: it may or may not have been applied, so both states stay allowed.)"""
        with self.lock:
            self.states[i][-1][1] = time.monotonic()

    def record(self, i: int, sent: float, accepted: float, kind: int) -> None:
        """An update whose times are known (a replayed history)."""
        with self.lock:
            self.states[i].append([sent, accepted, kind])

    def current(self, i: int) -> int:
        with self.lock:
            return int(self.states[i][-1][2])

    def allowed(self, i: int, start: float, end: float) -> set[int]:
        with self.lock:
            states = self.states[i]
            kinds: set[int] = set()
            # Newest first: a long run's history is long, and only its tail matters.
            for k in range(len(states) - 1, -1, -1):
                sent, _, kind = states[k]
                until = states[k + 1][1] + self.lag if k + 1 < len(states) else math.inf
                if until < start:
                    break
                if sent <= end:
                    kinds.add(int(kind))
            return kinds


class Cluster:
    """etcd, kube-apiserver and NFD's CRDs from devcluster; Nodes and NodeFeatures in it."""

    def __init__(self) -> None:
        # A no-op when the cache holds the pinned versions; on a fresh machine, the build.
        build.build_all(["etcd", "kube-apiserver"])
        self.plane = ControlPlane()
        self.plane.start_etcd()
        # Room for a thousand creates from a few client threads without 429s.
        self.plane.start_apiserver(["--max-requests-inflight=800"])
        nfd.install_crds(self.plane)
        nfd.ensure_namespace(self.plane, nfd.NFD_NAMESPACE)
        from kubernetes import client

        api = kubernetes_api_client(str(self.plane.kubeconfig))
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.templates = templates()

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def populate(self, fleet: Fleet) -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self._create(i, fleet.initial_type(i)), range(fleet.nodes)))
        return time.perf_counter() - start

    def _create(self, i: int, kind: int) -> None:
        name = node_name(i)
        body = nodefeature(self.templates[kind], name)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, nfd.NFD_NAMESPACE, PLURAL, body)
        labels = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
        self.core.create_node(cast(Any, node))  # the client takes plain dicts too

    def replace(self, i: int, kind: int) -> None:
        """The node's features become hardware type ``kind``, replaced whole: read, then an
        update at the read's resourceVersion (the apiserver refuses unconditional updates of
        custom objects; a merge patch would keep the keys the new type lacks)."""
        name = node_name(i)
        current = cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(
                GROUP, VERSION, nfd.NFD_NAMESPACE, PLURAL, name
            ),
        )
        body = nodefeature(self.templates[kind], name)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.custom.replace_namespaced_custom_object(
            GROUP, VERSION, nfd.NFD_NAMESPACE, PLURAL, name, body
        )

    def pids(self) -> dict[str, int | None]:
        return {
            "kube-apiserver": self.plane.apiserver.pid if self.plane.apiserver else None,
            "etcd": self.plane.etcd.pid if self.plane.etcd else None,
        }

    def stop(self) -> None:
        self.plane.stop()


def start_serve(kubeconfig: Path, spec_map: Path, extra: Sequence[str] = ()) -> ServeProcess:
    """A real ``image-compat-extender serve`` watching the cluster."""
    return ServeProcess([f"--kubeconfig={kubeconfig}", f"--spec-map={spec_map}", *extra])


# --------------------------------------------------------------------------------------------
# Requests and the reference


def image_name(spec: Path) -> str:
    return f"registry.example/soak/{spec.stem}:1"


def write_spec_map(directory: Path) -> list[str]:
    specs = sorted(SPECS.glob("*.yaml"))
    lines = [f"- image: '{image_name(s)}'\n  spec: {s}\n" for s in specs]
    (directory / "map.yaml").write_text("".join(lines))
    return [image_name(s) for s in specs]


def pod(image: str, index: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"soak-{index}", "namespace": "default", "uid": f"uid-{index}"},
        "spec": {"schedulerName": SCHEDULER, "containers": [{"name": "app", "image": image}]},
    }


def args_body(image: str, index: int, names: Sequence[str]) -> bytes:
    return json.dumps(
        {"Pod": pod(image, index), "Nodes": None, "NodeNames": list(names)},
        separators=(",", ":"),
    ).encode()


MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority


class WrongAnswerError(Exception):
    """An answer that is not the reference's (or not an answer at all)."""


def filter_sets(answer: Any, asked: Sequence[str]) -> tuple[list[str], set[str]]:
    """Passing names (in answer order) and rejected names, after the checks every answer must
    pass: no Error, no node twice, nothing that was not asked; a rejected node is named only
    when none passes (serve's --filter-reasons=when-all-rejected), and then every one is."""
    if not isinstance(answer, dict):
        raise WrongAnswerError(f"filter answered {answer!r:.200}")
    if answer.get("Error"):
        raise WrongAnswerError(f"filter answered Error: {answer['Error']!r:.300}")
    passing = list(answer.get("NodeNames") or [])
    named = set(answer.get("FailedNodes") or {}) | set(
        answer.get("FailedAndUnresolvableNodes") or {}
    )
    if len(set(passing)) != len(passing) or set(passing) & named:
        raise WrongAnswerError("a node both passes and is rejected, or passes twice")
    if (set(passing) | named) - set(asked):
        extra = sorted((set(passing) | named) - set(asked))[:5]
        raise WrongAnswerError(f"nodes not asked: {extra}")
    rejected = set(asked) - set(passing)
    if not passing and named != rejected:
        missing = sorted(rejected - named)[:5]
        raise WrongAnswerError(f"no node passes, yet rejected nodes go unnamed: {missing}")
    if passing and named:
        raise WrongAnswerError("a node passes, yet rejected nodes are named")
    return passing, rejected


@dataclass
class Reference:
    """Per image and hardware type: does it pass filter, and its prioritize score."""

    passes: dict[str, dict[int, bool]] = field(default_factory=dict)
    scores: dict[str, dict[int, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            image: {
                str(kind): {"passes": self.passes[image][kind], "score": self.scores[image][kind]}
                for kind in sorted(self.passes[image])
            }
            for image in self.passes
        }


async def call(session: aiohttp.ClientSession, url: str, body: bytes) -> Any:
    async with session.post(url, data=body, headers=HEADERS) as response:
        data = await response.read()
        if response.status != 200:
            raise WrongAnswerError(f"HTTP {response.status}: {data[:200]!r}")
    return json.loads(data)


async def build_reference(
    session: aiohttp.ClientSession, base: str, images: Sequence[str], fleet: Fleet
) -> Reference:
    """Sequential calls over the nodes that never change: each type's verdict and score.

    Every node of a type must get the same verdict and score, or the reference is refused.
    Scores are normalised to the best fit in the call; the load's prioritize calls always hold
    every passing stable node, so their best is this call's best.
    """
    reference = Reference()
    stable = fleet.stable
    names = [node_name(i) for i in stable]
    for index, image in enumerate(images):
        answer = await call(session, f"{base}/filter", args_body(image, -1 - index, names))
        passing, _ = filter_sets(answer, names)
        passed = set(passing)
        verdicts: dict[int, bool] = {}
        for i in stable:
            kind, ok = fleet.initial_type(i), node_name(i) in passed
            if verdicts.setdefault(kind, ok) != ok:
                raise RuntimeError(f"{image}: nodes of type {kind} got different verdicts")
        scores: dict[int, int] = {}
        # Passing types scored as the load scores them (among the passing nodes); the others
        # among all the stable nodes (a churning node may pass filter, then change).
        for subset, scored in (([n for n in names if n in passed], True), (names, False)):
            if not subset:
                continue
            answer = await call(session, f"{base}/prioritize", args_body(image, -1, subset))
            # Nodes at the lowest score (0 after prioritize's shift) are left out.
            by_name = {name: 0 for name in subset}
            by_name.update((entry["Host"], entry["Score"]) for entry in answer)
            for i in stable:
                kind, name = fleet.initial_type(i), node_name(i)
                if (
                    name in by_name
                    and verdicts[kind] is scored
                    and scores.setdefault(kind, by_name[name]) != by_name[name]
                ):
                    raise RuntimeError(f"{image}: nodes of type {kind} got different scores")
        reference.passes[image], reference.scores[image] = verdicts, scores
    return reference


# --------------------------------------------------------------------------------------------
# The load


@dataclass
class Tally:
    pods: int = 0
    requests: dict[str, int] = field(default_factory=lambda: {"filter": 0, "prioritize": 0})
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"filter": [], "prioritize": []}
    )
    # (seconds since start, verb, ms): for the plot, one in every few
    timeline: list[tuple[float, str, float]] = field(default_factory=list)
    churn_checks: int = 0  # verdicts checked on a churning node away from its first type
    passed: int = 0
    rejected: int = 0
    churn_updates: int = 0
    churn_errors: int = 0
    late: int = 0  # pods started more than LATE_S after their slot: the extender fell behind

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERRORS_KEPT:
            self.error_samples.append(text)


class Load:
    """Pods on a fixed schedule, every answer checked; the churn beside them."""

    def __init__(
        self,
        *,
        args: argparse.Namespace,
        session: aiohttp.ClientSession,
        base: str,
        images: Sequence[str],
        fleet: Fleet,
        reference: Reference,
        history: History,
    ) -> None:
        self.args = args
        self.session = session
        self.base = base
        self.images = images
        self.fleet = fleet
        self.reference = reference
        self.history = history
        self.names = fleet.names
        self.churning = {node_name(i): i for i in fleet.churning}
        self.kind = {node_name(i): fleet.initial_type(i) for i in fleet.stable}
        self.bodies = {image: args_body(image, 0, self.names) for image in images}
        self.tally = Tally()
        self.started = 0.0

    def allowed(self, name: str, start: float, end: float) -> set[int]:
        if name in self.churning:
            i = self.churning[name]
            kinds = self.history.allowed(i, start, end)
            if kinds != {self.fleet.initial_type(i)}:
                self.tally.churn_checks += 1
            return kinds
        return {self.kind[name]}

    async def timed(self, verb: str, body: bytes) -> tuple[Any, float, float]:
        start = time.monotonic()
        self.tally.requests[verb] += 1
        answer = await call(self.session, f"{self.base}/{verb}", body)
        end = time.monotonic()
        ms = (end - start) * 1000
        self.tally.latency_ms[verb].append(ms)
        if len(self.tally.latency_ms[verb]) % 5 == 1:
            self.tally.timeline.append((end - self.started, verb, ms))
        return answer, start, end

    async def one_pod(self, index: int) -> None:
        image = self.images[index % len(self.images)]
        try:
            answer, start, end = await self.timed("filter", self.bodies[image])
            passing, rejected = filter_sets(answer, self.names)
            passes = self.reference.passes[image]
            for name in passing:
                if not any(passes[k] for k in self.allowed(name, start, end)):
                    raise WrongAnswerError(
                        f"filter {image}: {name} passed, the reference rejects it"
                    )
            for name in rejected:
                if all(passes[k] for k in self.allowed(name, start, end)):
                    raise WrongAnswerError(
                        f"filter {image}: {name} rejected, the reference passes it"
                    )
            self.tally.passed += len(passing)
            self.tally.rejected += len(rejected)
            body = args_body(image, index, passing)
            answer, start, end = await self.timed("prioritize", body)
            listed = [e.get("Host") for e in answer] if isinstance(answer, list) else None
            order = {name: i for i, name in enumerate(passing)}
            if listed is None or any(name not in order for name in listed):
                raise WrongAnswerError(f"prioritize {image}: a name that was not asked")
            if [order[name] for name in listed] != sorted(order[name] for name in listed):
                raise WrongAnswerError(f"prioritize {image}: not in the asked order")
            # A node left out scores 0 (the lowest, after prioritize's shift). Scores are
            # shifted by the lowest among the candidates, which a churning node can lower (it
            # passed filter, then changed before prioritize): stable nodes must keep the
            # reference's differences (one common offset); churning ones stay within 0..10.
            got = dict.fromkeys(passing, 0)
            got.update((entry["Host"], entry["Score"]) for entry in answer)
            scores = self.reference.scores[image]
            offset: int | None = None
            for name, score in got.items():
                if not 0 <= score <= MAX_SCORE:
                    raise WrongAnswerError(f"prioritize {image}: {name} scored {score}")
                if name in self.churning:
                    continue
                (expected,) = {scores[k] for k in self.allowed(name, start, end)}
                if offset is None:
                    offset = score - expected
                elif score - expected != offset:
                    raise WrongAnswerError(
                        f"prioritize {image}: {name} scored {score}, {expected} + {offset} "
                        "like the other stable nodes was expected"
                    )
        except (TimeoutError, WrongAnswerError, aiohttp.ClientError, ValueError) as err:
            self.tally.error(f"pod {index}: {type(err).__name__}: {err}")
        finally:
            self.tally.pods += 1

    async def churn(self, stop: asyncio.Event, cluster: Cluster) -> None:
        """``--churn-rate`` whole-NodeFeature swaps per second, churning nodes in turn."""
        churning = self.fleet.churning
        if not churning or self.args.churn_rate <= 0:
            return
        turn = 0
        begin = time.monotonic()
        while not stop.is_set():
            i = churning[turn % len(churning)]
            kind = (
                self.fleet.other_type(i)
                if self.history.current(i) == self.fleet.initial_type(i)
                else self.fleet.initial_type(i)
            )
            self.history.send(i, kind)
            try:
                await asyncio.to_thread(cluster.replace, i, kind)
                self.history.accepted(i)
                self.tally.churn_updates += 1
            except Exception as err:  # the run fails; the node may be in either state now
                self.tally.churn_errors += 1
                if self.tally.churn_errors <= 3:
                    print(f"churn update failed: {str(err)[:300]}", file=sys.stderr)
            turn += 1
            delay = begin + turn / self.args.churn_rate - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, delay))

    def progress(self) -> None:
        """A line a minute on a long run, so a watcher knows it is alive and on schedule."""
        t = self.tally
        print(
            f"{time.monotonic() - self.started:5.0f} s: {t.pods} pods done, {t.late} late, "
            f"{t.errors} errors, {t.churn_updates} NodeFeature updates",
            file=sys.stderr,
        )

    async def run(self, cluster: Cluster, rss: RssSampler) -> float:
        """Pods on a fixed schedule for ``--duration`` seconds; the seconds it took.

        At most ``--in-flight`` pods are between their filter call and their prioritize
        answer, as a scheduler does not pile up calls without bound: when the extender falls
        behind, pods start late (counted) and the achieved rate shows it, instead of a client
        queue turning into timeouts. Late pods catch up as soon as a slot frees; none starts
        after ``--duration`` (in --smoke, after a minute: there the count is what is tested).
        """
        stop = asyncio.Event()
        churn = asyncio.create_task(self.churn(stop, cluster))
        sampler = asyncio.create_task(rss.run(stop))
        slots = asyncio.Semaphore(self.args.in_flight)
        self.started = time.monotonic()
        total = round(self.args.duration * self.args.rate)
        tasks: set[asyncio.Task[None]] = set()

        async def pod_in_slot(index: int) -> None:
            try:
                await self.one_pod(index)
            finally:
                slots.release()

        for index in range(total):
            due = self.started + index / self.args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            if time.monotonic() - self.started >= self.args.cutoff:
                slots.release()
                break  # bounded in time too: pods that could not start in it are not sent
            if time.monotonic() - due > LATE_S:
                self.tally.late += 1
            if index and index % round(60 * self.args.rate) == 0:
                self.progress()
            task = asyncio.create_task(pod_in_slot(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        elapsed = time.monotonic() - self.started
        stop.set()
        await churn
        await sampler
        for task in tasks:
            task.cancel()
            self.tally.error("a pod's calls did not finish within 60 s of the end")
        return elapsed


class RssSampler:
    """Every ``interval``: the extender's VmRSS, and its CPU time per pod since the last sample
    (a cost per pod that rises over the run is the extender's doing; a latency that rises at a
    steady cost per pod is other work taking the CPU)."""

    def __init__(self, serve: ServeProcess, interval: float, pods_done: Callable[[], int]) -> None:
        self.serve = serve
        self.interval = interval
        self.pods_done = pods_done
        self.samples: list[tuple[float, int]] = []  # (seconds since start, KB)
        self.cpu_per_pod: list[tuple[float, float]] = []  # (seconds since start, CPU ms/pod)

    def _sample(self, start: float, last: list[float]) -> None:
        now = time.monotonic() - start
        self.samples.append((now, self.serve.memory_kb()["VmRSS"]))
        cpu, pods = cpu_seconds(self.serve.process.pid), float(self.pods_done())
        if pods > last[1]:
            self.cpu_per_pod.append((now, (cpu - last[0]) * 1000 / (pods - last[1])))
        last[:] = [cpu, pods]

    async def run(self, stop: asyncio.Event) -> None:
        start = time.monotonic()
        last = [cpu_seconds(self.serve.process.pid), float(self.pods_done())]
        while True:
            self._sample(start, last)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if stop.is_set():
                self._sample(start, last)
                return


# --------------------------------------------------------------------------------------------
# Figures


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def slope_kb_per_min(samples: Sequence[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS over time, or None with fewer than three samples."""
    if len(samples) < 3:
        return None
    xs = [t / 60 for t, _ in samples]
    ys = [float(kb) for _, kb in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def figures(
    args: argparse.Namespace,
    tally: Tally,
    elapsed: float,
    rss: Sequence[tuple[float, int]],
    loads: dict[str, list[float]],
) -> dict[str, Any]:
    after = [(t, kb) for t, kb in rss if t >= args.warmup]
    slope = slope_kb_per_min(after)
    sent = sum(tally.requests.values())
    return {
        "duration_s": args.duration,
        "elapsed_s": round(elapsed, 2),
        "target_pods_per_s": args.rate,
        "achieved_pods_per_s": round(tally.pods / elapsed, 2) if elapsed else 0.0,
        "achieved_requests_per_s": round(sent / elapsed, 2) if elapsed else 0.0,
        "nodes": args.nodes,
        "pods": tally.pods,
        "late_pods": tally.late,
        "in_flight": args.in_flight,
        "memo_size": args.memo_size or "serve's default",
        "requests": dict(tally.requests, total=sent),
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "verdicts": {
            "passed": tally.passed,
            "rejected": tally.rejected,
            "on_churned_nodes": tally.churn_checks,
        },
        "churn": {
            "rate_per_s": args.churn_rate,
            "nodes": round(args.nodes * args.churn_share) if args.churn_share > 0 else 0,
            "updates": tally.churn_updates,
            "update_errors": tally.churn_errors,
        },
        "latency_ms": {
            verb: {
                "count": len(ms),
                "p50": round(percentile(ms, 0.50), 3),
                "p99": round(percentile(ms, 0.99), 3),
                "max": round(max(ms), 3) if ms else 0.0,
            }
            for verb, ms in tally.latency_ms.items()
        },
        "rss": {
            "interval_s": args.rss_interval,
            "warmup_s": args.warmup,
            "first_kb": rss[0][1] if rss else None,
            "last_kb": rss[-1][1] if rss else None,
            "first_after_warmup_kb": after[0][1] if after else None,
            "max_kb": max(kb for _, kb in rss) if rss else None,
            "slope_kb_per_min": round(slope, 1) if slope is not None else None,
            "max_slope_kb_per_min": args.max_rss_slope,
            "samples": [[round(t, 1), kb] for t, kb in rss],
        },
        "load_average": loads,
    }


def table(result: dict[str, Any]) -> str:
    lat, rss, req = result["latency_ms"], result["rss"], result["requests"]
    rows = [
        "| figure | value |",
        "|---|---|",
        f"| duration | {result['elapsed_s']:.0f} s (target {result['duration_s']:g} s) |",
        f"| nodes per filter call | {result['nodes']} |",
        f"| pods | {result['pods']} ({result['achieved_pods_per_s']:.2f}/s, "
        f"target {result['target_pods_per_s']:g}/s; {result['late_pods']} started "
        f"> {LATE_S * 1000:.0f} ms late, at most {result['in_flight']} in flight) |",
        f"| requests sent | {req['total']} (filter {req['filter']}, "
        f"prioritize {req['prioritize']}) |",
        f"| errors (non-200, Error, wrong answer) | {result['errors']} |",
        f"| verdicts checked | {result['verdicts']['passed']} passed, "
        f"{result['verdicts']['rejected']} rejected, "
        f"{result['verdicts']['on_churned_nodes']} on churned nodes |",
        f"| NodeFeature updates | {result['churn']['updates']} "
        f"({result['churn']['update_errors']} failed) on {result['churn']['nodes']} nodes |",
    ]
    for verb, s in lat.items():
        rows.append(
            f"| {verb} latency | p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, "
            f"max {s['max']:.2f} ms ({s['count']} calls) |"
        )
    slope = rss["slope_kb_per_min"]
    rows += [
        f"| RSS first / last | {rss['first_kb'] / 1024:.1f} MB / {rss['last_kb'] / 1024:.1f} MB |",
        f"| RSS slope after {rss['warmup_s']:g} s | "
        + (f"{slope:+.1f} KB/min" if slope is not None else "n/a (too few samples)")
        + f" (limit {rss['max_slope_kb_per_min']:g}) |",
        "| extender CPU per pod (filter + prioritize), first / last minute | "
        f"{result['extender_cpu_ms_per_pod']['first_minute']} ms / "
        f"{result['extender_cpu_ms_per_pod']['last_minute']} ms |",
        "| CPU (cores) during the load | "
        + ", ".join(f"{name} {share:.2f}" for name, share in result["cpu_share"].items())
        + " |",
        f"| load average before / after | {result['load_average']['before']} / "
        f"{result['load_average']['after']} |",
    ]
    return "\n".join(rows)


def plot(result: dict[str, Any], timeline: Sequence[tuple[float, str, float]], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    samples = result["rss"]["samples"]
    ts = [t / 60 for t, _ in samples]
    left.plot(ts, [kb / 1024 for _, kb in samples], marker=".", label="VmRSS")
    slope = result["rss"]["slope_kb_per_min"]
    after = [(t, kb) for t, kb in samples if t >= result["rss"]["warmup_s"]]
    if slope is not None and after:
        mx = sum(t / 60 for t, _ in after) / len(after)
        my = sum(kb for _, kb in after) / len(after)
        xs = [after[0][0] / 60, after[-1][0] / 60]
        left.plot(
            xs,
            [(my + slope * (x - mx)) / 1024 for x in xs],
            linestyle="--",
            label=f"fit after warm-up: {slope:+.1f} KB/min",
        )
    left.set_xlabel("minutes")
    left.set_ylabel("extender RSS (MB)")
    left.set_title("memory")
    left.legend(fontsize=8)
    for verb in ("filter", "prioritize"):
        points = [(t / 60, ms) for t, v, ms in timeline if v == verb]
        right.scatter([p[0] for p in points], [p[1] for p in points], s=3, label=verb, alpha=0.5)
    right.set_yscale("log")
    right.set_xlabel("minutes")
    right.set_ylabel("latency (ms, log; every 5th call)")
    right.set_title(
        f"{result['achieved_pods_per_s']:.1f} pods/s at {result['nodes']} nodes, "
        f"{result['errors']} errors"
    )
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Main


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def soak(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], Tally]:
    fleet = Fleet(args.nodes, len(templates()), args.churn_share)
    images = write_spec_map(workdir)
    loads = {"before": load_average()}
    cluster = Cluster()
    serve: ServeProcess | None = None
    try:
        created = await asyncio.to_thread(cluster.populate, fleet)
        print(f"{args.nodes} Nodes and NodeFeatures created in {created:.1f} s", file=sys.stderr)
        extra = [f"--memo-size={args.memo_size}"] if args.memo_size else []
        serve = start_serve(cluster.kubeconfig, workdir / "map.yaml", extra)
        connector = aiohttp.TCPConnector(limit=args.in_flight + 2)
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await serve.wait_ready(args.nodes, within_s=300)
            reference = await build_reference(session, serve.base, images, fleet)
            history = History({i: fleet.initial_type(i) for i in fleet.churning}, args.lag)
            load = Load(
                args=args,
                session=session,
                base=serve.base,
                images=images,
                fleet=fleet,
                reference=reference,
                history=history,
            )
            rss = RssSampler(serve, args.rss_interval, lambda: load.tally.pods)
            print(
                f"load: {args.rate:g} pods/s for {args.duration:g} s over {args.nodes} nodes",
                file=sys.stderr,
            )
            pids: dict[str, int | None] = {"extender": serve.process.pid, **cluster.pids()}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            own = time.process_time()
            elapsed = await load.run(cluster, rss)
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            cpu["load tool"] = time.process_time() - own
        loads["after"] = load_average()
        result = figures(args, load.tally, elapsed, rss.samples, loads)
        per_pod = [ms for _, ms in rss.cpu_per_pod]
        minute = max(1, round(60 / args.rss_interval))
        result["extender_cpu_ms_per_pod"] = {
            "first_minute": round(statistics.mean(per_pod[:minute]), 2) if per_pod else None,
            "last_minute": round(statistics.mean(per_pod[-minute:]), 2) if per_pod else None,
            "samples": [[round(t, 1), round(ms, 2)] for t, ms in rss.cpu_per_pod],
        }
        result["cpu_share"] = {name: round(v / elapsed, 3) for name, v in cpu.items()}
        result["reference"] = reference.summary()
        if serve.process.poll() is not None:
            load.tally.error(f"serve exited with {serve.process.returncode} during the run")
            result["errors"] = load.tally.errors
        return result, load.tally
    except BaseException:
        if serve is not None:
            print("".join(serve.lines[-30:]), file=sys.stderr)
        raise
    finally:
        if serve is not None:
            code = serve.stop()
            if code != 0:
                print(f"serve exited with {code}", file=sys.stderr)
        cluster.stop()


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=50.0, help="pods per second")
    parser.add_argument("--nodes", type=int, default=1000, help="nodes in every filter call")
    parser.add_argument(
        "--churn-rate", type=float, default=5.0, help="NodeFeature updates per second"
    )
    parser.add_argument(
        "--churn-share", type=float, default=0.1, help="share of the nodes that churn"
    )
    parser.add_argument(
        "--lag",
        type=float,
        default=5.0,
        help="seconds a watch may take to show an update (a state older than that is wrong)",
    )
    parser.add_argument("--rss-interval", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--warmup",
        type=float,
        default=240.0,
        help="seconds before RSS samples count for the slope (the memo fills in ~210 s)",
    )
    parser.add_argument(
        "--max-rss-slope",
        type=float,
        default=512.0,
        help="KB/min after warm-up above which the run fails: 90 bytes kept per request at "
        "100 requests/s; one 1 MB allocator step mid-window reads as ~250 KB/min",
    )
    parser.add_argument(
        "--memo-size",
        type=int,
        default=8192,
        help="serve's --memo-size (0: serve's default, 65,536). Each NodeFeature update adds "
        "memo entries until this bound, and RSS grows with them: 8,192 (twice the 4,000 "
        "entries 1,000 nodes of 4 specs keep warm) is reached within the warm-up",
    )
    parser.add_argument(
        "--in-flight", type=int, default=8, help="pods at most between filter and prioritize"
    )
    parser.add_argument(
        "--min-rate",
        type=float,
        default=0.95,
        help="share of --rate the run must achieve, or it fails (the load was not held)",
    )
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per call")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: 60 nodes, 10 pods/s for 5 s, RSS every second, no rate or slope limit",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    args.cutoff = args.duration
    if args.smoke:
        args.duration, args.rate, args.nodes = 5.0, 10.0, 60
        args.churn_rate, args.churn_share = 10.0, 0.2
        args.rss_interval, args.warmup, args.max_rss_slope = 1.0, 0.0, math.inf
        args.min_rate, args.cutoff = 0.0, 60.0  # no speed is asserted in a test
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result, tally = asyncio.run(soak(args, Path(tmp)))
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print(table(result))
    document = {
        "benchmark": "soak",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "command": "benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "feature_source": "kube-apiserver (NodeFeature watch)",
        **result,
    }
    if math.isinf(document["rss"]["max_slope_kb_per_min"]):
        document["rss"]["max_slope_kb_per_min"] = None  # JSON has no infinity
    write_results(args.out, "soak", document, lambda path: plot(result, tally.timeline, path))
    failures = []
    if result["errors"]:
        failures.append(f"{result['errors']} errors: {result['error_samples'][:3]}")
    if result["achieved_pods_per_s"] < args.min_rate * args.rate:
        failures.append(
            f"{result['achieved_pods_per_s']:.2f} pods/s achieved, below "
            f"{args.min_rate:g} x {args.rate:g}/s"
        )
    if result["churn"]["update_errors"]:
        failures.append(f"{result['churn']['update_errors']} NodeFeature updates failed")
    slope = result["rss"]["slope_kb_per_min"]
    if slope is not None and slope > args.max_rss_slope:
        failures.append(f"RSS grows {slope:.1f} KB/min (limit {args.max_rss_slope:g})")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
