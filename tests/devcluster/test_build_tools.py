"""Our small Go tools (devcluster/go-bench, devcluster/go-nfdbench): stamped apart from
Kubernetes, and working."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import build


def test_tool_modules_are_stamped_apart_from_kubernetes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s, tool = build.stamp(), build.tool_stamp("go-bench")
    copy = tmp_path / "go-bench"
    shutil.copytree(build.TOOL_MODULES["go-bench"], copy)
    main = copy / "cmd" / "null-extender" / "main.go"
    main.write_text(main.read_text() + "\n// changed\n")
    monkeypatch.setitem(build.TOOL_MODULES, "go-bench", copy)
    # Editing a tool rebuilds the tool only, never kube-apiserver and friends.
    assert build.stamp() == k8s
    assert build.tool_stamp("go-bench") != tool
    assert build.component_dir("null-extender").name == build.tool_stamp("go-bench")
    assert build.component_dir("count-proxy") == build.component_dir("null-extender")
    assert build.component_dir("kube-apiserver") == build.bin_dir()
    assert build.versions()["null-extender"] == build.LOCAL_VERSION


def test_nfd_eval_bench_has_a_stamp_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s, tool = build.stamp(), build.tool_stamp("go-nfdbench")
    copy = tmp_path / "go-nfdbench"
    shutil.copytree(build.TOOL_MODULES["go-nfdbench"], copy)
    (copy / "go.sum").write_text((copy / "go.sum").read_text() + "\n")
    monkeypatch.setitem(build.TOOL_MODULES, "go-nfdbench", copy)
    # NFD is pinned in both modules, yet a change here never relinks kube-apiserver.
    assert build.stamp() == k8s
    assert build.tool_stamp("go-nfdbench") != tool
    assert build.component_dir("nfd-eval-bench").name == build.tool_stamp("go-nfdbench")


SPEC = """\
version: v1alpha1
compatibilities:
- rules:
  - name: intel
    matchFeatures:
    - feature: cpu.model
      matchExpressions:
        vendor_id: {op: In, value: [Intel]}
- rules:
  - name: amd
    matchFeatures:
    - feature: cpu.model
      matchExpressions:
        vendor_id: {op: In, value: [AMD]}
"""


@pytest.mark.integration
def test_nfd_eval_bench_times_every_set_and_reports_failures() -> None:
    features = {"attributes": {"cpu.model": {"elements": {"vendor_id": "Intel"}}}}
    cases = [
        {"id": "both", "spec": SPEC, "features": features},
        {"id": "tagged", "spec": SPEC, "features": features, "tags": ["none"]},
        {"id": "bad", "spec": "compatibilities: 3", "features": features},
    ]
    done = subprocess.run(
        [str(build.binary("nfd-eval-bench")), "-k=3"],
        input="".join(json.dumps(c) + "\n" for c in cases) + "not json\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["id"] for o in out] == ["both", "tagged", "bad", None]
    assert out[0]["sets"] == 2 and out[0]["nsPerSet"] > 0 and out[0]["error"] == ""
    assert out[1]["sets"] == 0 and out[1]["nsPerSet"] == 0  # --tags selected no set
    assert out[2]["error"].startswith("spec: ") and out[2]["nsPerSet"] == 0
    assert out[3]["error"].startswith("input: ")


def _start(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
    assert match, line
    return proc, f"http://{match.group(1)}/"


def _post(url: str, body: Any) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def null_and_proxy() -> Iterator[tuple[str, str]]:
    null, null_url = _start([str(build.binary("null-extender")), "-listen=127.0.0.1:0"])
    proxy, proxy_url = _start(
        [str(build.binary("count-proxy")), "-listen=127.0.0.1:0", f"-upstream={null_url}"]
    )
    try:
        yield null_url, proxy_url
    finally:
        for proc in (proxy, null):
            proc.terminate()
            proc.wait(10)


@pytest.mark.integration
def test_null_extender_passes_every_node_and_the_proxy_counts_bytes(
    null_and_proxy: tuple[str, str],
) -> None:
    null_url, proxy_url = null_and_proxy
    args = {"Pod": {"metadata": {"name": "p"}}, "Nodes": None, "NodeNames": ["n1", "n2", "n3"]}
    answer = _post(proxy_url + "filter", args)
    assert answer["NodeNames"] == ["n1", "n2", "n3"] and not answer["Error"]
    scores = _post(proxy_url + "prioritize", args)
    assert scores == [{"Host": n, "Score": 0} for n in ("n1", "n2", "n3")]
    with urllib.request.urlopen(proxy_url + "proxy-stats", timeout=10) as resp:
        counted = json.loads(resp.read())
    with urllib.request.urlopen(null_url + "stats", timeout=10) as resp:
        own = json.loads(resp.read())
    request_bytes = len(json.dumps(args).encode())
    for verb in ("filter", "prioritize"):
        assert counted[verb]["calls"] == own[verb]["calls"] == 1
        assert counted[verb]["request_bytes"] == own[verb]["request_bytes"] == request_bytes
        assert counted[verb]["response_bytes"] == own[verb]["response_bytes"] > 0


@pytest.mark.integration
def test_null_extender_can_reject_a_fixed_share_like_a_real_filter() -> None:
    null, url = _start(
        [str(build.binary("null-extender")), "-listen=127.0.0.1:0", "-pass-fraction=0.7"]
    )
    try:
        names = [f"node-{i:04d}" for i in range(1000)]
        args: dict[str, object] = {"Pod": {}, "Nodes": None, "NodeNames": names}
        first, again = _post(url + "filter", args), _post(url + "filter", args)
    finally:
        null.terminate()
        null.wait(10)
    assert first == again  # the same nodes every time, as a real filter's verdicts are
    passed, failed = first["NodeNames"], first["FailedNodes"]
    assert sorted(passed + list(failed)) == names
    assert 600 < len(passed) < 800
    assert set(failed.values()) == {"null-extender: rejected"}


@pytest.mark.integration
def test_null_extender_answers_in_the_shape_of_a_lean_extender() -> None:
    argv = [
        str(build.binary("null-extender")),
        "-listen=127.0.0.1:0",
        "-pass-fraction=0.7",
        "-reasons=false",
        "-prioritize-fraction=0.4",
        "-score=3",
    ]
    null, url = _start(argv)
    try:
        names = [f"node-{i:04d}" for i in range(1000)]
        args: dict[str, object] = {"Pod": {}, "Nodes": None, "NodeNames": names}
        filtered = _post(url + "filter", args)
        scored = _post(url + "prioritize", args)
    finally:
        null.terminate()
        null.wait(10)
    # Rejected nodes are left out of the answer; prioritize lists a share, the others score 0.
    assert 600 < len(filtered["NodeNames"]) < 800 and not filtered["FailedNodes"]
    assert 300 < len(scored) < 500
    assert {h["Score"] for h in scored} == {3}
    assert [h["Host"] for h in scored] == [n for n in names if n in {h["Host"] for h in scored}]
