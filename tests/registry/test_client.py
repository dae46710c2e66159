"""The registry client against real registries (go-containerregistry with and without the
referrers API, Debian's docker-registry over TLS with htpasswd) with artifacts attached by the
real ``oras attach``, and against the fault proxy for every failure mode."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devcluster.faultproxy import Fault, FaultProxy
from devcluster.oci import attach_spec, push_image, push_index
from devcluster.registries import Registry
from extender.registry.auth import DockerConfig
from extender.registry.client import RegistryClient, RegistryLimits
from extender.registry.errors import (
    HostRefusedError,
    RegistryAuthError,
    RegistryNotFoundError,
    RegistryProtocolError,
    RegistryUnavailableError,
)
from extender.registry.hosts import Mirror, RegistryHostConfig
from extender.registry.reference import ImageReference, Platform
from tests.registry.helpers import LOOPBACK, FixedResolver, client_for

pytestmark = pytest.mark.integration

SPEC_OLD = "version: v1alpha1\ncompatibilities:\n- tag: old\n  rules: []\n"
SPEC_NEW = "version: v1alpha1\ncompatibilities:\n- tag: new\n  rules: []\n"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def docker_config_for(registry: Registry) -> DockerConfig:
    return DockerConfig(
        {"auths": {registry.host: {"username": registry.username, "password": registry.password}}}
    )


@pytest.mark.parametrize("registry_fixture", ["oci_registry", "oci_registry_tags"])
async def test_newest_artifact_wins_and_wrong_type_is_ignored(
    registry_fixture: str, request: pytest.FixtureRequest, unique_repo: str
) -> None:
    registry: Registry = request.getfixturevalue(registry_fixture)
    mode = "v1.1-referrers-api" if registry.referrers_api else "v1.1-referrers-tag"
    image = push_image(registry, unique_repo, "v1")
    attach_spec(
        registry,
        unique_repo,
        image.digest,
        SPEC_NEW,
        created=T0 + timedelta(minutes=1),
        distribution_spec=mode,
    )
    attach_spec(registry, unique_repo, image.digest, SPEC_OLD, created=T0, distribution_spec=mode)
    # Newer still, but of another artifact type: must not be chosen.
    attach_spec(
        registry,
        unique_repo,
        image.digest,
        "not: ours\n",
        created=T0 + timedelta(hours=1),
        distribution_spec=mode,
        artifact_type="application/vnd.example.other",
    )
    async with client_for(registry) as client:
        artifact = await client.fetch_compatibility_spec(ImageReference.parse(image.tag_ref))
    assert artifact is not None
    assert artifact.spec_bytes.decode() == SPEC_NEW
    assert artifact.subject.digest == image.digest
    assert artifact.created == T0 + timedelta(minutes=1)


async def test_referrers_api_is_used_when_present(
    oci_registry: Registry, fault_proxy: FaultProxy, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, SPEC_NEW, created=T0)
    async with client_for(fault_proxy) as client:
        ref = ImageReference.parse(f"{fault_proxy.host}/{unique_repo}:v1")
        assert await client.fetch_compatibility_spec(ref) is not None
    paths = fault_proxy.counts().paths()
    assert any("/referrers/" in p for p in paths)
    assert not any("/manifests/sha256-" in p for p in paths)


async def test_tag_schema_fallback_when_api_missing(
    oci_registry_tags: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry_tags, unique_repo, "v1")
    attach_spec(
        oci_registry_tags,
        unique_repo,
        image.digest,
        SPEC_NEW,
        created=T0,
        distribution_spec="v1.1-referrers-tag",
    )
    async with client_for(oci_registry_tags) as client:
        artifact = await client.fetch_compatibility_spec(ImageReference.parse(image.ref))
    assert artifact is not None and artifact.spec_bytes.decode() == SPEC_NEW


async def test_image_without_artifacts_gives_none(
    oci_registry: Registry, oci_registry_tags: Registry, unique_repo: str
) -> None:
    for registry in (oci_registry, oci_registry_tags):
        image = push_image(registry, unique_repo, "bare")
        async with client_for(registry) as client:
            assert (
                await client.fetch_compatibility_spec(ImageReference.parse(image.tag_ref)) is None
            )


async def test_missing_image_is_not_found(oci_registry: Registry) -> None:
    async with client_for(oci_registry) as client:
        with pytest.raises(RegistryNotFoundError):
            await client.fetch_compatibility_spec(
                ImageReference.parse(f"{oci_registry.host}/nothing/here:v1")
            )


async def test_docker_registry_over_tls_with_htpasswd(
    docker_registry: Registry, unique_repo: str
) -> None:
    image = push_image(docker_registry, unique_repo, "v1")
    attach_spec(
        docker_registry,
        unique_repo,
        image.digest,
        SPEC_NEW,
        created=T0,
        distribution_spec="v1.1-referrers-tag",
    )
    ref = ImageReference.parse(image.tag_ref)
    async with client_for(
        docker_registry, docker_config=docker_config_for(docker_registry)
    ) as client:
        artifact = await client.fetch_compatibility_spec(ref)
    assert artifact is not None and artifact.spec_bytes.decode() == SPEC_NEW
    # Without credentials the same registry refuses us with a typed error.
    async with client_for(docker_registry) as client:
        with pytest.raises(RegistryAuthError):
            await client.fetch_compatibility_spec(ref)
    # A pod pull secret (passed per call) works as well as the server's config.
    async with client_for(docker_registry) as client:
        artifact = await client.fetch_compatibility_spec(
            ref, credentials=[docker_config_for(docker_registry)]
        )
    assert artifact is not None


async def test_credential_helper_protocol(
    docker_registry: Registry, unique_repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = push_image(docker_registry, unique_repo, "v1")
    attach_spec(
        docker_registry,
        unique_repo,
        image.digest,
        SPEC_NEW,
        created=T0,
        distribution_spec="v1.1-referrers-tag",
    )
    calls = tmp_path / "calls"
    helper = tmp_path / "docker-credential-testhelper"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\nread server\necho "$server" >> {calls}\n'
        f'printf \'{{"ServerURL": "%s", "Username": "{docker_registry.username}", "Secret": "{docker_registry.password}"}}\' "$server"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    config = DockerConfig({"credHelpers": {docker_registry.host: "testhelper"}})
    async with client_for(docker_registry, docker_config=config) as client:
        artifact = await client.fetch_compatibility_spec(ImageReference.parse(image.tag_ref))
    assert artifact is not None
    assert calls.read_text().split() == [docker_registry.host] * len(calls.read_text().split())


async def test_mirror_with_repository_rewrite(oci_registry: Registry, unique_repo: str) -> None:
    image = push_image(oci_registry, f"mirrored/{unique_repo}", "v1")
    attach_spec(oci_registry, f"mirrored/{unique_repo}", image.digest, SPEC_NEW, created=T0)
    hosts = {
        "upstream.invalid": RegistryHostConfig(
            mirrors=(Mirror(oci_registry.url, (("^(.*)$", "mirrored/$1"),)),)
        )
    }
    async with RegistryClient(policy=LOOPBACK, hosts=hosts) as client:
        artifact = await client.fetch_compatibility_spec(
            ImageReference.parse(f"upstream.invalid/{unique_repo}:v1")
        )
    assert artifact is not None and artifact.spec_bytes.decode() == SPEC_NEW


async def test_platform_manifest_resolution(oci_registry: Registry, unique_repo: str) -> None:
    index = push_index(oci_registry, unique_repo, "multi")
    async with client_for(oci_registry) as client:
        ref = ImageReference.parse(index.tag_ref)
        assert (await client.resolve(ref)).digest == index.digest
        arm = await client.resolve(ref, platform=Platform.parse("linux/arm64"))
        assert arm.digest == index.platforms["linux/arm64"]
        with pytest.raises(RegistryNotFoundError):
            await client.resolve(ref, platform=Platform.parse("windows/amd64"))
        single = push_image(oci_registry, unique_repo, "single", platform="linux/amd64")
        assert (
            await client.resolve(
                ImageReference.parse(single.tag_ref), platform=Platform.parse("linux/amd64")
            )
        ).digest == single.digest
        with pytest.raises(RegistryNotFoundError):
            await client.resolve(
                ImageReference.parse(single.tag_ref), platform=Platform.parse("linux/arm64")
            )


FAULTS = [
    (Fault("refuse"), RegistryUnavailableError),
    (Fault("hang"), RegistryUnavailableError),
    (Fault("delay", delay_ms=3000), RegistryUnavailableError),
    (Fault("error", status=503), RegistryUnavailableError),
    (Fault("reset"), RegistryUnavailableError),
    (Fault("unauthorized"), RegistryAuthError),
]


@pytest.mark.parametrize(("fault", "error"), FAULTS, ids=[f.mode for f, _ in FAULTS])
async def test_faults_give_typed_errors_in_time(
    fault: Fault,
    error: type[Exception],
    oci_registry: Registry,
    fault_proxy: FaultProxy,
    unique_repo: str,
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, SPEC_NEW, created=T0)
    await fault_proxy.set_fault(fault)
    limits = RegistryLimits(timeout_s=1.0, connect_timeout_s=0.5)
    started = time.monotonic()
    async with client_for(fault_proxy, limits=limits) as client:
        with pytest.raises(error):
            await client.fetch_compatibility_spec(
                ImageReference.parse(f"{fault_proxy.host}/{unique_repo}:v1")
            )
    assert time.monotonic() - started < 5.0


async def test_bad_credentials_are_an_auth_error(
    docker_registry: Registry, unique_repo: str
) -> None:
    image = push_image(docker_registry, unique_repo, "v1")
    wrong = DockerConfig(
        {
            "auths": {
                docker_registry.host: {"username": docker_registry.username, "password": "wrong"}
            }
        }
    )
    async with client_for(docker_registry, docker_config=wrong) as client:
        with pytest.raises(RegistryAuthError):
            await client.fetch_compatibility_spec(ImageReference.parse(image.tag_ref))


async def test_manifest_over_the_limit_is_refused(oci_registry: Registry, unique_repo: str) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    async with client_for(oci_registry, limits=RegistryLimits(manifest_bytes=64)) as client:
        with pytest.raises(RegistryProtocolError, match="limit"):
            await client.resolve(ImageReference.parse(image.tag_ref))


class _LyingRegistry:
    """A registry that serves a blob whose bytes do not match its digest (no real one will)."""

    def __init__(self) -> None:
        good = b"version: v1alpha1\n"
        self.layer_digest = "sha256:" + __import__("hashlib").sha256(good).hexdigest()
        self.layer_size = len(good)
        artifact = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.nfd.image-compatibility.v1alpha1",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.nfd.image-compatibility.spec.v1alpha1+yaml",
                    "digest": self.layer_digest,
                    "size": self.layer_size,
                }
            ],
        }
        self.artifact = json.dumps(artifact).encode()
        self.image = (
            b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:'
            + b"0" * 64
            + b'","size":1},"layers":[]}'
        )

    def app(self) -> web.Application:
        hashlib = __import__("hashlib")
        image_digest = "sha256:" + hashlib.sha256(self.image).hexdigest()
        artifact_digest = "sha256:" + hashlib.sha256(self.artifact).hexdigest()

        async def manifests(request: web.Request) -> web.Response:
            ref = request.match_info["ref"]
            body = self.artifact if ref == artifact_digest else self.image
            return web.Response(
                body=body, content_type="application/vnd.oci.image.manifest.v1+json"
            )

        async def referrers(request: web.Request) -> web.Response:
            listing = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": artifact_digest,
                        "size": len(self.artifact),
                        "artifactType": "application/vnd.nfd.image-compatibility.v1alpha1",
                    }
                ],
            }
            return web.json_response(
                listing, content_type="application/vnd.oci.image.index.v1+json"
            )

        async def blobs(request: web.Request) -> web.Response:
            return web.Response(body=b"version: v9evil!!\n")

        app = web.Application()
        app.router.add_get("/v2/app/manifests/{ref}", manifests)
        app.router.add_get(f"/v2/app/referrers/{image_digest}", referrers)
        app.router.add_get("/v2/app/blobs/{digest}", blobs)
        return app


async def test_blob_with_wrong_digest_is_refused(aiohttp_server: Any) -> None:
    server = await aiohttp_server(_LyingRegistry().app(), host="127.0.0.1")
    host = f"127.0.0.1:{server.port}"
    async with RegistryClient(
        policy=LOOPBACK, hosts={host: RegistryHostConfig(plain_http=True)}
    ) as client:
        with pytest.raises(RegistryProtocolError, match="digest"):
            await client.fetch_compatibility_spec(ImageReference.parse(f"{host}/app:v1"))


@pytest.mark.parametrize(
    "reference",
    ["169.254.169.254/app:v1", "[fe80::1]:5000/app:v1", "metadata.google.internal/x/y:v1"],
)
async def test_ssrf_targets_are_refused_without_a_connection(reference: str) -> None:
    resolver = FixedResolver("127.0.0.1")
    async with RegistryClient(resolver=resolver) as client:
        with pytest.raises(HostRefusedError):
            await client.fetch_compatibility_spec(ImageReference.parse(reference))
    assert resolver.asked == []  # refused by name/literal before any lookup or connection


async def test_name_resolving_to_metadata_address_is_refused_before_connecting() -> None:
    resolver = FixedResolver("169.254.169.254")
    async with RegistryClient(resolver=resolver, policy=LOOPBACK) as client:
        with pytest.raises(HostRefusedError, match=r"169\.254\.169\.254"):
            await asyncio.wait_for(
                client.fetch_compatibility_spec(ImageReference.parse("innocent.example/app:v1")), 5
            )
    assert resolver.asked == ["innocent.example"]
