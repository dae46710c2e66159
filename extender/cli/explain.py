"""``explain``: per node, why a pod's images fit or not (from a server, or evaluated locally)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass
from extender.cli.common import EXIT_INCOMPATIBLE, EXIT_OK, CommandError, run_command, usage_error

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


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        return usage_error("explain", "give the pod as NAMESPACE/NAME")
    return run_command("explain", _explain, args)


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
            raise CommandError(f"TLS files: {err}") from None
    try:
        with urllib.request.urlopen(url, timeout=120, context=context) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read())["error"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        raise CommandError(f"{args.server}: {err.code}: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise CommandError(f"{args.server}: {getattr(err, 'reason', err)}") from None
    if not isinstance(answer, dict) or "nodes" not in answer:
        raise CommandError(f"{args.server}: not an explain answer")
    return answer


def _explain_local(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio  # noqa: PLC0415
    import dataclasses  # noqa: PLC0415
    import os  # noqa: PLC0415

    from extender.server import config  # noqa: PLC0415

    try:
        settings = config.settings_from(args, os.environ)
    except config.ConfigError as err:
        raise CommandError(str(err)) from None
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
        raise CommandError(str(err)) from None
    runner = web.AppRunner(application, handle_signals=False)
    await runner.setup()  # starts the sources (cleanup_ctx); nothing listens
    try:
        reader = application[POD_READER]
        if not reader.available:
            raise CommandError("no Kubernetes configuration: give --kubeconfig")
        namespace, _, name = pod.partition("/")
        try:
            obj = await reader.read(namespace, name)
        except PodNotFoundError as err:
            raise CommandError(str(err)) from None
        store = application[FEATURE_STORE]
        deadline = time.monotonic() + EXPLAIN_SYNC_TIMEOUT_S
        while not store.snapshot().synced and time.monotonic() < deadline:  # noqa: ASYNC110 - the store has no change event
            await asyncio.sleep(0.1)
        try:
            return await explain(application[POLICY], protocol.pod_from_object(obj), node)
        except (PolicyUnavailableError, UnknownNodeError, protocol.ProtocolError) as err:
            raise CommandError(str(err)) from None
    finally:
        await runner.cleanup()
