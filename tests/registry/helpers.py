"""Shared pieces of the registry-client tests: a client for the test registries."""

from __future__ import annotations

from typing import Any

from extender.registry.client import RegistryClient
from extender.registry.hosts import HostPolicy, RegistryHostConfig

LOOPBACK = HostPolicy(allow_loopback=True)


def client_for(*endpoints: Any, **kwargs: Any) -> RegistryClient:
    """A client that reaches each test registry (or fault proxy) as it serves: plain HTTP, or
    HTTPS trusting its test CA. Loopback is allowed unless ``policy`` says otherwise."""
    hosts = {}
    for endpoint in endpoints:
        if endpoint.scheme == "http":
            hosts[endpoint.host] = RegistryHostConfig(plain_http=True)
        else:
            hosts[endpoint.host] = RegistryHostConfig(ca_file=str(endpoint.ca_file))
    kwargs.setdefault("policy", LOOPBACK)
    return RegistryClient(hosts=hosts, **kwargs)
