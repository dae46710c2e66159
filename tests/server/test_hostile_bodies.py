"""Hostile request bodies against a real ``serve`` on 127.0.0.1: compression bombs, many large
bodies at once, broken compressed bodies and deeply nested JSON. The process's peak memory is
read from /proc (VmHWM), so what is asserted is what the kernel charged to it."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.server.test_serve import POD, Server

MiB = 1 << 20


def memory(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of ``pid``, in bytes."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def start(*flags: str) -> Server:
    return Server(["--listen=127.0.0.1:0", "--feature-source=none", *flags], {})


@pytest.fixture
def server() -> Iterator[Server]:
    running = start("--max-body-bytes=16Mi", "--max-inflight-body-bytes=64Mi")
    yield running
    running.stop()


async def post(session: aiohttp.ClientSession, url: str, body: bytes, encoding: str) -> int:
    headers = {"Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, ConnectionResetError):
        return 0  # the server closed the connection before the whole body was sent


def bomb(encoding: str, inflated: int) -> bytes:
    """A small body that inflates to ``inflated`` bytes of JSON whitespace."""
    data = b'{"Pod": {}, "X": "' + b" " * inflated + b'"}'
    return gzip.compress(data, 9) if encoding == "gzip" else zlib.compress(data, 9)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compression_bombs_are_limited_by_their_inflated_size(
    server: Server, encoding: str
) -> None:
    base = f"http://127.0.0.1:{server.port()}"
    body = bomb(encoding, 1000 * MiB)  # about 1 MiB on the wire
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        before = memory(server.process.pid)["VmHWM"]
        statuses = await asyncio.gather(
            *(post(session, f"{base}/filter", body, encoding) for _ in range(8))
        )
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
    peak = memory(server.process.pid)["VmHWM"]
    print(f"{encoding} bombs: VmHWM {before / MiB:.0f} MiB -> {peak / MiB:.0f} MiB; {statuses}")
    assert set(statuses) <= {413, 0} and 413 in statuses
    # 8 bodies of at most --max-body-bytes (16 MiB) each, under the 64 MiB in-flight budget.
    assert peak - before < 100 * MiB


async def test_concurrent_large_bodies_stay_within_the_in_flight_budget(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port()}"
    # Valid JSON the decoder skips without building anything: only the body itself costs.
    body = json.dumps({"Pod": POD, "NodeNames": [], "X": "x" * (15 * MiB)}).encode()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        before = memory(server.process.pid)["VmHWM"]
        statuses = await asyncio.gather(
            *(post(session, f"{base}/filter", body, "") for _ in range(16))
        )
        async with session.post(f"{base}/filter", json={"Pod": POD, "NodeNames": []}) as response:
            assert response.status == 200  # the budget is given back
    peak = memory(server.process.pid)["VmHWM"]
    print(f"16 x 15 MiB: VmHWM {before / MiB:.0f} MiB -> {peak / MiB:.0f} MiB; {statuses}")
    assert 200 in statuses and 503 in statuses
    assert set(statuses) <= {200, 503, 0}
    # 64 MiB in flight, each body joined once: well under the 240 MiB all 16 would take.
    assert peak - before < 160 * MiB


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip.compress(b'{"Pod": {}}')[:-12] + b"garbage-garbage", "gzip"),
        (b"\x78\x9c" + b"\xff" * 64, "deflate"),
        (b"not gzip at all", "gzip"),
        (b'{"Pod": {}, "X": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ""),
        (gzip.compress(b'{"Pod": {}, "X": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "gzip"),
    ],
    ids=["truncated-gzip", "broken-deflate", "not-gzip", "nested-json", "nested-json-gzip"],
)
async def test_broken_bodies_get_400_not_a_traceback(body: bytes, encoding: str) -> None:
    running = start()
    try:
        base = f"http://127.0.0.1:{running.port()}"
        async with aiohttp.ClientSession() as session:
            for verb in ("filter", "prioritize", "preempt", "bind"):
                headers = {"Content-Encoding": encoding} if encoding else {}
                async with session.post(f"{base}/{verb}", data=body, headers=headers) as response:
                    assert response.status == 400, await response.text()
                    assert "error" in json.loads(await response.read())
    finally:
        assert running.stop() == 0
    assert "Traceback" not in running.log
