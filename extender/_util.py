"""Small generic tools the packages share: a bounded dict and single-flight.

Owns :class:`BoundedDict` (a FIFO-bounded mapping, the building block of every cache here),
:class:`SingleFlight` (one task per key: concurrent callers of one key await the same
task, so a spec is fetched and compiled once however many requests ask for it), and
:func:`poll_forever`, the loop that re-reads a watched file. Nothing here
knows about the domain; it is the bottom layer every package may import.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = [
    "BoundedDict",
    "SingleFlight",
]

# --------------------------------------------------------------------------------------------
# The registry-backed source

K = TypeVar("K")
V = TypeVar("V")


log = logging.getLogger(__name__)


class SingleFlight(Generic[K, V]):
    """At most one running computation per key; concurrent callers share its result.

    The computation runs as its own task, so a caller that gives up (a filter whose wait
    budget ran out) does not cancel it: the result still lands in the caches for the next
    call. ``started`` counts computations actually started (tests and metrics read it).
    """

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}
        self.started = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: K) -> bool:
        return key in self._tasks

    def start(self, key: K, factory: Callable[[], Coroutine[Any, Any, V]]) -> asyncio.Task[V]:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(factory())
            self._tasks[key] = task
            self.started += 1

            def forget(done: asyncio.Task[V]) -> None:
                if self._tasks.get(key) is done:
                    del self._tasks[key]
                if not done.cancelled():
                    done.exception()  # retrieved: a failure is reported to the callers

            task.add_done_callback(forget)
        return task

    async def run(self, key: K, factory: Callable[[], Coroutine[Any, Any, V]]) -> V:
        return await asyncio.shield(self.start(key, factory))

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class BoundedDict(OrderedDict[K, V], Generic[K, V]):
    """A dict that drops its oldest entry when full (FIFO).

    Not an LRU on purpose: a hit stays a bare ``get`` (an LRU reorders on every hit, which
    costs more than the rest of a node's work on the request path). With a bound well above
    the number of distinct node configurations, evictions are rare anyway.

    An OrderedDict, not a dict: ``del d[next(iter(d))]`` on a plain dict scans past the
    entries deleted before it, so under steady eviction each one cost ~10 µs at 65,536
    entries (a cold spec over 5,000 nodes took ~0.5 s); ``popitem(last=False)`` is O(1)
    and lookups cost the same.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: K, value: V) -> None:
        if key not in self and len(self) >= self.size:
            self.popitem(last=False)
        self[key] = value


async def poll_forever(
    step: Callable[[], object],
    interval: float,
    what: str,
    *,
    iterations: int | None = None,
) -> None:
    """Every ``interval`` seconds run ``step`` in a worker thread, forever (or ``iterations``
    times, for tests). A failure of one step is logged and the loop goes on: the caller's
    state stays what its last good step left."""
    done = 0
    while iterations is None or done < iterations:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(step)
        except Exception:
            log.exception("%s: unexpected error while reloading", what)
        done += 1
