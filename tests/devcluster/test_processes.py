"""The one child-process lifecycle of devcluster, with plain Python children (no Go needed)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devcluster.processes import ManagedProcess, ProcessError, child_env, free_port, http_probe
from tests.devcluster.test_controlplane import REPO, _wait_gone

_SLEEP = "import time; time.sleep(600)"


class _OwnError(ProcessError):
    pass


def _python(
    tmp_path: Path,
    code: str,
    *args: str,
    stdin_pipe: bool = False,
    error: type[ProcessError] = ProcessError,
) -> ManagedProcess:
    argv = [sys.executable, "-c", textwrap.dedent(code), *args]
    log = tmp_path / "child.log"
    return ManagedProcess("child", argv, log, stdin_pipe=stdin_pipe, error=error)


def test_wait_for_log_sees_only_the_latest_start(tmp_path: Path) -> None:
    code = """
        import sys, time
        print("listening on 127.0.0.1:" + sys.argv[1], flush=True)
        time.sleep(600)
    """
    proc = _python(tmp_path, code, "1111")
    pattern = re.compile(r"listening on (127\.0\.0\.1:\d+)")
    try:
        assert proc.start().wait_for_log(pattern, 30).group(1) == "127.0.0.1:1111"
        proc.stop()
        proc.argv[-1] = "2222"
        # The log keeps the first run's line; the second start must not match it.
        assert proc.start().wait_for_log(pattern, 30).group(1) == "127.0.0.1:2222"
        assert "127.0.0.1:1111" in proc.log_path.read_text()
    finally:
        proc.stop()


def test_early_exit_raises_the_callers_error_with_the_log_tail(tmp_path: Path) -> None:
    proc = _python(tmp_path, "print('bad flag: --nope'); raise SystemExit(3)", error=_OwnError)
    proc.start()
    with pytest.raises(_OwnError) as err:
        proc.wait_ready(lambda: "not yet", timeout=60)
    msg = str(err.value)
    assert "child exited with code 3 during startup" in msg
    assert f"log: {proc.log_path}" in msg
    assert "--- last lines of child.log ---\n" in msg
    assert msg.endswith("\nbad flag: --nope")


def test_readiness_timeout_names_the_last_reason(tmp_path: Path) -> None:
    proc = _python(tmp_path, _SLEEP)
    try:
        proc.start()
        with pytest.raises(ProcessError) as err:
            proc.wait_ready(lambda: "port closed", timeout=0.3, interval=0.05)
        assert "child did not become ready within 0s (last: port closed)" in str(err.value)
    finally:
        proc.stop()


def test_a_missing_executable_is_the_callers_error(tmp_path: Path) -> None:
    argv = [str(tmp_path / "no-such-binary")]
    proc = ManagedProcess("ghost", argv, tmp_path / "ghost.log", error=_OwnError)
    with pytest.raises(_OwnError, match="cannot start ghost"):
        proc.start()


def test_stop_kills_a_child_that_ignores_sigterm_and_its_grandchildren(tmp_path: Path) -> None:
    code = """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
        print("grandchild", subprocess.Popen(sleeper).pid, flush=True)
        time.sleep(600)
    """
    proc = _python(tmp_path, code)
    proc.start()
    grandchild = int(proc.wait_for_log(re.compile(r"grandchild (\d+)"), 30).group(1))
    pid = proc.pid
    assert pid is not None
    assert proc.stop(timeout=0.5) == -signal.SIGKILL
    assert not proc.alive()
    assert _wait_gone([pid, grandchild]) == []


def test_stop_closes_the_stdin_pipe(tmp_path: Path) -> None:
    proc = _python(tmp_path, "import sys; sys.stdin.read()", stdin_pipe=True)
    proc.start()
    assert proc.proc is not None and proc.proc.stdin is not None
    assert not proc.proc.stdin.closed
    proc.stop()
    assert proc.proc.stdin.closed


_CRASHING_PARENT = """
import os, sys
from pathlib import Path
from devcluster.processes import ManagedProcess
child = ManagedProcess("sleeper", [sys.executable, "-c", sys.argv[2]], Path(sys.argv[1])).start()
print(child.pid, flush=True)
os.kill(os.getpid(), 9)  # a crash: no atexit, no finally
"""


def test_child_dies_with_its_sigkilled_parent(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CRASHING_PARENT, str(tmp_path / "sleeper.log"), _SLEEP],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert _wait_gone([int(out.stdout)]) == []


def test_child_env_leaves_out_the_developers_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/home/dev/.kube/config")
    monkeypatch.setenv("REGISTRY_HTTP_ADDR", "0.0.0.0:5000")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = child_env(drop_prefixes=["REGISTRY_"], import_repo=True)
    assert "KUBECONFIG" not in env and "REGISTRY_HTTP_ADDR" not in env
    assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,localhost"
    assert env["PYTHONPATH"] == os.pathsep.join([str(REPO), "/elsewhere"])
    assert child_env()["PYTHONPATH"] == "/elsewhere"
    assert child_env()["REGISTRY_HTTP_ADDR"] == "0.0.0.0:5000"


def test_http_probe_says_why_not() -> None:
    url = f"http://127.0.0.1:{free_port()}/readyz"
    why = http_probe(url)
    assert why is not None and why.startswith(f"GET {url}: ")
