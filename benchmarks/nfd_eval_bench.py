"""Our rule engine beside NFD's own Go evaluator, each timed inside its own process.

Two measurements:

* **per set**: over a sample of the conformance generator's cases (the grid, then random
  scenarios; tests/nfd/conformance) and the example fleet (every spec of ``examples/specs`` on
  every node of ``examples/nodes``), the cost of evaluating one compatibility set. Ours:
  the spec compiled once (``load_spec``), then ``evaluate`` timed. NFD's: ``nfd-eval-bench``
  (devcluster/go-nfdbench) reads each spec once, then times ``ExecuteGroupRule`` over every
  set. Each case reports the median of its repeats divided by its sets; the table gives the
  median and p99 over cases. Cases either side rejects or fails on are left out: they time an
  error path, not an evaluator.
* **a new spec over 5,000 nodes of 50 types**: ``Policy.filter`` over 5,000 node names for
  a spec it has not seen (nothing about it memoised; the spec is fetched and compiled inside
  the call), once per distinct new spec, against NFD evaluating that spec on every one of the
  5,000 nodes (its per-type cost, measured, times the nodes of that type). Targets: ours at
  least 10x faster per node than NFD on the cheapest node type, and p99 <= 20 ms.

Prints a table, writes ``benchmarks/results/nfd_eval.json`` and ``nfd_eval.png``. No timing is
asserted anywhere: numbers depend on the machine.

    .venv/bin/python benchmarks/nfd_eval_bench.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_output import pyplot, write_results
from server_bench import CLUSTER, TYPES, cluster, hardware_types, node_name, pod

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # devcluster and tests are the repository's, not installed

from devcluster import build  # noqa: E402
from extender.artifacts.spec_map import SpecMapSource  # noqa: E402
from extender.nfd.rules import CompiledSpec, evaluate, load_spec  # noqa: E402
from extender.nfd.spec import SpecError  # noqa: E402
from extender.nodes.model import NodeFeatures, load_node_features  # noqa: E402
from extender.nodes.store import FeatureStore  # noqa: E402
from extender.policy.decide import Policy  # noqa: E402
from extender.server import protocol  # noqa: E402
from extender.server.config import Settings  # noqa: E402
from tests.nfd.conformance.differential import node_features  # noqa: E402
from tests.nfd.conformance.suite import DEFAULT_SEED, build_cases  # noqa: E402
from tests.nfd.conformance.yamltext import render  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SPECS = ROOT / "examples" / "specs"
NODES = ROOT / "examples" / "nodes" / "all-nodes.yaml"

SPEED_UP_TARGET = 10.0
P99_TARGET_MS = 20.0


@dataclass(frozen=True)
class BenchCase:
    """One spec on one node's features, as both evaluators see it."""

    source: str  # "conformance" or "fleet"
    spec: str
    ours: NodeFeatures
    nfd: Mapping[str, Any]  # NodeFeature spec.features JSON
    tags: tuple[str, ...] | None


def nfd_features(node: NodeFeatures) -> dict[str, Any]:
    """NodeFeature ``spec.features`` JSON of one of our NodeFeatures."""
    return {
        "flags": {
            k: {"elements": None if v is None else {n: {} for n in v}}
            for k, v in node.flags.items()
        },
        "attributes": {
            k: {"elements": None if v is None else dict(v)} for k, v in node.attributes.items()
        },
        "instances": {
            k: {"elements": [{"attributes": dict(i)} for i in v]} for k, v in node.instances.items()
        },
    }


def conformance_cases(count: int, seed: int) -> list[BenchCase]:
    """An even sample of ``count`` from the conformance suite's default cases (grid first)."""
    cases = build_cases(max(count * 4, 2000), seed)
    picked = random.Random(seed).sample(cases, min(count, len(cases)))
    return [
        BenchCase("conformance", render(c.doc), node_features(c.node), c.node.to_nfd(), c.tags)
        for c in picked
    ]


def fleet_cases() -> list[BenchCase]:
    nodes = list(load_node_features(NODES.read_bytes()).values())
    return [
        BenchCase("fleet", path.read_text(), node, nfd_features(node), None)
        for path in sorted(SPECS.glob("*.yaml"))
        for node in nodes
    ]


def ours_ns_per_set(case: BenchCase, repeats: int) -> float | None:
    """Median ns per set of ``evaluate`` on the case, or None when we reject or fail it."""
    try:
        compiled: CompiledSpec = load_spec(case.spec)
        verdict = evaluate(compiled, case.ours, tags=case.tags)
    except (SpecError, ValueError):
        return None
    if not verdict.sets or verdict.error:
        return None
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        evaluate(compiled, case.ours, tags=case.tags)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / len(verdict.sets)


def nfd_ns_per_set(
    payloads: Iterable[Mapping[str, Any]], repeats: int
) -> list[tuple[int, float | None]]:
    """(sets, median ns per set) per payload from nfd-eval-bench; None where NFD failed."""
    lines = "".join(json.dumps(p) + "\n" for p in payloads)
    done = subprocess.run(
        [str(build.binary("nfd-eval-bench")), f"-k={repeats}"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    out = []
    for line in done.stdout.splitlines():
        r = json.loads(line)
        ok = not r["error"] and r["sets"] > 0
        out.append((r["sets"], r["nsPerSet"] if ok else None))
    return out


def quantiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "min": ordered[0],
        "p50": pick(0.5),
        "p99": pick(0.99),
        "max": ordered[-1],
    }


def per_set(cases: Sequence[BenchCase], repeats: int) -> dict[str, Any]:
    nfd = nfd_ns_per_set(
        ({"id": i, "spec": c.spec, "features": c.nfd, "tags": c.tags} for i, c in enumerate(cases)),
        repeats,
    )
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    skipped = 0
    for case, (_, nfd_ns) in zip(cases, nfd, strict=True):
        our_ns = ours_ns_per_set(case, repeats)
        if our_ns is None or nfd_ns is None:
            skipped += 1
            continue
        ours.append(our_ns)
        theirs.append(nfd_ns)
        ratios.append(our_ns / nfd_ns)
    return {
        "cases": len(cases),
        "timed": len(ours),
        "skipped_error_or_rejected": skipped,
        "ours_ns_per_set": quantiles(ours),
        "nfd_ns_per_set": quantiles(theirs),
        "ours_over_nfd": quantiles(ratios),
    }


# --------------------------------------------------------------------------------------------
# A new spec over 5,000 nodes of 50 types


def new_specs(count: int) -> list[tuple[str, str]]:
    """(image, spec text) for ``count`` distinct specs: the examples, each description changed
    so that every one has a digest of its own."""
    bases = [p.read_text() for p in sorted(SPECS.glob("*.yaml"))]
    out = []
    for index in range(count):
        text = bases[index % len(bases)]
        changed = text.replace('description: "', f'description: "new-{index}: ', 1)
        assert changed != text
        out.append((f"registry.example/new-{index}:1", changed))
    return out


def memo_path(count: int, repeats: int) -> dict[str, Any]:
    warm_up, *specs = new_specs(count + 1)
    types = hardware_types()
    with tempfile.TemporaryDirectory(prefix="nfd-eval-bench-") as tmp:
        directory = Path(tmp)
        lines = []
        for index, (image, text) in enumerate([warm_up, *specs]):
            (directory / f"new-{index}.yaml").write_text(text)
            lines.append(f"- image: '{image}'\n  spec: new-{index}.yaml\n")
        (directory / "map.yaml").write_text("".join(lines))
        store = FeatureStore()
        store.add_source("bench")
        store.replace("bench", cluster())
        policy = Policy(Settings().policy_config(), store, SpecMapSource(directory / "map.yaml"))
        names = [node_name(i) for i in range(CLUSTER)]
        loop = asyncio.new_event_loop()
        ours_ms = []
        try:
            # The first call also builds what any spec shares (a running server has it):
            # it is a warm-up, not a new spec's cost.
            for image, _ in [warm_up, *specs]:
                body = json.dumps({"Pod": pod(image), "Nodes": None, "NodeNames": names})
                request = protocol.decode_extender_args(body.encode())
                start = time.perf_counter()
                decision = loop.run_until_complete(
                    policy.filter(request.pod, request.names, request.platforms)
                )
                ours_ms.append((time.perf_counter() - start) * 1000)
                assert decision.passing or decision.unresolvable
            del ours_ms[0]
        finally:
            loop.close()

    # NFD: every spec on every type, then each type's cost times its nodes.
    nfd = nfd_ns_per_set(
        (
            {"id": [s, t], "spec": text, "features": nfd_features(node), "tags": None}
            for s, (_, text) in enumerate(specs)
            for t, node in enumerate(types)
        ),
        repeats,
    )
    nodes_of_type = [len(range(t, CLUSTER, TYPES)) for t in range(TYPES)]
    nfd_ms = []
    cheapest_node_us = []
    failed_types = 0
    for s in range(len(specs)):
        per_type = nfd[s * TYPES : (s + 1) * TYPES]
        # A type NFD fails on costs it an error path: left out, as in the per-set figures.
        costs_ns = [sets * ns if ns is not None else None for sets, ns in per_type]
        timed = [(c, n) for c, n in zip(costs_ns, nodes_of_type, strict=True) if c is not None]
        failed_types += len(costs_ns) - len(timed)
        nfd_ms.append(sum(c * n for c, n in timed) / 1e6)
        cheapest_node_us.append(min(c for c, _ in timed) / 1000)
    ours_node_us = [ms * 1000 / CLUSTER for ms in ours_ms]
    speed_ups = [n / o for n, o in zip(nfd_ms, ours_ms, strict=True)]
    worst_node = [c / o for c, o in zip(cheapest_node_us, ours_node_us, strict=True)]
    q = quantiles(ours_ms)
    return {
        "nodes": CLUSTER,
        "types": TYPES,
        "new_specs": len(specs),
        "nfd_failed_spec_types": failed_types,
        "ours_filter_ms": q,
        "nfd_all_nodes_ms": quantiles(nfd_ms),
        "ours_us_per_node": quantiles(ours_node_us),
        "nfd_us_per_node_cheapest_type": quantiles(cheapest_node_us),
        "speed_up": quantiles(speed_ups),
        "speed_up_on_cheapest_node": quantiles(worst_node),
        "targets": {
            "speed_up_per_node": SPEED_UP_TARGET,
            "p99_ms": P99_TARGET_MS,
            "speed_up_met": min(worst_node) >= SPEED_UP_TARGET,
            "p99_met": q["p99"] <= P99_TARGET_MS,
        },
    }


# --------------------------------------------------------------------------------------------
# Output


def table(per: Mapping[str, Mapping[str, Any]], memo: Mapping[str, Any]) -> str:
    lines = [
        f"{'cases':<12} {'timed':>6} {'ours ns/set p50':>16} {'p99':>9} "
        f"{'NFD ns/set p50':>15} {'p99':>9} {'ours/NFD p50':>13} {'p99':>7}",
    ]
    for name, r in per.items():
        o, n, x = r["ours_ns_per_set"], r["nfd_ns_per_set"], r["ours_over_nfd"]
        lines.append(
            f"{name:<12} {r['timed']:>6} {o['p50']:>16.0f} {o['p99']:>9.0f} "
            f"{n['p50']:>15.0f} {n['p99']:>9.0f} {x['p50']:>13.2f} {x['p99']:>7.2f}"
        )
    o, n, t = memo["ours_filter_ms"], memo["nfd_all_nodes_ms"], memo["targets"]
    lines += [
        "",
        f"a new spec over {memo['nodes']:,} nodes of {memo['types']} types "
        f"({memo['new_specs']} new specs):",
        f"  ours, Policy.filter (cold memo): p50 {o['p50']:.2f} ms, p99 {o['p99']:.2f} ms "
        f"(target p99 <= {t['p99_ms']:g} ms: {'met' if t['p99_met'] else 'MISSED'})",
        f"  NFD, every node evaluated:       p50 {n['p50']:.2f} ms, p99 {n['p99']:.2f} ms",
        f"  speed-up p50 {memo['speed_up']['p50']:.1f}x; per node against NFD's cheapest type: "
        f"min {memo['speed_up_on_cheapest_node']['min']:.1f}x "
        f"(target >= {t['speed_up_per_node']:g}x: {'met' if t['speed_up_met'] else 'MISSED'})",
    ]
    return "\n".join(lines)


def plot(per: Mapping[str, Mapping[str, Any]], memo: Mapping[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(per)
    width = 0.38
    xs = range(len(names))
    for offset, who, key in (
        (-width / 2, "ours", "ours_ns_per_set"),
        (width / 2, "NFD", "nfd_ns_per_set"),
    ):
        p50 = [per[n][key]["p50"] / 1000 for n in names]
        p99 = [per[n][key]["p99"] / 1000 for n in names]
        left.bar([x + offset for x in xs], p50, width, label=f"{who} p50")
        left.scatter([x + offset for x in xs], p99, marker="_", s=200, color="black")
    left.set_xticks(list(xs), names)
    left.set_ylabel("µs per compatibility set (bars p50, dash p99)")
    left.set_title("Per-set evaluation cost, in-process")
    left.legend()
    labels = ["ours: Policy.filter\n(new spec)", "NFD: every node"]
    p50 = [memo["ours_filter_ms"]["p50"], memo["nfd_all_nodes_ms"]["p50"]]
    p99 = [memo["ours_filter_ms"]["p99"], memo["nfd_all_nodes_ms"]["p99"]]
    right.bar(labels, p50, color=["tab:blue", "tab:orange"])
    right.scatter(labels, p99, marker="_", s=400, color="black")
    right.axhline(P99_TARGET_MS, linestyle="--", color="grey", label="p99 target")
    right.set_ylabel("ms (bar p50, dash p99)")
    right.set_title(f"A new spec over {memo['nodes']:,} nodes of {memo['types']} types")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--cases", type=int, help="conformance cases to sample (default 400)")
    args = parser.parse_args(argv)
    cases = args.cases or (30 if args.quick else 400)
    repeats = 5 if args.quick else 101
    specs = 3 if args.quick else 30

    per = {
        "conformance": per_set(conformance_cases(cases, DEFAULT_SEED), repeats),
        "fleet": per_set(fleet_cases(), repeats),
    }
    memo = memo_path(specs, repeats)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    print(table(per, memo))

    document = {
        "benchmark": "nfd_eval",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "quick": args.quick,
        "repeats": repeats,
        "per_set": per,
        "new_spec": memo,
    }
    write_results(args.out, "nfd_eval", document, lambda path: plot(per, memo, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
