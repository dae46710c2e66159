"""A real ``image-compat-extender serve`` subprocess for the benchmarks that watch a cluster.

Owns starting it on a free loopback port (read from its log), waiting until ``/readyz`` reports
a number of nodes, reading its memory from ``/proc`` and stopping it. The log is kept up to a
bound, so a long run (the soak) does not hold it whole.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

LOG_LINES_KEPT = 5000


class ServeProcess:
    """``python -m extender serve --listen=127.0.0.1:0 --log-level=info`` plus ``args``."""

    def __init__(self, args: Sequence[str]) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "extender", "serve", "--listen=127.0.0.1:0"),
                "--log-level=info",
                *args,
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.port = 0
        self.lines: list[str] = []
        self._listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if len(self.lines) < LOG_LINES_KEPT:
                self.lines.append(line)
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                self._listening.set()
        self._listening.set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, nodes: int, within_s: float = 600) -> float:
        """Seconds from process start until /readyz reports ``nodes`` nodes."""
        if not await asyncio.to_thread(self._listening.wait, 60) or not self.port:
            raise RuntimeError("serve did not start:\n" + "".join(self.lines))
        deadline = time.perf_counter() + within_s
        body: Any = None
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() < deadline:
                async with session.get(f"{self.base}/readyz") as response:
                    body = await response.json()
                if response.status == 200 and body.get("nodes", 0) >= nodes:
                    return time.perf_counter() - self.started
                await asyncio.sleep(0.1)
        raise RuntimeError(f"serve not ready with {nodes} nodes: {body}")

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) from /proc, in kB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
        assert "VmRSS" in fields, status
        return {k: int(v) for k, v in fields.items()}

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(30)
