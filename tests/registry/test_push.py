"""Pushing through the registry client's one auth flow: bearer tokens scoped ``pull`` for
reads and ``pull,push`` for writes, in front of the real go-containerregistry registry."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devcluster.oci import list_tags, oras_discover, push_image
from devcluster.registries import Registry
from extender.artifacts.attach import attach_spec
from extender.nfd.spec import ARTIFACT_TYPE
from extender.registry.auth import DockerConfig
from extender.registry.client import RegistryClient
from extender.registry.errors import RegistryAuthError
from extender.registry.hosts import RegistryHostConfig
from extender.registry.reference import ImageReference
from tests.registry.helpers import LOOPBACK

pytestmark = pytest.mark.integration

SPEC = b"version: v1alpha1\ncompatibilities:\n- tag: gated\n  rules: []\n"
T0 = "2025-01-01T00:00:00Z"
USERS = {"writer": ("w-secret", "pull,push"), "reader": ("r-secret", "pull")}


class _TokenGate:
    """A bearer-token front for a real registry, as distribution's token auth behaves: a 401
    challenge without a scope (so the client's own scope is what gets asked for), a token
    endpoint that grants each user at most its actions, and the registry behind it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.asked: list[tuple[str, str]] = []  # (user, scope) per token request
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_get("/token", self.token)
        app.router.add_route("*", "/v2/{tail:.*}", self.registry)
        return app

    async def token(self, request: web.Request) -> web.Response:
        user, _, password = (
            base64.b64decode(request.headers.get("Authorization", "Basic ")[6:])
            .decode()
            .partition(":")
        )
        if USERS.get(user, ("",))[0] != password:
            return web.Response(status=401)
        scope = request.query.get("scope", "")
        self.asked.append((user, scope))
        resource, _, actions = scope.rpartition(":")
        granted = [a for a in actions.split(",") if a in USERS[user][1].split(",")]
        token = base64.b64encode(f"{resource}:{','.join(granted)}".encode()).decode()
        return web.json_response({"token": token, "expires_in": 300})

    async def registry(self, request: web.Request) -> web.Response:
        repository = request.path.removeprefix("/v2/").split("/")[0:2]
        needed = "pull" if request.method in ("GET", "HEAD") else "push"
        granted = ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            granted = base64.b64decode(header[7:]).decode()
        resource, _, actions = granted.rpartition(":")
        if resource != f"repository:{'/'.join(repository)}" or needed not in actions.split(","):
            challenge = f'Bearer realm="{self.base}/token",service="gate"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        headers = {k: v for k, v in request.headers.items() if k in ("Accept", "Content-Type")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                data=await request.read(),
                headers=headers,
                allow_redirects=False,
            ) as answer,
        ):
            body = await answer.read()
            kept = ("Content-Type", "Location", "Docker-Content-Digest", "OCI-Subject", "Link")
            return web.Response(
                status=answer.status,
                body=body if request.method != "HEAD" else None,
                headers={k: v for k, v in answer.headers.items() if k in kept},
            )


def _client(host: str, user: str) -> tuple[RegistryClient, list[DockerConfig]]:
    password = USERS[user][0]
    config = DockerConfig({"auths": {host: {"username": user, "password": password}}})
    client = RegistryClient(policy=LOOPBACK, hosts={host: RegistryHostConfig(plain_http=True)})
    return client, [config]


async def test_writes_ask_for_push_and_reads_for_pull(
    aiohttp_server: Any, oci_registry: Registry, unique_repo: str
) -> None:
    image = push_image(oci_registry, unique_repo, "v1")
    gate = _TokenGate(oci_registry.url)
    server = await aiohttp_server(gate.app(), host="127.0.0.1")
    host = f"127.0.0.1:{server.port}"
    gate.base = f"http://{host}"
    ref = ImageReference.parse(f"{host}/{unique_repo}:v1")

    client, credentials = _client(host, "reader")
    async with client:
        with pytest.raises(RegistryAuthError):
            await attach_spec(client, ref, SPEC, created=T0, credentials=credentials)
    assert oras_discover(oci_registry, unique_repo, image.digest) == []
    assert list_tags(oci_registry, unique_repo) == ["v1"]

    client, credentials = _client(host, "writer")
    async with client:
        (attached,) = await attach_spec(client, ref, SPEC, created=T0, credentials=credentials)
        found = await client.fetch_compatibility_spec(ref, credentials=credentials)
    assert found is not None and found.spec_bytes == SPEC
    assert found.artifact_digest == attached.pushed.manifest.digest
    repository = f"repository:{unique_repo}"
    writer_scopes = {scope for user, scope in gate.asked if user == "writer"}
    assert writer_scopes == {f"{repository}:pull", f"{repository}:pull,push"}
    (listed,) = oras_discover(oci_registry, unique_repo, image.digest)
    assert listed["artifactType"] == ARTIFACT_TYPE
    assert json.loads(json.dumps(listed["annotations"]))["org.opencontainers.image.created"] == T0
