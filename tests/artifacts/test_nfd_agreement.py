"""``validate --image`` against NFD itself: the real ``nfd compat validate-node --image``.

The example specs are attached with the real ``oras attach`` to an image in a real registry.
NFD's client discovers this machine's features itself; we evaluate the NodeFeature that NFD's
own ``nfd-worker`` published for this machine. Every rule's ``isMatch`` must agree. Rows
(per-expression ``isMatch``) may differ only by NFD's documented report quirks
(extender/nfd/report.py), and each such difference is listed in the test
output and classified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster import build
from devcluster.oci import attach_spec, push_image, push_index
from devcluster.registries import Registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "examples" / "specs").glob("*.yaml"))
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def host_nodefeature_file(
    _host_nodefeature: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The NodeFeature NFD's nfd-worker published for this machine, as a file."""
    published = _host_nodefeature
    path = tmp_path_factory.mktemp("nodefeature") / "host.yaml"
    path.write_text(yaml.safe_dump(published))
    return path


def run_nfd(image: str, *extra: str) -> tuple[int, Any, str]:
    done = subprocess.run(
        [str(build.binary("nfd")), "compat", "validate-node", "--image", image, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout.strip()
    try:
        parsed = json.loads(output) if done.returncode == 0 else None
    except ValueError:
        parsed = None
    return done.returncode, parsed, done.stderr + output


def run_ours(image: str, features: Path, *extra: str) -> tuple[int, Any, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "extender",
            "validate",
            "--image",
            image,
            "--features",
            str(features),
            "--output",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=ROOT,
    )
    try:
        parsed = json.loads(done.stdout) if done.stdout.strip() else None
    except ValueError:
        parsed = None
    return done.returncode, parsed, done.stderr


def classify_row(row: dict[str, Any], features: dict[str, Any]) -> str:
    """Which documented NFD report quirk explains a row on which the reports differ."""
    feature = row["feature"]
    if feature != feature.lower():
        return "upper-case feature name: NFD reports every row false"
    if feature.lower() in (features.get("instances") or {}):
        return "instance feature: NFD says true when some instance held it"
    return "UNEXPLAINED"


def compare(
    theirs: list[dict[str, Any]], ours: dict[str, Any], features: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """(rule disagreements, row differences with their classification)."""
    rule_problems: list[str] = []
    row_notes: list[str] = []
    assert len(theirs) == len(ours["sets"]), "different number of sets"
    for s, (their_set, our_set) in enumerate(zip(theirs, ours["sets"], strict=True)):
        for their_rule, our_rule in zip(their_set["rules"] or [], our_set["rules"], strict=True):
            where = f"set {s + 1} rule {their_rule['name']!r}"
            if their_rule["isMatch"] != our_rule["isMatch"]:
                rule_problems.append(
                    f"{where}: NFD {their_rule['isMatch']}, ours {our_rule['isMatch']}"
                )
            lists = [(their_rule.get("matchedExpressions"), our_rule.get("matchedExpressions"))]
            lists += [
                (a.get("matchedExpressions"), b.get("matchedExpressions"))
                for a, b in zip(
                    their_rule.get("matchedAny") or [],
                    our_rule.get("matchedAny") or [],
                    strict=True,
                )
            ]
            for their_rows, our_rows in lists:
                for a, b in zip(their_rows or [], our_rows or [], strict=True):
                    assert (a["feature"], a["name"]) == (b["feature"], b["name"]), where
                    if a["isMatch"] != b["isMatch"]:
                        row_notes.append(
                            f"{where}: {a['feature']}.{a['name']} {a['expression']}: NFD "
                            f"{a['isMatch']}, ours {b['isMatch']} -- {classify_row(a, features)}"
                        )
    return rule_problems, row_notes


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_validate_image_agrees_with_nfd(
    spec_path: Path, oci_registry: Registry, unique_repo: str, host_nodefeature_file: Path
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, spec_path, created=T0)
    ref = image.tag_ref
    features = yaml.safe_load(host_nodefeature_file.read_text())["spec"]["features"]

    their_code, theirs, their_log = run_nfd(ref, "--plain-http", "--output-json")
    _, ours, our_log = run_ours(ref, host_nodefeature_file, "--plain-http")
    assert ours is not None, our_log
    if their_code != 0:
        # NFD aborts on the first evaluation error; we report it on the rule instead.
        assert "failed to fetch" not in their_log, their_log
        errors = [r for s in ours["sets"] for r in s["rules"] if r.get("error")]
        assert errors, f"NFD failed ({their_log.strip()[-300:]}), we found no error"
        print(f"{spec_path.name}: NFD stopped with an evaluation error; ours marks {errors[0]}")
        return
    rule_problems, row_notes = compare(theirs, ours, features)
    for note in row_notes:
        print(f"{spec_path.name}: documented NFD report quirk: {note}")
    assert not rule_problems, rule_problems
    assert not [n for n in row_notes if n.endswith("UNEXPLAINED")], row_notes


def test_platform_flag_agrees_with_nfd(
    oci_registry: Registry, unique_repo: str, host_nodefeature_file: Path
) -> None:
    """--platform: the platform manifest's own artifact, as nfd's client picks it."""
    image = push_index(oci_registry, unique_repo, "v1")
    index_spec = "version: v1alpha1\ncompatibilities:\n- tag: index\n  rules: []\n"
    arm_spec = "version: v1alpha1\ncompatibilities:\n- tag: arm64\n  rules: []\n"
    attach_spec(oci_registry, unique_repo, image.digest, index_spec, created=T0)
    attach_spec(oci_registry, unique_repo, image.platforms["linux/arm64"], arm_spec, created=T0)
    ref = image.tag_ref
    for platform, tag in (("", "index"), ("linux/arm64", "arm64")):
        extra = ["--plain-http"] + (["--platform", platform] if platform else [])
        their_code, theirs, their_log = run_nfd(ref, *extra, "--output-json")
        our_code, ours, our_log = run_ours(ref, host_nodefeature_file, *extra)
        assert their_code == 0, their_log
        assert [s.get("tag") for s in theirs] == [tag]
        assert ours is not None, our_log
        assert [s.get("tag") for s in ours["sets"]] == [tag]
    # amd64 has no artifact of its own: both refuse (no fallback to the index's artifact).
    their_code, _, their_log = run_nfd(ref, "--plain-http", "--platform", "linux/amd64")
    our_code, _, our_log = run_ours(
        ref, host_nodefeature_file, "--plain-http", "--platform", "linux/amd64"
    )
    assert their_code == 1 and "compatibility artifact not found" in their_log
    assert our_code == 1 and "compatibility artifact not found" in our_log
