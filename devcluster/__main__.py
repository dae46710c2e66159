"""Command line for developers: ``python -m devcluster build|up|down|env``."""

from __future__ import annotations

import argparse
import sys

from devcluster import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser(
        "build", help="build the Go binaries into the cache (no-op if present)"
    )
    p_build.add_argument("names", nargs="*", help="only these binaries (default: all)")
    p_build.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            paths = build.build_all(args.names or None, force=args.force)
            print(build.describe())
            print(f"binaries: {next(iter(paths.values())).parent}")
    except build.BuildError as e:
        print(f"devcluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
