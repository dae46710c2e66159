"""Image references, host policy and docker config: the parts of the client with no network."""

from __future__ import annotations

import base64
import ipaddress
import json

import pytest

from extender.registry.auth import DockerConfig
from extender.registry.errors import HostRefusedError, InvalidReferenceError
from extender.registry.hosts import HostPolicy
from extender.registry.reference import Descriptor, ImageReference, Platform, choose_newest

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("bitnami/redis", "docker.io", "bitnami/redis", "latest", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000", "a/b/c", "v1", None),
        ("ghcr.io/org/app@" + DIGEST, "ghcr.io", "org/app", None, DIGEST),
        ("ghcr.io/org/app:v2@" + DIGEST, "ghcr.io", "org/app", "v2", DIGEST),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        (
            "registry.example.com/a.b/c__d/e-f",
            "registry.example.com",
            "a.b/c__d/e-f",
            "latest",
            None,
        ),
    ],
)
def test_parse(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = ImageReference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_digest_decides_over_tag() -> None:
    ref = ImageReference.parse("ghcr.io/org/app:v2@" + DIGEST)
    assert ref.reference == DIGEST
    assert str(ref) == "ghcr.io/org/app:v2@" + DIGEST


@pytest.mark.parametrize(
    "text",
    [
        "",
        " nginx",
        "UPPER",
        "app@sha256:abc",
        "app:" + "x" * 200,
        "app:bad!tag",
        "a//b",
        "host:99999/app",
        "app@md5",
        "ghcr.io/",
        "-bad/app",
    ],
)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        ImageReference.parse(text)


def test_platform() -> None:
    platform = Platform.parse("linux/arm64/v8")
    assert platform.matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert not platform.matches({"os": "linux", "architecture": "arm64"})
    assert Platform.parse("linux/amd64").matches(
        {"os": "linux", "architecture": "amd64", "variant": "v3"}
    )
    with pytest.raises(ValueError, match="expected os/arch"):
        Platform.parse("linux")


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "metadata.google.internal",
        "METADATA.google.internal.",
        "[fe80::1]",
        "fe80::1%eth0",
        "100.100.100.200",
        "0.0.0.0",
        "127.0.0.1",
        "localhost",
        "[::1]",
    ],
)
def test_default_policy_refuses_metadata_link_local_and_loopback(host: str) -> None:
    with pytest.raises(HostRefusedError):
        HostPolicy().check_name(host)


def test_loopback_only_with_the_flag_and_metadata_never() -> None:
    policy = HostPolicy(allow_loopback=True)
    policy.check_name("127.0.0.1")
    policy.check_name("localhost")
    with pytest.raises(HostRefusedError):
        policy.check_name("169.254.169.254")
    with pytest.raises(HostRefusedError):
        policy.check_address(ipaddress.ip_address("::ffff:169.254.169.254"), "mapped")


def test_allow_and_deny_lists() -> None:
    policy = HostPolicy(allow=("*.example.com", "10.1.0.0/16"), deny=("bad.example.com",))
    policy.check_name("registry.example.com")
    policy.check_address(ipaddress.ip_address("10.1.2.3"), "x")
    for host in ("bad.example.com", "ghcr.io"):
        with pytest.raises(HostRefusedError):
            policy.check_name(host)
    with pytest.raises(HostRefusedError):
        policy.check_address(ipaddress.ip_address("10.2.0.1"), "x")


def test_newest_artifact_wins_missing_timestamp_is_oldest_ties_by_digest() -> None:
    def d(digest_char: str, created: str | None) -> Descriptor:
        annotations = {"org.opencontainers.image.created": created} if created else {}
        return Descriptor("m", "sha256:" + digest_char * 64, 1, annotations=annotations)

    assert (
        choose_newest([d("a", "2024-01-02T00:00:00Z"), d("b", "2024-01-01T00:00:00Z")]).digest[7]
        == "a"
    )
    assert choose_newest([d("a", None), d("b", "1999-01-01T00:00:00Z")]).digest[7] == "b"
    assert (
        choose_newest([d("b", "2024-01-01T00:00:00Z"), d("c", "2024-01-01T00:00:00Z")]).digest[7]
        == "c"
    )
    assert choose_newest([d("c", "garbage"), d("a", None)]).digest[7] == "c"


async def test_docker_config_auths() -> None:
    auth = base64.b64encode(b"user:pa:ss").decode()
    config = DockerConfig(
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth},
                "ghcr.io": {"username": "u", "password": "p"},
                "quay.io": {"identitytoken": "refresh"},
            }
        }
    )
    hub = await config.lookup("docker.io")
    assert hub is not None and (hub.username, hub.password) == ("user", "pa:ss")
    ghcr = await config.lookup("ghcr.io")
    assert ghcr is not None and ghcr.password == "p"
    quay = await config.lookup("quay.io")
    assert quay is not None and quay.identity_token == "refresh"
    assert await config.lookup("example.com") is None
    assert "pa:ss" not in repr(hub)


async def test_pull_secret_payloads() -> None:
    modern = DockerConfig.from_secret_data(
        json.dumps({"auths": {"r.io": {"username": "a", "password": "b"}}}).encode()
    )
    legacy = DockerConfig.from_secret_data(
        json.dumps({"r.io": {"username": "a", "password": "b"}}).encode()
    )
    assert await modern.lookup("r.io") == await legacy.lookup("r.io")
