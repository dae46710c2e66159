"""The registry HTTP client: resolve, list referrers, read the spec layer, push artifacts.

Owns :class:`RegistryClient`: tag to digest resolution (with platform selection in an index),
the referrers API with the ``sha256-<hex>`` tag-schema fallback, reading manifests and the spec
layer with digest and size checks (:class:`RegistryLimits`), pushing blobs, manifests and
referrers (the API, or the tag schema kept up to date), the token flow (``pull`` scope for
reads, ``pull,push`` for writes), per-host concurrency (bounded state), and connecting only
through :class:`~extender.registry.hosts.HostPolicy`: every request and every redirect hop
goes through ``RegistryClient._http``, which checks the host before connecting, keeps
credentials with the host they are for, and turns network failures into short reasons.

It is over 500 lines because it is one class: resolving, listing, reading, pushing and the
token flow share the session, the token cache, the per-host limits and the size checks.
References, hosts, credentials and errors, which it only uses, live beside it in their own
modules.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from extender._util import BoundedDict
from extender.nfd.spec import ARTIFACT_TYPE, SPEC_MEDIA_TYPE
from extender.registry.auth import _CHALLENGE_PARAM, Credentials, DockerConfig, _identity, _Token
from extender.registry.errors import (
    HostRefusedError,
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
    RegistryProtocolError,
    RegistryUnavailableError,
)
from extender.registry.hosts import HostPolicy, RegistryHostConfig, _PolicyResolver
from extender.registry.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    MANIFEST_ACCEPT,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    CompatibilityArtifact,
    Descriptor,
    ImageReference,
    Platform,
    choose_newest,
    is_index,
)

__all__ = [
    "PushedReferrer",
    "RegistryClient",
    "RegistryLimits",
]

log = logging.getLogger(__name__)
_USER_AGENT = "image-compat-extender"
_ZERO_DIGEST = "sha256:" + "0" * 64


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    manifest_bytes: int = 4 << 20
    blob_bytes: int = 1 << 20  # a spec layer; matches the spec parser's document limit
    referrers: int = 1000  # descriptors in one listing, over all pages
    referrer_pages: int = 20
    redirects: int = 3
    timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    per_host_concurrency: int = 8
    # Hosts (and token scopes) remembered at once. Pod authors choose hosts, so what is kept
    # per host must not grow with every name they try; the oldest entries go first.
    hosts_kept: int = 1024


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class RegistryClient:
    """Async OCI distribution client bound to one aiohttp session. Use as an async context."""

    def __init__(
        self,
        *,
        policy: HostPolicy | None = None,
        hosts: Mapping[str, RegistryHostConfig] | None = None,
        docker_config: DockerConfig | None = None,
        limits: RegistryLimits | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy or HostPolicy()
        self._resolver = resolver
        self.hosts = dict(hosts or {})
        self.docker_config = docker_config
        self.limits = limits or RegistryLimits()
        self._session: aiohttp.ClientSession | None = None
        kept = self.limits.hosts_kept
        self._tokens: BoundedDict[tuple[str, str, str], _Token] = BoundedDict(kept)
        self._semaphores: BoundedDict[str, asyncio.Semaphore] = BoundedDict(kept)
        self._ssl: BoundedDict[str, ssl.SSLContext | bool] = BoundedDict(kept)
        self._token_expiry = 0.0
        self.requests = 0  # total HTTP requests sent; tests and metrics read it

    async def __aenter__(self) -> RegistryClient:
        connector = aiohttp.TCPConnector(
            resolver=_PolicyResolver(self.policy, self._resolver), limit=64, ttl_dns_cache=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": _USER_AGENT},
            # No cookies: some registries treat a cookie-carrying client as a browser, and a
            # cookie set by one pod's registry must not ride along on another pod's request.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(
                total=self.limits.timeout_s, connect=self.limits.connect_timeout_s
            ),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- public API ------------------------------------------------------------------------

    async def resolve(
        self,
        ref: ImageReference,
        *,
        platform: Platform | None = None,
        credentials: Sequence[DockerConfig] = (),
    ) -> Descriptor:
        """The descriptor the reference names; with a platform, that platform's manifest."""
        descriptor, document = await self.get_manifest(ref, credentials=credentials)
        if platform is None:
            return descriptor
        if is_index(descriptor, document):
            for item in document.get("manifests") or ():
                child = Descriptor.from_json(item)
                if platform.matches(child.platform):
                    return child
            raise RegistryNotFoundError(f"{ref} has no manifest for platform {platform}")
        config = Descriptor.from_json(document.get("config"))
        blob = await self._fetch_blob(ref, config, credentials)
        image_config = _json_object(blob, f"config of {ref}")
        if not platform.matches(image_config):
            raise RegistryNotFoundError(f"{ref} is not built for platform {platform}")
        return descriptor

    async def get_manifest(
        self, ref: ImageReference, *, credentials: Sequence[DockerConfig] = ()
    ) -> tuple[Descriptor, dict[str, Any]]:
        """The manifest (or index) the reference names: its descriptor and its JSON document.

        The digest is computed from the body and checked against a digest reference and the
        ``Docker-Content-Digest`` header.
        """
        response = await self._get(
            ref,
            f"manifests/{ref.reference}",
            MANIFEST_ACCEPT,
            self.limits.manifest_bytes,
            credentials,
        )
        media_type = _media_type(response)
        digest = _sha256(response.body)
        if ref.digest and ref.digest != digest:
            raise RegistryProtocolError(f"manifest of {ref} has digest {digest}, not {ref.digest}")
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest and header.startswith("sha256:"):
            raise RegistryProtocolError(
                f"manifest of {ref}: header digest {header} != body {digest}"
            )
        document = _json_object(response.body, f"manifest of {ref}")
        return Descriptor(media_type, digest, len(response.body)), document

    async def referrers(
        self,
        ref: ImageReference,
        subject_digest: str,
        *,
        artifact_type: str = ARTIFACT_TYPE,
        credentials: Sequence[DockerConfig] = (),
    ) -> list[Descriptor]:
        """Referrers of a manifest with the artifact type: the API, else the tag schema."""
        path: str | None = (
            f"referrers/{subject_digest}?artifactType={quote(artifact_type, safe='')}"
        )
        found: list[Descriptor] = []
        pages = 0
        while path is not None:
            pages += 1
            if pages > self.limits.referrer_pages:
                raise RegistryProtocolError(f"referrers of {ref} span more than {pages - 1} pages")
            try:
                response = await self._get(
                    ref, path, MEDIA_OCI_INDEX, self.limits.manifest_bytes, credentials
                )
            except RegistryNotFoundError as err:
                if pages > 1:
                    raise RegistryProtocolError(f"referrers page of {ref} vanished") from err
                return await self._referrers_by_tag(ref, subject_digest, artifact_type, credentials)
            except _UnsupportedError:
                if pages > 1:
                    raise RegistryProtocolError(f"referrers page of {ref} refused") from None
                return await self._referrers_by_tag(ref, subject_digest, artifact_type, credentials)
            if _media_type(response) not in (MEDIA_OCI_INDEX, "application/json") and pages == 1:
                return await self._referrers_by_tag(ref, subject_digest, artifact_type, credentials)
            document = _json_object(response.body, f"referrers of {ref}")
            filtered = "artifactType" in response.headers.get("OCI-Filters-Applied", "")
            for item in document.get("manifests") or ():
                descriptor = Descriptor.from_json(item)
                if filtered or descriptor.artifact_type == artifact_type:
                    found.append(descriptor)
                if len(found) > self.limits.referrers:
                    raise RegistryProtocolError(
                        f"{ref} has more than {self.limits.referrers} referrers"
                    )
            path = _next_link(response)
        return found

    async def fetch_artifact(
        self,
        ref: ImageReference,
        descriptor: Descriptor,
        *,
        credentials: Sequence[DockerConfig] = (),
    ) -> bytes:
        """The spec layer of an artifact manifest: by media type, else layers[0] as NFD does."""
        manifest = await self._fetch_manifest(ref, descriptor, credentials)
        layers = manifest.get("layers") or []
        if not isinstance(layers, list) or not layers:
            raise RegistryProtocolError(f"artifact {descriptor.digest} of {ref} has no layers")
        chosen = next(
            (
                layer
                for layer in layers
                if isinstance(layer, Mapping) and layer.get("mediaType") == SPEC_MEDIA_TYPE
            ),
            layers[0],
        )
        return await self._fetch_blob(ref, Descriptor.from_json(chosen), credentials)

    async def fetch_compatibility_spec(
        self,
        ref: ImageReference,
        *,
        platform: Platform | None = None,
        credentials: Sequence[DockerConfig] = (),
    ) -> CompatibilityArtifact | None:
        """Resolve, list referrers, take the newest artifact, read its spec. None: no artifact."""
        subject = await self.resolve(ref, platform=platform, credentials=credentials)
        found = await self.referrers(ref, subject.digest, credentials=credentials)
        if not found:
            return None
        newest = choose_newest(found)
        data = await self.fetch_artifact(ref, newest, credentials=credentials)
        return CompatibilityArtifact(
            ref.with_digest(subject.digest), newest.digest, data, newest.created
        )

    # -- writing -----------------------------------------------------------------------------

    async def push_blob(
        self,
        ref: ImageReference,
        data: bytes,
        media_type: str,
        *,
        credentials: Sequence[DockerConfig] = (),
    ) -> Descriptor:
        """Upload a blob unless the repository has it (HEAD first): one monolithic upload."""
        descriptor = Descriptor(media_type, _sha256(data), len(data))
        base, repository = self._push_endpoint(ref)
        blob_url = f"{base}/v2/{repository}/blobs/{descriptor.digest}"
        try:
            await self._request(
                ref, repository, blob_url, "*/*", 0, credentials, method="HEAD", ok=(200,)
            )
            return descriptor
        except RegistryNotFoundError:
            pass
        start_url = f"{base}/v2/{repository}/blobs/uploads/"
        started = await self._request(
            ref, repository, start_url, "*/*", 64 << 10, credentials,
            method="POST", body=b"", ok=(202,),
        )  # fmt: skip
        location = started.headers.get("Location")
        if not location:
            raise RegistryProtocolError(f"{ref.registry}: upload started without a Location")
        upload_url = urljoin(started.url, location)
        # The upload URL carries no credentials of its own; ours go only to the registry.
        if urlsplit(upload_url).netloc != urlsplit(base).netloc:
            raise RegistryProtocolError(
                f"{ref.registry}: upload location on another host ({urlsplit(upload_url).netloc})"
            )
        separator = "&" if urlsplit(upload_url).query else "?"
        await self._request(
            ref, repository, f"{upload_url}{separator}digest={quote(descriptor.digest, safe='')}",
            "*/*", 64 << 10, credentials,
            method="PUT", body=data, content_type="application/octet-stream", ok=(201, 204),
        )  # fmt: skip
        return descriptor

    async def push_manifest(
        self,
        ref: ImageReference,
        reference: str,
        body: bytes,
        media_type: str,
        *,
        credentials: Sequence[DockerConfig] = (),
    ) -> tuple[Descriptor, Mapping[str, str]]:
        """PUT a manifest under a tag or its digest: its descriptor and the response headers."""
        if len(body) > self.limits.manifest_bytes:
            raise RegistryProtocolError(f"manifest of {len(body)} bytes is over the limit")
        descriptor = Descriptor(media_type, _sha256(body), len(body))
        base, repository = self._push_endpoint(ref)
        response = await self._request(
            ref, repository, f"{base}/v2/{repository}/manifests/{reference}",
            "*/*", 64 << 10, credentials,
            method="PUT", body=body, content_type=media_type, ok=(201, 200),
        )  # fmt: skip
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored.startswith("sha256:") and stored != descriptor.digest:
            raise RegistryProtocolError(
                f"{ref.registry} stored the manifest as {stored}, not {descriptor.digest}"
            )
        return descriptor, response.headers

    async def push_referrer(
        self,
        ref: ImageReference,
        manifest: bytes,
        *,
        credentials: Sequence[DockerConfig] = (),
    ) -> PushedReferrer:
        """Push an artifact manifest that has a ``subject``, as oras-go does.

        The manifest goes by digest. A registry with the referrers API says so with an
        ``OCI-Subject`` header (or, when it does not, answers a referrers listing) and
        indexes it itself; otherwise the subject's ``sha256-<hex>`` tag holds an OCI index
        of its referrers, which is read, extended (unless it lists the manifest already),
        pushed again, and the replaced index deleted. Two writers racing on that tag can
        lose one entry, as with oras-go.
        """
        document = _json_object(manifest, "artifact manifest")
        media_type = str(document.get("mediaType") or MEDIA_OCI_MANIFEST)
        subject = Descriptor.from_json(document.get("subject"))
        descriptor, headers = await self.push_manifest(
            ref, _sha256(manifest), manifest, media_type, credentials=credentials
        )
        if headers.get("OCI-Subject") or await self._has_referrers_api(ref, credentials):
            return PushedReferrer(descriptor, subject, None)
        tag = _referrers_tag(subject.digest)
        base, repository = self._push_endpoint(ref)
        old_index: str | None = None
        try:
            # From the registry itself: a mirror's copy of the index may be behind.
            response = await self._request(
                ref, repository, f"{base}/v2/{repository}/manifests/{tag}",
                MEDIA_OCI_INDEX, self.limits.manifest_bytes, credentials,
            )  # fmt: skip
            index = _json_object(response.body, f"referrers tag {tag} of {ref}")
            old_index = _sha256(response.body)
        except RegistryNotFoundError:
            index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": []}
        manifests = index.get("manifests")
        if not isinstance(manifests, list):
            raise RegistryProtocolError(f"referrers tag {tag} of {ref} is not an index")
        if any(isinstance(m, Mapping) and m.get("digest") == descriptor.digest for m in manifests):
            return PushedReferrer(descriptor, subject, tag)
        if len(manifests) >= self.limits.referrers:
            raise RegistryProtocolError(f"{ref} has {len(manifests)} referrers already")
        entry: dict[str, Any] = {
            "mediaType": media_type,
            "digest": descriptor.digest,
            "size": descriptor.size,
        }
        if document.get("artifactType"):
            entry["artifactType"] = document["artifactType"]
        if document.get("annotations"):
            entry["annotations"] = document["annotations"]
        index["manifests"] = [*manifests, entry]
        body = json.dumps(index, separators=(",", ":")).encode()
        await self.push_manifest(ref, tag, body, MEDIA_OCI_INDEX, credentials=credentials)
        if old_index is not None:
            # The replaced index is garbage now (oras-go deletes it too). A registry that
            # refuses deletes keeps it, untagged, which harms no reader.
            try:
                await self._request(
                    ref, repository, f"{base}/v2/{repository}/manifests/{old_index}",
                    "*/*", 64 << 10, credentials, method="DELETE", ok=(200, 202, 404),
                )  # fmt: skip
            except RegistryError as err:
                log.warning("could not delete the replaced referrers index %s: %s", old_index, err)
        return PushedReferrer(descriptor, subject, tag)

    async def _has_referrers_api(
        self, ref: ImageReference, credentials: Sequence[DockerConfig]
    ) -> bool:
        """Whether the registry serves the referrers API, asked as oras-go asks (for the
        zero digest) when a push answered without ``OCI-Subject``."""
        base, repository = self._push_endpoint(ref)
        try:
            response = await self._request(
                ref, repository, f"{base}/v2/{repository}/referrers/{_ZERO_DIGEST}",
                MEDIA_OCI_INDEX, self.limits.manifest_bytes, credentials,
            )  # fmt: skip
        except (RegistryNotFoundError, _UnsupportedError):
            return False
        return _media_type(response) == MEDIA_OCI_INDEX

    # -- internals -------------------------------------------------------------------------

    async def _referrers_by_tag(
        self,
        ref: ImageReference,
        subject_digest: str,
        artifact_type: str,
        credentials: Sequence[DockerConfig],
    ) -> list[Descriptor]:
        tag = _referrers_tag(subject_digest)
        try:
            response = await self._get(
                ref, f"manifests/{tag}", MEDIA_OCI_INDEX, self.limits.manifest_bytes, credentials
            )
        except RegistryNotFoundError:
            return []
        document = _json_object(response.body, f"referrers tag of {ref}")
        manifests = document.get("manifests") or []
        if len(manifests) > self.limits.referrers:
            raise RegistryProtocolError(f"{ref} has more than {self.limits.referrers} referrers")
        descriptors = [Descriptor.from_json(item) for item in manifests]
        return [d for d in descriptors if d.artifact_type == artifact_type]

    async def _fetch_manifest(
        self, ref: ImageReference, descriptor: Descriptor, credentials: Sequence[DockerConfig]
    ) -> Mapping[str, Any]:
        if descriptor.size > self.limits.manifest_bytes:
            raise RegistryProtocolError(
                f"manifest {descriptor.digest} is {descriptor.size} bytes, over the limit"
            )
        response = await self._get(
            ref,
            f"manifests/{descriptor.digest}",
            MANIFEST_ACCEPT,
            self.limits.manifest_bytes,
            credentials,
        )
        _verify(response.body, descriptor, "manifest")
        return _json_object(response.body, f"manifest {descriptor.digest}")

    async def _fetch_blob(
        self, ref: ImageReference, descriptor: Descriptor, credentials: Sequence[DockerConfig]
    ) -> bytes:
        if descriptor.size > self.limits.blob_bytes:
            limit = self.limits.blob_bytes
            raise RegistryProtocolError(
                f"blob {descriptor.digest} is {descriptor.size} bytes, over the {limit}-byte limit"
            )
        response = await self._get(
            ref, f"blobs/{descriptor.digest}", "*/*", self.limits.blob_bytes, credentials
        )
        _verify(response.body, descriptor, "blob")
        return response.body

    def _push_endpoint(self, ref: ImageReference) -> tuple[str, str]:
        """Where writes go: the registry itself, never a mirror."""
        return self._endpoints(ref)[-1]

    def _endpoints(self, ref: ImageReference) -> list[tuple[str, str]]:
        """(base URL, repository) pairs to try in order: mirrors first, then the registry."""
        config = self.hosts.get(ref.registry, RegistryHostConfig())
        host = DOCKER_HUB_API if ref.registry == DOCKER_HUB else ref.registry
        scheme = "http" if config.plain_http else "https"
        out = [(mirror.url, mirror.repository(ref.repository)) for mirror in config.mirrors]
        out.append((f"{scheme}://{host}", ref.repository))
        return out

    async def _get(
        self,
        ref: ImageReference,
        path: str,
        accept: str,
        max_bytes: int,
        credentials: Sequence[DockerConfig],
    ) -> _Response:
        last: RegistryError | None = None
        for base, repository in self._endpoints(ref):
            if path.startswith(("http://", "https://")):
                # A pagination link: only to the host that gave it, so that the credentials
                # this request carries stay with the host they were issued for.
                if urlsplit(path).netloc != urlsplit(base).netloc:
                    last = last or RegistryProtocolError(
                        f"{ref.registry}: next page on another host"
                    )
                    continue
                url = path
            elif path.startswith("/"):
                url = urljoin(base, path)
            else:
                url = f"{base}/v2/{repository}/{path}"
            try:
                return await self._request(ref, repository, url, accept, max_bytes, credentials)
            except (RegistryUnavailableError, RegistryNotFoundError) as err:
                last = err
                continue
        assert last is not None
        raise last

    def _ssl_for(self, registry: str) -> ssl.SSLContext | bool:
        config = self.hosts.get(registry)
        if config is None:
            return True  # verified with the system's CAs; nothing to remember per host
        if config.insecure_skip_verify:
            return False
        if not config.ca_file:
            return True
        context = self._ssl.get(registry)
        if context is None:
            context = ssl.create_default_context(cafile=config.ca_file)
            self._ssl.put(registry, context)
        return context

    async def _request(  # noqa: PLR0917 - internal; keyword-only beyond the common six
        self,
        ref: ImageReference,
        repository: str,
        url: str,
        accept: str,
        max_bytes: int,
        credentials: Sequence[DockerConfig],
        *,
        method: str = "GET",
        body: bytes | None = None,
        content_type: str = "",
        ok: Sequence[int] = (200,),
    ) -> _Response:
        if self._session is None:
            raise RuntimeError("RegistryClient must be used as an async context manager")
        origin_host = urlsplit(url).hostname or ""
        # Refused hosts get no per-host state at all; the rest is bounded (hosts_kept).
        self.policy.check_name(origin_host)
        semaphore = self._semaphores.get(origin_host)
        if semaphore is None:
            semaphore = asyncio.Semaphore(self.limits.per_host_concurrency)
            self._semaphores.put(origin_host, semaphore)
        # Writes need a token for push as well; reads never ask for more than pull.
        action = "pull" if method in ("GET", "HEAD") else "pull,push"
        scope = f"repository:{repository}:{action}"
        # A mirror is another host: it gets its own credentials, never the registry's.
        netloc = urlsplit(url).netloc
        registry_netloc = DOCKER_HUB_API if ref.registry == DOCKER_HUB else ref.registry
        owner = ref.registry if netloc == registry_netloc else netloc
        creds = await self._credentials(owner, credentials)
        token_key = (owner, scope, _identity(creds))
        cached = self._tokens.get(token_key)
        authorization = None
        if cached is not None and cached.expires > time.monotonic():
            authorization = cached.value
        async with semaphore:
            for attempt in range(2):
                response = await self._send(
                    url,
                    accept,
                    max_bytes,
                    authorization,
                    ref,
                    method=method,
                    body=body,
                    content_type=content_type,
                )
                if response.status != 401 or attempt == 1:
                    break
                if urlsplit(response.url).netloc != urlsplit(url).netloc:
                    break  # a challenge from a redirect's host never gets our credentials
                authorization = await self._authorize(ref, scope, response, creds)
                if authorization is None:
                    break
                # Remember what worked for this repository, so the next call skips the 401.
                self._tokens.put(token_key, _Token(authorization, self._token_expiry))
        return self._check_status(response, ref, url, ok)

    def _check_status(
        self, response: _Response, ref: ImageReference, url: str, ok: Sequence[int] = (200,)
    ) -> _Response:
        status = response.status
        if status in ok:
            return response
        where = f"{ref.registry} ({urlsplit(url).path})"
        if status in (401, 403):
            raise RegistryAuthError(f"{where}: HTTP {status}, access denied")
        if status == 404:
            raise RegistryNotFoundError(f"{where}: not found")
        if status in (429,) or status >= 500:
            raise RegistryUnavailableError(f"{where}: HTTP {status}")
        if "/referrers/" in url and 400 <= status < 500:
            raise _UnsupportedError(f"{where}: HTTP {status}")
        raise RegistryProtocolError(f"{where}: unexpected HTTP {status}")

    async def _send(
        self,
        url: str,
        accept: str,
        max_bytes: int,
        authorization: str | None,
        ref: ImageReference,
        *,
        method: str = "GET",
        body: bytes | None = None,
        content_type: str = "",
    ) -> _Response:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        return await self._http(
            method,
            url,
            headers=headers,
            authorization=authorization,
            max_bytes=max_bytes,
            registry=ref.registry,
            what="registry",
            body=body,
        )

    async def _http(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        authorization: str | None,
        max_bytes: int,
        registry: str,
        what: str,
        form: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> _Response:
        """Every request this client sends (registry API, blobs, token realm, pagination).

        Redirects are followed here, not by aiohttp, so that each hop passes the host policy
        before anything connects to it. ``authorization`` and a ``form`` (it may hold an
        identity token) go only to the host the request started at: a redirect to another
        host drops the header, and a form is never re-sent across hosts. Network failures
        become short, stable reasons (pod authors see them in events; naming errno or TLS
        details would let them probe ports); the details go to the log with the host.
        """
        assert self._session is not None
        start = urlsplit(url)
        for _ in range(self.limits.redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise RegistryProtocolError(f"{registry}: {what} sent an unusable URL")
            self.policy.check_name(parts.hostname)
            # Same scheme too: a redirect from https to http must not carry credentials.
            same_host = (parts.scheme, parts.netloc) == (start.scheme, start.netloc)
            if form is not None and not same_host:
                raise RegistryAuthError(
                    f"{registry}: {what} redirected credentials to another host"
                )
            sent = dict(headers)
            if authorization and same_host:
                sent["Authorization"] = authorization
            self.requests += 1
            try:
                async with self._session.request(
                    method,
                    url,
                    headers=sent,
                    data=body if body is not None else form,
                    allow_redirects=False,
                    ssl=self._ssl_for(registry) if same_host else True,
                ) as response:
                    # A body is re-sent only where the redirect keeps the method (307, 308).
                    redirects = (307, 308) if body is not None else _REDIRECTS
                    if response.status in redirects:
                        location = response.headers.get("Location")
                        if not location:
                            raise RegistryProtocolError(
                                f"{registry}: {what} redirect without Location"
                            )
                        url = urljoin(url, location)
                        if response.status == 303 or (
                            response.status in (301, 302) and method != "GET"
                        ):
                            method, form = "GET", None  # as browsers and Go do
                        continue
                    length = response.content_length
                    # A HEAD's Content-Length is the size of what a GET would return.
                    if method != "HEAD" and length is not None and length > max_bytes:
                        raise RegistryProtocolError(
                            f"{registry}: response of {length} bytes is over the "
                            f"{max_bytes}-byte limit"
                        )
                    content = await _read_limited(response, max_bytes, registry)
                    return _Response(response.status, dict(response.headers), content, url)
            except RegistryError:
                raise
            except aiohttp.ClientConnectorError as err:
                if isinstance(err.os_error, HostRefusedError):
                    raise err.os_error from None
                raise _network_error(registry, what, parts.netloc, err) from None
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                raise _network_error(registry, what, parts.netloc, err) from None
        raise RegistryProtocolError(f"{registry}: more than {self.limits.redirects} redirects")

    async def _credentials(
        self, registry: str, credentials: Sequence[DockerConfig]
    ) -> Credentials | None:
        # Pod pull secrets first (the pod author's own access), then the server's config.
        for config in (*credentials, *(c for c in (self.docker_config,) if c is not None)):
            found = await config.lookup(registry)
            if found is not None:
                return found
        return None

    async def _authorize(
        self, ref: ImageReference, scope: str, response: _Response, creds: Credentials | None
    ) -> str | None:
        """Answer a 401 challenge; sets ``_token_expiry`` for the header it returns."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        self._token_expiry = time.monotonic() + 300.0
        if scheme.lower() == "basic":
            if creds is None or not creds.username:
                return None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if scheme.lower() != "bearer":
            return None
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{ref.registry}: bearer challenge without realm")
        scope = params.get("scope") or scope
        token = await self._fetch_token(ref, realm, params.get("service", ""), scope, creds)
        self._token_expiry = token.expires
        return f"Bearer {token.value}"

    async def _fetch_token(
        self, ref: ImageReference, realm: str, service: str, scope: str, creds: Credentials | None
    ) -> _Token:
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryAuthError(f"{ref.registry}: invalid token realm")
        if (
            parts.scheme == "http"
            and not self.hosts.get(ref.registry, RegistryHostConfig()).plain_http
        ):
            raise RegistryAuthError(f"{ref.registry}: refusing a plain-HTTP token realm")
        if creds is not None and creds.identity_token:
            form: dict[str, str] | None = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": service,
                "scope": scope,
                "client_id": _USER_AGENT,
            }
            method, url, authorization = "POST", realm, None
        else:
            form = None
            query = urlencode({"service": service, "scope": scope})
            method, url = "GET", f"{realm}{'&' if parts.query else '?'}{query}"
            authorization = None
            if creds is not None and creds.username:
                raw = f"{creds.username}:{creds.password}".encode()
                authorization = "Basic " + base64.b64encode(raw).decode()
        try:
            response = await self._http(
                method,
                url,
                headers={},
                authorization=authorization,
                form=form,
                max_bytes=1 << 20,
                registry=ref.registry,
                what="token endpoint",
            )
        except RegistryProtocolError as err:
            raise RegistryAuthError(str(err)) from None
        if response.status in (401, 403):
            raise RegistryAuthError(f"{ref.registry}: token endpoint refused the credentials")
        if response.status != 200:
            raise RegistryUnavailableError(
                f"{ref.registry}: token endpoint answered HTTP {response.status}"
            )
        document = _json_object(response.body, "token response")
        value = document.get("token") or document.get("access_token")
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(f"{ref.registry}: token response without a token")
        expires_in = document.get("expires_in")
        lifetime = (
            float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 60.0
        )
        # Renew a little early so a token does not expire in flight.
        return _Token(value, time.monotonic() + max(lifetime - 10.0, 1.0))


@dataclass(frozen=True, slots=True)
class PushedReferrer:
    """A pushed artifact manifest, its subject, and the referrers tag it was listed in
    (None: the registry's referrers API lists it)."""

    manifest: Descriptor
    subject: Descriptor
    referrers_tag: str | None


def _referrers_tag(subject_digest: str) -> str:
    """The tag schema's name for a subject's referrers index: ``sha256-<hex>``."""
    algorithm, _, hexdigest = subject_digest.partition(":")
    return f"{algorithm}-{hexdigest}"[:128]


_REDIRECTS = (301, 302, 303, 307, 308)


def _network_error(registry: str, what: str, netloc: str, err: BaseException) -> RegistryError:
    """A short, stable reason for a failure below HTTP; the details only in the log."""
    if isinstance(err, TimeoutError | aiohttp.ServerTimeoutError):
        reason = f"{what} timed out"
    elif isinstance(err, aiohttp.ClientConnectorCertificateError):
        reason = f"{what} TLS certificate not trusted"
    elif isinstance(err, aiohttp.ClientSSLError) or isinstance(
        getattr(err, "os_error", None) or err.__cause__ or err.__context__, ssl.SSLError
    ):
        reason = f"{what} TLS handshake failed"
    elif isinstance(err, aiohttp.ClientConnectorError):
        reason = f"{what} unreachable"
    elif isinstance(err, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        reason = f"{what} closed the connection"
    else:
        reason = f"{what} request failed"
    detail = getattr(err, "os_error", None) or err
    log.warning(
        "registry %s, host %s: %s: %s: %s", registry, netloc, reason, type(detail).__name__, detail
    )
    return RegistryUnavailableError(f"{registry}: {reason}")


class _UnsupportedError(RegistryError):
    """The referrers endpoint answered a 4xx meaning "not implemented here"."""


async def _read_limited(response: aiohttp.ClientResponse, max_bytes: int, registry: str) -> bytes:
    chunks = []
    total = 0
    async for chunk in response.content.iter_chunked(64 << 10):
        total += len(chunk)
        if total > max_bytes:
            raise RegistryProtocolError(f"{registry}: response over the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(response: _Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _verify(data: bytes, descriptor: Descriptor, what: str) -> None:
    if len(data) != descriptor.size:
        raise RegistryProtocolError(
            f"{what} {descriptor.digest}: {len(data)} bytes, descriptor says {descriptor.size}"
        )
    algorithm = descriptor.digest.split(":", 1)[0]
    if algorithm not in ("sha256", "sha512"):
        raise RegistryProtocolError(f"{what} {descriptor.digest}: unsupported digest algorithm")
    actual = f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()
    if actual != descriptor.digest:
        raise RegistryProtocolError(f"{what} {descriptor.digest}: content has digest {actual}")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RegistryProtocolError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise RegistryProtocolError(f"{what} is not a JSON object")
    return document


_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _next_link(response: _Response) -> str | None:
    match = _LINK.search(response.headers.get("Link", ""))
    if match is None:
        return None
    return urljoin(response.url, str(match.group(1)))
