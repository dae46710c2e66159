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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    return run(args)


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Imported here so that `serve` stays self-contained and other subcommands start fast.
    from extender import config  # noqa: PLC0415

    parser = subparsers.add_parser(
        "serve",
        help="run the scheduler extender (filter and prioritize over HTTP)",
        description="Serve kube-scheduler's extender verbs. Every flag is also an "
        f"{config.ENV_PREFIX}* environment variable; a flag wins over its variable.",
    )
    config.add_arguments(parser)
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import os  # noqa: PLC0415

    from extender import config, server  # noqa: PLC0415 - aiohttp only when serving

    try:
        settings = config.settings_from(args, os.environ)
    except config.ConfigError as err:
        print(f"image-compat-extender serve: {err}", file=sys.stderr)
        return EXIT_USAGE
    return server.run(settings)
