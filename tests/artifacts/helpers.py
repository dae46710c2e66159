"""Shared pieces of the artifact-source tests: a controllable clock and a source factory."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from extender.artifacts.registry_source import RegistrySource
from extender.registry.client import RegistryLimits
from extender.server.config import Settings
from tests.registry.helpers import client_for

SPEC_A = """\
version: v1alpha1
compatibilities:
- tag: a
  description: index-level spec
  rules:
  - name: kernel
    matchFeatures:
    - feature: kernel.version
      matchExpressions:
        major: {op: Gt, value: ["3"]}
"""
SPEC_B = SPEC_A.replace("tag: a", "tag: b").replace("index-level", "platform")
SPEC_C = SPEC_A.replace("tag: a", "tag: c").replace("index-level", "newer")


class Clock:
    """A monotonic clock the test moves by hand: TTLs expire without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _limits(timeout_s: float) -> RegistryLimits:
    return RegistryLimits(timeout_s=timeout_s, connect_timeout_s=min(timeout_s, 3.0))


def source_for(*endpoints: Any, clock: Clock | None = None, **config: Any) -> RegistrySource:
    return RegistrySource(
        client_for(*endpoints, limits=_limits(config.pop("timeout_s", 10.0))),
        replace(Settings().artifact_cache_config(), **config),
        clock=clock or Clock(),
    )
