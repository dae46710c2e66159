"""Smoke tests of benchmarks/: each script runs briefly and writes its table, JSON and plot.

No timing is asserted: numbers depend on the machine. What is asserted is what a benchmark
must produce and the counts that do not depend on speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from extender.nodes.model import load_node_features

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "examples" / "specs"


def run_benchmark(script: str, *args: str, out: Path, timeout: float = 300) -> str:
    """Run ``benchmarks/SCRIPT`` with ``--out``; its standard output, once it exited 0."""
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def results(out: Path, name: str) -> Any:
    """The benchmark's JSON document, after checking that its plot was drawn too."""
    assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    return json.loads((out / f"{name}.json").read_text())


def test_rules_bench(tmp_path: Path) -> None:
    stdout = run_benchmark("rules_bench.py", "--quick", out=tmp_path)
    assert "warm us/set" in stdout
    document = results(tmp_path, "rules")
    assert set(document["results"]) == {p.stem for p in SPECS.glob("*.yaml")}
    for numbers in document["results"].values():
        assert numbers["sets"] >= 1
        for mode in ("cold", "warm"):
            assert set(numbers[mode]) == {"evaluations_per_s", "us_per_evaluation", "us_per_set"}


def test_server_bench_both_transports(tmp_path: Path) -> None:
    stdout = run_benchmark(
        "server_bench.py", "--quick", "--sizes", "10,100", out=tmp_path, timeout=600
    )
    assert "p99 ms" in stdout and "profile, in-process filter" in stdout
    document = results(tmp_path, "server")
    cells = document["results"]
    combos = {(c["verb"], c["transport"], c["request"], c["memo"], c["nodes"]) for c in cells}
    for verb in ("filter", "prioritize"):
        for transport in ("in-process", "http"):
            for size in (10, 100):
                assert (verb, transport, "names", "warm", size) in combos
                assert (verb, transport, "nodes", "warm", size) in combos
            assert (verb, transport, "names", "cold", 100) in combos
        assert (verb, "in-process", "names", "fresh", 100) in combos
    for c in cells:
        assert c["n"] >= 1 and 0 < c["min_ms"] <= c["p50_ms"] <= c["p99_ms"] <= c["max_ms"]
    assert set(document["profiles"]) == {"warm-nodes", "cold-names"}


@pytest.mark.integration
def test_artifacts_bench_against_both_real_registries(tmp_path: Path) -> None:
    stdout = run_benchmark("artifacts_bench.py", "--images", "2", "--pods", "6", out=tmp_path)
    assert "requests/cold" in stdout
    by_registry = {r["registry"]: r for r in results(tmp_path, "artifacts")["results"]}
    assert set(by_registry) == {"referrers API", "tag schema"}
    # Without the referrers API each of the two listings costs one more request.
    assert by_registry["referrers API"]["requests_per_cold_load"] == [5]
    assert by_registry["tag schema"]["requests_per_cold_load"] == [7]
    for r in by_registry.values():
        assert r["run"]["loads"] == 2 * 2  # each image once per platform, then from memory


@pytest.mark.integration
def test_e2e_bench_every_configuration_and_mode(tmp_path: Path) -> None:
    stdout = run_benchmark("e2e_bench.py", "--quick", out=tmp_path, timeout=900)
    assert "pods/s (rounds)" in stdout and "Correctness at scale" in stdout
    document = results(tmp_path, "e2e")
    names = [c["name"] for c in document["configs"]]
    assert names == [
        "default",
        "default-p100",
        "ours",
        "ours-adaptive",
        "ours-single-call",
        "null-ours",
        "null-ours-single-call",
    ]
    phases = {(p["config"], p["mode"]) for p in document["phases"]}
    assert phases == {(n, m) for n in names for m in ("backlog", "paced")}
    for phase in document["phases"]:
        assert phase["complete"] and phase["bound"] == phase["pods"], phase
        assert phase["pods_per_s"] > 0 and phase["latency_ms"]["p50"] <= phase["latency_ms"]["p99"]
        assert phase["cpu_s"]["kube-scheduler"] > 0
        if phase["config"].startswith("ours"):
            # What the extender is for: no pod of this image on a node that cannot run it.
            assert phase["placement"]["compatible"] == 1.0, phase
    for mode in ("backlog", "paced"):
        assert set(document["summary"][mode]["ratios"]) >= {
            "ours/null",
            "ours/default-p100",
            "ours/default",
            "ours-single-call/null",
            "null-ours-single-call/default-p100",
        }
    # The bytes runs went through count-proxy: each profile's verbs, with their answers' sizes.
    verbs = {"filter", "prioritize"}
    for name, expected in [
        ("ours", verbs),
        ("null-ours", verbs),
        ("ours-single-call", {"filter-best-fit"}),
        ("null-ours-single-call", {"filter"}),
    ]:
        wire = document["wire"][name]
        assert set(wire) == expected, name
        assert all(w["calls"] >= 1 and w["response_bytes"] > 0 for w in wire.values())
    # The null passes 70% of the nodes, so its filter answer holds at least half the names.
    assert document["wire"]["null-ours"]["filter"]["response_bytes"] > 30 * 11
    needle = {n["config"]: n for n in document["needle"]}
    assert needle["ours"]["on_needle"] == needle["ours"]["pods"]
    assert needle["ours"]["elsewhere"] == 0


@pytest.mark.integration
def test_nfd_eval_bench_ours_beside_nfd(tmp_path: Path) -> None:
    stdout = run_benchmark("nfd_eval_bench.py", "--quick", "--cases", "20", out=tmp_path)
    assert "NFD ns/set p50" in stdout and "Policy.filter (cold memo)" in stdout
    document = results(tmp_path, "nfd_eval")
    per = document["per_set"]
    assert per["conformance"]["cases"] == 20
    nodes = load_node_features((ROOT / "examples" / "nodes" / "all-nodes.yaml").read_bytes())
    fleet_cases = len(list(SPECS.glob("*.yaml"))) * len(nodes)  # every spec on every node
    assert per["fleet"]["cases"] == fleet_cases
    for r in per.values():
        assert r["timed"] >= 1 and r["timed"] + r["skipped_error_or_rejected"] == r["cases"]
        for key in ("ours_ns_per_set", "nfd_ns_per_set", "ours_over_nfd"):
            q = r[key]
            assert q["n"] == r["timed"] and 0 < q["min"] <= q["p50"] <= q["p99"] <= q["max"]
    memo = document["new_spec"]
    assert (memo["nodes"], memo["types"], memo["new_specs"]) == (5000, 50, 3)
    assert memo["ours_filter_ms"]["n"] == memo["nfd_all_nodes_ms"]["n"] == 3
    assert set(memo["targets"]) == {"speed_up_per_node", "p99_ms", "speed_up_met", "p99_met"}


@pytest.mark.integration
def test_soak_smoke_checks_every_answer_under_churn(tmp_path: Path) -> None:
    stdout = run_benchmark("soak.py", "--smoke", out=tmp_path)
    assert "RSS slope" in stdout and "errors (non-200, Error, wrong answer) | 0 |" in stdout
    document = results(tmp_path, "soak")
    assert document["feature_source"] == "kube-apiserver (NodeFeature watch)"
    assert document["errors"] == 0 and document["error_samples"] == []
    # The schedule is bounded by count, not by speed: 10 pods/s for 5 s, two calls per pod.
    assert document["pods"] == 50
    assert document["requests"] == {"filter": 50, "prioritize": 50, "total": 100}
    verdicts = document["verdicts"]
    assert verdicts["passed"] + verdicts["rejected"] == 50 * document["nodes"]
    assert verdicts["passed"] > 0 and verdicts["rejected"] > 0
    # Churn happened through the apiserver and answers about churned nodes were checked.
    assert document["churn"]["updates"] > 0 and document["churn"]["update_errors"] == 0
    assert verdicts["on_churned_nodes"] > 0
    # Each image's reference has hardware types that pass and types that are rejected.
    for types in document["reference"].values():
        assert {t["passes"] for t in types.values()} == {True, False}
    for verb in ("filter", "prioritize"):
        latency = document["latency_ms"][verb]
        assert latency["count"] == 50 and 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    rss = document["rss"]
    assert len(rss["samples"]) >= 5 and rss["first_kb"] > 0 and rss["last_kb"] > 0
    assert rss["slope_kb_per_min"] is not None
    assert document["extender_cpu_ms_per_pod"]["samples"]
    assert set(document["cpu_share"]) == {"extender", "kube-apiserver", "etcd", "load tool"}
