"""``python -m tests.nfd.conformance [--cases N] [--seed S] [--binary PATH]``: a larger run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.nfd.conformance.oracle import NfdEval
from tests.nfd.conformance.suite import configured_cases, configured_seed, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nfd.conformance", description=__doc__)
    parser.add_argument("--cases", type=int, default=configured_cases())
    parser.add_argument("--seed", type=int, default=configured_seed())
    parser.add_argument("--binary", type=Path, help="nfd-eval (default: build it via devcluster)")
    parser.add_argument("--shrink", type=int, default=5, help="disagreement kinds to shrink")
    args = parser.parse_args(argv)
    binary = args.binary
    if binary is None:
        from devcluster.build import binary as build_binary

        binary = build_binary("nfd-eval")
    with NfdEval(binary) as oracle:
        outcome = run(oracle, args.cases, args.seed, shrink_kinds=args.shrink)
    print(outcome.text())
    return 1 if outcome.report.findings or outcome.missing_cells else 0


if __name__ == "__main__":
    sys.exit(main())
