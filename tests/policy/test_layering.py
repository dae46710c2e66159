"""The layering contract (DESIGN §3): spec/rules know nothing of Kubernetes or HTTP; policy
knows nothing of HTTP. Checked in a fresh interpreter, by what importing a module loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    "extender.spec": {"aiohttp", "kubernetes", "extender.features", "extender.protocol"},
    "extender.rules": {"aiohttp", "kubernetes", "extender.features", "extender.protocol"},
    "extender.policy": {"aiohttp", "kubernetes", "extender.server", "extender.registry"},
    "extender.protocol": {"aiohttp", "kubernetes", "extender.policy"},
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
