"""Builds and runs a conformance suite: case selection, coverage check, reproducers."""

from __future__ import annotations

import itertools
import os
import random
import time
from dataclasses import dataclass

from tests.nfd.conformance.differential import Report, reproducer, run_suite, shrink
from tests.nfd.conformance.generate import Case, grid_cases, random_scenarios, required_cells
from tests.nfd.conformance.oracle import NfdEval

DEFAULT_CASES = 12_000
DEFAULT_SEED = 20240917
CASES_ENV = "IMAGE_COMPAT_CONFORMANCE_CASES"
SEED_ENV = "IMAGE_COMPAT_CONFORMANCE_SEED"


def configured_cases() -> int:
    return int(os.environ.get(CASES_ENV, DEFAULT_CASES))


def configured_seed() -> int:
    return int(os.environ.get(SEED_ENV, DEFAULT_SEED))


def build_cases(total: int, seed: int) -> list[Case]:
    """The grid first (coverage), then random scenarios up to ``total``."""
    rng = random.Random(seed)
    cases = grid_cases(rng)
    cases += itertools.islice(random_scenarios(rng), max(total - len(cases), 0))
    return cases


@dataclass
class Outcome:
    report: Report
    missing_cells: list[tuple[str, str, str]]
    reproducers: list[str]
    seconds: float

    def text(self) -> str:
        lines = [self.report.summary(), f"({self.seconds:.1f}s)"]
        if self.missing_cells:
            lines.append(f"grid cells NFD was never seen producing ({len(self.missing_cells)}):")
            lines += [
                f"  {kind} {label} {condition}" for kind, label, condition in self.missing_cells
            ]
        lines += self.reproducers
        return "\n".join(lines)


def run(oracle: NfdEval, total: int, seed: int, *, shrink_kinds: int = 5) -> Outcome:
    start = time.monotonic()
    cases = build_cases(total, seed)
    report = run_suite(oracle, cases)
    missing = sorted(required_cells() - report.cells)
    reproducers = []
    seen: set[str | None] = set()
    for finding in report.findings:
        kind = finding.judgement.disagreement
        if kind in seen or len(seen) >= shrink_kinds:
            continue
        seen.add(kind)
        assert kind is not None
        small = shrink(oracle, finding.case, kind)
        reproducers.append(reproducer(oracle, small, finding.judgement))
    return Outcome(report, missing, reproducers, time.monotonic() - start)
