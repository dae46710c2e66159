"""Where node features come from: the FeatureStore that merges sources, and --features-file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from extender.nodes.filesource import FeaturesFileSource
from extender.nodes.store import FeatureStore
from tests.policy.helpers import fast, minimal

# -- FeatureStore ------------------------------------------------------------------------------


def test_store_without_sources_is_synced_and_empty() -> None:
    snapshot = FeatureStore().snapshot()
    assert snapshot.synced and not snapshot.nodes


def test_store_is_synced_once_every_source_has_delivered() -> None:
    store = FeatureStore()
    store.add_source("file")
    store.add_source("watch")
    assert store.snapshot().waiting == ("file", "watch")
    store.replace("file", {"a": fast("a")})
    assert not store.snapshot().synced and store.snapshot().waiting == ("watch",)
    store.replace("watch", {})
    assert store.snapshot().synced
    store.set_synced("watch", False)
    assert not store.snapshot().synced
    with pytest.raises(ValueError, match="already registered"):
        store.add_source("file")


def test_snapshots_are_immutable_and_generations_follow_content() -> None:
    store = FeatureStore()
    store.add_source("s")
    store.replace("s", {"a": fast("a"), "b": minimal("b")})
    first = store.snapshot()
    a_generation = first.nodes["a"].generation
    # Same content again (a reload): the generation stays, so memo entries stay valid.
    store.replace("s", {"a": fast("a"), "b": minimal("b")})
    assert store.snapshot().nodes["a"].generation == a_generation
    store.update("s", "a", minimal("a"))
    second = store.snapshot()
    assert second.nodes["a"].generation != a_generation
    assert second.nodes["b"] is first.nodes["b"]
    assert first.nodes["a"].generation == a_generation  # the old snapshot is untouched
    store.update("s", "b", None)
    assert "b" not in store.snapshot().nodes and "b" in second.nodes
    assert store.snapshot().version > second.version > first.version


def test_later_source_wins_for_a_node() -> None:
    store = FeatureStore()
    store.add_source("base")
    store.add_source("override")
    store.replace("base", {"a": fast("a"), "b": fast("b")})
    store.replace("override", {"a": minimal("a")})
    assert store.snapshot().nodes["a"].features.same_content(minimal("x"))
    store.update("override", "a", None)
    assert store.snapshot().nodes["a"].features.same_content(fast("x"))


def test_platforms() -> None:
    store = FeatureStore()
    store.set_platform("a", "linux/arm64")
    snapshot = store.snapshot()
    assert snapshot.platform("a") == "linux/arm64" and snapshot.platform("b") == ""
    store.set_platform("a", None)
    assert store.snapshot().platform("a") == "" and snapshot.platform("a") == "linux/arm64"


def test_changed_since_names_the_nodes_changed_after_a_version() -> None:
    store = FeatureStore()
    store.add_source("s")
    store.replace("s", {"a": fast("a"), "b": minimal("b"), "c": fast("c")})
    start = store.snapshot()
    assert start.changed_since(start.version) == frozenset()
    assert start.changed_since(start.version + 1) is None  # a version it has not seen
    store.update("s", "a", minimal("a"))
    after_a = store.snapshot()
    assert after_a.changed_since(start.version) == frozenset({"a"})
    store.replace("s", {"a": minimal("a"), "b": fast("b"), "c": fast("c")})  # b alone differs
    store.update("s", "c", None)  # gone
    store.set_platform("d", "linux/arm64")  # a platform alone
    latest = store.snapshot()
    assert latest.changed_since(start.version) == frozenset({"a", "b", "c", "d"})
    assert latest.changed_since(after_a.version) == frozenset({"b", "c", "d"})
    assert latest.changed_since(latest.version - 1) == frozenset({"d"})
    # Older snapshots keep their own view.
    assert after_a.changed_since(start.version) == frozenset({"a"})
    # What changes no node: same content (no new version), sync state, the same platform.
    store.update("s", "a", minimal("a"))
    assert store.snapshot().version == latest.version
    store.set_synced("s", False)
    store.set_platform("d", "linux/arm64")
    assert store.snapshot().version > latest.version
    assert store.snapshot().changed_since(latest.version) == frozenset()
    store.set_platform("d", None)
    assert store.snapshot().changed_since(latest.version) == frozenset({"d"})


def test_changed_since_knows_when_it_no_longer_reaches_back() -> None:
    store = FeatureStore()
    store.add_source("s")
    store.replace("s", {"a": fast("a"), "b": fast("b")})
    start = store.snapshot().version
    for step in range(FeatureStore.CHANGES_KEPT):
        store.update("s", "a", minimal("a") if step % 2 == 0 else fast("a"))
    store.update("s", "b", minimal("b"))
    snapshot = store.snapshot()
    assert snapshot.version == start + FeatureStore.CHANGES_KEPT + 1
    assert snapshot.changed_since(start) is None  # derive everything again
    assert snapshot.changed_since(start + 1) == frozenset({"a", "b"})  # the oldest change kept on
    assert snapshot.changed_since(snapshot.version - 1) == frozenset({"b"})
    assert len(snapshot.changes) == FeatureStore.CHANGES_KEPT


# -- --features-file ---------------------------------------------------------------------------

NODEFEATURE = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeature
metadata:
  name: {node}
  namespace: node-feature-discovery
  labels: {{nfd.node.kubernetes.io/node-name: {node}}}
spec:
  features:
    attributes:
      kernel.version: {{elements: {{major: "{major}"}}}}
"""


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # A changed stat is what triggers a read; make sure it differs within one test.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_features_file_loads_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    write(
        path, NODEFEATURE.format(node="a", major=5) + "---" + NODEFEATURE.format(node="b", major=6)
    )
    store = FeatureStore()
    source = FeaturesFileSource(store, path)
    assert not store.snapshot().synced
    assert source.poll()
    snapshot = store.snapshot()
    assert snapshot.synced and sorted(snapshot.nodes) == ["a", "b"]
    assert not source.poll()  # unchanged
    write(path, NODEFEATURE.format(node="a", major=4))
    assert source.poll()
    snapshot = store.snapshot()
    assert sorted(snapshot.nodes) == ["a"]
    assert snapshot.nodes["a"].features.attributes["kernel.version"] == {"major": "4"}


def test_bad_features_file_keeps_the_last_good_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "nodes.yaml"
    write(path, NODEFEATURE.format(node="a", major=5))
    store = FeatureStore()
    source = FeaturesFileSource(store, path)
    source.poll()
    with caplog.at_level(logging.ERROR, logger="extender.nodes"):
        write(path, "kind: Node\n")
        assert not source.poll()
        write(path, "kind: Node\n\n")
        source.poll()
    assert sorted(store.snapshot().nodes) == ["a"] and store.snapshot().synced
    assert "expected kind NodeFeature or a List" in caplog.text
    assert "keeping the last good state" in caplog.text


def test_missing_features_file_is_not_ready(tmp_path: Path) -> None:
    store = FeatureStore()
    source = FeaturesFileSource(store, tmp_path / "missing.yaml")
    assert not source.poll()
    assert store.snapshot().waiting == ("features-file",)
    write(tmp_path / "missing.yaml", NODEFEATURE.format(node="a", major=5))
    assert source.poll() and store.snapshot().synced


async def test_features_file_poller_runs_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    write(path, NODEFEATURE.format(node="a", major=5))
    store = FeatureStore()
    source = FeaturesFileSource(store, path, interval=0)
    await source.run(iterations=2)
    assert store.snapshot().synced
