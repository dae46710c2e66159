"""Image references, descriptors, platforms and artifacts: the registry's nouns.

Owns parsing image references as Docker and containerd do (default registry and
``library/``), OCI and Docker media types, platforms and their matching, descriptors, the
compatibility artifact we return, and choosing the newest artifact by its ``created``
annotation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from extender.registry.errors import InvalidReferenceError, RegistryProtocolError

__all__ = [
    "CompatibilityArtifact",
    "Descriptor",
    "ImageReference",
    "Platform",
    "choose_newest",
    "index_children",
    "is_index",
]

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
