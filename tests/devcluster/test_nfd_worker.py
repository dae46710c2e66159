"""NFD's own nfd-worker against devcluster: a real NodeFeature for this machine, read by our
feature model and judged by our engine exactly as NFD's own code judges it (nfd-eval)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster import build, nfd
from devcluster.controlplane import ControlPlane
from extender.nfd.rules import evaluate, load_spec
from extender.nodes.model import load_node_features, merge_node_features
from tests.nfd.conformance.oracle import NfdEval

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "examples" / "specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def host_node() -> str:
    return nfd.host_node_name()


@pytest.fixture
def published(host_nodefeature: dict[str, Any]) -> dict[str, Any]:
    return host_nodefeature


@pytest.fixture(scope="module")
def oracle() -> Iterator[NfdEval]:
    with NfdEval(build.binary("nfd-eval")) as running:
        yield running


def test_worker_publishes_a_nodefeature_for_this_host(
    published: dict[str, Any], host_node: str
) -> None:
    assert published["kind"] == "NodeFeature"
    assert published["metadata"]["namespace"] == nfd.NFD_NAMESPACE
    assert published["metadata"]["labels"][nfd.NODE_NAME_LABEL] == host_node
    features = published["spec"]["features"]
    # The sources that work in this sandbox (see nfd.KNOWN_FAILING_SOURCES for the others).
    assert features["attributes"]["cpu.model"]["elements"]["vendor_id"]
    assert features["attributes"]["kernel.version"]["elements"]["full"]
    assert len(features["attributes"]["kernel.config"]["elements"]) > 100
    assert features["flags"]["cpu.cpuid"]["elements"]
    assert "pci.device" in features["instances"]


def test_our_model_reads_it(published: dict[str, Any], host_node: str) -> None:
    node = merge_node_features([published])[host_node]
    raw = published["spec"]["features"]
    assert node.attributes["kernel.version"] == raw["attributes"]["kernel.version"]["elements"]
    assert node.flags["cpu.cpuid"] == frozenset(raw["flags"]["cpu.cpuid"]["elements"])
    assert len(node.instances["pci.device"]) == len(raw["instances"]["pci.device"]["elements"])


def _variants(published: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        nfd.sanitized(published, "real"),
        nfd.variant(
            published, "with-vfio", add_modules=["vfio_pci", "vfio_iommu_type1"], cpu_vendor="AMD"
        ),
        nfd.variant(
            published, "with-gpu", add_pci=[nfd.NVIDIA_H100], kernel_version="6.8.0-1015-aws"
        ),
        nfd.variant(
            published, "rhel", kernel_version="5.14.0-427.13.1.el9_4.x86_64", cpu_vendor="ARM"
        ),
        nfd.variant(
            published,
            "dpdk-ready",
            add_modules=["vfio_pci", "vfio_iommu_type1"],
            cpu_vendor="Intel",
            add_pci=[{"class": "0200", "vendor": "8086", "device": "159b"}],
            attributes={"memory.hugepages": {"enabled": "true"}},
        ),
    ]


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_per_rule_verdicts_agree_with_nfd(
    spec_path: Path, published: dict[str, Any], oracle: NfdEval
) -> None:
    spec_text = spec_path.read_text()
    compiled = load_spec(spec_text)
    for nodefeature in _variants(published):
        node = merge_node_features([nodefeature])[nodefeature["metadata"]["name"]]
        ours = evaluate(compiled, node)
        theirs = oracle.one(
            {"spec": spec_text, "features": nodefeature["spec"]["features"], "tags": []}
        )
        where = f"{spec_path.name} on {nodefeature['metadata']['name']}"
        if theirs.error:
            # NFD stops at the first erroring rule; we mark that rule and go on.
            assert ours.error is not None, f"{where}: NFD failed ({theirs.error}), we did not"
            continue
        assert ours.error is None, f"{where}: we failed ({ours.error}), NFD did not"
        nfd_rules = [[r.matched for r in s.rules] for s in theirs.sets]
        our_rules = [[r.matched for r in s.rules] for s in ours.sets]
        assert our_rules == nfd_rules, where


def test_sanitized_fixture_matches_the_shape_of_the_real_object(published: dict[str, Any]) -> None:
    committed = yaml.safe_load((ROOT / "examples" / "nodes" / "sandbox-vm-01.yaml").read_text())
    fresh = nfd.sanitized(published, "sandbox-vm-01")
    for kind in ("flags", "attributes", "instances"):
        assert set(committed["spec"]["features"][kind]) == set(fresh["spec"]["features"][kind])
    assert load_node_features(json.dumps(committed))["sandbox-vm-01"].attributes["system.name"] == {
        "nodename": "sandbox-vm-01"
    }


def test_variants_change_what_they_say(published: dict[str, Any]) -> None:
    clone = nfd.variant(
        published, "x", add_modules=["vfio_pci"], cpu_vendor="AMD", add_pci=[nfd.NVIDIA_H100]
    )
    node = merge_node_features([clone])["x"]
    assert "vfio_pci" in (node.flags["kernel.loadedmodule"] or ())
    cpu_model = node.attributes["cpu.model"]
    assert cpu_model is not None and cpu_model["vendor_id"] == "AMD"
    assert any(i.get("device") == "2330" for i in node.instances["pci.device"])
    dropped = nfd.variant(clone, "y", drop_modules=["vfio_pci"])
    assert "vfio_pci" not in (
        merge_node_features([dropped])["y"].flags["kernel.loadedmodule"] or ()
    )


def test_publish_through_the_apiserver(devcluster: ControlPlane, published: dict[str, Any]) -> None:
    clone = nfd.variant(published, "published-variant", add_modules=["vfio_pci"])
    nfd.publish(devcluster, clone)
    nfd.publish(devcluster, nfd.variant(published, "published-variant", add_modules=["nvidia"]))
    stored = devcluster.request(
        "GET", nfd.NODEFEATURES.format(namespace=nfd.NFD_NAMESPACE, name="published-variant")
    )
    assert "nvidia" in stored["spec"]["features"]["flags"]["kernel.loadedmodule"]["elements"]
