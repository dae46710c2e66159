"""The HTTP server kube-scheduler calls: the app factory and composition root, serving.

Owns the aiohttp application (:func:`create_app`), the lifetime of every source, client and
background task (built and closed in ``cleanup_ctx``), and running it with a graceful
shutdown on SIGTERM (:func:`run`). Handlers and middlewares are :mod:`.routes`'s; the decisions
:mod:`extender.policy`'s; the wire format :mod:`.protocol`'s.

HTTP answers:

* ``POST {prefix}filter``: 200 with an ``ExtenderFilterResult``; when the policy cannot decide
  now (features not synced, spec not loaded, registry down) still 200, with ``Error`` set,
  which the scheduler treats as a failed attempt and retries;
* ``POST {prefix}prioritize``: 200 with a ``HostPriorityList``; 503 when the policy cannot
  decide (the scheduler then gives no extender score);
* ``POST {prefix}preempt``: 200 with an ``ExtenderPreemptionResult``: the candidate nodes
  filter would pass, with their victims unchanged; when the policy cannot decide, an empty
  map (no pod is evicted for this attempt);
* a body that is not a valid request (or does not inflate): 400; larger than
  ``--max-body-bytes`` once inflated: 413; not received within ``--request-read-timeout``:
  408; more body bytes in flight than ``--max-inflight-body-bytes``: 503; always a JSON
  ``{"error": ...}``, never a traceback;
* ``POST {prefix}bind``: 200 with an ``ExtenderBindingResult``: the containers with variants
  get the variant chosen for the node, then the pod is bound; ``Error`` when it was not
  bound (:mod:`.bind`); needs Kubernetes API access, as ``/explain`` does;
* ``GET /healthz``: the process serves; ``GET /readyz``: every source has loaded;
* ``GET /metrics``: Prometheus metrics (:mod:`.metrics`).

Every verb call is timed and counted (outside the error middleware, so error answers count
too) and gets one access-log line: verb, pod, node count, rejected count, duration, status
(info level with ``--access-log``, else debug). With ``--tls-cert`` the server speaks HTTPS,
with ``--client-ca`` it requires client certificates; both follow their files
(:mod:`.tls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from extender.artifacts.registry_source import RegistrySource
from extender.artifacts.spec_map import SpecMapError, SpecMapSource
from extender.artifacts.types import ArtifactSource, NoArtifacts
from extender.kube.binding import PodBinder
from extender.kube.client import kubernetes_client_module, load_configuration
from extender.kube.events import KubernetesEvents
from extender.kube.pods import (
    ALL_SCHEDULERS,
    BoundPodWatch,
    DriftLabels,
    PodPrefetcher,
    PodReader,
)
from extender.kube.secrets import KubernetesSecrets
from extender.kube.watch import ListWatch
from extender.nodes.filesource import FeaturesFileSource
from extender.nodes.kubesource import KubernetesFeatureSource
from extender.nodes.store import FeatureReader, FeatureStore
from extender.policy.decide import Policy
from extender.registry.auth import DockerConfig
from extender.registry.client import RegistryClient, RegistryLimits
from extender.registry.hosts import HostPolicy, RegistryHostConfig, load_registry_hosts
from extender.server import drift as drift_
from extender.server import protocol
from extender.server.bind import Binder
from extender.server.config import ArtifactSourceKind, FeatureSourceKind, Settings
from extender.server.logs import configure_logging
from extender.server.metrics import Metrics
from extender.server.routes import (
    ARTIFACT_SOURCE,
    BINDER,
    BODY_BUDGET,
    FEATURE_STORE,
    METRICS,
    POD_READER,
    POLICY,
    SETTINGS,
    BodyBudget,
    error_middleware,
    handle_bind,
    handle_explain,
    handle_filter,
    handle_filter_best_fit,
    handle_healthz,
    handle_metrics,
    handle_preempt,
    handle_prioritize,
    handle_readyz,
    observe_middleware,
)
from extender.server.tls import TLSConfigError, serving_tls

__all__ = [
    "ArtifactSourceError",
    "FeatureSourceError",
    "create_app",
    "registry_source_from",
    "run",
]

log = logging.getLogger(__name__)

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


class ArtifactSourceError(ValueError):
    """The registry source cannot be set up (unreadable registry or docker config file)."""


class FeatureSourceError(Exception):
    """The configured feature source cannot be set up (e.g. no Kubernetes configuration)."""


# --------------------------------------------------------------------------------------------
# Building the parts from settings (no I/O beyond reading configuration files)


def registry_source_from(settings: Settings) -> RegistrySource:
    """The :class:`RegistrySource` ``serve`` runs with (enter ``source.client`` to use it).

    Pods' ``imagePullSecrets`` are read once the API client exists
    (:meth:`RegistrySource.use_pull_secrets`).
    """
    hosts: dict[str, RegistryHostConfig] = {}
    if settings.registry_config is not None:
        try:
            hosts = load_registry_hosts(settings.registry_config)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
            raise ArtifactSourceError(
                f"--registry-config {settings.registry_config}: {err}"
            ) from None
    docker_config = None
    if settings.docker_config is not None:
        try:
            docker_config = DockerConfig.from_file(settings.docker_config)
        except (OSError, ValueError, AttributeError) as err:
            raise ArtifactSourceError(f"--docker-config {settings.docker_config}: {err}") from None
    client = RegistryClient(
        policy=HostPolicy(
            allow=settings.registry_allow,
            deny=settings.registry_deny,
            allow_loopback=settings.registry_allow_loopback,
        ),
        hosts=hosts,
        docker_config=docker_config,
        limits=RegistryLimits(timeout_s=settings.registry_timeout),
    )
    return RegistrySource(client, settings.artifact_cache_config())


def _kube_configuration(settings: Settings, *, required: bool) -> Any:
    """The API client configuration, read now so a bad one stops ``serve`` before it starts.

    ``required`` (the Kubernetes feature source): failure raises :class:`FeatureSourceError`;
    otherwise (pull secrets and prefetch only) it is logged and None is returned.
    """
    try:
        return load_configuration(
            str(settings.kubeconfig) if settings.kubeconfig else None,
            settings.kube_context or None,
        )
    except Exception as err:  # the client raises ConfigException, OSError, ValueError...
        if required:
            raise FeatureSourceError(
                f"no usable Kubernetes configuration ({err}); give --kubeconfig, run in a pod, "
                "or use --features-file for offline use"
            ) from None
        log.warning("no Kubernetes configuration (%s): no prefetch, no pull secrets", err)
        return None


# --------------------------------------------------------------------------------------------
# Resources with a lifetime


def _poller_context(
    name: str, first: Callable[[], object], run: Callable[[], Coroutine[Any, Any, None]]
) -> CleanupContext:
    """Load once (in a worker thread) at startup, then poll in a task until cleanup."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(first)
        task = asyncio.create_task(run(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


@contextlib.asynccontextmanager
async def _watching(watch: ListWatch, name: str) -> AsyncIterator[None]:
    """Run ``watch`` in a task named ``name`` while the body runs; stop it and wait (bounded)
    for its threads afterwards."""
    task = asyncio.create_task(watch.run(), name=name)
    try:
        yield
    finally:
        watch.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=10)


@dataclass(slots=True)
class _KubernetesUse:
    """What the server does with its one API client; the watches exist while it runs."""

    configuration: Any
    store: FeatureStore | None = None  # the NodeFeature/Node watch feeds it
    registry_source: RegistrySource | None = None  # reads pull secrets
    prefetch: bool = False  # watch unbound pods of our schedulers
    drift: bool = False  # watch bound pods, report those whose node no longer suits them
    feature_watch: KubernetesFeatureSource | None = field(default=None, init=False)
    prefetcher: PodPrefetcher | None = field(default=None, init=False)
    drift_monitor: drift_.DriftMonitor | None = field(default=None, init=False)

    def relists(self) -> Mapping[str, int]:
        watch = self.feature_watch
        return watch.relists_by_kind if watch is not None else {}

    def prefetched_pods(self) -> int:
        return self.prefetcher.pods_seen if self.prefetcher is not None else 0

    def drifted(self) -> Mapping[str, int]:
        monitor = self.drift_monitor
        return monitor.drifted_by_namespace() if monitor is not None else {}


def _kubernetes_context(use: _KubernetesUse, settings: Settings) -> CleanupContext:
    """The one API client: built at startup, used by every watch and by the pull-secret reader,
    closed at cleanup after they have stopped."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        api_client = kubernetes_client_module().ApiClient(configuration=use.configuration)
        app[POD_READER].api_client = api_client  # /explain reads pods with it
        app[BINDER].pods.api_client = api_client  # bind reads, patches and binds pods
        try:
            async with contextlib.AsyncExitStack() as running:
                if use.store is not None:
                    log.info(
                        "watching NodeFeatures in %s and Nodes through the API server",
                        ", ".join(settings.watched_namespaces),
                    )
                    use.feature_watch = KubernetesFeatureSource(
                        use.store,
                        api_client,
                        namespaces=settings.watched_namespaces,
                        nfd_namespace=settings.nfd_namespace,
                    )
                    await running.enter_async_context(
                        _watching(use.feature_watch, "kubernetes-features")
                    )
                if use.registry_source is not None:
                    use.registry_source.use_pull_secrets(KubernetesSecrets(api_client))
                    running.callback(use.registry_source.use_pull_secrets, None)
                if use.prefetch:
                    policy, store = app[POLICY], app[FEATURE_STORE]

                    def on_pod(obj: Mapping[str, Any]) -> None:
                        platforms = store.snapshot().platform_values or {""}
                        policy.prefetch(protocol.pod_from_object(obj), sorted(platforms))

                    use.prefetcher = PodPrefetcher(api_client, settings.scheduler_names, on_pod)
                    await running.enter_async_context(_watching(use.prefetcher, "prefetch-pods"))
                if use.drift:
                    monitor = drift_.DriftMonitor(
                        app[POLICY],
                        KubernetesEvents(api_client),
                        any_scheduler=settings.drift_all_pods,
                        labeller=DriftLabels(api_client) if settings.drift_label else None,
                        interval=settings.drift_interval,
                    )
                    use.drift_monitor = monitor
                    streams = (
                        (ALL_SCHEDULERS,) if settings.drift_all_pods else settings.scheduler_names
                    )
                    bound = BoundPodWatch(
                        api_client, streams, monitor.pod_changed, monitor.pods_listed
                    )
                    await running.enter_async_context(drift_.running(monitor))
                    await running.enter_async_context(_watching(bound, "drift-pods"))
                yield
        finally:
            app[POD_READER].api_client = None
            await app[BINDER].aclose()
            app[BINDER].pods.api_client = None
            await asyncio.to_thread(api_client.close)

    return context


def _registry_context(source: RegistrySource) -> CleanupContext:
    """The registry client's HTTP session from startup to cleanup; loads cancelled at the end."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with source.client:
            yield
            await source.aclose()

    return context


async def _policy_context(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[POLICY].aclose()


# --------------------------------------------------------------------------------------------
# The composition root


def create_app(
    settings: Settings,
    *,
    feature_store: FeatureReader | None = None,
    artifact_source: ArtifactSource | None = None,
) -> web.Application:
    """The extender application: every source and client is chosen here, built and closed in
    ``cleanup_ctx``. Tests inject sources; otherwise they come from settings.

    Raises :class:`~extender.artifacts.spec_map.SpecMapError` when ``--spec-map`` cannot be
    read, :class:`ArtifactSourceError` when a registry or docker config file cannot, and
    :class:`FeatureSourceError` when the Kubernetes source has no usable configuration.
    """
    app = web.Application(client_max_size=settings.max_body_bytes)
    kubernetes: _KubernetesUse | None = None
    feature_kind = settings.effective_feature_source
    if feature_store is None:
        owned_store = FeatureStore()
        if feature_kind is FeatureSourceKind.KUBERNETES:
            kubernetes = _KubernetesUse(
                _kube_configuration(settings, required=True), store=owned_store
            )
        elif feature_kind is FeatureSourceKind.FILE and settings.features_file is not None:
            file_source = FeaturesFileSource(
                owned_store,
                settings.features_file,
                interval=settings.file_check_interval,
                nfd_namespace=settings.nfd_namespace,
            )
            app.cleanup_ctx.append(
                _poller_context("features-file", file_source.poll, file_source.run)
            )
        else:
            log.warning("no feature source configured: no node has NFD features")
        feature_store = owned_store
    if artifact_source is None:
        artifact_kind = settings.effective_artifact_source
        if artifact_kind is ArtifactSourceKind.SPEC_MAP and settings.spec_map is not None:
            map_source = SpecMapSource(settings.spec_map, interval=settings.file_check_interval)
            app.cleanup_ctx.append(
                _poller_context("spec-map", map_source.reload_if_changed, map_source.run)
            )
            artifact_source = map_source
        elif artifact_kind is ArtifactSourceKind.REGISTRY:
            registry_source = registry_source_from(settings)
            app.cleanup_ctx.append(_registry_context(registry_source))
            if kubernetes is None and (
                settings.kubeconfig is not None or feature_kind is FeatureSourceKind.KUBERNETES
            ):
                configuration = _kube_configuration(settings, required=False)
                if configuration is not None:
                    kubernetes = _KubernetesUse(configuration)
            if kubernetes is not None:
                kubernetes.registry_source = registry_source
                kubernetes.prefetch = settings.prefetch
            artifact_source = registry_source
        else:
            log.warning("no artifact source configured: every image is neutral")
            artifact_source = NoArtifacts()
    if kubernetes is not None:
        kubernetes.drift = settings.drift
        app.cleanup_ctx.append(_kubernetes_context(kubernetes, settings))
    app[SETTINGS] = settings
    app[BODY_BUDGET] = BodyBudget(settings.max_inflight_body_bytes)
    app[FEATURE_STORE] = feature_store
    app[ARTIFACT_SOURCE] = artifact_source
    app[POLICY] = Policy(settings.policy_config(), feature_store, artifact_source)
    app[POD_READER] = PodReader()
    app[BINDER] = Binder(app[POLICY], PodBinder())
    app[METRICS] = Metrics(
        app[POLICY],
        feature_store,
        artifact_source,
        relists=kubernetes.relists if kubernetes is not None else None,
        prefetched_pods=kubernetes.prefetched_pods if kubernetes is not None else None,
        drifted=kubernetes.drifted if kubernetes is not None else None,
    )
    app.cleanup_ctx.append(_policy_context)
    access_level = logging.INFO if settings.access_log else logging.DEBUG
    app.middlewares.extend((observe_middleware(app[METRICS], access_level), error_middleware))

    prefix = settings.path_prefix
    app.router.add_post(prefix + "filter", handle_filter, name="filter")
    app.router.add_post(prefix + "filter-best-fit", handle_filter_best_fit, name="filter-best-fit")
    app.router.add_post(prefix + "prioritize", handle_prioritize, name="prioritize")
    app.router.add_post(prefix + "preempt", handle_preempt, name="preempt")
    app.router.add_post(prefix + "bind", handle_bind, name="bind")
    app.router.add_get("/explain", handle_explain, name="explain")
    app.router.add_get("/healthz", handle_healthz, name="healthz")
    app.router.add_get("/readyz", handle_readyz, name="readyz")
    app.router.add_get("/metrics", handle_metrics, name="metrics")
    return app


# --------------------------------------------------------------------------------------------
# Serving


async def serve(app: web.Application, settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully: stop accepting, let running
    requests finish (up to ``--shutdown-timeout``), then clean every resource up."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Our own access log (one line per verb call, see _observe_middleware) replaces aiohttp's.
    # keepalive_timeout also bounds the wait for a request's headers: aiohttp closes a
    # connection whose next request is not complete when it fires. The body's own limit is
    # --request-read-timeout (routes.request_body).
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
        keepalive_timeout=settings.keepalive_timeout,
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            ssl_context: ssl.SSLContext | None = None
            scheme = "HTTP"
            if settings.tls_cert is not None and settings.tls_key is not None:
                reloader = await stack.enter_async_context(
                    serving_tls(
                        settings.tls_cert,
                        settings.tls_key,
                        settings.client_ca,
                        interval=settings.tls_reload_interval,
                        on_reload=app[METRICS].tls_reloaded,
                    )
                )
                ssl_context = reloader.context
                scheme = "HTTPS, client certificates required" if reloader.mutual else "HTTPS"
            await runner.setup()
            host, port = settings.listen
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
            for address in runner.addresses:
                host_shown = f"[{address[0]}]" if ":" in address[0] else address[0]
                shown = f"{host_shown}:{address[1]}"
                log.info(
                    "listening on %s (%s; verbs under %s)", shown, scheme, settings.path_prefix
                )
            await stop.wait()
            log.info("shutting down")
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")


def run(settings: Settings) -> int:
    """``image-compat-extender serve``: returns the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        app = create_app(settings)
    except (SpecMapError, ArtifactSourceError, FeatureSourceError) as err:
        log.error("%s", err)
        return 1
    try:
        asyncio.run(serve(app, settings))
    except TLSConfigError as err:
        log.error("%s", err)
        return 1
    except OSError as err:
        log.error("cannot serve on %s:%s: %s", *settings.listen, err.strerror or err)
        return 1
    return 0
