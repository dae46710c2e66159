"""Variants with the real kube-scheduler: one template of pods, three builds of its image,
and each pod runs the build that fits the node it landed on.

The shipped scheduler-config/image-compat-scheduler-variants.yaml (bindVerb) runs as a
second scheduler beside the e2e one, with a schedulerName of its own, pointed at an extender
of its own that judges that schedulerName. Six replicas of one pod
template (devcluster runs no controller-manager, so the test creates them as a Deployment
would) ask for 1500m of a node's 2 CPUs: one per node. The CUDA build fits the gpu nodes,
the AMX build the amx nodes, and the generic build (no spec) any node; prioritize puts the
first four on gpu and amx nodes, the other two go to plain or dpdk ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.stack import (
    SCHEDULER_CONFIG,
    Extender,
    create_pod,
    get_pod,
    pod,
    scheduler_config,
    wait_bound,
    wait_event,
)
from tests.e2e.conftest import SELECTOR, Stack, registry_config

pytestmark = pytest.mark.e2e

SCHEDULER = "image-compat-variants"
CONFIG = SCHEDULER_CONFIG.with_name("image-compat-scheduler-variants.yaml")
REPLICAS = 6
BIND_TIMEOUT = 90.0
EXPECTED = {"gpu": "cuda", "amx": "amx", "plain": "generic", "dpdk": "generic"}


@pytest.fixture(scope="module")
def builds(stack: Stack) -> dict[str, str]:
    return {
        "cuda": stack.push("variant-cuda", "cuda-build.yaml"),
        "amx": stack.push("variant-amx", "amx-build.yaml"),
        "generic": stack.push("variant-generic", None),
    }


@pytest.fixture(scope="module")
def variants_scheduler(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work: Path = tmp_path_factory.mktemp("variants-extender")
    args = [
        f"--registry-config={registry_config(work / 'registries.yaml', stack.proxy)}",
        "--registry-allow-loopback",
        f"--scheduler-name={SCHEDULER}",
    ]
    extender = Extender(stack.cluster, args=args, name="image-compat-extender-variants")
    extender.start()
    config = scheduler_config(extender.url, scheduler_name=SCHEDULER, path=CONFIG)
    assert config["extenders"][0]["bindVerb"] == "bind"
    stack.cluster.start_scheduler(config, name=SCHEDULER)
    try:
        yield SCHEDULER
    finally:
        stack.cluster.stop_scheduler(SCHEDULER)
        extender.stop()


def test_each_replica_runs_the_variant_for_its_node_type(
    stack: Stack, ns: str, builds: dict[str, str], variants_scheduler: str
) -> None:
    annotation = json.dumps({"app": [builds["cuda"], builds["amx"], builds["generic"]]})
    names = [f"solver-{i}" for i in range(REPLICAS)]
    for name in names:
        manifest = pod(
            name,
            {"app": builds["generic"]},
            scheduler_name=variants_scheduler,
            annotations={"image-compat.io/variants": annotation},
            node_selector=SELECTOR,
            cpu="1500m",
        )
        create_pod(stack.cluster, ns, manifest)
    outcome: dict[str, tuple[str, str]] = {}  # pod → (node type, build)
    by_image = {image: build for build, image in builds.items()}
    for name in names:
        node = wait_bound(stack.cluster, ns, name, BIND_TIMEOUT)
        image = get_pod(stack.cluster, ns, name)["spec"]["containers"][0]["image"]
        outcome[name] = (stack.nodes[node], by_image[image])
        event = wait_event(stack.cluster, ns, name, "VariantChosen", timeout=30)
        assert event["message"] == f"variant chosen for node {node}: container app: {image}"
    print("variants e2e: pod -> (node type, build):", json.dumps(outcome, sort_keys=True))
    for name, (node_type, build) in outcome.items():
        assert build == EXPECTED[node_type], (name, node_type, build)
    # One pod per node (CPU), and the best builds first: every build ran somewhere.
    assert {build for _, build in outcome.values()} == {"cuda", "amx", "generic"}
