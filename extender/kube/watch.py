"""List-then-watch of API server collections, the one mechanism every watch here uses.

Owns :class:`ListWatch`: for each of its streams, three nested loops in a thread of its own
(forever, with exponential backoff on failures; list every page then watch from the list's
resourceVersion, listing again on 410 Gone; one watch request, bookmarks and ``ERROR`` events
handled), and a :meth:`ListWatch.stop` that unblocks a thread stuck in a read. Subclasses say
what to call and what to do with items and events: the NodeFeature/Node watches of
:mod:`extender.nodes.kubesource` and the unbound-pod prefetch of :mod:`.pods`.

The official client blocks, hence threads; nothing here holds a lock across I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "ApiGoneError",
    "ListWatch",
    "failure_reason",
    "interrupt_response",
    "run_in_thread",
    "watch_events",
]

log = logging.getLogger(__name__)


class ApiGoneError(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class _StoppedError(Exception):
    pass


class ListWatch:
    """List then watch one API collection per stream until :meth:`stop`.

    Hooks, each called from the stream's own thread:

    * :meth:`call` makes the client's list request (``watch=True`` among the keyword
      arguments for a watch) with ``_preload_content=False``;
    * :meth:`on_list_start`, :meth:`on_list_item` (every item of every page) and
      :meth:`on_listed` (the list is complete; the watch starts next);
    * :meth:`on_event` for ``ADDED``, ``MODIFIED`` and ``DELETED`` events;
    * :meth:`on_failure` when a list or watch fails (the loop then backs off and lists again).
    """

    def __init__(
        self,
        streams: Sequence[str],
        *,
        page_size: int,
        watch_timeout_s: int,
        backoff_s: tuple[float, float],
        list_timeout_s: float | tuple[float, float],
    ) -> None:
        self._streams = tuple(streams)
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_s
        self._backoff = backoff_s
        self._list_timeout_s = list_timeout_s
        self._stop = threading.Event()
        self._open: set[Any] = set()
        self.stream_relists = dict.fromkeys(self._streams, 0)  # lists done, per stream

    async def run(self, *, iterations: int | None = None) -> None:
        """Run every stream until cancelled or stopped (or ``iterations`` outer-loop turns
        each, for tests). A watch runs once: after :meth:`stop`, even one that came before
        the task got to run, it does not start again."""
        try:
            await asyncio.gather(
                *(run_in_thread(self._forever, s, iterations) for s in self._streams)
            )
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the streams promptly, from any thread.

        Closing a response another thread is reading blocks on the reader's buffer lock, so
        the socket underneath is shut down instead: the blocked read returns at once.
        """
        self._stop.set()
        for response in list(self._open):
            interrupt_response(response)

    # -- hooks -----------------------------------------------------------------------------

    def call(self, stream: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def on_list_start(self, stream: str) -> None:
        """A list of ``stream`` begins (a failed earlier one may have left partial state)."""

    def on_list_item(self, stream: str, item: Mapping[str, Any]) -> None:
        """One item of a list page."""

    def on_listed(self, stream: str) -> None:
        """The list is complete."""

    def on_event(self, stream: str, kind: str, obj: Mapping[str, Any]) -> None:
        """A watch event (``ADDED``, ``MODIFIED`` or ``DELETED``)."""

    def on_failure(self, stream: str, err: Exception) -> None:
        log.warning("%s watch failed (%s); retrying", stream, failure_reason(err))

    # -- the three loops -------------------------------------------------------------------

    def _forever(self, stream: str, iterations: int | None) -> None:
        delay = self._backoff[0]
        turns = 0
        while not self._stop.is_set() and (iterations is None or turns < iterations):
            turns += 1
            try:
                self._continuous(stream)
                delay = self._backoff[0]
            except _StoppedError:
                return
            except Exception as err:
                if self._stop.is_set():
                    return
                self.on_failure(stream, err)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])

    def _continuous(self, stream: str) -> None:
        """List, then watch from the list's resourceVersion until 410 or a failure."""
        resource_version = self._list(stream)
        self.stream_relists[stream] += 1
        self.on_listed(stream)
        while not self._stop.is_set():
            try:
                resource_version = self._watch_once(stream, resource_version)
            except ApiGoneError:
                log.info("%s watch expired (410 Gone): listing again", stream)
                return

    def _list(self, stream: str) -> str:
        """Every page of ``stream``, items handed over page by page; the list's version."""
        self.on_list_start(stream)
        token: str | None = None
        while True:
            response = self.call(
                stream,
                limit=self._page_size,
                _continue=token,
                _preload_content=False,
                _request_timeout=self._list_timeout_s,
            )
            document = json.loads(response.data)
            for item in document.get("items") or ():
                self.on_list_item(stream, item)
            metadata = document.get("metadata") or {}
            token = metadata.get("continue") or None
            if token is None:
                return str(metadata.get("resourceVersion") or "")
            if self._stop.is_set():
                raise _StoppedError

    def _watch_once(self, stream: str, resource_version: str) -> str:
        """One watch request on ``stream``; returns the last resourceVersion seen."""
        response = self.call(
            stream,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout_s,
            _preload_content=False,
            _request_timeout=(10, self._watch_timeout_s + 30),
        )
        self._open.add(response)
        try:
            # stop() sets the flag before it interrupts what is open: a stop that came while
            # this request was in flight did not see the response, so look at the flag again.
            if self._stop.is_set():
                raise _StoppedError
            for event in watch_events(response):
                if self._stop.is_set():
                    raise _StoppedError
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise ApiGoneError
                    raise RuntimeError(f"watch error: {obj.get('message') or obj}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    resource_version = str(version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(stream, kind, obj)
        except Exception as err:
            if getattr(err, "status", None) == 410:
                raise ApiGoneError from None
            if self._stop.is_set():
                raise _StoppedError from None
            raise
        finally:
            self._open.discard(response)
            with contextlib.suppress(Exception):
                response.release_conn()
        return resource_version


def failure_reason(err: Exception) -> str:
    """``HTTP 403`` for an API answer, else the exception's type and text."""
    status = getattr(err, "status", None)
    return f"HTTP {status}" if status else f"{type(err).__name__}: {err}"


async def run_in_thread(function: Any, *args: Any) -> None:
    """Run a long-lived blocking loop in its own daemon thread and await its end.

    Not ``asyncio.to_thread``: the default executor has only a few workers, and watches that
    never return would starve it (and each other) in a small container.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        error: BaseException | None = None
        try:
            function(*args)
        except BaseException as err:  # handed to the awaiting task
            error = err
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=target, name=f"watch-{args[0]}", daemon=True).start()
    await done


def interrupt_response(response: Any) -> None:
    """Unblock a thread reading ``response`` by shutting its socket down underneath it."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        # socket.socket's own shutdown, not SSLSocket's, which also drops the TLS object the
        # reading thread is using.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def watch_events(response: Any) -> Iterator[dict[str, Any]]:
    """Watch events from a streaming response: one JSON document per line."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)
