"""Drift: a bound pod whose node loses what its image needs gets one Warning event and is
counted; when the node suits it again the count drops and a Normal event says so."""

from __future__ import annotations

from typing import Any

from extender.kube.events import PodRef
from extender.kube.pods import DRIFT_LABEL
from extender.nodes.store import FeatureStore
from extender.policy.decide import Policy
from extender.server.drift import DRIFT_REASON, RESTORED_REASON, DriftMonitor
from tests.policy.helpers import (
    AVX512,
    FakeSource,
    features,
    pod,
    policy_config,
    store_with,
)

APP = "registry.example/avx:1"
STREAM = "image-compat-scheduler"


def avx(node: str) -> Any:
    return features(node, flags={"cpu.cpuid": ["AVX512F"]})


def plain(node: str) -> Any:
    return features(node, flags={"cpu.cpuid": ["SSE4"]})


class RecordedEvents:
    """The events the monitor would create, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []

    async def emit(self, pod: PodRef, type_: str, reason: str, message: str, key: str = "") -> bool:
        assert key.startswith(pod.uid + "/")
        self.sent.append((pod.name, type_, reason, message))
        return True


class RecordedLabels:
    """The label patches the monitor would make: (pod, node or None to clear)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, str | None]] = []

    async def mark(self, pod: PodRef, node: str | None, since: str = "") -> bool:
        assert bool(since) == bool(node)
        self.marks.append((pod.name, node))
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bound(
    name: str,
    node: str,
    *,
    scheduler: str | None = STREAM,
    labels: dict[str, str] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    obj = pod(APP, name=name, scheduler=scheduler, **kw)
    return {
        "metadata": {
            "name": name,
            "namespace": obj.meta.namespace,
            "uid": f"uid-{name}",
            "annotations": obj.meta.annotations,
            "labels": labels,
        },
        "spec": {
            "schedulerName": scheduler,
            "nodeName": node,
            "containers": [{"name": "c0", "image": APP}],
        },
    }


def setup(
    *, any_scheduler: bool = False, labels: RecordedLabels | None = None
) -> tuple[FeatureStore, RecordedEvents, Clock, DriftMonitor]:
    store = store_with({"n1": avx("n1"), "n2": avx("n2")})
    policy = Policy(policy_config(), store, FakeSource({APP: AVX512}))
    events, clock = RecordedEvents(), Clock()
    monitor = DriftMonitor(
        policy, events, any_scheduler=any_scheduler, labeller=labels, clock=clock
    )
    return store, events, clock, monitor


async def test_drift_is_reported_once_and_clears_when_the_feature_returns() -> None:
    store, events, _, monitor = setup()
    monitor.pod_changed("uid-a", bound("a", "n1"), STREAM)
    monitor.pod_changed("uid-b", bound("b", "n2"), STREAM)
    await monitor.check_once()
    assert events.sent == []
    assert monitor.drifted_by_namespace() == {}

    store.update("test", "n1", plain("n1"))
    await monitor.check_once()
    await monitor.check_once()  # nothing changed: no second event
    assert monitor.drifted_by_namespace() == {"default": 1}
    ((name, type_, reason, message),) = events.sent
    assert (name, type_, reason) == ("a", "Warning", DRIFT_REASON)
    assert message == (
        f"node n1 no longer satisfies the pod's images: {APP}: rule 'avx512': "
        "cpu.cpuid: AVX512F Exists"
    )

    store.update("test", "n1", avx("n1"))
    await monitor.check_once()
    assert monitor.drifted_by_namespace() == {}
    assert events.sent[-1][:3] == ("a", "Normal", RESTORED_REASON)
    assert len(events.sent) == 2


async def test_the_same_drift_on_the_same_pod_is_told_at_most_once_per_interval() -> None:
    store, events, clock, monitor = setup()
    monitor.pod_changed("uid-a", bound("a", "n1"), STREAM)
    for _ in range(3):  # a flapping node
        store.update("test", "n1", plain("n1"))
        await monitor.check_once()
        store.update("test", "n1", avx("n1"))
        await monitor.check_once()
        clock.now += 60
    assert [e[2] for e in events.sent] == [DRIFT_REASON, RESTORED_REASON]
    clock.now += 600
    store.update("test", "n1", plain("n1"))
    await monitor.check_once()
    assert [e[2] for e in events.sent] == [DRIFT_REASON, RESTORED_REASON, DRIFT_REASON]


async def test_deleted_and_unlisted_pods_are_no_longer_counted() -> None:
    store, _, _, monitor = setup()
    monitor.pod_changed("uid-a", bound("a", "n1", namespace="x"), STREAM)
    monitor.pod_changed("uid-b", bound("b", "n1", namespace="y"), STREAM)
    store.update("test", "n1", plain("n1"))
    await monitor.check_once()
    assert monitor.drifted_by_namespace() == {"x": 1, "y": 1}
    monitor.pod_changed("uid-a", None, STREAM)
    assert monitor.drifted_by_namespace() == {"y": 1}
    monitor.pods_listed(STREAM, frozenset())  # a relist that no longer holds b
    assert monitor.drifted_by_namespace() == {}


async def test_only_enforce_pods_of_our_schedulers_drift_unless_all_pods() -> None:
    store, events, _, monitor = setup()
    prefer = {"image-compat.io/mode": "prefer"}
    monitor.pod_changed("uid-p", bound("p", "n1", annotations=prefer), STREAM)
    monitor.pod_changed("uid-o", bound("o", "n1", scheduler="default-scheduler"), "")
    store.update("test", "n1", plain("n1"))
    await monitor.check_once()
    assert events.sent == []

    store, events, _, monitor = setup(any_scheduler=True)
    monitor.pod_changed("uid-o", bound("o", "n1", scheduler="default-scheduler"), "")
    store.update("test", "n1", plain("n1"))
    await monitor.check_once()
    assert [(e[0], e[2]) for e in events.sent] == [("o", DRIFT_REASON)]


async def test_while_features_are_not_synced_nothing_changes() -> None:
    store, events, _, monitor = setup()
    monitor.pod_changed("uid-a", bound("a", "n1"), STREAM)
    store.update("test", "n1", plain("n1"))
    await monitor.check_once()
    store.set_synced("test", False)
    store.update("test", "n1", avx("n1"))
    await monitor.check_once()
    assert monitor.drifted_by_namespace() == {"default": 1}  # not cleared on a guess
    store.set_synced("test", True)
    await monitor.check_once()
    assert monitor.drifted_by_namespace() == {}
    assert [e[2] for e in events.sent] == [DRIFT_REASON, RESTORED_REASON]


async def test_labels_follow_the_drift_and_a_stale_label_is_removed() -> None:
    labels = RecordedLabels()
    store, _, _, monitor = setup(labels=labels)
    monitor.pod_changed("uid-a", bound("a", "n1"), STREAM)
    # Labelled before a restart, and its node fixed meanwhile: the label goes.
    monitor.pod_changed("uid-b", bound("b", "n2", labels={DRIFT_LABEL: "true"}), STREAM)
    await monitor.check_once()
    assert labels.marks == [("b", None)]

    store.update("test", "n1", plain("n1"))
    await monitor.check_once()
    assert labels.marks[1:] == [("a", "n1")]
    # The watch reports the labelled pod: nothing more to do while it stays drifted.
    monitor.pod_changed("uid-a", bound("a", "n1", labels={DRIFT_LABEL: "true"}), STREAM)
    await monitor.check_once()
    assert labels.marks[1:] == [("a", "n1")]

    store.update("test", "n1", avx("n1"))
    await monitor.check_once()
    assert labels.marks[1:] == [("a", "n1"), ("a", None)]
