"""Smoke test of benchmarks/server_bench.py: it runs both transports and writes its results
(no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_server_bench_writes_json_and_plot(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "benchmarks/server_bench.py", "--quick"),
            *("--sizes", "10,100", "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "p99 ms" in result.stdout and "profile, in-process filter" in result.stdout
    document = json.loads((tmp_path / "server.json").read_text())
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
    assert (tmp_path / "server.png").read_bytes().startswith(b"\x89PNG")
