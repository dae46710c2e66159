"""The parser with one subcommand per job, and dispatch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from extender import __version__

if TYPE_CHECKING:
    pass
from extender.cli import attach, check_spec, explain, serve, validate
from extender.cli.common import EXIT_USAGE, Command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-compat-extender",
        description="Place pods by their images' NFD image-compatibility artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_parser(subparsers)
    validate.add_parser(subparsers)
    check_spec.add_parser(subparsers)
    attach.add_parser(subparsers)
    explain.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    return run(args)
