"""The example NodeFeature files: well-formed; all-nodes.yaml agrees with the per-node files."""

from __future__ import annotations

import yaml

from extender.features import NODE_NAME_LABEL, load_node_features
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


def test_all_nodes_agrees_with_the_node_files() -> None:
    merged = load_node_features(ALL_NODES.read_bytes())
    assert len(merged) >= 4
    for node, features in merged.items():
        separate = load_node_features((NODES / f"{node}.yaml").read_bytes())
        assert features.to_json() == separate[node].to_json(), node
