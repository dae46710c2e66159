"""The devcluster control plane: the real kube-scheduler binds a Pod created through the real
kube-apiserver to a fake Node, and the launcher fails clearly and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devcluster.controlplane import ControlPlane, ControlPlaneError
from devcluster.pytest_plugin import MakeNode
from devcluster.stack import wait_bound
from tests._support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: list[int]) -> list[int]:
    """The processes of ``pids`` still running once they all should have ended."""

    def alive() -> list[int]:
        return [p for p in pids if _running(p)]

    eventually(lambda: not alive(), lambda: f"processes to end, still running: {alive()}", 20, 0.1)
    return alive()


def test_default_scheduler_binds_pod_to_fake_node(
    devcluster: ControlPlane, k8s_api: Any, k8s_namespace: str, make_node: MakeNode
) -> None:
    # A label only this test's nodes carry keeps the assertion exact on a shared cluster.
    mark = {"devcluster-test/smoke": uuid.uuid4().hex[:8]}
    ours = {make_node(labels=mark)["metadata"]["name"] for _ in range(3)}
    core = client.CoreV1Api(k8s_api)
    pod: Any = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "smoke"},
        "spec": {
            "nodeSelector": mark,
            "containers": [
                {
                    "name": "c",
                    "image": "registry.example/never-pulled:1",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
        },
    }
    core.create_namespaced_pod(k8s_namespace, pod)

    node = wait_bound(devcluster, k8s_namespace, "smoke", timeout=60)

    assert node in ours
    got = core.read_namespaced_pod("smoke", k8s_namespace)
    assert got.spec is not None and got.status is not None
    assert got.spec.scheduler_name == "default-scheduler"
    scheduled = [c for c in got.status.conditions or [] if c.type == "PodScheduled"]
    assert scheduled and scheduled[0].status == "True"
    # No kubelet runs: the pod is bound and stays Pending, as scheduling tests expect.
    assert got.status.phase == "Pending"


def test_fake_node_is_ready_untainted_and_labelled(
    devcluster: ControlPlane, make_node: MakeNode
) -> None:
    node = make_node(arch="arm64", labels={"example.com/x": "y"}, cpu="4")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/arch"] == "arm64"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/hostname"] == node["metadata"]["name"]
    assert labels["example.com/x"] == "y"
    assert node["status"]["allocatable"]["cpu"] == "4"
    assert [c["type"] for c in node["status"]["conditions"]] == ["Ready"]
    # The not-ready taint added by TaintNodesByCondition admission must be gone.
    assert not node["spec"].get("taints")


def test_install_crd_waits_until_established(devcluster: ControlPlane) -> None:
    crd = textwrap.dedent(
        """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: widgets.devcluster.example.com}
        spec:
          group: devcluster.example.com
          scope: Namespaced
          names: {plural: widgets, singular: widget, kind: Widget}
          versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
        """
    )
    assert devcluster.install_crd(crd) == "widgets.devcluster.example.com"
    # Installing again (another test, same shared cluster) is not an error.
    assert devcluster.install_crd(crd) == "widgets.devcluster.example.com"
    got = devcluster.request("GET", "/apis/devcluster.example.com/v1/widgets")
    assert got["items"] == []


def test_second_scheduler_with_its_own_config(
    devcluster: ControlPlane, k8s_api: Any, k8s_namespace: str, make_node: MakeNode
) -> None:
    mark = {"devcluster-test/second": uuid.uuid4().hex[:8]}
    node = make_node(labels=mark)["metadata"]["name"]
    config = {"profiles": [{"schedulerName": "second-scheduler"}]}
    proc = devcluster.start_scheduler(config, name="second-scheduler")
    try:
        pod: Any = {
            "metadata": {"name": "by-second"},
            "spec": {
                "schedulerName": "second-scheduler",
                "nodeSelector": mark,
                "containers": [{"name": "c", "image": "registry.example/x:1"}],
            },
        }
        client.CoreV1Api(k8s_api).create_namespaced_pod(k8s_namespace, pod)
        assert wait_bound(devcluster, k8s_namespace, "by-second", timeout=60) == node
        assert f"{k8s_namespace}/by-second" in proc.log_path.read_text()
    finally:
        devcluster.stop_scheduler("second-scheduler")
    assert not proc.alive()


def test_missing_go_toolchain_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GO": str(tmp_path / "no-go"),
        "IMAGE_COMPAT_CACHE": str(tmp_path / "cache"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "devcluster", "build"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 1
    assert "not an executable Go toolchain" in out.stderr
    assert "go >= 1.26" in out.stderr


def test_readiness_timeout_names_the_log_file(tmp_path: Path) -> None:
    cp = ControlPlane(workdir=tmp_path)
    cp.ready_timeout["kube-apiserver"] = 4
    try:
        cp.start_etcd()
        assert cp.etcd is not None
        # A frozen etcd: kube-apiserver starts but can never become ready.
        cp.etcd.send_signal(signal.SIGSTOP)
        with pytest.raises(ControlPlaneError) as err:
            cp.start_apiserver()
        msg = str(err.value)
        assert "kube-apiserver did not become ready within 4s" in msg
        assert str(tmp_path / "logs" / "kube-apiserver.log") in msg
        assert "--- last lines of kube-apiserver.log ---" in msg
    finally:
        if cp.etcd is not None:
            cp.etcd.send_signal(signal.SIGCONT)
        cp.stop()


def test_early_exit_is_reported_with_the_log_tail(tmp_path: Path) -> None:
    cp = ControlPlane(workdir=tmp_path)
    try:
        cp.start_etcd()
        with pytest.raises(ControlPlaneError) as err:
            cp.start_apiserver(extra_args=["--no-such-flag"])
        msg = str(err.value)
        assert "kube-apiserver exited with code" in msg
        assert "unknown flag: --no-such-flag" in msg
    finally:
        cp.stop()


def test_port_taken_between_pick_and_bind_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devcluster import controlplane, processes

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real = processes.free_port
        picks = iter([taken])
        # The first port handed to etcd is already in use, as if another process won the race.
        monkeypatch.setattr(controlplane, "free_port", lambda: next(picks, None) or real())
        cp = ControlPlane(workdir=tmp_path)
        try:
            cp.start_etcd()
            assert cp.etcd_port not in (0, taken)
            assert "address already in use" in (tmp_path / "logs" / "etcd.log").read_text()
        finally:
            cp.stop()


def test_stop_leaves_no_process_and_keeps_etcd_data_across_apiserver_restart(
    tmp_path: Path,
) -> None:
    cp = ControlPlane(workdir=tmp_path)
    try:
        cp.start()
        cp.create_node("survivor")
        cp.restart_apiserver(kill=True)
        assert cp.request("GET", "/api/v1/nodes/survivor")["metadata"]["name"] == "survivor"
        pids = [p.pid for p in cp.processes() if p.pid is not None]
        assert len(pids) == 3
    finally:
        cp.stop()
    assert _wait_gone(pids) == []


_CRASHING_PARENT = """
import os, sys
from pathlib import Path
from devcluster.controlplane import ControlPlane
cp = ControlPlane(workdir=Path(sys.argv[1]))
cp.start()
print(" ".join(str(p.pid) for p in cp.processes()), flush=True)
os.kill(os.getpid(), 9)  # a crash: no atexit, no finally
"""


def test_no_orphans_when_the_python_parent_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _CRASHING_PARENT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 3
    assert _wait_gone(pids) == []


def test_cli_up_env_down(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    work = tmp_path / "cluster"

    def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devcluster", *args, f"--workdir={work}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    up = cli("up")
    try:
        assert up.returncode == 0, up.stderr
        assert "KUBECONFIG=" in up.stdout
        shell_env = cli("env")
        assert shell_env.returncode == 0, shell_env.stderr
        script = f"{shell_env.stdout}\nkubectl get --raw /readyz"
        probe = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert probe.stdout.strip() == "ok", probe.stderr
        pids = [int(p) for p in (work / "pids").read_text().split()]
        assert all(_running(p) for p in pids)
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert _wait_gone(pids) == []
    assert cli("env").returncode != 0  # nothing running any more: say so


def test_old_binary_dirs_are_pruned(tmp_path: Path) -> None:
    from devcluster import build

    dirs = []
    for i in range(5):
        d = tmp_path / f"k8s-v1.34.4-{i:012d}"
        d.mkdir()
        os.utime(d, (1_000_000 + i, 1_000_000 + i))
        dirs.append(d)
    (tmp_path / ".lock").touch()
    build._prune_old_stamps(keep=dirs[0])  # the current stamp may be the oldest on disk
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".lock", dirs[0].name, dirs[4].name, dirs[3].name]
    )
