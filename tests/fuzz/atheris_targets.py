"""Coverage-guided fuzzing with atheris (libFuzzer) of the spec parser and the wire decoder.

``python -m tests.fuzz.atheris_targets spec|protocol [libFuzzer flags] [corpus dirs]`` runs
one harness; ``make fuzz`` runs both with seeds from examples/specs and valid extender bodies.
The extender's modules are instrumented, so inputs that reach new branches of ours are kept
and mutated further (PyYAML is not: instrumenting it too made each spec input four times
slower). A crash is any exception other than the module's documented error
(SpecError, ProtocolError), or a second parse or decode that disagrees with the first; libFuzzer
then writes the input to a ``crash-*`` file and exits non-zero.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports(include=["extender"]):
    from extender.nfd.rules import compile_spec
    from extender.nfd.spec import SpecError, parse_spec
    from extender.server.protocol import (
        ProtocolError,
        decode_binding_args,
        decode_extender_args,
        decode_preemption_args,
    )


def fuzz_spec(data: bytes) -> None:
    outcomes: list[object] = []
    for _ in range(2):
        try:
            spec = parse_spec(data)
        except SpecError as err:
            outcomes.append(str(err))
        else:
            outcomes.append(spec)
    if outcomes[0] != outcomes[1]:
        raise AssertionError(f"two parses disagree: {outcomes}")
    if not isinstance(outcomes[0], str):
        with contextlib.suppress(SpecError):
            compile_spec(parse_spec(data))


_DECODERS: tuple[Callable[[bytes], Any], ...] = (
    decode_extender_args,
    decode_preemption_args,
    decode_binding_args,
)


def fuzz_protocol(data: bytes) -> None:
    for decode in _DECODERS:
        outcomes: list[object] = []
        for _ in range(2):
            try:
                outcomes.append(decode(data))
            except ProtocolError as err:
                outcomes.append(str(err))
        if outcomes[0] != outcomes[1]:
            raise AssertionError(f"two decodes disagree: {outcomes}")


TARGETS: dict[str, Callable[[bytes], None]] = {"spec": fuzz_spec, "protocol": fuzz_protocol}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags] [corpus dirs]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
