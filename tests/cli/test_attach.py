"""``attach``: the pushed artifact read back by our loader, the real ``oras discover`` and the
real ``nfd compat validate-node --image``, on a registry with the referrers API
(go-containerregistry) and on ones without it (go-containerregistry with the API off, and
Debian's docker-registry over TLS with basic auth).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devcluster import build
from devcluster.oci import (
    OciError,
    get_blob,
    get_manifest,
    list_tags,
    oras_discover,
    push_image,
    push_index,
)
from devcluster.registries import Registry, RegistryEndpoint
from extender.artifacts.attach import artifact_manifest, parse_created
from extender.artifacts.nfd_client import fetch_spec_like_nfd
from extender.nfd.spec import ARTIFACT_TYPE, SPEC_MEDIA_TYPE
from extender.registry.auth import DockerConfig
from extender.registry.client import RegistryClient
from extender.registry.hosts import HostPolicy, RegistryHostConfig
from extender.registry.reference import CompatibilityArtifact, Descriptor, Platform

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
T0 = "2025-01-01T00:00:00Z"
T1 = "2025-02-01T00:00:00Z"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def tagged_spec(tag: str) -> str:
    # No rules: NFD's validate-node matches it on any machine and reports the tag back.
    return f"version: v1alpha1\ncompatibilities:\n- tag: {tag}\n  rules: []\n"


def attach(
    ep: RegistryEndpoint, *args: str | Path, home: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    flags = ["--plain-http"] if ep.plain_http else ["--ca-file", str(ep.ca_file)]
    if ep.username is not None and stdin is None:
        flags += ["--registry-username", ep.username, "--registry-password-stdin"]
        stdin = (ep.password or "") + "\n"
    return subprocess.run(
        [sys.executable, "-m", "extender", "attach", *map(str, args), *flags],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        # HOME: no developer's ~/.docker/config.json takes part.
        env={**os.environ, "NO_COLOR": "1", "HOME": str(home), "DOCKER_CONFIG": ""},
        timeout=120,
        check=False,
    )


def attached_rows(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def write_spec(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read_like_nfd(ep: RegistryEndpoint, image: str, platform: str = "") -> CompatibilityArtifact:
    """Our loader, as ``validate --image`` uses it."""
    credentials = []
    if ep.username is not None:
        auth = {"username": ep.username, "password": ep.password or ""}
        credentials.append(DockerConfig({"auths": {ep.host: auth}}))
    hosts = {
        ep.host: RegistryHostConfig(
            plain_http=ep.plain_http, ca_file=str(ep.ca_file) if ep.ca_file else None
        )
    }

    async def fetch() -> CompatibilityArtifact:
        async with RegistryClient(policy=HostPolicy(allow_loopback=True), hosts=hosts) as client:
            chosen = Platform.parse(platform) if platform else None
            return await fetch_spec_like_nfd(client, image, chosen, credentials)

    return asyncio.run(fetch())


def run_nfd(ep: RegistryEndpoint, image: str, *extra: str) -> tuple[int, Any, str]:
    """The real ``nfd compat validate-node --image``: (exit code, JSON report, log)."""
    flags = ["--plain-http"] if ep.plain_http else []
    stdin = None
    if ep.username is not None:
        flags += ["--registry-username", ep.username, "--registry-password-stdin"]
        stdin = ep.password or ""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    if ep.ca_file is not None:
        env["SSL_CERT_FILE"] = str(ep.ca_file)  # Go's x509 trusts it on Linux
    done = subprocess.run(
        [str(build.binary("nfd")), "compat", "validate-node", "--image", image, *flags, *extra],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    parsed = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None
    return done.returncode, parsed, done.stderr + done.stdout


def nfd_tags(ep: RegistryEndpoint, image: str, *extra: str) -> list[str]:
    code, report, log = run_nfd(ep, image, "--output-json", *extra)
    assert code == 0, log
    return [s.get("tag") for s in report]


# --------------------------------------------------------------------------------------------
# Without a registry


def test_artifact_manifest_has_the_shape_oras_and_nfd_use() -> None:
    subject = Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "a" * 64, 321)
    body, layer = artifact_manifest(b"version: v1alpha1\n", subject, T0, title="app.yaml")
    manifest = json.loads(body)
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": EMPTY_DIGEST,
        "size": 2,
        "data": "e30=",
    }
    assert manifest["layers"] == [
        {
            "mediaType": SPEC_MEDIA_TYPE,
            "digest": layer.digest,
            "size": 18,
            "annotations": {"org.opencontainers.image.title": "app.yaml"},
        }
    ]
    assert manifest["subject"] == {
        "mediaType": subject.media_type,
        "digest": subject.digest,
        "size": 321,
    }
    assert manifest["annotations"] == {"org.opencontainers.image.created": T0}


def test_created_must_be_rfc3339_with_a_zone() -> None:
    assert parse_created("2025-01-01T00:00:00.5+02:00") == "2025-01-01T00:00:00.5+02:00"
    for bad in ("2025-01-01", "2025-01-01T00:00:00", "yesterday"):
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_created(bad)


# --------------------------------------------------------------------------------------------
# Real registries, oras and nfd


@pytest.mark.integration
def test_tag_reference_on_a_registry_with_the_referrers_api(
    oci_registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    spec = write_spec(tmp_path, "app-compat.yaml", tagged_spec("api"))
    done = attach(
        oci_registry, image.tag_ref, spec, "--created", T0, "--output", "json", home=tmp_path
    )
    (row,) = attached_rows(done)
    assert row["referrers"] == "api"
    assert row["subject"].endswith(f"@{image.digest}")
    # The referrers API lists it: no sha256-<hex> tag was made.
    assert list_tags(oci_registry, unique_repo) == ["v1"]

    manifest, media_type, digest = get_manifest(oci_registry, unique_repo, row["artifact"])
    assert digest == row["artifact"]
    assert media_type == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["subject"] == {
        "mediaType": image.media_type,
        "digest": image.digest,
        "size": image.size,
    }
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert get_blob(oci_registry, unique_repo, EMPTY_DIGEST) == b"{}"
    assert manifest["annotations"] == {"org.opencontainers.image.created": T0}
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == SPEC_MEDIA_TYPE
    assert layer["annotations"]["org.opencontainers.image.title"] == "app-compat.yaml"
    assert get_blob(oci_registry, unique_repo, layer["digest"]) == spec.read_bytes()

    ours = read_like_nfd(oci_registry, image.tag_ref)
    assert ours.spec_bytes == spec.read_bytes()
    assert ours.artifact_digest == row["artifact"]

    (found,) = oras_discover(
        oci_registry, unique_repo, image.digest, distribution_spec="v1.1-referrers-api"
    )
    assert found["digest"] == row["artifact"]
    assert found["artifactType"] == ARTIFACT_TYPE
    assert found["annotations"]["org.opencontainers.image.created"] == T0

    assert nfd_tags(oci_registry, image.tag_ref) == ["api"]


@pytest.mark.integration
def test_digest_reference_on_docker_registry_uses_the_tag_schema(
    docker_registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    """Distribution 2.8 (TLS, basic auth) has no referrers API: the sha256-<hex> index."""
    image = push_image(docker_registry, unique_repo, "v1")
    old = write_spec(tmp_path, "old.yaml", tagged_spec("old"))
    new = write_spec(tmp_path, "new.yaml", tagged_spec("new"))
    first = attach(
        docker_registry, image.ref, old, "--created", T0, "--output", "json", home=tmp_path
    )
    (row_old,) = attached_rows(first)
    tag = "sha256-" + image.digest.removeprefix("sha256:")
    assert row_old["referrers"] == f"tag {tag}"
    _, _, first_index = get_manifest(docker_registry, unique_repo, tag)
    second = attach(
        docker_registry, image.ref, new, "--created", T1, "--output", "json", home=tmp_path
    )
    (row_new,) = attached_rows(second)
    # The same push again changes nothing: the index already lists that manifest.
    again = attach(
        docker_registry, image.ref, new, "--created", T1, "--output", "json", home=tmp_path
    )
    assert attached_rows(again)[0]["artifact"] == row_new["artifact"]

    index, media_type, _ = get_manifest(docker_registry, unique_repo, tag)
    assert media_type == "application/vnd.oci.image.index.v1+json"
    listed = [(m["digest"], m["artifactType"]) for m in index["manifests"]]
    assert listed == [(row_old["artifact"], ARTIFACT_TYPE), (row_new["artifact"], ARTIFACT_TYPE)]
    # The replaced index was deleted, as oras-go does.
    with pytest.raises(OciError, match="HTTP 404"):
        get_manifest(docker_registry, unique_repo, first_index)

    ours = read_like_nfd(docker_registry, image.tag_ref)
    assert ours.spec_bytes == new.read_bytes()  # the newest by the created annotation

    found = oras_discover(
        docker_registry, unique_repo, image.digest, distribution_spec="v1.1-referrers-tag"
    )
    assert {f["digest"] for f in found} == {row_old["artifact"], row_new["artifact"]}

    assert nfd_tags(docker_registry, image.ref) == ["new"]

    # Without credentials the registry refuses, and the command says so.
    anonymous = attach(docker_registry, image.ref, new, home=tmp_path, stdin="")
    assert anonymous.returncode == 1
    assert "access denied" in anonymous.stderr


@pytest.mark.integration
def test_registry_without_referrers_api_gets_the_tag_index(
    oci_registry_tags: Registry, unique_repo: str, tmp_path: Path
) -> None:
    image = push_image(oci_registry_tags, unique_repo, "v1")
    spec = write_spec(tmp_path, "app.yaml", tagged_spec("tags"))
    (row,) = attached_rows(
        attach(oci_registry_tags, image.tag_ref, spec, "--output", "json", home=tmp_path)
    )
    tag = "sha256-" + image.digest.removeprefix("sha256:")
    assert row["referrers"] == f"tag {tag}"
    assert sorted(list_tags(oci_registry_tags, unique_repo)) == sorted(["v1", tag])
    assert read_like_nfd(oci_registry_tags, image.tag_ref).spec_bytes == spec.read_bytes()
    (found,) = oras_discover(oci_registry_tags, unique_repo, image.digest)
    assert found["digest"] == row["artifact"]
    assert nfd_tags(oci_registry_tags, image.tag_ref) == ["tags"]


@pytest.mark.integration
def test_index_and_its_platforms(oci_registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    """Without --platform the index gets the artifact; with it, each platform's manifest."""
    image = push_index(oci_registry, unique_repo, "v1", platforms=("linux/amd64", "linux/arm64"))
    index_spec = write_spec(tmp_path, "index.yaml", tagged_spec("index"))
    platform_spec = write_spec(tmp_path, "platform.yaml", tagged_spec("per-platform"))
    (on_index,) = attached_rows(
        attach(oci_registry, image.tag_ref, index_spec, "--output", "json", home=tmp_path)
    )
    assert on_index["subject"].endswith(f"@{image.digest}") and on_index["platform"] is None
    done = attach(
        oci_registry, image.tag_ref, platform_spec,
        "--platform", "linux/arm64", "--platform", "linux/amd64", "--output", "json",
        home=tmp_path,
    )  # fmt: skip
    rows = attached_rows(done)
    assert [(r["platform"], r["subject"].split("@")[1]) for r in rows] == [
        ("linux/arm64", image.platforms["linux/arm64"]),
        ("linux/amd64", image.platforms["linux/amd64"]),
    ]
    index_manifest, _, _ = get_manifest(oci_registry, unique_repo, on_index["artifact"])
    assert index_manifest["subject"]["mediaType"] == "application/vnd.oci.image.index.v1+json"

    assert read_like_nfd(oci_registry, image.tag_ref).spec_bytes == index_spec.read_bytes()
    for platform in ("linux/arm64", "linux/amd64"):
        ours = read_like_nfd(oci_registry, image.tag_ref, platform)
        assert ours.spec_bytes == platform_spec.read_bytes()
        assert nfd_tags(oci_registry, image.tag_ref, "--platform", platform) == ["per-platform"]
        (found,) = oras_discover(oci_registry, unique_repo, image.tag or "", platform=platform)
        assert found["artifactType"] == ARTIFACT_TYPE
    assert nfd_tags(oci_registry, image.tag_ref) == ["index"]

    missing = attach(
        oci_registry, image.tag_ref, platform_spec, "--platform", "linux/s390x", home=tmp_path
    )
    assert missing.returncode == 1
    assert "linux/s390x" in missing.stderr


@pytest.mark.integration
def test_a_spec_with_errors_pushes_nothing(
    oci_registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    bad = attach(oci_registry, image.tag_ref, DATA / "bad-expressions.yaml", home=tmp_path)
    assert bad.returncode == 1
    assert "error:" in bad.stderr and "nothing attached" in bad.stderr
    assert bad.stdout == ""
    strict = attach(oci_registry, image.tag_ref, DATA / "warnings.yaml", "--strict", home=tmp_path)
    assert strict.returncode == 1
    assert "warning" in strict.stderr and "nothing attached" in strict.stderr
    assert oras_discover(oci_registry, unique_repo, image.digest) == []
    assert list_tags(oci_registry, unique_repo) == ["v1"]

    # Warnings alone are printed, and the spec is attached.
    warned = attach(oci_registry, image.tag_ref, DATA / "warnings.yaml", home=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert "warning" in warned.stderr and warned.stdout.startswith("attached sha256:")
    assert len(oras_discover(oci_registry, unique_repo, image.digest)) == 1
