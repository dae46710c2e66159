"""Builds the devcluster's Go binaries from our two pinned Go modules and finds them again.

This module owns the build: which binaries exist (``COMPONENTS``), which upstream version each
one is (read from the committed ``go.mod`` files, so the table never drifts from what is
built), where they go (``$IMAGE_COMPAT_CACHE/bin/<stamp>/``) and when they must be rebuilt
(the stamp hashes both modules' ``go.mod``/``go.sum``, our own ``cmd/`` sources, the link flags
and ``go version``).

Small tools of our own (``TOOL_MODULES``: the benchmark's null extender, NFD's evaluator under
a timer) are stamped on their own, in ``$IMAGE_COMPAT_CACHE/bin/<module>-<hash>/``: adding or
changing one rebuilds only it, never the Kubernetes binaries.

Public API: ``binary(name)`` (builds on demand), ``build_all()``, ``COMPONENTS``,
``versions()``, ``bin_dir()``, ``component_dir()``, ``cache_dir()`` and ``BuildError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "COMPONENTS",
    "GO_MODULES",
    "TOOL_MODULES",
    "BuildError",
    "Component",
    "bin_dir",
    "binary",
    "build_all",
    "cache_dir",
    "component_dir",
    "go_env",
    "stamp",
    "versions",
]

HERE = Path(__file__).resolve().parent

# Our Go modules. They are separate so that go-containerregistry, ORAS and Helm cannot bump any
# dependency that k8s.io/kubernetes is compiled against (minimal version selection is global).
GO_MODULES: dict[str, Path] = {
    "go": HERE / "go",
    "go-oci": HERE / "go-oci",
    "go-helm": HERE / "go-helm",
}

# Our small tools, each module with a stamp of its own (see tool_stamp). go-nfdbench needs NFD,
# pinned to the versions devcluster/go builds against, but not the Kubernetes binaries' stamp.
TOOL_MODULES: dict[str, Path] = {
    "go-bench": HERE / "go-bench",
    "go-nfdbench": HERE / "go-nfdbench",
}

# The version our own tools report: they are built from this repository, not from upstream.
LOCAL_VERSION = "local"


def _module_dir(key: str) -> Path:
    return GO_MODULES[key] if key in GO_MODULES else TOOL_MODULES[key]


# How often a long build step reports that it is still alive.
_PROGRESS_EVERY_S = 20.0


class BuildError(RuntimeError):
    """A binary could not be built (no Go toolchain, compile error, ...); the message says why."""


@dataclass(frozen=True)
class Component:
    """One binary the devcluster builds.

    ``version_of`` names the Go module whose version (from our go.mod) the binary carries;
    ``ldflags_x`` are ``-X`` assignments with ``{version}``, ``{major}``, ``{minor}``
    placeholders, so binaries report their real upstream version instead of a placeholder,
    and ``{k8s_minor}``: the minor of the k8s.io/client-go its module builds against.
    """

    name: str
    module: str  # key of GO_MODULES
    package: str
    version_of: str
    description: str
    ldflags_x: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return versions()[self.name]

    def ldflags(self) -> str:
        major, minor = _major_minor(self.version)
        client_go = _module_versions(_module_dir(self.module) / "go.mod").get("k8s.io/client-go")
        k8s_minor = _major_minor(client_go or "v0.0")[1]
        xs = [
            "-X " + x.format(version=self.version, major=major, minor=minor, k8s_minor=k8s_minor)
            for x in self.ldflags_x
        ]
        # -s -w: no symbol table or DWARF; these are test tools, and it halves link time and size.
        return " ".join(["-s", "-w", *xs])


# Kubernetes stamps its version into two packages (hack/lib/version.sh does the same); without
# this the binaries report v0.0.0-master+$Format:%H$ and kubectl warns about version skew.
_K8S_X = tuple(
    f"{pkg}.{var}={val}"
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for var, val in (
        ("gitVersion", "{version}"),
        ("gitMajor", "{major}"),
        ("gitMinor", "{minor}"),
        ("gitTreeState", "clean"),
    )
)
_NFD_X = ("sigs.k8s.io/node-feature-discovery/pkg/version.version={version}",)
# As Helm's Makefile: its version, and the Kubernetes version `helm template` and `helm lint`
# assume (.Capabilities.KubeVersion; without this they say v1.20) from the client-go it uses.
_HELM_X = (
    "helm.sh/helm/v3/internal/version.version={version}",
    "helm.sh/helm/v3/internal/version.gitTreeState=clean",
    "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
    "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={k8s_minor}",
    "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
    "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={k8s_minor}",
)

COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            "etcd",
            "go",
            "go.etcd.io/etcd/server/v3",
            "go.etcd.io/etcd/server/v3",
            "etcd, at the version k8s.io/kubernetes selects",
        ),
        Component(
            "kube-apiserver",
            "go",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes",
            "Kubernetes API server",
            _K8S_X,
        ),
        Component(
            "kube-scheduler",
            "go",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes",
            "Kubernetes scheduler",
            _K8S_X,
        ),
        Component(
            "kubectl",
            "go",
            "k8s.io/kubernetes/cmd/kubectl",
            "k8s.io/kubernetes",
            "kubectl (with built-in kustomize)",
            _K8S_X,
        ),
        Component(
            "nfd-eval",
            "go",
            "./cmd/nfd-eval",
            "sigs.k8s.io/node-feature-discovery",
            "our NFD rule-evaluation oracle for differential tests",
            _NFD_X,
        ),
        Component(
            "nfd",
            "go",
            "sigs.k8s.io/node-feature-discovery/cmd/nfd",
            "sigs.k8s.io/node-feature-discovery",
            "NFD CLI (nfd compat validate-node)",
            _NFD_X,
        ),
        Component(
            "nfd-worker",
            "go",
            "sigs.k8s.io/node-feature-discovery/cmd/nfd-worker",
            "sigs.k8s.io/node-feature-discovery",
            "NFD worker (feature discovery)",
            _NFD_X,
        ),
        Component(
            "oci-registry",
            "go-oci",
            "./cmd/oci-registry",
            "github.com/google/go-containerregistry",
            "our go-containerregistry in-memory registry (-referrers=true|false)",
        ),
        Component(
            "oras",
            "go-oci",
            "oras.land/oras/cmd/oras",
            "oras.land/oras",
            "ORAS CLI",
        ),
        Component(
            "helm",
            "go-helm",
            "helm.sh/helm/v3/cmd/helm",
            "helm.sh/helm/v3",
            "Helm CLI (lint and template of deploy/helm)",
            _HELM_X,
        ),
        Component(
            "null-extender",
            "go-bench",
            "./cmd/null-extender",
            LOCAL_VERSION,
            "a scheduler extender that passes every node and scores 0 (the protocol's floor)",
        ),
        Component(
            "count-proxy",
            "go-bench",
            "./cmd/count-proxy",
            LOCAL_VERSION,
            "a reverse proxy counting request and answer bytes per extender verb",
        ),
        Component(
            "nfd-eval-bench",
            "go-nfdbench",
            "./cmd/nfd-eval-bench",
            LOCAL_VERSION,
            "NFD's rule evaluator timed in-process (ns per compatibility set)",
        ),
    )
}


def _major_minor(version: str) -> tuple[str, str]:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return (m.group(1), m.group(2)) if m else ("0", "0")


# ---------------------------------------------------------------------------------------------
# Versions, straight from the committed go.mod files


def _module_versions(gomod: Path) -> dict[str, str]:
    """Module path -> version from the ``require`` lines of a go.mod (replaces win, as in Go)."""
    found: dict[str, str] = {}
    replaced: dict[str, str] = {}
    block = ""
    for raw in gomod.read_text().splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line.endswith("("):
            block = line[:-1].strip()
            continue
        if line == ")":
            block = ""
            continue
        words = line.split()
        if block == "" and words[0] in ("require", "replace"):
            block_kind, words = words[0], words[1:]
        else:
            block_kind = block
        if block_kind == "require" and len(words) >= 2:
            found[words[0]] = words[1]
        elif block_kind == "replace" and "=>" in words:
            i = words.index("=>")
            if len(words) > i + 2:  # `a => b vX`, not a local path
                replaced[words[0]] = words[i + 2]
    found.update(replaced)
    return found


@cache
def versions() -> dict[str, str]:
    """Binary name -> upstream version it is built from, e.g. ``{"kube-apiserver": "v1.34.4"}``."""
    mods = {key: _module_versions(path / "go.mod") for key, path in GO_MODULES.items()}
    out: dict[str, str] = {}
    for c in COMPONENTS.values():
        if c.module in TOOL_MODULES:
            out[c.name] = LOCAL_VERSION
        else:
            out[c.name] = mods[c.module].get(c.version_of, "unknown")
    return out


# ---------------------------------------------------------------------------------------------
# Locations


def cache_dir() -> Path:
    """Root of everything devcluster caches: Go module/build caches and binaries."""
    env = os.environ.get("IMAGE_COMPAT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "image-compat-extender"


_NO_GO_HELP = (
    "devcluster builds kube-apiserver, kube-scheduler, etcd, ... from Go modules and needs "
    "go >= 1.26: install it (https://go.dev/dl/) or set GO=/path/to/go."
)


def _find_go() -> str:
    explicit = os.environ.get("GO")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BuildError(f"GO={explicit} is not an executable Go toolchain. {_NO_GO_HELP}")
        return explicit
    go = shutil.which("go")
    if not go:
        for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
            if os.access(candidate, os.X_OK):
                go = candidate
                break
    if not go:
        raise BuildError(
            f"the Go toolchain was not found (no `go` on PATH, nor /usr/local/go/bin/go). "
            f"{_NO_GO_HELP}"
        )
    return go


def go_env(gocache: Path | None = None) -> dict[str, str]:
    """Environment for every ``go`` invocation: pinned caches, static binaries, no surprises."""
    env = dict(os.environ)
    root = cache_dir()
    env.update(
        GOMODCACHE=str(root / "gomod"),
        GOCACHE=str(gocache or root / "gobuild"),
        CGO_ENABLED="0",  # static binaries, as upstream ships them; no C toolchain needed
        # go.sum is committed: readonly means a missing sum is an error, never a silent edit.
        GOFLAGS="-mod=readonly",
        GOWORK="off",  # a go.work somewhere above the checkout must not change what we build
        GOTOOLCHAIN="local",  # never download another toolchain behind the developer's back
    )
    return env


@cache
def _go_version() -> str:
    go = _find_go()
    try:
        out = subprocess.run(
            [go, "version"], env=go_env(), capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"`{go} version` failed: {e}") from e
    return out.stdout.strip()


def stamp() -> str:
    """Name of the binary directory: pinned k8s version plus a hash of everything that matters."""
    h = hashlib.sha256()
    h.update(_go_version().encode())
    for key, path in sorted(GO_MODULES.items()):
        files = [path / "go.mod", path / "go.sum"]
        files += sorted(p for p in (path / "cmd").rglob("*") if p.is_file())
        for f in files:
            h.update(f"{key}/{f.relative_to(path)}\0".encode())
            h.update(f.read_bytes())
    for c in COMPONENTS.values():
        if c.module in GO_MODULES:
            h.update(f"{c.name} {c.module} {c.package} {c.ldflags()}\n".encode())
    return f"k8s-{versions()['kube-apiserver']}-{h.hexdigest()[:12]}"


def tool_stamp(key: str) -> str:
    """Directory name for one of ``TOOL_MODULES``: a hash of its files and ``go version``."""
    path = TOOL_MODULES[key]
    h = hashlib.sha256()
    h.update(_go_version().encode())
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0".encode())
        h.update(f.read_bytes())
    for c in COMPONENTS.values():
        if c.module == key:
            h.update(f"{c.name} {c.package} {c.ldflags()}\n".encode())
    return f"{key}-{h.hexdigest()[:12]}"


def bin_dir() -> Path:
    """Directory holding the Kubernetes-side binaries for the current stamp (may not exist yet)."""
    return cache_dir() / "bin" / stamp()


def component_dir(name: str) -> Path:
    """Directory holding binary ``name`` (``bin_dir()``, or its tool module's own)."""
    c = COMPONENTS[name]
    if c.module in TOOL_MODULES:
        return cache_dir() / "bin" / tool_stamp(c.module)
    return bin_dir()


# ---------------------------------------------------------------------------------------------
# Building


def _log(msg: str) -> None:
    print(f"[devcluster build] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created as needed), saying so when ``what`` has
    to wait: parallel pytest sessions, worktrees and make targets share the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another {what} to finish (lock {path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_lock() -> contextlib.AbstractContextManager[None]:
    """One builder at a time per cache (parallel pytest sessions, make test + demo, ...)."""
    return file_lock(cache_dir() / "bin" / ".lock", "devcluster build")


def _is_import_path(line: str) -> bool:
    # `go build -v` names each package it compiles on its own line; errors have spaces/colons.
    return bool(line) and " " not in line and not line.startswith("#") and ":" not in line


def _build_one(
    c: Component,
    out_dir: Path,
    *,
    gocache: Path | None = None,
    timeout_s: float = 3600.0,
    log: Callable[[str], None] = _log,
) -> float:
    """Build one binary into ``out_dir`` atomically; return the seconds it took."""
    go = _find_go()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{c.name}.tmp-{os.getpid()}"
    cmd = [go, "build", "-v", "-p", "2", "-trimpath", "-ldflags", c.ldflags(), "-o", str(tmp)]
    cmd.append(c.package)
    start = time.monotonic()
    compiled = 0
    tail: deque[str] = deque(maxlen=60)
    done = threading.Event()

    def heartbeat() -> None:
        # A cold kube-apiserver compile takes minutes; say we are alive and how far we got.
        while not done.wait(_PROGRESS_EVERY_S):
            log(f"  {c.name}: {compiled} packages compiled, {time.monotonic() - start:.0f}s")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=_module_dir(c.module),
            env=go_env(gocache),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as e:
        raise BuildError(f"cannot run {go}: {e}") from e
    ticker.start()
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n")
            if _is_import_path(line):
                compiled += 1
            else:
                tail.append(line)
            if time.monotonic() - start > timeout_s:
                proc.kill()
                raise BuildError(f"building {c.name} took longer than {timeout_s:.0f}s")
        rc = proc.wait(timeout=60)
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        tmp.unlink(missing_ok=True)
        details = "\n".join(tail) or "(no output)"
        raise BuildError(
            f"`go build {c.package}` failed in {_module_dir(c.module)} (exit {rc}):\n{details}"
        )
    tmp.replace(out_dir / c.name)
    return time.monotonic() - start


def _download_modules(key: str, timeout_s: float = 1800.0) -> None:
    """Fetch the module's dependencies first: a separate, visible step with its own errors
    (network, proxy) instead of a silent pause inside the first compile."""
    start = time.monotonic()
    _log(f"modules for devcluster/{key}: go mod download (into {go_env()['GOMODCACHE']}) ...")
    try:
        out = subprocess.run(
            [_find_go(), "mod", "download"],
            cwd=_module_dir(key),
            env=go_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"`go mod download` in devcluster/{key} took over {timeout_s:.0f}s") from e
    if out.returncode != 0:
        raise BuildError(
            f"`go mod download` failed in {_module_dir(key)} (exit {out.returncode}); is the Go "
            f"module proxy reachable (GOPROXY={os.environ.get('GOPROXY', 'default')})?\n"
            + "\n".join(out.stderr.splitlines()[-30:])
        )
    _log(f"modules for devcluster/{key}: done in {time.monotonic() - start:.1f}s")


def build_all(
    names: list[str] | None = None, *, force: bool = False, out_dir: Path | None = None
) -> dict[str, Path]:
    """Build the named binaries (default: all) unless present; return name -> path.

    ``out_dir`` overrides the stamped directories (used for timing builds in a scratch place).
    """
    selected = list(COMPONENTS) if names is None else names
    unknown = [n for n in selected if n not in COMPONENTS]
    if unknown:
        raise BuildError(f"unknown devcluster binaries {unknown}; known: {sorted(COMPONENTS)}")
    target = out_dir or bin_dir()
    paths = {n: (out_dir or component_dir(n)) / n for n in selected}
    if not force and all(p.exists() for p in paths.values()):
        return paths
    with _build_lock():
        todo = [n for n in selected if force or not paths[n].exists()]
        if not todo:
            return paths
        _log(f"building {len(todo)} binaries into {target} ({_go_version()}, 2 parallel jobs)")
        total = time.monotonic()
        # Tool modules without a go.sum have no dependencies to fetch.
        for key in sorted({COMPONENTS[n].module for n in todo}):
            if (_module_dir(key) / "go.sum").exists():
                _download_modules(key)
        for i, name in enumerate(todo, 1):
            c = COMPONENTS[name]
            _log(f"[{i}/{len(todo)}] {name} {c.version} ({c.package}) ...")
            took = _build_one(c, paths[name].parent)
            _log(f"[{i}/{len(todo)}] {name} done in {took:.1f}s")
        _log(f"all done in {time.monotonic() - total:.1f}s")
        if out_dir is None and any(COMPONENTS[n].module in GO_MODULES for n in todo):
            _prune_old_stamps(keep=target)
    return paths


def _prune_old_stamps(keep: Path, retain: int = 3) -> None:
    """Drop all but the newest few stamp directories (about 375 MB each).

    A few are retained, not one: other checkouts or branches sharing this cache may still use
    theirs, and a binary already running survives its file being unlinked anyway.
    """
    dirs = [d for d in keep.parent.iterdir() if d.is_dir() and d.name.startswith("k8s-")]
    dirs.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for old in [d for d in dirs if d != keep][retain - 1 :]:
        _log(f"removing old binaries {old}")
        shutil.rmtree(old, ignore_errors=True)


def binary(name: str) -> Path:
    """Path to a devcluster binary, building it (and only it) first when it is missing."""
    if name not in COMPONENTS:
        raise BuildError(f"unknown devcluster binary {name!r}; known: {sorted(COMPONENTS)}")
    path = component_dir(name) / name
    if not path.exists():
        build_all([name])
    return path


def describe() -> str:
    """Human-readable table of components, versions and where the binaries are."""
    rows = [
        ("binary", "version", "go package"),
        *((c.name, c.version, c.package) for c in COMPONENTS.values()),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {p}" for a, b, p in rows]
    return "\n".join(lines)


def time_cold_build(scratch: Path) -> dict[str, float]:
    """Build everything with an empty GOCACHE under ``scratch`` (module cache shared); seconds."""
    gocache = scratch / "gocache"
    out = scratch / "bin"
    timings: dict[str, float] = {}
    for c in COMPONENTS.values():
        _log(f"cold: {c.name} ...")
        timings[c.name] = _build_one(c, out, gocache=gocache)
        _log(f"cold: {c.name} done in {timings[c.name]:.1f}s")
    return timings
