"""What the policy and the artifact sources say to each other.

Owns :class:`ArtifactSource` (image reference and platform to spec, "none", invalid, or a
failure), its key (:class:`SpecKey`), the pod's pull context (:class:`PullContext`), the answer
(:class:`SpecLookup`), and :class:`NoArtifacts`, the source used when none is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from extender.nfd.rules import CompiledSpec
from extender.nfd.spec import SpecError

__all__ = [
    "ArtifactSource",
    "NoArtifacts",
    "PullContext",
    "SpecKey",
    "SpecLookup",
]


class NoArtifacts:
    """An artifact source that knows no specs: every image is neutral."""

    ready = True

    def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None:
        return SpecLookup.none()

    async def load(self, key: SpecKey, context: PullContext) -> SpecLookup:
        return SpecLookup.none()


# --------------------------------------------------------------------------------------------
# The two interfaces


@dataclass(frozen=True, slots=True)
class SpecKey:
    """What to look up: an image as written in the pod, or an explicit artifact for it.

    ``artifact`` is the pod's ``artifacts`` annotation entry for the container ("" = the
    image's attached artifact). ``platform`` is the node's ``os/arch`` ("" = unknown, use
    the index-level spec).
    """

    image: str
    artifact: str = ""
    platform: str = ""

    @property
    def reference(self) -> str:
        return self.artifact or self.image


@dataclass(frozen=True, slots=True)
class PullContext:
    """Whose pull credentials apply: the pod's namespace and ``imagePullSecrets`` names."""

    namespace: str = ""
    pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpecLookup:
    """A source's answer for one :class:`SpecKey`; exactly one outcome is set.

    ``spec``: the compiled spec. Nothing set: the image has no spec (neutral).
    ``invalid``: a spec exists but cannot be used. ``failure``: the source could not answer
    (registry down, unreadable file). ``unusable``: the reference itself cannot be used (it
    does not parse, or names a host the extender may not contact), which no retry changes;
    the policy never treats that as "no spec" when the pod named the reference itself.
    ``origin`` says where a spec came from, for logs.
    """

    spec: CompiledSpec | None = None
    invalid: SpecError | None = None
    failure: str | None = None
    unusable: str | None = None
    origin: str = ""

    @classmethod
    def found(cls, spec: CompiledSpec, origin: str = "") -> SpecLookup:
        return cls(spec=spec, origin=origin)

    @classmethod
    def none(cls) -> SpecLookup:
        return NO_SPEC

    @classmethod
    def invalid_spec(cls, error: SpecError, origin: str = "") -> SpecLookup:
        return cls(invalid=error, origin=origin)

    @classmethod
    def failed(cls, message: str, origin: str = "") -> SpecLookup:
        return cls(failure=message, origin=origin)

    @classmethod
    def unusable_reference(cls, message: str, origin: str = "") -> SpecLookup:
        return cls(unusable=message, origin=origin)


NO_SPEC = SpecLookup()


class ArtifactSource(Protocol):
    """Image reference [+ platform] → spec, "none", invalid, or a failure.

    ``get_cached`` must not block or await: it answers from memory, or None when the key is
    not known yet. ``load`` fetches and never raises for domain failures; afterwards
    ``get_cached`` answers the same until the source lets the entry expire. ``load`` is
    single-flight per (key, context), and the source's job alone: concurrent callers share one
    computation, and a caller that stops waiting does not cancel it. ``ready`` is false while
    the source cannot answer at all.
    """

    @property
    def ready(self) -> bool: ...

    def get_cached(self, key: SpecKey, context: PullContext) -> SpecLookup | None: ...

    async def load(self, key: SpecKey, context: PullContext) -> SpecLookup: ...
