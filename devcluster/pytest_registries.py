"""pytest fixtures for real OCI registries, the ORAS CLI and the fault proxy.

Loaded through ``pytest_plugins`` in ``tests/conftest.py``. It owns the fixtures only; the
registries, images and proxy themselves live in ``devcluster.registries``, ``devcluster.oci``
and ``devcluster.faultproxy``.

Session-scoped (started once, shared; tests keep apart by using ``unique_repo``):

- ``oci_registry``: go-containerregistry, referrers API on;
- ``oci_registry_tags``: go-containerregistry, referrers API off (tag-schema fallback);
- ``docker_registry``: Debian's docker-registry, TLS from ``registry_ca`` plus htpasswd auth;
- ``registry_ca``: the ``devcluster.pki.TestCA`` behind the TLS registry (and proxies).

Function-scoped:

- ``unique_repo``: a repository name unique to the test;
- ``fault_proxy``: an in-process ``FaultProxy`` in front of ``oci_registry`` (async tests;
  it runs in the test's event loop, so call the synchronous ``devcluster.oci`` helpers through
  ``asyncio.to_thread`` when they go through it);
- ``fault_proxy_factory``: ``await make(upstream, **kwargs)`` for a proxy in front of any
  registry, stopped after the test;
- ``fault_proxy_process``: a ``python -m devcluster.faultproxy`` subprocess in front of
  ``oci_registry``, for tests whose client is another process or blocks the event loop.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import pki
from devcluster.faultproxy import FaultProxy, FaultProxyProcess, start_fault_proxy_process
from devcluster.registries import (
    Registry,
    RegistryEndpoint,
    start_docker_registry,
    start_oci_registry,
)

FaultProxyFactory = Callable[..., Awaitable[FaultProxy]]


@pytest.fixture(scope="session")
def registry_ca() -> pki.TestCA:
    return pki.TestCA("devcluster-registry-ca")


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_oci_registry(tmp_path_factory.mktemp("oci-registry"), referrers=True) as reg:
        yield reg


@pytest.fixture(scope="session")
def oci_registry_tags(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_oci_registry(tmp_path_factory.mktemp("oci-registry-tags"), referrers=False) as reg:
        yield reg


@pytest.fixture(scope="session")
def docker_registry(
    tmp_path_factory: pytest.TempPathFactory, registry_ca: pki.TestCA
) -> Iterator[Registry]:
    with start_docker_registry(tmp_path_factory.mktemp("docker-registry"), ca=registry_ca) as reg:
        yield reg


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """``test/<hash>-<test name>``: valid as an OCI repository name, unique per test."""
    node = request.node.nodeid
    digest = hashlib.sha256(node.encode()).hexdigest()[:10]
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"test/{digest}-{name or 'repo'}"


@pytest.fixture
async def fault_proxy_factory(
    tmp_path: Path, registry_ca: pki.TestCA
) -> AsyncIterator[FaultProxyFactory]:
    started: list[FaultProxy] = []

    async def make(upstream: RegistryEndpoint, *, tls: bool = False, **kwargs: Any) -> FaultProxy:
        if tls:
            cert, key = registry_ca.issue_server_cert(["127.0.0.1", "localhost"]).write(
                tmp_path / f"proxy{len(started)}.crt", tmp_path / f"proxy{len(started)}.key"
            )
            ca = registry_ca.write_cert(tmp_path / "proxy-ca.crt")
            kwargs.update(tls_cert=cert, tls_key=key, tls_ca=ca)
        proxy = await FaultProxy(upstream, **kwargs).start()
        started.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in reversed(started):
            await proxy.stop()


@pytest.fixture
async def fault_proxy(fault_proxy_factory: FaultProxyFactory, oci_registry: Registry) -> FaultProxy:
    return await fault_proxy_factory(oci_registry.endpoint, max_hang_s=30.0)


@pytest.fixture
def fault_proxy_process(oci_registry: Registry, tmp_path: Path) -> Iterator[FaultProxyProcess]:
    with start_fault_proxy_process(oci_registry.endpoint, tmp_path / "faultproxy") as proxy:
        yield proxy
