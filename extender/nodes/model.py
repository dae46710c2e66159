"""The NodeFeature model, NFD's merge order, interning and fingerprints.

Owns how a node's NFD features are represented in memory (:class:`NodeFeatures`), read from
``nfd.k8s-sigs.io/v1alpha1`` NodeFeature objects (one object, several YAML documents, or a
``List``), merged when several objects name one node (NFD's order: objects in NFD's namespace
first, then by name, then by namespace; later objects add flags, overwrite attributes and
append instances), interned by content so identical hardware shares memory, and fingerprinted
per feature name so that verdicts can be memoised by the features a spec actually reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

__all__ = [
    "DEFAULT_NFD_NAMESPACE",
    "NODE_NAME_LABEL",
    "FeatureError",
    "Interner",
    "NodeFeatures",
    "iter_nodefeature_objects",
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
    except ValueError as err:  # an integer past Python's conversion limit: not a feature value
        raise FeatureError(f"invalid YAML: {err}") from None
    return merge_node_features(
        iter_nodefeature_objects(documents), nfd_namespace=nfd_namespace, interner=interner
    )


log = logging.getLogger(__name__)


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
