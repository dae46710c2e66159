"""The example NodeFeature files: well-formed, and all-nodes.yaml holds exactly them."""

from __future__ import annotations

import yaml

from extender.nodes.model import NODE_NAME_LABEL, load_node_features
from tests.cli.conftest import ALL_NODES, NODES


def test_each_node_file_is_one_nodefeature_named_after_its_node() -> None:
    files = sorted(p for p in NODES.glob("*.yaml") if p != ALL_NODES)
    assert len(files) >= 4
    for path in files:
        [document] = list(yaml.safe_load_all(path.read_text()))
        assert document["apiVersion"] == "nfd.k8s-sigs.io/v1alpha1"
        assert document["kind"] == "NodeFeature"
        metadata = document["metadata"]
        assert metadata["namespace"] == "node-feature-discovery"
        assert metadata["name"] == metadata["labels"][NODE_NAME_LABEL] == path.stem


def test_all_nodes_holds_every_node_file() -> None:
    merged = load_node_features(ALL_NODES.read_bytes())
    files = sorted(p for p in NODES.glob("*.yaml") if p != ALL_NODES)
    assert sorted(merged) == sorted(p.stem for p in files), (
        "examples/nodes/all-nodes.yaml must hold every node file, each after a '---' line"
    )
    for path in files:
        [(node, features)] = load_node_features(path.read_bytes()).items()
        assert features.to_json() == merged[node].to_json(), f"regenerate all-nodes.yaml: {node}"
