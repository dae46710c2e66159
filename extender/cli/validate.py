"""``validate``: what specs say about nodes, from files or from images' registries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extender.nfd.rules import CompiledSpec
from extender.cli.common import (
    EXIT_ERROR,
    EXIT_INCOMPATIBLE,
    EXIT_OK,
    CommandError,
    add_registry_access,
    read_input,
    registry_access,
    run_command,
    usage_error,
)

# --------------------------------------------------------------------------------------------
# validate and check-spec: a spec against NodeFeature files, and a spec on its own

_VALIDATE_EPILOG = """\
exit status: 0 compatible; 3 not compatible; 1 error (unreadable file, invalid spec, or an
evaluation error on a node that is not compatible); 2 usage. With several nodes or specs the
worst cell decides (1 over 3 over 0).

examples:
  image-compat-extender validate --spec examples/specs/dpdk-app.yaml \\
      --features examples/nodes/dpdk-spr-01.yaml
  image-compat-extender validate --spec examples/specs/multi-variant.yaml \\
      --features examples/nodes/all-nodes.yaml --tags gpu,avx512
  kubectl get nodefeatures -n node-feature-discovery -o yaml | \\
      image-compat-extender validate --spec app.yaml --features - --node worker-1 --output json
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from extender.nfd.rules import SetSemantics  # noqa: PLC0415

    parser = subparsers.add_parser(
        "validate",
        help="evaluate a compatibility spec against NodeFeature objects",
        description="Evaluate an NFD image compatibility spec against nodes' NFD features "
        "(NodeFeature objects, as `kubectl get nodefeatures -o yaml` prints them), like "
        "`nfd compat validate-node` but for any node. One node and one spec: a report per "
        "set and rule (--output json gives validate-node's report fields). Several: a "
        "compatibility matrix.",
        epilog=_VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="FILE",
        help="the spec (YAML or JSON; - for stdin); repeat it to build a matrix of specs",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="REF",
        help="an image whose attached compatibility artifact is the spec, fetched as "
        "`nfd compat validate-node --image` does (referrers API, else the sha256-<hex> tag; "
        "the newest artifact); repeatable, and combinable with --spec",
    )
    registry = parser.add_argument_group("registry access (with --image)")
    registry.add_argument(
        "--platform",
        default="",
        metavar="OS[/ARCH[/VARIANT]]",
        help="use the spec attached to this platform's manifest of a multi-platform image "
        "(as nfd's --platform: that manifest's own artifacts only)",
    )
    add_registry_access(registry, docker_config_default="none, as nfd")
    parser.add_argument(
        "--features",
        required=True,
        metavar="FILE",
        help="NodeFeature objects: one, several YAML documents, or a List (- for stdin)",
    )
    parser.add_argument("--node", metavar="NAME", help="the node to check, from a multi-node file")
    parser.add_argument(
        "--tags",
        action="append",
        default=[],
        metavar="A,B",
        help="evaluate only sets with one of these tags (comma list, repeatable)",
    )
    parser.add_argument(
        "--set-semantics",
        choices=[s.value for s in SetSemantics],
        default=SetSemantics.ANY.value,
        help="any: one matching set makes a node compatible (default); all: every set must",
    )
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.set_defaults(run=_run_validate)


# Exit codes from best to worst, for summarising several verdicts.
_SEVERITY_ORDER = (EXIT_OK, EXIT_INCOMPATIBLE, EXIT_ERROR)


def _spec_labels(paths: Sequence[str]) -> list[str]:
    """Column names for specs: the file stem, or the path where stems collide."""
    import os.path  # noqa: PLC0415

    stems = [
        "<stdin>" if p == "-" else os.path.splitext(os.path.basename(p))[0] or p for p in paths
    ]
    return [
        stem if stems.count(stem) == 1 else path for stem, path in zip(stems, paths, strict=True)
    ]


def _load_specs(paths: Sequence[str]) -> list[tuple[str, CompiledSpec]]:
    """(column label, compiled spec) per spec file. An ``--image`` source would add here."""
    from extender.nfd.rules import load_spec  # noqa: PLC0415
    from extender.nfd.spec import SpecError  # noqa: PLC0415

    specs = []
    for path, label in zip(paths, _spec_labels(paths), strict=True):
        try:
            compiled = load_spec(read_input(path))
        except SpecError as err:
            raise CommandError(f"invalid spec {path}: {err}") from None
        for warning in compiled.warnings:
            print(f"warning: {path}: {warning}", file=sys.stderr)
        specs.append((label, compiled))
    return specs


def _load_image_specs(args: argparse.Namespace) -> list[tuple[str, CompiledSpec]]:
    """(column label, compiled spec) per ``--image``, fetched as NFD's client does."""
    if not args.image:
        return []
    import asyncio  # noqa: PLC0415 - the registry client only when an image is asked for

    from extender.artifacts.nfd_client import fetch_spec_like_nfd, parse_nfd_platform  # noqa: PLC0415
    from extender.nfd.rules import load_spec  # noqa: PLC0415
    from extender.nfd.spec import SpecError  # noqa: PLC0415
    from extender.registry.client import RegistryClient  # noqa: PLC0415
    from extender.registry.errors import RegistryError  # noqa: PLC0415
    from extender.registry.hosts import HostPolicy  # noqa: PLC0415
    from extender.registry.reference import CompatibilityArtifact  # noqa: PLC0415

    try:
        platform = parse_nfd_platform(args.platform)
    except ValueError as err:
        raise CommandError(str(err)) from None
    _, hosts, credentials = registry_access(args, args.image)

    async def fetch_all() -> list[CompatibilityArtifact]:
        # The person running the command chooses the host: loopback is fine here.
        client = RegistryClient(policy=HostPolicy(allow_loopback=True), hosts=hosts)
        async with client:
            return [
                await fetch_spec_like_nfd(client, image, platform, credentials)
                for image in args.image
            ]

    try:
        fetched = asyncio.run(asyncio.wait_for(fetch_all(), timeout=60))  # NFD's one minute
    except RegistryError as err:
        raise CommandError(f"failed to fetch compatibility spec: {err}") from None
    except TimeoutError:
        raise CommandError("failed to fetch compatibility spec: timed out after 60s") from None
    specs = []
    for image, artifact in zip(args.image, fetched, strict=True):
        try:
            compiled = load_spec(artifact.spec_bytes)
        except SpecError as err:
            raise CommandError(
                f"invalid spec in {image} (artifact {artifact.artifact_digest}): {err}"
            ) from None
        for warning in compiled.warnings:
            print(f"warning: {image}: {warning}", file=sys.stderr)
        specs.append((image, compiled))
    return specs


def _run_validate(args: argparse.Namespace) -> int:
    if not args.spec and not args.image:
        return usage_error("validate", "one of --spec FILE or --image REF is required")
    return run_command("validate", _validate, args)


def _validate(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from extender.nfd import report  # noqa: PLC0415
    from extender.nfd.rules import SetSemantics, evaluate  # noqa: PLC0415
    from extender.nodes.model import FeatureError, load_node_features  # noqa: PLC0415

    secret_stdin = args.registry_password_stdin or args.registry_token_stdin
    if args.spec.count("-") + (args.features == "-") + secret_stdin > 1:
        raise CommandError("only one of --spec, --features and the registry secret can read stdin")
    specs = _load_specs(args.spec) + _load_image_specs(args)
    try:
        nodes = load_node_features(read_input(args.features))
    except FeatureError as err:
        raise CommandError(f"{args.features}: {err}") from None
    if not nodes:
        raise CommandError(f"{args.features}: no NodeFeature objects")
    if args.node is not None:
        if args.node not in nodes:
            known = ", ".join(list(nodes)[:10]) + (", ..." if len(nodes) > 10 else "")
            raise CommandError(f"node {args.node!r} is not in {args.features} (it has {known})")
        nodes = {args.node: nodes[args.node]}
    tags = [tag.strip() for value in args.tags for tag in value.split(",") if tag.strip()]
    semantics = SetSemantics(args.set_semantics)

    cells = []
    worst = EXIT_OK
    for node, features in nodes.items():
        for label, compiled in specs:
            verdict = evaluate(
                compiled,
                features,
                tags=tags,
                semantics=semantics,
                has_features=not features.is_empty,
            )
            cells.append(report.MatrixCell(node, label, compiled.spec, verdict))
            if verdict.compatible:
                code = EXIT_OK
            else:
                code = EXIT_ERROR if verdict.error is not None else EXIT_INCOMPATIBLE
            worst = max(worst, code, key=_SEVERITY_ORDER.index)
            if verdict.error is not None:
                print(
                    f"note: {label} on {node}: evaluation error: {verdict.error}", file=sys.stderr
                )

    style = report.Style(report.use_color(sys.stdout))
    if len(cells) == 1:
        cell = cells[0]
        if args.output == "json":
            output = json.dumps(report.node_report(cell.node, cell.spec, cell.verdict), indent=2)
            print(output)
        else:
            sys.stdout.write(
                report.render_table(
                    cell.node, cell.label, cell.verdict, semantics=semantics, style=style
                )
            )
    elif args.output == "json":
        print(json.dumps(report.matrix_json(cells), indent=2))
    else:
        sys.stdout.write(report.render_matrix(cells, style=style))
    return worst
