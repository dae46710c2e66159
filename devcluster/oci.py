"""Test images and compatibility artifacts in real registries, made the way users make them.

This module owns the content side of the devcluster registries:

- ``push_image`` / ``push_index``: small but real OCI images (a gzipped tar layer, an image
  config whose ``rootfs.diff_ids`` and ``os``/``architecture`` are right) pushed with our own
  code over the distribution HTTP API; the index variant has linux/amd64 and linux/arm64
  children with platform descriptors. Both return digests.
- ``attach_spec``: attaches an NFD image-compatibility spec with the real ``oras attach``
  (artifact type, layer media type, ``--distribution-spec``, an explicit creation time), and
  returns the artifact's digest.
- ``oras_discover`` and ``run_oras``: the real ``oras`` CLI against a ``RegistryEndpoint``
  (plain HTTP, or TLS with our CA and basic credentials), isolated from ``~/.docker``.
- ``get_manifest`` / ``get_blob`` / ``list_tags``: just enough reading to check round trips.

Everything is synchronous (urllib and subprocess) with timeouts, so fixtures, the demo and
async tests can all call it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devcluster.registries import RegistryEndpoint

__all__ = [
    "ANNOTATION_CREATED",
    "MEDIA_TYPE_INDEX",
    "MEDIA_TYPE_MANIFEST",
    "NFD_ARTIFACT_TYPE",
    "NFD_SPEC_MEDIA_TYPE",
    "AttachedArtifact",
    "OciError",
    "OrasError",
    "PushedImage",
    "attach_spec",
    "get_blob",
    "get_manifest",
    "list_tags",
    "oras_discover",
    "push_image",
    "push_index",
    "rfc3339",
    "run_oras",
]

NFD_ARTIFACT_TYPE = "application/vnd.nfd.image-compatibility.v1alpha1"
NFD_SPEC_MEDIA_TYPE = "application/vnd.nfd.image-compatibility.spec.v1alpha1+yaml"
ANNOTATION_CREATED = "org.opencontainers.image.created"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_ACCEPT_MANIFESTS = ", ".join(
    (
        MEDIA_TYPE_INDEX,
        MEDIA_TYPE_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_HTTP_TIMEOUT_S = 30.0
_ORAS_TIMEOUT_S = 120.0
_MAX_READ = 64 << 20  # our test content is tiny; anything bigger is a bug


class OciError(RuntimeError):
    """A registry answered something other than what the distribution spec promises."""


class OrasError(RuntimeError):
    """``oras`` exited non-zero; the message carries the command line and its stderr."""


@dataclass(frozen=True)
class PushedImage:
    """An image we pushed: its top-level digest and, for an index, each platform's manifest."""

    host: str
    repo: str
    tag: str | None
    digest: str  # of the manifest, or of the index for a multi-platform image
    media_type: str
    size: int
    platforms: dict[str, str] = field(default_factory=dict)  # "linux/arm64" -> manifest digest

    @property
    def ref(self) -> str:
        """Reference by digest, e.g. ``127.0.0.1:5000/app@sha256:...``."""
        return f"{self.host}/{self.repo}@{self.digest}"

    @property
    def tag_ref(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}" if self.tag else self.ref


@dataclass(frozen=True)
class AttachedArtifact:
    """An artifact ``oras attach`` created, as its ``--format json`` output describes it."""

    digest: str
    media_type: str
    size: int
    artifact_type: str
    annotations: dict[str, str]
    subject: str  # digest of the manifest or index it is attached to
    reference: str


def rfc3339(when: datetime) -> str:
    """``2024-05-01T12:00:00.123456Z``: UTC, RFC 3339 with optional fraction, as NFD parses it."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Distribution HTTP API


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _request(
    ep: RegistryEndpoint,
    method: str,
    url_or_path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    ok: Iterable[int] = (200,),
) -> tuple[int, dict[str, str], bytes]:
    url = url_or_path if "://" in url_or_path else ep.url + url_or_path
    # Credentials only to the registry itself: a redirect elsewhere must not carry them.
    same_host = urllib.parse.urlsplit(url).netloc == ep.host
    hdrs = {**(ep.auth_header() if same_host else {}), **(headers or {})}
    req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT_S, context=ep.ssl_context()) as r:
            status, resp_headers, data = r.status, dict(r.headers.items()), r.read(_MAX_READ)
    except urllib.error.HTTPError as e:
        status, resp_headers, data = e.code, dict(e.headers.items()), e.read(64 << 10)
    if status not in set(ok):
        text = data[:2000].decode(errors="replace")
        raise OciError(f"{method} {url}: HTTP {status}: {text}")
    return status, {k.lower(): v for k, v in resp_headers.items()}, data


def _push_blob(ep: RegistryEndpoint, repo: str, data: bytes) -> str:
    digest = _digest(data)
    status, _, _ = _request(ep, "HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
    if status == 200:
        return digest
    _, headers, _ = _request(ep, "POST", f"/v2/{repo}/blobs/uploads/", body=b"", ok=(202,))
    location = headers.get("location")
    if not location:
        raise OciError(f"upload to {ep.host}/{repo} answered 202 without a Location")
    # Location may be relative (ggcr) or absolute (distribution), and may carry a query already.
    url = urllib.parse.urljoin(ep.url + "/", location)
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    _request(
        ep,
        "PUT",
        f"{url}{sep}digest={urllib.parse.quote(digest)}",
        body=data,
        headers={"Content-Type": "application/octet-stream"},
        ok=(201,),
    )
    return digest


def _put_manifest(ep: RegistryEndpoint, repo: str, reference: str, doc: dict[str, Any]) -> str:
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    digest = _digest(body)
    _, headers, _ = _request(
        ep,
        "PUT",
        f"/v2/{repo}/manifests/{reference}",
        body=body,
        headers={"Content-Type": doc["mediaType"]},
        ok=(201,),
    )
    answered = headers.get("docker-content-digest")
    if answered and answered != digest:
        raise OciError(f"registry stored {repo} manifest as {answered}, we computed {digest}")
    return digest


def get_manifest(
    ep: RegistryEndpoint, repo: str, reference: str, *, accept: str = _ACCEPT_MANIFESTS
) -> tuple[dict[str, Any], str, str]:
    """Fetch a manifest or index; return (document, media type, digest of the bytes)."""
    _, headers, body = _request(
        ep, "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept}
    )
    digest = _digest(body)
    if reference.startswith("sha256:") and digest != reference:
        raise OciError(f"{repo}@{reference}: body digest is {digest}")
    doc = json.loads(body)
    media_type = doc.get("mediaType") or headers.get("content-type", "")
    return doc, media_type, digest


def get_blob(ep: RegistryEndpoint, repo: str, digest: str) -> bytes:
    """Fetch a blob (following redirects) and verify its digest."""
    _, _, body = _request(ep, "GET", f"/v2/{repo}/blobs/{digest}")
    if _digest(body) != digest:
        raise OciError(f"{repo} blob {digest}: content digest is {_digest(body)}")
    return body


def list_tags(ep: RegistryEndpoint, repo: str) -> list[str]:
    _, _, body = _request(ep, "GET", f"/v2/{repo}/tags/list")
    return list(json.loads(body).get("tags") or [])


# ---------------------------------------------------------------------------------------------
# Test images


def _layer(files: Mapping[str, bytes]) -> tuple[bytes, str]:
    """A reproducible gzipped tar of ``files``; returns (compressed bytes, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), _digest(uncompressed)


def _platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {platform!r}: expected os/arch[/variant]")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def _push_platform_manifest(
    ep: RegistryEndpoint, repo: str, platform: str, label: str
) -> tuple[str, int]:
    plat = _platform(platform)
    # The label makes each test's image distinct, so digests never collide across tests.
    layer, diff_id = _layer({"etc/image-compat-test": f"{label} {platform}\n".encode()})
    config = {
        **plat,
        "created": "1970-01-01T00:00:00Z",
        "config": {"Labels": {"org.opencontainers.image.title": label}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_CONFIG,
            "digest": _push_blob(ep, repo, config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": MEDIA_TYPE_LAYER,
                "digest": _push_blob(ep, repo, layer),
                "size": len(layer),
            }
        ],
    }
    body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    return _put_manifest(ep, repo, _digest(body), manifest), len(body)


def push_image(
    ep: RegistryEndpoint,
    repo: str,
    tag: str | None = "v1",
    *,
    platform: str = "linux/amd64",
    label: str | None = None,
) -> PushedImage:
    """Push a single-manifest image for ``platform``; tag it when ``tag`` is given."""
    label = label or f"{repo}:{tag}"
    digest, size = _push_platform_manifest(ep, repo, platform, label)
    if tag:
        doc, _, _ = get_manifest(ep, repo, digest)
        _put_manifest(ep, repo, tag, doc)
    return PushedImage(ep.host, repo, tag, digest, MEDIA_TYPE_MANIFEST, size, {platform: digest})


def push_index(
    ep: RegistryEndpoint,
    repo: str,
    tag: str | None = "v1",
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    label: str | None = None,
) -> PushedImage:
    """Push a multi-platform image: one manifest per platform and an OCI index over them."""
    label = label or f"{repo}:{tag}"
    children: dict[str, str] = {}
    descriptors = []
    for platform in platforms:
        digest, size = _push_platform_manifest(ep, repo, platform, label)
        children[platform] = digest
        descriptors.append(
            {
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": _platform(platform),
            }
        )
    index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": descriptors}
    body = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
    digest = _put_manifest(ep, repo, tag or _digest(body), index)
    return PushedImage(ep.host, repo, tag, digest, MEDIA_TYPE_INDEX, len(body), children)


# ---------------------------------------------------------------------------------------------
# The real ORAS CLI


def _oras_binary() -> Path:
    from devcluster import build

    return build.binary("oras")


def run_oras(
    ep: RegistryEndpoint,
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    timeout_s: float = _ORAS_TIMEOUT_S,
    oras: Path | None = None,
) -> str:
    """Run ``oras <args>`` with the connection flags ``ep`` needs; return its stdout.

    The first element of ``args`` is the subcommand. oras gets an empty registry config file
    of its own, so neither ``~/.docker/config.json`` is read nor a login stored; the password
    goes through stdin so it never shows in the process list.
    """
    exe = oras or _oras_binary()
    with tempfile.TemporaryDirectory(prefix="oras-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text('{"auths": {}}\n')
        flags = ["--registry-config", str(config)]
        if ep.plain_http:
            flags.append("--plain-http")
        elif ep.ca_file is not None:
            flags += ["--ca-file", str(ep.ca_file)]
        stdin = None
        if ep.username is not None:
            flags += ["--username", ep.username, "--password-stdin"]
            stdin = ep.password or ""
        cmd = [str(exe), args[0], *flags, *args[1:]]
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                env={"HOME": tmp, "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
            )
        except subprocess.TimeoutExpired as e:
            raise OrasError(f"`oras {' '.join(args)}` took longer than {timeout_s:.0f}s") from e
    if proc.returncode != 0:
        raise OrasError(
            f"`oras {' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip()}"
        )
    return proc.stdout


def attach_spec(
    ep: RegistryEndpoint,
    repo: str,
    subject: str,
    spec: str | bytes | Path,
    *,
    created: datetime | str,
    distribution_spec: str | None = "v1.1-referrers-api",
    artifact_type: str = NFD_ARTIFACT_TYPE,
    layer_media_type: str = NFD_SPEC_MEDIA_TYPE,
    platform: str | None = None,
    annotations: Mapping[str, str] | None = None,
    filename: str = "compatibility.yaml",
) -> AttachedArtifact:
    """Attach an image-compatibility spec to ``repo@subject`` with ``oras attach``.

    ``subject`` is a digest (or a tag); ``spec`` is the YAML text or a file. ``created`` is
    stamped as ``org.opencontainers.image.created`` (oras's own stamp has only seconds, and
    "newest wins" tests need a defined order). ``distribution_spec`` is
    ``"v1.1-referrers-api"`` (fails on registries without the API), ``"v1.1-referrers-tag"``
    (tag schema) or None (oras decides: API, falling back on 404). ``platform`` attaches to
    that child of an index instead, as ``oras attach --platform`` does.
    """
    created_text = created if isinstance(created, str) else rfc3339(created)
    with tempfile.TemporaryDirectory(prefix="attach-") as tmp:
        if isinstance(spec, Path):
            content = spec.read_bytes()
            filename = spec.name
        else:
            content = spec.encode() if isinstance(spec, str) else spec
        # oras refuses absolute paths (and records the name as the layer title), so the file
        # goes into a scratch directory under its short name and oras runs there.
        (Path(tmp) / filename).write_bytes(content)
        args = ["attach", "--artifact-type", artifact_type, "--format", "json", "--no-tty"]
        args += ["--annotation", f"{ANNOTATION_CREATED}={created_text}"]
        for key, value in (annotations or {}).items():
            args += ["--annotation", f"{key}={value}"]
        if distribution_spec:
            args += ["--distribution-spec", distribution_spec]
        if platform:
            args += ["--platform", platform]
        args += [ep.ref(repo, subject), f"{filename}:{layer_media_type}"]
        out = json.loads(run_oras(ep, args, cwd=Path(tmp)))
    digest = out["digest"]
    # oras reports the artifact, not its subject: read the stored manifest for that.
    manifest, _, _ = get_manifest(ep, repo, digest)
    return AttachedArtifact(
        digest=digest,
        media_type=out.get("mediaType", ""),
        size=int(out.get("size", 0)),
        artifact_type=out.get("artifactType", ""),
        annotations=dict(out.get("annotations") or {}),
        subject=manifest.get("subject", {}).get("digest", ""),
        reference=out.get("reference", ""),
    )


def oras_discover(
    ep: RegistryEndpoint,
    repo: str,
    subject: str,
    *,
    artifact_type: str | None = None,
    distribution_spec: str | None = None,
    platform: str | None = None,
    depth: int | None = 1,
) -> list[dict[str, Any]]:
    """``oras discover --format json``: the referrers of ``repo@subject`` (direct ones by default).

    ``distribution_spec`` chooses the referrers API or the tag schema, as for ``attach_spec``.
    Each item has ``digest``, ``mediaType``, ``artifactType``, ``annotations`` and ``size``.
    """
    args = ["discover", "--format", "json"]
    if artifact_type:
        args += ["--artifact-type", artifact_type]
    if distribution_spec:
        args += ["--distribution-spec", distribution_spec]
    if platform:
        args += ["--platform", platform]
    if depth is not None:
        args += ["--depth", str(depth)]
    args.append(ep.ref(repo, subject))
    out = json.loads(run_oras(ep, args))
    return list(out.get("referrers") or [])
