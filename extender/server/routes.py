"""The HTTP handlers and middlewares: from a request to the policy and back to an answer.

Owns the verb handlers (``filter``, ``prioritize``, ``preempt``), ``/healthz``, ``/readyz``
and ``/metrics``, the typed application state they read (``web.AppKey`` constants, set by
:mod:`.app`), the one error middleware that maps domain exceptions to HTTP answers (400 for a
bad body, 413 over the size limit, 503 when the policy cannot decide, except where the verb
has its own way to say so, never a traceback), and the observing
middleware that times and counts every verb call and writes its access-log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from extender.artifacts.types import ArtifactSource
from extender.nodes.store import FeatureReader
from extender.policy.decide import Policy, PolicyUnavailableError
from extender.server import protocol
from extender.server.config import Settings
from extender.server.logs import fields
from extender.server.metrics import CONTENT_TYPE, VERBS, Metrics

__all__ = [
    "ARTIFACT_SOURCE",
    "FEATURE_STORE",
    "METRICS",
    "POLICY",
    "SETTINGS",
]

log = logging.getLogger(__name__)
access_log = logging.getLogger("extender.access")

SETTINGS = web.AppKey("settings", Settings)
POLICY = web.AppKey("policy", Policy)
FEATURE_STORE: web.AppKey[FeatureReader] = web.AppKey("feature_store")
ARTIFACT_SOURCE: web.AppKey[ArtifactSource] = web.AppKey("artifact_source")
METRICS = web.AppKey("metrics", Metrics)


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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------------------------
# Handlers


def _call(request: web.Request, args: protocol.FilterRequest) -> Call:
    call = request[CALL]
    call.pod, call.nodes = args.pod.key, len(args.nodes)
    return call


async def handle_filter(request: web.Request) -> web.Response:
    args = protocol.decode_extender_args(await request.read())
    call = _call(request, args)
    decision = await request.app[POLICY].filter(args.pod, args.nodes)
    call.rejected = len(decision.unresolvable)
    body = protocol.encode_filter_result(args, decision.passing, unresolvable=decision.unresolvable)
    return web.Response(body=body, content_type=JSON)


async def handle_prioritize(request: web.Request) -> web.Response:
    args = protocol.decode_extender_args(await request.read())
    _call(request, args)
    scores = await request.app[POLICY].prioritize(args.pod, args.nodes)
    return web.Response(body=protocol.encode_priorities(scores), content_type=JSON)


async def handle_preempt(request: web.Request) -> web.Response:
    args = protocol.decode_preemption_args(await request.read())
    call = request[CALL]
    call.pod, call.nodes = args.pod.key, len(args.victims)
    keep = await request.app[POLICY].preempt(args.pod, list(args.victims))
    call.rejected = len(args.victims) - len(keep)
    body = protocol.encode_preemption_result({node: args.victims[node] for node in keep})
    return web.Response(body=body, content_type=JSON)


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


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        if route == "filter":
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
        allow = {"Allow": err.headers["Allow"]} if "Allow" in err.headers else None
        message = err.text if err.text and not err.text.startswith("<") else err.reason
        if isinstance(err, web.HTTPRequestEntityTooLarge):
            log.warning("request body on %s over the limit: %s", request.path, err.text)
        return _error(err.status, message or err.reason, allow)
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
