"""What can go wrong talking to a registry, as one exception family."""

from __future__ import annotations

__all__ = [
    "HostRefusedError",
    "InvalidReferenceError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryProtocolError",
    "RegistryUnavailableError",
]

# --------------------------------------------------------------------------------------------
# Errors


class RegistryError(Exception):
    """Any failure to read from a registry. ``kind`` is a short, bounded label for metrics."""

    kind = "error"


class InvalidReferenceError(RegistryError):
    kind = "reference"


class HostRefusedError(RegistryError):
    kind = "refused"


class RegistryUnavailableError(RegistryError):
    """Connection refused or reset, timeout, 5xx: worth retrying later."""

    kind = "unavailable"


class RegistryAuthError(RegistryError):
    kind = "auth"


class RegistryNotFoundError(RegistryError):
    kind = "not_found"


class RegistryProtocolError(RegistryError):
    """The registry answered something we must not use: bad JSON, wrong digest, too large."""

    kind = "protocol"
