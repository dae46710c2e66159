"""The registry client against hostile input (issue 22): hosts, redirects, credentials, cookies
and state per host. Every server here is a real listener on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from extender.registry.auth import Credentials, DockerConfig
from extender.registry.client import RegistryClient, RegistryLimits
from extender.registry.errors import HostRefusedError, RegistryError, RegistryProtocolError
from extender.registry.hosts import HostPolicy, Mirror, RegistryHostConfig
from extender.registry.reference import ImageReference
from tests.registry.helpers import FixedResolver

LOOPBACK = HostPolicy(allow_loopback=True)
IMAGE = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        },
        "layers": [],
    }
).encode()

pytestmark = pytest.mark.integration


class _Listener:
    """A TCP listener that only counts connections: a host that must never be reached."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str) -> _Listener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _plain(host: str) -> dict[str, RegistryHostConfig]:
    return {host: RegistryHostConfig(plain_http=True)}


# --------------------------------------------------------------------------------------------
# Every hop passes the host policy; credentials stay with their host

# 127.0.0.2 stands for a host the operator denies (an internal service, the metadata server).
DENYING = HostPolicy(allow_loopback=True, deny=("127.0.0.2/32",))


async def test_token_realm_redirect_to_a_denied_host_is_refused_before_connecting(
    aiohttp_server: Any,
) -> None:
    denied = await _Listener().start("127.0.0.2")
    realm = ""

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(
            status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}
        )

    async def token(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.2:{denied.port}/token")

    app = web.Application()
    app.router.add_get("/v2/app/manifests/{ref}", manifest)
    app.router.add_get("/token", token)
    server = await aiohttp_server(app, host="127.0.0.1")
    host = f"127.0.0.1:{server.port}"
    realm = f"http://{host}/token"
    try:
        async with RegistryClient(policy=DENYING, hosts=_plain(host)) as client:
            with pytest.raises(HostRefusedError, match=r"127\.0\.0\.2"):
                await client.get_manifest(ImageReference.parse(f"{host}/app:v1"))
    finally:
        await denied.stop()
    assert denied.connections == 0


async def test_registry_redirect_to_a_denied_host_is_refused_before_connecting(
    aiohttp_server: Any,
) -> None:
    denied = await _Listener().start("127.0.0.2")

    async def manifest(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.2:{denied.port}/v2/app/manifests/v1")

    app = web.Application()
    app.router.add_get("/v2/app/manifests/{ref}", manifest)
    server = await aiohttp_server(app, host="127.0.0.1")
    host = f"127.0.0.1:{server.port}"
    try:
        async with RegistryClient(policy=DENYING, hosts=_plain(host)) as client:
            with pytest.raises(HostRefusedError):
                await client.get_manifest(ImageReference.parse(f"{host}/app:v1"))
    finally:
        await denied.stop()
    assert denied.connections == 0


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_credentials_never_follow_a_redirect_or_a_link_to_another_host(
    aiohttp_server: Any,
) -> None:
    # The registry (127.0.0.1) wants basic auth, its token realm redirects to 127.0.0.3, and
    # its referrers listing points its next page at 127.0.0.3: the other host may be reached
    # by the redirect, but never with the registry's credentials.
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"token": "from-elsewhere", "manifests": []})

    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", elsewhere)
    other = await aiohttp_server(other_app, host="127.0.0.3")
    good = _basic("alice", "secret")
    state = {"realm": ""}

    async def manifest(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in (good, "Bearer from-elsewhere"):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        return web.Response(body=IMAGE, content_type="application/vnd.oci.image.manifest.v1+json")

    async def referrers(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != good:
            return web.Response(
                status=401, headers={"WWW-Authenticate": f'Bearer realm="{state["realm"]}"'}
            )
        page = f"http://127.0.0.3:{other.port}{request.path}?page=2"
        return web.json_response(
            {"schemaVersion": 2, "manifests": []},
            content_type="application/vnd.oci.image.index.v1+json",
            headers={"Link": f'<{page}>; rel="next"'},
        )

    async def token(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.3:{other.port}/token")

    app = web.Application()
    app.router.add_get("/v2/app/manifests/{ref}", manifest)
    app.router.add_get("/v2/app/referrers/{digest}", referrers)
    app.router.add_get("/token", token)
    server = await aiohttp_server(app, host="127.0.0.1")
    host = f"127.0.0.1:{server.port}"
    state["realm"] = f"http://{host}/token"
    config = DockerConfig({"auths": {host: {"username": "alice", "password": "secret"}}})
    ref = ImageReference.parse(f"{host}/app:v1")
    async with RegistryClient(policy=LOOPBACK, hosts=_plain(host), docker_config=config) as client:
        digest, _ = await client.get_manifest(ref)
        with pytest.raises(RegistryProtocolError, match="another host"):
            await client.referrers(ref, digest.digest)
        # A fresh client: the first referrers call meets the bearer challenge whose realm
        # redirects to the other host.
    async with RegistryClient(policy=LOOPBACK, hosts=_plain(host), docker_config=config) as client:
        with pytest.raises(RegistryError):
            await client.referrers(ref, digest.digest)
    assert seen, "the redirect to the other host was followed"
    assert seen == [None] * len(seen)


async def test_a_mirror_never_gets_the_registrys_credentials(aiohttp_server: Any) -> None:
    seen: list[str | None] = []

    async def challenge(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="mirror"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", challenge)
    mirror = await aiohttp_server(app, host="127.0.0.1")
    hosts = {
        "upstream.example": RegistryHostConfig(mirrors=(Mirror(f"http://127.0.0.1:{mirror.port}"),))
    }
    config = DockerConfig({"auths": {"upstream.example": {"username": "u", "password": "s"}}})
    async with RegistryClient(policy=LOOPBACK, hosts=hosts, docker_config=config) as client:
        with pytest.raises(RegistryError):
            await client.get_manifest(ImageReference.parse("upstream.example/app:v1"))
    assert seen == [None]


_METADATA_SPELLINGS = [
    "2852039166",
    "0251.0376.0251.0376",
    "0xa9.0xfe.0xa9.0xfe",
    "0xa9fea9fe",
    "169.254.43518",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[::169.254.169.254]",
    "[64:ff9b::169.254.169.254]",
    "[64:ff9b::a9fe:a9fe]",
    "[2002:a9fe:a9fe::1]",
]
_LOOPBACK_SPELLINGS = [
    "127.1",
    "0177.0.0.1",
    "0x7f.1",
    "2130706433",
    "[::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "LOCALHOST.",
    "registry.localhost",
]


@pytest.mark.parametrize("host", _METADATA_SPELLINGS + _LOOPBACK_SPELLINGS)
def test_every_spelling_of_a_refused_address_is_refused_by_name(host: str) -> None:
    with pytest.raises(HostRefusedError):
        HostPolicy().check_name(host)
    if host in _METADATA_SPELLINGS:  # allowing loopback does not allow metadata
        with pytest.raises(HostRefusedError):
            LOOPBACK.check_name(host)


@pytest.mark.parametrize("host", _METADATA_SPELLINGS + _LOOPBACK_SPELLINGS[:-2])
async def test_every_spelling_is_refused_before_any_lookup_or_connection(host: str) -> None:
    # If a spelling passed as a name, this resolver would send it to a harmless address.
    resolver = FixedResolver("192.0.2.1")
    limits = RegistryLimits(connect_timeout_s=0.5, timeout_s=1.0)
    async with RegistryClient(resolver=resolver, limits=limits) as client:
        with pytest.raises(HostRefusedError):
            await client.get_manifest(ImageReference.parse(f"{host}:5000/app:v1"))
    assert resolver.asked == []


def test_ordinary_names_and_addresses_still_pass() -> None:
    policy = HostPolicy()
    for host in ("registry.example", "10.1.2.3", "0x.example", "1.2.3.4.example", "[2001:db8::1]"):
        policy.check_name(host)


# --------------------------------------------------------------------------------------------
# Bounded state


async def test_refused_hosts_leave_no_state_behind() -> None:
    async with RegistryClient(resolver=FixedResolver("192.0.2.1")) as client:
        for i in range(2000):
            ref = ImageReference.parse(f"169.254.{i // 256}.{i % 256}:5000/app:v1")
            with pytest.raises(HostRefusedError):
                await client.fetch_compatibility_spec(ref)
        assert len(client._semaphores) == 0
        assert len(client._tokens) == 0 and len(client._ssl) == 0


async def test_hosts_refused_after_dns_keep_per_host_state_bounded() -> None:
    # Names pass the name check and are refused only once resolved: the state they leave is
    # bounded by hosts_kept, however many distinct names a pod author tries.
    resolver = FixedResolver("169.254.169.254")
    limits = RegistryLimits(hosts_kept=16, connect_timeout_s=1.0)
    async with RegistryClient(resolver=resolver, limits=limits) as client:
        for i in range(200):
            ref = ImageReference.parse(f"host{i}.example/app:v1")
            with pytest.raises(HostRefusedError):
                await client.fetch_compatibility_spec(ref)
        assert len(resolver.asked) == 200
        assert len(client._semaphores) <= 16


# --------------------------------------------------------------------------------------------
# Pull secrets are data, not code; no cookies


def _helper(directory: Path, name: str, body: str) -> None:
    helper = directory / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + body)
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)


async def test_a_pull_secret_never_runs_a_credential_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    _helper(tmp_path, "evil", f'touch {marker}\necho \'{{"Username":"u","Secret":"s"}}\'\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    secret = json.dumps(
        {
            "auths": {"reg.example": {}},
            "credsStore": "evil",
            "credHelpers": {"other.example": "evil"},
        }
    ).encode()
    config = DockerConfig.from_secret_data(secret)
    for registry in ("reg.example", "other.example", "third.example"):
        assert await config.lookup(registry) is None
    assert not marker.exists()
    # The extender's own config (--docker-config) may still use helpers.
    own = tmp_path / "config.json"
    own.write_text(json.dumps({"credHelpers": {"reg.example": "evil"}}))
    found = await DockerConfig.from_file(own).lookup("reg.example")
    assert found == Credentials(username="u", password="s")
    assert marker.exists()


async def test_an_auths_entry_without_credentials_falls_through_to_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _helper(tmp_path, "store", 'echo \'{"Username":"alice","Secret":"pw"}\'\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    # What `docker login` writes with a credsStore: an empty entry, the secret in the store.
    config = DockerConfig({"auths": {"reg.example": {}}, "credsStore": "store"})
    assert await config.lookup("reg.example") == Credentials(username="alice", password="pw")


async def test_the_registry_session_keeps_no_cookies(aiohttp_server: Any) -> None:
    cookies: list[str | None] = []

    async def manifest(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.Response(
            body=IMAGE, content_type="application/vnd.oci.image.manifest.v1+json"
        )
        response.set_cookie("session", "tracking", path="/")
        return response

    async def missing(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/v2/app/manifests/{ref}", manifest)
    app.router.add_get("/v2/app/referrers/{digest}", missing)
    server = await aiohttp_server(app, host="127.0.0.1")
    # A name, not an address: aiohttp's default jar keeps cookies only for names.
    host = f"registry.test:{server.port}"
    async with RegistryClient(
        policy=LOOPBACK,
        hosts={host: RegistryHostConfig(plain_http=True)},
        resolver=FixedResolver("127.0.0.1"),
    ) as client:
        ref = ImageReference.parse(f"{host}/app:v1")
        for _ in range(2):
            assert await client.fetch_compatibility_spec(ref) is None
    assert len(cookies) >= 4
    assert cookies == [None] * len(cookies)


# --------------------------------------------------------------------------------------------
# Pod authors see reasons, not network internals

_INTERNALS = ("errno", "refused", "connect call", "ssl", "wrong_version", "version_number", "[")


async def test_a_closed_port_is_unreachable_without_errno_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends
    host = f"127.0.0.1:{port}"
    async with RegistryClient(policy=LOOPBACK, hosts=_plain(host)) as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_manifest(ImageReference.parse(f"{host}/app:v1"))
    assert str(caught.value) == f"{host}: registry unreachable"
    assert not any(word in str(caught.value).lower().replace(host, "") for word in _INTERNALS)
    # The operator still finds the details, with the host, in the log.
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(host in m and "refused" in m.lower() for m in logged), logged


async def test_an_open_port_without_tls_is_a_failed_handshake_without_tls_details(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await aiohttp_server(web.Application(), host="127.0.0.1")
    host = f"127.0.0.1:{server.port}"
    async with RegistryClient(policy=LOOPBACK) as client:  # https, as for any registry
        with pytest.raises(RegistryError) as caught:
            await client.get_manifest(ImageReference.parse(f"{host}/app:v1"))
    assert str(caught.value) == f"{host}: registry TLS handshake failed"
    assert not any(
        word in str(caught.value).lower().replace(host, "").replace("tls handshake", "")
        for word in _INTERNALS
    )
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(host in m and "WRONG_VERSION_NUMBER" in m for m in logged), logged
