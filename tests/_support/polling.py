"""Waiting in tests for something that happens in the background: one polling loop.

A test that waits for a watch, a poller or a process asks for the condition, never for a fixed
time. ``within`` only bounds a wait that would otherwise hang; it is not a timing assertion, so
it is generous, and a miss fails naming what was awaited (``what`` may be a callable, to
describe the last state seen).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Description = str | Callable[[], str]


def _failure(what: Description, within: float) -> AssertionError:
    text = what() if callable(what) else what
    return AssertionError(f"still waiting after {within:g}s for {text}")


def eventually(
    predicate: Callable[[], object],
    what: Description,
    within: float = 30.0,
    interval: float = 0.05,
) -> None:
    """Call ``predicate`` until it returns something true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            raise _failure(what, within)
        time.sleep(interval)


async def eventually_async(
    predicate: Callable[[], object | Awaitable[object]],
    what: Description,
    within: float = 30.0,
    interval: float = 0.05,
) -> None:
    """Like :func:`eventually` inside an event loop; ``predicate`` may be a coroutine function.

    The loop keeps running between checks, so the tasks being waited for make progress.
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise _failure(what, within)
        await asyncio.sleep(interval)
