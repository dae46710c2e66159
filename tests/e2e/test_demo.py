"""``make demo`` keeps telling its story: the demo's own run, asserted (its own cluster).

Twice: with the extender from this checkout, and from the built container image (``make demo
IMAGE=1``), so the shipped artifact places pods behind the real kube-scheduler too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster import demo, image

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PREFERRED = {"dpdk-spr-01", "gpu-h100-01"}  # AMX on bare metal (examples/nodes)
FALLBACK = {"mlx-genoa-01", "vm-focal-01"}  # x86-64-v3 only


@pytest.fixture(params=["checkout", "image"])
def built(request: pytest.FixtureRequest) -> image.Built | None:
    """Where the extender runs from: this checkout, or the built container image."""
    return image.build_image() if request.param == "image" else None


def test_demo_places_the_story_and_draws_it(tmp_path: Path, built: image.Built | None) -> None:
    png = tmp_path / "placements.png"
    placements = demo.run_demo(demo.Progress(), tmp_path / "work", png, keep=False, built=built)
    where = {p.pod.name: p.node for p in placements}
    assert {where["inference-1"], where["inference-2"]} == PREFERRED
    assert where["inference-3"] in FALLBACK
    assert where["cuda-train"] == "gpu-h100-01"
    assert where["dpdk-gw"] in {"dpdk-spr-01", "mlx-genoa-01"}
    assert where["web"] is not None
    assert where["gpu-dataplane"] is None
    pending = next(p for p in placements if p.pod.name == "gpu-dataplane")
    assert "image-compat: " in pending.message
    assert png.read_bytes().startswith(b"\x89PNG")
