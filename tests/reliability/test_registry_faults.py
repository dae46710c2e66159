"""A registry that is down, hangs, is slow, answers 5xx, resets mid-body or loops on redirects,
behind a real ``serve`` process, under both ``--on-registry-error`` policies.

The registry is a real one (go-containerregistry) behind ``devcluster.faultproxy``; the
extender is ``python -m extender serve`` with node features from a file, so nothing but the
registry can fail. Every scenario makes 50 filter calls for one pod, as a scheduler retrying
it would, and asserts through public surfaces only:

- every answer arrives within the scheduler's httpTimeout (2s as shipped);
- ``fail``: every answer is an ``Error`` (fail closed, no node offered); ``ignore``: once the
  load has failed, every node passes (before that, the documented "not loaded yet" Error);
- the serve log names the failure, and ``/metrics`` counts it;
- the registry is not hammered: the requests that reach it (counted by the proxy, and by the
  extender's own ``image_compat_registry_requests_total``) stay within what the error cache
  (``--error-ttl``) allows, whatever the number of filter calls.

``--registry-timeout=1s`` keeps the hang and slow scenarios short; the shapes are the same
with the 10s default, only longer.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from devcluster import oci
from devcluster.faultproxy import Fault, FaultProxyProcess, start_fault_proxy_process
from devcluster.registries import Registry
from tests.reliability.helpers import (
    HTTP_TIMEOUT_S,
    NEW_KERNEL,
    OLD_KERNEL,
    SPEC_NEW,
    Serve,
    delta,
    features_file,
    filter_body,
    registry_config,
    sample,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CALLS = 50
ERROR_TTL_S = 5.0  # the --error-ttl default, given explicitly so the bound below holds
REGISTRY_TIMEOUT_S = 1.0
REDIRECT_HOPS = 3  # RegistryLimits.redirects: a load's one request plus at most 3 hops
NODES = {"new": NEW_KERNEL, "old": OLD_KERNEL}
SCHEDULER = "image-compat-scheduler"


@dataclass(frozen=True)
class Scenario:
    fault: Fault
    reason: str  # what the log and the Error say about it
    kind: str = "unavailable"  # the reason label of image_compat_artifact_load_failures_total


SCENARIOS = {
    "down": Scenario(Fault("refuse"), "registry unreachable"),
    "hang": Scenario(Fault("hang"), "registry timed out"),
    "slow": Scenario(Fault("delay", delay_ms=3000), "registry timed out"),
    "5xx": Scenario(Fault("error", status=503), "HTTP 503"),
    "reset": Scenario(Fault("reset"), "registry closed the connection"),
    "redirect-loop": Scenario(
        Fault("redirect"), f"more than {REDIRECT_HOPS} redirects", kind="protocol"
    ),
}


@pytest.fixture(scope="module")
def proxy(
    oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultProxyProcess]:
    with start_fault_proxy_process(
        oci_registry.endpoint, tmp_path_factory.mktemp("faults-proxy"), max_hang_s=30.0
    ) as running:
        yield running


@pytest.fixture(scope="module")
def servers(
    proxy: FaultProxyProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Serve]]:
    work = tmp_path_factory.mktemp("faults-serve")
    common = [
        f"--features-file={features_file(work / 'nodes.yaml', NODES)}",
        f"--registry-config={registry_config(work / 'registries.yaml', proxy.host)}",
        "--registry-allow-loopback",
        f"--registry-timeout={REGISTRY_TIMEOUT_S:g}s",
        f"--error-ttl={ERROR_TTL_S:g}s",
        "--log-level=info",
    ]
    started: dict[str, Serve] = {}
    try:
        for policy in ("fail", "ignore"):
            args = [*common, f"--on-registry-error={policy}"]
            started[policy] = Serve(f"serve-{policy}", args, work).start()
        yield started
    finally:
        for serve in started.values():
            serve.stop()


def push(registry: Registry, name: str) -> str:
    """A fresh image (nothing about it cached anywhere) with SPEC_NEW attached by oras."""
    repo = f"faults/{name}-{uuid.uuid4().hex[:8]}"
    image = oci.push_image(registry.endpoint, repo, "v1", label=repo)
    oci.attach_spec(registry.endpoint, repo, image.digest, SPEC_NEW, created=datetime.now(UTC))
    return repo


@dataclass
class Run:
    answers: list[dict[str, Any]]
    elapsed: float
    slowest: float  # the longest single answer, for the figures (bounded by the client timeout)
    before: dict[str, float]
    after: dict[str, float]
    proxy_requests: int

    def metric(self, key: str) -> float:
        return delta(self.after, self.before, key)


async def filter_calls(  # noqa: PLR0917 - the scenario's parts
    serve: Serve,
    proxy: FaultProxyProcess,
    image: str,
    repo: str,
    calls: int = CALLS,
    pause: float = 0.0,
) -> Run:
    """``calls`` filter calls for one pod, one after the other as the scheduling thread makes
    them (``pause`` apart); each must be answered within the scheduler's httpTimeout or the
    call raises."""
    body = filter_body(image, list(NODES), SCHEDULER)
    before = serve.metrics()
    answers = []
    slowest = 0.0
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    start = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(calls):
            sent = time.monotonic()
            async with session.post(serve.url + "filter", json=body) as response:
                assert response.status == 200
                answers.append(await response.json())
            slowest = max(slowest, time.monotonic() - sent)
            await asyncio.sleep(pause)
    elapsed = time.monotonic() - start
    counted = proxy.count(rf"^/v2/{repo}/")
    return Run(answers, elapsed, slowest, before, serve.metrics(), counted)


def load_bound(run: Run) -> int:
    """Loads the error cache allows over the run: the first one, one more per --error-ttl
    (an expired failure is refreshed behind the cached answer), and one in flight."""
    return 2 + math.ceil(run.elapsed / ERROR_TTL_S)


def assert_not_hammered(run: Run, what: str) -> None:
    loads = run.metric("image_compat_artifact_loads_total")
    sent = run.metric("image_compat_registry_requests_total")
    bound = load_bound(run)
    calls = len(run.answers)
    assert 1 <= loads <= bound, f"{what}: {loads:g} loads for {calls} filter calls"
    # One load stops at its first failing request, which may follow REDIRECT_HOPS hops.
    per_load = 1 + REDIRECT_HOPS
    assert sent <= per_load * bound, f"{what}: {sent:g} registry requests for {calls} calls"
    assert run.proxy_requests <= sent
    print(
        f"\n{what}: {len(run.answers)} filter calls in {run.elapsed:.1f}s (slowest answer "
        f"{run.slowest * 1000:.0f} ms) -> {loads:g} loads, {sent:g} registry requests sent, "
        f"{run.proxy_requests} reached the registry"
    )


def log_names(serve: Serve, image: str, reason: str) -> bool:
    """The serve log has a line naming both the image and the failure's reason."""
    return any(image in line and reason in line for line in serve.log.splitlines())


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_registry_fault_fails_closed(
    name: str, servers: dict[str, Serve], proxy: FaultProxyProcess, oci_registry: Registry
) -> None:
    scenario, serve = SCENARIOS[name], servers["fail"]
    repo = push(oci_registry, name)
    image = f"{proxy.host}/{repo}:v1"
    proxy.set_fault(scenario.fault)
    try:
        run = await filter_calls(serve, proxy, image, repo)
    finally:
        proxy.set_fault("pass")
    for answer in run.answers:
        assert answer["Error"], answer  # never a verdict: no node offered, none rejected
        assert not answer.get("NodeNames"), answer
        assert not answer.get("FailedAndUnresolvableNodes"), answer
    failed = [a for a in run.answers if "cannot load spec" in a["Error"]]
    assert failed, f"the load never failed: {run.answers[-1]}"
    assert scenario.reason in failed[-1]["Error"]
    assert all("not loaded yet" in a["Error"] for a in run.answers[: -len(failed)])
    assert log_names(serve, image, scenario.reason), serve.log[-3000:]
    assert (
        run.metric(sample("image_compat_requests_total", verb="filter", outcome="unavailable"))
        == CALLS
    )
    assert run.metric("image_compat_spec_source_failures_total") == len(failed)
    failures = "image_compat_artifact_load_failures_total"
    assert run.metric(sample(failures, reason=scenario.kind)) >= 1
    assert_not_hammered(run, f"{name} (fail)")


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_registry_fault_ignored_passes_every_node(
    name: str, servers: dict[str, Serve], proxy: FaultProxyProcess, oci_registry: Registry
) -> None:
    scenario, serve = SCENARIOS[name], servers["ignore"]
    repo = push(oci_registry, name)
    image = f"{proxy.host}/{repo}:v1"
    proxy.set_fault(scenario.fault)
    try:
        run = await filter_calls(serve, proxy, image, repo)
    finally:
        proxy.set_fault("pass")
    passed = [a for a in run.answers if not a.get("Error")]
    assert passed, f"no answer passed the nodes: {run.answers[-1]}"
    for answer in passed:
        assert answer["NodeNames"] == list(NODES), answer
        assert not answer.get("FailedAndUnresolvableNodes"), answer
    # While the failing load runs, the spec is "not loaded yet"; once it has failed, the
    # image counts as having no spec from then on.
    waiting = run.answers[: -len(passed)]
    assert all("not loaded yet" in a["Error"] for a in waiting), waiting
    assert any(
        re.search(r"no spec for .*ignored", line) and scenario.reason in line
        for line in serve.log.splitlines()
    ), serve.log[-3000:]
    assert run.metric(sample("image_compat_requests_total", verb="filter", outcome="ok")) == len(
        passed
    )
    assert run.metric("image_compat_spec_source_failures_total") == len(passed)
    failures = "image_compat_artifact_load_failures_total"
    assert run.metric(sample(failures, reason=scenario.kind)) >= 1
    assert_not_hammered(run, f"{name} (ignore)")


async def test_healthy_registry_baseline(
    servers: dict[str, Serve], proxy: FaultProxyProcess, oci_registry: Registry
) -> None:
    """The same calls against a working registry: the pod is decided from the first call,
    with the requests of one load (what the fault figures compare with)."""
    serve = servers["fail"]
    repo = push(oci_registry, "healthy")
    run = await filter_calls(serve, proxy, f"{proxy.host}/{repo}:v1", repo)
    decided = [a for a in run.answers if not a.get("Error")]
    # The first calls may wait out --spec-wait-budget while the one load runs.
    assert all("not loaded yet" in a["Error"] for a in run.answers[: -len(decided)])
    for answer in decided:
        assert answer["NodeNames"] == ["new"], answer
        # "old" is rejected; a node passes, so it is not named (--filter-reasons).
        assert answer["FailedAndUnresolvableNodes"] == {}, answer
    rejected = sample("image_compat_nodes_rejected_total", reason="incompatible")
    assert run.metric(rejected) == len(decided)
    assert run.metric("image_compat_artifact_loads_total") == 1
    assert run.proxy_requests == run.metric("image_compat_registry_requests_total")
    print(f"\nhealthy: {run.proxy_requests} registry requests for {CALLS} filter calls")


async def test_sustained_outage_is_retried_once_per_error_ttl(
    servers: dict[str, Serve], proxy: FaultProxyProcess, oci_registry: Registry
) -> None:
    """A registry down for longer than --error-ttl, with a scheduler retrying every 250 ms:
    the failure is cached and refreshed behind it, one load per --error-ttl, not per call."""
    serve = servers["fail"]
    repo = push(oci_registry, "sustained")
    proxy.set_fault(Fault("error", status=503))
    try:
        run = await filter_calls(serve, proxy, f"{proxy.host}/{repo}:v1", repo, 40, pause=0.25)
    finally:
        proxy.set_fault("pass")
    assert all(answer["Error"] for answer in run.answers)
    # The outage outlived the error cache, so the failure was looked at again...
    assert run.elapsed > ERROR_TTL_S
    assert run.metric("image_compat_artifact_refreshes_total") >= 1
    assert run.metric("image_compat_artifact_loads_total") >= 2
    # ... but no more than once per --error-ttl.
    assert_not_hammered(run, "5xx for 10s (fail)")
