"""`image-compat-extender validate`, through a real subprocess, on the example specs and nodes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli.conftest import ALL_NODES, NODES, ROOT, SPECS, Run

DPDK = SPECS / "dpdk-app.yaml"
CUDA = SPECS / "cuda-app.yaml"
MULTI = SPECS / "multi-variant.yaml"
PREFERRED = SPECS / "preferred-fallback.yaml"
NODE_NAMES = [
    "dpdk-spr-01",
    "mlx-genoa-01",
    "gpu-h100-01",
    "vm-focal-01",
    "vm-rhel9-01",
    "sandbox-vm-01",  # real nfd-worker output: no kernel.loadedmodule, no X86_64_V* flags
]


def as_json(result: Any) -> Any:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


# -- exit codes and the table -----------------------------------------------------------------


def test_compatible_node_exits_0_with_a_line_per_set_and_rule(run: Run) -> None:
    result = run("validate", "--spec", DPDK, "--features", NODES / "dpdk-spr-01.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dpdk-app on node dpdk-spr-01: compatible, fit 1"
    assert lines[1].split()[:3] == ["MATCH", "set", "1,"]
    rule_lines = [line.split(None, 1) for line in lines[2:]]
    assert rule_lines == [
        ["OK", "vfio-pci driver loaded"],
        ["OK", "Intel or AMD x86 CPU"],
        ["OK", "hugepages configured"],
        ["OK", "supported NIC"],
    ]
    assert "\x1b[" not in result.stdout  # not a terminal: no colour


def test_incompatible_node_exits_3_and_spells_out_the_failing_expression(run: Run) -> None:
    result = run("validate", "--spec", DPDK, "--features", NODES / "gpu-h100-01.yaml")
    assert result.returncode == 3, result.stderr
    out = result.stdout
    assert out.startswith(
        "dpdk-app on node gpu-h100-01: NOT compatible: kernel.loadedmodule: vfio_pci Exists\n"
    )
    assert "NO MATCH set 1" in out
    # In the order the spec lists them, the first on the rule's line, the others below it.
    assert (
        "FAIL  vfio-pci driver loaded: kernel.loadedmodule: vfio_pci Exists (node: absent)\n" in out
    )
    assert "  kernel.loadedmodule: vfio_iommu_type1 Exists (node: absent)\n" in out
    assert "FAIL  hugepages configured: memory.hugepages: enabled IsTrue (node: 'false')" in out
    # matchAny: each alternative's first failure, with what the node has instead.
    assert "FAIL  supported NIC: matchAny 1/2: pci.device: class In [0200]" in out
    assert "matchAny 2/2: pci.device: class In [0200]" in out
    assert "OK    Intel or AMD x86 CPU" in out


def test_tty_gets_colour_unless_no_color(tmp_path: Path) -> None:
    def on_tty(env: dict[str, str]) -> str:
        controller, terminal = pty.openpty()
        environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
        args = ["--spec", str(DPDK), "--features", str(NODES / "gpu-h100-01.yaml")]
        process = subprocess.run(
            [sys.executable, "-m", "extender", "validate", *args],
            cwd=ROOT,
            stdout=terminal,
            stderr=subprocess.PIPE,
            env=environ,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(controller)
        assert process.returncode == 3
        return b"".join(chunks).decode()

    assert "\x1b[31m" in on_tty({})
    assert "\x1b[" not in on_tty({"NO_COLOR": "1"})


# -- JSON ---------------------------------------------------------------------------------------


def test_json_has_validate_node_fields_plus_ours(run: Run) -> None:
    result = run(
        "validate", "--spec", DPDK, "--features", ALL_NODES, "--node", "gpu-h100-01",
        "--output", "json",
    )  # fmt: skip
    assert result.returncode == 3
    report = as_json(result)
    assert list(report) == ["node", "compatible", "fit", "reason", "sets"]
    assert report["node"] == "gpu-h100-01"
    assert report["compatible"] is False
    assert report["fit"] == 0
    assert report["reason"] == "kernel.loadedmodule: vfio_pci Exists"
    [compat] = report["sets"]
    # NFD's CompatibilityStatus order; weight 0 and tag "" are omitted as in NFD.
    assert list(compat) == ["rules", "description", "matched"]
    assert compat["matched"] is False
    modules, cpu, hugepages, nic = compat["rules"]
    assert modules == {
        "name": "vfio-pci driver loaded",
        "isMatch": False,
        "matchedExpressions": [  # sorted by feature, then name
            {
                "feature": "kernel.loadedmodule",
                "name": "vfio_iommu_type1",
                "expression": {"op": "Exists"},
                "matcherType": "matchExpression",
                "isMatch": False,
            },
            {
                "feature": "kernel.loadedmodule",
                "name": "vfio_pci",
                "expression": {"op": "Exists"},
                "matcherType": "matchExpression",
                "isMatch": False,
            },
        ],
    }
    assert cpu["isMatch"] is True
    assert cpu["matchedExpressions"][0]["expression"] == {"op": "In", "value": ["Intel", "AMD"]}
    assert hugepages["matchedExpressions"][0]["isMatch"] is False
    assert list(nic) == ["name", "isMatch", "matchedAny"]
    assert [len(e["matchedExpressions"]) for e in nic["matchedAny"]] == [3, 3]
    names = [row["name"] for row in nic["matchedAny"][0]["matchedExpressions"]]
    assert names == ["class", "device", "vendor"]


def test_json_of_a_compatible_node_has_no_reason_and_keeps_weight_and_tag(run: Run) -> None:
    result = run(
        "validate", "--spec", PREFERRED, "--features", NODES / "mlx-genoa-01.yaml",
        "--output", "json",
    )  # fmt: skip
    assert result.returncode == 0
    report = as_json(result)
    assert list(report) == ["node", "compatible", "fit", "sets"]
    assert (report["compatible"], report["fit"]) == (True, 2)
    preferred, fallback = report["sets"]
    assert list(preferred) == ["rules", "description", "weight", "tag", "matched"]
    assert (preferred["weight"], preferred["tag"], preferred["matched"]) == (10, "preferred", False)
    assert (fallback["weight"], fallback["tag"], fallback["matched"]) == (1, "fallback", True)
    amx = preferred["rules"][0]["matchedExpressions"]
    assert {row["name"]: row["isMatch"] for row in amx} == {
        "AMXBF16": False,
        "AMXTILE": False,
        "AVX512BF16": True,
        "AVX512F": True,
    }


def test_evaluation_error_exits_1_and_is_reported_on_the_rule(run: Run) -> None:
    result = run(
        "validate", "--spec", CUDA, "--features", NODES / "vm-rhel9-01.yaml", "--output", "json"
    )
    assert result.returncode == 1
    assert "evaluation error" in result.stderr
    report = as_json(result)
    [compat] = report["sets"]
    assert compat["matched"] is False
    assert "not a version '5.14.0-427.13.1.el9_4.x86_64'" in compat["error"]
    kernel_rule = compat["rules"][2]
    assert kernel_rule["isMatch"] is False
    assert kernel_rule["error"] == compat["error"]
    assert "matchedExpressions" not in kernel_rule


def test_evaluation_error_in_the_table(run: Run) -> None:
    result = run("validate", "--spec", CUDA, "--features", NODES / "vm-rhel9-01.yaml")
    assert result.returncode == 1
    assert "ERROR    set 1" in result.stdout
    assert (
        "ERROR kernel 5.15 or newer: kernel.version: full Ge [5.15] (version): not a version"
        in (result.stdout)
    )


# -- several nodes: the matrix -----------------------------------------------------------------


def test_several_nodes_without_node_print_one_line_per_node(run: Run) -> None:
    result = run("validate", "--spec", DPDK, "--features", ALL_NODES)
    assert result.returncode == 3  # some node is not compatible
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NODE", "COMPATIBLE", "REASON"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == NODE_NAMES
    assert rows["dpdk-spr-01"].split()[1:] == ["yes", "(fit", "1)"]
    assert rows["gpu-h100-01"].split(None, 2)[1:] == ["no", "kernel.loadedmodule: vfio_pci Exists"]


def test_matrix_of_every_example_spec_and_node(run: Run) -> None:
    specs = sorted(SPECS.glob("*.yaml"))
    args = [arg for spec in specs for arg in ("--spec", spec)]
    result = run("validate", *args, "--features", ALL_NODES)
    assert result.returncode == 1  # the RHEL node cannot evaluate the CUDA spec's version
    grid = [line.split("  ") for line in result.stdout.splitlines()]
    header = [cell.strip() for cell in grid[0] if cell.strip()]
    assert header == ["NODE", "cuda-app", "dpdk-app", "multi-variant", "preferred-fallback"]
    cells = {row[0].strip(): [c.strip() for c in row[1:] if c.strip()] for row in grid[1:7]}
    assert cells == {
        "dpdk-spr-01": ["no", "yes (fit 1)", "yes (fit 51)", "yes (fit 11)"],
        "mlx-genoa-01": ["no", "yes (fit 1)", "yes (fit 51)", "yes (fit 2)"],
        "gpu-h100-01": ["yes (fit 1)", "no", "yes (fit 81)", "yes (fit 11)"],
        "vm-focal-01": ["no", "no", "yes (fit 21)", "yes (fit 2)"],
        "vm-rhel9-01": ["error", "no", "yes (fit 2)", "no"],
        "sandbox-vm-01": ["no", "no", "no", "no"],
    }
    assert grid[7] == [""]
    assert "  vm-rhel9-01 / preferred-fallback: cpu.cpuid: X86_64_V3 Exists" in result.stdout
    assert "  sandbox-vm-01 / dpdk-app: kernel.loadedmodule: feature missing" in result.stdout


def test_matrix_json_is_a_list_of_node_objects(run: Run) -> None:
    result = run("validate", "--spec", MULTI, "--features", ALL_NODES, "--output", "json")
    assert result.returncode == 3
    reports = as_json(result)
    assert [r["node"] for r in reports] == NODE_NAMES
    assert {r["spec"] for r in reports} == {"multi-variant"}
    assert [r["fit"] for r in reports] == [51, 51, 81, 21, 2, 0]
    assert all(len(r["sets"]) == 4 for r in reports)


def test_matrix_without_errors_exits_3(run: Run, tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(
        (NODES / "dpdk-spr-01.yaml").read_text()
        + "---\n"
        + (NODES / "vm-focal-01.yaml").read_text()
    )
    assert run("validate", "--spec", DPDK, "--features", two).returncode == 3
    assert run("validate", "--spec", MULTI, "--features", two).returncode == 0


def test_node_picks_one_node_from_a_multi_node_file(run: Run) -> None:
    result = run("validate", "--spec", DPDK, "--features", ALL_NODES, "--node", "mlx-genoa-01")
    assert result.returncode == 0
    assert result.stdout.startswith("dpdk-app on node mlx-genoa-01: compatible, fit 1\n")


def test_unknown_node_is_an_error(run: Run) -> None:
    result = run("validate", "--spec", DPDK, "--features", ALL_NODES, "--node", "nope")
    assert result.returncode == 1
    assert "node 'nope' is not in" in result.stderr
    assert "dpdk-spr-01" in result.stderr
    assert result.stdout == ""


# -- tags and set semantics --------------------------------------------------------------------


def test_tags_keep_only_listed_sets(run: Run) -> None:
    node = NODES / "dpdk-spr-01.yaml"
    only_gpu = run(
        "validate", "--spec", MULTI, "--features", node, "--tags", "gpu", "--output", "json"
    )
    assert only_gpu.returncode == 3
    report = as_json(only_gpu)
    assert [s["tag"] for s in report["sets"]] == ["gpu"]
    both = run(
        "validate", "--spec", MULTI, "--features", node, "--tags", "gpu,avx2", "--output", "json"
    )
    assert both.returncode == 0
    report = as_json(both)
    assert [s["tag"] for s in report["sets"]] == ["gpu", "avx2"]
    assert report["fit"] == 21
    repeated = run(
        "validate", "--spec", MULTI, "--features", node, "--tags", "gpu", "--tags", "avx512",
        "--output", "json",
    )  # fmt: skip
    assert as_json(repeated)["fit"] == 51


def test_tags_that_select_nothing(run: Run) -> None:
    result = run(
        "validate", "--spec", MULTI, "--features", NODES / "vm-focal-01.yaml", "--tags", "arm64"
    )
    assert result.returncode == 3
    assert "no compatibility set is tagged arm64" in result.stdout


def test_set_semantics_all_requires_every_set(run: Run) -> None:
    spr = NODES / "dpdk-spr-01.yaml"
    gpu = NODES / "gpu-h100-01.yaml"
    assert run("validate", "--spec", MULTI, "--features", spr).returncode == 0
    strict = run("validate", "--spec", MULTI, "--features", spr, "--set-semantics", "all")
    assert strict.returncode == 3
    assert "every set must match" in strict.stdout
    assert "NOT compatible: pci.device: vendor In [10de]" in strict.stdout
    on_gpu = run(
        "validate", "--spec", MULTI, "--features", gpu, "--set-semantics", "all", "--output", "json"
    )
    assert on_gpu.returncode == 0
    assert as_json(on_gpu)["fit"] == 81


# -- inputs and errors -------------------------------------------------------------------------


def test_features_from_stdin(run: Run) -> None:
    result = run(
        "validate", "--spec", DPDK, "--features", "-", "--output", "json",
        stdin=(NODES / "mlx-genoa-01.yaml").read_text(),
    )  # fmt: skip
    assert result.returncode == 0
    assert as_json(result)["node"] == "mlx-genoa-01"


def test_node_without_features_fails_with_no_nfd_features(run: Run, tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text(
        "apiVersion: nfd.k8s-sigs.io/v1alpha1\nkind: NodeFeature\nmetadata:\n  name: bare\n"
        "  namespace: node-feature-discovery\n  labels:\n"
        "    nfd.node.kubernetes.io/node-name: bare\nspec: {}\n"
    )
    result = run("validate", "--spec", DPDK, "--features", empty, "--output", "json")
    assert result.returncode == 3
    report = as_json(result)
    assert report["reason"] == "no NFD features"
    rows = report["sets"][0]["rules"][0]["matchedExpressions"]
    assert [row["isMatch"] for row in rows] == [False, False]


def test_invalid_spec_exits_1_with_its_path(run: Run) -> None:
    bad = ROOT / "tests" / "cli" / "data" / "bad-expressions.yaml"
    result = run("validate", "--spec", bad, "--features", ALL_NODES)
    assert result.returncode == 1
    assert "invalid spec" in result.stderr
    assert "compatibilities[0].rules[0].matchFeatures[0].matchExpressions.family" in result.stderr
    assert result.stdout == ""


def test_unreadable_files_exit_1(run: Run, tmp_path: Path) -> None:
    missing = run("validate", "--spec", tmp_path / "nope.yaml", "--features", ALL_NODES)
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr and "nope.yaml" in missing.stderr
    directory = run("validate", "--spec", DPDK, "--features", tmp_path)
    assert directory.returncode == 1
    assert "cannot read" in directory.stderr
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("kind: Pod\nmetadata: {name: x}\n")
    wrong_kind = run("validate", "--spec", DPDK, "--features", garbage)
    assert wrong_kind.returncode == 1
    assert "expected kind NodeFeature" in wrong_kind.stderr
    nothing = tmp_path / "nothing.yaml"
    nothing.write_text("# no objects\n")
    assert "no NodeFeature objects" in run("validate", "--spec", DPDK, "--features", nothing).stderr


def test_usage_errors_exit_2(run: Run) -> None:
    assert run("validate", "--features", ALL_NODES).returncode == 2
    assert (
        run("validate", "--spec", DPDK, "--features", ALL_NODES, "--output", "xml").returncode == 2
    )
    semantics = run("validate", "--spec", DPDK, "--features", ALL_NODES, "--set-semantics", "some")
    assert semantics.returncode == 2
    assert run("no-such-command").returncode == 2
