"""Bad input never crashes or stalls the source: a malformed spec is an ``invalid`` answer
(cached by artifact digest, so it is not fetched again), an artifact over the size limit and
an unreachable registry are failures with a clear message, and a malformed reference too."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from devcluster.oci import attach_spec, push_image
from devcluster.registries import Registry, RegistryEndpoint
from extender.artifacts.types import PullContext, SpecKey

from .helpers import Clock, source_for

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CTX = PullContext("default")
BAD_SPEC = """\
version: v1alpha1
compatibilities:
- rules:
  - name: bad
    matchFeatures:
    - feature: cpu.model
      matchExpressions:
        vendor_id: {op: Bogus, value: [x]}
"""


async def test_malformed_spec_is_invalid_and_compiled_once(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, BAD_SPEC, created=T0)
    clock = Clock()
    source = source_for(oci_registry, clock=clock, referrers_ttl=10)
    key = SpecKey(image.tag_ref)
    async with source.client:
        lookup = await source.load(key, CTX)
        assert lookup.invalid is not None and lookup.spec is None
        assert "Bogus" in str(lookup.invalid)
        clock.advance(11)
        again = await source.load(key, CTX)
        assert again.invalid is not None
    assert source.stats.specs.misses == 1 and source.stats.specs.hits == 1


async def test_artifact_over_the_size_limit_is_a_failure(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    huge = "version: v1alpha1\n# " + "x" * (2 << 20) + "\ncompatibilities: []\n"
    attach_spec(oci_registry, unique_repo, image.digest, huge, created=T0)
    source = source_for(oci_registry)
    async with source.client:
        lookup = await source.load(SpecKey(image.tag_ref), CTX)
    assert lookup.failure is not None and "limit" in lookup.failure


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_registry_is_a_failure_not_a_hang() -> None:
    host = f"127.0.0.1:{closed_port()}"
    source = source_for(RegistryEndpoint(host, "http"), timeout_s=2.0)
    async with source.client:
        lookup = await source.load(SpecKey(f"{host}/app:v1"), CTX)
    # A stable reason: errno text stays in the log (pod authors read failures in events).
    assert lookup.failure == f"{host}: registry unreachable"


async def test_malformed_reference_is_unusable_not_a_passing_failure() -> None:
    source = source_for()
    async with source.client:
        lookup = await source.load(SpecKey("UPPER/Case:bad tag"), CTX)
    assert lookup.failure is None
    assert lookup.unusable == "not a valid image reference"
