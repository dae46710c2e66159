"""Rule-engine benchmark: the example specs over the example nodes, cold and warm.

* **cold**: every evaluation parses and compiles the spec first (what a spec costs the first
  time the extender sees its digest);
* **warm**: the spec is compiled once and only evaluated (every later pod with that image).

Evaluations per second and microseconds per evaluation and per compatibility set are the mean
over all example nodes, best of several repeats. Prints a table, writes
``benchmarks/results/rules.json`` and ``benchmarks/results/rules.png``. No timing is asserted
anywhere: numbers depend on the machine.

    .venv/bin/python benchmarks/rules_bench.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_output import pyplot, write_results

from extender.nfd.rules import CompiledSpec, evaluate, load_spec
from extender.nodes.model import NodeFeatures, load_node_features

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "examples" / "specs"
NODES = ROOT / "examples" / "nodes" / "all-nodes.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def best_time(work: Callable[[], object], *, budget: float, repeats: int) -> float:
    """Seconds per call of ``work``: calibrated loops, the best of ``repeats``."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            work()
        elapsed = time.perf_counter() - start
        if elapsed >= budget / repeats / 4 or loops >= 1 << 20:
            break
        loops *= 2
    best = elapsed / loops
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(loops):
            work()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def bench_spec(
    text: bytes, nodes: Sequence[NodeFeatures], *, budget: float, repeats: int
) -> dict[str, Any]:
    compiled: CompiledSpec = load_spec(text)
    sets = len(compiled.sets)
    rules = sum(len(s.rules) for s in compiled.sets)

    def cold() -> None:
        for node in nodes:
            evaluate(load_spec(text), node)

    def warm() -> None:
        for node in nodes:
            evaluate(compiled, node)

    out: dict[str, Any] = {"sets": sets, "rules": rules}
    for name, work in (("cold", cold), ("warm", warm)):
        per_evaluation = best_time(work, budget=budget, repeats=repeats) / len(nodes)
        out[name] = {
            "evaluations_per_s": round(1 / per_evaluation),
            "us_per_evaluation": round(per_evaluation * 1e6, 2),
            "us_per_set": round(per_evaluation * 1e6 / max(sets, 1), 2),
        }
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    header = (
        f"{'spec':<20} {'sets':>4} {'rules':>5}  {'cold evals/s':>12} {'cold us/eval':>12}"
        f"  {'warm evals/s':>12} {'warm us/eval':>12} {'warm us/set':>11}"
    )
    lines = [header, "-" * len(header)]
    for spec, r in results.items():
        cold, warm = r["cold"], r["warm"]
        lines.append(
            f"{spec:<20} {r['sets']:>4} {r['rules']:>5}  {cold['evaluations_per_s']:>12,}"
            f" {cold['us_per_evaluation']:>12.1f}  {warm['evaluations_per_s']:>12,}"
            f" {warm['us_per_evaluation']:>12.1f} {warm['us_per_set']:>11.1f}"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    specs = list(results)
    positions = range(len(specs))
    figure, axis = plt.subplots(figsize=(8, 0.6 * len(specs) + 2.2))
    height = 0.38
    cold = [results[s]["cold"]["us_per_evaluation"] for s in specs]
    warm = [results[s]["warm"]["us_per_evaluation"] for s in specs]
    axis.barh([p + height / 2 for p in positions], cold, height, label="cold (parse + compile)")
    axis.barh([p - height / 2 for p in positions], warm, height, label="warm (compiled once)")
    axis.set_yticks(list(positions), specs)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("µs per evaluation (one spec on one node; log scale)")
    axis.set_title("image-compat-extender rule engine: example specs over example nodes")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    for p, value in zip(positions, warm, strict=True):
        axis.annotate(f"{value:.0f} µs", (value, p - height / 2), xytext=(3, -3),
                      textcoords="offset points", fontsize=8)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    budget, repeats = (0.02, 2) if args.quick else (1.0, 5)

    nodes = list(load_node_features(NODES.read_bytes()).values())
    results = {}
    for path in sorted(SPECS.glob("*.yaml")):
        results[path.stem] = bench_spec(path.read_bytes(), nodes, budget=budget, repeats=repeats)
    print(f"{len(results)} specs x {len(nodes)} nodes, Python {platform.python_version()}\n")
    print(table(results))

    document = {
        "benchmark": "rules",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
        "nodes": [n.node for n in nodes],
        "results": results,
    }
    write_results(args.out, "rules", document, lambda path: plot(results, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
