"""200 concurrent filter calls (and prioritize calls) against a real ``serve``: every answer is
the one a single sequential call gives, with images of several specs mixed, cold and warm.

The reference is a second, fresh ``serve`` of the same files, asked one call at a time: for
filter, one call per image over every node; for prioritize (whose scores are relative to the
best node asked), the same call as the loaded server's. Both read node features from
``--features-file`` (the example nodes cloned into a small fleet) and specs from
``--spec-map``. Loopback only; two bursts of 200 calls per verb on the loaded server.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.server.test_serve import Server

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "nodes" / "all-nodes.yaml"
SPECS = sorted((ROOT / "examples" / "specs").glob("*.yaml"))
CONCURRENT = 200
COPIES = 8  # nodes per example node
UNKNOWN = ["no-features-1", "no-features-2"]  # asked, but without NodeFeatures


def image(index: int) -> str:
    return f"registry.example/load/app-{index}:1"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A fleet of example-node clones, and a spec map of 12 images over the example specs,
    each image's spec a distinct document (its own description), so each starts cold."""
    templates = [d for d in yaml.safe_load_all(FLEET.read_text()) if d]
    docs = []
    for copy_index in range(COPIES):
        for template in templates:
            doc = copy.deepcopy(template)
            name = f"{template['metadata']['name']}-{copy_index}"
            doc["metadata"]["name"] = name
            doc["metadata"]["labels"]["nfd.node.kubernetes.io/node-name"] = name
            docs.append(doc)
    (tmp_path / "nodes.yaml").write_text(yaml.safe_dump_all(docs))
    lines = []
    for index in range(12):
        text = SPECS[index % len(SPECS)].read_text()
        described = text.replace('description: "', f'description: "image {index}: ', 1)
        assert described != text
        (tmp_path / f"spec-{index}.yaml").write_text(described)
        lines.append(f"- image: '{image(index)}'\n  spec: spec-{index}.yaml\n")
    (tmp_path / "map.yaml").write_text("".join(lines))
    return tmp_path


def serve(files: Path) -> Server:
    return Server(
        [
            "--listen=127.0.0.1:0",
            f"--features-file={files / 'nodes.yaml'}",
            f"--spec-map={files / 'map.yaml'}",
        ],
        {},
    )


@pytest.fixture
def loaded(files: Path) -> Iterator[Server]:
    server = serve(files)
    yield server
    assert server.stop() == 0
    assert "Traceback" not in server.log


@pytest.fixture
def reference(files: Path) -> Iterator[Server]:
    server = serve(files)
    yield server
    assert server.stop() == 0


def node_names(files: Path) -> list[str]:
    return [d["metadata"]["name"] for d in yaml.safe_load_all((files / "nodes.yaml").read_text())]


def args(index: int, call: int, names: Sequence[str]) -> dict[str, Any]:
    pod = {
        "metadata": {"name": f"pod-{call}", "namespace": "default", "uid": f"uid-{call}"},
        "spec": {
            "schedulerName": "image-compat-scheduler",
            "containers": [{"name": "app", "image": image(index)}],
        },
    }
    return {"Pod": pod, "Nodes": None, "NodeNames": list(names)}


def calls(images: Sequence[int], nodes: Sequence[str], first: int) -> list[dict[str, Any]]:
    """CONCURRENT filter requests: images in turn, each over its own sample of the nodes."""
    out = []
    for k in range(CONCURRENT):
        rng = random.Random(first + k)
        names = rng.sample(list(nodes), rng.randint(len(nodes) // 2, len(nodes)))
        out.append(args(images[k % len(images)], first + k, names))
    return out


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def sets(answer: dict[str, Any], asked: list[str]) -> tuple[list[str], set[str]]:
    """The passing names and the rejected ones. Rejected nodes are named (with why) only when
    none passes, serve's default --filter-reasons; then every one of them is."""
    assert not answer.get("Error"), answer
    passing = list(answer.get("NodeNames") or [])
    named = set(answer.get("FailedAndUnresolvableNodes") or {}) | set(
        answer.get("FailedNodes") or {}
    )
    rejected = set(asked) - set(passing)
    assert named == (set() if passing else rejected), answer
    return passing, rejected


async def ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(600):
        async with session.get(f"{base}/readyz") as response:
            if response.status == 200:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{base} never ready")


async def test_200_concurrent_calls_answer_as_sequential_ones(
    files: Path, loaded: Server, reference: Server
) -> None:
    nodes = node_names(files) + UNKNOWN
    loaded_base = f"http://127.0.0.1:{loaded.port()}"
    reference_base = f"http://127.0.0.1:{reference.port()}"
    # The first burst is the first the server sees of images 0..7: every spec cold, each asked
    # by many calls at once. The second mixes those (warm) with images 8..11 (cold).
    bursts = [calls(range(8), nodes, 0), calls(range(12), nodes, CONCURRENT)]
    # One connection per call, so all 200 are in flight together.
    connector = aiohttp.TCPConnector(limit=CONCURRENT)
    async with aiohttp.ClientSession(connector=connector) as session:
        await ready(session, loaded_base)
        await ready(session, reference_base)
        # Filter's verdict on a node does not depend on the other names asked: one sequential
        # call per image over every node is the reference for any sample of them.
        passes: dict[str, set[str]] = {}
        for index in range(12):
            body = args(index, -1, nodes)
            answer = await post(session, f"{reference_base}/filter", body)
            passes[image(index)] = set(sets(answer, nodes)[0])
        verdicts_seen: set[bool] = set()
        for burst in bursts:
            answers = await asyncio.gather(
                *(post(session, f"{loaded_base}/filter", body) for body in burst)
            )
            survivors = []
            for body, answer in zip(burst, answers, strict=True):
                asked = body["NodeNames"]
                passing, rejected = sets(answer, asked)
                passed = passes[body["Pod"]["spec"]["containers"][0]["image"]]
                assert passing == [n for n in asked if n in passed], body["Pod"]["spec"]
                assert rejected == {n for n in asked if n not in passed}, body["Pod"]["spec"]
                verdicts_seen |= {True} if passing else set()
                verdicts_seen |= {False} if rejected else set()
                assert set(UNKNOWN) & set(body["NodeNames"]) <= rejected
                survivors.append({**body, "NodeNames": passing})
            # Prioritize under the same concurrency, over the names that passed.
            scores = await asyncio.gather(
                *(post(session, f"{loaded_base}/prioritize", body) for body in survivors)
            )
            for body, answer in zip(survivors, scores, strict=True):
                # The nodes at the lowest score (0 after the shift) are left out; the others
                # come in the order asked.
                listed = [entry["Host"] for entry in answer]
                assert listed == [n for n in body["NodeNames"] if n in set(listed)]
                assert answer == await post(session, f"{reference_base}/prioritize", body)
        # The checks above compared something: both verdicts occurred.
        assert verdicts_seen == {True, False}
