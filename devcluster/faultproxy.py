"""A loopback fault proxy in front of a registry, switchable while it runs.

This module owns fault injection between a registry client (the extender, oras, a test) and a
real registry. go-containerregistry's registry keeps its data in memory, so "registry down"
is simulated here rather than by restarting it. Faults (``Fault.mode``):

- ``pass``: forward unchanged (the proxy is transparent: no decompression, no added headers,
  ``Location`` headers rewritten back to the proxy);
- ``refuse``: the port stops listening (new connections get ECONNREFUSED; the port stays
  reserved), and requests on already open keep-alive connections are closed unanswered;
- ``hang``: accept the request and never answer (until the fault changes, the proxy stops or
  ``max_hang_s`` passes; then the connection is closed);
- ``delay``: wait ``delay_ms`` and then forward;
- ``error``: answer ``status`` (default 503) with an OCI error body;
- ``reset``: forward the upstream status and headers and half of the body, then reset the
  connection (TCP RST);
- ``unauthorized``: answer 401 with a Basic challenge;
- ``redirect``: answer 307 with a ``Location`` back to the same path on the proxy, with a
  query naming the hop, so a client that follows redirects loops until its own limit.

A fault can be limited to paths matching a regex (others pass) and to the next ``count``
matching requests. Every request is counted per method and path, so tests can assert on the
registry traffic a client caused (e.g. "filter made no registry request").

Two ways to run it:

- in-process, in the test's event loop: ``async with FaultProxy(upstream) as proxy`` and
  ``await proxy.set_fault(Fault("hang"))``;
- as a subprocess, for e2e tests and the demo whose client blocks or is another process:
  ``start_fault_proxy_process(upstream, workdir)`` runs ``python -m devcluster.faultproxy``
  and talks to its control endpoint (``GET|PUT /fault``, ``GET /requests``,
  ``POST /requests/reset``) with the same names, synchronously.

Everything is bounded: loopback addresses only, body size, upstream timeouts, hang and delay
caps, the number of distinct paths counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import socket
import ssl
import struct
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from devcluster.processes import ManagedProcess, StopOnExit, child_env
from devcluster.registries import RegistryEndpoint, RegistryError

__all__ = [
    "MODES",
    "Fault",
    "FaultProxy",
    "FaultProxyProcess",
    "RequestCounts",
    "start_fault_proxy_process",
]

MODES = ("pass", "refuse", "hang", "delay", "error", "reset", "unauthorized", "redirect")
MAX_DELAY_MS = 120_000
_MAX_BODY = 64 << 20  # test images are tiny; a bigger body is a bug, not a workload
_MAX_PATHS = 10_000  # distinct (method, path) keys counted; more would be a runaway client
_CHUNK = 64 << 10
# Hop-by-hop headers (RFC 9110 §7.6.1) are per connection; the proxy must not forward them.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

log = logging.getLogger("devcluster.faultproxy")
# The line the subprocess prints once both its ports are bound (it is started on port 0).
_ADDRESSES = re.compile(r"listening on (127\.0\.0\.1:\d+) control (127\.0\.0\.1:\d+)")


@dataclass(frozen=True)
class Fault:
    """What the proxy does to requests whose path matches ``path`` (all when None).

    ``count`` limits the fault to that many matching requests, after which they pass.
    """

    mode: str = "pass"
    delay_ms: int = 0  # for "delay"
    status: int = 503  # for "error"
    path: str | None = None  # regex, searched in the request path (without the query)
    count: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fault mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms {self.delay_ms}: expected 0..{MAX_DELAY_MS}")
        if not 500 <= self.status <= 599:
            raise ValueError(f"status {self.status}: the error fault answers 5xx only")
        if self.count is not None and self.count < 0:
            raise ValueError(f"count {self.count}: expected >= 0")
        if self.path is not None:
            re.compile(self.path)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {"mode", "delay_ms", "status", "path", "count"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RequestCounts:
    """Requests the proxy saw: per ``"METHOD /path"`` and in total (faulted ones included)."""

    total: int = 0
    by_key: dict[str, int] = field(default_factory=dict)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """Requests whose path matches the regex ``path`` (searched) and method ``method``."""
        pattern = re.compile(path) if path is not None else None
        n = 0
        for key, value in self.by_key.items():
            m, _, p = key.partition(" ")
            if method is not None and m != method.upper():
                continue
            if pattern is not None and not pattern.search(p):
                continue
            n += value
        return n

    def paths(self) -> dict[str, int]:
        """Count per path, all methods together."""
        out: Counter[str] = Counter()
        for key, value in self.by_key.items():
            out[key.partition(" ")[2]] += value
        return dict(out)


def _require_loopback(host: str, what: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(
            f"{what} {host!r} is not a loopback address; the fault proxy is loopback-only"
        )


def _split_hostport(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _rst(transport: asyncio.BaseTransport | None) -> None:
    """Close a connection with a TCP RST (SO_LINGER 0), as a crashed peer would."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class FaultProxy:
    """The proxy, in the running event loop. Use ``async with`` or ``start()``/``stop()``."""

    def __init__(
        self,
        upstream: RegistryEndpoint,
        *,
        listen: str = "127.0.0.1:0",
        control: str | None = None,
        fault: Fault | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_ca: Path | None = None,
        max_hang_s: float = 60.0,
        upstream_timeout_s: float = 60.0,
    ) -> None:
        up_host, _ = _split_hostport(upstream.host)
        _require_loopback(up_host, "upstream")
        self._listen_host, self._listen_port = _split_hostport(listen)
        _require_loopback(self._listen_host, "listen address")
        if control is not None:
            _require_loopback(_split_hostport(control)[0], "control address")
        self.upstream = upstream
        self._control_addr = control
        self._fault = fault or Fault()
        self._remaining = self._fault.count
        self._path_re = re.compile(self._fault.path) if self._fault.path else None
        self._tls_cert, self._tls_key = tls_cert, tls_key
        # What clients trust for the proxy's own certificate (default: the upstream's CA).
        self._tls_ca = tls_ca or upstream.ca_file
        self.max_hang_s = max_hang_s
        self._upstream_timeout_s = upstream_timeout_s
        self._counts: Counter[str] = Counter()
        self._total = 0
        # Set (and replaced) whenever the fault changes or the proxy stops: wakes hung requests.
        self._wake = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._control_runner: web.AppRunner | None = None
        self._placeholder: socket.socket | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        self.port = 0
        self.control_port = 0
        self._lock = asyncio.Lock()

    # -- addresses -------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self._tls_cert else "http"

    @property
    def host(self) -> str:
        return f"{self._listen_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def endpoint(self) -> RegistryEndpoint:
        """The registry as seen through the proxy: same credentials, the proxy's address."""
        return RegistryEndpoint(
            self.host,
            self.scheme,
            self.upstream.username,
            self.upstream.password,
            self._tls_ca if self.scheme == "https" else None,
        )

    @property
    def control_url(self) -> str | None:
        if not self.control_port or self._control_addr is None:
            return None
        return f"http://{_split_hostport(self._control_addr)[0]}:{self.control_port}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # shutdown_timeout bounds stop(): hung handlers are woken first, stragglers cancelled.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        if self._tls_cert:
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(str(self._tls_cert), str(self._tls_key or self._tls_cert))
        upstream_ssl: ssl.SSLContext | bool = self.upstream.ssl_context() or False
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, ssl=upstream_ssl),
            timeout=aiohttp.ClientTimeout(total=self._upstream_timeout_s, connect=5.0),
            auto_decompress=False,  # bytes pass through as the registry sent them
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        await self._listen(self._listen_port)
        if self._control_addr is not None:
            host, port = _split_hostport(self._control_addr)
            capp = web.Application(client_max_size=64 << 10)
            capp.router.add_get("/healthz", self._c_health)
            capp.router.add_get("/fault", self._c_get_fault)
            capp.router.add_put("/fault", self._c_put_fault)
            capp.router.add_get("/requests", self._c_requests)
            capp.router.add_post("/requests/reset", self._c_reset)
            self._control_runner = web.AppRunner(capp, access_log=None, handle_signals=False)
            await self._control_runner.setup()
            csite = web.TCPSite(self._control_runner, host, port)
            await csite.start()
            self.control_port = self._bound_port(csite)
        if self._fault.mode == "refuse":
            await self._unlisten()
        return self

    async def stop(self) -> None:
        self._wake.set()
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @staticmethod
    def _bound_port(site: web.TCPSite) -> int:
        # aiohttp keeps the asyncio server private; only it knows the port 0 turned into.
        sockets = getattr(site._server, "sockets", None) or ()
        if not sockets:
            raise RuntimeError(f"fault proxy site {site.name} has no listening socket")
        return int(sockets[0].getsockname()[1])

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        self._site = web.TCPSite(
            self._runner, self._listen_host, port, ssl_context=self._ssl, reuse_address=True
        )
        await self._site.start()
        self.port = self._bound_port(self._site)

    async def _unlisten(self) -> None:
        """Stop accepting, but keep the port bound (not listening), so connects are refused."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._placeholder is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._listen_host, self.port))
            self._placeholder = sock

    # -- faults and counts -------------------------------------------------------------------

    @property
    def fault(self) -> Fault:
        return self._fault

    async def set_fault(self, fault: Fault | str = "pass", **fields: Any) -> Fault:
        """Switch the fault: ``await set_fault("delay", delay_ms=200)`` or ``(Fault(...))``."""
        new = fault if isinstance(fault, Fault) else Fault(mode=fault, **fields)
        if isinstance(fault, Fault) and fields:
            new = replace(fault, **fields)
        async with self._lock:
            old = self._fault
            self._fault = new
            self._remaining = new.count
            self._path_re = re.compile(new.path) if new.path else None
            # Wake requests hung under the old fault; the next hang waits on a fresh event.
            self._wake.set()
            self._wake = asyncio.Event()
            if new.mode == "refuse" and old.mode != "refuse":
                await self._unlisten()
            elif new.mode != "refuse" and self._site is None and self._runner is not None:
                await self._listen(self.port)
        return new

    def counts(self) -> RequestCounts:
        return RequestCounts(self._total, dict(self._counts))

    def count(self, path: str | None = None, method: str | None = None) -> int:
        return self.counts().count(path, method)

    def reset_counts(self) -> None:
        self._counts.clear()
        self._total = 0

    def _record(self, request: web.Request) -> None:
        self._total += 1
        key = f"{request.method} {request.path}"
        if key in self._counts or len(self._counts) < _MAX_PATHS:
            self._counts[key] += 1

    def _applies(self, request: web.Request) -> Fault | None:
        """The fault to apply to this request, or None to pass it (and use up ``count``)."""
        fault = self._fault
        if fault.mode == "pass":
            return None
        if self._path_re is not None and not self._path_re.search(request.path):
            return None
        if self._remaining is not None:
            if self._remaining <= 0:
                return None
            self._remaining -= 1
        return fault

    # -- the proxy ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        fault = self._applies(request)
        mode = fault.mode if fault else "pass"
        if fault is None or mode in ("reset", "pass"):
            return await self._forward(request, reset=mode == "reset")
        if mode == "refuse":
            # A request on a keep-alive connection opened before the switch: close it unanswered.
            return self._close(request, rst=False)
        if mode == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.max_hang_s)
            return self._close(request, rst=False)
        if mode == "delay":
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), fault.delay_ms / 1000)
            return await self._forward(request, reset=False)
        if mode == "error":
            return self._oci_error(fault.status, "UNKNOWN", "error injected by the fault proxy")
        if mode == "redirect":
            # Each hop's URL differs (a client may refuse a Location equal to the URL it
            # asked for), but all lead back here: a loop only the client's hop limit ends.
            previous = request.query.get("hop", "")
            hop = min(int(previous), 1_000_000) + 1 if previous.isdigit() else 1
            location = f"{self.url}{request.path}?hop={hop}"
            return web.Response(status=307, headers={"Location": location})
        # unauthorized
        resp = self._oci_error(401, "UNAUTHORIZED", "authentication required (fault proxy)")
        resp.headers["WWW-Authenticate"] = 'Basic realm="faultproxy"'
        return resp

    @staticmethod
    def _oci_error(status: int, code: str, message: str) -> web.Response:
        body = {"errors": [{"code": code, "message": message, "detail": None}]}
        return web.json_response(
            body, status=status, headers={"Docker-Distribution-Api-Version": "registry/2.0"}
        )

    @staticmethod
    def _close(request: web.Request, *, rst: bool) -> web.StreamResponse:
        if rst:
            _rst(request.transport)
        elif request.transport is not None:
            request.transport.close()
        # aiohttp still wants a response object; nothing reaches the closed connection.
        return web.Response(status=499)

    def _rewrite_location(self, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.netloc in (self.upstream.host, self.host):
            return urllib.parse.urlunsplit((self.scheme, self.host, *parts[2:]))
        return value

    async def _forward(self, request: web.Request, *, reset: bool) -> web.StreamResponse:
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() not in ("host", "content-length")
        }
        # The registry builds absolute Location URLs from Host and X-Forwarded-Proto; both name
        # the proxy, so clients keep talking through it (and _rewrite_location catches the rest).
        headers["Host"] = self.host
        headers["X-Forwarded-Proto"] = self.scheme
        body = await request.read() if request.can_read_body else None
        url = self.upstream.url + request.rel_url.raw_path_qs
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                data=body if body is not None else None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as e:
            return self._oci_error(502, "UNAVAILABLE", f"fault proxy: upstream failed: {e}")
        async with upstream:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                kl = k.lower()
                if kl in _HOP_BY_HOP or kl in ("content-length", "date", "server"):
                    continue
                resp.headers.add(k, self._rewrite_location(v) if kl == "location" else v)
            length = upstream.content_length
            if length is not None:
                resp.content_length = length
            if reset and (request.method == "HEAD" or not length):
                # Nothing to cut in half: drop the connection before any answer.
                return self._close(request, rst=True)
            await resp.prepare(request)
            if request.method == "HEAD":
                return resp
            sent = 0
            limit = (length // 2) if (reset and length) else None
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                if limit is not None and sent + len(chunk) >= limit:
                    await resp.write(chunk[: limit - sent])
                    await self._drain_and_rst(request)
                    return resp
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
            return resp

    @staticmethod
    async def _drain_and_rst(request: web.Request) -> None:
        # The half body must reach the client before the RST, which discards unsent data.
        transport = request.transport
        for _ in range(400):  # at most 2 s
            if transport is None or transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # let the kernel put the bytes on the wire before the RST
        _rst(transport)

    # -- control endpoint (used by FaultProxyProcess) -------------------------------------------

    async def _c_health(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True, "listening": self.host})

    async def _c_get_fault(self, _: web.Request) -> web.Response:
        return web.json_response(self._fault.to_json())

    async def _c_put_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await request.json())
        except (ValueError, TypeError, re.error) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response((await self.set_fault(fault)).to_json())

    async def _c_requests(self, _: web.Request) -> web.Response:
        c = self.counts()
        return web.json_response({"total": c.total, "by_key": c.by_key})

    async def _c_reset(self, _: web.Request) -> web.Response:
        self.reset_counts()
        return web.json_response({"ok": True})


# ---------------------------------------------------------------------------------------------
# Subprocess: `python -m devcluster.faultproxy`, and a synchronous handle on it


class FaultProxyProcess(StopOnExit):
    """A fault proxy running as ``python -m devcluster.faultproxy``; same names, synchronous."""

    def __init__(
        self,
        process: ManagedProcess,
        *,
        host: str,
        control_url: str,
        upstream: RegistryEndpoint,
        scheme: str,
    ) -> None:
        self.process = process
        self.host = host
        self.control_url = control_url
        self.upstream = upstream
        self.scheme = scheme
        self.log_file = process.log_path
        self.pid = process.pid or 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def endpoint(self) -> RegistryEndpoint:
        up = self.upstream
        ca = up.ca_file if self.scheme == "https" else None
        return RegistryEndpoint(self.host, self.scheme, up.username, up.password, ca)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.control_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read(1 << 20))
        except urllib.error.HTTPError as e:
            raise ValueError(f"fault proxy control {method} {path}: {e.read(4096).decode()}") from e

    @property
    def fault(self) -> Fault:
        return Fault.from_json(self._call("GET", "/fault"))

    def set_fault(self, fault: Fault | str = "pass", **fields: Any) -> Fault:
        new = fault if isinstance(fault, Fault) else Fault(mode=fault, **fields)
        if isinstance(fault, Fault) and fields:
            new = replace(fault, **fields)
        return Fault.from_json(self._call("PUT", "/fault", new.to_json()))

    def counts(self) -> RequestCounts:
        data = self._call("GET", "/requests")
        return RequestCounts(int(data["total"]), dict(data["by_key"]))

    def count(self, path: str | None = None, method: str | None = None) -> int:
        return self.counts().count(path, method)

    def reset_counts(self) -> None:
        self._call("POST", "/requests/reset")

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self) -> None:
        self.process.stop(10.0)


def start_fault_proxy_process(
    upstream: RegistryEndpoint,
    workdir: Path,
    *,
    fault: Fault | None = None,
    listen: str = "127.0.0.1:0",
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    max_hang_s: float = 60.0,
    timeout_s: float = 30.0,
) -> FaultProxyProcess:
    """Start the proxy as a subprocess in front of ``upstream``; it logs to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    f = fault or Fault()
    cmd = [
        sys.executable,
        "-m",
        "devcluster.faultproxy",
        "--upstream",
        upstream.url,
        "--listen",
        listen,
        "--control",
        "127.0.0.1:0",
        "--fault",
        json.dumps(f.to_json()),
        "--max-hang-s",
        str(max_hang_s),
        "--exit-on-stdin-eof",
    ]
    if upstream.ca_file is not None:
        cmd += ["--upstream-ca", str(upstream.ca_file)]
    if tls_cert is not None:
        cmd += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key or tls_cert)]
    # stdin is a pipe only we hold: if this process dies, the proxy sees EOF and exits.
    process = ManagedProcess(
        "faultproxy",
        cmd,
        workdir / "faultproxy.log",
        child_env(import_repo=True),
        cwd=workdir,
        stdin_pipe=True,
        error=RegistryError,
    ).start()
    try:
        m = process.wait_for_log(_ADDRESSES, timeout_s)
    except BaseException:
        process.stop(10.0)
        raise
    return FaultProxyProcess(
        process,
        host=m.group(1),
        control_url=f"http://{m.group(2)}",
        upstream=upstream,
        scheme="https" if tls_cert else "http",
    )


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(1024):
            pass
    loop.call_soon_threadsafe(stop.set)


async def _serve(args: argparse.Namespace) -> None:
    upstream_parts = urllib.parse.urlsplit(args.upstream)
    if upstream_parts.scheme not in ("http", "https") or not upstream_parts.netloc:
        raise SystemExit(f"--upstream {args.upstream!r}: expected http(s)://HOST:PORT")
    upstream = RegistryEndpoint(
        upstream_parts.netloc,
        upstream_parts.scheme,
        ca_file=Path(args.upstream_ca) if args.upstream_ca else None,
    )
    fault = Fault.from_json(json.loads(args.fault)) if args.fault else Fault()
    proxy = FaultProxy(
        upstream,
        listen=args.listen,
        control=args.control,
        fault=fault,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        max_hang_s=args.max_hang_s,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (2, 15):  # SIGINT, SIGTERM
        loop.add_signal_handler(sig, stop.set)
    async with proxy:
        print(f"listening on {proxy.host} control 127.0.0.1:{proxy.control_port}", flush=True)
        if args.exit_on_stdin_eof:
            threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.faultproxy", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--upstream", required=True, help="registry URL, http(s)://127.0.0.1:PORT")
    parser.add_argument("--upstream-ca", help="CA bundle verifying an https upstream")
    parser.add_argument("--listen", default="127.0.0.1:0", help="proxy address (loopback)")
    parser.add_argument("--control", default="127.0.0.1:0", help="control address (loopback)")
    parser.add_argument("--fault", help='initial fault as JSON, e.g. {"mode": "delay", ...}')
    parser.add_argument("--tls-cert", help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="key for --tls-cert (PEM)")
    parser.add_argument("--max-hang-s", type=float, default=60.0, help="cap on a hang")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="exit when stdin closes (parent gone)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
