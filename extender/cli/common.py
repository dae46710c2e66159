"""What the subcommands share: exit codes, the error that ends a command with one line, input
files, the registry flags and credentials of the commands that reach registries, and printing
a spec's findings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from extender.nfd.lint import CheckResult
    from extender.nfd.report import Style
    from extender.registry.auth import DockerConfig
    from extender.registry.hosts import RegistryHostConfig
    from extender.registry.reference import ImageReference


EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INCOMPATIBLE = 3

Command = Callable[[argparse.Namespace], int]


def add_registry_access(group: argparse._ArgumentGroup, *, docker_config_default: str) -> None:
    """The connection and credential flags every command that talks to a registry takes."""
    group.add_argument(
        "--plain-http", action="store_true", help="talk HTTP, not HTTPS, to the registry"
    )
    group.add_argument(
        "--ca-file", metavar="PEM", help="CA bundle that verifies the registry's certificate"
    )
    group.add_argument(
        "--docker-config",
        metavar="FILE",
        help=f"docker config.json with credentials (default: {docker_config_default})",
    )
    group.add_argument("--registry-username", metavar="NAME", help="basic-auth user name")
    group.add_argument(
        "--registry-password-stdin",
        action="store_true",
        help="read the password for --registry-username from stdin",
    )
    group.add_argument(
        "--registry-token-stdin",
        action="store_true",
        help="read a bearer token for the registry from stdin",
    )


class CommandError(Exception):
    """Ends a command with EXIT_ERROR and this message on stderr."""


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror or err}") from None


def registry_access(
    args: argparse.Namespace, images: Sequence[str], *, default_docker_config: bool = False
) -> tuple[list[ImageReference], dict[str, RegistryHostConfig], list[DockerConfig]]:
    """References, per-host settings and credentials from the registry flags.

    The flag credentials (password or token from stdin) go to the images' registries only;
    the docker config (``--docker-config``, or with ``default_docker_config`` docker's own
    file when it exists) comes after them.
    """
    import os  # noqa: PLC0415

    from extender.registry.auth import DockerConfig  # noqa: PLC0415
    from extender.registry.errors import RegistryError  # noqa: PLC0415
    from extender.registry.hosts import RegistryHostConfig  # noqa: PLC0415
    from extender.registry.reference import ImageReference  # noqa: PLC0415

    if args.registry_password_stdin and args.registry_token_stdin:
        raise CommandError(
            "cannot use --registry-token-stdin and --registry-password-stdin at the same time"
        )
    if args.registry_password_stdin and not args.registry_username:
        raise CommandError("--registry-password-stdin needs --registry-username")
    refs = []
    for image in images:
        try:
            refs.append(ImageReference.parse(image))
        except RegistryError as err:
            raise CommandError(str(err)) from None
    secret = ""
    if args.registry_password_stdin or args.registry_token_stdin:
        secret = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    credentials: list[DockerConfig] = []
    config = RegistryHostConfig(plain_http=args.plain_http, ca_file=args.ca_file)
    hosts: dict[str, RegistryHostConfig] = {}
    for ref in refs:
        hosts[ref.registry] = config
        entry: dict[str, str] = {}
        if args.registry_username:
            entry = {"username": args.registry_username, "password": secret}
        elif args.registry_token_stdin:
            entry = {"registrytoken": secret}
        if entry:
            credentials.append(DockerConfig({"auths": {ref.registry: entry}}))
    docker_config = args.docker_config
    if not docker_config and default_docker_config:
        home = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        found = os.path.join(home, "config.json")
        docker_config = found if os.path.isfile(found) else None
    if docker_config:
        try:
            credentials.append(DockerConfig.from_file(docker_config))
        except (OSError, ValueError) as err:
            raise CommandError(f"docker config {docker_config}: {err}") from None
    return refs, hosts, credentials


def closed_pipe() -> int:
    """stdout's reader went away (``| head``): stop quietly, as a killed writer would."""
    import os  # noqa: PLC0415

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush is quiet
    return EXIT_ERROR


def usage_error(name: str, message: str) -> int:
    """A usage error argparse cannot catch: one line on stderr, exit 2."""
    print(f"image-compat-extender {name}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_command(
    name: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Run a subcommand: its own errors become one line and exit 1; a closed pipe is quiet."""
    try:
        return run(args)
    except CommandError as err:
        print(f"image-compat-extender {name}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return closed_pipe()


def print_findings(
    path: str, result: CheckResult, style: Style, *, file: TextIO = sys.stdout
) -> None:
    """check-spec's lines: one per finding, then ``ok`` or the counts."""
    from extender.nfd.lint import Severity  # noqa: PLC0415

    for finding in result.findings:
        word = finding.severity.value
        painted = style.bad(word) if finding.severity is Severity.ERROR else style.warn(word)
        where = f"{finding.path}: " if finding.path else ""
        print(f"{path}: {painted}: {where}{finding.message} [{finding.code}]", file=file)
    errors, warnings = len(result.errors), len(result.warnings)
    if not result.findings:
        print(f"{path}: {style.good('ok')}", file=file)
    else:
        counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        print(f"{path}: {counts}", file=file)
