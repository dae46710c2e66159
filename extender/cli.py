"""The ``image-compat-extender`` command line: one subcommand per job.

Owns argument parsing and dispatch only; each subcommand's work lives in the module that
owns the concept (server, report, artifacts, ...). Exit codes: 0 success, 1 error, 2 usage,
and 3 where a command reports "not compatible".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from extender import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INCOMPATIBLE = 3

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-compat-extender",
        description="Place pods by their images' NFD image-compatibility artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    return run(args)
