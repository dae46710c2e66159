"""Smoke test of benchmarks/rules_bench.py: it runs and writes its results (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import ROOT, SPECS


def test_rules_bench_writes_json_and_plot(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/rules_bench.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "warm us/set" in result.stdout
    document = json.loads((tmp_path / "rules.json").read_text())
    assert set(document["results"]) == {p.stem for p in SPECS.glob("*.yaml")}
    for numbers in document["results"].values():
        assert numbers["sets"] >= 1
        for mode in ("cold", "warm"):
            assert set(numbers[mode]) == {"evaluations_per_s", "us_per_evaluation", "us_per_set"}
    assert (tmp_path / "rules.png").read_bytes().startswith(b"\x89PNG")
