"""Real OCI registries on loopback for the tests and the demo, started and stopped on free ports.

This module owns the registry processes and what they need to run:

- ``start_oci_registry(referrers=...)``: go-containerregistry's in-memory registry (our
  ``cmd/oci-registry`` main, built by ``devcluster.build``), with the OCI 1.1 referrers API on
  (``GET /v2/<name>/referrers/<digest>``) or off (clients fall back to the ``sha256-<hex>`` tag
  schema). Its data lives in memory: restarting it loses every image, so "registry down" tests
  go through ``devcluster.faultproxy`` instead.
- ``start_docker_registry(...)``: Debian's ``docker-registry`` (CNCF distribution 2.8), an
  independent implementation with no referrers API, served over TLS with a certificate from
  the devcluster test CA and htpasswd (bcrypt) basic auth, which distribution only enables
  over TLS.
- ``ensure_debian_packages(...)``: the idempotent installer for the Debian tools above
  (``docker-registry``, and ``apache2-utils`` for ``htpasswd``), called by
  ``python -m devcluster build`` and by the fixtures.

Each started registry is a ``Registry`` (a ``RegistryEndpoint`` plus its process): ``host``
("127.0.0.1:PORT"), ``scheme``, credentials and CA file where relevant, ``log_file``,
``stop()``, and a context manager. Processes run in their own process group and are killed on
``stop()``, at interpreter exit, and (when started from the main thread) when this process dies.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devcluster.pki import TestCA

__all__ = [
    "DEBIAN_PACKAGES",
    "InstallError",
    "Registry",
    "RegistryEndpoint",
    "RegistryError",
    "ensure_debian_packages",
    "start_docker_registry",
    "start_oci_registry",
]

# Debian packages the registries need, and the command each one provides.
DEBIAN_PACKAGES: dict[str, str] = {
    "docker-registry": "docker-registry",  # CNCF distribution 2.8: the registry itself
    "apache2-utils": "htpasswd",  # bcrypt htpasswd entries (distribution accepts only bcrypt)
}

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
# Both registries log "listening on 127.0.0.1:PORT" once bound (ours on stdout; distribution as
# `msg="listening on 127.0.0.1:PORT, tls"`), which lets us pass port 0 and avoid port races.
_LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")


class RegistryError(RuntimeError):
    """A registry did not start or stop as expected; the message includes its log tail."""


class InstallError(RuntimeError):
    """A Debian package could not be installed; the message says what to run by hand."""


# ---------------------------------------------------------------------------------------------
# Debian packages


# apt steps already run by this process ("update" runs at most once).
_apt_done: set[str] = set()
_apt_lock = threading.Lock()


def _installed(package: str) -> bool:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip().endswith("install ok installed")


def _missing(packages: Iterable[str]) -> list[str]:
    missing = []
    for package in packages:
        command = DEBIAN_PACKAGES.get(package)
        # A known command on PATH is enough (a developer may have it from elsewhere); otherwise
        # dpkg decides.
        if command is not None and shutil.which(command):
            continue
        if not _installed(package):
            missing.append(package)
    return missing


def ensure_debian_packages(
    packages: Iterable[str] = tuple(DEBIAN_PACKAGES), *, timeout_s: float = 900.0
) -> list[str]:
    """Install the Debian packages that are missing; return the ones installed (often none).

    Runs ``apt-get update`` once per process (only when something is missing) and then
    ``apt-get install -y --no-install-recommends``; as root directly, otherwise through
    ``sudo -n`` when that works without a password. Waits for the dpkg lock rather than failing
    when another apt is running.
    """
    wanted = list(packages)
    with _apt_lock:
        missing = _missing(wanted)
        if not missing:
            return []
        if not shutil.which("apt-get"):
            raise InstallError(
                f"missing Debian packages {missing} and no apt-get on this machine: install "
                "them with your package manager (devcluster expects Debian 12 or newer)"
            )
        prefix: list[str] = []
        if os.geteuid() != 0:
            sudo = shutil.which("sudo")
            ok = sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, check=False)
            if not ok or ok.returncode != 0:
                raise InstallError(
                    f"missing Debian packages {missing}; run as root: "
                    f"apt-get update && apt-get install -y --no-install-recommends "
                    f"{' '.join(missing)}"
                )
            prefix = [str(sudo), "-n"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        lock_wait = ["-o", "DPkg::Lock::Timeout=300"]
        steps: list[tuple[str, list[str]]] = []
        if "update" not in _apt_done:
            steps.append(("update", [*prefix, "apt-get", *lock_wait, "-q", "update"]))
        install = ["install", "-y", "--no-install-recommends", *missing]
        steps.append(("install", [*prefix, "apt-get", *lock_wait, "-q", *install]))
        print(f"[devcluster] installing Debian packages: {' '.join(missing)}", file=sys.stderr)
        for step, cmd in steps:
            try:
                proc = subprocess.run(
                    cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
                )
            except subprocess.TimeoutExpired as e:
                raise InstallError(f"`{' '.join(cmd)}` took longer than {timeout_s:.0f}s") from e
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
                raise InstallError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
            _apt_done.add(step)
        still = _missing(wanted)
        if still:
            raise InstallError(f"apt-get install finished but {still} are still missing")
        return missing


# ---------------------------------------------------------------------------------------------
# Endpoints and processes


@dataclass(frozen=True)
class RegistryEndpoint:
    """How a client reaches a registry: what oras and our HTTP helpers need, nothing more."""

    host: str  # "127.0.0.1:PORT", as in image references
    scheme: str = "http"  # "http" or "https"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # PEM bundle that verifies the registry's certificate

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def plain_http(self) -> bool:
        return self.scheme == "http"

    def ref(self, repo: str, reference: str) -> str:
        """Image reference: ``ref("app", "v1")`` or ``ref("app", "sha256:...")``."""
        sep = "@" if ":" in reference else ":"
        return f"{self.host}/{repo}{sep}{reference}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """Client TLS context trusting ``ca_file`` (None for plain HTTP)."""
        if self.plain_http:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def auth_header(self) -> dict[str, str]:
        """``Authorization: Basic ...`` when the endpoint has credentials, else nothing."""
        if self.username is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@dataclass(frozen=True)
class Registry(RegistryEndpoint):
    """A registry process we started. ``stop()`` (or leaving the ``with`` block) ends it."""

    kind: str = ""  # "oci-registry" or "docker-registry"
    referrers_api: bool = False  # whether GET /v2/<name>/referrers/<digest> is served
    log_file: Path = Path()
    workdir: Path = Path()
    pid: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def endpoint(self) -> RegistryEndpoint:
        """The plain endpoint (same host, scheme, credentials), e.g. to hand to a proxy."""
        return RegistryEndpoint(self.host, self.scheme, self.username, self.password, self.ca_file)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Terminate the registry's process group (SIGTERM, then SIGKILL); idempotent."""
        if self._proc is not None:
            _stop_process(self._proc, timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float = _STOP_TIMEOUT_S) -> None:
    if proc.poll() is None:
        # The process leads its own group (start_new_session), so this reaches any children too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
    with _live_lock:
        _live.discard(proc)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        with contextlib.suppress(Exception):
            _stop_process(proc, 5.0)


def _prctl() -> Any:
    # Resolved in the parent: loading a library between fork and exec could deadlock on a lock
    # another thread held at fork time.
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGKILL when the parent
    # thread dies, so a crashed or SIGKILLed test run leaves no registry behind.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _spawn(
    cmd: list[str],
    log_file: Path,
    cwd: Path,
    env: dict[str, str],
    *,
    stdin: int = subprocess.DEVNULL,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``cmd`` logging to ``log_file`` (appended); return it and where its log starts."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # PDEATHSIG fires when the *thread* that forked dies; only the main thread lives as long as
    # the process, so other threads (e.g. asyncio.to_thread) rely on stop() and atexit alone.
    main = threading.current_thread() is threading.main_thread()
    with log_file.open("ab") as log:
        log.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if main and _PRCTL is not None else None,  # noqa: PLW1509
        )
    with _live_lock:
        _live.add(proc)
    return proc, offset


def _wait_listening(
    proc: subprocess.Popen[bytes], log_file: Path, offset: int, what: str, timeout_s: float
) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with log_file.open("rb") as fh:
                fh.seek(offset)
                m = _LISTENING.search(fh.read(1 << 20).decode(errors="replace"))
        except OSError:
            m = None
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise RegistryError(
                f"{what} exited with code {proc.returncode} before listening; log {log_file}:\n"
                + _tail(log_file, 40)
            )
        if time.monotonic() > deadline:
            _stop_process(proc)
            raise RegistryError(
                f"{what} did not report its address within {timeout_s:.0f}s; log {log_file}:\n"
                + _tail(log_file, 40)
            )
        time.sleep(0.02)


def _wait_serving(endpoint: RegistryEndpoint, what: str, log_file: Path, timeout_s: float) -> None:
    """Poll ``GET /v2/`` until the registry answers 200 (or 401 when it has auth)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{endpoint.url}/v2/", headers=endpoint.auth_header())
        try:
            with urllib.request.urlopen(req, timeout=2, context=endpoint.ssl_context()) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, ssl.SSLError) as e:
            last = str(e)
        time.sleep(0.05)
    raise RegistryError(
        f"{what} at {endpoint.url} did not answer GET /v2/ within {timeout_s:.0f}s (last: {last});"
        f" log {log_file}:\n" + _tail(log_file, 40)
    )


def _clean_env(drop_prefix: str = "") -> dict[str, str]:
    env = dict(os.environ)
    if drop_prefix:
        for key in [k for k in env if k.startswith(drop_prefix)]:
            del env[key]
    return env


# ---------------------------------------------------------------------------------------------
# go-containerregistry


def start_oci_registry(
    workdir: Path,
    *,
    referrers: bool = True,
    quiet: bool = False,
    binary: Path | None = None,
    timeout_s: float = _START_TIMEOUT_S,
) -> Registry:
    """Start go-containerregistry's in-memory registry on a free loopback port (plain HTTP).

    ``referrers=False`` makes ``GET /v2/<name>/referrers/<digest>`` answer 404, so oras and our
    client use the ``sha256-<hex>`` tag schema. ``workdir`` gets the log file.
    """
    from devcluster import build

    exe = binary or build.binary("oci-registry")
    name = "oci-registry-referrers" if referrers else "oci-registry-tags"
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / f"{name}.log"
    cmd = [str(exe), "-listen", "127.0.0.1:0", f"-referrers={str(referrers).lower()}"]
    if quiet:
        cmd.append("-quiet")
    proc, offset = _spawn(cmd, log_file, workdir, _clean_env())
    try:
        host = _wait_listening(proc, log_file, offset, name, timeout_s)
        reg = Registry(
            host=host,
            scheme="http",
            kind="oci-registry",
            referrers_api=referrers,
            log_file=log_file,
            workdir=workdir,
            pid=proc.pid,
            _proc=proc,
        )
        _wait_serving(reg, name, log_file, timeout_s)
    except BaseException:
        _stop_process(proc)
        raise
    return reg


# ---------------------------------------------------------------------------------------------
# Debian docker-registry (CNCF distribution 2.8)


def htpasswd_entry(username: str, password: str) -> str:
    """One bcrypt htpasswd line, made by Debian's ``htpasswd`` (apache2-utils)."""
    exe = shutil.which("htpasswd")
    if exe is None:
        ensure_debian_packages(["apache2-utils"])
        exe = shutil.which("htpasswd") or "/usr/bin/htpasswd"
    # -i reads the password from stdin, so it never shows in the process list.
    out = subprocess.run(
        [exe, "-niB", "-C", "5", username],
        input=password,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        raise RegistryError(f"htpasswd failed (exit {out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip()


def _docker_registry_config(
    workdir: Path, cert: Path, key: Path, htpasswd: Path, secret: str
) -> str:
    # Written as JSON, which is YAML, so this module needs no YAML library.
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
            # No background upload purging: nothing runs that a test did not ask for.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": "127.0.0.1:0",
            "secret": secret,
            "tls": {"certificate": str(cert), "key": str(key)},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {"htpasswd": {"realm": "devcluster", "path": str(htpasswd)}},
        "health": {"storagedriver": {"enabled": False}},
    }
    return json.dumps(config, indent=2) + "\n"


def start_docker_registry(
    workdir: Path,
    *,
    ca: TestCA | None = None,
    username: str = "devcluster",
    password: str | None = None,
    timeout_s: float = _START_TIMEOUT_S,
) -> Registry:
    """Start Debian's ``docker-registry`` with TLS and htpasswd auth on a free loopback port.

    The serving certificate (SANs 127.0.0.1 and localhost) comes from ``ca`` (a fresh
    ``devcluster.pki.TestCA`` when None); ``Registry.ca_file`` is that CA's certificate, which
    is what clients trust. Data is kept under ``workdir/data``; ``password`` defaults to a
    random one.
    """
    from devcluster import pki

    ca = ca or pki.TestCA("devcluster-registry-ca")
    tls = workdir / "tls"
    ca_file = ca.write_cert(tls / "ca.crt")
    cert_file, key_file = ca.issue_server_cert(["127.0.0.1", "localhost"]).write(
        tls / "registry.crt", tls / "registry.key"
    )
    ensure_debian_packages(["docker-registry", "apache2-utils"])
    exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    workdir.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(16)
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(htpasswd_entry(username, password) + "\n")
    config = workdir / "config.yml"
    config.write_text(
        _docker_registry_config(workdir, cert_file, key_file, htpasswd, secrets.token_hex(16))
    )
    log_file = workdir / "docker-registry.log"
    # distribution reads REGISTRY_* variables as config overrides; none may leak in.
    cmd = [exe, "serve", str(config)]
    proc, offset = _spawn(cmd, log_file, workdir, _clean_env("REGISTRY_"))
    try:
        host = _wait_listening(proc, log_file, offset, "docker-registry", timeout_s)
        reg = Registry(
            host=host,
            scheme="https",
            username=username,
            password=password,
            ca_file=ca_file,
            kind="docker-registry",
            referrers_api=False,
            log_file=log_file,
            workdir=workdir,
            pid=proc.pid,
            _proc=proc,
        )
        _wait_serving(reg, "docker-registry", log_file, timeout_s)
    except BaseException:
        _stop_process(proc)
        raise
    return reg
