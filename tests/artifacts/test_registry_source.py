"""RegistrySource against real registries (go-containerregistry with and without the referrers
API) with specs attached by the real ``oras attach``: caches, TTLs, single-flight, per-platform
specs, outages. Cache behaviour is asserted through request counters, never clocks; TTLs
expire by moving an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from devcluster.faultproxy import Fault, FaultProxy
from devcluster.oci import attach_spec, push_image, push_index
from devcluster.registries import Registry
from extender.artifacts.types import PullContext, SpecKey

from .helpers import SPEC_A, SPEC_B, SPEC_C, Clock, source_for

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CTX = PullContext("default")


def tags_of(lookup: object) -> list[str]:
    spec = getattr(lookup, "spec", None)
    assert spec is not None, f"no spec: {lookup}"
    return [s.tag for s in spec.spec.compatibilities]


@pytest.mark.parametrize("registry_fixture", ["oci_registry", "oci_registry_tags"])
async def test_spec_is_loaded_once_then_served_from_memory(
    registry_fixture: str, request: pytest.FixtureRequest, unique_repo: str
) -> None:
    registry: Registry = request.getfixturevalue(registry_fixture)
    mode = "v1.1-referrers-api" if registry.referrers_api else "v1.1-referrers-tag"
    image = push_image(registry, unique_repo, "v1")
    attach_spec(registry, unique_repo, image.digest, SPEC_A, created=T0, distribution_spec=mode)
    source = source_for(registry)
    key = SpecKey(image.tag_ref)
    async with source.client:
        assert source.get_cached(key, CTX) is None
        first = await source.load(key, CTX)
        assert tags_of(first) == ["a"]
        after_first = source.client.requests
        assert after_first >= 4  # manifest, referrers, artifact manifest, blob
        assert source.get_cached(key, CTX) is first
        assert await source.load(key, CTX) is first
        assert source.client.requests == after_first
    assert source.stats.loads == 1
    assert source.stats.answers.hits == 1 and source.stats.answers.misses == 1


async def test_single_flight_under_100_concurrent_callers(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, SPEC_A, created=T0)
    key = SpecKey(image.tag_ref)
    alone = source_for(oci_registry)
    async with alone.client:
        await alone.load(key, CTX)
    one_load = alone.client.requests

    source = source_for(oci_registry)
    async with source.client:
        results = await asyncio.gather(*(source.load(key, CTX) for _ in range(100)))
    assert all(r is results[0] for r in results)
    assert tags_of(results[0]) == ["a"]
    assert source.flights.started == 1
    assert source.stats.loads == 1
    assert source.client.requests == one_load


async def test_ttl_expiry_refetches_the_listing_not_the_spec(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, SPEC_A, created=T0)
    clock = Clock()
    source = source_for(oci_registry, clock=clock, tag_ttl=30, referrers_ttl=60)
    key = SpecKey(image.tag_ref)
    async with source.client:
        await source.load(key, CTX)
        cold = source.client.requests
        clock.advance(31)  # the tag expired, the listing not yet
        await source.load(key, CTX)
        assert source.client.requests == cold + 1  # the manifest only
        clock.advance(30)  # now the listing too
        await source.load(key, CTX)
        assert source.client.requests == cold + 3  # manifest and referrers; spec cached
    assert source.stats.specs.misses == 1 and source.stats.specs.hits == 2


async def test_new_artifact_is_seen_after_the_listing_ttl(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    attach_spec(oci_registry, unique_repo, image.digest, SPEC_A, created=T0)
    clock = Clock()
    source = source_for(oci_registry, clock=clock, referrers_ttl=60)
    key = SpecKey(image.tag_ref)
    async with source.client:
        assert tags_of(await source.load(key, CTX)) == ["a"]
        attach_spec(
            oci_registry, unique_repo, image.digest, SPEC_C, created=T0 + timedelta(hours=1)
        )
        clock.advance(59)
        assert tags_of(await source.load(key, CTX)) == ["a"]  # still within the TTL
        clock.advance(2)
        # The request path is never made to wait for a TTL: it gets the previous answer and
        # a refresh starts behind it.
        assert tags_of(source.get_cached(key, CTX)) == ["a"]
        assert source.stats.refreshes == 1
        assert tags_of(await source.load(key, CTX)) == ["c"]
        assert tags_of(source.get_cached(key, CTX)) == ["c"]


async def test_no_artifact_is_cached_for_the_negative_ttl(
    oci_registry: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    clock = Clock()
    source = source_for(oci_registry, clock=clock, negative_ttl=20, referrers_ttl=600)
    key = SpecKey(image.tag_ref)
    async with source.client:
        first = await source.load(key, CTX)
        assert first.spec is None and first.failure is None and first.invalid is None
        requests = source.client.requests
        attach_spec(oci_registry, unique_repo, image.digest, SPEC_A, created=T0)
        clock.advance(10)
        assert (await source.load(key, CTX)).spec is None
        assert source.client.requests == requests
        clock.advance(11)
        assert tags_of(await source.load(key, CTX)) == ["a"]


@pytest.mark.parametrize("registry_fixture", ["oci_registry", "oci_registry_tags"])
async def test_platform_spec_replaces_the_index_spec(
    registry_fixture: str, request: pytest.FixtureRequest, unique_repo: str
) -> None:
    registry: Registry = request.getfixturevalue(registry_fixture)
    mode = "v1.1-referrers-api" if registry.referrers_api else "v1.1-referrers-tag"
    image = push_index(registry, unique_repo, "v1", platforms=("linux/amd64", "linux/arm64"))
    attach_spec(registry, unique_repo, image.digest, SPEC_A, created=T0, distribution_spec=mode)
    attach_spec(
        registry,
        unique_repo,
        image.platforms["linux/arm64"],
        SPEC_B,
        created=T0,
        distribution_spec=mode,
    )
    source = source_for(registry)
    async with source.client:
        arm = await source.load(SpecKey(image.tag_ref, platform="linux/arm64"), CTX)
        amd = await source.load(SpecKey(image.tag_ref, platform="linux/amd64"), CTX)
        unknown = await source.load(SpecKey(image.tag_ref), CTX)
        other = await source.load(SpecKey(image.tag_ref, platform="windows/amd64"), CTX)
    assert tags_of(arm) == ["b"]
    assert tags_of(amd) == ["a"]
    assert tags_of(unknown) == ["a"]
    assert tags_of(other) == ["a"]
    # The index manifest and its listing were fetched once and shared by all four keys.
    assert source.stats.manifests.misses == 1
    assert source.stats.specs.misses == 2


async def test_outage_is_served_from_cache_only_where_a_good_answer_exists(
    fault_proxy: FaultProxy, oci_registry: Registry, unique_repo: str
) -> None:
    known = await asyncio.to_thread(push_image, oci_registry, unique_repo, "v1")
    await asyncio.to_thread(
        attach_spec, oci_registry, unique_repo, known.digest, SPEC_A, created=T0
    )
    fresh = await asyncio.to_thread(push_image, oci_registry, unique_repo, "v2")
    clock = Clock()
    source = source_for(fault_proxy.endpoint, clock=clock, referrers_ttl=60, error_ttl=5)
    key = SpecKey(f"{fault_proxy.host}/{unique_repo}:v1")
    never_seen = SpecKey(f"{fault_proxy.host}/{unique_repo}:v2")
    assert fresh.tag == "v2"
    async with source.client:
        assert tags_of(await source.load(key, CTX)) == ["a"]
        await fault_proxy.set_fault(Fault("error", status=503))
        clock.advance(120)
        during = await source.load(key, CTX)
        assert tags_of(during) == ["a"]  # the registry is down: the last good spec stays
        assert source.stats.stale_served == 1
        failed = await source.load(never_seen, CTX)
        assert failed.failure is not None and "503" in failed.failure
        # The failure is cached for error_ttl: no request until it expires.
        before = fault_proxy.count()
        assert (await source.load(never_seen, CTX)).failure is not None
        assert fault_proxy.count() == before
        # Beyond stale_for the outage shows.
        clock.advance(source.config.stale_for + 1)
        assert (await source.load(key, CTX)).failure is not None
        await fault_proxy.set_fault(Fault("pass"))
        clock.advance(6)
        assert tags_of(await source.load(key, CTX)) == ["a"]
