"""Drift: running pods whose node no longer satisfies their images' specs.

Owns :class:`DriftMonitor`: the bound pods a :class:`~extender.kube.pods.BoundPodWatch` reports,
judged again through :meth:`extender.policy.decide.Policy.drift_on` whenever the feature store
changes and whenever a pod changes; the drifted pods by namespace (the
``image_compat_drifted_pods`` gauge) and the Events that tell a pod's owner.

The extender never evicts: whether a drifted pod should go, and when, is the operator's
policy (docs/drift.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from extender.kube.events import PodRef
from extender.kube.pods import DRIFT_LABEL
from extender.policy.decide import Policy, PolicyUnavailableError
from extender.policy.pods import Pod
from extender.server.protocol import ProtocolError, pod_from_object

__all__ = [
    "DRIFT_REASON",
    "EVENT_INTERVAL_S",
    "RESTORED_REASON",
    "DriftMonitor",
    "EventSink",
    "Labeller",
    "running",
]

log = logging.getLogger(__name__)

DRIFT_REASON = "NodeCompatibilityDrift"
RESTORED_REASON = "NodeCompatibilityRestored"
# The same event on the same pod at most this often: a node whose features flap (a module
# loaded and unloaded by a health check) must not flood the pod's events.
EVENT_INTERVAL_S = 600.0


class EventSink(Protocol):
    """Where events go (:class:`extender.kube.events.KubernetesEvents` is one)."""

    async def emit(
        self, pod: PodRef, type_: str, reason: str, message: str, key: str = ""
    ) -> bool: ...


class Labeller(Protocol):
    """Puts drift labels on pods and takes them off (:class:`extender.kube.pods.DriftLabels`)."""

    async def mark(self, pod: PodRef, node: str | None, since: str = "") -> bool: ...


@dataclass(slots=True)
class _Tracked:
    ref: PodRef
    node: str
    pod: Pod
    stream: str
    reason: str | None = None  # why it drifted; None while its node suits it
    labelled: bool = False  # carries the drift label (as last seen or set)


class DriftMonitor:
    """Bound pods and their drift, kept current from pod events and feature store changes.

    Pod events arrive on the event loop (:meth:`pod_changed`, :meth:`pods_listed`) and only
    mark pods for a new look; :meth:`run` looks every ``interval`` seconds at the marked pods,
    or at all of them when the feature store's snapshot version has moved.
    """

    def __init__(
        self,
        policy: Policy,
        events: EventSink,
        *,
        any_scheduler: bool = False,
        labeller: Labeller | None = None,
        interval: float = 5.0,
        event_interval: float = EVENT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._events = events
        self._any_scheduler = any_scheduler
        self._labeller = labeller
        self._interval = interval
        self._event_interval = event_interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._pods: dict[str, _Tracked] = {}
        self._dirty: set[str] = set()
        self._seen_version: int | None = None
        self._last_event: dict[tuple[str, str], float] = {}  # (uid, reason or restored) → when
        self.checks = 0  # pod evaluations done (tests read it)

    # -- what the watch reports ------------------------------------------------------------

    def pod_changed(self, uid: str, obj: Mapping[str, Any] | None, stream: str) -> None:
        if obj is None:
            self._forget(uid)
            return
        try:
            pod = pod_from_object(obj)
        except ProtocolError as err:
            log.warning("drift: skipping an unreadable pod (%s)", err)
            return
        meta = pod.meta
        node = pod.pod_spec.node_name or ""
        if not node:
            return
        tracked = self._pods.get(uid)
        if tracked is not None and tracked.node == node and tracked.pod == pod:
            return
        ref = PodRef(meta.namespace or "", meta.name or "", uid)
        reason = tracked.reason if tracked is not None and tracked.node == node else None
        if tracked is not None and tracked.node != node:
            self._forget(uid)
        labelled = (meta.labels or {}).get(DRIFT_LABEL) == "true"
        self._pods[uid] = _Tracked(ref, node, pod, stream, reason, labelled)
        self._dirty.add(uid)

    def pods_listed(self, stream: str, uids: frozenset[str]) -> None:
        """A complete list of ``stream``: forget its pods the list no longer holds."""
        for uid in [u for u, t in self._pods.items() if t.stream == stream and u not in uids]:
            self._forget(uid)

    def _forget(self, uid: str) -> None:
        self._pods.pop(uid, None)
        self._dirty.discard(uid)
        for key in [k for k in self._last_event if k[0] == uid]:
            del self._last_event[key]

    # -- what the metrics read -------------------------------------------------------------

    def drifted_by_namespace(self) -> dict[str, int]:
        return dict(Counter(t.ref.namespace for t in self._pods.values() if t.reason))

    @property
    def tracked(self) -> int:
        return len(self._pods)

    # -- judging ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Look again every ``interval`` until cancelled."""
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("drift check failed")
            await asyncio.sleep(self._interval)

    async def check_once(self) -> None:
        version = self._policy.store.snapshot().version
        # A change of features can make any pod drift; otherwise only changed pods need a look.
        todo = set(self._pods) if version != self._seen_version else set(self._dirty)
        self._dirty.clear()
        unavailable = False
        for uid in todo:
            tracked = self._pods.get(uid)
            if tracked is None:
                continue
            try:
                reason = await self._policy.drift_on(
                    tracked.pod, tracked.node, any_scheduler=self._any_scheduler
                )
            except PolicyUnavailableError as err:
                # Cannot decide now (a registry down, features not synced): keep what was
                # known and look again next time.
                log.debug("drift: pod %s: %s", tracked.ref.name, err)
                self._dirty.add(uid)
                unavailable = True
                continue
            self.checks += 1
            if self._pods.get(uid) is not tracked:  # changed while the spec loaded
                continue
            await self._settle(tracked, reason)
        if not unavailable:
            self._seen_version = version

    async def _settle(self, tracked: _Tracked, reason: str | None) -> None:
        before, tracked.reason = tracked.reason, reason
        await self._label(tracked)
        if reason == before:
            return
        ref = tracked.ref
        if reason is not None:
            log.warning(
                "drift: pod %s/%s on node %s: %s", ref.namespace, ref.name, tracked.node, reason
            )
            message = f"node {tracked.node} no longer satisfies the pod's images: {reason}"
            await self._event(ref, "Warning", DRIFT_REASON, reason, message)
        else:
            log.info("drift cleared: pod %s/%s on node %s", ref.namespace, ref.name, tracked.node)
            message = f"node {tracked.node} satisfies the pod's images again"
            await self._event(ref, "Normal", RESTORED_REASON, RESTORED_REASON, message)

    async def _label(self, tracked: _Tracked) -> None:
        """Make the pod's label say what is known, whatever the label said before (a pod
        labelled before a restart, and fixed meanwhile, loses its label)."""
        if self._labeller is None:
            return
        if tracked.reason is not None and not tracked.labelled:
            since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if await self._labeller.mark(tracked.ref, tracked.node, since):
                tracked.labelled = True
        elif (
            tracked.reason is None
            and tracked.labelled
            and await self._labeller.mark(tracked.ref, None)
        ):
            tracked.labelled = False

    async def _event(self, ref: PodRef, type_: str, reason: str, key: str, message: str) -> None:
        now = self._clock()
        last = self._last_event.get((ref.uid, key))
        if last is not None and now - last < self._event_interval:
            return
        self._last_event[ref.uid, key] = now
        # Every replica watches the same pods and sees the same change: the same key (the
        # same pod, state and reason, within one interval of the wall clock) makes one event.
        window = int(self._wall_clock() // self._event_interval)
        await self._events.emit(ref, type_, reason, message, f"{ref.uid}/{key}/{window}")


@contextlib.asynccontextmanager
async def running(monitor: DriftMonitor) -> AsyncIterator[None]:
    """Run ``monitor`` in a task while the body runs."""
    task = asyncio.create_task(monitor.run(), name="drift")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
