"""Kubernetes Events about pods: what the extender has to tell a pod's owner."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import socket
from typing import Any

from extender.kube.watch import failure_reason

__all__ = [
    "COMPONENT",
    "KubernetesEvents",
    "PodRef",
]

log = logging.getLogger(__name__)

COMPONENT = "image-compat-extender"
MAX_MESSAGE = 1024  # events.k8s.io's limit on a note; core/v1 events are kept to it too


class PodRef:
    """The pod an event is about: namespace, name and uid."""

    __slots__ = ("name", "namespace", "uid")

    def __init__(self, namespace: str, name: str, uid: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid


class KubernetesEvents:
    """Creates core/v1 Events on pods (``kubectl describe pod`` and ``kubectl get events``
    show them). A failure is logged, never raised: an event is a notice, not a duty.

    With a ``key``, the event's name is derived from it, so replicas that see the same thing
    and emit it with the same key create one event between them (the others get 409).
    """

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self._instance = socket.gethostname()
        self.created = 0  # events the API server accepted (tests read it)

    async def emit(self, pod: PodRef, type_: str, reason: str, message: str, key: str = "") -> bool:
        return await asyncio.to_thread(self._emit, pod, type_, reason, message, key)

    def _emit(self, pod: PodRef, type_: str, reason: str, message: str, key: str) -> bool:
        from kubernetes import client  # noqa: PLC0415 - only when serving with a cluster

        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": _name(pod, key),
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": pod.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            client.CoreV1Api(self._api_client).create_namespaced_event(
                pod.namespace, body, _preload_content=False, _request_timeout=10
            )
        except Exception as err:
            if key and getattr(err, "status", None) == 409:
                return True  # another replica told it already
            log.warning(
                "cannot create a %s event on pod %s/%s (%s)",
                reason,
                pod.namespace,
                pod.name,
                failure_reason(err),
            )
            return False
        self.created += 1
        return True


def _name(pod: PodRef, key: str) -> dict[str, str]:
    if not key:
        return {"generateName": f"{pod.name}.", "namespace": pod.namespace}
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    # A name is at most 253 characters; a pod name may already be that long.
    return {"name": f"{pod.name[:236]}.{digest}", "namespace": pod.namespace}
