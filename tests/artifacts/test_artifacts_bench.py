"""Smoke test of benchmarks/artifacts_bench.py: it loads specs from both real registries and
writes its table, JSON and plot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_artifacts_bench_writes_table_json_and_plot(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "benchmarks/artifacts_bench.py"),
            *("--images", "2", "--pods", "6", "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "requests/cold" in result.stdout
    document = json.loads((tmp_path / "artifacts.json").read_text())
    by_registry = {r["registry"]: r for r in document["results"]}
    assert set(by_registry) == {"referrers API", "tag schema"}
    # Without the referrers API each of the two listings costs one more request.
    assert by_registry["referrers API"]["requests_per_cold_load"] == [5]
    assert by_registry["tag schema"]["requests_per_cold_load"] == [7]
    for r in by_registry.values():
        assert r["run"]["loads"] == 2 * 2  # each image once per platform, then from memory
    assert (tmp_path / "artifacts.png").read_bytes().startswith(b"\x89PNG")
