"""Our rule engine against NFD's own code, on generated specs and nodes.

Needs the ``nfd-eval`` binary (built from NFD's Go module on first use, then cached).
``IMAGE_COMPAT_CONFORMANCE_CASES`` / ``IMAGE_COMPAT_CONFORMANCE_SEED`` change the size and
the seed; ``python -m tests.nfd.conformance --cases 200000`` runs a big suite outside pytest.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from tests.nfd.conformance.generate import grid_cases, random_scenarios, required_cells
from tests.nfd.conformance.oracle import NfdEval
from tests.nfd.conformance.suite import (
    DEFAULT_CASES,
    DEFAULT_SEED,
    build_cases,
    configured_cases,
    configured_seed,
    run,
)
from tests.nfd.conformance.yamltext import render

MIN_DEFAULT_CASES = 10_000


@pytest.fixture(scope="module")
def oracle() -> Iterator[NfdEval]:
    from devcluster.build import binary

    with NfdEval(binary("nfd-eval")) as nfd_eval:
        yield nfd_eval


@pytest.mark.integration
def test_engine_agrees_with_nfd(oracle: NfdEval, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run(oracle, configured_cases(), configured_seed())
    with capsys.disabled():
        print(f"\n--- NFD conformance (seed {configured_seed()}) ---\n{outcome.text()}")
    report = outcome.report
    assert not report.findings, f"{len(report.findings)} disagreements:\n" + "\n".join(
        outcome.reproducers
    )
    assert not outcome.missing_cells, f"grid cells never produced: {outcome.missing_cells}"
    # Guard against a suite of trivial misses: plenty of rules must have been compared, and
    # both verdicts must be common.
    compared = sum(report.rules.values())
    assert compared >= report.cases, report.summary()
    assert report.rules["match"] >= compared // 5, report.summary()
    assert report.rules["no match"] >= compared // 5, report.summary()


@pytest.mark.integration
def test_nfd_eval_survives_a_panic_and_keeps_going(oracle: NfdEval) -> None:
    spec = (
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - name: r\n    matchFeatures:\n"
        "    - feature: a.b\n      matchExpressions: {k: null}\n"
    )
    features = {"attributes": {"a.b": {"elements": {"k": "1"}}}}
    panicked, fine = oracle.run(
        [{"spec": spec, "features": features}, {"spec": "compatibilities: []", "features": {}}]
    )
    assert panicked.stage == "rule" and panicked.error.startswith('rule "r": panic:')
    assert not fine.error


def test_default_suite_is_big_enough() -> None:
    assert DEFAULT_CASES >= MIN_DEFAULT_CASES
    assert len(build_cases(DEFAULT_CASES, DEFAULT_SEED)) == DEFAULT_CASES


def test_generation_is_deterministic() -> None:
    def texts(seed: int) -> list[str]:
        rng = random.Random(seed)
        cases = grid_cases(rng)[:50] + [next(random_scenarios(rng)) for _ in range(200)]
        return [render(c.doc) + repr(c.node) + repr(c.tags) for c in cases]

    assert texts(1) == texts(1)
    assert texts(1) != texts(2)


def test_grid_plans_aim_at_every_required_cell() -> None:
    # Every required (kind, op) pair has grid cases; NFD's verdicts on them are checked in
    # test_engine_agrees_with_nfd.
    planned = {
        (origin.split(":")[1], origin.split(":")[2])
        for origin in (c.origin for c in grid_cases(random.Random(0)))
        if origin.startswith("grid:")
    }
    assert {(kind, label) for kind, label, _ in required_cells()} <= planned
