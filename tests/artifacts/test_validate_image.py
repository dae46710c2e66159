"""``validate --image``: registry access flags (TLS with our CA, basic auth through stdin),
NFD's ``--platform`` parsing, and the usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devcluster.oci import attach_spec, push_image
from devcluster.registries import Registry
from extender.artifacts.nfd_client import parse_nfd_platform
from extender.registry.reference import Platform

ROOT = Path(__file__).resolve().parents[2]
NODES = ROOT / "examples" / "nodes" / "all-nodes.yaml"
SPEC = ROOT / "examples" / "specs" / "preferred-fallback.yaml"


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extender", "validate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=ROOT,
    )


@pytest.mark.integration
def test_tls_registry_with_password_from_stdin(docker_registry: Registry, unique_repo: str) -> None:
    image = push_image(docker_registry, unique_repo, "v1")
    attach_spec(
        docker_registry,
        unique_repo,
        image.digest,
        SPEC,
        created=datetime(2025, 1, 1, tzinfo=UTC),
        distribution_spec="v1.1-referrers-tag",  # distribution 2.8 has no referrers API
    )
    common = [
        "--image",
        image.tag_ref,
        "--features",
        str(NODES),
        "--node",
        "sandbox-vm-01",
        "--ca-file",
        str(docker_registry.ca_file),
        "--output",
        "json",
    ]
    assert docker_registry.username and docker_registry.password
    done = run(
        *common,
        "--registry-username",
        docker_registry.username,
        "--registry-password-stdin",
        stdin=docker_registry.password + "\n",
    )
    assert done.returncode in (0, 3), done.stderr
    assert '"sets"' in done.stdout
    anonymous = run(*common)
    assert anonymous.returncode == 1
    assert "failed to fetch compatibility spec" in anonymous.stderr


def test_platform_is_parsed_as_nfd_does() -> None:
    assert parse_nfd_platform("") is None
    assert parse_nfd_platform("linux/arm64") == Platform("linux", "arm64")
    assert parse_nfd_platform("linux/arm/v7") == Platform("linux", "arm", "v7")
    lone = parse_nfd_platform("linux")
    assert lone is not None and lone.os == "linux" and lone.architecture
    for bad, message in (
        ("/amd64", "OS cannot be empty"),
        ("linux/", "Architecture cannot be empty"),
        ("a/b/c/d", "expected format"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_nfd_platform(bad)


def test_usage_errors() -> None:
    assert run("--features", str(NODES)).returncode == 2
    both = run(
        "--image",
        "127.0.0.1:1/x:v1",
        "--features",
        str(NODES),
        "--registry-token-stdin",
        "--registry-password-stdin",
        "--registry-username",
        "u",
    )
    assert both.returncode == 1
    assert "at the same time" in both.stderr
    bad_ref = run("--image", "Not A Ref", "--features", str(NODES))
    assert bad_ref.returncode == 1 and "invalid" in bad_ref.stderr
