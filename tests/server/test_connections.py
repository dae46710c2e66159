"""Connections that hold the server without finishing a request are closed, against a real
``serve`` on 127.0.0.1: idle keep-alive connections, headers sent a byte at a time, bodies
trickled; and with few file descriptors, ``/healthz`` answers again once they are closed.

Each wait is bounded (a few times the configured timeout); what is asserted is that the server
closed the connection, not how fast."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.server.test_serve import Server

TIMEOUTS = ["--keepalive-timeout=2s", "--request-read-timeout=2s"]
BOUND = 20.0  # seconds a test waits for the server to act on a 2 s timeout


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(["--listen=127.0.0.1:0", "--feature-source=none", *TIMEOUTS], {})
    yield running
    running.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
    return sock


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """True once the server has closed ``sock`` (EOF or reset); False at ``deadline``."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        if not data:
            return True
    return False


def healthz(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.1 200")


def test_idle_connections_are_closed(server: Server) -> None:
    port = server.port()
    idle = [connect(port) for _ in range(50)]
    used = connect(port)  # one request answered, then idle on keep-alive
    used.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert used.recv(65536).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + BOUND
    assert all(closed_by_server(sock, deadline) for sock in [*idle, used])
    assert healthz(port)


def test_slow_headers_are_cut_off(server: Server) -> None:
    port = server.port()
    sock = connect(port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 1000 + b"\r\n"
    deadline = time.monotonic() + BOUND
    sent = 0
    closed = False
    while time.monotonic() < deadline and sent < len(request):
        try:
            sock.sendall(request[sent : sent + 1])
        except OSError:
            closed = True
            break
        sent += 1
        time.sleep(0.2)
    assert closed or closed_by_server(sock, deadline), f"still open after {sent} header bytes"
    assert sent < len(request)
    assert healthz(port)


def test_trickled_bodies_are_cut_off(server: Server) -> None:
    port = server.port()
    sock = connect(port)
    sock.sendall(
        b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    deadline = time.monotonic() + BOUND
    answer = b""
    while time.monotonic() < deadline:
        try:
            sock.sendall(b" ")
            sock.settimeout(0.2)
            answer += sock.recv(65536)
            if not answer or b"\r\n\r\n" in answer:
                break
        except TimeoutError:
            continue
        except OSError:
            break
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert closed_by_server(sock, time.monotonic() + BOUND)
    assert healthz(port)


FD_LIMIT = 64


def test_healthz_answers_again_when_descriptors_run_out() -> None:
    """Idle connections take every descriptor; once they time out, the server serves again."""

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    server = Server(
        ["--listen=127.0.0.1:0", "--feature-source=none", *TIMEOUTS], {}, preexec=low_fd_limit
    )
    try:
        port = server.port()
        hogs = []
        for _ in range(FD_LIMIT * 2):
            try:
                hogs.append(connect(port))
            except OSError:
                break
        # The server's descriptors are spent: new connections wait in the backlog until idle
        # ones are closed (before the timeouts existed, /healthz never answered again).
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and not healthz(port):
            time.sleep(0.5)
        assert healthz(port), server.log
        for sock in hogs:
            sock.close()
    finally:
        assert server.stop() == 0
    # asyncio logs each failed accept() with a traceback, thousands a second: one is kept per
    # interval, so the log says what happened without flooding.
    refused = [line for line in server.lines if "cannot accept connections" in line]
    assert 1 <= len(refused) <= 3, server.log[-2000:]
    assert "out of system resource" not in server.log


def test_timeouts_must_be_positive() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extender", "serve", "--keepalive-timeout=0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--keepalive-timeout" in result.stderr
