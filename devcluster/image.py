"""The project's container image, built from its Dockerfile: ``python -m devcluster.image``.

Owns everything between the Dockerfile and a running container:

- the engine: Docker when an engine answers ``docker info`` (a CLI alone is not enough), else
  Debian's ``buildah`` with vfs storage under the cache and chroot isolation (no daemon);
- the base (the Dockerfile's ``PYTHON_IMAGE``): ``python:3.11-slim-bookworm`` when Docker Hub
  is reachable, else a bookworm root file system built from Debian packages by ``mmdebstrap``
  and imported as an image, cached under a tag that is the hash of its package list;
- the package index: the machine's pip configuration and CA bundle, handed to the build as the
  Dockerfile's two build secrets (never written to a layer);
- the build cache: the image is tagged with the hash of its build context and base, so a warm
  build is a lookup;
- :class:`Container`: the built image run with a command, mounts and environment, on the host's
  network (how the tests and ``make demo IMAGE=1`` start ``serve`` from the image).

``make image`` prints the engine, base, build time, size and the time until ``serve`` answers
``/readyz``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devcluster import build, registries

__all__ = [
    "BASE_PACKAGES",
    "IMAGE_NAME",
    "Built",
    "Container",
    "ImageError",
    "Mount",
    "build_image",
    "engine",
    "serving",
]

ROOT = Path(__file__).resolve().parent.parent
IMAGE_NAME = "localhost/image-compat-extender"
BASE_NAME = "localhost/image-compat-extender-base"
DOCKER_HUB_BASE = "docker.io/library/python:3.11-slim-bookworm"
SUITE = "bookworm"
# What the Dockerfile needs from its base: python3 -m venv, the CA bundle pip verifies with,
# useradd/groupadd, and the C++ runtime google-re2's wheel links against.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd", "libstdc++6")
# Documentation, manual pages and translations are left out of the base, as the slim image does.
_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The build context as .dockerignore lets it through; their hash is the image's cache key.
_CONTEXT = (
    "Dockerfile",
    "requirements.lock",
    "pyproject.toml",
    "README.md",
    "extender",
    "deploy/image",
)
# pip settings that matter to reach an index; host paths (find-links to a directory, cert) are
# not, since the build cannot see them (the CA comes as its own secret).
_PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout",
             "retries", "proxy", "no-index")  # fmt: skip
_BUILD_TIMEOUT_S = 1800.0


class ImageError(RuntimeError):
    """The image could not be built or run; the message includes the engine's output tail."""


def _log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Engines


def docker_engine_runs() -> bool:
    """True when a Docker engine answers; the CLI without a daemon does not count."""
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def docker_hub_reachable(timeout: float = 5.0) -> bool:
    """True when Docker Hub's registry answers its API root (with 401, as it does anonymously)."""
    try:
        with urllib.request.urlopen("https://registry-1.docker.io/v2/", timeout=timeout):
            return True
    except urllib.error.HTTPError as e:
        return e.code == 401
    except (OSError, ValueError):
        return False


def _engine_env() -> dict[str, str]:
    # The engine's own environment only: buildah's chroot isolation hands its environment to
    # RUN steps, and the host's PIP_* variables (host paths) must not leak into the build.
    keep = ("PATH", "HOME", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", _PATH)
    env["BUILDAH_ISOLATION"] = "chroot"
    env["DOCKER_BUILDKIT"] = "1"  # RUN --mount=type=secret needs BuildKit
    return env


@dataclass(frozen=True)
class Engine:
    """A container engine's command line: ``docker`` or ``buildah`` with the project's storage."""

    name: str
    argv: tuple[str, ...]

    def run(
        self, *args: str, timeout: float = 300.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*self.argv, *args]
        try:
            done = subprocess.run(
                cmd, env=_engine_env(), capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise ImageError(f"`{' '.join(cmd)}` took longer than {timeout:.0f}s") from e
        if check and done.returncode != 0:
            raise ImageError(
                f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n"
                + _tail(done.stdout + done.stderr)
            )
        return done

    def exists(self, ref: str) -> bool:
        verb = ["image", "inspect"] if self.name == "docker" else ["inspect", "--type", "image"]
        return self.run(*verb, ref, check=False).returncode == 0

    def image_id(self, ref: str) -> str:
        if self.name == "docker":
            return self.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        return self.run(
            "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref
        ).stdout.strip()

    def config(self, ref: str) -> dict[str, object]:
        """The image's OCI config section (User, Entrypoint, Cmd, Env, ...)."""
        if self.name == "docker":
            out = self.run("image", "inspect", "--format", "{{json .Config}}", ref).stdout
            return dict(json.loads(out))
        doc = json.loads(self.run("inspect", "--type", "image", ref).stdout)
        return dict(doc["OCIv1"]["config"])

    def compressed_layers(self, ref: str) -> list[int]:
        """The gzip-compressed layer sizes: what a registry stores and a node pulls."""
        with tempfile.TemporaryDirectory(prefix="image-oci-") as tmp:
            layout = Path(tmp) / "layout"
            if self.name == "docker":
                archive = Path(tmp) / "image.tar"
                self.run("save", "-o", str(archive), ref, timeout=600)
                # docker save keeps layers uncompressed; gzip them as a push would.
                sizes = []
                with tarfile.open(archive) as tar:
                    manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
                    for name in manifest[0]["Layers"]:
                        blob = tar.extractfile(name)
                        assert blob is not None
                        sizes.append(len(gzip.compress(blob.read(), compresslevel=6)))
                return sizes
            self.run("push", "--quiet", ref, f"oci:{layout}", timeout=600)
            index = json.loads((layout / "index.json").read_text())
            digest = index["manifests"][0]["digest"].split(":", 1)[1]
            manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
            return [int(layer["size"]) for layer in manifest["layers"]]

    def size(self, ref: str) -> int:
        """Bytes on disk, unpacked (what `docker images` shows)."""
        if self.name == "docker":
            return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout)
        # The layers' unpacked sizes from the manifest: vfs storage keeps every layer as a full
        # copy, so the sizes buildah reports for its storage would count the base twice.
        doc = json.loads(self.run("inspect", "--type", "image", ref).stdout)
        return sum(int(layer["size"]) for layer in json.loads(doc["Manifest"])["layers"])


def storage_dir() -> Path:
    return build.cache_dir() / "image"


def buildah_engine() -> Engine:
    store = storage_dir()
    return Engine(
        "buildah",
        (
            "buildah",
            "--root",
            str(store / "storage"),
            "--runroot",
            str(store / "run"),
            "--storage-driver",
            "vfs",
        ),
    )


def engine() -> Engine:
    """Docker when its engine runs, else buildah (installed from Debian when missing)."""
    choice = os.environ.get("IMAGE_ENGINE", "")
    if choice == "docker" or (not choice and docker_engine_runs()):
        return Engine("docker", ("docker",))
    registries.ensure_debian_packages(["buildah"])
    return buildah_engine()


# ---------------------------------------------------------------------------------------------
# The base image


def base_key() -> str:
    recipe = {"suite": SUITE, "packages": BASE_PACKAGES, "dpkg": _DPKG_OPTIONS, "path": _PATH}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def debian_base(eng: Engine) -> str:
    """The bookworm base built from Debian packages, imported once per package list."""
    ref = f"{BASE_NAME}:{base_key()}"
    if eng.exists(ref):
        return ref
    registries.ensure_debian_packages(["mmdebstrap"])
    _log(f"building a {SUITE} base from Debian packages: {' '.join(BASE_PACKAGES)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="image-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--variant=essential",
            f"--include={','.join(BASE_PACKAGES)}",
            # usr-is-merged instead of usrmerge, which would pull perl into the image.
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            *(f"--dpkgopt={o}" for o in _DPKG_OPTIONS),
            "--format=tar",
            SUITE,
            str(tarball),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise ImageError(f"mmdebstrap failed:\n{_tail(done.stdout + done.stderr)}")
        if eng.name == "docker":
            eng.run("import", "--change", f"ENV PATH={_PATH}", "--change", 'CMD ["python3"]',
                    str(tarball), ref)  # fmt: skip
        else:
            container = eng.run("from", "scratch").stdout.strip()
            try:
                eng.run("add", container, str(tarball), "/")
                eng.run("config", "--env", f"PATH={_PATH}", "--cmd", "python3", container)
                eng.run("commit", "--quiet", container, ref)
            finally:
                eng.run("rm", container, check=False)
    _log(f"base {ref} in {time.monotonic() - started:.0f}s")
    return ref


def base_image(eng: Engine) -> str:
    """The Dockerfile's PYTHON_IMAGE: ``$PYTHON_IMAGE``, Docker Hub's slim image, or Debian's."""
    if os.environ.get("PYTHON_IMAGE"):
        return os.environ["PYTHON_IMAGE"]
    if os.environ.get("IMAGE_BASE") != "debian" and docker_hub_reachable():
        return DOCKER_HUB_BASE
    return debian_base(eng)


# ---------------------------------------------------------------------------------------------
# Build secrets: the machine's package index settings


def _pip_config() -> dict[str, str]:
    """pip's settings here (files, then PIP_* variables), by key, the last one winning."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    found: dict[str, str] = {}
    # Later lines win: pip lists files from global to user to site, then the environment.
    for line in out.splitlines():
        name, _, value = line.partition("=")
        key = name.rsplit(".", 1)[-1]
        found[key] = value.strip().strip("'\"")
    return found


def _ca_bundle(pip_settings: Mapping[str, str]) -> Path | None:
    for candidate in (
        os.environ.get("PIP_CERT"),
        pip_settings.get("cert"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def write_secrets(directory: Path) -> dict[str, Path]:
    """pip.conf and ca.crt for the Dockerfile's secrets, as this machine's pip sees them."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    found = _pip_config()
    settings = {k: v for k, v in found.items() if k in _PIP_KEYS}
    if found.get("find-links", "").startswith(("http://", "https://")):
        settings["find-links"] = found["find-links"]
    conf = directory / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(settings.items())))
    conf.chmod(0o600)
    secrets = {"pip.conf": conf}
    ca = _ca_bundle(found)
    if ca is not None:
        shutil.copy(ca, directory / "ca.crt")
        secrets["ca.crt"] = directory / "ca.crt"
    return secrets


# ---------------------------------------------------------------------------------------------
# The build


def _context_files() -> list[Path]:
    files: list[Path] = []
    for name in _CONTEXT:
        path = ROOT / name
        if path.is_dir():
            files += [
                p
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            ]
        else:
            files.append(path)
    return sorted(files)


def context_key(base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in _context_files():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Built:
    """A built image: its reference, engine, base, and what the build cost."""

    ref: str
    engine: Engine
    base: str
    seconds: float
    cached: bool


def _lock() -> contextlib.AbstractContextManager[None]:
    """One image build at a time per cache (worktrees and pytest sessions share the storage)."""
    return build.file_lock(storage_dir() / ".lock", "image build")


def build_image(*, force: bool = False) -> Built:
    """Build the Dockerfile (or find it already built for this context and base)."""
    with _lock():
        return _build_image(force=force)


def _build_image(*, force: bool) -> Built:
    started = time.monotonic()
    eng = engine()
    base = base_image(eng)
    # Our Debian base by its ID (rebuilt means different); any other base by its name, as it
    # may not be pulled yet (`--force` rebuilds on a newer one).
    base_id = eng.image_id(base) if base.startswith(BASE_NAME) else base
    ref = f"{IMAGE_NAME}:ctx-{context_key(base_id)}"
    if not force and eng.exists(ref):
        eng.run("tag", ref, f"{IMAGE_NAME}:latest")
        return Built(ref, eng, base, time.monotonic() - started, cached=True)
    _log(f"building {ref} with {eng.name} from {base}")
    with tempfile.TemporaryDirectory(prefix="image-secrets-") as tmp:
        secrets = write_secrets(Path(tmp))
        args = ["build"] if eng.name == "docker" else ["bud", "--isolation", "chroot"]
        for sid, path in secrets.items():
            args += ["--secret", f"id={sid},src={path}"]
        args += ["--build-arg", f"PYTHON_IMAGE={base}", "-t", ref, "-f", str(ROOT / "Dockerfile")]
        eng.run(*args, str(ROOT), timeout=_BUILD_TIMEOUT_S)
    eng.run("tag", ref, f"{IMAGE_NAME}:latest")
    if eng.name == "buildah":
        # Images of earlier contexts are the only thing that grows the vfs storage.
        _prune(eng, keep={ref})
    return Built(ref, eng, base, time.monotonic() - started, cached=False)


def _prune(eng: Engine, keep: set[str], retain: int = 3) -> None:
    """Delete all but the ``retain`` newest images of earlier contexts.

    Several checkouts share the storage, so the newest few stay; an image a container still
    uses stays too (no --force).
    """
    out = eng.run("images", "--json", check=False).stdout or "[]"
    ours = [
        image
        for image in json.loads(out)
        if any(n.startswith(f"{IMAGE_NAME}:ctx-") for n in image.get("names") or [])
        and not keep.intersection(image.get("names") or [])
    ]
    ours.sort(key=lambda image: int(image.get("created", 0)), reverse=True)
    for image in ours[retain:]:
        eng.run("rmi", image["id"], check=False)


# ---------------------------------------------------------------------------------------------
# Running it


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


class Container:
    """The image with one command, on the host's network; ``argv()`` is what to run.

    With buildah, a working container is created from the image first (``remove()`` deletes
    it); ``buildah run`` applies the image's USER and WORKDIR but not its ENTRYPOINT, so the
    command is given whole. With docker, ``docker run --rm`` does it all.
    """

    def __init__(self, built: Built) -> None:
        self.built = built
        self.engine = built.engine
        self.name = f"image-compat-{uuid.uuid4().hex[:12]}"
        self._created = False

    def argv(
        self,
        command: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> list[str]:
        """The command line; ``user`` overrides the image's USER (to inspect as root)."""
        env = env or {}
        as_user = ["--user", user] if user else []
        if self.engine.name == "docker":
            out = [*self.engine.argv, "run", "--rm", "--name", self.name, "--network", "host"]
            out += ["--read-only", "--tmpfs", "/tmp", "--entrypoint", command[0], *as_user]
            for m in mounts:
                out += ["-v", f"{m.source}:{m.target}{':ro' if m.read_only else ''}"]
            for k, v in env.items():
                out += ["-e", f"{k}={v}"]
            return [*out, self.built.ref, *command[1:]]
        if not self._created:
            self.engine.run("from", "--name", self.name, self.built.ref)
            self._created = True
        out = [*self.engine.argv, "run", "--isolation", "chroot", "--network", "host", *as_user]
        for m in mounts:
            options = ",ro" if m.read_only else ""
            out += ["--mount", f"type=bind,src={m.source},dst={m.target}{options}"]
        for k, v in env.items():
            out += ["--env", f"{k}={v}"]
        return [*out, self.name, "--", *command]

    def run(
        self,
        command: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` to completion (no check: the caller reads the exit code)."""
        return subprocess.run(
            self.argv(command, mounts=mounts, env=env, user=user),
            env=_engine_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rootfs(self) -> Path:
        """The container's root file system, mounted on the host (buildah only)."""
        if self.engine.name != "buildah":
            raise ImageError("rootfs() needs buildah")
        if not self._created:
            self.engine.run("from", "--name", self.name, self.built.ref)
            self._created = True
        return Path(self.engine.run("mount", self.name).stdout.strip())

    def remove(self) -> None:
        if self._created:
            self.engine.run("rm", self.name, check=False)
            self._created = False
        elif self.engine.name == "docker":
            self.engine.run("rm", "--force", self.name, check=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def engine_env() -> dict[str, str]:
    """The environment to start engine commands with (for :class:`Container.argv`)."""
    return _engine_env()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(
    built: Built,
    args: Sequence[str] = ("--feature-source=none",),
    *,
    mounts: Sequence[Mount] = (),
    env: Mapping[str, str] | None = None,
    container: Container | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
) -> Iterator[tuple[str, float]]:
    """``serve`` from the image on a loopback port: yields (base URL, seconds until /readyz).

    In ``container`` when given (left in place afterwards, to look at what serve left behind),
    else in a new one removed afterwards.
    """
    port = _free_port()
    with contextlib.ExitStack() as stack:
        if container is None:
            container = stack.enter_context(Container(built))
        argv = container.argv(
            ["image-compat-extender", "serve", f"--listen=127.0.0.1:{port}", *args],
            mounts=mounts,
            env=env,
        )
        sink = stack.enter_context(open(log, "w")) if log else subprocess.DEVNULL
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, env=_engine_env(), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            while True:
                try:
                    with urllib.request.urlopen(url + "readyz", timeout=2) as resp:
                        resp.read()
                    break
                except OSError as e:
                    if proc.poll() is not None:
                        raise ImageError(f"serve exited with {proc.returncode}") from e
                    if time.monotonic() - started > timeout:
                        raise ImageError(f"serve not ready within {timeout:.0f}s: {e}") from e
                    time.sleep(0.05)
            yield url, time.monotonic() - started
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# make image


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.image", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--compressed",
        action="store_true",
        help="also measure the compressed (pushed) size; exports the image, ~20 s",
    )
    args = parser.parse_args(argv)
    compressed: list[int] = []
    try:
        built = build_image(force=args.force)
        size = built.engine.size(built.ref)
        base_size = built.engine.size(built.base)
        with serving(built) as (_, ready_s):
            pass
        if args.compressed:
            compressed = built.engine.compressed_layers(built.ref)
    except (ImageError, registries.InstallError) as err:
        print(f"make image failed: {err}", file=sys.stderr)
        return 1
    rows = [
        ("image", f"{IMAGE_NAME}:latest = {built.ref}"),
        ("engine", built.engine.name),
        ("base", built.base),
        ("build", f"{built.seconds:.1f} s ({'cached' if built.cached else 'built'})"),
        ("size", f"{_mb(size)} unpacked (base {_mb(base_size)}, ours {_mb(size - base_size)})"),
        ("serve ready", f"{ready_s:.2f} s from `run` to /readyz 200"),
    ]
    if compressed:
        layers = " + ".join(_mb(n) for n in compressed)
        rows.insert(5, ("compressed", f"{_mb(sum(compressed))} pushed ({layers})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "ref": built.ref,
            "engine": built.engine.name,
            "base": built.base,
            "build_s": round(built.seconds, 2),
            "cached": built.cached,
            "size_bytes": size,
            "base_size_bytes": base_size,
            "serve_ready_s": round(ready_s, 3),
            "compressed_layer_bytes": compressed,
        }
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
