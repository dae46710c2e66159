"""The container image, built from the Dockerfile and run (``make image``'s build, cached).

Built with docker where an engine runs, else buildah on a base from Debian packages (see
devcluster/image.py); the first run on a machine builds it, later runs find it by its build
context's hash. Then, from the image itself:

- its config: UID/GID 65532, the entrypoint and command, /tmp as the working directory;
- as that user nothing outside /tmp and Debian's other sticky scratch directories (/var/tmp,
  /run/lock) is writable, and serve leaves those empty; and serve answers with the root file
  system mounted read-only and a tmpfs on /tmp, as a pod with readOnlyRootFilesystem runs it;
  so a read-only root file system with an emptyDir on /tmp changes nothing for it;
- ``pip check`` passes in its virtualenv; no compiler, no pip cache, no build tree and no
  trace of the package index's build secrets left over;
- ``serve`` on loopback answers /healthz and /readyz, and with a features file and spec map
  mounted in, filter and prioritize answer exactly what the checkout's own server answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import image
from tests.policy.helpers import PREFERRED_FALLBACK
from tests.server.test_serve import NODEFEATURES, POD

pytestmark = pytest.mark.integration

VENV = "/opt/image-compat-extender"
UID = 65532


@pytest.fixture(scope="module")
def built() -> image.Built:
    return image.build_image()


@pytest.fixture(scope="module")
def container(built: image.Built) -> Iterator[image.Container]:
    # One for the module: with buildah's vfs storage, each new container is a full copy.
    with image.Container(built) as c:
        yield c


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_config_runs_serve_as_65532_from_tmp(built: image.Built) -> None:
    config = built.engine.config(built.ref)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["image-compat-extender"]
    assert config["Cmd"] == ["serve"]
    assert config["WorkingDir"] == "/tmp"
    entries = config["Env"]
    assert isinstance(entries, list)
    env = dict(str(e).partition("=")[::2] for e in entries)
    assert env["PATH"].startswith(f"{VENV}/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_runs_as_non_root_and_writes_only_tmp(container: image.Container) -> None:
    assert _ok(container.run(["id", "-u"])).split() == [str(UID)]
    assert _ok(container.run(["id", "-g"])).split() == [str(UID)]
    # Everything this user could write on the image's own file system (-xdev: not /proc, /dev).
    # Directories it cannot read are not writable either; find's complaints about them go.
    find = "find / -xdev -writable -prune 2>/dev/null || true"
    writable = _ok(container.run(["sh", "-c", find])).split()
    if container.engine.name == "docker":
        # docker runs it with --read-only and a tmpfs on /tmp, as the Deployment does.
        assert sorted(writable) == ["/tmp"]
    else:
        # The sticky scratch directories Debian ships (/var/lock is a link to /run/lock).
        # buildah sometimes mounts /run on its own, which -xdev then leaves out.
        assert set(writable) - {"/run/lock"} == {"/tmp", "/var/lock", "/var/tmp"}
    # What serve wrote while it ran, besides its working directory /tmp.
    with (
        image.serving(container.built, container=container) as (url, _),
        urllib.request.urlopen(url + "healthz", timeout=5) as resp,
    ):
        assert resp.status == 200
    assert _ok(container.run(["find", "/var/tmp", "/run/lock/", "-mindepth", "1"])) == ""


def _read_only_root(container: image.Container, command: list[str]) -> list[str]:
    """``command`` as the image's user in its root file system mounted read-only, with a tmpfs
    on /tmp: a pod's readOnlyRootFilesystem with an emptyDir, which ``buildah run`` cannot do.
    A private mount namespace (util-linux unshare), so the mounts end with the process."""
    config = container.engine.config(container.built.ref)
    root = container.rootfs()
    env = [str(e) for e in config["Env"]]  # type: ignore[attr-defined]
    script = (
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" '
        '&& mount -t tmpfs -o mode=1777 tmpfs "$0/tmp" && mount -t proc proc "$0/proc" '
        '&& mount --rbind /dev "$0/dev" && cd "$0$1" && shift && exec "$@"'
    )
    return [
        "unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root),
        str(config["WorkingDir"]), "chroot", f"--userspec={config['User']}", str(root),
        "/usr/bin/env", "-i", "HOME=/nonexistent", *env, *command,
    ]  # fmt: skip


def test_serves_with_a_read_only_root(container: image.Container, tmp_path: Path) -> None:
    if container.engine.name == "docker":
        # Container.argv runs docker with --read-only and a tmpfs on /tmp already.
        with (
            image.serving(container.built, container=container) as (url, _),
            urllib.request.urlopen(url + "healthz", timeout=5) as resp,
        ):
            assert resp.status == 200
        return
    port = image._free_port()
    probe = _read_only_root(container, ["sh", "-c", "touch /var/tmp/x /opt/x 2>&1; touch /tmp/x"])
    done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Read-only file system") == 2, done.stdout
    serve = ["image-compat-extender", "serve", f"--listen=127.0.0.1:{port}"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        _read_only_root(container, [*serve, "--feature-source=none"]),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_pip_check_passes(container: image.Container) -> None:
    out = _ok(container.run(["python", "-m", "pip", "check"]))
    assert "No broken requirements found." in out
    assert _ok(container.run(["sh", "-c", "command -v python"])).strip() == f"{VENV}/bin/python"


def test_no_compiler_pip_cache_build_tree_or_secrets(container: image.Container) -> None:
    script = (
        "import os, shutil\n"
        "for tool in ('gcc', 'cc', 'c++', 'g++', 'clang', 'make', 'ld'):\n"
        "    if shutil.which(tool, path='/usr/local/bin:/usr/bin:/bin'): print('tool', tool)\n"
        "for top in ('/root', '/home', '/tmp', '/nonexistent', '/opt', '/var/cache'):\n"
        "    for d, dirs, _ in os.walk(top):\n"
        "        if os.path.basename(d) == 'pip' and os.path.basename(os.path.dirname(d)) in "
        "('.cache', 'cache'): print('cache', d)\n"
        "for leftover in ('/src', '/usr/local/bin/install-image-compat-extender',\n"
        "                 '/run/secrets', '/etc/pip.conf', '/root/.config/pip'):\n"
        "    if os.path.exists(leftover): print('build', leftover)\n"
    )
    # As root: the caches pip would leave are under root's home, which UID 65532 cannot read.
    assert _ok(container.run(["python", "-c", script], user="0:0")) == ""


def _files(directory: Path) -> Path:
    """The features file and spec map, readable by UID 65532 once mounted."""
    (directory / "specs").mkdir(parents=True)
    (directory / "nodes.yaml").write_text(
        NODEFEATURES.format(node="new", major=6)
        + "---\n"
        + NODEFEATURES.format(node="old", major=4)
    )
    (directory / "specs" / "app.yaml").write_text(PREFERRED_FALLBACK)
    (directory / "map.yaml").write_text("- image: 'registry.example/*'\n  spec: specs/app.yaml\n")
    for path in (directory, directory / "specs"):
        path.chmod(0o755)
    for path in directory.rglob("*.yaml"):
        path.chmod(0o644)
    return directory


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def checkout_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The same serve, from this checkout, reading the same files (what the image must match)."""
    files = _files(tmp_path / "files")
    port = image._free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_COMPAT_")}
    env["IMAGE_COMPAT_SPEC_MAP"] = str(files / "map.yaml")
    log = (tmp_path / "checkout.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "extender",
            "serve",
            f"--listen=127.0.0.1:{port}",
            f"--features-file={files / 'nodes.yaml'}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "readyz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "checkout.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "checkout.log").read_text()
                time.sleep(0.1)
        yield url, files
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_serve_from_the_image_answers_as_the_checkout_does(
    built: image.Built,
    container: image.Container,
    checkout_server: tuple[str, Path],
    tmp_path: Path,
) -> None:
    checkout_url, files = checkout_server
    args = {"Pod": POD, "Nodes": None, "NodeNames": ["new", "old", "gone"]}
    with image.serving(
        built,
        ["--features-file=/etc/image-compat/nodes.yaml"],
        mounts=[image.Mount(files, "/etc/image-compat")],
        env={"IMAGE_COMPAT_SPEC_MAP": "/etc/image-compat/map.yaml"},
        container=container,
        log=tmp_path / "image.log",
    ) as (url, _):
        for probe in ("healthz", "readyz"):
            with urllib.request.urlopen(url + probe, timeout=5) as resp:
                assert resp.status == 200, probe
        answer = _post(url + "filter", args)
        assert answer["NodeNames"] == ["new"]
        assert answer == _post(checkout_url + "filter", args)
        # None passes: each rejected node is named, with why.
        rejected = {**args, "NodeNames": ["old", "gone"]}
        answer = _post(url + "filter", rejected)
        assert answer["FailedAndUnresolvableNodes"] == {
            "old": "image-compat: kernel.loadedmodule: feature missing",
            "gone": "image-compat: no NFD features",
        }
        assert answer == _post(checkout_url + "filter", rejected)
        assert _post(url + "prioritize", args) == _post(checkout_url + "prioritize", args)
    assert "Traceback" not in (tmp_path / "image.log").read_text()
