"""Pods from the API server: the unbound-pod watch (pods of our schedulers, handed over as
soon as they appear), the bound-pod watch and drift labels (drift), and :class:`PodReader`,
one pod read on demand (``/explain``)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from extender.kube.events import PodRef
from extender.kube.watch import ListWatch, failure_reason

__all__ = [
    "ALL_SCHEDULERS",
    "DRIFT_ANNOTATION",
    "DRIFT_LABEL",
    "DRIFT_NODE_LABEL",
    "BoundPodWatch",
    "DriftLabels",
    "PodNotFoundError",
    "PodPrefetcher",
    "PodReader",
]

log = logging.getLogger(__name__)


class _PodWatch(ListWatch, abc.ABC):
    """What both pod watches share: one list+watch stream per scheduler name over every
    namespace, selected by a field selector, with what they find handed to the event loop.
    The official client blocks, so streams run in threads; callbacks run on the loop."""

    _purpose = ""  # named in the log when the watch fails

    def __init__(
        self,
        api_client: Any,
        scheduler_names: Sequence[str],
        *,
        page_size: int,
        watch_timeout_s: int,
        backoff_s: tuple[float, float],
    ) -> None:
        super().__init__(
            tuple(dict.fromkeys(scheduler_names)),
            page_size=page_size,
            watch_timeout_s=watch_timeout_s,
            backoff_s=backoff_s,
            list_timeout_s=30,
        )
        self._api_client = api_client
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, *, iterations: int | None = None) -> None:
        """Watch until cancelled or :meth:`stop` (or ``iterations`` outer turns, for tests)."""
        self._loop = asyncio.get_running_loop()
        await super().run(iterations=iterations)

    @abc.abstractmethod
    def field_selector(self, stream: str) -> str:
        """The pods one stream lists and watches."""

    def call(self, stream: str, **kwargs: Any) -> Any:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster

        return client.CoreV1Api(self._api_client).list_pod_for_all_namespaces(
            field_selector=self.field_selector(stream), **kwargs
        )

    def on_failure(self, stream: str, err: Exception) -> None:
        log.warning("pod watch (%s) failed (%s); retrying", self._purpose, failure_reason(err))

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> bool:
        """Run ``callback(*args)`` on the event loop; False when there is no loop to run it."""
        loop = self._loop
        if loop is None:
            return False
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._deliver, callback, args)
        return True

    def _deliver(self, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("handling a pod for %s failed", self._purpose)


# --------------------------------------------------------------------------------------------
# Prefetch: unbound pods of our schedulers, as soon as they appear

PodCallback = Callable[[Mapping[str, Any]], None]


class PodPrefetcher(_PodWatch):
    """Watches unbound pods with one of our ``schedulerName`` s and hands each to ``on_pod``.

    ``on_pod`` runs on the event loop (``serve`` passes one that starts the pod's spec loads
    for every node platform through :meth:`extender.policy.decide.Policy.prefetch`), so by the time
    kube-scheduler calls filter the specs are usually cached. One list+watch stream
    (:class:`~extender.kube.watch.ListWatch`) per scheduler name, with the field selector
    ``spec.schedulerName=NAME,spec.nodeName=``.

    Prefetch is an optimisation: while the API server is unreachable nothing breaks, filter
    just loads on demand within its wait budget.
    """

    def __init__(
        self,
        api_client: Any,
        scheduler_names: Sequence[str],
        on_pod: PodCallback,
        *,
        page_size: int = 200,
        watch_timeout_s: int = 240,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        super().__init__(
            api_client,
            scheduler_names,
            page_size=page_size,
            watch_timeout_s=watch_timeout_s,
            backoff_s=backoff_s,
        )
        self._on_pod = on_pod
        self.pods_seen = 0  # pod events handed to on_pod (tests and metrics read it)

    _purpose = "prefetch"

    @property
    def relists(self) -> int:
        return sum(self.stream_relists.values())

    # -- ListWatch hooks -------------------------------------------------------------------

    def field_selector(self, stream: str) -> str:
        return f"spec.schedulerName={stream},spec.nodeName="

    def on_list_item(self, stream: str, item: Mapping[str, Any]) -> None:
        self._found(item)

    def on_event(self, stream: str, kind: str, obj: Mapping[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._found(obj)

    def _found(self, obj: Mapping[str, Any]) -> None:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return
        if self._hand_over(self._on_pod, obj):
            self.pods_seen += 1


# --------------------------------------------------------------------------------------------
# Drift: running pods bound to a node

ALL_SCHEDULERS = ""  # the stream name of BoundPodWatch that watches pods of every scheduler
_TERMINATED = "status.phase!=Succeeded,status.phase!=Failed"

PodEvent = Callable[[str, Mapping[str, Any] | None, str], None]
ListedCallback = Callable[[str, frozenset[str]], None]


class BoundPodWatch(_PodWatch):
    """Watches pods that are bound to a node and not terminated.

    One stream per scheduler name (field selector ``spec.schedulerName=NAME,spec.nodeName!=``
    and the phase not Succeeded or Failed), or one stream over every pod when the names are
    :data:`ALL_SCHEDULERS`. On the event loop, ``on_pod(uid, obj, stream)`` receives each
    pod as it is listed, added or modified, with ``obj`` None once it is deleted, terminated
    or no longer matches; ``on_listed(stream, uids)`` follows each complete list with the
    uids it held, so pods deleted while the watch was down can be forgotten.
    """

    def __init__(
        self,
        api_client: Any,
        scheduler_names: Sequence[str],
        on_pod: PodEvent,
        on_listed: ListedCallback,
        *,
        page_size: int = 500,
        watch_timeout_s: int = 240,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        super().__init__(
            api_client,
            scheduler_names,
            page_size=page_size,
            watch_timeout_s=watch_timeout_s,
            backoff_s=backoff_s,
        )
        self._on_pod = on_pod
        self._on_listed = on_listed
        self._listing: dict[str, set[str]] = {}

    _purpose = "drift"

    # -- ListWatch hooks -------------------------------------------------------------------

    def field_selector(self, stream: str) -> str:
        selector = f"spec.nodeName!=,{_TERMINATED}"
        if stream != ALL_SCHEDULERS:
            selector = f"spec.schedulerName={stream},{selector}"
        return selector

    def on_list_start(self, stream: str) -> None:
        self._listing[stream] = set()

    def on_list_item(self, stream: str, item: Mapping[str, Any]) -> None:
        uid = _uid(item)
        if uid:
            self._listing[stream].add(uid)
            self._hand_over(self._on_pod, uid, _live(item), stream)

    def on_listed(self, stream: str) -> None:
        self._hand_over(self._on_listed, stream, frozenset(self._listing.pop(stream, ())))

    def on_event(self, stream: str, kind: str, obj: Mapping[str, Any]) -> None:
        uid = _uid(obj)
        if uid:
            self._hand_over(self._on_pod, uid, None if kind == "DELETED" else _live(obj), stream)


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _live(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod, or None once it is being deleted or has terminated."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    return obj


# --------------------------------------------------------------------------------------------
# Drift labels, in the vocabulary of NFD's image compatibility scheduling proposal (KEP-2403)

DRIFT_LABEL = "nfd.k8s-sigs.io/compatibility-drift"
DRIFT_NODE_LABEL = "nfd.k8s-sigs.io/drift-node"
DRIFT_ANNOTATION = "nfd.k8s-sigs.io/drift-time"


class DriftLabels:
    """Marks drifted pods with labels (``compatibility-drift: "true"``, ``drift-node``) and a
    ``drift-time`` annotation, and takes them off again, so that
    ``kubectl get pods -A -l nfd.k8s-sigs.io/compatibility-drift=true`` lists them. Needs
    ``patch`` on pods. A failure is logged, never raised."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self.patched = 0  # patches the API server accepted (tests read it)

    async def mark(self, pod: PodRef, node: str | None, since: str = "") -> bool:
        """Label the pod as drifted on ``node`` since ``since`` (RFC 3339); None clears."""
        return await asyncio.to_thread(self._patch, pod, node, since)

    def _patch(self, pod: PodRef, node: str | None, since: str) -> bool:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster

        # null removes a key (strategic merge patch).
        labels: dict[str, str | None] = {DRIFT_LABEL: "true" if node else None}
        labels[DRIFT_NODE_LABEL] = node
        body = {
            "metadata": {
                # The uid makes the patch fail (409) rather than label a new pod of that name.
                "uid": pod.uid,
                "labels": labels,
                "annotations": {DRIFT_ANNOTATION: since if node else None},
            }
        }
        try:
            client.CoreV1Api(self._api_client).patch_namespaced_pod(
                pod.name, pod.namespace, body, _preload_content=False, _request_timeout=10
            )
        except Exception as err:
            log.warning(
                "cannot %s the drift label of pod %s/%s (%s)",
                "set" if node else "remove",
                pod.namespace,
                pod.name,
                failure_reason(err),
            )
            return False
        self.patched += 1
        return True


# --------------------------------------------------------------------------------------------
# One pod, on demand

READ_TIMEOUT_S = 10


class PodNotFoundError(LookupError):
    """The API server has no such pod."""


class PodReader:
    """Reads one pod through the server's API client, which exists only while the server runs
    with a Kubernetes configuration: ``api_client`` is set then, and None otherwise."""

    def __init__(self) -> None:
        self.api_client: Any = None

    @property
    def available(self) -> bool:
        return self.api_client is not None

    async def read(self, namespace: str, name: str) -> dict[str, Any]:
        """The pod as JSON, as the API server sends it. Raises :class:`PodNotFoundError`, and
        the client's own exceptions for other failures."""
        api_client = self.api_client
        if api_client is None:
            raise RuntimeError("no Kubernetes API client")
        return await asyncio.to_thread(read_pod, api_client, namespace, name)


def read_pod(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    """One pod as JSON (blocking). Raises :class:`PodNotFoundError` on 404."""
    from kubernetes import client  # noqa: PLC0415 - only with a cluster
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        response: Any = client.CoreV1Api(api_client).read_namespaced_pod(
            name, namespace, _preload_content=False, _request_timeout=READ_TIMEOUT_S
        )
    except ApiException as err:
        if err.status == 404:
            raise PodNotFoundError(f"pod {namespace}/{name} not found") from None
        raise
    try:
        obj = json.loads(response.data)
    finally:
        response.release_conn()
    if not isinstance(obj, dict):
        raise ValueError(f"pod {namespace}/{name}: the API server's answer is not an object")
    return obj
