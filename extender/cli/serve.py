"""``serve``: run the extender (flags and variables from the option table)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from extender.cli.common import EXIT_USAGE


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Imported here so that `serve` stays self-contained and other subcommands start fast.
    from extender.server import config  # noqa: PLC0415

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

    from extender.server import app, config  # noqa: PLC0415 - aiohttp only when serving

    try:
        settings = config.settings_from(args, os.environ)
    except config.ConfigError as err:
        print(f"image-compat-extender serve: {err}", file=sys.stderr)
        return EXIT_USAGE
    return app.run(settings)
