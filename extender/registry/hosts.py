"""Which hosts we may connect to, and how: host policy, mirrors and per-host settings.

Owns :class:`HostPolicy` (pod authors choose image hosts: link-local and cloud-metadata
addresses are refused by default, loopback only when allowed, allow/deny patterns, and names
checked after DNS resolution by our resolver), :class:`Mirror` and
:class:`RegistryHostConfig` (``--registry-config``).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.abc import AbstractResolver, ResolveResult

from extender.registry.errors import HostRefusedError

__all__ = [
    "HostPolicy",
    "RegistryHostConfig",
    "embedded_ipv4",
    "parse_address",
]

_METADATA_NAMES = (
    "metadata.google.internal",
    "metadata",
    "metadata.azure.internal",
    "instance-data",
)
_DEFAULT_DENIED_NETWORKS = (
    "169.254.0.0/16",  # link-local, incl. AWS/GCP/Azure metadata 169.254.169.254
    "fe80::/10",  # link-local IPv6
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "0.0.0.0/8",
    "::/128",
)
_LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which registry hosts and addresses we may connect to.

    ``allow`` (glob patterns over host names, or CIDRs), when non-empty, is exclusive.
    ``deny`` adds to the built-in denials of link-local and metadata addresses.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_loopback: bool = False

    def _networks(
        self, patterns: Iterable[str]
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for pattern in patterns:
            try:
                out.append(ipaddress.ip_network(pattern, strict=False))
            except ValueError:
                continue
        return out

    def check_name(self, host: str) -> None:
        """Refuse by name before any lookup: every host we connect to (a reference's, a token
        realm's, a redirect's, a pagination link's) passes here first.

        Address spellings are read as the system's resolver would read them (``2852039166``,
        ``0177.0.0.1``, ``0x7f.1``, ``127.1`` are all addresses), so no spelling of a refused
        address passes as a name.
        """
        name = host.strip("[]").rstrip(".").lower()
        if name in _METADATA_NAMES or any(
            fnmatch.fnmatch(name, p) for p in self.deny if not _is_cidr(p)
        ):
            raise HostRefusedError(f"registry host {host} is refused")
        if (name == "localhost" or name.endswith(".localhost")) and not self.allow_loopback:
            raise HostRefusedError(f"registry host {host} is loopback, which is not allowed")
        address = parse_address(name)
        if address is None:
            names = [p for p in self.allow if not _is_cidr(p)]
            # With only CIDRs allowed, a name is judged by its addresses after resolution.
            if names and not any(fnmatch.fnmatch(name, p) for p in names):
                raise HostRefusedError(f"registry host {host} is not in the allow list") from None
            return
        self.check_address(address, host)

    def check_address(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str
    ) -> None:
        # An IPv6 address can carry an IPv4 one that a translator or tunnel delivers to: each
        # address it stands for is judged, so none of them is a way around the deny list.
        for candidate in (address, *embedded_ipv4(address)):
            self._check_one(candidate, host)
        plain = address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            plain = address.ipv4_mapped
        if self.allow and not self._allowed(host, plain):
            raise HostRefusedError(f"registry host {host} ({address}) is not in the allow list")

    def _check_one(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> None:
        denied = self._networks(_DEFAULT_DENIED_NETWORKS) + self._networks(self.deny)
        if any(address in network for network in denied):
            raise HostRefusedError(f"registry host {host} resolves to refused address {address}")
        if address.is_loopback and not self.allow_loopback:
            raise HostRefusedError(
                f"registry host {host} is loopback ({address}), which is not allowed"
            )
        if address.is_multicast or address.is_unspecified:
            raise HostRefusedError(f"registry host {host} resolves to unusable address {address}")

    def _allowed(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """A host passes the allow list by name glob, or by an address in an allowed CIDR."""
        name = host.strip("[]").rstrip(".").lower()
        if any(fnmatch.fnmatch(name, p) for p in self.allow if not _is_cidr(p)):
            return True
        return any(address in network for network in self._networks(self.allow))


_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def parse_address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host spelling stands for, as inet_aton and the URL standard read it, or
    None for a name. IPv4 may come in one to four parts, each decimal, octal (leading 0) or
    hex (0x): ``2852039166``, ``0251.0376.0251.0376``, ``0xa9.254.169.254``, ``169.254.43518``.
    """
    name = name.strip("[]").rstrip(".").split("%")[0]
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    parts = name.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.fullmatch(p) for p in parts):
        return None
    values = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            values.append(int(part, 8))
        else:
            values.append(int(part))
    # The last part fills the bytes the others left: a.b.c.d, a.b.16bit, a.24bit, 32bit.
    head, last = values[:-1], values[-1]
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def embedded_ipv4(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address delivers to: mapped ``::ffff:a.b.c.d``, compatible
    ``::a.b.c.d``, NAT64 ``64:ff9b::/96`` (and the local-use ``64:ff9b:1::/48``), 6to4
    ``2002::/16`` and Teredo."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    number = int(address)
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if number >> 32 == 0 and number > 1:  # ::a.b.c.d, not :: or ::1
        found.append(ipaddress.IPv4Address(number & 0xFFFFFFFF))
    if address in _NAT64 or address in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(number & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _is_cidr(pattern: str) -> bool:
    try:
        ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    return True


class _PolicyResolver(AbstractResolver):
    """Resolves names, then drops every address the policy refuses, before any connection."""

    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = []
        problem: HostRefusedError | None = None
        for result in results:
            try:
                self._policy.check_address(ipaddress.ip_address(result["host"]), host)
            except HostRefusedError as err:
                problem = err
                continue
            allowed.append(result)
        if not allowed:
            raise problem or HostRefusedError(f"registry host {host} has no usable address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Mirror:
    """A mirror endpoint tried before the registry itself, like containerd's hosts.toml."""

    url: str  # scheme://host[:port]
    rewrite: tuple[tuple[str, str], ...] = ()  # (regex, replacement) over the repository

    def repository(self, repository: str) -> str:
        for pattern, replacement in self.rewrite:
            new, count = re.subn(pattern, replacement.replace("$", "\\"), repository, count=1)
            if count:
                return new
        return repository


@dataclass(frozen=True, slots=True)
class RegistryHostConfig:
    """Explicit per-registry settings; nothing is guessed from a host name."""

    plain_http: bool = False
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    mirrors: tuple[Mirror, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegistryHostConfig:
        mirrors = []
        for item in data.get("mirrors") or ():
            if isinstance(item, str):
                mirrors.append(Mirror(item.rstrip("/")))
            else:
                rewrite = tuple((str(k), str(v)) for k, v in (item.get("rewrite") or {}).items())
                mirrors.append(Mirror(str(item["url"]).rstrip("/"), rewrite))
        return cls(
            plain_http=bool(data.get("plainHTTP", False)),
            ca_file=data.get("caFile"),
            insecure_skip_verify=bool(data.get("insecureSkipVerify", False)),
            mirrors=tuple(mirrors),
        )


def load_registry_hosts(path: str | os.PathLike[str]) -> dict[str, RegistryHostConfig]:
    """Read ``{registries: {HOST: {plainHTTP, caFile, insecureSkipVerify, mirrors}}}``."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    hosts = data.get("registries") or {}
    return {str(host): RegistryHostConfig.from_json(cfg or {}) for host, cfg in hosts.items()}
