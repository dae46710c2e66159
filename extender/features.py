"""Node features: the NodeFeature model, NFD's merge order, interning and fingerprints.

Owns how a node's NFD features are represented in memory (:class:`NodeFeatures`), read from
``nfd.k8s-sigs.io/v1alpha1`` NodeFeature objects (one object, several YAML documents, or a
``List``), merged when several objects name one node (NFD's order: objects in NFD's namespace
first, then by name, then by namespace; later objects add flags, overwrite attributes and
append instances), interned by content so identical hardware shares memory, and fingerprinted
per feature name so that verdicts can be memoised by the features a spec actually reads.

It also owns where the server's features live: :class:`FeatureStore`, fed by sources (the
``--features-file`` poller here, a Kubernetes watch later) and read by requests through
immutable snapshots (:class:`FeatureSnapshot`), so the request path never takes a lock or waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from extender.kubewatch import ListWatch, failure_reason

__all__ = [
    "ALL_NAMESPACES",
    "DEFAULT_NFD_NAMESPACE",
    "NODE_NAME_LABEL",
    "FeatureError",
    "FeatureSnapshot",
    "FeatureStore",
    "FeaturesFileSource",
    "Interner",
    "KubernetesFeatureSource",
    "NodeFeatures",
    "NodeRecord",
    "iter_nodefeature_objects",
    "kubernetes_api_client",
    "load_node_features",
    "merge_node_features",
    "merge_parsed",
]

NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
DEFAULT_NFD_NAMESPACE = "node-feature-discovery"
NODEFEATURE_API_VERSION = "nfd.k8s-sigs.io/v1alpha1"
_ABSENT = b"\x00absent"


class FeatureError(ValueError):
    """A NodeFeature object (or file of them) that cannot be read."""


Attributes = Mapping[str, str]


def _fingerprint(kind: str, payload: Any) -> bytes:
    text = json.dumps([kind, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class Interner:
    """Shares identical element sets between nodes and fingerprints each distinct one once.

    Memory then grows with the number of distinct configurations, not with nodes. Safe to
    use from several threads (a watch thread may build features while requests read them).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[frozenset[str], tuple[frozenset[str], bytes]] = {}
        self._attributes: dict[frozenset[tuple[str, str]], tuple[Attributes, bytes]] = {}
        self._instances: dict[
            tuple[frozenset[tuple[str, str]], ...], tuple[tuple[Attributes, ...], bytes]
        ] = {}
        self._joined: dict[bytes, bytes] = {}

    def flags(self, names: Iterable[str]) -> tuple[frozenset[str], bytes]:
        key = frozenset(names)
        with self._lock:
            entry = self._flags.get(key)
            if entry is None:
                entry = (key, _fingerprint("flags", sorted(key)))
                self._flags[key] = entry
            return entry

    def attributes(self, values: Mapping[str, str]) -> tuple[Attributes, bytes]:
        key = frozenset(values.items())
        with self._lock:
            entry = self._attributes.get(key)
            if entry is None:
                entry = (MappingProxyType(dict(values)), _fingerprint("attributes", sorted(key)))
                self._attributes[key] = entry
            return entry

    def instances(
        self, instances: Sequence[Mapping[str, str]]
    ) -> tuple[tuple[Attributes, ...], bytes]:
        key = tuple(frozenset(i.items()) for i in instances)
        with self._lock:
            entry = self._instances.get(key)
            if entry is None:
                shared = tuple(MappingProxyType(dict(i)) for i in instances)
                entry = (shared, _fingerprint("instances", [sorted(k) for k in key]))
                self._instances[key] = entry
            return entry

    def fingerprint(self, joined: bytes) -> bytes:
        """One shared copy of a node-level fingerprint (most nodes repeat their type's)."""
        with self._lock:
            return self._joined.setdefault(joined, joined)

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {
                "flags": len(self._flags),
                "attributes": len(self._attributes),
                "instances": len(self._instances),
            }


DEFAULT_INTERNER = Interner()


@dataclass(frozen=True, slots=True, eq=False)
class NodeFeatures:
    """One node's merged NFD features (NodeFeature ``spec.features``), read-only.

    A flag or attribute feature whose container is ``None`` exists with ``elements: null``.
    """

    node: str
    flags: Mapping[str, frozenset[str] | None]
    attributes: Mapping[str, Attributes | None]
    instances: Mapping[str, Sequence[Attributes]]
    _fingerprints: Mapping[str, bytes] = field(repr=False)

    @classmethod
    def empty(cls, node: str = "") -> NodeFeatures:
        return cls(node, MappingProxyType({}), MappingProxyType({}), MappingProxyType({}), {})

    @classmethod
    def build(
        cls,
        node: str,
        flags: Mapping[str, Iterable[str] | None],
        attributes: Mapping[str, Mapping[str, str] | None],
        instances: Mapping[str, Sequence[Mapping[str, str]]],
        *,
        interner: Interner = DEFAULT_INTERNER,
    ) -> NodeFeatures:
        # Feature names repeat on every node: one string object each (sys.intern), and one
        # copy of each node-level fingerprint, so memory grows with configurations, not nodes.
        fingerprints: dict[str, list[bytes]] = {}
        interned_flags: dict[str, frozenset[str] | None] = {}
        flags = {sys.intern(k): v for k, v in flags.items()}
        attributes = {sys.intern(k): v for k, v in attributes.items()}
        instances = {sys.intern(k): v for k, v in instances.items()}
        for name, names in flags.items():
            if names is None:
                interned_flags[name], fp = None, b"flags:null"
            else:
                interned_flags[name], fp = interner.flags(names)
            fingerprints.setdefault(name, [_ABSENT, _ABSENT, _ABSENT])[0] = fp
        interned_attributes: dict[str, Attributes | None] = {}
        for name, values in attributes.items():
            if values is None:
                interned_attributes[name], fp = None, b"attributes:null"
            else:
                interned_attributes[name], fp = interner.attributes(values)
            fingerprints.setdefault(name, [_ABSENT, _ABSENT, _ABSENT])[1] = fp
        interned_instances: dict[str, Sequence[Attributes]] = {}
        for name, elements in instances.items():
            interned_instances[name], fp = interner.instances(elements)
            fingerprints.setdefault(name, [_ABSENT, _ABSENT, _ABSENT])[2] = fp
        return cls(
            node,
            MappingProxyType(interned_flags),
            MappingProxyType(interned_attributes),
            MappingProxyType(interned_instances),
            {name: interner.fingerprint(b"".join(parts)) for name, parts in fingerprints.items()},
        )

    def fingerprint(self, feature: str) -> bytes:
        """Identifies the content of one (lower-cased) feature name on this node."""
        return self._fingerprints.get(feature, _ABSENT)

    def fingerprint_of(self, features: Sequence[str]) -> tuple[bytes, ...]:
        """The memo key part for a spec that reads exactly these features."""
        get = self._fingerprints.get
        return tuple(get(f, _ABSENT) for f in features)

    @property
    def is_empty(self) -> bool:
        return not (self.flags or self.attributes or self.instances)

    def same_content(self, other: NodeFeatures) -> bool:
        """True when both hold the same features (by their fingerprints), whatever the node."""
        return self is other or self._fingerprints == other._fingerprints

    def to_json(self) -> dict[str, Any]:
        """The NodeFeature ``spec.features`` shape (as ``nfd export features`` prints it)."""
        return {
            "flags": {
                k: {"elements": None if v is None else {n: {} for n in sorted(v)}}
                for k, v in sorted(self.flags.items())
            },
            "attributes": {
                k: {"elements": None if v is None else dict(sorted(v.items()))}
                for k, v in sorted(self.attributes.items())
            },
            "instances": {
                k: {"elements": [{"attributes": dict(sorted(i.items()))} for i in v]}
                for k, v in sorted(self.instances.items())
            },
        }


# --------------------------------------------------------------------------------------------
# Reading NodeFeature objects


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FeatureError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _element_strings(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    elements = _mapping(value, where)
    out = {}
    for key, item in elements.items():
        if not isinstance(item, str):
            # NodeFeature attribute values are strings in the API; a YAML fixture may hold
            # numbers or booleans, which the apiserver would refuse.
            raise FeatureError(f"{where}.{key}: attribute values must be strings")
        out[str(key)] = item
    return out


@dataclass(slots=True)
class _RawFeatures:
    """Mutable features while merging, with Go's nil-vs-empty distinction kept."""

    flags: dict[str, dict[str, None] | None] = field(default_factory=dict)
    attributes: dict[str, dict[str, str] | None] = field(default_factory=dict)
    instances: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def merge_spec_features(self, features: Mapping[str, Any], where: str) -> None:
        for name, entry in _mapping(features.get("flags"), f"{where}.flags").items():
            raw = _mapping(entry, f"{where}.flags.{name}").get("elements")
            current = self.flags.get(name)
            if raw is not None:
                elements = _mapping(raw, f"{where}.flags.{name}.elements")
                current = dict(current or {})
                current.update(dict.fromkeys(map(str, elements)))
            self.flags[name] = current
        for name, entry in _mapping(features.get("attributes"), f"{where}.attributes").items():
            raw = _element_strings(
                _mapping(entry, f"{where}.attributes.{name}").get("elements"),
                f"{where}.attributes.{name}.elements",
            )
            current_attrs = self.attributes.get(name)
            if raw is not None:
                current_attrs = {**(current_attrs or {}), **raw}
            self.attributes[name] = current_attrs
        for name, entry in _mapping(features.get("instances"), f"{where}.instances").items():
            raw_list = _mapping(entry, f"{where}.instances.{name}").get("elements")
            current_list = self.instances.setdefault(name, [])
            if raw_list is None:
                continue
            if not isinstance(raw_list, list):
                raise FeatureError(f"{where}.instances.{name}.elements: expected a list")
            for i, instance in enumerate(raw_list):
                attrs = _mapping(instance, f"{where}.instances.{name}.elements[{i}]")
                current_list.append(
                    _element_strings(
                        attrs.get("attributes"),
                        f"{where}.instances.{name}.elements[{i}].attributes",
                    )
                    or {}
                )

    def freeze(self, node: str, interner: Interner) -> NodeFeatures:
        return NodeFeatures.build(
            node,
            {k: (None if v is None else v.keys()) for k, v in self.flags.items()},
            self.attributes,
            self.instances,
            interner=interner,
        )


def _node_name(obj: Mapping[str, Any]) -> str:
    metadata = _mapping(obj.get("metadata"), "metadata")
    labels = _mapping(metadata.get("labels"), "metadata.labels")
    node = labels.get(NODE_NAME_LABEL)
    name = metadata.get("name", "?")
    if not node or not isinstance(node, str):
        raise FeatureError(f"NodeFeature {name}: label {NODE_NAME_LABEL} is missing or empty")
    return node


def merge_node_features(
    objects: Iterable[Mapping[str, Any]],
    *,
    nfd_namespace: str = DEFAULT_NFD_NAMESPACE,
    interner: Interner = DEFAULT_INTERNER,
) -> dict[str, NodeFeatures]:
    """Group NodeFeature objects by node and merge each group in NFD's order."""
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        by_node.setdefault(_node_name(obj), []).append(obj)
    result = {}
    for node, group in by_node.items():
        result[node] = _merge_group(node, group, nfd_namespace, interner)
    return result


def _sort_key(obj: Mapping[str, Any], nfd_namespace: str) -> tuple[bool, str, str]:
    metadata = obj.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    return (namespace != nfd_namespace, str(metadata.get("name") or ""), namespace)


def _merge_group(
    node: str, group: list[Mapping[str, Any]], nfd_namespace: str, interner: Interner
) -> NodeFeatures:
    raw = _RawFeatures()
    for obj in sorted(group, key=lambda o: _sort_key(o, nfd_namespace)):
        name = (obj.get("metadata") or {}).get("name", "?")
        spec = _mapping(obj.get("spec"), f"NodeFeature {name}: spec")
        raw.merge_spec_features(
            _mapping(spec.get("features"), f"NodeFeature {name}: spec.features"),
            f"NodeFeature {name}: spec.features",
        )
    return raw.freeze(node, interner)


def iter_nodefeature_objects(documents: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    """NodeFeature objects from parsed documents: single objects, ``List``s, or kind-less lists."""
    for document in documents:
        if document is None:
            continue
        if isinstance(document, list):
            yield from iter_nodefeature_objects(document)
            continue
        if not isinstance(document, Mapping):
            raise FeatureError(f"expected a NodeFeature object, got {type(document).__name__}")
        kind = document.get("kind")
        if kind == "NodeFeature" or (kind is None and "spec" in document):
            yield document
        elif isinstance(kind, str) and kind.endswith("List"):
            yield from iter_nodefeature_objects(document.get("items") or [])
        else:
            raise FeatureError(f"expected kind NodeFeature or a List, got {kind!r}")


def load_node_features(
    data: bytes | str,
    *,
    nfd_namespace: str = DEFAULT_NFD_NAMESPACE,
    interner: Interner = DEFAULT_INTERNER,
) -> dict[str, NodeFeatures]:
    """Read NodeFeature objects from YAML/JSON text (several documents or a List) by node."""
    try:
        documents = list(yaml.safe_load_all(data))
    except yaml.YAMLError as err:
        raise FeatureError(f"invalid YAML: {err}") from None
    return merge_node_features(
        iter_nodefeature_objects(documents), nfd_namespace=nfd_namespace, interner=interner
    )


# --------------------------------------------------------------------------------------------
# The store: what requests read, fed by sources

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node's features in the store, with a generation that is unique across the store and
    changes whenever the node's feature content changes (so it can key a memo)."""

    features: NodeFeatures
    generation: int


@dataclass(frozen=True, slots=True)
class FeatureSnapshot:
    """An immutable view of the store, taken once per request.

    ``synced`` is false until every registered source has delivered its first full state;
    ``waiting`` names those that have not. ``version`` changes with any content change.
    ``platforms`` maps node name to ``os/arch`` from its Node labels, where a source knows it.
    """

    nodes: Mapping[str, NodeRecord]
    platforms: Mapping[str, str]
    synced: bool
    version: int
    waiting: tuple[str, ...] = ()

    def record(self, node: str) -> NodeRecord | None:
        return self.nodes.get(node)

    def platform(self, node: str) -> str:
        return self.platforms.get(node, "")


class FeatureStore:
    """Node name → features, fed by named sources and read through :meth:`snapshot`.

    Writers (sources, possibly from a worker thread) serialise on a lock and publish a new
    snapshot by swapping one reference; readers never lock. When several sources know a node,
    the one registered last wins. A store without sources is synced and empty.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, dict[str, NodeFeatures]] = {}
        self._synced: dict[str, bool] = {}
        self._platforms: dict[str, str] = {}
        self._generation = 0
        self._version = 0
        self._snapshot = FeatureSnapshot({}, {}, True, 0)

    def snapshot(self) -> FeatureSnapshot:
        return self._snapshot

    def add_source(self, name: str) -> None:
        """Register a source; the store is not synced until it calls :meth:`replace` once."""
        with self._lock:
            if name in self._sources:
                raise ValueError(f"feature source {name!r} is already registered")
            self._sources[name] = {}
            self._synced[name] = False
            self._publish(())

    def replace(self, source: str, features: Mapping[str, NodeFeatures]) -> None:
        """A source's full state (a re-list, a file reload); marks the source synced."""
        with self._lock:
            previous = self._sources[source]
            self._sources[source] = dict(features)
            self._synced[source] = True
            self._publish(previous.keys() | features.keys())

    def update(self, source: str, node: str, features: NodeFeatures | None) -> None:
        """One node changed in a source (a watch event); ``None`` removes it."""
        with self._lock:
            nodes = self._sources[source]
            if features is None:
                nodes.pop(node, None)
            else:
                nodes[node] = features
            self._publish((node,))

    def set_synced(self, source: str, synced: bool) -> None:
        """A source lost (or regained) its connection; the store is ready only when all are."""
        with self._lock:
            self._synced[source] = synced
            self._publish(())

    def set_platform(self, node: str, platform: str | None) -> None:
        """A node's ``os/arch`` (from its Node labels), or None when the node is gone."""
        with self._lock:
            platforms = dict(self._platforms)  # the published mapping stays untouched
            if platform:
                platforms[node] = platform
            else:
                platforms.pop(node, None)
            self._platforms = platforms
            self._publish(())

    def _effective(self, node: str) -> NodeFeatures | None:
        for nodes in reversed(self._sources.values()):
            found = nodes.get(node)
            if found is not None:
                return found
        return None

    def _publish(self, changed: Iterable[str]) -> None:
        old = self._snapshot
        records = old.nodes
        copied: dict[str, NodeRecord] | None = None
        for node in changed:
            features = self._effective(node)
            previous = records.get(node)
            if features is None:
                if previous is None:
                    continue
                copied = copied if copied is not None else dict(records)
                del copied[node]
            elif previous is None or not previous.features.same_content(features):
                copied = copied if copied is not None else dict(records)
                self._generation += 1
                copied[node] = NodeRecord(features, self._generation)
        waiting = tuple(name for name, synced in self._synced.items() if not synced)
        if copied is None and waiting == old.waiting and self._platforms is old.platforms:
            return
        self._version += 1
        self._snapshot = FeatureSnapshot(
            records if copied is None else copied,
            self._platforms,
            not waiting,
            self._version,
            waiting,
        )


class FeaturesFileSource:
    """``--features-file``: NodeFeature objects read from a file, reloaded when it changes.

    The file is polled (mounted ConfigMaps change by symlink swap, without inotify events):
    a changed stat triggers a read, a changed content hash a reparse. A file that cannot be
    read or parsed is logged and the last good state kept; until a first good read the
    source is not synced, so the server is not ready.
    """

    def __init__(
        self,
        store: FeatureStore,
        path: str | os.PathLike[str],
        *,
        interval: float = 2.0,
        nfd_namespace: str = DEFAULT_NFD_NAMESPACE,
        interner: Interner = DEFAULT_INTERNER,
        name: str = "features-file",
    ) -> None:
        self.path = Path(path)
        self.name = name
        self._store = store
        self._interval = interval
        self._nfd_namespace = nfd_namespace
        self._interner = interner
        self._stat: tuple[int, int, int] | None = None
        self._digest: bytes | None = None
        self._last_problem: str | None = None
        store.add_source(name)

    def poll(self) -> bool:
        """Check the file once; returns True when the store was updated. Blocking I/O."""
        try:
            stat = self.path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if key == self._stat:
                return False
            data = self.path.read_bytes()
        except OSError as err:
            self._problem(f"cannot read {self.path}: {err.strerror or err}")
            return False
        self._stat = key
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return False
        try:
            features = load_node_features(
                data, nfd_namespace=self._nfd_namespace, interner=self._interner
            )
        except FeatureError as err:
            self._problem(f"{self.path}: {err}")
            return False
        self._digest = digest
        self._last_problem = None
        self._store.replace(self.name, features)
        log.info("features file %s loaded: %d nodes", self.path, len(features))
        return True

    def _problem(self, message: str) -> None:
        if message != self._last_problem:
            state = "keeping the last good state" if self._digest else "not ready"
            log.error("features file: %s (%s)", message, state)
            self._last_problem = message

    async def run(self, *, iterations: int | None = None) -> None:
        """Poll forever (or ``iterations`` times, for tests) in a worker thread."""
        done = 0
        while iterations is None or done < iterations:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self.poll)
            except Exception:
                log.exception("features file %s: unexpected error while reloading", self.path)
            done += 1


# --------------------------------------------------------------------------------------------
# Live features from the Kubernetes API

NODEFEATURE_GROUP, NODEFEATURE_VERSION, NODEFEATURE_PLURAL = (
    "nfd.k8s-sigs.io",
    "v1alpha1",
    "nodefeatures",
)
ALL_NAMESPACES = "*"
_NF_PREFIX = "nodefeatures:"
_LIST_TIMEOUT_S = (10, 60)  # (connect, read): a page of 200 NodeFeatures is ~20 MB at worst
_OS_LABEL, _ARCH_LABEL = "kubernetes.io/os", "kubernetes.io/arch"
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
_METADATA_ONE = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json"


def merge_parsed(
    node: str, parts: Sequence[NodeFeatures], *, interner: Interner = DEFAULT_INTERNER
) -> NodeFeatures:
    """Merge already parsed objects of one node in the given (NFD) order, as MergeInto does."""
    raw = _RawFeatures()
    for part in parts:
        for name, names in part.flags.items():
            current = raw.flags.get(name)
            if names is not None:
                current = {**(current or {}), **dict.fromkeys(names)}
            raw.flags[name] = current
        for name, values in part.attributes.items():
            current_attrs = raw.attributes.get(name)
            if values is not None:
                current_attrs = {**(current_attrs or {}), **values}
            raw.attributes[name] = current_attrs
        for name, instances in part.instances.items():
            raw.instances.setdefault(name, []).extend(dict(i) for i in instances)
    return raw.freeze(node, interner)


@dataclass(slots=True)
class _ObjectFeatures:
    node: str
    sort_key: tuple[bool, str, str]
    features: NodeFeatures


class KubernetesFeatureSource(ListWatch):
    """NodeFeature and Node objects from the API server, listed then watched, into the store.

    Streams (:class:`~extender.kubewatch.ListWatch`): NodeFeatures
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
            list_timeout_s=_LIST_TIMEOUT_S,
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
    def relists(self) -> dict[str, int]:
        """Lists done per kind (``nodes``, ``nodefeatures``), for tests and metrics."""
        counts = {"nodefeatures": 0, "nodes": 0}
        for stream, count in self.stream_relists.items():
            counts[_kind(stream)] += count
        return counts

    # -- ListWatch hooks -------------------------------------------------------------------

    def call(self, stream: str, **kwargs: Any) -> Any:
        if stream == "nodes":
            accept = _METADATA_ONE if kwargs.get("watch") else _METADATA_LIST
            return self._core().list_node(**kwargs, _headers={"Accept": accept})
        return self._call_nodefeatures(stream.removeprefix(_NF_PREFIX), **kwargs)

    def on_list_start(self, stream: str) -> None:
        self._listing[stream] = {}

    def on_list_item(self, stream: str, item: Mapping[str, Any]) -> None:
        listing = self._listing[stream]
        if stream == "nodes":
            metadata = item.get("metadata") or {}
            listing[str(metadata.get("name"))] = _platform(metadata)
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
            platform = None if kind == "DELETED" else _platform(metadata)
            self._store.set_platform(str(metadata.get("name")), platform)
        elif kind == "DELETED":
            self._remove_object(_key(obj))
        else:
            self._upsert_object(obj)

    # -- API calls -------------------------------------------------------------------------

    def _core(self) -> Any:
        return _kubernetes_client().CoreV1Api(self._api_client)

    def _call_nodefeatures(self, namespace: str, **kwargs: Any) -> Any:
        api = _kubernetes_client().CustomObjectsApi(self._api_client)
        args = (NODEFEATURE_GROUP, NODEFEATURE_VERSION)
        if namespace == ALL_NAMESPACES:
            return api.list_cluster_custom_object(*args, NODEFEATURE_PLURAL, **kwargs)
        return api.list_namespaced_custom_object(*args, namespace, NODEFEATURE_PLURAL, **kwargs)

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


def _platform(metadata: Mapping[str, Any]) -> str | None:
    labels = metadata.get("labels") or {}
    os_name, arch = labels.get(_OS_LABEL), labels.get(_ARCH_LABEL)
    return f"{os_name}/{arch}" if os_name and arch else ""


def _kubernetes_client() -> Any:
    # Imported on first use: the offline commands (validate, check-spec) read features too and
    # should not pay the official client's import time.
    from kubernetes import client  # noqa: PLC0415

    return client


def kubernetes_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An official-client ApiClient from a kubeconfig, or in-cluster configuration."""
    from kubernetes import config  # noqa: PLC0415 - see _kubernetes_client

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        return config.new_client_from_config(context=context)  # type: ignore[no-untyped-call]
    return _kubernetes_client().ApiClient()
