"""Live features from a real kube-apiserver: NodeFeature and Node watches into the store."""

from __future__ import annotations

import asyncio
import json
import urllib.error
from collections.abc import AsyncIterator, Callable, Iterator
from http import HTTPStatus
from typing import Any

import pytest

from devcluster import nfd
from devcluster.controlplane import ControlPlane
from extender.kube.client import kubernetes_api_client
from extender.kube.nodefeatures import ALL_NAMESPACES
from extender.nodes.kubesource import KubernetesFeatureSource
from extender.nodes.store import FeatureStore
from tests._support.polling import eventually_async

pytestmark = pytest.mark.integration

NS = nfd.NFD_NAMESPACE
PATH = "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/{ns}/nodefeatures"


def nodefeature(
    name: str,
    node: str,
    *,
    ns: str = NS,
    attrs: dict[str, str] | None = None,
    flags: list[str] | None = None,
    instances: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    features: dict[str, Any] = {"attributes": {"test.attr": {"elements": attrs or {}}}}
    if flags is not None:
        features["flags"] = {"test.flag": {"elements": {f: {} for f in flags}}}
    if instances is not None:
        features["instances"] = {"test.inst": {"elements": [{"attributes": i} for i in instances]}}
    return {
        "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
        "kind": "NodeFeature",
        "metadata": {"name": name, "namespace": ns, "labels": {nfd.NODE_NAME_LABEL: node}},
        "spec": {"features": features},
    }


def put(cluster: ControlPlane, obj: dict[str, Any]) -> None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    nfd.ensure_namespace(cluster, ns)
    try:
        current = cluster.request("GET", f"{PATH.format(ns=ns)}/{name}")
    except Exception:  # absent: create it
        cluster.request("POST", PATH.format(ns=ns), obj)
        return
    body = json.loads(json.dumps(obj))
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    cluster.request("PUT", f"{PATH.format(ns=ns)}/{name}", body)


def node_with_kernel(cluster: ControlPlane, name: str, major: str) -> None:
    """A Node and its NodeFeature with only ``kernel.version`` ``major`` set."""
    cluster.create_node(name)
    obj = nodefeature(name, name)
    obj["spec"]["features"]["attributes"] = {"kernel.version": {"elements": {"major": major}}}
    put(cluster, obj)


def delete(cluster: ControlPlane, name: str, ns: str = NS) -> None:
    cluster.request("DELETE", f"{PATH.format(ns=ns)}/{name}")


@pytest.fixture(scope="module")
def nfd_cluster(devcluster: ControlPlane) -> ControlPlane:
    nfd.install_crds(devcluster)
    nfd.ensure_namespace(devcluster, NS)
    return devcluster


class Running:
    def __init__(
        self, store: FeatureStore, source: KubernetesFeatureSource, task: asyncio.Task[None]
    ) -> None:
        self.store, self.source, self.task = store, source, task

    def attr(self, node: str, key: str) -> str | None:
        record = self.store.snapshot().record(node)
        if record is None:
            return None
        values = record.features.attributes.get("test.attr") or {}
        return values.get(key)


def has_attr(run: Running, node: str, key: str, value: str) -> Callable[[], bool]:
    """A check that ``node``'s test attribute ``key`` has reached ``value`` in ``run``'s store."""
    return lambda: run.attr(node, key) == value


async def start_source(cluster: ControlPlane, **kwargs: Any) -> Running:
    store = FeatureStore()
    kwargs.setdefault("backoff_s", (0.1, 0.5))
    source = KubernetesFeatureSource(
        store, kubernetes_api_client(str(cluster.kubeconfig)), **kwargs
    )
    task = asyncio.create_task(source.run())
    return Running(store, source, task)


@pytest.fixture
async def running(nfd_cluster: ControlPlane) -> AsyncIterator[Running]:
    run = await start_source(nfd_cluster)
    try:
        await eventually_async(lambda: run.store.snapshot().synced, what="first sync")
        yield run
    finally:
        run.source.stop()
        await asyncio.wait_for(run.task, 10)


async def test_create_update_delete(nfd_cluster: ControlPlane, running: Running) -> None:
    put(nfd_cluster, nodefeature("cud-node", "cud-node", attrs={"v": "1"}))
    await eventually_async(lambda: running.attr("cud-node", "v") == "1", what="create")
    generation = running.store.snapshot().record("cud-node").generation  # type: ignore[union-attr]
    put(nfd_cluster, nodefeature("cud-node", "cud-node", attrs={"v": "2"}))
    await eventually_async(lambda: running.attr("cud-node", "v") == "2", what="update")
    assert running.store.snapshot().record("cud-node").generation > generation  # type: ignore[union-attr]
    delete(nfd_cluster, "cud-node")
    await eventually_async(
        lambda: running.store.snapshot().record("cud-node") is None, what="delete"
    )


async def test_two_objects_for_one_node_merge_in_nfd_order(
    nfd_cluster: ControlPlane, running: Running
) -> None:
    # The worker's object, then a third party's; names sort "merge-node" < "zzz-extra".
    put(
        nfd_cluster,
        nodefeature(
            "zzz-extra",
            "merge-node",
            attrs={"a": "extra", "c": "3"},
            flags=["f2"],
            instances=[{"i": "2"}],
        ),
    )
    put(
        nfd_cluster,
        nodefeature(
            "merge-node",
            "merge-node",
            attrs={"a": "worker", "b": "2"},
            flags=["f1"],
            instances=[{"i": "1"}],
        ),
    )
    await eventually_async(
        lambda: running.attr("merge-node", "b") == "2" and running.attr("merge-node", "c") == "3",
        what="both objects",
    )
    features = running.store.snapshot().record("merge-node").features  # type: ignore[union-attr]
    attributes = features.attributes["test.attr"]
    assert attributes is not None and attributes["a"] == "extra"  # later object wins
    assert features.flags["test.flag"] == frozenset({"f1", "f2"})  # flags are a union
    assert [dict(i) for i in features.instances["test.inst"]] == [
        {"i": "1"},
        {"i": "2"},
    ]  # appended
    delete(nfd_cluster, "zzz-extra")
    await eventually_async(
        lambda: running.attr("merge-node", "a") == "worker", what="third party removed"
    )
    delete(nfd_cluster, "merge-node")


async def test_other_namespaces_are_ignored_by_default(
    nfd_cluster: ControlPlane, running: Running
) -> None:
    put(nfd_cluster, nodefeature("intruder", "victim-node", ns="default", attrs={"evil": "1"}))
    put(nfd_cluster, nodefeature("marker", "marker-node", attrs={"ok": "1"}))
    await eventually_async(lambda: running.attr("marker-node", "ok") == "1", what="marker")
    assert running.store.snapshot().record("victim-node") is None
    everywhere = await start_source(nfd_cluster, namespaces=(ALL_NAMESPACES,), name="everywhere")
    listed = await start_source(nfd_cluster, namespaces=(NS, "default"), name="listed")
    try:
        for run in (everywhere, listed):
            await eventually_async(has_attr(run, "victim-node", "evil", "1"), run.source.name)
            await eventually_async(has_attr(run, "marker-node", "ok", "1"), run.source.name)
        # Each listed namespace is its own stream: an update in either arrives promptly.
        put(nfd_cluster, nodefeature("intruder", "victim-node", ns="default", attrs={"evil": "2"}))
        await eventually_async(lambda: listed.attr("victim-node", "evil") == "2", what="second ns")
    finally:
        for run in (everywhere, listed):
            run.source.stop()
            await asyncio.wait_for(run.task, 10)
        delete(nfd_cluster, "intruder", ns="default")
        delete(nfd_cluster, "marker")


async def test_node_platforms_from_node_metadata(
    nfd_cluster: ControlPlane, running: Running
) -> None:
    nfd_cluster.create_node("arm-node", arch="arm64")
    await eventually_async(
        lambda: running.store.snapshot().platform("arm-node") == "linux/arm64", what="node"
    )
    nfd_cluster.delete_node("arm-node")
    await eventually_async(
        lambda: running.store.snapshot().platform("arm-node") == "", what="node gone"
    )


# -- disruptive tests on a dedicated control plane -----------------------------------------


PRIVATE_APISERVER_ARGS = [
    "--etcd-compaction-interval=1s",
    "--watch-cache-sizes=nodefeatures.nfd.k8s-sigs.io#0",
]


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[ControlPlane]:
    """Its own etcd + apiserver, compacting every second and with no watch cache for
    NodeFeatures, so a stale resourceVersion really gets 410 Gone; no NFD CRDs at first."""
    cluster = ControlPlane()
    try:
        cluster.start_etcd()
        cluster.start_apiserver(PRIVATE_APISERVER_ARGS)
        yield cluster
    finally:
        cluster.stop()


async def test_missing_crd_then_installed(
    private_cluster: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    run = await start_source(private_cluster, backoff_s=(0.2, 0.5))
    try:
        await asyncio.sleep(1.5)
        assert not run.store.snapshot().synced
        assert "is NFD installed?" in caplog.text
        assert caplog.text.count("is NFD installed?") == 1  # said once, not every retry
        nfd.install_crds(private_cluster)
        nfd.ensure_namespace(private_cluster, NS)
        await eventually_async(
            lambda: run.store.snapshot().synced, what="recovery after CRD install"
        )
        put(private_cluster, nodefeature("late", "late-node", attrs={"v": "1"}))
        await eventually_async(
            lambda: run.attr("late-node", "v") == "1", what="watch after CRD install"
        )
    finally:
        run.source.stop()
        await asyncio.wait_for(run.task, 10)


async def test_apiserver_restart_mid_watch(private_cluster: ControlPlane) -> None:
    nfd.install_crds(private_cluster)
    nfd.ensure_namespace(private_cluster, NS)
    run = await start_source(private_cluster, backoff_s=(0.2, 0.5))
    try:
        await eventually_async(lambda: run.store.snapshot().synced, what="first sync")
        await asyncio.to_thread(private_cluster.stop_apiserver, True)
        await eventually_async(lambda: not run.store.snapshot().synced, what="readiness dip")
        # Started from this thread, not a worker: the child dies with the thread that started
        # it (PR_SET_PDEATHSIG), and executor threads end with the test's event loop.
        private_cluster.start_apiserver(PRIVATE_APISERVER_ARGS)
        await eventually_async(
            lambda: run.store.snapshot().synced, within=30, what="readiness back"
        )
        put(private_cluster, nodefeature("after-restart", "restart-node", attrs={"v": "1"}))
        await eventually_async(
            lambda: run.attr("restart-node", "v") == "1", what="events after restart"
        )
    finally:
        run.source.stop()
        await asyncio.wait_for(run.task, 10)


class _StaleFirstList(KubernetesFeatureSource):
    """Its first NodeFeature list reports a resourceVersion that compaction has removed."""

    stale = ""

    def _list(self, stream: str) -> str:
        version = super()._list(stream)
        if stream != "nodes" and self.stale:
            version, self.stale = self.stale, ""
        return version


def compacted(cluster: ControlPlane, revision: str) -> bool:
    """True once etcd compaction has removed ``revision``: a list at exactly it is Gone."""
    query = f"?resourceVersion={revision}&resourceVersionMatch=Exact"
    try:
        cluster.request("GET", PATH.format(ns=NS) + query)
    except urllib.error.HTTPError as err:
        if err.code == HTTPStatus.GONE:
            return True
        raise
    return False


async def test_gone_watch_triggers_a_relist(private_cluster: ControlPlane) -> None:
    nfd.install_crds(private_cluster)
    nfd.ensure_namespace(private_cluster, NS)
    stale = private_cluster.request("GET", PATH.format(ns=NS))["metadata"]["resourceVersion"]
    for i in range(5):
        put(private_cluster, nodefeature("churn", "churn-node", attrs={"v": str(i)}))
    # The watch that starts at ``stale`` begins with the next revision: once compaction has
    # removed that one too, the watch is Gone (410) and the source must relist.
    after_stale = str(int(stale) + 1)
    await eventually_async(
        lambda: compacted(private_cluster, after_stale), f"compaction past revision {after_stale}"
    )
    store = FeatureStore()
    source = _StaleFirstList(
        store, kubernetes_api_client(str(private_cluster.kubeconfig)), backoff_s=(0.1, 0.2)
    )
    source.stale = stale
    task = asyncio.create_task(source.run())
    try:
        await eventually_async(
            lambda: source.relists_by_kind["nodefeatures"] >= 2, what="relist after 410"
        )
        await eventually_async(
            lambda: store.snapshot().record("churn-node") is not None, what="state after relist"
        )
    finally:
        source.stop()
        await asyncio.wait_for(task, 10)


class _StopDuringWatchRequest(KubernetesFeatureSource):
    """Is stopped while its first watch request is in flight, before the response is known."""

    def call(self, stream: str, **kwargs: Any) -> Any:
        response = super().call(stream, **kwargs)
        if kwargs.get("watch"):
            self.stop()
        return response


async def test_stop_while_a_watch_request_is_in_flight_ends_promptly(
    nfd_cluster: ControlPlane,
) -> None:
    # The window CI once hit: stop() found nothing open to interrupt, and the watch that came
    # back afterwards would have been read until its server-side timeout.
    source = _StopDuringWatchRequest(
        FeatureStore(), kubernetes_api_client(str(nfd_cluster.kubeconfig)), watch_timeout_s=240
    )
    await asyncio.wait_for(source.run(), 10)


async def test_stop_before_the_run_starts_is_honoured(nfd_cluster: ControlPlane) -> None:
    # What a server shut down right after startup does: stop() before its task first ran.
    source = KubernetesFeatureSource(
        FeatureStore(), kubernetes_api_client(str(nfd_cluster.kubeconfig))
    )
    source.stop()
    await asyncio.wait_for(source.run(), 10)
    assert source.relists_by_kind == {"nodefeatures": 0, "nodes": 0}


async def test_bounded_iterations_hook(private_cluster: ControlPlane) -> None:
    private_cluster.stop_apiserver()  # unreachable: each outer turn fails fast
    try:
        store = FeatureStore()
        source = KubernetesFeatureSource(
            store, kubernetes_api_client(str(private_cluster.kubeconfig)), backoff_s=(0.01, 0.02)
        )
        await asyncio.wait_for(source.run(iterations=3), 30)
        assert not store.snapshot().synced
    finally:
        private_cluster.start_apiserver(PRIVATE_APISERVER_ARGS)
