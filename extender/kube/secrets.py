"""Pull secrets: reading a pod's ``imagePullSecrets`` from the API, as raw data."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any, Protocol

__all__ = [
    "KubernetesSecrets",
    "PullSecretError",
    "SecretReader",
]

log = logging.getLogger(__name__)


class PullSecretError(Exception):
    """A pull secret exists but cannot be read (an API error other than 403 or 404)."""


class SecretReader(Protocol):
    """Pull secrets by namespace and name: the ``.dockerconfigjson`` payload, None if absent."""

    async def read(self, namespace: str, name: str) -> bytes | None: ...


class KubernetesSecrets:
    """Reads ``kubernetes.io/dockerconfigjson`` (and legacy ``dockercfg``) pull secrets."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self._forbidden_logged: set[str] = set()

    async def read(self, namespace: str, name: str) -> bytes | None:
        return await asyncio.to_thread(self._read, namespace, name)

    def _read(self, namespace: str, name: str) -> bytes | None:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            secret = client.CoreV1Api(self._api_client).read_namespaced_secret(
                name, namespace, _request_timeout=10
            )
        except ApiException as err:
            if err.status == 404:
                return None
            if err.status == 403:
                # Reading pull secrets is an opt-in permission (deploy/'s pull-secrets
                # component). Without it, go on anonymously: public registries still work and a
                # private one answers with an auth error that names the registry.
                if namespace not in self._forbidden_logged:
                    self._forbidden_logged.add(namespace)
                    log.warning(
                        "may not read pull secrets in namespace %s (HTTP 403: enable the "
                        "pull-secrets component or grant get on secrets); loading specs "
                        "without them",
                        namespace,
                    )
                return None
            raise PullSecretError(
                f"cannot read pull secret {namespace}/{name}: HTTP {err.status}"
            ) from None
        data = secret.data or {}
        encoded = data.get(".dockerconfigjson") or data.get(".dockercfg")
        return base64.b64decode(encoded) if encoded else None
