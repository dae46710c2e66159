"""The HTTP handlers and middlewares: from a request to the policy and back to an answer.

Owns the verb handlers (``filter``, ``prioritize``, ``preempt``, ``bind``), ``/explain``,
``/healthz``, ``/readyz`` and ``/metrics``, the typed application state they read (``web.AppKey``
constants, set by :mod:`.app`), the one error middleware that maps domain exceptions to HTTP
answers (400 for a bad body, 413 over the size limit, 503 when the policy cannot decide,
except where the verb has its own way to say so; never a traceback), the observing middleware
that times and counts every verb call and writes its access-log line, and how a request body is read
(:func:`request_body`).

A body is read chunk by chunk as aiohttp inflates it (``Content-Encoding: gzip``/``deflate``),
so ``--max-body-bytes`` bounds the inflated size, checked while it streams: a small
compression bomb is refused after ``--max-body-bytes`` of output, not after inflating all of
it. Every chunk held is also taken from one :class:`BodyBudget` shared by all requests
(``--max-inflight-body-bytes``) and given back when the call ends; when it is spent the
request gets 503 (the scheduler retries), so many large bodies at once cannot take the
process past its memory limit. The body must arrive within ``--request-read-timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, http_exceptions, web
from aiohttp.typedefs import Middleware

from extender.artifacts.types import ArtifactSource
from extender.kube.pods import PodNotFoundError, PodReader
from extender.nodes.store import FeatureReader
from extender.policy.decide import Policy, PolicyUnavailableError
from extender.policy.explain import UnknownNodeError, explain
from extender.server import protocol
from extender.server.bind import Binder
from extender.server.config import Settings
from extender.server.logs import fields
from extender.server.metrics import CONTENT_TYPE, VERBS, Metrics

__all__ = [
    "ARTIFACT_SOURCE",
    "BINDER",
    "BODY_BUDGET",
    "FEATURE_STORE",
    "METRICS",
    "POD_READER",
    "POLICY",
    "SETTINGS",
    "BodyBudget",
]

log = logging.getLogger(__name__)
access_log = logging.getLogger("extender.access")

SETTINGS = web.AppKey("settings", Settings)
POLICY = web.AppKey("policy", Policy)
FEATURE_STORE: web.AppKey[FeatureReader] = web.AppKey("feature_store")
ARTIFACT_SOURCE: web.AppKey[ArtifactSource] = web.AppKey("artifact_source")
METRICS = web.AppKey("metrics", Metrics)
POD_READER = web.AppKey("pod_reader", PodReader)
BINDER = web.AppKey("binder", Binder)


class BodyBudget:
    """Bytes of request bodies held in memory at once, over all requests (one event loop, so
    no lock). Taking never waits: a request that does not fit is refused, not queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


BODY_BUDGET = web.AppKey("body_budget", BodyBudget)


@dataclass(slots=True)
class Call:
    """What the access log and the metrics say about one verb call; handlers fill it in."""

    verb: str
    pod: str = ""
    nodes: int = 0
    rejected: int = 0
    unavailable: bool = False


CALL = web.RequestKey("call", Call)

JSON = "application/json"
FILTER_VERBS = ("filter", "filter-best-fit")  # answered with an ExtenderFilterResult


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------------------------
# Request bodies


def _refuse(status: int, text: str, **headers: str) -> web.HTTPException:
    # The rest of the body is not wanted: the connection is closed after the answer.
    error = web.HTTPException(text=text, headers={hdrs.CONNECTION: "close", **headers})
    error.set_status(status)
    return error


@contextlib.asynccontextmanager
async def request_body(request: web.Request) -> AsyncIterator[bytes]:
    """The whole body, inflated, read within the size limit, the shared budget and the read
    timeout; its bytes are given back to the budget when the block ends."""
    settings, budget = request.app[SETTINGS], request.app[BODY_BUDGET]
    limit = settings.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit and not request.headers.get(hdrs.CONTENT_ENCODING):
        raise _refuse(413, f"body of {declared} bytes over {limit}")
    chunks: list[bytes] = []
    held = 0
    try:
        try:
            async with asyncio.timeout(settings.request_read_timeout):
                while chunk := await request.content.readany():
                    if held + len(chunk) > limit:
                        raise _refuse(
                            413,
                            f"body over {limit} bytes (after decompression)",
                        )
                    if not budget.take(len(chunk)):
                        raise _refuse(
                            503,
                            "too many request bodies in flight; retry",
                            **{hdrs.RETRY_AFTER: "1"},
                        )
                    held += len(chunk)
                    chunks.append(chunk)
        except TimeoutError:
            raise _refuse(
                408,
                f"body not received within {settings.request_read_timeout:g}s",
            ) from None
        except (web.RequestPayloadError, http_exceptions.HttpProcessingError) as err:
            # A body that does not inflate or breaks the framing: nothing more can be read
            # from it. Marked finished, so aiohttp does not read it again after the answer.
            request.content.feed_eof()
            reason = str(err).replace("\n", " ").split(", message: ")[-1].strip()
            raise _refuse(400, f"unreadable request body: {reason}") from None
        body = b"".join(chunks)
        chunks.clear()
        yield body
    finally:
        budget.give(held)


# --------------------------------------------------------------------------------------------
# Handlers


def _call(request: web.Request, args: protocol.FilterRequest) -> Call:
    call = request[CALL]
    call.pod, call.nodes = args.pod.key, len(args.names)
    return call


async def _filter(request: web.Request, *, best_fit: bool) -> web.Response:
    async with request_body(request) as body:
        args = protocol.decode_extender_args(body)
    call = _call(request, args)
    policy = request.app[POLICY]
    decision = await policy.filter(args.pod, args.names, args.platforms, best_fit=best_fit)
    call.rejected = len(args.names) - len(decision.passing)
    body = protocol.encode_filter_result(args, decision.passing, unresolvable=decision.unresolvable)
    return web.Response(body=body, content_type=JSON)


async def handle_filter(request: web.Request) -> web.Response:
    return await _filter(request, best_fit=False)


async def handle_filter_best_fit(request: web.Request) -> web.Response:
    """filter, keeping only the passing nodes of the highest fit: the single-call profile
    (scheduler-config/image-compat-scheduler-single-call.yaml) has no prioritize verb."""
    return await _filter(request, best_fit=True)


async def handle_prioritize(request: web.Request) -> web.Response:
    async with request_body(request) as body:
        args = protocol.decode_extender_args(body)
    _call(request, args)
    scores = await request.app[POLICY].prioritize(args.pod, args.names, args.platforms)
    body = protocol.encode_priorities(scores.names, scores.scores)
    return web.Response(body=body, content_type=JSON)


async def handle_preempt(request: web.Request) -> web.Response:
    async with request_body(request) as body:
        args = protocol.decode_preemption_args(body)
    call = request[CALL]
    call.pod, call.nodes = args.pod.key, len(args.victims)
    keep = await request.app[POLICY].preempt(args.pod, list(args.victims))
    call.rejected = len(args.victims) - len(keep)
    body = protocol.encode_preemption_result({node: args.victims[node] for node in keep})
    return web.Response(body=body, content_type=JSON)


async def handle_bind(request: web.Request) -> web.Response:
    """An ``ExtenderBindingResult``: empty when bound, else ``Error`` (the scheduler retries);
    see :mod:`.bind` for what each failure leaves behind."""
    async with request_body(request) as body:
        args = protocol.decode_binding_args(body)
    call = request[CALL]
    call.pod, call.nodes = f"{args.PodNamespace or ''}/{args.PodName or ''}", 1
    error = await request.app[BINDER].bind(args)
    if error:
        log.warning("bind: %s", error)
        call.unavailable = True
    body = protocol.encode(protocol.ExtenderBindingResult(Error=error))
    return web.Response(body=body, content_type=JSON)


async def handle_explain(request: web.Request) -> web.Response:
    """``GET /explain?pod=NS/NAME[&node=NAME]``: :func:`extender.policy.explain.explain` on the
    pod as the API server has it now. 400 without a pod, 404 for an unknown pod or node, 503
    without API access or when filter could not decide either (the error says why)."""
    namespace, _, name = request.query.get("pod", "").partition("/")
    if not namespace or not name or "/" in name:
        return _error(400, "give the pod as ?pod=NAMESPACE/NAME")
    node = request.query.get("node") or None
    reader = request.app[POD_READER]
    if not reader.available:
        return _error(
            503,
            "this server has no Kubernetes API access, so it cannot read pods: run it with "
            "--kubeconfig or in a cluster, or use `image-compat-extender explain` without "
            "--server",
        )
    # Who asked which pod: the answer says which nodes fit it (docs/explain.md).
    shown_node = f" on {node}" if node else ""
    log.info("explain %s/%s%s for %s", namespace, name, shown_node, request.remote)
    try:
        obj = await reader.read(namespace, name)
    except PodNotFoundError as err:
        return _error(404, str(err))
    except Exception as err:  # the client raises ApiException, urllib3 and socket errors
        log.warning("explain: cannot read pod %s/%s: %s", namespace, name, err)
        return _error(503, f"cannot read pod {namespace}/{name}: {type(err).__name__}")
    try:
        answer = await explain(request.app[POLICY], protocol.pod_from_object(obj), node)
    except UnknownNodeError as err:
        return _error(404, str(err))
    return web.json_response(answer)


async def handle_metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def handle_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    snapshot = request.app[FEATURE_STORE].snapshot()
    waiting = list(snapshot.waiting) if not snapshot.synced else []
    if not snapshot.synced and not waiting:
        waiting.append("node features")
    if not request.app[ARTIFACT_SOURCE].ready:
        waiting.append("artifact source")
    if waiting:
        return web.json_response({"status": "not ready", "waiting": waiting}, status=503)
    return web.json_response({"status": "ready", "nodes": len(snapshot.nodes)})


# --------------------------------------------------------------------------------------------
# The one error middleware


_KEPT_HEADERS = (hdrs.ALLOW, hdrs.RETRY_AFTER)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    if not request.content.is_eof() and response.keep_alive is not False:
        # A body the route did not read (a GET with one, an unknown path): aiohttp would
        # read it after the answer, log a traceback for one that does not inflate and drop
        # the kept-alive connection. Read it here within the body limits, then close.
        # Answers that already close (413, 408, 503 of request_body) are not held back.
        with contextlib.suppress(web.HTTPException):
            async with request_body(request):
                pass
        response.force_close()
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except protocol.ProtocolError as err:
        log.info("bad request on %s: %s", request.path, err)
        return _error(400, str(err))
    except PolicyUnavailableError as err:
        route = request.match_info.route.name
        log.info("%s: cannot decide now: %s", route, err)
        if CALL in request:
            request[CALL].unavailable = True
        if route in FILTER_VERBS:
            return web.Response(
                body=protocol.encode_filter_result(None, error=str(err)), content_type=JSON
            )
        if route == "preempt":
            # No candidate left: no pod is evicted for this attempt. An error status would do
            # the same only with ignorable: false; with ignorable: true the scheduler would
            # skip us and evict on nodes nobody checked.
            return web.Response(body=protocol.encode_preemption_result({}), content_type=JSON)
        return _error(503, str(err))
    except web.HTTPException as err:
        if err.status < 400:
            raise
        kept = {str(k): err.headers[k] for k in _KEPT_HEADERS if k in err.headers}
        message = err.text if err.text and not err.text.startswith("<") else err.reason
        if err.status == 413:
            log.warning("request body on %s over the limit: %s", request.path, err.text)
        elif err.status in (408, 503):
            log.warning("request body on %s refused: %s", request.path, err.text)
        response = _error(err.status, message or err.reason, kept or None)
        if err.headers.get(hdrs.CONNECTION, "").lower() == "close":
            response.force_close()
        return response
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal error (see the extender's log)")


# --------------------------------------------------------------------------------------------
# Timing, counting and the access log (outermost, so error answers are seen too)


def _outcome(call: Call, status: int) -> str:
    if call.unavailable:
        return "unavailable"
    if status < 400:
        return "ok"
    return "bad_request" if status < 500 else "error"


def observe_middleware(metrics: Metrics, access_level: int) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        verb = request.match_info.route.name
        if verb not in VERBS:
            response = await handler(request)
            if access_log.isEnabledFor(logging.DEBUG):
                access_log.debug(
                    "%s %s",
                    request.method,
                    request.path,
                    extra=fields(status=response.status, duration_ms=_ms(start)),
                )
            return response
        call = request[CALL] = Call(verb)
        response = await handler(request)
        seconds = time.perf_counter() - start
        outcome = _outcome(call, response.status)
        metrics.observe(verb, outcome, seconds)
        if access_log.isEnabledFor(access_level):
            access_log.log(
                access_level,
                "%s",
                verb,
                extra=fields(
                    verb=verb,
                    pod=call.pod,
                    nodes=call.nodes,
                    rejected=call.rejected,
                    duration_ms=round(seconds * 1000, 3),
                    status=response.status,
                    outcome=outcome,
                ),
            )
        return response

    return observe


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
