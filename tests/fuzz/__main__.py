"""The long fuzz run (``make fuzz``): every hypothesis target at its long budget, then the
atheris harnesses; prints inputs, time and crashes per target and writes them as JSON.

Knobs (environment): ``HYPOTHESIS_PROFILE`` (``fuzz``, the long budgets), ``FUZZ_SCALE``
(multiplies every hypothesis budget), ``ATHERIS_RUNS`` and ``ATHERIS_SECONDS`` (per harness,
whichever ends first), ``FUZZ_OUT`` (where the summary, crash files and corpora go). Exits
non-zero when any target found a crash.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fuzz.strategies import ROOT, VALID_BODIES

OUT = Path(os.environ.get("FUZZ_OUT", ROOT / "build" / "fuzz"))
ATHERIS_RUNS = int(os.environ.get("ATHERIS_RUNS", "200000"))
ATHERIS_SECONDS = int(os.environ.get("ATHERIS_SECONDS", "120"))


def run_hypothesis() -> dict[str, dict[str, Any]]:
    report = OUT / "hypothesis.json"
    report.unlink(missing_ok=True)
    env = {**os.environ, "FUZZ_REPORT": str(report)}
    env.setdefault("HYPOTHESIS_PROFILE", "fuzz")
    command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if not report.exists():  # pytest stopped before running anything (a collection error)
        failure = f"pytest exited {done.returncode} before running the targets"
        return {
            "pytest": {
                "engine": "hypothesis",
                "inputs": 0,
                "seconds": 0.0,
                "passed": False,
                "crashes": 1,
                "failure": failure,
            }
        }
    results: dict[str, dict[str, Any]] = json.loads(report.read_text())
    # Plain tests (the regression tests) count no inputs: listed only when they fail.
    return {
        name: {"engine": "hypothesis", **r}
        for name, r in results.items()
        if r["inputs"] or not r["passed"]
    }


def _seed(target: str) -> Path:
    corpus = OUT / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    if target == "spec":
        for spec in (ROOT / "examples" / "specs").glob("*.yaml"):
            shutil.copy(spec, corpus / spec.name)
    else:
        for i, body in enumerate(VALID_BODIES):
            (corpus / f"seed-{i}.json").write_text(body)
    return corpus


def run_atheris(target: str) -> dict[str, Any]:
    crashes = OUT / "crashes" / target
    crashes.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.atheris_targets",
        target,
        f"-runs={ATHERIS_RUNS}",
        f"-max_total_time={ATHERIS_SECONDS}",
        "-max_len=4096",
        "-timeout=20",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={crashes}/",
        str(_seed(target)),
    ]
    start = time.monotonic()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, errors="replace", check=False
    )
    seconds = time.monotonic() - start
    runs = re.search(r"Done (\d+) runs", done.stderr)
    # On a crash libFuzzer stops without "Done": its last status line has the count.
    counts = re.findall(r"^#(\d+)\s", done.stderr, re.MULTILINE)
    inputs = int(runs.group(1)) if runs else int(counts[-1]) if counts else 0
    crashed = done.returncode != 0
    return {
        "engine": "atheris",
        "inputs": inputs,
        "seconds": round(seconds, 2),
        "passed": not crashed,
        "crashes": len(list(crashes.glob("crash-*"))) or int(crashed),
        "failure": done.stderr[-6000:] if crashed else "",
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results = run_hypothesis()
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: its harnesses are skipped (pip install -e '.[fuzz]')")
    else:
        for target in ("spec", "protocol"):
            results[f"atheris_{target}"] = run_atheris(target)
    total = time.monotonic() - start
    summary = {
        "profile": os.environ.get("HYPOTHESIS_PROFILE", "fuzz"),
        "scale": float(os.environ.get("FUZZ_SCALE", "1")),
        "targets": results,
        "total_inputs": sum(r["inputs"] for r in results.values()),
        "total_crashes": sum(r["crashes"] for r in results.values()),
        "wall_seconds": round(total, 1),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{'target':<28} {'engine':<11} {'inputs':>9} {'seconds':>8} {'crashes':>8}")
    for name, result in results.items():
        print(
            f"{name:<28} {result['engine']:<11} {result['inputs']:>9} "
            f"{result['seconds']:>8.1f} {result['crashes']:>8}"
        )
    print(
        f"{'total':<28} {'':<11} {summary['total_inputs']:>9} {total:>8.1f} "
        f"{summary['total_crashes']:>8}"
    )
    print(f"summary: {OUT / 'summary.json'}")
    for name, result in results.items():
        if result["failure"]:
            print(f"\n--- {name} ---\n{result['failure']}")
    return 1 if summary["total_crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
