"""The container image, verified without a container engine.

- hadolint (a dev dependency; its wheel carries the binary) passes on the Dockerfile;
- deploy/image/install.sh, the script the Dockerfile runs, installs into a fresh virtualenv
  from the lock, and `serve` starts from there and answers the image's own HEALTHCHECK;
- what the Dockerfile declares (user, port, copied paths) matches the manifests and the
  build context .dockerignore allows.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests._support.polling import eventually
from tests.deploy.conftest import DEPLOY, ROOT, by_kind, kustomize

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes with the dev dependencies: run `make venv`"
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_declares_what_the_manifests_assume(kubectl: Path) -> None:
    steps = instructions()
    assert sum(1 for word, _ in steps if word == "FROM") == 2  # multi-stage
    users = [rest for word, rest in steps if word == "USER"]
    assert users == ["65532:65532"]
    assert [rest for word, rest in steps if word == "EXPOSE"] == ["8888"]
    assert any(word == "HEALTHCHECK" for word, _ in steps)
    objects = kustomize(kubectl, DEPLOY / "overlays" / "default")
    (extender,) = [d for d in by_kind(objects, "Deployment") if "extender" in d["metadata"]["name"]]
    pod = extender["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["containers"][0]["ports"][0]["containerPort"] == 8888


def test_package_index_settings_come_only_as_build_secrets() -> None:
    """A private index's pip.conf and CA are secret mounts of the install step, never layers."""
    steps = instructions()
    (install,) = [rest for word, rest in steps if word == "RUN" and "install-" in rest]
    assert "--mount=type=secret,id=pip.conf,target=/run/secrets/pip.conf" in install
    assert "--mount=type=secret,id=ca.crt,target=/run/secrets/ca.crt" in install
    words = ("index-url", "index_url", "trusted-host", "trusted_host", "pip_cert", "pip_config",
             "pip.conf", ".crt", "secret")  # fmt: skip
    for word, rest in steps:
        if rest != install:
            assert not [w for w in words if w in rest.lower()], f"{word} {rest}"


def test_build_context_holds_every_copied_path() -> None:
    """.dockerignore is an allow-list; every COPY source must pass it and exist."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for written in patterns:
            negate = written.startswith("!")
            pattern = written.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    for word, rest in instructions():
        if word != "COPY" or "--from=" in rest:
            continue
        for source in rest.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert included(source.rstrip("/")), f"{source} is excluded by .dockerignore"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_install_steps_into_a_fresh_venv_then_serve(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    source = tmp_path / "src"
    # The build context as the Dockerfile copies it, not the working tree.
    source.mkdir()
    for name in ("requirements.lock", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "extender", source / "extender", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["sh", str(DEPLOY / "image" / "install.sh"), str(venv), str(source)],
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Installed, not linked to the checkout.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import extender; print(extender.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert where.startswith(str(venv)), where

    port = _free_port()
    serve_env = {
        **env,
        "IMAGE_COMPAT_LISTEN": f"127.0.0.1:{port}",
        "IMAGE_COMPAT_FEATURE_SOURCE": "none",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(venv / "bin" / "image-compat-extender"), "serve"],
        env=serve_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    return True
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                return False

        eventually(
            healthy, lambda: f"/healthz: {(tmp_path / 'serve.log').read_text()}", interval=0.2
        )
        # The image's HEALTHCHECK script, with the same environment.
        check = subprocess.run(
            [str(venv / "bin" / "python"), str(DEPLOY / "image" / "healthcheck.py")],
            env=serve_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
