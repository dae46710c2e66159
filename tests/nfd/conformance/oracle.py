"""Drives ``nfd-eval`` (NFD v0.18.x's own evaluation code) as one long-lived subprocess."""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass(frozen=True)
class NfdRule:
    name: str
    matched: bool


@dataclass(frozen=True)
class NfdSet:
    tag: str
    weight: int
    description: str
    rules: tuple[NfdRule, ...]


@dataclass(frozen=True)
class NfdResult:
    """NFD's verdict on one case. ``stage`` is "" when it succeeded (see nfd-eval's doc)."""

    error: str
    stage: str
    sets: tuple[NfdSet, ...]
    validate_node: str = field(default="")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NfdResult:
        sets = tuple(
            NfdSet(
                s["tag"],
                s["weight"],
                s["description"],
                tuple(NfdRule(r["name"], r["isMatch"]) for r in s["rules"]),
            )
            for s in data["sets"]
        )
        return cls(data["error"], data["stage"], sets, data.get("validateNode", ""))


class OracleError(RuntimeError):
    """nfd-eval died or answered out of protocol."""


class Batch:
    """Cases in flight: one thread writes them, another collects the answers."""

    def __init__(self, oracle: NfdEval, lines: list[str], first_id: int) -> None:
        self._failure: list[BaseException] = []
        self._results: list[NfdResult] = []
        stdin, stdout = oracle._pipes()

        def feed() -> None:
            try:
                for line in lines:
                    stdin.write(line)
                stdin.flush()
            except BaseException as err:  # reported by results()
                self._failure.append(err)

        def collect() -> None:
            try:
                for offset in range(len(lines)):
                    self._results.append(oracle._read(stdout, first_id + offset))
            except BaseException as err:  # reported by results()
                self._failure.append(err)

        self._threads = [threading.Thread(target=f, daemon=True) for f in (feed, collect)]
        for thread in self._threads:
            thread.start()

    def results(self) -> list[NfdResult]:
        for thread in self._threads:
            thread.join()
        if self._failure:
            failure = self._failure[0]
            if isinstance(failure, OracleError):
                raise failure
            raise OracleError(f"talking to nfd-eval failed: {failure!r}")
        return self._results


class NfdEval:
    """One nfd-eval process: :meth:`run` streams a batch, :meth:`one` asks a single case."""

    def __init__(self, binary: Path) -> None:
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives as long as self
        self._proc = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1 << 16,
        )
        self._next_id = 0

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def _line(self, case: dict[str, Any]) -> str:
        self._next_id += 1
        return json.dumps({"id": self._next_id, **case}, ensure_ascii=False) + "\n"

    def _read(self, stdout: IO[str], expected_id: int) -> NfdResult:
        line = stdout.readline()
        if not line:
            self._stderr.seek(0)
            raise OracleError(
                f"nfd-eval exited ({self._proc.poll()}): {self._stderr.read()[-2000:]}"
            )
        data = json.loads(line)
        if data["id"] != expected_id:
            raise OracleError(f"nfd-eval answered id {data['id']}, expected {expected_id}")
        if data["stage"] == "input":
            raise OracleError(f"nfd-eval could not read a case: {data['error']}")
        return NfdResult.from_json(data)

    def start(self, cases: Iterable[dict[str, Any]]) -> Batch:
        """Send a batch (``{"spec", "features", "tags"}`` each) and return at once."""
        lines = [self._line(case) for case in cases]
        return Batch(self, lines, self._next_id - len(lines) + 1)

    def run(self, cases: Iterable[dict[str, Any]]) -> list[NfdResult]:
        """Evaluate a batch; results in order."""
        return self.start(cases).results()

    def one(self, case: dict[str, Any]) -> NfdResult:
        stdin, stdout = self._pipes()
        stdin.write(self._line(case))
        stdin.flush()
        return self._read(stdout, self._next_id)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> NfdEval:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
