"""Command line for developers: ``python -m devcluster build|up|down|env|status``.

``up`` starts a control plane in the background under a small supervisor process (so the
components die with it, and ``down`` only has to stop the supervisor), waits until it is ready
and prints the shell lines to use it. ``env`` prints them again; ``down`` stops everything.
State lives in the working directory (default ``$IMAGE_COMPAT_CACHE/cluster``):
``state.json``, ``pids``, ``supervisor.log``, ``logs/<component>.log``, ``admin.kubeconfig``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from devcluster import build, registries
from devcluster.processes import tail

_UP_TIMEOUT_S = 300.0  # includes building the binaries on a warm Go cache
_DOWN_TIMEOUT_S = 60.0


def _default_workdir() -> Path:
    return build.cache_dir() / "cluster"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _read_state(workdir: Path) -> dict[str, Any] | None:
    """The running cluster's state, or None when none runs (stale files are ignored)."""
    try:
        state: dict[str, Any] = json.loads((workdir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if _alive(int(state.get("supervisor", 0))) else None


def _env_lines(state: dict[str, Any]) -> str:
    return f'export KUBECONFIG={state["kubeconfig"]}\nexport PATH="{state["bin_dir"]}:$PATH"\n'


def _supervise(workdir: Path) -> int:
    """Run a control plane until SIGTERM/SIGINT; write state.json once it is ready."""
    from devcluster.controlplane import ControlPlane

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    cp = ControlPlane(workdir=workdir, cleanup=False)
    try:
        cp.start()
        pids = [p.pid for p in cp.processes() if p.pid is not None]
        (workdir / "pids").write_text(" ".join(map(str, pids)) + "\n")
        state = {
            "supervisor": os.getpid(),
            "server": cp.server,
            "kubeconfig": str(cp.kubeconfig),
            "bin_dir": str(build.bin_dir()),
            "logs": str(cp.log_dir),
            "pids": pids,
        }
        tmp = workdir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(workdir / "state.json")  # atomic: `up` never reads half a file
        print(f"devcluster ready: {cp.server}", flush=True)
        while not stop.wait(1.0):
            dead = [p.name for p in cp.processes() if not p.alive()]
            if dead:
                print(f"devcluster: {', '.join(dead)} exited; see {cp.log_dir}", flush=True)
                return 1
        return 0
    finally:
        (workdir / "state.json").unlink(missing_ok=True)
        cp.stop(remove=False)


def _up(workdir: Path, foreground: bool) -> int:
    state = _read_state(workdir)
    if state:
        print(f"# devcluster already running at {state['server']} (workdir {workdir})")
        print(_env_lines(state), end="")
        return 0
    # Fresh cluster each time: stale etcd data or certificates from an old run don't mix.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    build.build_all()
    if foreground:
        print(f"# devcluster starting in the foreground (workdir {workdir}); Ctrl-C stops it")
        threading.Thread(target=_print_env_when_ready, args=(workdir,), daemon=True).start()
        return _supervise(workdir)
    log = (workdir / "supervisor.log").open("ab")
    sup = subprocess.Popen(
        [sys.executable, "-m", "devcluster", "_supervise", f"--workdir={workdir}"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives this command and the terminal's Ctrl-C
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + _UP_TIMEOUT_S
    while time.monotonic() < deadline:
        state = _read_state(workdir)
        if state:
            print(f"# devcluster running at {state['server']}; logs in {state['logs']}")
            print(f"# use it with:  eval $(python -m devcluster env --workdir={workdir})")
            print(_env_lines(state), end="")
            return 0
        if sup.poll() is not None:
            break
        time.sleep(0.2)
    if sup.poll() is None:
        sup.terminate()
    print(
        f"devcluster: failed to start; see {workdir}\n{tail(workdir / 'supervisor.log')}",
        file=sys.stderr,
    )
    return 1


def _print_env_when_ready(workdir: Path) -> None:
    deadline = time.monotonic() + _UP_TIMEOUT_S
    while time.monotonic() < deadline:
        state = _read_state(workdir)
        if state:
            print(_env_lines(state), end="", flush=True)
            return
        time.sleep(0.2)


def _down(workdir: Path) -> int:
    state = _read_state(workdir)
    if state is None:
        print(f"# no devcluster running in {workdir}")
        return 0
    sup = int(state["supervisor"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(sup, signal.SIGTERM)
    deadline = time.monotonic() + _DOWN_TIMEOUT_S
    while _alive(sup) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(sup):
        # Its children have PR_SET_PDEATHSIG: killing the supervisor takes them along.
        with contextlib.suppress(ProcessLookupError):
            os.kill(sup, signal.SIGKILL)
    print(f"# devcluster stopped; logs kept in {workdir / 'logs'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser(
        "build", help="build the Go binaries into the cache (no-op if present)"
    )
    p_build.add_argument("names", nargs="*", help="only these binaries (default: all)")
    p_build.add_argument("--force", action="store_true", help="rebuild even if present")
    cmds = {
        "up": "start etcd, kube-apiserver and kube-scheduler in the background",
        "down": "stop the background control plane",
        "env": "print shell lines (KUBECONFIG, PATH) for the running control plane",
        "status": "say whether a control plane runs, and where",
        "_supervise": argparse.SUPPRESS,
    }
    for name, help_text in cmds.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--workdir", type=Path, default=_default_workdir())
        if name == "up":
            p.add_argument("--foreground", action="store_true", help="run until Ctrl-C")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            # The Debian-packaged tools (docker-registry, htpasswd) are part of the build, so a
            # fresh machine gets everything the tests need from this one command.
            if not args.names:
                registries.ensure_debian_packages()
            paths = build.build_all(args.names or None, force=args.force)
            print(build.describe())
            print(f"binaries: {next(iter(paths.values())).parent}")
            return 0
        workdir: Path = args.workdir.expanduser().resolve()
        if args.cmd == "up":
            return _up(workdir, args.foreground)
        if args.cmd == "down":
            return _down(workdir)
        if args.cmd == "_supervise":
            return _supervise(workdir)
        state = _read_state(workdir)
        if state is None:
            print(
                f"devcluster: no control plane running in {workdir}; "
                "start one with `python -m devcluster up`",
                file=sys.stderr,
            )
            return 1
        if args.cmd == "env":
            print(_env_lines(state), end="")
        else:
            print(json.dumps(state, indent=1))
        return 0
    except (build.BuildError, registries.InstallError) as e:
        print(f"devcluster: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
