"""Golden wire-format tests: kube-scheduler's exact keys, in both node modes."""

from __future__ import annotations

import json

import msgspec
import pytest

from extender.server.protocol import (
    ExtenderBindingResult,
    ProtocolError,
    decode_binding_args,
    decode_extender_args,
    encode,
    encode_filter_result,
    encode_priorities,
    pod_from_object,
)

POD = {
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "1234",
        "resourceVersion": "42",
        "annotations": {"image-compat.io/tags": "fast"},
        "labels": {"app": "web"},
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {
        "schedulerName": "image-compat-scheduler",
        "nodeName": "",
        "initContainers": [{"name": "init", "image": "busybox:1", "command": ["true"]}],
        "containers": [
            {"name": "app", "image": "registry.example/app:1", "resources": {"limits": {}}}
        ],
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [{"name": "v", "emptyDir": {}}],
    },
    "status": {"phase": "Pending"},
}

# Node objects as the scheduler sends them in full-Nodes mode; odd spacing and non-ASCII
# text included, since the answer must carry them back byte for byte.
NODE_A = (
    b'{"metadata":{"name":"node-a","labels":{"kubernetes.io/os":"linux",'
    b'"kubernetes.io/arch":"arm64"}},"status":{"capacity":{"cpu":"4"}}, "x": "\\u00e9 caf\xc3\xa9"}'
)
NODE_B = b'{"metadata":{"name":"node-b","labels":null},"spec":{"taints":null}}'


def names_body(names: list[str] | None, pod: object = POD) -> bytes:
    return json.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}).encode()


def nodes_body(items: list[bytes]) -> bytes:
    joined = b",".join(items)
    return (
        b'{"Pod":' + json.dumps(POD).encode() + b',"Nodes":{"metadata":{"resourceVersion":"7"},'
        b'"items":[' + joined + b']},"NodeNames":null}'
    )


def test_names_mode_request_and_answer_have_exact_keys() -> None:
    request = decode_extender_args(names_body(["node-a", "node-b", "node-c"]))
    assert request.names_mode and not request.nodes_mode
    assert request.names == ["node-a", "node-b", "node-c"]
    body = encode_filter_result(request, [0, 2], unresolvable={"node-b": "image-compat: x"})
    assert body == (
        b'{"Nodes":null,"NodeNames":["node-a","node-c"],"FailedNodes":{},'
        b'"FailedAndUnresolvableNodes":{"node-b":"image-compat: x"},"Error":""}'
    )


def test_full_nodes_mode_returns_node_objects_unchanged() -> None:
    request = decode_extender_args(nodes_body([NODE_A, NODE_B]))
    assert request.nodes_mode and not request.names_mode
    assert request.names == ["node-a", "node-b"]
    assert request.nodes[0].platform == "linux/arm64"
    assert request.nodes[1].platform == ""
    assert request.platforms == {"node-a": "linux/arm64"}  # only the nodes that say
    body = encode_filter_result(request, [0], unresolvable={"node-b": "r"})
    assert body == (
        b'{"Nodes":{"metadata":{"resourceVersion":"7"},"items":[' + NODE_A + b"]},"
        b'"NodeNames":null,"FailedNodes":{},"FailedAndUnresolvableNodes":{"node-b":"r"},'
        b'"Error":""}'
    )


def test_full_nodes_mode_with_nothing_passing_still_has_a_list() -> None:
    request = decode_extender_args(nodes_body([NODE_B]))
    decoded = json.loads(encode_filter_result(request, []))
    assert decoded["Nodes"] == {"metadata": {"resourceVersion": "7"}, "items": []}
    assert decoded["NodeNames"] is None


def test_names_mode_node_names_decode_to_the_plain_list() -> None:
    # Nothing is built per node in names mode: the decoded list of str is the candidates.
    names = [f"node-{i}" for i in range(1000)]
    request = decode_extender_args(names_body(names))
    assert type(request.names) is list and request.names == names
    assert all(type(name) is str for name in request.names)
    assert request.nodes == () and request.platforms is None
    # Everyone passing answers that same list.
    answer = json.loads(encode_filter_result(request, range(len(names))))
    assert answer["NodeNames"] == names


def test_priorities_are_a_bare_array_of_the_nodes_above_0() -> None:
    assert encode_priorities(["node-a", "node-b", "node-c"], [10, 0, 3]) == (
        b'[{"Host":"node-a","Score":10},{"Host":"node-c","Score":3}]'
    )
    # Empty scores: every node scores the same (or is not judged); nothing is listed.
    assert encode_priorities(["node-a", "node-b"], []) == b"[]"
    assert encode_priorities([], []) == b"[]"
    assert encode_priorities(["node-a"], [0]) == b"[]"
    # The same host at another score is another answer (fragments are kept per pair).
    assert encode_priorities(["node-a", "node-c"], [0, 7]) == b'[{"Host":"node-c","Score":7}]'


def test_error_answer_never_has_both_lists_null() -> None:
    body = json.loads(encode_filter_result(None, error="image-compat: not synced"))
    assert body == {
        "Nodes": None,
        "NodeNames": [],
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": {},
        "Error": "image-compat: not synced",
    }


def test_request_without_any_list_is_answered_in_names_mode() -> None:
    request = decode_extender_args(json.dumps({"Pod": POD}).encode())
    assert request.nodes == () and request.names == []
    assert json.loads(encode_filter_result(request, []))["NodeNames"] == []


def test_both_lists_sent_are_both_answered() -> None:
    body = (
        b'{"Pod":{},"NodeNames":["node-b","node-x"],'
        b'"Nodes":{"metadata":{},"items":[' + NODE_A + b"," + NODE_B + b"]}}"
    )
    request = decode_extender_args(body)
    assert request.names == ["node-b", "node-x", "node-a"]
    assert [n.name for n in request.nodes] == request.names
    assert request.platforms == {"node-a": "linux/arm64"}
    decoded = json.loads(encode_filter_result(request, [0, 2]))
    assert decoded["NodeNames"] == ["node-b", "node-a"]
    assert [i["metadata"]["name"] for i in decoded["Nodes"]["items"]] == ["node-b", "node-a"]


def test_pod_fields_we_read() -> None:
    request = decode_extender_args(names_body([]))
    pod = request.pod
    assert pod.key == "shop/web"
    assert pod.meta.uid == "1234"
    assert pod.meta.resource_version == "42"
    assert pod.meta.annotations == {"image-compat.io/tags": "fast"}
    assert pod.pod_spec.scheduler_name == "image-compat-scheduler"
    assert [c.image for c in pod.pod_spec.init_containers or [] if c] == ["busybox:1"]
    assert [c.name for c in pod.pod_spec.containers or [] if c] == ["app"]
    assert [s.name for s in pod.pod_spec.image_pull_secrets or [] if s] == ["pull"]


@pytest.mark.parametrize(
    "pod",
    [
        {},
        {"metadata": None, "spec": None},
        {"metadata": {"annotations": None, "name": None}, "spec": {"containers": None}},
        {"spec": {"containers": [None, {"name": None, "image": None}], "initContainers": None}},
        {"spec": {"imagePullSecrets": None, "schedulerName": None, "nodeName": None}},
    ],
)
def test_go_nulls_are_tolerated_everywhere(pod: dict[str, object]) -> None:
    request = decode_extender_args(names_body(None, pod))
    assert request.nodes == () and request.names == []
    assert request.pod.key == "/"


def test_nodes_items_null_is_an_empty_list() -> None:
    body = b'{"Pod":{},"Nodes":{"metadata":null,"items":null},"NodeNames":null}'
    request = decode_extender_args(body)
    assert request.nodes_mode and request.nodes == () and request.names == []
    decoded = json.loads(encode_filter_result(request, []))
    assert decoded["Nodes"] == {"metadata": {}, "items": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty request body"),
        (b"   \n", "empty request body"),
        (b"not json", "JSON is malformed"),
        (b"[1, 2]", "Expected `object`"),
        (b'{"Pod": null, "NodeNames": []}', "Pod is missing or null"),
        (b'{"NodeNames": []}', "Pod is missing or null"),
        (b'{"Pod": {}, "NodeNames": "node-a"}', "$.NodeNames"),
        (b'{"Pod": {}, "NodeNames": [1]}', "$.NodeNames[0]"),
        (b'{"Pod": {"spec": {"containers": {}}}}', "$.Pod.spec.containers"),
        (b'{"Pod": {"metadata": {"annotations": {"a": 1}}}}', "$.Pod.metadata.annotations"),
        (b'{"Pod": {}, "Nodes": {"items": [{"metadata": {}}]}}', "Nodes.items[0]"),
        (b'{"Pod": {}, "Nodes": {"items": [7]}}', "Nodes.items[0]"),
        (b'{"Pod": {}', "truncated"),
    ],
)
def test_bad_requests_get_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_extender_args(body)
    assert message in str(caught.value)


def test_binding_wire_format() -> None:
    args = decode_binding_args(
        b'{"PodName":"web","PodNamespace":"shop","PodUID":"1234","Node":"node-a"}'
    )
    assert (args.PodName, args.PodNamespace, args.PodUID, args.Node) == (
        "web",
        "shop",
        "1234",
        "node-a",
    )
    assert encode(ExtenderBindingResult()) == b'{"Error":""}'
    with pytest.raises(ProtocolError):
        decode_binding_args(b"")


def test_pod_from_object_reports_bad_shapes() -> None:
    assert pod_from_object(POD).key == "shop/web"
    with pytest.raises(ProtocolError):
        pod_from_object({"spec": {"containers": "x"}})


def test_unknown_fields_are_ignored_and_not_built() -> None:
    # Large parts of the Pod we do not read (status, volumes, managedFields) are skipped.
    request = decode_extender_args(names_body(["a"]))
    assert not hasattr(request.pod, "status")
    assert msgspec.json.decode(encode_priorities(["a"], [1])) == [{"Host": "a", "Score": 1}]
