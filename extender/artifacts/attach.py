"""``attach``: push a compatibility spec as an artifact of an image, as ``oras attach`` would.

Owns the artifact's shape (NFD's artifactType, one spec layer, the OCI empty config, the
``subject`` and the ``org.opencontainers.image.created`` annotation) and which manifests get
one: the image itself, or with platforms each platform's manifest of an index. NFD's client
reads an index's own referrers without ``--platform`` and only the platform manifest's with
it, so an author who wants both readings attaches to both. The pushing itself (blobs,
manifests, referrers API or tag schema) is :meth:`RegistryClient.push_referrer`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from extender.nfd.spec import ARTIFACT_TYPE, SPEC_MEDIA_TYPE
from extender.registry.auth import DockerConfig
from extender.registry.client import PushedReferrer, RegistryClient
from extender.registry.reference import (
    CREATED_ANNOTATION,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    ImageReference,
    Platform,
)

__all__ = [
    "EMPTY_CONFIG",
    "EMPTY_MEDIA_TYPE",
    "Attached",
    "artifact_manifest",
    "attach_spec",
    "parse_created",
    "rfc3339_now",
]

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
TITLE_ANNOTATION = "org.opencontainers.image.title"


@dataclass(frozen=True, slots=True)
class Attached:
    """One pushed artifact: the image manifest it describes and where it was pushed."""

    subject: ImageReference  # with the subject's digest
    platform: Platform | None
    pushed: PushedReferrer


def rfc3339_now() -> str:
    """Now in UTC as RFC 3339 with microseconds, so two attaches in one second still order."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def parse_created(text: str) -> str:
    """``--created``: an RFC 3339 time (with zone), kept as written so pushes reproduce."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"--created {text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None or "T" not in text.upper():
        raise ValueError(f"--created {text!r}: RFC 3339 needs a date, a time and a zone")
    return text


def artifact_manifest(
    spec: bytes, subject: Descriptor, created: str, *, title: str = "compatibility.yaml"
) -> tuple[bytes, Descriptor]:
    """The artifact manifest's bytes and its spec layer's descriptor.

    Shaped as ``oras attach --artifact-type`` makes it: the empty config (with its data
    inline), one layer titled like the file, and the creation time NFD picks the newest by.
    """
    layer = Descriptor(SPEC_MEDIA_TYPE, _digest(spec), len(spec))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": _digest(EMPTY_CONFIG),
            "size": len(EMPTY_CONFIG),
            "data": base64.b64encode(EMPTY_CONFIG).decode(),
        },
        "layers": [
            {
                "mediaType": layer.media_type,
                "digest": layer.digest,
                "size": layer.size,
                "annotations": {TITLE_ANNOTATION: title},
            }
        ],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
        "annotations": {CREATED_ANNOTATION: created},
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), layer


async def attach_spec(
    client: RegistryClient,
    ref: ImageReference,
    spec: bytes,
    *,
    platforms: Sequence[Platform] = (),
    created: str,
    title: str = "compatibility.yaml",
    credentials: Sequence[DockerConfig] = (),
) -> list[Attached]:
    """Attach ``spec`` to the image, or to each platform's manifest of it, in order.

    Every subject is resolved before anything is pushed, so a platform the image lacks
    pushes nothing.
    """
    subjects: list[tuple[Platform | None, Descriptor]] = []
    if platforms:
        for wanted in platforms:
            found = await client.resolve(ref, platform=wanted, credentials=credentials)
            subjects.append((wanted, found))
    else:
        descriptor, document = await client.get_manifest(ref, credentials=credentials)
        # The document's own mediaType is what it is; a registry's Content-Type may be generic.
        media_type = document.get("mediaType")
        if isinstance(media_type, str) and media_type:
            descriptor = Descriptor(media_type, descriptor.digest, descriptor.size)
        subjects.append((None, descriptor))
    await client.push_blob(ref, EMPTY_CONFIG, EMPTY_MEDIA_TYPE, credentials=credentials)
    await client.push_blob(ref, spec, SPEC_MEDIA_TYPE, credentials=credentials)
    attached = []
    for platform, subject in subjects:
        manifest, _ = artifact_manifest(spec, subject, created, title=title)
        pushed = await client.push_referrer(ref, manifest, credentials=credentials)
        attached.append(Attached(ref.with_digest(subject.digest), platform, pushed))
    return attached


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
