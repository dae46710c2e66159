"""What the memo and the node tables hold as specs accumulate: entries grow with specs times
hardware types, never with specs times nodes, and a pod shape whose table was dropped is
answered again from the memo without evaluating anything."""

from __future__ import annotations

from extender.policy.decide import Policy
from tests.policy.helpers import (
    PREFERRED_FALLBACK,
    FakeSource,
    fast,
    minimal,
    nodes,
    old,
    pod,
    policy_config,
    store_with,
)

NODES = 600
TYPES = 3  # fast, minimal, old
SPECS = 40


def _image(index: int) -> str:
    return f"registry.example/app-{index}:1"


def _distinct(index: int) -> str:
    # The same rules under another description: another digest, so another spec to the memo.
    return PREFERRED_FALLBACK.replace("description: preferred", f"description: preferred {index}")


async def test_memo_grows_with_specs_and_hardware_types_not_nodes() -> None:
    cluster = {f"n{i}": (fast, minimal, old)[i % TYPES](f"n{i}") for i in range(NODES)}
    source = FakeSource({_image(i): _distinct(i) for i in range(SPECS)})
    # Just enough for both levels: a fingerprint per node, a verdict per spec and type.
    config = policy_config(node_tables=8, memo_size=max(NODES, SPECS * TYPES))
    p = Policy(config, store_with(cluster), source)
    names = nodes(*cluster)
    for i in range(SPECS):
        await p.filter(pod(_image(i)), names)
        await p.prioritize(pod(_image(i)), names)
    assert p.memo.misses == SPECS * TYPES
    assert len(p.memo) == SPECS * TYPES  # verdicts: one per spec and hardware type
    # Only 8 shapes per verb keep a table: the others were dropped. Asking again rebuilds
    # them from the memo, with no evaluation.
    for i in range(SPECS):
        again = await p.filter(pod(_image(i)), names)
        assert len(again.passing) == NODES * 2 // 3  # fast and minimal pass, old does not
    assert p.memo.misses == SPECS * TYPES
