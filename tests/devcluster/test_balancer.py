"""The loopback round-robin balancer: alternates backends per connection, drops a backend
whose connect fails (and tries it again later), closes clients when none is left, and ends a
client's connection when its backend dies."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from devcluster.balancer import Balancer
from devcluster.processes import free_port
from tests._support.polling import eventually

pytestmark = pytest.mark.timeout(60)


class Backend:
    """A TCP server answering every line with its name and the line, until stopped."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                try:
                    conn.sendall(self.name.encode() + b" " + line)
                except OSError:
                    return

    def stop(self) -> None:
        # shutdown() wakes the accept() blocked in the thread; close() alone would not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def ask(balancer: Balancer, text: str = "hi") -> str:
    with socket.create_connection(("127.0.0.1", balancer.port), timeout=5) as conn:
        conn.sendall(text.encode() + b"\n")
        return conn.makefile("rb").readline().decode().strip()


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("a"), Backend("b")
    yield a, b
    a.stop()
    b.stop()


def test_round_robin_per_connection(backends: tuple[Backend, Backend]) -> None:
    a, b = backends
    with Balancer([("127.0.0.1", a.port), ("127.0.0.1", b.port)]) as balancer:
        answers = [ask(balancer, str(i)) for i in range(4)]
        assert answers == ["a 0", "b 1", "a 2", "b 3"]
        # A keep-alive connection stays with its backend.
        with socket.create_connection(("127.0.0.1", balancer.port), timeout=5) as conn:
            lines = conn.makefile("rb")
            for i in range(3):
                conn.sendall(f"{i}\n".encode())
                assert lines.readline().decode().split()[0] == "a"
        assert balancer.connections[("127.0.0.1", a.port)] == 3


def test_dead_backend_is_dropped_then_tried_again(backends: tuple[Backend, Backend]) -> None:
    a, b = backends
    a_addr, b_addr = ("127.0.0.1", a.port), ("127.0.0.1", b.port)
    with Balancer([a_addr, b_addr], retry_after_s=0.5) as balancer:
        a.stop()
        # Every connection is answered, by b: a's failed connect only moves it along.
        assert [ask(balancer, str(i)) for i in range(4)] == [f"b {i}" for i in range(4)]
        assert balancer.connect_failures[a_addr] == 1  # dropped, not retried every time
        assert balancer.up() == [b_addr]
        # a comes back on its port (a restarted replica): after retry_after_s it is used.
        again = Backend("a", a.port)
        try:
            eventually(lambda: balancer.up() == [a_addr, b_addr], "a back in the rotation")
            assert {ask(balancer).split()[0] for _ in range(4)} == {"a", "b"}
        finally:
            again.stop()


def test_no_backend_left_closes_the_client(backends: tuple[Backend, Backend]) -> None:
    a, _ = backends
    with Balancer([("127.0.0.1", a.port), ("127.0.0.1", free_port())]) as balancer:
        a.stop()
        assert ask(balancer) == ""  # connection closed without an answer
        assert balancer.refused == 1


def test_backend_death_ends_the_client_connection(backends: tuple[Backend, Backend]) -> None:
    a, b = backends
    with Balancer([("127.0.0.1", a.port), ("127.0.0.1", b.port)]) as balancer:
        with socket.create_connection(("127.0.0.1", balancer.port), timeout=5) as conn:
            lines = conn.makefile("rb")
            conn.sendall(b"x\n")
            assert lines.readline() == b"a x\n"
            eventually(lambda: balancer.active[("127.0.0.1", a.port)] == 1, "a active")
            a.stop()
            assert lines.readline() == b""  # EOF: the client sees its backend go
        eventually(lambda: balancer.active[("127.0.0.1", a.port)] == 0, "a released")
        assert ask(balancer, "y") == "b y"


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Balancer([("10.0.0.1", 80)])
    with pytest.raises(ValueError, match="loopback"):
        Balancer([("127.0.0.1", 80)], host="0.0.0.0")
    with pytest.raises(ValueError, match="at least one"):
        Balancer([])
