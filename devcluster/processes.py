"""The one lifecycle of devcluster's long-running children: control plane, registries, extender.

Owns how a child is started (its own process group, output appended to a log file under a
header line, an environment without the developer's cluster settings), how readiness is
awaited (a probe, or a line the child logs, with a bounded wait that fails as soon as the
child exits), how it is stopped (a signal to the whole group, SIGKILL after a timeout), and the
log tail quoted in every failure. Also the small helpers every starter needs: ``free_port``,
``http_probe`` and ``child_env``.

Orphans are prevented three ways: every child leads its own process group (stop kills the
whole group), an ``atexit`` hook stops whatever is still running, and a child started from the
main thread asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), which
covers SIGKILL/OOM of the Python process where ``atexit`` never runs.

Caveat of PR_SET_PDEATHSIG: the "parent" is the *thread* that forked. Only the main thread
lives as long as the process, so children started from other threads (``asyncio.to_thread``)
rely on ``stop()`` and ``atexit`` alone.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import ctypes
import datetime as dt
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "LOG_TAIL_LINES",
    "ManagedProcess",
    "ProcessError",
    "StopOnExit",
    "child_env",
    "free_port",
    "http_probe",
    "tail",
]

LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1
_ROOT = Path(__file__).resolve().parent.parent


class ProcessError(RuntimeError):
    """A child failed to start, become ready or stop in time; the message names its log file."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or why it cannot be read."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))  # the last 64 KiB hold far more than 40 lines
            data = fh.read().decode(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(data.splitlines()[-lines:])


def child_env(*, drop_prefixes: Iterable[str] = (), import_repo: bool = False) -> dict[str, str]:
    """This process's environment for a child, without what would point it elsewhere.

    A developer's KUBECONFIG and proxies never apply (children talk to loopback only);
    variables starting with ``drop_prefixes`` are left out (a child that reads its config from
    such variables must not pick up ours); ``import_repo`` puts this repository first on
    PYTHONPATH for ``python -m`` children.
    """
    prefixes = tuple(drop_prefixes)
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "KUBECONFIG" and not (prefixes and k.startswith(prefixes))
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if import_repo:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
    return env


def http_probe(
    url: str,
    ctx: ssl.SSLContext | None = None,
    expect: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> str | None:
    """A readiness probe: None once ``GET url`` answers 2xx (containing ``expect``), else why."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            body = resp.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return f"GET {url}: HTTP {e.code} {e.read(2048).decode(errors='replace').strip()[:300]}"
    except (OSError, ssl.SSLError) as e:
        return f"GET {url}: {e}"
    if expect is not None and expect not in body:
        return f"GET {url}: unexpected answer {body.strip()[:200]!r}"
    return None


class StopOnExit(abc.ABC):
    """``with`` support for a handle on a started child: leaving the block stops it."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the child (and wait for it)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Dying with the parent


def _prctl() -> Any:
    # Resolved in the parent: loading a symbol between fork and exec could deadlock on a lock
    # another thread held at fork time.
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux/glibc: atexit and process groups still apply
        return None


_PRCTL = _prctl()


def _die_with_parent() -> Callable[[], None] | None:
    """The child's setup between fork and exec, or None when it cannot help (see the caveat)."""
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    parent_pid = os.getpid()
    prctl = _PRCTL

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent already died before prctl took effect
            os._exit(1)

    return setup


_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        with contextlib.suppress(Exception):
            p.stop(timeout=5)


# ---------------------------------------------------------------------------------------------
# The process


class ManagedProcess:
    """One long-running child: own process group, output appended to a log file.

    Failures raise ``error`` (a :class:`ProcessError` subclass, so that each caller keeps its
    own exception type) naming the log file and quoting its end. ``stdin_pipe`` gives the child
    a pipe only we hold, so a child that exits on EOF also goes when this process dies.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        stdin_pipe: bool = False,
        error: type[ProcessError] = ProcessError,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stdin_pipe = stdin_pipe
        self.error = error
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} log={self.log_path}>"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ManagedProcess:
        if self.alive():
            raise self.error(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appending keeps the history of restarts in one file, separated by a header line.
        with self.log_path.open("ab") as log:
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            log.write(f"=== devcluster {stamp}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop() kills grandchildren too
                    preexec_fn=_die_with_parent(),  # noqa: PLW1509 (needed for pdeathsig)
                )
            except OSError as e:
                raise self.error(f"cannot start {self.name} ({self.argv[0]}): {e}") from e
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    def send_signal(self, sig: int) -> None:
        if self.alive() and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop the whole process group (``sig``, then SIGKILL after ``timeout``); exit code.

        Idempotent; closing our end of a stdin pipe comes first, as the child may exit on EOF.
        """
        if self.proc is None:
            return None
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            self.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        # Whatever else is left in the group (grandchildren) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would; no graceful shutdown."""
        self.stop(timeout=0.1, sig=signal.SIGKILL)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines)

    def output(self, limit: int = 1 << 20) -> str:
        """What the child logged since its latest start (up to ``limit`` bytes)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read(limit).decode(errors="replace")
        except OSError:
            return ""

    def failure(self, what: str) -> ProcessError:
        """An error naming the log file and quoting its end."""
        return self.error(
            f"{self.name} {what}; log: {self.log_path}\n"
            f"--- last lines of {self.log_path.name} ---\n{self.tail()}"
        )

    def wait_ready(
        self, probe: Callable[[], str | None], timeout: float, interval: float = 0.2
    ) -> None:
        """Poll ``probe`` (None = ready, else why not) until ready, exit, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise self.failure(f"exited with code {self.proc.returncode} during startup")
            why = probe()
            if why is None:
                return
            if time.monotonic() >= deadline:
                raise self.failure(f"did not become ready within {timeout:.0f}s (last: {why})")
            time.sleep(interval)

    def wait_for_log(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait until the child logs a line matching ``pattern`` (since its latest start)."""
        found: list[re.Match[str]] = []

        def probe() -> str | None:
            m = pattern.search(self.output())
            if m is None:
                return f"no output matching {pattern.pattern!r} yet"
            found.append(m)
            return None

        self.wait_ready(probe, timeout, interval=0.02)
        return found[0]
