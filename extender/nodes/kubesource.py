"""Live node features from the Kubernetes API: NodeFeature and Node watches into the store.

Owns :class:`KubernetesFeatureSource`: the NodeFeature objects of the configured namespaces
and the Nodes' platform labels, listed then watched (:class:`~extender.kube.watch.ListWatch`),
parsed as they arrive, merged per node in NFD's order, and published to the
:class:`~extender.nodes.store.FeatureStore`; and the source's readiness.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extender.kube.nodefeatures import (
    ALL_NAMESPACES,
    ARCH_LABEL,
    LIST_TIMEOUT_S,
    NODEFEATURE_GROUP,
    NODEFEATURE_VERSION,
    OS_LABEL,
    list_node_metadata,
    list_nodefeatures,
)
from extender.kube.watch import ListWatch, failure_reason
from extender.nodes.model import (
    DEFAULT_INTERNER,
    DEFAULT_NFD_NAMESPACE,
    FeatureError,
    Interner,
    NodeFeatures,
    _node_name,
    _sort_key,
    merge_node_features,
    merge_parsed,
)
from extender.nodes.store import FeatureStore

__all__ = [
    "KubernetesFeatureSource",
]

log = logging.getLogger(__name__)

_NF_PREFIX = "nodefeatures:"


@dataclass(slots=True)
class _ObjectFeatures:
    node: str
    sort_key: tuple[bool, str, str]
    features: NodeFeatures


class KubernetesFeatureSource(ListWatch):
    """NodeFeature and Node objects from the API server, listed then watched, into the store.

    Streams (:class:`~extender.kube.watch.ListWatch`): NodeFeatures
    (``nfd.k8s-sigs.io/v1alpha1``), one stream per configured namespace (NFD's by default, or
    ``*`` for all), and Nodes as metadata only (existence and ``kubernetes.io/os``/``arch``
    labels). Objects are parsed as they arrive and kept only as interned features, merged per
    node in NFD's order. The request path only ever reads the store's snapshot and takes no
    lock.

    Readiness: the source is synced after every stream's initial list, and unsynced while a
    stream cannot reach the API server or the NodeFeature CRD is missing (NFD not installed),
    which is logged once and retried until the CRD appears.
    """

    def __init__(
        self,
        store: FeatureStore,
        api_client: Any,
        *,
        namespaces: Sequence[str] = (DEFAULT_NFD_NAMESPACE,),
        nfd_namespace: str = DEFAULT_NFD_NAMESPACE,
        interner: Interner = DEFAULT_INTERNER,
        page_size: int = 100,
        watch_timeout_s: int = 240,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        name: str = "kubernetes",
    ) -> None:
        namespaces = tuple(namespaces) or (nfd_namespace,)
        super().__init__(
            ("nodes", *(f"{_NF_PREFIX}{ns}" for ns in namespaces)),
            page_size=page_size,
            watch_timeout_s=watch_timeout_s,
            backoff_s=backoff_s,
            list_timeout_s=LIST_TIMEOUT_S,
        )
        self.name = name
        self._store = store
        self._api_client = api_client
        self._nfd_namespace = nfd_namespace
        self._interner = interner
        self._objects: dict[tuple[str, str], _ObjectFeatures] = {}
        self._by_node: dict[str, set[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._synced = dict.fromkeys(self._streams, False)
        self._crd_missing_logged = False
        # A list in progress, per stream (each stream lists in its own thread). Items are
        # parsed as each page arrives, so only one page of raw objects is ever alive: holding
        # a whole list of raw NodeFeatures costs far more than the parsed ones, and the freed
        # memory would stay with the process.
        self._listing: dict[str, dict[Any, Any]] = {}
        store.add_source(name)

    @property
    def relists_by_kind(self) -> dict[str, int]:
        """Lists done per kind (``nodes``, ``nodefeatures``), for tests and metrics."""
        counts = {"nodefeatures": 0, "nodes": 0}
        for stream, count in self.stream_relists.items():
            counts[_kind(stream)] += count
        return counts

    # -- ListWatch hooks -------------------------------------------------------------------

    def call(self, stream: str, **kwargs: Any) -> Any:
        if stream == "nodes":
            return list_node_metadata(self._api_client, **kwargs)
        return list_nodefeatures(self._api_client, stream.removeprefix(_NF_PREFIX), **kwargs)

    def on_list_start(self, stream: str) -> None:
        self._listing[stream] = {}

    def on_list_item(self, stream: str, item: Mapping[str, Any]) -> None:
        listing = self._listing[stream]
        if stream == "nodes":
            metadata = item.get("metadata") or {}
            listing[str(metadata.get("name"))] = _node_platform(metadata)
            return
        features = self._parse(item)
        if features is not None:
            listing[_key(item)] = features

    def on_listed(self, stream: str) -> None:
        listing = self._listing.pop(stream)
        if stream == "nodes":
            for node in set(self._store.snapshot().platforms) - listing.keys():
                self._store.set_platform(node, None)
            for node, platform in listing.items():
                self._store.set_platform(node, platform)
        else:
            self._replace_objects(stream.removeprefix(_NF_PREFIX), listing)
        self._set_synced(stream, True)

    def on_event(self, stream: str, kind: str, obj: Mapping[str, Any]) -> None:
        if stream == "nodes":
            metadata = obj.get("metadata") or {}
            platform = None if kind == "DELETED" else _node_platform(metadata)
            self._store.set_platform(str(metadata.get("name")), platform)
        elif kind == "DELETED":
            self._remove_object(_key(obj))
        else:
            self._upsert_object(obj)

    # -- object bookkeeping ----------------------------------------------------------------

    def _parse(self, obj: Mapping[str, Any]) -> _ObjectFeatures | None:
        try:
            node = _node_name(obj)
            parsed = merge_node_features(
                [obj], nfd_namespace=self._nfd_namespace, interner=self._interner
            )[node]
        except FeatureError as err:
            meta = obj.get("metadata") or {}
            log.warning(
                "ignoring NodeFeature %s/%s: %s", meta.get("namespace"), meta.get("name"), err
            )
            return None
        return _ObjectFeatures(node, _sort_key(obj, self._nfd_namespace), parsed)

    def _replace_objects(
        self, namespace: str, parsed: Mapping[tuple[str, str], _ObjectFeatures]
    ) -> None:
        """A fresh list of one namespace (or all) replaces what was known there."""
        with self._lock:
            self._objects = {
                key: item
                for key, item in self._objects.items()
                if namespace != ALL_NAMESPACES and key[0] != namespace
            }
            self._objects.update(parsed)
            self._by_node = {}
            for key, item in self._objects.items():
                self._by_node.setdefault(item.node, set()).add(key)
            merged = {node: self._merged(node) for node in list(self._by_node)}
            # Published under the lock: streams of other namespaces publish too, and a stale
            # merge must never overwrite a newer one.
            self._store.replace(self.name, {n: f for n, f in merged.items() if f is not None})

    def _upsert_object(self, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        parsed = self._parse(obj)
        with self._lock:
            previous = self._objects.pop(key, None)
            touched = {previous.node} if previous else set()
            if previous:
                self._by_node.get(previous.node, set()).discard(key)
            if parsed is not None:
                self._objects[key] = parsed
                self._by_node.setdefault(parsed.node, set()).add(key)
                touched.add(parsed.node)
            for node in touched:
                self._store.update(self.name, node, self._merged(node))

    def _remove_object(self, key: tuple[str, str]) -> None:
        with self._lock:
            previous = self._objects.pop(key, None)
            if previous is None:
                return
            self._by_node.get(previous.node, set()).discard(key)
            self._store.update(self.name, previous.node, self._merged(previous.node))

    def _merged(self, node: str) -> NodeFeatures | None:
        keys = self._by_node.get(node)
        if not keys:
            self._by_node.pop(node, None)
            return None
        parts = sorted((self._objects[k] for k in keys), key=lambda p: p.sort_key)
        if len(parts) == 1:
            return parts[0].features
        return merge_parsed(node, [p.features for p in parts], interner=self._interner)

    # -- state and logs --------------------------------------------------------------------

    def _set_synced(self, stream: str, synced: bool) -> None:
        # Under the lock: two streams syncing at once must not publish their views of
        # "all synced" out of order (the late False would stick).
        with self._lock:
            self._synced[stream] = synced
            self._store.set_synced(self.name, all(self._synced.values()))

    def on_failure(self, stream: str, err: Exception) -> None:
        self._set_synced(stream, False)
        status = getattr(err, "status", None)
        if stream != "nodes" and status == 404:
            if not self._crd_missing_logged:
                log.error(
                    "NodeFeature API (%s/%s) not found: is NFD installed? Not ready; retrying "
                    "until its CRD appears",
                    NODEFEATURE_GROUP,
                    NODEFEATURE_VERSION,
                )
                self._crd_missing_logged = True
            return
        if status == 404 or status is None:
            self._crd_missing_logged = False
        log.warning("%s watch failed (%s); not ready, retrying", stream, failure_reason(err))


def _kind(stream: str) -> str:
    return "nodes" if stream == "nodes" else "nodefeatures"


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _node_platform(metadata: Mapping[str, Any]) -> str | None:
    labels = metadata.get("labels") or {}
    os_name, arch = labels.get(OS_LABEL), labels.get(ARCH_LABEL)
    return f"{os_name}/{arch}" if os_name and arch else ""
