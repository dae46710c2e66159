"""--spec-map: images matched to spec files on disk, reloaded when the map or a spec changes;
and the source that knows no specs at all."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from extender.artifacts.spec_map import SpecMap, SpecMapError, SpecMapSource
from extender.artifacts.types import NoArtifacts, PullContext, SpecKey
from tests.nodes.test_sources import write
from tests.policy.helpers import AVX512, INVALID_WEIGHT, PREFERRED_FALLBACK

CTX = PullContext()


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
