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
``stop()``, and a context manager. The processes follow ``devcluster.processes``: own process
group, killed on ``stop()``, at interpreter exit, and (when started from the main thread) when
this process dies.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devcluster.processes import (
    ManagedProcess,
    ProcessError,
    StopOnExit,
    child_env,
    http_probe,
    tail,
)

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


class RegistryError(ProcessError):
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
class Registry(RegistryEndpoint, StopOnExit):
    """A registry process we started. ``stop()`` (or leaving the ``with`` block) ends it."""

    kind: str = ""  # "oci-registry" or "docker-registry"
    referrers_api: bool = False  # whether GET /v2/<name>/referrers/<digest> is served
    log_file: Path = Path()
    workdir: Path = Path()
    pid: int = 0
    process: ManagedProcess | None = field(default=None, repr=False, compare=False)

    @property
    def endpoint(self) -> RegistryEndpoint:
        """The plain endpoint (same host, scheme, credentials), e.g. to hand to a proxy."""
        return RegistryEndpoint(self.host, self.scheme, self.username, self.password, self.ca_file)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Terminate the registry's process group (SIGTERM, then SIGKILL); idempotent."""
        if self.process is not None:
            self.process.stop(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_file, lines)


def _start_registry(
    name: str,
    cmd: list[str],
    workdir: Path,
    env: Mapping[str, str],
    timeout_s: float,
    *,
    kind: str,
    referrers_api: bool = False,
    scheme: str = "http",
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
) -> Registry:
    """Start a registry, wait until it logs its address and answers ``GET /v2/``."""
    process = ManagedProcess(
        name, cmd, workdir / f"{name}.log", env, cwd=workdir, error=RegistryError
    ).start()
    try:
        host = process.wait_for_log(_LISTENING, timeout_s).group(1)
        reg = Registry(
            host=host,
            scheme=scheme,
            username=username,
            password=password,
            ca_file=ca_file,
            kind=kind,
            referrers_api=referrers_api,
            log_file=process.log_path,
            workdir=workdir,
            pid=process.pid or 0,
            process=process,
        )
        url = f"{reg.url}/v2/"
        process.wait_ready(
            lambda: http_probe(url, reg.ssl_context(), headers=reg.auth_header()),
            timeout_s,
            interval=0.05,
        )
    except BaseException:
        process.stop(_STOP_TIMEOUT_S)
        raise
    return reg


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
    cmd = [str(exe), "-listen", "127.0.0.1:0", f"-referrers={str(referrers).lower()}"]
    if quiet:
        cmd.append("-quiet")
    return _start_registry(
        name, cmd, workdir, child_env(), timeout_s, kind="oci-registry", referrers_api=referrers
    )


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
    # distribution reads REGISTRY_* variables as config overrides; none may leak in.
    cmd = [exe, "serve", str(config)]
    return _start_registry(
        "docker-registry",
        cmd,
        workdir,
        child_env(drop_prefixes=["REGISTRY_"]),
        timeout_s,
        kind="docker-registry",
        scheme="https",
        username=username,
        password=password,
        ca_file=ca_file,
    )
