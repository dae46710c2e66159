"""The ``bind`` verb: set each container's chosen variant, then bind the pod to its node.

Owns the order of bind's steps, what each failure answers, and the per-pod lock. The steps:
read the pod (one GET); if it is already bound to that node, succeed (a retried call); ask
the policy which variant each container with variants runs on that node; set those images
(at most one PATCH, skipped when they are already set); create the Binding (one POST); then
record an Event naming each chosen variant, in the background (a notice, not part of the
answer).

It never fails open. When the patch fails, the pod is not bound and the scheduler gets the
error (it retries). When the binding fails after the patch, the error says so: the pod stays
unbound with the variant's image, and the next attempt chooses again for its new node.
Calls for one pod run one at a time, so two concurrent attempts cannot interleave a patch
and a binding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from extender.kube.binding import PodBinder, describe, image_patch
from extender.kube.events import KubernetesEvents, PodRef
from extender.kube.pods import PodNotFoundError
from extender.policy.decide import Policy
from extender.server import protocol

__all__ = ["VARIANT_REASON", "Binder"]

log = logging.getLogger(__name__)

VARIANT_REASON = "VariantChosen"


class Binder:
    """Binds pods for the scheduler; :meth:`bind` answers the error text ("" when bound)."""

    def __init__(self, policy: Policy, pods: PodBinder) -> None:
        self.policy = policy
        self.pods = pods
        self.bound = 0
        self.patched = 0
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._notices: set[asyncio.Task[bool]] = set()

    @asynccontextmanager
    async def _one_at_a_time(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def bind(self, args: protocol.ExtenderBindingArgs) -> str:
        namespace, name, node = args.PodNamespace or "", args.PodName or "", args.Node or ""
        if not namespace or not name or not node:
            return "bind needs PodNamespace, PodName and Node"
        if not self.pods.available:
            return "this server has no Kubernetes API access, so it cannot bind pods"
        async with self._one_at_a_time(f"{namespace}/{name}"):
            return await self._bind(namespace, name, args.PodUID or "", node)

    async def _bind(self, namespace: str, name: str, uid: str, node: str) -> str:
        key = f"{namespace}/{name}"
        try:
            obj = await self.pods.read(namespace, name)
        except PodNotFoundError as err:
            return str(err)
        except Exception as err:
            return f"cannot read pod {key}: {describe(err)}"
        meta = obj.get("metadata") or {}
        if uid and meta.get("uid") != uid:
            return f"pod {key} was replaced (uid {meta.get('uid')}, not {uid})"
        uid = uid or meta.get("uid") or ""
        bound_to = (obj.get("spec") or {}).get("nodeName")
        if bound_to == node:
            return ""  # a retry of a bind that succeeded
        if bound_to:
            return f"pod {key} is already bound to {bound_to}"
        pod = protocol.pod_from_object(obj)
        try:
            images = await self.policy.choose_variants(pod, node)
        except ValueError as err:
            return f"pod {key}: {err}"
        patch = image_patch(obj, images)
        if patch:
            try:
                await self.pods.patch(namespace, name, patch)
            except Exception as err:
                return f"pod {key} not bound: cannot set its variant images: {describe(err)}"
            self.patched += 1
        try:
            await self.pods.bind(namespace, name, uid, node)
        except Exception as err:
            if patch:
                chosen = ", ".join(f"{c}={i}" for c, i in images.items())
                return (
                    f"pod {key} not bound to {node}: {describe(err)}; its images were set "
                    f"({chosen}) and stay until the next attempt chooses again"
                )
            return f"pod {key} not bound to {node}: {describe(err)}"
        self.bound += 1
        if images:
            log.info("bound %s to %s with %s", key, node, images)
            self._notify(PodRef(namespace, name, uid), node, images)
        return ""

    def _notify(self, pod: PodRef, node: str, images: dict[str, str]) -> None:
        chosen = "; ".join(f"container {c}: {i}" for c, i in images.items())
        events = KubernetesEvents(self.pods.api_client)
        task = asyncio.get_running_loop().create_task(
            events.emit(
                pod,
                "Normal",
                VARIANT_REASON,
                f"variant chosen for node {node}: {chosen}",
                key=f"variant/{pod.uid}/{node}",
            )
        )
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def aclose(self) -> None:
        """Let events still being created finish (at shutdown)."""
        if self._notices:
            await asyncio.gather(*self._notices, return_exceptions=True)
