"""``make demo``: the real thing, locally, in about a minute.

``python -m devcluster.demo [--keep] [--png FILE]``:

1. builds what is missing (kube-apiserver, kube-scheduler, etcd, kubectl, a registry, oras,
   NFD's tools) from Go modules into the cache, with visible progress;
2. starts etcd, kube-apiserver and an OCI registry on loopback ports;
3. pushes the sample images and attaches ``examples/specs/*.yaml`` to them with the real
   ``oras attach`` (one image has no artifact);
4. creates the sample nodes with their NFD NodeFeatures (``examples/nodes/all-nodes.yaml``:
   five hardware types and one real nfd-worker output);
5. starts ``image-compat-extender serve`` and a kube-scheduler running the shipped profile
   (``scheduler-config/image-compat-scheduler.yaml``) that calls it;
6. submits pods that tell the story (preferred vs fallback, only-one-type, no artifact,
   multi-container, incompatible), waits until each is bound or refused;
7. prints the placement table and writes a PNG of pods x nodes (compatible, score, chosen).

Everything stops at the end; ``--keep`` keeps it running (until Ctrl-C) and prints the
``KUBECONFIG`` line to look at it with kubectl.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from devcluster import build, image, nfd, oci, registries
from devcluster.controlplane import ControlPlane, ControlPlaneError
from devcluster.registries import Registry, start_oci_registry
from devcluster.stack import (
    Extender,
    create_pod,
    events,
    get_pod,
    pod,
    scheduler_config,
)

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "examples" / "specs"
NODES = ROOT / "examples" / "nodes" / "all-nodes.yaml"
SCHEDULER = "image-compat-scheduler"
NEEDED_BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kubectl", "oci-registry", "oras")
DEFAULT_PNG = ROOT / "build" / "demo" / "placements.png"
NODE_CPU = "4"
WAIT_S = 60.0

# Sample images: name:tag in the registry → the example spec attached to it (None: no artifact).
IMAGES: dict[str, str | None] = {
    "inference-server:2.1": "preferred-fallback.yaml",
    "cuda-trainer:12.4": "cuda-app.yaml",
    "dpdk-gateway:23.11": "dpdk-app.yaml",
    "web-frontend:1.0": None,
}

# Short hardware names for the table (the first comment line of each example node says more).
NODE_TYPES = {
    "dpdk-spr-01": "Xeon SPR + E810, vfio",
    "mlx-genoa-01": "EPYC Genoa + CX-6 Dx, vfio",
    "gpu-h100-01": "Xeon SPR + 8x H100",
    "vm-focal-01": "KVM VM, Haswell, 5.4",
    "vm-rhel9-01": "RHEL 9 VM, x86-64-v2",
    "sandbox-vm-01": "real nfd-worker output",
}


@dataclass
class DemoPod:
    """One pod of the story: its containers (name → image key) and what it shows."""

    name: str
    containers: dict[str, str]
    story: str
    cpu: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    sequential: bool = False  # wait for it to be bound before the next pod is created


STORY: list[DemoPod] = [
    DemoPod("inference-1", {"server": "inference-server:2.1"}, "preferred", "3", sequential=True),
    DemoPod("inference-2", {"server": "inference-server:2.1"}, "preferred", "3", sequential=True),
    DemoPod("inference-3", {"server": "inference-server:2.1"}, "fallback", "3", sequential=True),
    DemoPod(
        "cuda-train",
        {"trainer": "cuda-trainer:12.4", "exporter": "web-frontend:1.0"},
        "one node type",
    ),
    DemoPod("dpdk-gw", {"gateway": "dpdk-gateway:23.11"}, "one of two NICs"),
    DemoPod("web", {"web": "web-frontend:1.0"}, "no artifact"),
    DemoPod(
        "gpu-dataplane",
        {"trainer": "cuda-trainer:12.4", "gateway": "dpdk-gateway:23.11"},
        "incompatible",
    ),
]


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
    """Numbered steps with elapsed time, on stderr (rich when available)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.step = 0
        try:
            from rich.console import Console

            self.console: Any = Console(stderr=True, highlight=False, width=120, soft_wrap=True)
        except ImportError:  # the demo extra is missing: plain lines still work
            self.console = None

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __call__(self, text: str) -> None:
        self.step += 1
        line = f"[{self.elapsed():5.1f}s] {self.step:>2}. {text}"
        if self.console is not None:
            self.console.print(f"[dim]{line[:9]}[/dim]{line[9:]}")
        else:
            print(line, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"           [dim]{text}[/dim]")
        else:
            print(f"           {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Placement:
    pod: DemoPod
    node: str | None
    message: str  # FailedScheduling message for a pending pod
    images: dict[str, str]  # container → image reference
    verdicts: dict[str, tuple[bool, int, str]]  # node → (compatible, score, reason)
    full: set[str] = field(default_factory=set)  # nodes without room for it when it came


def _registry_args(registry: Registry, workdir: Path) -> list[str]:
    """serve's flags to read specs from the demo registry (plain HTTP on loopback)."""
    config = workdir / "registries.yaml"
    config.write_text(yaml.safe_dump({"registries": {registry.host: {"plainHTTP": True}}}))
    return [f"--registry-config={config}", "--registry-allow-loopback"]


def _nodefeatures() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(NODES.read_text()) if doc]


def _wait_outcome(cluster: ControlPlane, namespace: str, name: str) -> tuple[str | None, str]:
    """(node, "") once bound, or (None, FailedScheduling message) once refused."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        node = (get_pod(cluster, namespace, name).get("spec") or {}).get("nodeName")
        if node:
            return str(node), ""
        failed = [e for e in events(cluster, namespace, name) if e["reason"] == "FailedScheduling"]
        if failed and "image-compat" in failed[-1].get("message", ""):
            return None, str(failed[-1]["message"])
        time.sleep(0.2)
    raise ControlPlaneError(f"pod {name}: neither bound nor refused within {WAIT_S:.0f}s")


def _verdicts(
    extender: Extender, manifest: Mapping[str, Any], nodes: Sequence[str]
) -> dict[str, tuple[bool, int, str]]:
    """The extender's own filter and prioritize answers for the pod over every node."""
    obj = {**manifest, "metadata": {**manifest["metadata"], "namespace": "demo", "uid": "demo"}}
    args = {"Pod": obj, "Nodes": None, "NodeNames": list(nodes)}
    answer = extender.post("filter", args)
    passing = list(answer.get("NodeNames") or [])
    failed = {
        **(answer.get("FailedNodes") or {}),
        **(answer.get("FailedAndUnresolvableNodes") or {}),
    }
    scores: dict[str, int] = {}
    if passing:
        ranked = extender.post("prioritize", {**args, "NodeNames": passing})
        scores = {h["Host"]: int(h["Score"]) for h in ranked}
    out: dict[str, tuple[bool, int, str]] = {}
    for node in nodes:
        if node in passing:
            out[node] = (True, scores.get(node, 0), "")
        else:
            out[node] = (False, 0, failed.get(node, answer.get("Error") or "rejected"))
    return out


def _chosen_reason(placement: Placement, specs: Mapping[str, str | None], features: Any) -> str:
    """Why the chosen node: the set each image matched there (or that it had no spec)."""
    from extender.nfd.rules import evaluate, load_spec

    assert placement.node is not None
    parts = []
    for container, key in placement.pod.containers.items():
        spec = specs[key]
        if spec is None:
            label = "no artifact (neutral)"
            parts.append(f"{container}: {label}" if len(placement.pod.containers) > 1 else label)
            continue
        verdict = evaluate(load_spec((SPECS / spec).read_bytes()), features[placement.node])
        matched = [s for s in verdict.sets if s.matched]
        best = max(matched, key=lambda s: s.weight) if matched else None
        label = (best.tag or best.description) if best else "?"
        parts.append(f"{container}: {label}" if len(placement.pod.containers) > 1 else label)
    return "; ".join(parts)


def _short_message(message: str, refs: Mapping[str, str]) -> str:
    # "0/6 nodes are available: 1 image-compat: ..., 5 image-compat: .... no new claims to
    # deallocate, preemption: ...": keep the reasons, with images by their short names.
    for key, ref in refs.items():
        message = message.replace(ref, key)
    return message.split(". ", 1)[0].strip()


def run_demo(
    progress: Progress,
    workdir: Path,
    png: Path | None,
    keep: bool,
    built: image.Built | None = None,
) -> list[Placement]:
    """The demo; with ``built``, the extender runs from that container image."""
    progress("building what is missing (Go modules into the cache; a no-op when warm)")
    paths = build.build_all(list(NEEDED_BINARIES))
    progress.note(f"{', '.join(NEEDED_BINARIES)} in {next(iter(paths.values())).parent}")

    with contextlib.ExitStack() as stack:
        progress("starting etcd and kube-apiserver")
        cluster = ControlPlane(workdir=workdir / "cluster", cleanup=False)
        cluster.start(scheduler_config=None)
        stack.callback(cluster.stop)
        progress.note(f"API server {cluster.server}; logs in {cluster.log_dir}")

        progress("installing NFD's CRDs (from its Go module)")
        nfd.install_crds(cluster)

        progress("starting an OCI registry (referrers API on)")
        registry = start_oci_registry(workdir / "registry", referrers=True, quiet=True)
        stack.callback(registry.stop)

        progress("pushing sample images; attaching examples/specs with oras")
        refs: dict[str, str] = {}
        for key, spec in IMAGES.items():
            repo, tag = key.split(":")
            image = oci.push_image(registry.endpoint, f"demo/{repo}", tag)
            refs[key] = f"{registry.host}/demo/{repo}:{tag}"
            if spec is not None:
                art = oci.attach_spec(
                    registry.endpoint,
                    f"demo/{repo}",
                    image.digest,
                    SPECS / spec,
                    created=datetime.now(UTC),
                )
                progress.note(f"{refs[key]}  <-  {spec} ({art.digest[:19]})")
            else:
                progress.note(f"{refs[key]}  (no artifact)")

        progress("creating the sample nodes and their NodeFeatures")
        docs = _nodefeatures()
        nodes = [doc["metadata"]["name"] for doc in docs]
        for doc in docs:
            name = doc["metadata"]["name"]
            cluster.create_node(name, cpu=NODE_CPU, labels={"demo/type": name.rsplit("-", 1)[0]})
            nfd.publish(cluster, doc)
        progress.note(", ".join(nodes))

        where = f"from the image {built.ref}" if built else "from this checkout"
        progress(f"starting image-compat-extender serve ({where})")
        extender = Extender(cluster, args=_registry_args(registry, workdir), built=built)
        stack.callback(extender.close)
        extender.start()

        progress(f"starting kube-scheduler with {Path('scheduler-config') / SCHEDULER}.yaml")
        cluster.start_scheduler(scheduler_config(extender.url), name=SCHEDULER)

        progress("submitting the pods")
        namespace = cluster.create_namespace("demo")
        placements: list[Placement] = []
        pending: list[tuple[DemoPod, dict[str, Any]]] = []
        for item in STORY:
            images = {c: refs[k] for c, k in item.containers.items()}
            manifest = pod(item.name, images, cpu=item.cpu, annotations=item.annotations)
            create_pod(cluster, namespace, manifest)
            pending.append((item, manifest))
            if item.sequential:
                _wait_outcome(cluster, namespace, item.name)
        progress("waiting for every pod to be bound or refused")
        features = _features()
        used: dict[str, float] = dict.fromkeys(nodes, 0.0)
        for item, manifest in pending:
            node, message = _wait_outcome(cluster, namespace, item.name)
            images = {c: refs[k] for c, k in item.containers.items()}
            placement = Placement(item, node, message, images, _verdicts(extender, manifest, nodes))
            if item.cpu:  # which nodes the in-tree resource filter had already ruled out
                want = float(item.cpu)
                placement.full = {n for n in nodes if used[n] + want > float(NODE_CPU)}
                if node:
                    used[node] += want
            placements.append(placement)
        _print_table(placements, IMAGES, features)
        if png is not None:
            progress(f"writing {png}")
            write_png(placements, nodes, png)
        progress.note(f"done in {progress.elapsed():.1f}s")
        if keep:
            _keep_running(cluster)
    return placements


def _features() -> Any:
    from extender.nodes.model import load_node_features

    return load_node_features(NODES.read_text())


def _keep_running(cluster: ControlPlane) -> None:
    env = cluster.env()
    print(
        "\nThe cluster stays up until Ctrl-C. In another shell:\n"
        f"  export KUBECONFIG={env['KUBECONFIG']}\n"
        f'  export PATH="{build.bin_dir()}:$PATH"\n'
        "  kubectl get pods -n demo -o wide\n"
        "  kubectl get events -n demo --field-selector reason=FailedScheduling\n"
        "  kubectl get nodefeatures -n node-feature-discovery\n"
        f"Logs: {cluster.log_dir}",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print(f"stopping; logs stay in {cluster.log_dir}", flush=True)


# ---------------------------------------------------------------------------------------------
# Output


def _print_table(
    placements: Sequence[Placement], specs: Mapping[str, str | None], features: Any
) -> None:
    rows = []
    for p in placements:
        image = "\n".join(p.pod.containers.values())
        if p.node:
            score = p.verdicts[p.node][1]
            reason = _chosen_reason(p, specs, features)
            better = [n for n, (ok, s, _) in p.verdicts.items() if ok and s > score]
            if better and set(better) <= p.full:
                reason += " (better nodes are full)"
            node_type = NODE_TYPES.get(p.node, "")
            rows.append((p.pod.name, image, p.node, node_type, str(score), reason))
        else:
            reason = _short_message(
                p.message, {p.pod.containers[c]: r for c, r in p.images.items()}
            )
            rows.append((p.pod.name, image, "Pending", "-", "-", reason))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for row in rows:
            print(" | ".join(row))
        return
    table = Table(title="Pods placed by kube-scheduler + image-compat-extender", show_lines=False)
    for column in ("pod", "image", "chosen node", "node type", "score"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    for row in rows:
        style = "yellow" if row[2] == "Pending" else None
        table.add_row(*row, style=style)
    console = Console()
    if not console.is_terminal:  # piped or logged: wide enough for one line per row
        console = Console(width=170)
    console.print(table)


def write_png(placements: Sequence[Placement], nodes: Sequence[str], path: Path) -> Path:
    """Pods x nodes: grey = not compatible, green = compatible (darker = higher score,
    the number is the extender's score 0..10), a black frame = the node the pod was bound to."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.patches import Patch, Rectangle

    greens = LinearSegmentedColormap.from_list("fit", ["#d9f0d3", "#1b7837"])
    fig, ax = plt.subplots(figsize=(1.6 * len(nodes) + 3, 0.75 * len(placements) + 2))
    for row, p in enumerate(placements):
        for col, node in enumerate(nodes):
            compatible, score, _reason = p.verdicts[node]
            color = greens(score / 10) if compatible else "#e0e0e0"
            ax.add_patch(Rectangle((col, row), 1, 1, facecolor=color, edgecolor="white", lw=2))
            if node in p.full:
                ax.add_patch(
                    Rectangle((col, row), 1, 1, fill=False, hatch="///", ec="#888888", lw=0)
                )
            text = str(score) if compatible else "x"
            if node in p.full:
                text += "\nfull"
            ax.text(
                col + 0.5,
                row + 0.5,
                text,
                ha="center",
                va="center",
                fontsize=11,
                color="white" if compatible and score >= 6 else "#555555",
            )
            if p.node == node:
                ax.add_patch(
                    Rectangle((col + 0.04, row + 0.04), 0.92, 0.92, fill=False, lw=3, ec="black")
                )
    ax.set_xlim(0, len(nodes))
    ax.set_ylim(len(placements), 0)
    ax.set_xticks([i + 0.5 for i in range(len(nodes))])
    ax.set_xticklabels([f"{n}\n{NODE_TYPES.get(n, '')}" for n in nodes], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([i + 0.5 for i in range(len(placements))])
    labels = [
        f"{p.pod.name}{'' if p.node else '  (Pending)'}\n{', '.join(p.pod.containers.values())}"
        for p in placements
    ]
    ax.set_yticklabels(labels, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.legend(
        handles=[
            Patch(facecolor="#1b7837", label="compatible (number: score 0..10)"),
            Patch(facecolor="#e0e0e0", label="not compatible (filtered out)"),
            Patch(facecolor="white", edgecolor="black", lw=2, label="node the pod was bound to"),
            Patch(facecolor="white", edgecolor="#888888", hatch="///", label="no CPU left for it"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    ax.set_title(
        "image-compat-extender: pods x nodes, as the real kube-scheduler placed them",
        fontsize=11,
        pad=36,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="image-compat-demo-"))
    try:
        yield path
    except BaseException:
        print(f"demo: logs kept in {path}", file=sys.stderr)
        raise
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.demo", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--keep", action="store_true", help="keep everything up until Ctrl-C")
    parser.add_argument(
        "--png", type=Path, default=DEFAULT_PNG, help=f"where to write the figure ({DEFAULT_PNG})"
    )
    parser.add_argument("--no-png", action="store_true", help="skip the figure")
    parser.add_argument(
        "--image",
        action="store_true",
        help="run the extender from the container image (`make image`'s, built when missing)",
    )
    args = parser.parse_args(argv)
    progress = Progress()
    try:
        built = None
        if args.image:
            progress("building the container image (cached by its build context)")
            built = image.build_image()
            progress.note(f"{built.ref} ({built.engine.name}, {built.seconds:.1f}s)")
        with _workdir(args.keep) as workdir:
            run_demo(progress, workdir, None if args.no_png else args.png, args.keep, built)
    except (
        build.BuildError,
        ControlPlaneError,
        oci.OciError,
        oci.OrasError,
        image.ImageError,
        registries.InstallError,
    ) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
