"""Registry credentials: docker ``config.json``, pull secrets and credential helpers.

Owns :class:`DockerConfig` (``auths`` entries, identity tokens, ``credsStore`` and
``credHelpers`` through the exec protocol) and :class:`Credentials`, and the bearer-token
challenge parsing the client answers with them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from extender.registry.errors import RegistryAuthError
from extender.registry.reference import DOCKER_HUB

__all__ = [
    "Credentials",
    "DockerConfig",
]

# --------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # a refresh token for the registry's token endpoint
    registry_token: str = ""  # a bearer token to send as is

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"Credentials(username={self.username!r}, ...)"


_NO_CREDENTIALS = Credentials()


def _config_host(key: str) -> str:
    host = key
    if "://" in host:
        host = urlsplit(host).netloc or host
    host = host.split("/")[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


class DockerConfig:
    """Credentials from a docker ``config.json`` (or a dockerconfigjson pull secret).

    ``allow_helpers`` says whether ``credsStore`` and ``credHelpers`` may run a program: true
    for the extender's own config, which the operator wrote; never for a pod's pull secret,
    which a pod author wrote (a secret is data: naming a helper must not run one).
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        helper_timeout_s: float = 5.0,
        allow_helpers: bool = True,
    ) -> None:
        self._auths: dict[str, Credentials] = {}
        for key, entry in (data.get("auths") or {}).items():
            if isinstance(entry, Mapping):
                found = _credentials_from_auth(entry)
                # Docker writes an empty entry beside a credsStore: the helper has the secret.
                if found != _NO_CREDENTIALS:
                    self._auths[_config_host(str(key))] = found
        self._helpers: dict[str, str] = {}
        self._store = ""
        if allow_helpers:
            self._helpers = {
                _config_host(str(k)): str(v) for k, v in (data.get("credHelpers") or {}).items()
            }
            self._store = str(data.get("credsStore") or "")
        self._helper_timeout_s = helper_timeout_s

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DockerConfig:
        return cls(json.loads(Path(path).read_text()))

    @classmethod
    def from_secret_data(cls, data: bytes) -> DockerConfig:
        """A ``kubernetes.io/dockerconfigjson`` (or legacy ``dockercfg``) secret payload.

        Only its inline credentials count: its ``credsStore``/``credHelpers`` are ignored.
        """
        parsed = json.loads(data)
        if "auths" not in parsed:
            parsed = {"auths": parsed}
        return cls(parsed, allow_helpers=False)

    async def lookup(self, registry: str) -> Credentials | None:
        if registry in self._auths:
            return self._auths[registry]
        helper = self._helpers.get(registry) or self._store
        if helper:
            server = "https://index.docker.io/v1/" if registry == DOCKER_HUB else registry
            return await asyncio.to_thread(self._run_helper, helper, server)
        return None

    def _run_helper(self, helper: str, server: str) -> Credentials | None:
        program = f"docker-credential-{helper}"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", helper):
            raise RegistryAuthError(f"invalid credential helper name {helper!r}")
        try:
            done = subprocess.run(
                [program, "get"],
                input=server.encode(),
                capture_output=True,
                timeout=self._helper_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise RegistryAuthError(
                f"credential helper {program} failed: {type(err).__name__}"
            ) from None
        if done.returncode != 0:
            if b"credentials not found" in done.stdout.lower():
                return None
            raise RegistryAuthError(f"credential helper {program} exited {done.returncode}")
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            raise RegistryAuthError(f"credential helper {program} gave invalid JSON") from None
        username, secret = str(answer.get("Username", "")), str(answer.get("Secret", ""))
        if username == "<token>":
            return Credentials(identity_token=secret)
        return Credentials(username=username, password=secret)


def _credentials_from_auth(entry: Mapping[str, Any]) -> Credentials:
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    encoded = entry.get("auth")
    if encoded and not username:
        try:
            username, _, password = base64.b64decode(str(encoded)).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            username, password = "", ""
    return Credentials(
        username=username,
        password=password,
        identity_token=str(entry.get("identitytoken") or ""),
        registry_token=str(entry.get("registrytoken") or ""),
    )


# --------------------------------------------------------------------------------------------
# The client


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(slots=True)
class _Token:
    value: str
    expires: float


def _identity(creds: Credentials | None) -> str:
    """A cache key part for whose token this is, without keeping the secret itself."""
    if creds is None:
        return "anonymous"
    material = "\0".join(
        (creds.username, creds.password, creds.identity_token, creds.registry_token)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]
