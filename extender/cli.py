"""The ``image-compat-extender`` command line: one subcommand per job.

Owns argument parsing and dispatch only; each subcommand's work lives in the module that
owns the concept (server, report, artifacts, ...). Exit codes: 0 success, 1 error, 2 usage,
and 3 where a command reports "not compatible".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from extender import __version__

if TYPE_CHECKING:
    from extender.artifacts.attach import Attached
    from extender.nfd.lint import CheckResult
    from extender.nfd.report import Style
    from extender.nfd.rules import CompiledSpec
    from extender.registry.auth import DockerConfig
    from extender.registry.hosts import RegistryHostConfig
    from extender.registry.reference import ImageReference

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
    _add_validate(subparsers)
    _add_check_spec(subparsers)
    _add_attach(subparsers)
    _add_explain(subparsers)
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


def _add_validate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_registry_access(registry, docker_config_default="none, as nfd")
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


def _add_registry_access(group: argparse._ArgumentGroup, *, docker_config_default: str) -> None:
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


# Exit codes from best to worst, for summarising several verdicts.
_SEVERITY_ORDER = (EXIT_OK, EXIT_INCOMPATIBLE, EXIT_ERROR)


class _CommandError(Exception):
    """Ends a command with EXIT_ERROR and this message on stderr."""


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise _CommandError(f"cannot read {path}: {err.strerror or err}") from None


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
            compiled = load_spec(_read_input(path))
        except SpecError as err:
            raise _CommandError(f"invalid spec {path}: {err}") from None
        for warning in compiled.warnings:
            print(f"warning: {path}: {warning}", file=sys.stderr)
        specs.append((label, compiled))
    return specs


def _registry_access(
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
        raise _CommandError(
            "cannot use --registry-token-stdin and --registry-password-stdin at the same time"
        )
    if args.registry_password_stdin and not args.registry_username:
        raise _CommandError("--registry-password-stdin needs --registry-username")
    refs = []
    for image in images:
        try:
            refs.append(ImageReference.parse(image))
        except RegistryError as err:
            raise _CommandError(str(err)) from None
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
            raise _CommandError(f"docker config {docker_config}: {err}") from None
    return refs, hosts, credentials


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
        raise _CommandError(str(err)) from None
    _, hosts, credentials = _registry_access(args, args.image)

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
        raise _CommandError(f"failed to fetch compatibility spec: {err}") from None
    except TimeoutError:
        raise _CommandError("failed to fetch compatibility spec: timed out after 60s") from None
    specs = []
    for image, artifact in zip(args.image, fetched, strict=True):
        try:
            compiled = load_spec(artifact.spec_bytes)
        except SpecError as err:
            raise _CommandError(
                f"invalid spec in {image} (artifact {artifact.artifact_digest}): {err}"
            ) from None
        for warning in compiled.warnings:
            print(f"warning: {image}: {warning}", file=sys.stderr)
        specs.append((image, compiled))
    return specs


def _closed_pipe() -> int:
    """stdout's reader went away (``| head``): stop quietly, as a killed writer would."""
    import os  # noqa: PLC0415

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush is quiet
    return EXIT_ERROR


def _command(name: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand: its own errors become one line and exit 1; a closed pipe is quiet."""
    try:
        return run(args)
    except _CommandError as err:
        print(f"image-compat-extender {name}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return _closed_pipe()


def _run_validate(args: argparse.Namespace) -> int:
    if not args.spec and not args.image:
        print(
            "image-compat-extender validate: error: one of --spec FILE or --image REF is required",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return _command("validate", _validate, args)


def _validate(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from extender.nfd import report  # noqa: PLC0415
    from extender.nfd.rules import SetSemantics, evaluate  # noqa: PLC0415
    from extender.nodes.model import FeatureError, load_node_features  # noqa: PLC0415

    secret_stdin = args.registry_password_stdin or args.registry_token_stdin
    if args.spec.count("-") + (args.features == "-") + secret_stdin > 1:
        raise _CommandError("only one of --spec, --features and the registry secret can read stdin")
    specs = _load_specs(args.spec) + _load_image_specs(args)
    try:
        nodes = load_node_features(_read_input(args.features))
    except FeatureError as err:
        raise _CommandError(f"{args.features}: {err}") from None
    if not nodes:
        raise _CommandError(f"{args.features}: no NodeFeature objects")
    if args.node is not None:
        if args.node not in nodes:
            known = ", ".join(list(nodes)[:10]) + (", ..." if len(nodes) > 10 else "")
            raise _CommandError(f"node {args.node!r} is not in {args.features} (it has {known})")
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


def _add_check_spec(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    return _command("check-spec", _check_spec, args)


def _check_spec(args: argparse.Namespace) -> int:
    from extender.nfd import report  # noqa: PLC0415
    from extender.nfd.lint import check_spec  # noqa: PLC0415

    style = report.Style(report.use_color(sys.stdout))
    failed = False
    for path in args.files:
        try:
            result = check_spec(_read_input(path))
        except _CommandError as err:
            print(f"{path}: {style.bad('error')}: {err}")
            failed = True
            continue
        _print_findings(path, result, style)
        if result.errors or (args.strict and result.warnings):
            failed = True
    return EXIT_ERROR if failed else EXIT_OK


def _print_findings(
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


def _add_attach(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_registry_access(
        registry,
        docker_config_default="$DOCKER_CONFIG/config.json or ~/.docker/config.json when it exists",
    )
    parser.set_defaults(run=_run_attach)


def _run_attach(args: argparse.Namespace) -> int:
    return _command("attach", _attach, args)


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
        raise _CommandError("only one of the spec and the registry secret can read stdin")
    try:
        platforms = [Platform.parse(text) for text in args.platform]
        created = parse_created(args.created) if args.created else rfc3339_now()
    except ValueError as err:
        raise _CommandError(str(err)) from None
    spec = _read_input(args.spec)
    result = check_spec(spec)
    if result.findings:
        _print_findings(
            args.spec, result, report.Style(report.use_color(sys.stderr)), file=sys.stderr
        )
    if result.errors or (args.strict and result.warnings):
        what = "errors" if result.errors else "warnings (--strict)"
        raise _CommandError(f"{args.spec} has {what}: nothing attached")
    (ref,), hosts, credentials = _registry_access(args, [args.image], default_docker_config=True)
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
        raise _CommandError(f"failed to attach to {args.image}: {err}") from None
    except TimeoutError:
        raise _CommandError(f"failed to attach to {args.image}: timed out after 120s") from None
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


# --------------------------------------------------------------------------------------------
# explain: why a pod fits each node, from a running server or evaluated here

_EXPLAIN_EPILOG = """\
exit status: 0 answered (with --node: filter passes the node); 3 with --node, filter rejects
it; 1 error (no such pod or node, a spec not loaded yet, features not synced); 2 usage.

examples:
  image-compat-extender explain shop/web --kubeconfig ~/.kube/config
  image-compat-extender explain shop/web --node worker-1 --output json
  image-compat-extender explain shop/web --server https://extender.example:8888 \\
      --cacert ca.pem --cert client.pem --key client-key.pem
"""

EXPLAIN_SYNC_TIMEOUT_S = 60.0  # NodeFeatures and Nodes listed, locally
EXPLAIN_SPEC_WAIT_S = 60.0  # a person waits for a registry longer than the scheduler does


def _add_explain(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from extender.server import config  # noqa: PLC0415

    parser = subparsers.add_parser(
        "explain",
        help="show why a pod fits each node: decision, fit, score, failing rules",
        description="Explain the extender's decision for one pod on every node (or one): "
        "whether filter passes the node, its fit and score, and for each image each set's "
        "rules, with the failing expressions and the node's values. With --server the "
        "running extender answers (GET /explain); without it the pod, NodeFeatures and Nodes "
        "are read from the cluster and specs from the registries here, with serve's flags "
        "and IMAGE_COMPAT_* variables.",
        epilog=_EXPLAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pod", metavar="NAMESPACE/NAME", help="the pod")
    parser.add_argument("--node", metavar="NAME", help="explain this node only")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    remote = parser.add_argument_group("asking a running extender")
    remote.add_argument(
        "--server", metavar="URL", help="the extender's URL (http:// or https://, its port)"
    )
    remote.add_argument("--cacert", metavar="PEM", help="CA bundle that verifies the server")
    remote.add_argument("--cert", metavar="PEM", help="client certificate (mTLS)")
    remote.add_argument("--key", metavar="PEM", help="client certificate's key (mTLS)")
    local = parser.add_argument_group(
        "evaluating here (without --server): serve's options, e.g. --kubeconfig, "
        "--registry-config, --scheduler-name"
    )
    config.add_arguments(local)  # type: ignore[arg-type]  # a group takes add_argument too
    parser.set_defaults(run=_run_explain)


def _run_explain(args: argparse.Namespace) -> int:
    namespace, _, name = args.pod.partition("/")
    if not namespace or not name or "/" in name:
        print(
            "image-compat-extender explain: error: give the pod as NAMESPACE/NAME",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return _command("explain", _explain, args)


def _explain(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from extender.nfd import report  # noqa: PLC0415
    from extender.policy.explain import render_explanation  # noqa: PLC0415

    data = _explain_remote(args) if args.server else _explain_local(args)
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(render_explanation(data, style=report.Style(report.use_color(sys.stdout))))
    if args.node is not None and not all(row["passes"] for row in data["nodes"]):
        return EXIT_INCOMPATIBLE
    return EXIT_OK


def _explain_remote(args: argparse.Namespace) -> dict[str, Any]:
    import json  # noqa: PLC0415
    import ssl  # noqa: PLC0415
    import urllib.error  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    query = {"pod": args.pod, **({"node": args.node} if args.node else {})}
    url = args.server.rstrip("/") + "/explain?" + urllib.parse.urlencode(query)
    context = None
    if url.startswith("https://"):
        try:
            context = ssl.create_default_context(cafile=args.cacert)
            if args.cert:
                context.load_cert_chain(args.cert, args.key)
        except (OSError, ssl.SSLError) as err:
            raise _CommandError(f"TLS files: {err}") from None
    try:
        with urllib.request.urlopen(url, timeout=120, context=context) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read())["error"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        raise _CommandError(f"{args.server}: {err.code}: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise _CommandError(f"{args.server}: {getattr(err, 'reason', err)}") from None
    if not isinstance(answer, dict) or "nodes" not in answer:
        raise _CommandError(f"{args.server}: not an explain answer")
    return answer


def _explain_local(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio  # noqa: PLC0415
    import dataclasses  # noqa: PLC0415
    import os  # noqa: PLC0415

    from extender.server import config  # noqa: PLC0415

    try:
        settings = config.settings_from(args, os.environ)
    except config.ConfigError as err:
        raise _CommandError(str(err)) from None
    # serve's composition, without listening and without the pod watch; a person waits for
    # specs longer than the scheduler's budget allows.
    settings = dataclasses.replace(settings, prefetch=False, spec_wait_budget=EXPLAIN_SPEC_WAIT_S)
    return asyncio.run(_explain_in_app(settings, args.pod, args.node))


async def _explain_in_app(settings: Any, pod: str, node: str | None) -> dict[str, Any]:
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    from aiohttp import web  # noqa: PLC0415

    from extender.kube.pods import PodNotFoundError  # noqa: PLC0415
    from extender.policy.decide import PolicyUnavailableError  # noqa: PLC0415
    from extender.policy.explain import UnknownNodeError, explain  # noqa: PLC0415
    from extender.server import app as server_app  # noqa: PLC0415
    from extender.server import protocol  # noqa: PLC0415
    from extender.server.routes import FEATURE_STORE, POD_READER, POLICY  # noqa: PLC0415

    try:
        application = server_app.create_app(settings)
    except (
        server_app.ArtifactSourceError,
        server_app.FeatureSourceError,
        ValueError,
    ) as err:
        raise _CommandError(str(err)) from None
    runner = web.AppRunner(application, handle_signals=False)
    await runner.setup()  # starts the sources (cleanup_ctx); nothing listens
    try:
        reader = application[POD_READER]
        if not reader.available:
            raise _CommandError("no Kubernetes configuration: give --kubeconfig")
        namespace, _, name = pod.partition("/")
        try:
            obj = await reader.read(namespace, name)
        except PodNotFoundError as err:
            raise _CommandError(str(err)) from None
        store = application[FEATURE_STORE]
        deadline = time.monotonic() + EXPLAIN_SYNC_TIMEOUT_S
        while not store.snapshot().synced and time.monotonic() < deadline:  # noqa: ASYNC110 - the store has no change event
            await asyncio.sleep(0.1)
        try:
            return await explain(application[POLICY], protocol.pod_from_object(obj), node)
        except (PolicyUnavailableError, UnknownNodeError, protocol.ProtocolError) as err:
            raise _CommandError(str(err)) from None
    finally:
        await runner.cleanup()
