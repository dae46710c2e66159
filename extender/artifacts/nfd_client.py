"""``validate --image``: one artifact, fetched the way ``nfd compat validate-node`` does."""

from __future__ import annotations

import platform as platform_module
from collections.abc import Sequence

from extender.registry.auth import DockerConfig
from extender.registry.client import RegistryClient
from extender.registry.errors import (
    RegistryNotFoundError,
)
from extender.registry.reference import (
    CompatibilityArtifact,
    ImageReference,
    Platform,
)

__all__ = [
    "fetch_spec_like_nfd",
    "parse_nfd_platform",
]

# --------------------------------------------------------------------------------------------
# ``validate --image``: one artifact, fetched the way ``nfd compat validate-node`` does

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


def parse_nfd_platform(text: str) -> Platform | None:
    """``--platform`` as NFD parses it: ``os[/arch[/variant]]``; a lone OS takes this host's
    architecture (NFD: ``runtime.GOARCH``); empty means none. ``:os_version`` is refused."""
    text = text.strip()
    if not text:
        return None
    if ":" in text:
        raise ValueError(f"platform {text!r}: an os.version (after ':') is not supported")
    parts = text.split("/")
    if len(parts) > 3:
        raise ValueError(f"failed to parse platform {text!r}: expected format os[/arch[/variant]]")
    if not parts[0]:
        raise ValueError("invalid platform: OS cannot be empty")
    if len(parts) == 1:
        machine = platform_module.machine().lower()
        parts.append(_GOARCH.get(machine, machine))
    if not parts[1]:
        raise ValueError("invalid platform: Architecture cannot be empty")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


async def fetch_spec_like_nfd(
    client: RegistryClient,
    reference: str,
    platform: Platform | None = None,
    credentials: Sequence[DockerConfig] = (),
) -> CompatibilityArtifact:
    """The spec ``nfd compat validate-node --image REF [--platform P]`` would evaluate.

    As NFD's client: resolve (with a platform, the first matching manifest of an index,
    whose own referrers alone count, with no fallback to the index's), list referrers of the
    artifact type (API, else the tag schema), take the newest, read its spec layer. Raises
    :class:`~extender.registry.errors.RegistryError`; no artifact is NFD's ``compatibility artifact
    not found``. One difference: we read the layer whose media type is the spec's, and
    layers[0] only when none has it (NFD always reads layers[0]).
    """
    ref = ImageReference.parse(reference)
    found = await client.fetch_compatibility_spec(ref, platform=platform, credentials=credentials)
    if found is None:
        raise RegistryNotFoundError(f"{reference}: compatibility artifact not found")
    return found
