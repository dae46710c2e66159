"""The OCI registry client: find and read an image's compatibility artifact, safely.

Owns everything that crosses the network to a registry: image references, tag → digest
resolution (OCI and Docker media types, platform selection in an index), the referrers API
with the ``sha256-<hex>`` tag-schema fallback (as oras-go, and so ``nfd compat validate-node``,
does), choosing the newest artifact, reading its spec layer with digest and size checks, and
authentication (anonymous bearer tokens, docker ``config.json`` basic auth and identity
tokens, credential helpers, pod pull secrets), mirrors and per-registry TLS settings.

An image reference names the host we connect to and pod authors choose it, so every
connection goes through :class:`HostPolicy`: link-local and cloud-metadata addresses are
refused by default, loopback only when allowed, and names are checked after DNS resolution
(by our resolver) so a name pointing at a refused address is refused before connecting.

oras-py is not used: it is synchronous (requests), lacks the referrers listing, and this
client must run on the server's event loop with per-host limits; a second client beside it
would be worse than one here. Caching lives in :mod:`extender.artifacts`, not here.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import yaml
from aiohttp.abc import AbstractResolver, ResolveResult

from extender.spec import ARTIFACT_TYPE, SPEC_MEDIA_TYPE

__all__ = [
    "ARTIFACT_TYPE",
    "CompatibilityArtifact",
    "Credentials",
    "Descriptor",
    "DockerConfig",
    "HostPolicy",
    "HostRefusedError",
    "ImageReference",
    "InvalidReferenceError",
    "Platform",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "RegistryHostConfig",
    "RegistryLimits",
    "RegistryNotFoundError",
    "RegistryProtocolError",
    "RegistryUnavailableError",
    "choose_newest",
    "index_children",
    "is_index",
]

log = logging.getLogger(__name__)

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_ACCEPT = ", ".join(
    [MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST]
)
CREATED_ANNOTATION = "org.opencontainers.image.created"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_USER_AGENT = "image-compat-extender"


# --------------------------------------------------------------------------------------------
# Errors


class RegistryError(Exception):
    """Any failure to read from a registry. ``kind`` is a short, bounded label for metrics."""

    kind = "error"


class InvalidReferenceError(RegistryError):
    kind = "reference"


class HostRefusedError(RegistryError):
    kind = "refused"


class RegistryUnavailableError(RegistryError):
    """Connection refused or reset, timeout, 5xx: worth retrying later."""

    kind = "unavailable"


class RegistryAuthError(RegistryError):
    kind = "auth"


class RegistryNotFoundError(RegistryError):
    kind = "not_found"


class RegistryProtocolError(RegistryError):
    """The registry answered something we must not use: bad JSON, wrong digest, too large."""

    kind = "protocol"


# --------------------------------------------------------------------------------------------
# References

_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+|\[[0-9a-fA-F:.%]+\]")


@dataclass(frozen=True, slots=True)
class ImageReference:
    """``[registry[:port]/]repository[:tag][@digest]`` with Docker's defaults applied.

    With both a tag and a digest, the digest decides (the tag is kept for display).
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        original = text
        if not text or len(text) > 4096 or text != text.strip():
            raise InvalidReferenceError(f"invalid image reference {original!r}")
        digest = None
        if "@" in text:
            text, digest = text.split("@", 1)
            if not _DIGEST.fullmatch(digest):
                raise InvalidReferenceError(f"invalid digest in {original!r}")
            if digest.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise InvalidReferenceError(f"invalid sha256 digest in {original!r}")
        tag = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise InvalidReferenceError(f"invalid tag {tag!r} in {original!r}")
        first, _, rest = text.partition("/")
        if rest and (
            "." in first or ":" in first or first == "localhost" or first != first.lower()
        ):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, text
        host = (
            registry.rsplit(":", 1)[0]
            if not registry.startswith("[")
            else registry.split("]")[0] + "]"
        )
        port = registry[len(host) + 1 :] if len(registry) > len(host) else ""
        if not _HOST.fullmatch(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise InvalidReferenceError(f"invalid registry host {registry!r} in {original!r}")
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = DOCKER_HUB
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        if not repository or not all(_PATH_COMPONENT.fullmatch(c) for c in repository.split("/")):
            raise InvalidReferenceError(f"invalid repository {repository!r} in {original!r}")
        if len(repository) > 255:
            raise InvalidReferenceError(f"repository name too long in {original!r}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> ImageReference:
        return ImageReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True, slots=True)
class Platform:
    """A node platform; ``os/arch[/variant]``."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    def matches(self, platform: Mapping[str, Any] | None) -> bool:
        if not platform:
            return False
        if platform.get("os") != self.os or platform.get("architecture") != self.architecture:
            return False
        return not self.variant or platform.get("variant", "") == self.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Any) -> Descriptor:
        if not isinstance(data, Mapping):
            raise RegistryProtocolError("descriptor is not an object")
        digest, size = data.get("digest"), data.get("size")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise RegistryProtocolError(f"descriptor has an invalid digest {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryProtocolError(f"descriptor {digest} has an invalid size")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            annotations = {}
        return cls(
            media_type=str(data.get("mediaType") or ""),
            digest=digest,
            size=size,
            artifact_type=str(data.get("artifactType") or ""),
            annotations={str(k): str(v) for k, v in annotations.items()},
            platform=data.get("platform") if isinstance(data.get("platform"), Mapping) else None,
        )

    @property
    def created(self) -> datetime:
        """The artifact's creation time; missing or unparsable counts as oldest, as in NFD."""
        text = self.annotations.get(CREATED_ANNOTATION, "")
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)
        return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CompatibilityArtifact:
    """The chosen artifact of an image and its spec layer's bytes."""

    subject: ImageReference  # with the digest the artifact is attached to
    artifact_digest: str
    spec_bytes: bytes
    created: datetime


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    manifest_bytes: int = 4 << 20
    blob_bytes: int = 1 << 20  # a spec layer; matches the spec parser's document limit
    referrers: int = 1000  # descriptors in one listing, over all pages
    referrer_pages: int = 20
    redirects: int = 3
    timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    per_host_concurrency: int = 8


_METADATA_NAMES = (
    "metadata.google.internal",
    "metadata",
    "metadata.azure.internal",
    "instance-data",
)
_DEFAULT_DENIED_NETWORKS = (
    "169.254.0.0/16",  # link-local, incl. AWS/GCP/Azure metadata 169.254.169.254
    "fe80::/10",  # link-local IPv6
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "0.0.0.0/8",
    "::/128",
)
_LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which registry hosts and addresses we may connect to.

    ``allow`` (glob patterns over host names, or CIDRs), when non-empty, is exclusive.
    ``deny`` adds to the built-in denials of link-local and metadata addresses.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_loopback: bool = False

    def _networks(
        self, patterns: Iterable[str]
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for pattern in patterns:
            try:
                out.append(ipaddress.ip_network(pattern, strict=False))
            except ValueError:
                continue
        return out

    def check_name(self, host: str) -> None:
        """Refuse by name before any lookup (the reference's host, or a redirect's)."""
        name = host.strip("[]").rstrip(".").lower()
        if name in _METADATA_NAMES or any(
            fnmatch.fnmatch(name, p) for p in self.deny if not _is_cidr(p)
        ):
            raise HostRefusedError(f"registry host {host} is refused")
        if name == "localhost" and not self.allow_loopback:
            raise HostRefusedError(f"registry host {host} is loopback, which is not allowed")
        try:
            address = ipaddress.ip_address(name.split("%")[0])
        except ValueError:
            names = [p for p in self.allow if not _is_cidr(p)]
            # With only CIDRs allowed, a name is judged by its addresses after resolution.
            if names and not any(fnmatch.fnmatch(name, p) for p in names):
                raise HostRefusedError(f"registry host {host} is not in the allow list") from None
            return
        self.check_address(address, host)

    def check_address(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str
    ) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        denied = self._networks(_DEFAULT_DENIED_NETWORKS) + self._networks(self.deny)
        if any(address in network for network in denied):
            raise HostRefusedError(f"registry host {host} resolves to refused address {address}")
        if address.is_loopback and not self.allow_loopback:
            raise HostRefusedError(
                f"registry host {host} is loopback ({address}), which is not allowed"
            )
        if address.is_multicast or address.is_unspecified:
            raise HostRefusedError(f"registry host {host} resolves to unusable address {address}")
        if self.allow and not self._allowed(host, address):
            raise HostRefusedError(f"registry host {host} ({address}) is not in the allow list")

    def _allowed(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """A host passes the allow list by name glob, or by an address in an allowed CIDR."""
        name = host.strip("[]").rstrip(".").lower()
        if any(fnmatch.fnmatch(name, p) for p in self.allow if not _is_cidr(p)):
            return True
        return any(address in network for network in self._networks(self.allow))


def _is_cidr(pattern: str) -> bool:
    try:
        ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    return True


class _PolicyResolver(AbstractResolver):
    """Resolves names, then drops every address the policy refuses, before any connection."""

    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = []
        problem: HostRefusedError | None = None
        for result in results:
            try:
                self._policy.check_address(ipaddress.ip_address(result["host"]), host)
            except HostRefusedError as err:
                problem = err
                continue
            allowed.append(result)
        if not allowed:
            raise problem or HostRefusedError(f"registry host {host} has no usable address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Mirror:
    """A mirror endpoint tried before the registry itself, like containerd's hosts.toml."""

    url: str  # scheme://host[:port]
    rewrite: tuple[tuple[str, str], ...] = ()  # (regex, replacement) over the repository

    def repository(self, repository: str) -> str:
        for pattern, replacement in self.rewrite:
            new, count = re.subn(pattern, replacement.replace("$", "\\"), repository, count=1)
            if count:
                return new
        return repository


@dataclass(frozen=True, slots=True)
class RegistryHostConfig:
    """Explicit per-registry settings; nothing is guessed from a host name."""

    plain_http: bool = False
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    mirrors: tuple[Mirror, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegistryHostConfig:
        mirrors = []
        for item in data.get("mirrors") or ():
            if isinstance(item, str):
                mirrors.append(Mirror(item.rstrip("/")))
            else:
                rewrite = tuple((str(k), str(v)) for k, v in (item.get("rewrite") or {}).items())
                mirrors.append(Mirror(str(item["url"]).rstrip("/"), rewrite))
        return cls(
            plain_http=bool(data.get("plainHTTP", False)),
            ca_file=data.get("caFile"),
            insecure_skip_verify=bool(data.get("insecureSkipVerify", False)),
            mirrors=tuple(mirrors),
        )


def load_registry_hosts(path: str | os.PathLike[str]) -> dict[str, RegistryHostConfig]:
    """Read ``{registries: {HOST: {plainHTTP, caFile, insecureSkipVerify, mirrors}}}``."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    hosts = data.get("registries") or {}
    return {str(host): RegistryHostConfig.from_json(cfg or {}) for host, cfg in hosts.items()}


# --------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # a refresh token for the registry's token endpoint
    registry_token: str = ""  # a bearer token to send as is

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"Credentials(username={self.username!r}, ...)"


def _config_host(key: str) -> str:
    host = key
    if "://" in host:
        host = urlsplit(host).netloc or host
    host = host.split("/")[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


class DockerConfig:
    """Credentials from a docker ``config.json`` (or a dockerconfigjson pull secret)."""

    def __init__(self, data: Mapping[str, Any], *, helper_timeout_s: float = 5.0) -> None:
        self._auths: dict[str, Credentials] = {}
        for key, entry in (data.get("auths") or {}).items():
            if isinstance(entry, Mapping):
                self._auths[_config_host(str(key))] = _credentials_from_auth(entry)
        self._helpers = {
            _config_host(str(k)): str(v) for k, v in (data.get("credHelpers") or {}).items()
        }
        self._store = str(data.get("credsStore") or "")
        self._helper_timeout_s = helper_timeout_s

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DockerConfig:
        return cls(json.loads(Path(path).read_text()))

    @classmethod
    def from_secret_data(cls, data: bytes) -> DockerConfig:
        """A ``kubernetes.io/dockerconfigjson`` (or legacy ``dockercfg``) secret payload."""
        parsed = json.loads(data)
        if "auths" not in parsed:
            parsed = {"auths": parsed}
        return cls(parsed)

    async def lookup(self, registry: str) -> Credentials | None:
        if registry in self._auths:
            return self._auths[registry]
        helper = self._helpers.get(registry) or self._store
        if helper:
            server = "https://index.docker.io/v1/" if registry == DOCKER_HUB else registry
            return await asyncio.to_thread(self._run_helper, helper, server)
        return None

    def _run_helper(self, helper: str, server: str) -> Credentials | None:
        program = f"docker-credential-{helper}"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", helper):
            raise RegistryAuthError(f"invalid credential helper name {helper!r}")
        try:
            done = subprocess.run(
                [program, "get"],
                input=server.encode(),
                capture_output=True,
                timeout=self._helper_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise RegistryAuthError(
                f"credential helper {program} failed: {type(err).__name__}"
            ) from None
        if done.returncode != 0:
            if b"credentials not found" in done.stdout.lower():
                return None
            raise RegistryAuthError(f"credential helper {program} exited {done.returncode}")
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            raise RegistryAuthError(f"credential helper {program} gave invalid JSON") from None
        username, secret = str(answer.get("Username", "")), str(answer.get("Secret", ""))
        if username == "<token>":
            return Credentials(identity_token=secret)
        return Credentials(username=username, password=secret)


def _credentials_from_auth(entry: Mapping[str, Any]) -> Credentials:
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    encoded = entry.get("auth")
    if encoded and not username:
        try:
            username, _, password = base64.b64decode(str(encoded)).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            username, password = "", ""
    return Credentials(
        username=username,
        password=password,
        identity_token=str(entry.get("identitytoken") or ""),
        registry_token=str(entry.get("registrytoken") or ""),
    )


# --------------------------------------------------------------------------------------------
# The client


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(slots=True)
class _Token:
    value: str
    expires: float


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class RegistryClient:
    """Async OCI distribution client bound to one aiohttp session. Use as an async context."""

    def __init__(
        self,
        *,
        policy: HostPolicy | None = None,
        hosts: Mapping[str, RegistryHostConfig] | None = None,
        docker_config: DockerConfig | None = None,
        limits: RegistryLimits | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy or HostPolicy()
        self._resolver = resolver
        self.hosts = dict(hosts or {})
        self.docker_config = docker_config
        self.limits = limits or RegistryLimits()
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._ssl: dict[str, ssl.SSLContext | bool] = {}
        self._token_expiry = 0.0
        self.requests = 0  # total HTTP requests sent; tests and metrics read it

    async def __aenter__(self) -> RegistryClient:
        connector = aiohttp.TCPConnector(
            resolver=_PolicyResolver(self.policy, self._resolver), limit=64, ttl_dns_cache=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": _USER_AGENT},
            timeout=aiohttp.ClientTimeout(
                total=self.limits.timeout_s, connect=self.limits.connect_timeout_s
            ),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- public API ------------------------------------------------------------------------

    async def resolve(
        self,
        ref: ImageReference,
        *,
        platform: Platform | None = None,
        credentials: Sequence[DockerConfig] = (),
    ) -> Descriptor:
        """The descriptor the reference names; with a platform, that platform's manifest."""
        descriptor, document = await self.get_manifest(ref, credentials=credentials)
        if platform is None:
            return descriptor
        if is_index(descriptor, document):
            for item in document.get("manifests") or ():
                child = Descriptor.from_json(item)
                if platform.matches(child.platform):
                    return child
            raise RegistryNotFoundError(f"{ref} has no manifest for platform {platform}")
        config = Descriptor.from_json(document.get("config"))
        blob = await self._fetch_blob(ref, config, credentials)
        image_config = _json_object(blob, f"config of {ref}")
        if not platform.matches(image_config):
            raise RegistryNotFoundError(f"{ref} is not built for platform {platform}")
        return descriptor

    async def get_manifest(
        self, ref: ImageReference, *, credentials: Sequence[DockerConfig] = ()
    ) -> tuple[Descriptor, dict[str, Any]]:
        """The manifest (or index) the reference names: its descriptor and its JSON document.

        The digest is computed from the body and checked against a digest reference and the
        ``Docker-Content-Digest`` header.
        """
        response = await self._get(
            ref,
            f"manifests/{ref.reference}",
            MANIFEST_ACCEPT,
            self.limits.manifest_bytes,
            credentials,
        )
        media_type = _media_type(response)
        digest = _sha256(response.body)
        if ref.digest and ref.digest != digest:
            raise RegistryProtocolError(f"manifest of {ref} has digest {digest}, not {ref.digest}")
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest and header.startswith("sha256:"):
            raise RegistryProtocolError(
                f"manifest of {ref}: header digest {header} != body {digest}"
            )
        document = _json_object(response.body, f"manifest of {ref}")
        return Descriptor(media_type, digest, len(response.body)), document

    async def referrers(
        self,
        ref: ImageReference,
        subject_digest: str,
        *,
        artifact_type: str = ARTIFACT_TYPE,
        credentials: Sequence[DockerConfig] = (),
    ) -> list[Descriptor]:
        """Referrers of a manifest with the artifact type: the API, else the tag schema."""
        path: str | None = (
            f"referrers/{subject_digest}?artifactType={quote(artifact_type, safe='')}"
        )
        found: list[Descriptor] = []
        pages = 0
        while path is not None:
            pages += 1
            if pages > self.limits.referrer_pages:
                raise RegistryProtocolError(f"referrers of {ref} span more than {pages - 1} pages")
            try:
                response = await self._get(
                    ref, path, MEDIA_OCI_INDEX, self.limits.manifest_bytes, credentials
                )
            except RegistryNotFoundError as err:
                if pages > 1:
                    raise RegistryProtocolError(f"referrers page of {ref} vanished") from err
                return await self._referrers_by_tag(ref, subject_digest, artifact_type, credentials)
            except _UnsupportedError:
                if pages > 1:
                    raise RegistryProtocolError(f"referrers page of {ref} refused") from None
                return await self._referrers_by_tag(ref, subject_digest, artifact_type, credentials)
            if _media_type(response) not in (MEDIA_OCI_INDEX, "application/json") and pages == 1:
                return await self._referrers_by_tag(ref, subject_digest, artifact_type, credentials)
            document = _json_object(response.body, f"referrers of {ref}")
            filtered = "artifactType" in response.headers.get("OCI-Filters-Applied", "")
            for item in document.get("manifests") or ():
                descriptor = Descriptor.from_json(item)
                if filtered or descriptor.artifact_type == artifact_type:
                    found.append(descriptor)
                if len(found) > self.limits.referrers:
                    raise RegistryProtocolError(
                        f"{ref} has more than {self.limits.referrers} referrers"
                    )
            path = _next_link(response)
        return found

    async def fetch_artifact(
        self,
        ref: ImageReference,
        descriptor: Descriptor,
        *,
        credentials: Sequence[DockerConfig] = (),
    ) -> bytes:
        """The spec layer of an artifact manifest: by media type, else layers[0] as NFD does."""
        manifest = await self._fetch_manifest(ref, descriptor, credentials)
        layers = manifest.get("layers") or []
        if not isinstance(layers, list) or not layers:
            raise RegistryProtocolError(f"artifact {descriptor.digest} of {ref} has no layers")
        chosen = next(
            (
                layer
                for layer in layers
                if isinstance(layer, Mapping) and layer.get("mediaType") == SPEC_MEDIA_TYPE
            ),
            layers[0],
        )
        return await self._fetch_blob(ref, Descriptor.from_json(chosen), credentials)

    async def fetch_compatibility_spec(
        self,
        ref: ImageReference,
        *,
        platform: Platform | None = None,
        credentials: Sequence[DockerConfig] = (),
    ) -> CompatibilityArtifact | None:
        """Resolve, list referrers, take the newest artifact, read its spec. None: no artifact."""
        subject = await self.resolve(ref, platform=platform, credentials=credentials)
        found = await self.referrers(ref, subject.digest, credentials=credentials)
        if not found:
            return None
        newest = choose_newest(found)
        data = await self.fetch_artifact(ref, newest, credentials=credentials)
        return CompatibilityArtifact(
            ref.with_digest(subject.digest), newest.digest, data, newest.created
        )

    # -- internals -------------------------------------------------------------------------

    async def _referrers_by_tag(
        self,
        ref: ImageReference,
        subject_digest: str,
        artifact_type: str,
        credentials: Sequence[DockerConfig],
    ) -> list[Descriptor]:
        algorithm, _, hexdigest = subject_digest.partition(":")
        tag = f"{algorithm}-{hexdigest}"[:128]
        try:
            response = await self._get(
                ref, f"manifests/{tag}", MEDIA_OCI_INDEX, self.limits.manifest_bytes, credentials
            )
        except RegistryNotFoundError:
            return []
        document = _json_object(response.body, f"referrers tag of {ref}")
        manifests = document.get("manifests") or []
        if len(manifests) > self.limits.referrers:
            raise RegistryProtocolError(f"{ref} has more than {self.limits.referrers} referrers")
        descriptors = [Descriptor.from_json(item) for item in manifests]
        return [d for d in descriptors if d.artifact_type == artifact_type]

    async def _fetch_manifest(
        self, ref: ImageReference, descriptor: Descriptor, credentials: Sequence[DockerConfig]
    ) -> Mapping[str, Any]:
        if descriptor.size > self.limits.manifest_bytes:
            raise RegistryProtocolError(
                f"manifest {descriptor.digest} is {descriptor.size} bytes, over the limit"
            )
        response = await self._get(
            ref,
            f"manifests/{descriptor.digest}",
            MANIFEST_ACCEPT,
            self.limits.manifest_bytes,
            credentials,
        )
        _verify(response.body, descriptor, "manifest")
        return _json_object(response.body, f"manifest {descriptor.digest}")

    async def _fetch_blob(
        self, ref: ImageReference, descriptor: Descriptor, credentials: Sequence[DockerConfig]
    ) -> bytes:
        if descriptor.size > self.limits.blob_bytes:
            limit = self.limits.blob_bytes
            raise RegistryProtocolError(
                f"blob {descriptor.digest} is {descriptor.size} bytes, over the {limit}-byte limit"
            )
        response = await self._get(
            ref, f"blobs/{descriptor.digest}", "*/*", self.limits.blob_bytes, credentials
        )
        _verify(response.body, descriptor, "blob")
        return response.body

    def _endpoints(self, ref: ImageReference) -> list[tuple[str, str]]:
        """(base URL, repository) pairs to try in order: mirrors first, then the registry."""
        config = self.hosts.get(ref.registry, RegistryHostConfig())
        host = DOCKER_HUB_API if ref.registry == DOCKER_HUB else ref.registry
        scheme = "http" if config.plain_http else "https"
        out = [(mirror.url, mirror.repository(ref.repository)) for mirror in config.mirrors]
        out.append((f"{scheme}://{host}", ref.repository))
        return out

    async def _get(
        self,
        ref: ImageReference,
        path: str,
        accept: str,
        max_bytes: int,
        credentials: Sequence[DockerConfig],
    ) -> _Response:
        last: RegistryError | None = None
        for base, repository in self._endpoints(ref):
            if path.startswith(("http://", "https://")):
                url = path
            elif path.startswith("/"):
                url = urljoin(base, path)
            else:
                url = f"{base}/v2/{repository}/{path}"
            try:
                return await self._request(ref, repository, url, accept, max_bytes, credentials)
            except (RegistryUnavailableError, RegistryNotFoundError) as err:
                last = err
                continue
        assert last is not None
        raise last

    def _ssl_for(self, registry: str) -> ssl.SSLContext | bool:
        if registry not in self._ssl:
            config = self.hosts.get(registry, RegistryHostConfig())
            if config.insecure_skip_verify:
                self._ssl[registry] = False
            elif config.ca_file:
                self._ssl[registry] = ssl.create_default_context(cafile=config.ca_file)
            else:
                self._ssl[registry] = True
        return self._ssl[registry]

    async def _request(  # noqa: PLR0917 - internal, called from one place
        self,
        ref: ImageReference,
        repository: str,
        url: str,
        accept: str,
        max_bytes: int,
        credentials: Sequence[DockerConfig],
    ) -> _Response:
        if self._session is None:
            raise RuntimeError("RegistryClient must be used as an async context manager")
        origin_host = urlsplit(url).hostname or ""
        semaphore = self._semaphores.setdefault(
            origin_host, asyncio.Semaphore(self.limits.per_host_concurrency)
        )
        scope = f"repository:{repository}:pull"
        creds = await self._credentials(ref.registry, credentials)
        token_key = (ref.registry, scope, _identity(creds))
        cached = self._tokens.get(token_key)
        authorization = None
        if cached is not None and cached.expires > time.monotonic():
            authorization = cached.value
        async with semaphore:
            for attempt in range(2):
                response = await self._send(url, accept, max_bytes, authorization, ref)
                if response.status != 401 or attempt == 1:
                    break
                authorization = await self._authorize(ref, scope, response, creds)
                if authorization is None:
                    break
                # Remember what worked for this repository, so the next call skips the 401.
                self._tokens[token_key] = _Token(authorization, self._token_expiry)
        return self._check_status(response, ref, url)

    def _check_status(self, response: _Response, ref: ImageReference, url: str) -> _Response:
        status = response.status
        if status == 200:
            return response
        where = f"{ref.registry} ({urlsplit(url).path})"
        if status in (401, 403):
            raise RegistryAuthError(f"{where}: HTTP {status}, access denied")
        if status == 404:
            raise RegistryNotFoundError(f"{where}: not found")
        if status in (429,) or status >= 500:
            raise RegistryUnavailableError(f"{where}: HTTP {status}")
        if "/referrers/" in url and 400 <= status < 500:
            raise _UnsupportedError(f"{where}: HTTP {status}")
        raise RegistryProtocolError(f"{where}: unexpected HTTP {status}")

    async def _send(
        self, url: str, accept: str, max_bytes: int, authorization: str | None, ref: ImageReference
    ) -> _Response:
        assert self._session is not None
        headers = {"Accept": accept}
        first_host = urlsplit(url).netloc
        for _ in range(self.limits.redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise RegistryProtocolError(f"refusing URL {url!r}")
            self.policy.check_name(parts.hostname)
            # Credentials go only to the registry itself, never to a redirect's other host.
            if authorization and parts.netloc == first_host:
                headers["Authorization"] = authorization
            else:
                headers.pop("Authorization", None)
            self.requests += 1
            try:
                async with self._session.get(
                    url,
                    headers=headers,
                    allow_redirects=False,
                    ssl=self._ssl_for(ref.registry) if parts.netloc == first_host else True,
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise RegistryProtocolError(f"redirect without Location from {url}")
                        url = urljoin(url, location)
                        continue
                    length = response.content_length
                    if length is not None and length > max_bytes:
                        raise RegistryProtocolError(
                            f"{ref.registry}: response of {length} bytes is over the "
                            f"{max_bytes}-byte limit"
                        )
                    body = await _read_limited(response, max_bytes, ref)
                    return _Response(response.status, dict(response.headers), body, url)
            except HostRefusedError:
                raise
            except TimeoutError:
                raise RegistryUnavailableError(f"{ref.registry}: timed out") from None
            except aiohttp.ClientConnectorError as err:
                if isinstance(err.os_error, HostRefusedError):
                    raise err.os_error from None
                raise RegistryUnavailableError(
                    f"{ref.registry}: cannot connect ({err.os_error})"
                ) from None
            except aiohttp.ClientError as err:
                raise RegistryUnavailableError(
                    f"{ref.registry}: {type(err).__name__}: {err}"
                ) from None
        raise RegistryProtocolError(f"{ref.registry}: more than {self.limits.redirects} redirects")

    async def _credentials(
        self, registry: str, credentials: Sequence[DockerConfig]
    ) -> Credentials | None:
        # Pod pull secrets first (the pod author's own access), then the server's config.
        for config in (*credentials, *(c for c in (self.docker_config,) if c is not None)):
            found = await config.lookup(registry)
            if found is not None:
                return found
        return None

    async def _authorize(
        self, ref: ImageReference, scope: str, response: _Response, creds: Credentials | None
    ) -> str | None:
        """Answer a 401 challenge; sets ``_token_expiry`` for the header it returns."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        self._token_expiry = time.monotonic() + 300.0
        if scheme.lower() == "basic":
            if creds is None or not creds.username:
                return None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if scheme.lower() != "bearer":
            return None
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{ref.registry}: bearer challenge without realm")
        scope = params.get("scope") or scope
        token = await self._fetch_token(ref, realm, params.get("service", ""), scope, creds)
        self._token_expiry = token.expires
        return f"Bearer {token.value}"

    async def _fetch_token(
        self, ref: ImageReference, realm: str, service: str, scope: str, creds: Credentials | None
    ) -> _Token:
        assert self._session is not None
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryAuthError(f"{ref.registry}: invalid token realm {realm!r}")
        if (
            parts.scheme == "http"
            and not self.hosts.get(ref.registry, RegistryHostConfig()).plain_http
        ):
            raise RegistryAuthError(f"{ref.registry}: refusing a plain-HTTP token realm")
        self.policy.check_name(parts.hostname)
        self.requests += 1
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": service,
                    "scope": scope,
                    "client_id": _USER_AGENT,
                }
                request = self._session.post(realm, data=form, ssl=self._ssl_for(ref.registry))
            else:
                query = {"service": service, "scope": scope}
                auth = None
                if creds is not None and creds.username:
                    auth = aiohttp.BasicAuth(creds.username, creds.password)
                request = self._session.get(
                    realm, params=query, auth=auth, ssl=self._ssl_for(ref.registry)
                )
            async with request as response:
                body = await _read_limited(response, 1 << 20, ref)
                if response.status in (401, 403):
                    raise RegistryAuthError(
                        f"{ref.registry}: token endpoint refused the credentials"
                    )
                if response.status != 200:
                    raise RegistryUnavailableError(
                        f"{ref.registry}: token endpoint HTTP {response.status}"
                    )
        except TimeoutError:
            raise RegistryUnavailableError(f"{ref.registry}: token endpoint timed out") from None
        except aiohttp.ClientConnectorError as err:
            if isinstance(err.os_error, HostRefusedError):
                raise err.os_error from None
            raise RegistryUnavailableError(f"{ref.registry}: token endpoint unreachable") from None
        except aiohttp.ClientError as err:
            raise RegistryUnavailableError(
                f"{ref.registry}: token endpoint {type(err).__name__}"
            ) from None
        document = _json_object(body, "token response")
        value = document.get("token") or document.get("access_token")
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(f"{ref.registry}: token response without a token")
        expires_in = document.get("expires_in")
        lifetime = (
            float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 60.0
        )
        # Renew a little early so a token does not expire in flight.
        return _Token(value, time.monotonic() + max(lifetime - 10.0, 1.0))


class _UnsupportedError(RegistryError):
    """The referrers endpoint answered a 4xx meaning "not implemented here"."""


def _identity(creds: Credentials | None) -> str:
    """A cache key part for whose token this is, without keeping the secret itself."""
    if creds is None:
        return "anonymous"
    material = "\0".join(
        (creds.username, creds.password, creds.identity_token, creds.registry_token)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


async def _read_limited(
    response: aiohttp.ClientResponse, max_bytes: int, ref: ImageReference
) -> bytes:
    chunks = []
    total = 0
    async for chunk in response.content.iter_chunked(64 << 10):
        total += len(chunk)
        if total > max_bytes:
            raise RegistryProtocolError(f"{ref.registry}: response over the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(response: _Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _verify(data: bytes, descriptor: Descriptor, what: str) -> None:
    if len(data) != descriptor.size:
        raise RegistryProtocolError(
            f"{what} {descriptor.digest}: {len(data)} bytes, descriptor says {descriptor.size}"
        )
    algorithm = descriptor.digest.split(":", 1)[0]
    if algorithm not in ("sha256", "sha512"):
        raise RegistryProtocolError(f"{what} {descriptor.digest}: unsupported digest algorithm")
    actual = f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()
    if actual != descriptor.digest:
        raise RegistryProtocolError(f"{what} {descriptor.digest}: content has digest {actual}")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RegistryProtocolError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise RegistryProtocolError(f"{what} is not a JSON object")
    return document


_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _next_link(response: _Response) -> str | None:
    match = _LINK.search(response.headers.get("Link", ""))
    if match is None:
        return None
    return urljoin(response.url, str(match.group(1)))


def is_index(descriptor: Descriptor, document: Mapping[str, Any]) -> bool:
    """Whether a fetched manifest is a multi-platform index (OCI or Docker list)."""
    return descriptor.media_type in INDEX_TYPES or "manifests" in document


def index_children(document: Mapping[str, Any]) -> list[Descriptor]:
    """The child manifests of an index document, in order (malformed entries skipped)."""
    out = []
    for item in document.get("manifests") or ():
        try:
            out.append(Descriptor.from_json(item))
        except RegistryProtocolError:
            continue
    return out


def choose_newest(descriptors: Sequence[Descriptor]) -> Descriptor:
    """The newest by ``org.opencontainers.image.created`` (missing = oldest), ties by digest."""
    return max(descriptors, key=lambda d: (d.created, d.digest))
