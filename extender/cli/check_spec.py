"""``check-spec``: every error and warning in a spec, before the scheduler sees it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from extender.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    print_findings,
    read_input,
    run_command,
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check-spec",
        help="report every error and warning in compatibility specs",
        description="Check NFD image compatibility specs before they are attached to an "
        "image: every load error and every warning (unknown fields, unquoted numbers, "
        "names NFD never reports, expressions and sets that can never match), each with its "
        "path in the spec. Exit status 1 when a spec has an error (or, with --strict, a "
        "warning), else 0.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="spec files (- for stdin)")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.set_defaults(run=_run_check_spec)


def _run_check_spec(args: argparse.Namespace) -> int:
    return run_command("check-spec", _check_spec, args)


def _check_spec(args: argparse.Namespace) -> int:
    from extender.nfd import report  # noqa: PLC0415
    from extender.nfd.lint import check_spec  # noqa: PLC0415

    style = report.Style(report.use_color(sys.stdout))
    failed = False
    for path in args.files:
        try:
            result = check_spec(read_input(path))
        except CommandError as err:
            print(f"{path}: {style.bad('error')}: {err}")
            failed = True
            continue
        print_findings(path, result, style)
        if result.errors or (args.strict and result.warnings):
            failed = True
    return EXIT_ERROR if failed else EXIT_OK
