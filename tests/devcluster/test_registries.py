"""The devcluster registries hold real images and real compatibility artifacts attached by the
real ``oras attach``, and ``oras discover`` finds them through the referrers API (ggcr,
referrers on) or the ``sha256-<hex>`` tag schema (ggcr referrers off; docker-registry over TLS
with htpasswd)."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devcluster import oci
from devcluster.registries import (
    Registry,
    RegistryEndpoint,
    ensure_debian_packages,
    start_oci_registry,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REGISTRIES = ["oci_registry", "oci_registry_tags", "docker_registry"]
EMPTY_CONFIG = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SPEC = b"""version: v1alpha1
compatibilities:
- description: needs vfio
  rules:
  - name: vfio
    matchFeatures:
    - feature: kernel.loadedmodule
      matchExpressions:
        vfio_pci: {op: Exists}
"""
TAG_API = "v1.1-referrers-api"
TAG_SCHEMA = "v1.1-referrers-tag"


def _tag_for(digest: str) -> str:
    return digest.replace(":", "-")


def _distribution_spec(reg: Registry) -> str:
    return TAG_API if reg.referrers_api else TAG_SCHEMA


def _http(ep: RegistryEndpoint, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(ep.url + path, headers={**ep.auth_header(), **headers})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ep.ssl_context()) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.mark.parametrize("registry", REGISTRIES)
def test_round_trip_index_and_attached_spec(
    registry: str, request: pytest.FixtureRequest, unique_repo: str
) -> None:
    reg: Registry = request.getfixturevalue(registry)
    single = oci.push_image(reg, unique_repo, "single", platform="linux/arm64")
    image = oci.push_index(reg, unique_repo, "v1")

    doc, media_type, digest = oci.get_manifest(reg, unique_repo, "v1")
    assert (media_type, digest) == (oci.MEDIA_TYPE_INDEX, image.digest)
    assert {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in doc["manifests"]
    } == image.platforms
    child, _, _ = oci.get_manifest(reg, unique_repo, image.platforms["linux/arm64"])
    config = json.loads(oci.get_blob(reg, unique_repo, child["config"]["digest"]))
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert oci.get_manifest(reg, unique_repo, "single")[2] == single.digest

    created = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    art = oci.attach_spec(
        reg,
        unique_repo,
        image.digest,
        SPEC,
        created=created,
        distribution_spec=_distribution_spec(reg),
    )
    assert art.subject == image.digest
    assert art.artifact_type == oci.NFD_ARTIFACT_TYPE
    manifest, media_type, _ = oci.get_manifest(reg, unique_repo, art.digest)
    assert media_type == oci.MEDIA_TYPE_MANIFEST
    assert manifest["artifactType"] == oci.NFD_ARTIFACT_TYPE
    assert manifest["subject"]["digest"] == image.digest
    assert manifest["annotations"][oci.ANNOTATION_CREATED] == "2024-05-01T12:00:00.250000Z"
    # NFD's layout: empty config, one layer with the spec's media type holding the YAML.
    assert manifest["config"]["digest"] == EMPTY_CONFIG
    [layer] = manifest["layers"]
    assert layer["mediaType"] == oci.NFD_SPEC_MEDIA_TYPE
    assert oci.get_blob(reg, unique_repo, layer["digest"]) == SPEC


def test_referrers_api_lists_artifacts_without_tag_index(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = oci.push_index(oci_registry, unique_repo)
    old = oci.attach_spec(
        oci_registry, unique_repo, image.digest, SPEC, created="2024-01-01T00:00:00Z"
    )
    new = oci.attach_spec(
        oci_registry, unique_repo, image.digest, SPEC + b"# v2\n", created="2024-02-01T00:00:00Z"
    )

    found = oci.oras_discover(oci_registry, unique_repo, image.digest, distribution_spec=TAG_API)
    by_digest = {r["digest"]: r for r in found}
    assert set(by_digest) == {old.digest, new.digest}
    assert by_digest[new.digest]["annotations"][oci.ANNOTATION_CREATED] == "2024-02-01T00:00:00Z"
    # The API path, really: the endpoint answers an index and oras wrote no fallback tag.
    status, headers, body = _http(oci_registry, f"/v2/{unique_repo}/referrers/{image.digest}")
    assert status == 200
    assert headers["content-type"] == oci.MEDIA_TYPE_INDEX
    assert {m["digest"] for m in json.loads(body)["manifests"]} == {old.digest, new.digest}
    assert _tag_for(image.digest) not in oci.list_tags(oci_registry, unique_repo)


def test_referrers_api_reports_and_filters_the_manifest_artifact_type(
    oci_registry: Registry, unique_repo: str
) -> None:
    # ggcr v0.22.1 alone reports config.mediaType (the empty config) as artifactType and
    # ignores the filter; our cmd/oci-registry corrects both, as OCI 1.1 requires.
    image = oci.push_image(oci_registry, unique_repo)
    art = oci.attach_spec(
        oci_registry, unique_repo, image.digest, SPEC, created="2024-01-01T00:00:00Z"
    )
    found = oci.oras_discover(
        oci_registry,
        unique_repo,
        image.digest,
        distribution_spec=TAG_API,
        artifact_type=oci.NFD_ARTIFACT_TYPE,
    )
    assert [(r["digest"], r["artifactType"]) for r in found] == [
        (art.digest, oci.NFD_ARTIFACT_TYPE)
    ]
    path = f"/v2/{unique_repo}/referrers/{image.digest}?artifactType="
    status, headers, body = _http(oci_registry, path + "application%2Fvnd.other")
    assert status == 200
    assert headers["oci-filters-applied"] == "artifactType"
    assert json.loads(body)["manifests"] == []


@pytest.mark.parametrize("registry", ["oci_registry_tags", "docker_registry"])
def test_tag_schema_lists_artifacts(
    registry: str, request: pytest.FixtureRequest, unique_repo: str
) -> None:
    reg: Registry = request.getfixturevalue(registry)
    image = oci.push_image(reg, unique_repo)
    # No referrers API: a 404, which is what sends oras (and NFD, and us) to the tag schema.
    status, _, _ = _http(reg, f"/v2/{unique_repo}/referrers/{image.digest}")
    assert status == 404

    forced = oci.attach_spec(
        reg,
        unique_repo,
        image.digest,
        SPEC,
        created="2024-01-01T00:00:00Z",
        distribution_spec=TAG_SCHEMA,
    )
    # Left to itself (no --distribution-spec), oras finds no API and falls back to tags too.
    auto = oci.attach_spec(
        reg,
        unique_repo,
        image.digest,
        SPEC + b"# auto\n",
        created="2024-03-01T00:00:00Z",
        distribution_spec=None,
    )

    found = oci.oras_discover(
        reg,
        unique_repo,
        image.digest,
        distribution_spec=TAG_SCHEMA,
        artifact_type=oci.NFD_ARTIFACT_TYPE,
    )
    assert {r["digest"] for r in found} == {forced.digest, auto.digest}
    assert {r["artifactType"] for r in found} == {oci.NFD_ARTIFACT_TYPE}
    index, media_type, _ = oci.get_manifest(reg, unique_repo, _tag_for(image.digest))
    assert media_type == oci.MEDIA_TYPE_INDEX
    assert {m["digest"] for m in index["manifests"]} == {forced.digest, auto.digest}
    assert {m["annotations"][oci.ANNOTATION_CREATED] for m in index["manifests"]} == {
        "2024-01-01T00:00:00Z",
        "2024-03-01T00:00:00Z",
    }


def test_platform_attach_hangs_off_the_platform_manifest(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = oci.push_index(oci_registry, unique_repo)
    on_index = oci.attach_spec(
        oci_registry, unique_repo, image.digest, SPEC, created="2024-01-01T00:00:00Z"
    )
    on_arm = oci.attach_spec(
        oci_registry,
        unique_repo,
        "v1",
        SPEC,
        created="2024-01-02T00:00:00Z",
        platform="linux/arm64",
    )
    assert on_arm.subject == image.platforms["linux/arm64"]
    assert [r["digest"] for r in oci.oras_discover(oci_registry, unique_repo, image.digest)] == [
        on_index.digest
    ]
    arm = oci.oras_discover(oci_registry, unique_repo, image.platforms["linux/arm64"])
    assert [r["digest"] for r in arm] == [on_arm.digest]
    assert oci.oras_discover(oci_registry, unique_repo, image.platforms["linux/amd64"]) == []


def test_docker_registry_requires_tls_and_credentials(docker_registry: Registry) -> None:
    assert docker_registry.scheme == "https"
    assert docker_registry.ca_file is not None and docker_registry.ca_file.exists()
    anonymous = RegistryEndpoint(docker_registry.host, "https", ca_file=docker_registry.ca_file)
    status, headers, _ = _http(anonymous, "/v2/")
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic ")
    wrong = RegistryEndpoint(
        docker_registry.host, "https", docker_registry.username, "wrong", docker_registry.ca_file
    )
    assert _http(wrong, "/v2/")[0] == 401
    assert _http(docker_registry, "/v2/")[0] == 200
    # The certificate is only trusted through our CA.
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(
            f"https://{docker_registry.host}/v2/", timeout=5, context=ssl.create_default_context()
        )
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises(oci.OrasError):
        oci.run_oras(anonymous, ["repo", "ls", docker_registry.host])


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    reg = start_oci_registry(tmp_path, referrers=False, quiet=True)
    with reg:
        assert reg.alive()
        assert reg.host.startswith("127.0.0.1:")
        assert _http(reg, "/v2/")[0] == 200
    assert not reg.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(reg.pid, 0)
    reg.stop()  # idempotent
    assert "listening on" in reg.log_file.read_text()


def test_ensure_debian_packages_is_a_no_op_once_installed(docker_registry: Registry) -> None:
    assert ensure_debian_packages() == []
