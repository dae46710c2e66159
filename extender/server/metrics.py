"""Prometheus metrics (``GET /metrics``): what the server measures and how it is exposed.

Owns :data:`METRICS`, the single table from which the metrics are built and
``docs/metrics.md`` is generated (:func:`markdown_table`), and :class:`Metrics`, one
``CollectorRegistry`` per application (so several apps in one process never collide).

Two kinds of metric:

* **observed** on each verb call by the server's middleware: request latency and outcome;
* **read at scrape time** from the state that already counts them (the policy's
  :class:`~extender.policy.decide.PolicyStats` and memo, the feature store's snapshot, the watch's
  relist counters, the artifact source's readiness): the request path pays nothing for them.

Label values come from fixed sets (verbs, outcomes, pod modes, rejection classes, relist
kinds) or the cluster's namespaces: never a pod, node or image name, so the number of series
stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from extender.artifacts.registry_source import LOAD_FAILURE_REASONS, ArtifactStats, RegistrySource
from extender.artifacts.types import ArtifactSource
from extender.nodes.store import FeatureReader
from extender.policy.decide import POD_KINDS, REJECTION_CLASSES, Policy

__all__ = [
    "CONTENT_TYPE",
    "METRICS",
    "OUTCOMES",
    "RELIST_KINDS",
    "VERBS",
    "MetricDoc",
    "Metrics",
    "markdown_table",
    "metrics_page",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
VERBS = ("filter", "filter-best-fit", "prioritize", "preempt", "bind")
OUTCOMES = ("ok", "unavailable", "bad_request", "error")
RELIST_KINDS = ("nodefeatures", "nodes")
TLS_RESULTS = ("ok", "error")
ARTIFACT_CACHES = ("answers", "manifests", "referrers", "specs", "secrets")

# Latency buckets from 250 µs (a warm call) to 5 s (kube-scheduler's default httpTimeout).
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricDoc:
    """One metric as exposed (counters with their ``_total`` suffix) and as documented."""

    name: str
    type: str  # counter, gauge or histogram
    # Label name and its possible values; no values: the cluster's own (namespaces).
    labels: tuple[tuple[str, tuple[str, ...]], ...]
    help: str

    @property
    def family(self) -> str:
        """The name prometheus_client's metric objects take (no ``_total``)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


def _doc(name: str, type_: str, help: str, **labels: tuple[str, ...]) -> MetricDoc:
    return MetricDoc(name, type_, tuple(labels.items()), help)


METRICS: tuple[MetricDoc, ...] = (
    _doc(
        "image_compat_request_duration_seconds",
        "histogram",
        "Time to answer a verb call, from its headers read to its answer built (body read, "
        "decoding, policy, encoding); includes any wait for a spec.",
        verb=VERBS,
    ),
    _doc(
        "image_compat_requests_total",
        "counter",
        "Verb calls by outcome: ok; unavailable (filter answered Error or prioritize 503: "
        "features not synced, spec not loaded in time, registry down; bind answered Error: "
        "the pod was not bound); bad_request (4xx: "
        "malformed or oversized body); error (an unexpected failure, see the log).",
        verb=VERBS,
        outcome=OUTCOMES,
    ),
    _doc(
        "image_compat_pods_seen_total",
        "counter",
        "Filter calls by the pod's mode (one per scheduling attempt): enforce, prefer, off; "
        "invalid (an annotation cannot be honoured); not_ours (another schedulerName).",
        mode=POD_KINDS,
    ),
    _doc(
        "image_compat_nodes_rejected_total",
        "counter",
        "Nodes rejected by filter, by reason class: incompatible, no_features, "
        "evaluation_error, invalid_spec, invalid_annotation; lower_fit (filter-best-fit only: "
        "compatible, but another node fits better).",
        reason=REJECTION_CLASSES,
    ),
    _doc(
        "image_compat_memo_hits_total",
        "counter",
        "Verdicts answered from the memo (a node configuration already evaluated for a spec).",
    ),
    _doc(
        "image_compat_memo_misses_total",
        "counter",
        "Verdicts evaluated (a new spec, tags or node configuration).",
    ),
    _doc(
        "image_compat_memo_entries", "gauge", "Verdicts held in the memo (bounded by --memo-size)."
    ),
    _doc(
        "image_compat_subset_problems_total",
        "counter",
        "Filter calls that rejected every offered node while a node not offered would pass "
        "(see percentageOfNodesToScore in scheduler-config/).",
    ),
    _doc(
        "image_compat_spec_waits_total",
        "counter",
        "Calls that had to wait for a spec to load (not in the artifact source's cache).",
    ),
    _doc(
        "image_compat_spec_wait_timeouts_total",
        "counter",
        "Waits that outlasted --spec-wait-budget (filter answered Error; the load goes on).",
    ),
    _doc(
        "image_compat_spec_source_failures_total",
        "counter",
        "Spec lookups the artifact source could not answer (registry down, unreadable file).",
    ),
    _doc(
        "image_compat_artifact_source_ready",
        "gauge",
        "1 when the artifact source can answer, else 0.",
    ),
    _doc(
        "image_compat_feature_store_synced",
        "gauge",
        "1 when every feature source has delivered its full state, else 0 (filter answers "
        "Error meanwhile).",
    ),
    _doc("image_compat_feature_store_nodes", "gauge", "Nodes with NFD features in the store."),
    _doc(
        "image_compat_feature_relists_total",
        "counter",
        "Full lists of NodeFeatures and Nodes by the API-server watch (the first one, then one "
        "per expired watch or reconnect); 0 with other feature sources.",
        kind=RELIST_KINDS,
    ),
    _doc(
        "image_compat_artifact_cache_hits_total",
        "counter",
        "Registry source cache hits: answers (the request path's per-image answer), "
        "manifests (tag to digest), referrers (listings), specs (compiled, by artifact "
        "digest), secrets (pull secrets read). 0 with other artifact sources.",
        cache=ARTIFACT_CACHES,
    ),
    _doc(
        "image_compat_artifact_cache_misses_total",
        "counter",
        "Registry source cache misses, by the same caches as the hits.",
        cache=ARTIFACT_CACHES,
    ),
    _doc(
        "image_compat_artifact_loads_total",
        "counter",
        "Spec loads that did work (one per image, platform and pull context at a time).",
    ),
    _doc(
        "image_compat_artifact_load_failures_total",
        "counter",
        "Spec loads that ended in a failure, by reason: unavailable (refused, reset, timed "
        "out, 5xx), auth, not_found, protocol (an answer that cannot be used), refused (host "
        "policy), reference (invalid), timeout (over --load-timeout), internal, error.",
        reason=LOAD_FAILURE_REASONS,
    ),
    _doc(
        "image_compat_artifact_stale_answers_total",
        "counter",
        "Failures hidden by a previous good answer still within --stale-for (a registry "
        "outage the scheduler did not notice).",
    ),
    _doc(
        "image_compat_artifact_refreshes_total",
        "counter",
        "Background refreshes started because a cached answer expired.",
    ),
    _doc(
        "image_compat_registry_requests_total",
        "counter",
        "HTTP requests sent to registries (tokens, manifests, referrers, blobs).",
    ),
    _doc(
        "image_compat_prefetch_pods_total",
        "counter",
        "Pod events (unbound pods of our schedulers) that started a spec prefetch.",
    ),
    _doc(
        "image_compat_drifted_pods",
        "gauge",
        "Running pods whose node no longer satisfies their images' specs (docs/drift.md), "
        "by the pod's namespace; a namespace without drifted pods has no series.",
        namespace=(),
    ),
    _doc(
        "image_compat_tls_reloads_total",
        "counter",
        "Serving certificate reloads after a change of --tls-cert, --tls-key or --client-ca: "
        "ok, or error (the previous certificate stays in use; see the log).",
        result=TLS_RESULTS,
    ),
)

_BY_NAME = {metric.name: metric for metric in METRICS}


def _help(name: str) -> str:
    return _BY_NAME[name].help


class _StateCollector(Collector):
    """Reads the counters the policy, the store and the sources keep, at scrape time."""

    def __init__(
        self,
        policy: Policy,
        store: FeatureReader,
        source: ArtifactSource,
        relists: Callable[[], Mapping[str, int]] | None,
        prefetched_pods: Callable[[], int] | None,
        *,
        drifted: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self._drifted = drifted
        self._policy = policy
        self._store = store
        self._source = source
        self._relists = relists
        self._prefetched_pods = prefetched_pods

    def collect(self) -> Iterable[Metric]:
        stats = self._policy.stats
        memo = self._policy.memo
        yield _labelled_counter("image_compat_pods_seen_total", "mode", stats.pods)
        yield _labelled_counter("image_compat_nodes_rejected_total", "reason", stats.rejections)
        yield _counter("image_compat_memo_hits_total", memo.hits)
        yield _counter("image_compat_memo_misses_total", memo.misses)
        yield _gauge("image_compat_memo_entries", len(memo))
        yield _counter("image_compat_subset_problems_total", stats.subset_problems)
        yield _counter("image_compat_spec_waits_total", stats.spec_waits)
        yield _counter("image_compat_spec_wait_timeouts_total", stats.spec_wait_timeouts)
        yield _counter("image_compat_spec_source_failures_total", stats.source_failures)
        yield _gauge("image_compat_artifact_source_ready", int(bool(self._source.ready)))
        snapshot = self._store.snapshot()
        yield _gauge("image_compat_feature_store_synced", int(snapshot.synced))
        yield _gauge("image_compat_feature_store_nodes", len(snapshot.nodes))
        relists = self._relists() if self._relists is not None else {}
        yield _labelled_counter(
            "image_compat_feature_relists_total",
            "kind",
            {kind: relists.get(kind, 0) for kind in RELIST_KINDS},
        )
        yield from self._artifact_metrics()
        pods = self._prefetched_pods() if self._prefetched_pods is not None else 0
        yield _counter("image_compat_prefetch_pods_total", pods)
        drifted = GaugeMetricFamily(
            "image_compat_drifted_pods", _help("image_compat_drifted_pods"), labels=["namespace"]
        )
        for namespace, count in sorted((self._drifted() if self._drifted else {}).items()):
            drifted.add_metric([namespace], count)
        yield drifted

    def _artifact_metrics(self) -> Iterable[Metric]:
        source = self._source
        stats = source.stats if isinstance(source, RegistrySource) else ArtifactStats()
        caches = stats.caches()
        hits = {name: caches[name].hits for name in ARTIFACT_CACHES}
        misses = {name: caches[name].misses for name in ARTIFACT_CACHES}
        yield _labelled_counter("image_compat_artifact_cache_hits_total", "cache", hits)
        yield _labelled_counter("image_compat_artifact_cache_misses_total", "cache", misses)
        yield _counter("image_compat_artifact_loads_total", stats.loads)
        yield _labelled_counter(
            "image_compat_artifact_load_failures_total", "reason", stats.failures_by_reason
        )
        yield _counter("image_compat_artifact_stale_answers_total", stats.stale_served)
        yield _counter("image_compat_artifact_refreshes_total", stats.refreshes)
        requests = source.client.requests if isinstance(source, RegistrySource) else 0
        yield _counter("image_compat_registry_requests_total", requests)


def _counter(name: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(_BY_NAME[name].family, _help(name), value=value)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, _help(name), value=value)


def _labelled_counter(name: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(_BY_NAME[name].family, _help(name), labels=[label])
    for value, count in values.items():
        family.add_metric([value], count)
    return family


class Metrics:
    """The application's metrics: observed ones, plus a collector reading live state."""

    def __init__(
        self,
        policy: Policy,
        store: FeatureReader,
        source: ArtifactSource,
        *,
        relists: Callable[[], Mapping[str, int]] | None = None,
        prefetched_pods: Callable[[], int] | None = None,
        drifted: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        duration = _BY_NAME["image_compat_request_duration_seconds"]
        self._duration = Histogram(
            duration.family,
            duration.help,
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        requests = _BY_NAME["image_compat_requests_total"]
        self._requests = Counter(
            requests.family, requests.help, ["verb", "outcome"], registry=self.registry
        )
        reloads = _BY_NAME["image_compat_tls_reloads_total"]
        self._tls_reloads = Counter(
            reloads.family, reloads.help, ["result"], registry=self.registry
        )
        # Every series exists from the start (at 0), so rates and alerts need no "absent()".
        self._observers: dict[tuple[str, str], Callable[[float], None]] = {}
        for verb in VERBS:
            histogram = self._duration.labels(verb)
            for outcome in OUTCOMES:
                counter = self._requests.labels(verb, outcome)
                self._observers[verb, outcome] = _observer(histogram.observe, counter.inc)
        for result in TLS_RESULTS:
            self._tls_reloads.labels(result)
        self.registry.register(
            _StateCollector(policy, store, source, relists, prefetched_pods, drifted=drifted)
        )

    def observe(self, verb: str, outcome: str, seconds: float) -> None:
        """One verb call. Unknown verbs or outcomes are ignored (labels stay bounded)."""
        observer = self._observers.get((verb, outcome))
        if observer is not None:
            observer(seconds)

    def tls_reloaded(self, ok: bool) -> None:
        self._tls_reloads.labels("ok" if ok else "error").inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def _observer(
    observe: Callable[[float], None], increment: Callable[[], None]
) -> Callable[[float], None]:
    def both(seconds: float) -> None:
        observe(seconds)
        increment()

    return both


def markdown_table() -> str:
    """The metrics reference (docs/metrics.md is generated from it)."""
    rows = ["| Metric | Type | Labels | Meaning |", "|---|---|---|---|"]
    for metric in METRICS:
        labels = (
            "<br>".join(
                f"`{name}`: {', '.join(values) or 'as in the cluster'}"
                for name, values in metric.labels
            )
            or "none"
        )
        rows.append(f"| `{metric.name}` | {metric.type} | {labels} | {metric.help} |")
    return "\n".join(rows) + "\n"


_METRICS_PAGE = """\
# Metrics

<!-- Generated from extender/server/metrics.py (METRICS) by `make docs`; edit there, not here.
     tests/server/test_docs.py fails when this file is stale. -->

`GET /metrics` on the extender's listening address serves Prometheus' text format (over
HTTPS, with a client certificate, when `--tls-cert` and `--client-ca` are set).

```sh
curl -s http://127.0.0.1:8888/metrics | grep '^image_compat_'
```

```yaml
# A Prometheus scrape job (plain HTTP; the Service or Pod address of the extender)
scrape_configs:
  - job_name: image-compat-extender
    static_configs:
      - targets: ["image-compat-extender.kube-system.svc:8888"]
```

Label values come from the fixed sets listed below, or are namespaces; no metric is labelled
with a pod, node or image name, so the number of series grows with neither pods nor nodes.
Counters that are read from the server's state start at 0 and reset when it restarts. Useful
queries:

```promql
# p99 latency per verb over 5 minutes (keep it well under the scheduler's httpTimeout)
histogram_quantile(0.99, sum by (verb, le) (rate(image_compat_request_duration_seconds_bucket[5m])))
# Share of filter calls the scheduler had to retry (features not synced, spec not loaded)
sum(rate(image_compat_requests_total{verb="filter",outcome="unavailable"}[5m]))
  / sum(rate(image_compat_requests_total{verb="filter"}[5m]))
# Memo hit ratio (identical hardware evaluated once)
rate(image_compat_memo_hits_total[5m])
  / (rate(image_compat_memo_hits_total[5m]) + rate(image_compat_memo_misses_total[5m]))
# Pods that may be stuck by the subset problem
increase(image_compat_subset_problems_total[1h]) > 0
# Running pods whose node no longer satisfies their images (docs/drift.md); every replica
# reports the same count
max by (namespace) (image_compat_drifted_pods) > 0
```

"""


def metrics_page() -> str:
    """docs/metrics.md: how to scrape, then one row per metric (:func:`markdown_table`)."""
    return _METRICS_PAGE + markdown_table()
