"""Counts inputs per fuzz target and, when ``FUZZ_REPORT`` names a file, writes what each
target ran and found there (``python -m tests.fuzz`` reads it for its table)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz import _profile

_RESULTS: dict[str, dict[str, Any]] = {}


def _target(item: pytest.Item) -> str:
    return item.name.removeprefix("test_")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _profile.current_target[0] = _target(item)
    yield
    _profile.current_target[0] = ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or not report.nodeid.startswith("tests/fuzz/"):
        return
    name = report.nodeid.rsplit("::", 1)[-1].removeprefix("test_")
    text = str(report.longrepr) if report.failed else ""
    _RESULTS[name] = {
        "seconds": round(report.duration, 2),
        "passed": report.passed,
        # Hypothesis shows one "Falsifying example" per distinct failure it kept.
        "crashes": max(1, text.count("Falsifying example")) if report.failed else 0,
        "failure": text[-6000:],
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("FUZZ_REPORT")
    if not path:
        return
    for name, result in _RESULTS.items():
        result["inputs"] = _profile.INPUTS.get(name, 0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_RESULTS, indent=2) + "\n")
