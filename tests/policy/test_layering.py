"""The layering contract: NFD's spec and rules know nothing of Kubernetes, HTTP, node sources
or the server; policy knows nothing of HTTP, the server or registries; the wire protocol knows
nothing of HTTP or Kubernetes. Checked in a fresh interpreter, by what importing a module loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    "extender.nfd.spec": {"aiohttp", "kubernetes", "extender.nodes", "extender.server"},
    "extender.nfd.rules": {"aiohttp", "kubernetes", "extender.nodes", "extender.server"},
    "extender.policy.decide": {"aiohttp", "kubernetes", "extender.server", "extender.registry"},
    "extender.server.protocol": {"aiohttp", "kubernetes"},
}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_does_not_import_upper_layers(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout
    )
    bad = sorted(
        name
        for name in loaded
        for forbidden in FORBIDDEN[module]
        if name == forbidden or name.startswith(forbidden + ".")
    )
    assert bad == []
