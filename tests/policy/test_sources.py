"""The sources behind the policy: the FeatureStore and --features-file, and --spec-map."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from extender.artifacts.spec_map import SpecMap, SpecMapError, SpecMapSource
from extender.artifacts.types import NoArtifacts, PullContext, SpecKey
from extender.nodes.filesource import FeaturesFileSource
from extender.nodes.store import FeatureStore
from tests.policy.helpers import AVX512, INVALID_WEIGHT, PREFERRED_FALLBACK, fast, minimal

CTX = PullContext()


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


# -- --spec-map --------------------------------------------------------------------------------


def spec_dir(tmp_path: Path, entries: str) -> Path:
    (tmp_path / "specs").mkdir(exist_ok=True)
    (tmp_path / "specs" / "pf.yaml").write_text(PREFERRED_FALLBACK)
    (tmp_path / "specs" / "avx.yaml").write_text(AVX512)
    (tmp_path / "specs" / "bad.yaml").write_text(INVALID_WEIGHT)
    path = tmp_path / "map.yaml"
    write(path, entries)
    return path


MAP = """
- image: "registry.example/app:*"
  spec: specs/pf.yaml
- image: "registry.example/*"
  spec: specs/avx.yaml
- image: "*/bad:[0-9]"
  spec: specs/bad.yaml
- image: "other.example/gone"
  spec: specs/missing.yaml
- image: "registry.example/specs/avx:v1"
  spec: specs/avx.yaml
"""


def test_spec_map_first_match_wins_with_globs_over_the_full_reference(tmp_path: Path) -> None:
    source = SpecMapSource(spec_dir(tmp_path, MAP))
    pf, avx = source.spec_map.entries[0].lookup.spec, source.spec_map.entries[1].lookup.spec
    assert pf is not None and avx is not None

    def lookup(image: str, artifact: str = "") -> object:
        return source.get_cached(SpecKey(image, artifact), CTX)

    assert lookup("registry.example/app:1.2").spec is pf  # type: ignore[attr-defined]
    assert lookup("registry.example/team/app:1").spec is avx  # type: ignore[attr-defined]
    # "*" also matches "/" and ":"; the reference is matched as written (no normalisation).
    assert lookup("registry.example/app@sha256:abc").spec is avx  # type: ignore[attr-defined]
    assert lookup("app:1") == lookup("docker.io/library/app:1")
    assert lookup("app:1").spec is None  # type: ignore[attr-defined]
    # An explicit artifact reference from the pod's annotation is looked up the same way.
    assert lookup("plain:1", "registry.example/specs/avx:v1").spec is avx  # type: ignore[attr-defined]


def test_spec_map_bad_and_missing_spec_files(tmp_path: Path) -> None:
    source = SpecMapSource(spec_dir(tmp_path, MAP))
    bad = source.get_cached(SpecKey("x/bad:1"), CTX)
    assert bad is not None and bad.invalid is not None
    assert str(bad.invalid) == "compatibilities[0].weight: 101 is outside 0..100"
    gone = source.get_cached(SpecKey("other.example/gone"), CTX)
    assert gone is not None and gone.failure is not None and "missing.yaml" in gone.failure


async def test_spec_map_load_answers_like_get_cached(tmp_path: Path) -> None:
    source = SpecMapSource(spec_dir(tmp_path, MAP))
    key = SpecKey("registry.example/app:1", platform="linux/amd64")
    assert await source.load(key, CTX) == source.get_cached(key, CTX)
    assert source.ready


def test_spec_map_compiles_each_spec_once(tmp_path: Path) -> None:
    spec_map = SpecMap.load(spec_dir(tmp_path, MAP))
    assert spec_map.entries[1].lookup.spec is spec_map.entries[4].lookup.spec


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("image: x", "expected a list"),
        ("- image: x\n", "spec must be a non-empty file path"),
        ("- spec: a.yaml\n", "image must be a non-empty string pattern"),
        ("- [x]\n", "expected a mapping"),
        ("- {image: x, spec: a.yaml, weight: 1}\n", "unknown key 'weight'"),
        ("- image: [\n", "invalid YAML"),
    ],
)
def test_bad_spec_map_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(SpecMapError, match=problem.replace("[", r"\[")):
        SpecMapSource(spec_dir(tmp_path, text))


def test_missing_spec_map_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecMapError, match="cannot read spec map"):
        SpecMapSource(tmp_path / "nope.yaml")


def test_empty_spec_map_knows_no_specs(tmp_path: Path) -> None:
    source = SpecMapSource(spec_dir(tmp_path, ""))
    assert source.get_cached(SpecKey("any:1"), CTX).spec is None  # type: ignore[union-attr]


def test_spec_map_reloads_when_the_map_or_a_spec_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = spec_dir(tmp_path, MAP)
    source = SpecMapSource(path)
    assert not source.reload_if_changed()
    write(tmp_path / "specs" / "pf.yaml", AVX512)
    assert source.reload_if_changed()
    avx = source.spec_map.entries[1].lookup.spec
    assert source.get_cached(SpecKey("registry.example/app:1"), CTX).spec is avx  # type: ignore[union-attr]
    write(path, "- image: '*'\n  spec: specs/pf.yaml\n")
    assert source.reload_if_changed()
    assert len(source.spec_map.entries) == 1
    with caplog.at_level(logging.ERROR, logger="extender.artifacts"):
        write(path, "nonsense: [")
        assert not source.reload_if_changed()
    assert "keeping the previous spec map" in caplog.text
    assert len(source.spec_map.entries) == 1


async def test_spec_map_poller(tmp_path: Path) -> None:
    source = SpecMapSource(spec_dir(tmp_path, MAP), interval=0)
    write(tmp_path / "map.yaml", "")
    await source.run(iterations=1)
    assert source.spec_map.entries == ()


async def test_no_artifacts_source() -> None:
    source = NoArtifacts()
    assert source.get_cached(SpecKey("a"), CTX).spec is None  # type: ignore[union-attr]
    assert (await source.load(SpecKey("a"), CTX)).spec is None
