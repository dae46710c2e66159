"""CLI tests run the real command in a subprocess, from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SPECS = ROOT / "examples" / "specs"
NODES = ROOT / "examples" / "nodes"
ALL_NODES = NODES / "all-nodes.yaml"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run() -> Run:
    """``run("validate", "--spec", ...)`` -> CompletedProcess with text stdout/stderr."""

    def _run(
        *args: str | Path, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        environ.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "extender", *map(str, args)],
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )

    return _run
