"""Binding a pod to a node, after setting the images of containers that have variants.

Owns the API calls of the ``bind`` verb: one GET of the pod, at most one PATCH of its
container images (a JSON patch whose first operation tests the pod's uid, so a new pod of the
same name is never changed), and one POST of its ``binding`` subresource. What to choose is
the policy's; when to answer what is the server's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from extender.kube.pods import PodReader

__all__ = ["PodBinder", "describe", "image_patch"]

TIMEOUT_S = 10


def image_patch(obj: Mapping[str, Any], images: Mapping[str, str]) -> list[dict[str, Any]]:
    """The JSON patch that sets ``images`` (container name → image) on the pod ``obj``; empty
    when every image is already set (a retried bind patches nothing)."""
    spec = obj.get("spec") or {}
    ops: list[dict[str, Any]] = []
    for field, path in (("initContainers", "initContainers"), ("containers", "containers")):
        for position, container in enumerate(spec.get(field) or ()):
            name = container.get("name")
            if name in images and container.get("image") != images[name]:
                ops.append(
                    {
                        "op": "replace",
                        "path": f"/spec/{path}/{position}/image",
                        "value": images[name],
                    }
                )
    if not ops:
        return []
    uid = (obj.get("metadata") or {}).get("uid")
    return [{"op": "test", "path": "/metadata/uid", "value": uid}, *ops]


class PodBinder(PodReader):
    """The three calls bind makes, each blocking in a worker thread, through the server's API
    client: :meth:`read` (a :class:`~extender.kube.pods.PodReader`'s), :meth:`patch` and
    :meth:`bind`."""

    async def patch(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self._patch, namespace, name, patch)

    async def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        await asyncio.to_thread(self._bind, namespace, name, uid, node)

    def _patch(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> None:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster

        client.CoreV1Api(self.api_client).patch_namespaced_pod(
            name,
            namespace,
            patch,
            _content_type="application/json-patch+json",
            _preload_content=False,
            _request_timeout=TIMEOUT_S,
        )

    def _bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster

        body: Any = {
            "apiVersion": "v1",
            "kind": "Binding",
            # The uid precondition: a pod recreated under the same name is not bound.
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        client.CoreV1Api(self.api_client).create_namespaced_pod_binding(
            name, namespace, body, _preload_content=False, _request_timeout=TIMEOUT_S
        )


def describe(err: BaseException) -> str:
    """A short reason from a client error: the API server's message when it sent one."""
    status = getattr(err, "status", None)
    body = getattr(err, "body", None)
    if status is not None and body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = ""
        return f"{status}: {message}" if message else f"HTTP {status}"
    return f"{type(err).__name__}: {err}"
