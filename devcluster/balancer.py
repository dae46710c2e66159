"""A loopback TCP round-robin balancer: one address in front of several extender replicas.

Owns :class:`Balancer`, which stands in for a Kubernetes Service (kube-proxy) in the
reliability tests and the demo-style stacks: each new client connection goes to the next
backend in turn, and bytes are copied both ways until either side closes. A backend whose
connect fails is dropped from the rotation, as a Service drops the endpoint of a dead pod,
and is tried again after ``retry_after_s`` (its replacement may come back on the same port).
Balancing is per connection, as kube-proxy's is: a keep-alive connection stays with the
backend it was given until that backend goes away.

It runs in its own thread and event loop (:meth:`Balancer.start` / :meth:`Balancer.stop`, or
``with``), so synchronous tests and processes like kube-scheduler can use it alike. Loopback
addresses only; connections and copy buffers are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

__all__ = ["Balancer"]

log = logging.getLogger("devcluster.balancer")

_CHUNK = 64 << 10
_MAX_CONNECTIONS = 256  # kube-scheduler keeps a handful; more would be a runaway client
_CONNECT_TIMEOUT_S = 2.0


def _loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host!r} is not a loopback address; the balancer is loopback-only")
    return host


class Balancer:
    """Round-robin over ``backends`` (``(host, port)`` pairs on loopback), listening on
    ``127.0.0.1:port`` (0: a free port, see :attr:`port` after :meth:`start`)."""

    def __init__(
        self,
        backends: Sequence[tuple[str, int]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        retry_after_s: float = 5.0,
    ) -> None:
        if not backends:
            raise ValueError("the balancer needs at least one backend")
        self.backends = [(_loopback(h), int(p)) for h, p in backends]
        self.host = _loopback(host)
        self.port = port
        self.retry_after_s = retry_after_s
        self._next = 0
        self._down: dict[tuple[str, int], float] = {}  # backend → when its connect failed
        self._lock = threading.Lock()
        # Counters the tests read (under the lock): connections forwarded per backend, and
        # connect failures that dropped a backend.
        self.connections: Counter[tuple[str, int]] = Counter()
        self.active: Counter[tuple[str, int]] = Counter()
        self.connect_failures: Counter[tuple[str, int]] = Counter()
        self.refused = 0  # client connections closed because no backend answered
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # open connections, both sides

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def up(self) -> list[tuple[str, int]]:
        """Backends in the rotation now (not dropped, or dropped long enough ago)."""
        now = time.monotonic()
        with self._lock:
            return [
                b for b in self.backends if now - self._down.get(b, -1e18) >= self.retry_after_s
            ]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Balancer:
        self._thread = threading.Thread(target=self._run, name="balancer", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the balancer did not start listening")
        if self._error is not None:
            raise RuntimeError(f"the balancer failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            stop = self._stop_event
            if stop is not None:
                loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=10)

    def __enter__(self) -> Balancer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as err:  # reported to start(); the thread ends either way
            self._error = err
            self._started.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        stop = self._stop_event = asyncio.Event()
        self._slots = asyncio.Semaphore(_MAX_CONNECTIONS)
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._started.set()
        async with self._server:
            await stop.wait()
            self._server.close()
            # Closing the connections ends their copies; cancelling the connection tasks
            # instead would make asyncio's stream callback log each cancellation.
            for writer in list(self._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=5)

    # -- forwarding --------------------------------------------------------------------------

    def _rotation(self) -> list[tuple[str, int]]:
        """The backends to try for one connection, starting at the next in turn; dropped
        ones are left out until ``retry_after_s`` has passed."""
        now = time.monotonic()
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.backends)
            order = self.backends[start:] + self.backends[:start]
            up = [b for b in order if now - self._down.get(b, -1e18) >= self.retry_after_s]
        return up

    async def _connect(
        self,
    ) -> tuple[tuple[str, int], asyncio.StreamReader, asyncio.StreamWriter] | None:
        for backend in self._rotation():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*backend), _CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as err:
                log.info("backend %s:%d dropped: %s", *backend, err)
                with self._lock:
                    self._down[backend] = time.monotonic()
                    self.connect_failures[backend] += 1
                continue
            with self._lock:
                self._down.pop(backend, None)
            return backend, reader, writer
        return None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._slots is not None
        async with self._slots:
            connected = await self._connect()
            if connected is None:
                with self._lock:
                    self.refused += 1
                writer.close()
                return
            backend, b_reader, b_writer = connected
            self._writers.update((writer, b_writer))
            with self._lock:
                self.connections[backend] += 1
                self.active[backend] += 1
            try:
                await asyncio.gather(_copy(reader, b_writer), _copy(b_reader, writer))
            finally:
                with self._lock:
                    self.active[backend] -= 1
                for w in (writer, b_writer):
                    w.close()
                    self._writers.discard(w)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error on either side, then close the other side too (a dead
    backend's connection ends its client's, as it would through kube-proxy)."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
        writer.close()
