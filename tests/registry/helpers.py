"""Shared pieces of the registry-client tests: a client for the test registries."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

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


class FixedResolver(AbstractResolver):
    """Answers every name with one address, and remembers which names were asked."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None
