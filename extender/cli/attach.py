"""``attach``: check a spec and push it as an image's NFD compatibility artifact."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extender.artifacts.attach import Attached
from extender.cli.common import (
    EXIT_OK,
    CommandError,
    add_registry_access,
    print_findings,
    read_input,
    registry_access,
    run_command,
)

# --------------------------------------------------------------------------------------------
# attach: check a spec, then push it as the image's compatibility artifact

_ATTACH_EPILOG = """\
exit status: 0 attached; 1 error (the spec has errors, or with --strict warnings, and nothing
was pushed; or the registry refused); 2 usage.

examples:
  image-compat-extender attach registry.example/app:1.0 app-compat.yaml
  image-compat-extender attach registry.example/app@sha256:... app-compat.yaml \\
      --platform linux/amd64 --platform linux/arm64 --created 2025-01-01T00:00:00Z
  echo "$REGISTRY_PASSWORD" | image-compat-extender attach registry.example/app:1.0 \\
      app-compat.yaml --registry-username ci --registry-password-stdin
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "attach",
        help="check a compatibility spec and attach it to an image in its registry",
        description="Check an NFD image compatibility spec as check-spec does and, when it "
        "has no errors, push it as the image's compatibility artifact (artifactType "
        "application/vnd.nfd.image-compatibility.v1alpha1), as `oras attach` would: through "
        "the referrers API where the registry has it, else listed in the sha256-<hex> tag. "
        "`nfd compat validate-node --image`, `validate --image` and `serve` then find it.",
        epilog=_ATTACH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="the image, by tag or digest")
    parser.add_argument("spec", metavar="SPEC", help="the spec file (YAML or JSON; - for stdin)")
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="attach to this platform's manifest of a multi-platform image instead of the "
        "index (repeatable: one artifact per platform). NFD reads the index's artifact "
        "without --platform and only the platform manifest's with it",
    )
    parser.add_argument("--strict", action="store_true", help="refuse a spec with warnings")
    parser.add_argument(
        "--created",
        metavar="RFC3339",
        help="the org.opencontainers.image.created annotation (default: now, UTC); NFD "
        "uses the newest artifact, and a fixed time makes the push reproducible",
    )
    parser.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="json: one object per artifact (subject, platform, artifact, created, referrers)",
    )
    registry = parser.add_argument_group("registry access")
    add_registry_access(
        registry,
        docker_config_default="$DOCKER_CONFIG/config.json or ~/.docker/config.json when it exists",
    )
    parser.set_defaults(run=_run_attach)


def _run_attach(args: argparse.Namespace) -> int:
    return run_command("attach", _attach, args)


def _attach(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import json  # noqa: PLC0415
    import os.path  # noqa: PLC0415

    from extender.artifacts.attach import attach_spec, parse_created, rfc3339_now  # noqa: PLC0415
    from extender.nfd import report  # noqa: PLC0415
    from extender.nfd.lint import check_spec  # noqa: PLC0415
    from extender.registry.client import RegistryClient  # noqa: PLC0415
    from extender.registry.errors import RegistryError  # noqa: PLC0415
    from extender.registry.hosts import HostPolicy  # noqa: PLC0415
    from extender.registry.reference import Platform  # noqa: PLC0415

    if args.spec == "-" and (args.registry_password_stdin or args.registry_token_stdin):
        raise CommandError("only one of the spec and the registry secret can read stdin")
    try:
        platforms = [Platform.parse(text) for text in args.platform]
        created = parse_created(args.created) if args.created else rfc3339_now()
    except ValueError as err:
        raise CommandError(str(err)) from None
    spec = read_input(args.spec)
    result = check_spec(spec)
    if result.findings:
        print_findings(
            args.spec, result, report.Style(report.use_color(sys.stderr)), file=sys.stderr
        )
    if result.errors or (args.strict and result.warnings):
        what = "errors" if result.errors else "warnings (--strict)"
        raise CommandError(f"{args.spec} has {what}: nothing attached")
    (ref,), hosts, credentials = registry_access(args, [args.image], default_docker_config=True)
    title = "compatibility.yaml" if args.spec == "-" else os.path.basename(args.spec)

    async def push() -> list[Attached]:
        # The person running the command chooses the host: loopback is fine here.
        client = RegistryClient(policy=HostPolicy(allow_loopback=True), hosts=hosts)
        async with client:
            return await attach_spec(
                client,
                ref,
                spec,
                platforms=platforms,
                created=created,
                title=title,
                credentials=credentials,
            )

    try:
        attached = asyncio.run(asyncio.wait_for(push(), timeout=120))
    except RegistryError as err:
        raise CommandError(f"failed to attach to {args.image}: {err}") from None
    except TimeoutError:
        raise CommandError(f"failed to attach to {args.image}: timed out after 120s") from None
    rows = []
    for item in attached:
        pushed = item.pushed
        rows.append(
            {
                "subject": str(item.subject),
                "platform": str(item.platform) if item.platform else None,
                "artifact": pushed.manifest.digest,
                "created": created,
                "referrers": "tag " + pushed.referrers_tag if pushed.referrers_tag else "api",
            }
        )
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            via = "referrers API" if row["referrers"] == "api" else f"listed in {row['referrers']}"
            print(f"attached {row['artifact']} to {row['subject']} ({via})")
    return EXIT_OK
