"""Each fault-proxy mode does what it says, in front of a real registry, switched while the
proxy runs; requests are counted; the subprocess form is controlled the same way."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest

from devcluster import oci
from devcluster.faultproxy import Fault, FaultProxy, FaultProxyProcess, start_fault_proxy_process
from devcluster.pytest_registries import FaultProxyFactory
from devcluster.registries import Registry, RegistryEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SHORT = aiohttp.ClientTimeout(total=5)


async def _get(
    session: aiohttp.ClientSession, url: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    async with session.request(method, url, timeout=SHORT) as resp:
        return resp.status, dict(resp.headers), await resp.read()


@pytest.fixture
def image(oci_registry: Registry, unique_repo: str) -> oci.PushedImage:
    return oci.push_index(oci_registry, unique_repo)


async def test_pass_is_transparent_for_push_pull_and_oras(
    fault_proxy: FaultProxy, unique_repo: str
) -> None:
    ep = fault_proxy.endpoint
    # Pushing through the proxy exercises POST, PATCH/PUT with Location rewriting and HEAD.
    # The helpers are synchronous and the proxy runs in this event loop: call them in a thread.
    image = await asyncio.to_thread(oci.push_index, ep, unique_repo)
    art = await asyncio.to_thread(
        oci.attach_spec,
        ep,
        unique_repo,
        image.digest,
        b"version: v1alpha1\n",
        created="2024-01-01T00:00:00Z",
    )
    found = await asyncio.to_thread(oci.oras_discover, ep, unique_repo, image.digest)
    assert [r["digest"] for r in found] == [art.digest]
    counts = fault_proxy.counts()
    assert counts.count(rf"/v2/{unique_repo}/referrers/", "GET") >= 1
    assert counts.count(rf"/v2/{unique_repo}/manifests/", "PUT") == 4  # 2 children, index, artifact
    assert counts.total == sum(counts.by_key.values())
    fault_proxy.reset_counts()
    assert fault_proxy.count() == 0


async def test_pass_through_tls_upstream_with_auth(
    fault_proxy_factory: FaultProxyFactory, docker_registry: Registry, unique_repo: str
) -> None:
    # docker-registry answers absolute https Location URLs; the proxy must send clients back
    # to itself, and pass the Basic credentials through.
    proxy = await fault_proxy_factory(docker_registry.endpoint)
    assert proxy.scheme == "http"
    image = await asyncio.to_thread(oci.push_image, proxy.endpoint, unique_repo)
    assert oci.get_manifest(docker_registry, unique_repo, "v1")[2] == image.digest
    anonymous = RegistryEndpoint(proxy.host)
    with pytest.raises(oci.OciError, match="HTTP 401"):
        await asyncio.to_thread(oci.get_manifest, anonymous, unique_repo, "v1")
    tls_proxy = await fault_proxy_factory(docker_registry.endpoint, tls=True)
    assert tls_proxy.endpoint.scheme == "https"
    got = await asyncio.to_thread(oci.get_manifest, tls_proxy.endpoint, unique_repo, "v1")
    assert got[2] == image.digest


async def test_refuse_then_pass_on_the_same_port(
    fault_proxy: FaultProxy, image: oci.PushedImage
) -> None:
    url = f"{fault_proxy.url}/v2/{image.repo}/manifests/{image.digest}"
    port = fault_proxy.port
    async with aiohttp.ClientSession() as kept:
        assert (await _get(kept, url))[0] == 200  # leaves a keep-alive connection open
        await fault_proxy.set_fault("refuse")
        async with aiohttp.ClientSession() as fresh:
            with pytest.raises(aiohttp.ClientConnectorError) as err:
                await _get(fresh, url)
            assert isinstance(err.value.os_error, ConnectionRefusedError)
        # The old connection is closed unanswered rather than served.
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(kept, url)
    await fault_proxy.set_fault("pass")
    assert fault_proxy.port == port
    async with aiohttp.ClientSession() as session:
        assert (await _get(session, url))[0] == 200


async def test_hang_until_the_client_gives_up_or_the_fault_changes(
    fault_proxy: FaultProxy, image: oci.PushedImage
) -> None:
    url = f"{fault_proxy.url}/v2/{image.repo}/manifests/{image.digest}"
    await fault_proxy.set_fault("hang")
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        assert time.monotonic() - start < 2

    # A hung request is released by closing its connection, never by an answer. (Raw HTTP:
    # aiohttp's client would transparently retry an idempotent request once on a new
    # connection, which then passes.)
    reader, writer = await asyncio.open_connection("127.0.0.1", fault_proxy.port)
    try:
        path = url.removeprefix(fault_proxy.url)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {fault_proxy.host}\r\n\r\n".encode())
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
        start = time.monotonic()
        await fault_proxy.set_fault("pass")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert time.monotonic() - start < 2
    finally:
        writer.close()
    async with aiohttp.ClientSession() as session:
        assert (await _get(session, url))[0] == 200


async def test_delay(fault_proxy: FaultProxy, image: oci.PushedImage) -> None:
    url = f"{fault_proxy.url}/v2/{image.repo}/manifests/{image.digest}"
    await fault_proxy.set_fault("delay", delay_ms=300)
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        status, _, body = await _get(session, url)
        took = time.monotonic() - start
    assert status == 200 and body
    assert 0.3 <= took < 3


@pytest.mark.parametrize("status", [503, 500])
async def test_error(fault_proxy: FaultProxy, image: oci.PushedImage, status: int) -> None:
    url = f"{fault_proxy.url}/v2/{image.repo}/manifests/{image.digest}"
    await fault_proxy.set_fault(Fault("error", status=status))
    async with aiohttp.ClientSession() as session:
        got, headers, body = await _get(session, url)
    assert got == status
    assert b'"errors"' in body
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"


async def test_reset_mid_body(fault_proxy: FaultProxy, image: oci.PushedImage) -> None:
    url = f"{fault_proxy.url}/v2/{image.repo}/manifests/{image.digest}"
    await fault_proxy.set_fault("reset")
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=SHORT) as resp:
            # Status and headers arrive intact; the body stops halfway with a reset.
            assert resp.status == 200
            assert resp.content_length == image.size
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        # A HEAD has no body to cut: the connection drops before any answer.
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(session, url, method="HEAD")


async def test_unauthorized(fault_proxy: FaultProxy, image: oci.PushedImage) -> None:
    url = f"{fault_proxy.url}/v2/{image.repo}/manifests/{image.digest}"
    await fault_proxy.set_fault("unauthorized")
    async with aiohttp.ClientSession() as session:
        status, headers, body = await _get(session, url)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic ")
    assert b"UNAUTHORIZED" in body


async def test_redirect_loops_back_to_the_proxy(
    fault_proxy: FaultProxy, image: oci.PushedImage
) -> None:
    path = f"/v2/{image.repo}/manifests/{image.digest}"
    await fault_proxy.set_fault("redirect")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            fault_proxy.url + path, timeout=SHORT, allow_redirects=False
        ) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == f"{fault_proxy.url}{path}?hop=1"
        # A client that follows redirects goes round until its own limit.
        with pytest.raises(aiohttp.TooManyRedirects):
            await _get(session, fault_proxy.url + path)
    # The request above, then 10 (aiohttp gives up at its 10th redirect, max_redirects).
    assert fault_proxy.count(path, "GET") == 1 + 10
    await fault_proxy.set_fault("pass")
    async with aiohttp.ClientSession() as session:
        assert (await _get(session, fault_proxy.url + path))[0] == 200


async def test_fault_limited_by_path_and_count(
    fault_proxy: FaultProxy, image: oci.PushedImage
) -> None:
    base = f"{fault_proxy.url}/v2/{image.repo}"
    referrers = f"{base}/referrers/{image.digest}"
    manifest = f"{base}/manifests/{image.digest}"
    await fault_proxy.set_fault("error", path=r"/referrers/", count=2)
    async with aiohttp.ClientSession() as session:
        assert (await _get(session, manifest))[0] == 200  # other paths pass
        assert (await _get(session, referrers))[0] == 503
        assert (await _get(session, referrers))[0] == 503
        assert (await _get(session, referrers))[0] == 200  # count used up
    assert fault_proxy.count(r"/referrers/") == 3
    assert fault_proxy.count(r"/manifests/", "GET") == 1
    assert fault_proxy.count(method="PUT") == 0
    assert fault_proxy.counts().paths() == {
        f"/v2/{image.repo}/referrers/{image.digest}": 3,
        f"/v2/{image.repo}/manifests/{image.digest}": 1,
    }


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="mode"):
        Fault("explode")
    with pytest.raises(ValueError, match="5xx"):
        Fault("error", status=404)
    with pytest.raises(ValueError, match="delay_ms"):
        Fault("delay", delay_ms=10**9)
    with pytest.raises(ValueError, match="unknown fault fields"):
        Fault.from_json({"mode": "pass", "extra": 1})
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(RegistryEndpoint("10.0.0.1:5000"))
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(RegistryEndpoint("127.0.0.1:5000"), listen="0.0.0.0:0")


def test_subprocess_proxy_is_switched_through_its_control_endpoint(
    fault_proxy_process: FaultProxyProcess, image: oci.PushedImage
) -> None:
    ep = fault_proxy_process.endpoint
    assert fault_proxy_process.fault == Fault()
    # The real oras through the proxy, as the extender or the demo would go.
    assert oci.oras_discover(ep, image.repo, image.digest) == []
    assert fault_proxy_process.count(r"/referrers/", "GET") >= 1

    # oras-go retries every 5xx (5 times, exponential backoff from 250 ms): two failures are
    # absorbed, which the request count shows.
    fault_proxy_process.set_fault("error", status=502, path="/referrers/", count=2)
    assert fault_proxy_process.fault.status == 502
    fault_proxy_process.reset_counts()
    assert (
        oci.oras_discover(ep, image.repo, image.digest, distribution_spec="v1.1-referrers-api")
        == []
    )
    assert fault_proxy_process.count(r"/referrers/", "GET") == 3
    fault_proxy_process.set_fault("unauthorized")
    with pytest.raises(oci.OrasError, match="credential"):
        oci.oras_discover(ep, image.repo, image.digest)

    fault_proxy_process.set_fault("refuse")
    with pytest.raises(OSError, match="refused"):
        oci.get_manifest(ep, image.repo, image.digest)
    fault_proxy_process.set_fault("pass")
    assert oci.get_manifest(ep, image.repo, image.digest)[2] == image.digest

    fault_proxy_process.reset_counts()
    assert fault_proxy_process.counts().total == 0
    with pytest.raises(ValueError, match="mode"):
        fault_proxy_process._call("PUT", "/fault", {"mode": "explode"})


def test_subprocess_proxy_exits_when_its_parent_goes(
    oci_registry: Registry, tmp_path: Path
) -> None:
    proxy = start_fault_proxy_process(oci_registry.endpoint, tmp_path)
    try:
        assert proxy.alive()
        # Closing stdin is what the parent's death looks like to the proxy.
        proc = proxy.process.proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    finally:
        proxy.stop()
    assert not proxy.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(proxy.pid, 0)
