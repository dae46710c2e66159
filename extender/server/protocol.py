"""kube-scheduler's extender wire protocol: the request and response bodies, exactly.

Owns the JSON shapes of ``k8s.io/kube-scheduler/extender/v1``. Those Go structs carry no JSON
tags, so their keys are the Go field names (``Pod``, ``NodeNames``, ``FailedNodes``, ...),
while the embedded Kubernetes objects use their API's camelCase. Go encodes nil slices and
maps as ``null``, so every list and map here accepts ``null``.

Only the parts of a Pod the policy needs are decoded (the
:class:`~extender.policy.pods.Pod` model) (msgspec skips the rest without building
it). In full-Nodes mode (``nodeCacheCapable: false``) each Node item is kept as raw JSON and
sent back unchanged, so nothing we did not decode is re-serialised. Nothing here knows about
HTTP; :mod:`.routes` calls these functions with the body bytes.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from extender.kube.nodefeatures import ARCH_LABEL, OS_LABEL
from extender.policy.decide import MAX_SCORE
from extender.policy.pods import ObjectMeta, Pod

__all__ = [
    "ExtenderArgs",
    "ExtenderBindingArgs",
    "ExtenderBindingResult",
    "ExtenderFilterResult",
    "ExtenderPreemptionArgs",
    "ExtenderPreemptionResult",
    "FilterRequest",
    "HostPriority",
    "MetaPod",
    "MetaVictims",
    "NodeItem",
    "NodeList",
    "PreemptionRequest",
    "ProtocolError",
    "RequestNode",
    "Victims",
    "decode_binding_args",
    "decode_extender_args",
    "decode_preemption_args",
    "encode",
    "encode_filter_result",
    "encode_preemption_result",
    "encode_priorities",
]


class ProtocolError(ValueError):
    """A request body that is not a valid extender request (answered with HTTP 400)."""


class NodeItem(msgspec.Struct, frozen=True):
    """What we read of a Node object in full-Nodes mode: its name and labels."""

    metadata: ObjectMeta | None = None


class NodeList(msgspec.Struct, frozen=True):
    """``Nodes`` as sent: each item stays raw JSON, to be answered unchanged."""

    # msgspec cannot decode ``Raw | None``: a JSON null arrives as Raw(b"null").
    metadata: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    items: list[msgspec.Raw] | None = None


# --------------------------------------------------------------------------------------------
# Extender messages (PascalCase, exactly the Go field names)


class ExtenderArgs(msgspec.Struct, frozen=True):
    Pod: Pod | None = None
    Nodes: NodeList | None = None
    NodeNames: list[str] | None = None


class _NodeListOut(msgspec.Struct, frozen=True):
    metadata: msgspec.Raw
    items: list[msgspec.Raw]


class ExtenderFilterResult(msgspec.Struct, frozen=True):
    """The filter answer. Every field is always present; lists may be ``null`` as in Go."""

    Nodes: _NodeListOut | None = None
    NodeNames: list[str] | None = None
    FailedNodes: dict[str, str] = msgspec.field(default_factory=dict)
    FailedAndUnresolvableNodes: dict[str, str] = msgspec.field(default_factory=dict)
    Error: str = ""


class HostPriority(msgspec.Struct, frozen=True):
    Host: str
    Score: int


class ExtenderBindingArgs(msgspec.Struct, frozen=True):
    PodName: str | None = None
    PodNamespace: str | None = None
    PodUID: str | None = None
    Node: str | None = None


class ExtenderBindingResult(msgspec.Struct, frozen=True):
    Error: str = ""


class MetaPod(msgspec.Struct, frozen=True):
    UID: str = ""


class MetaVictims(msgspec.Struct, frozen=True):
    """A node's victims by UID (``nodeCacheCapable: true``, and every preempt answer)."""

    Pods: list[MetaPod] | None = None
    NumPDBViolations: int = 0


class _VictimMeta(msgspec.Struct, frozen=True):
    uid: str | None = None


class _VictimPod(msgspec.Struct, frozen=True):
    """A full victim Pod (``nodeCacheCapable: false``): only its UID is read."""

    metadata: _VictimMeta | None = None


class Victims(msgspec.Struct, frozen=True):
    Pods: list[_VictimPod] | None = None
    NumPDBViolations: int = 0


class ExtenderPreemptionArgs(msgspec.Struct, frozen=True):
    Pod: Pod | None = None
    NodeNameToVictims: dict[str, Victims] | None = None
    NodeNameToMetaVictims: dict[str, MetaVictims] | None = None


class ExtenderPreemptionResult(msgspec.Struct, frozen=True):
    NodeNameToMetaVictims: dict[str, MetaVictims]


# --------------------------------------------------------------------------------------------
# Decoding


class RequestNode(msgspec.Struct, frozen=True):
    """One candidate node of a request: its name, labels (full-Nodes mode) and raw JSON.

    A msgspec Struct rather than a frozen dataclass: one is built per candidate on every
    call, and a frozen dataclass's ``__init__`` costs ten times more (at 5,000 node names it
    was most of the decoding time; see benchmarks/server_bench.py).
    """

    name: str
    labels: Mapping[str, str]
    raw: msgspec.Raw | None = None
    platform: str = ""  # ``os/arch`` from the Node's labels; "" when the request did not say

    @classmethod
    def from_item(cls, name: str, labels: Mapping[str, str], raw: msgspec.Raw) -> RequestNode:
        os_name, arch = labels.get(OS_LABEL), labels.get(ARCH_LABEL)
        return cls(name, labels, raw, f"{os_name}/{arch}" if os_name and arch else "")


@dataclass(frozen=True, slots=True)
class FilterRequest:
    """A decoded filter/prioritize request: the pod and its candidate nodes in order.

    ``names`` is every candidate's name, in order: ``NodeNames`` exactly as decoded (a plain
    list of strings, nothing built per node) in names mode. ``nodes`` holds the Node items in
    full-Nodes mode (their raw JSON is sent back unchanged) and ``platforms`` the ``os/arch``
    their labels give, by name.

    ``names_mode`` and ``nodes_mode`` say which list the scheduler sent (and so which list the
    answer must carry): ``NodeNames`` with ``nodeCacheCapable: true``, ``Nodes`` otherwise.
    A request with neither is answered in names mode.
    """

    pod: Pod
    names: list[str]
    names_mode: bool
    nodes_mode: bool
    nodes: tuple[RequestNode, ...] = ()
    platforms: dict[str, str] | None = None
    list_metadata: msgspec.Raw | None = None  # Nodes.metadata as sent


T = TypeVar("T")

_ARGS_DECODER = msgspec.json.Decoder(ExtenderArgs)
_NODE_DECODER = msgspec.json.Decoder(NodeItem)
_BINDING_DECODER = msgspec.json.Decoder(ExtenderBindingArgs)
_PREEMPTION_DECODER = msgspec.json.Decoder(ExtenderPreemptionArgs)
_NO_LABELS: Mapping[str, str] = {}


def _decode_error(err: msgspec.MsgspecError, what: str) -> ProtocolError:
    message = str(err)
    if isinstance(err, msgspec.DecodeError) and "truncated" in message:
        message = "empty or truncated JSON body"
    return ProtocolError(f"invalid {what}: {message}")


def _decode(decoder: msgspec.json.Decoder[T], body: bytes | msgspec.Raw, what: str) -> T:
    """One JSON value of the request, or :class:`ProtocolError` with a short reason."""
    if isinstance(body, bytes) and not body.strip():
        raise ProtocolError(f"invalid {what}: empty request body")
    try:
        return decoder.decode(body)
    except msgspec.MsgspecError as err:
        raise _decode_error(err, what) from None
    except RecursionError:  # msgspec's depth guard: JSON nested deeper than Python recurses
        raise ProtocolError(f"invalid {what}: JSON nested too deeply") from None
    except UnicodeDecodeError as err:  # msgspec raises it, not a DecodeError, for a bad string
        raise ProtocolError(f"invalid {what}: a string is not UTF-8 ({err.reason})") from None


def decode_extender_args(body: bytes) -> FilterRequest:
    """Decode an ``ExtenderArgs`` body. Raises :class:`ProtocolError` with a short reason."""
    args = _decode(_ARGS_DECODER, body, "ExtenderArgs")
    if args.Pod is None:
        raise ProtocolError("invalid ExtenderArgs: Pod is missing or null")
    names_mode = args.NodeNames is not None
    if args.Nodes is None:
        return FilterRequest(args.Pod, args.NodeNames or [], True, False)
    list_metadata = None
    if bytes(args.Nodes.metadata) != b"null":
        list_metadata = args.Nodes.metadata
    from_items = []
    for index, raw in enumerate(args.Nodes.items or ()):
        item = _decode(_NODE_DECODER, raw, f"Nodes.items[{index}]")
        meta = item.metadata
        if meta is None or not meta.name:
            raise ProtocolError(f"invalid Nodes.items[{index}]: metadata.name is missing")
        from_items.append(RequestNode.from_item(meta.name, meta.labels or _NO_LABELS, raw))
    nodes = from_items
    if names_mode:
        # Not something kube-scheduler sends. Answer both lists: judge every name once, with
        # its Node object where one came (NodeNames order, then the other items).
        by_name = {n.name: n for n in from_items}
        named = args.NodeNames or []
        nodes = [by_name.get(name) or RequestNode(name, _NO_LABELS) for name in named]
        seen = set(named)
        nodes.extend(n for n in from_items if n.name not in seen)
    platforms = {n.name: n.platform for n in nodes if n.platform}
    return FilterRequest(
        args.Pod,
        [n.name for n in nodes],
        names_mode,
        True,
        tuple(nodes),
        platforms or None,
        list_metadata,
    )


@dataclass(frozen=True, slots=True)
class PreemptionRequest:
    """A decoded preempt request: the pod and each candidate node's victims by UID, in the
    order sent. Full victim Pods (``NodeNameToVictims``) are reduced to their UIDs, since
    the answer is always ``NodeNameToMetaVictims``."""

    pod: Pod
    victims: dict[str, MetaVictims]


def decode_preemption_args(body: bytes) -> PreemptionRequest:
    """Decode an ``ExtenderPreemptionArgs`` body. Raises :class:`ProtocolError`."""
    args = _decode(_PREEMPTION_DECODER, body, "ExtenderPreemptionArgs")
    if args.Pod is None:
        raise ProtocolError("invalid ExtenderPreemptionArgs: Pod is missing or null")
    victims: dict[str, MetaVictims] = {}
    for node, full in (args.NodeNameToVictims or {}).items():
        pods = []
        for index, victim in enumerate(full.Pods or ()):
            uid = victim.metadata.uid if victim.metadata else None
            if not uid:
                raise ProtocolError(
                    f"invalid NodeNameToVictims[{node!r}].Pods[{index}]: metadata.uid is missing"
                )
            pods.append(MetaPod(uid))
        victims[node] = MetaVictims(pods, full.NumPDBViolations)
    # kube-scheduler sends one map or the other; were both sent, the UIDs it sent win.
    victims.update(args.NodeNameToMetaVictims or {})
    return PreemptionRequest(args.Pod, victims)


def decode_binding_args(body: bytes) -> ExtenderBindingArgs:
    return _decode(_BINDING_DECODER, body, "ExtenderBindingArgs")


# --------------------------------------------------------------------------------------------
# Encoding

_ENCODER = msgspec.json.Encoder()
_EMPTY_OBJECT = msgspec.Raw(b"{}")


def encode(value: Any) -> bytes:
    return _ENCODER.encode(value)


def encode_filter_result(
    request: FilterRequest | None,
    passing: Sequence[int] = (),
    *,
    unresolvable: Mapping[str, str] | None = None,
    error: str = "",
) -> bytes:
    """The filter answer in the request's mode: the passing nodes (indices into
    ``request.nodes``) as ``NodeNames`` and/or ``Nodes.items`` (raw, unchanged).

    Never both lists ``null``: the scheduler would drop every node. Without a request (the
    body could not be read) the answer carries ``NodeNames: []`` and the error.
    """
    names: list[str] | None = None
    node_list: _NodeListOut | None = None
    if request is None:
        names = []
    else:
        if request.names_mode:
            everyone = len(passing) == len(request.names)
            names = request.names if everyone else list(map(request.names.__getitem__, passing))
        if request.nodes_mode:
            chosen = [request.nodes[i] for i in passing]
            node_list = _NodeListOut(
                request.list_metadata or _EMPTY_OBJECT,
                [n.raw for n in chosen if n.raw is not None],
            )
    return _ENCODER.encode(
        ExtenderFilterResult(
            Nodes=node_list,
            NodeNames=names,
            FailedNodes={},
            FailedAndUnresolvableNodes=dict(unresolvable or {}),
            Error=error,
        )
    )


def encode_preemption_result(victims: Mapping[str, MetaVictims]) -> bytes:
    """An ``ExtenderPreemptionResult``; an empty map means no node may preempt."""
    return _ENCODER.encode(ExtenderPreemptionResult(NodeNameToMetaVictims=dict(victims)))


class _HostFragments(dict[str, tuple[bytes, ...]]):
    """host → its ``{"Host":…,"Score":S}`` JSON for every score S from 0 to 10 (b"" for 0): a
    prioritize answer is joined from these in C-level passes, with no object built per node
    (a struct per node cost most of the answer's time)."""

    LIMIT = 65_536  # hosts kept (about 11 x 40 bytes each); started over when full

    def __missing__(self, host: str) -> tuple[bytes, ...]:
        scored = (_ENCODER.encode(HostPriority(host, s)) for s in range(1, MAX_SCORE + 1))
        fragments = (b"", *scored)
        if len(self) >= self.LIMIT:
            self.clear()
        self[host] = fragments
        return fragments


_HOST_FRAGMENTS = _HostFragments()


def encode_priorities(hosts: Sequence[str], scores: Sequence[int]) -> bytes:
    """A ``HostPriorityList``: a bare JSON array of ``{"Host", "Score"}``, listing the hosts
    whose score is not 0 (the scheduler adds nothing for a host not listed). ``scores`` (each
    0..10) is empty when every host scores 0."""
    if not scores:
        return b"[]"
    if len(scores) != len(hosts):
        raise ValueError(f"{len(hosts)} hosts but {len(scores)} scores")
    per_host = map(_HOST_FRAGMENTS.__getitem__, hosts)
    fragments = filter(None, map(operator.getitem, per_host, scores))
    return b"[" + b",".join(fragments) + b"]"


def pod_from_object(obj: Mapping[str, Any]) -> Pod:
    """A Pod from an already-parsed API object (a watch event, a fixture)."""
    try:
        return msgspec.convert(obj, Pod)
    except msgspec.ValidationError as err:
        raise ProtocolError(f"invalid Pod: {err}") from None
