"""Fuzz targets of the wire decoder: random bytes, valid extender bodies after random edits,
and request-shaped JSON with random values, fed to every ``decode_*``. Each returns its
request or raises ProtocolError, the same way every time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from extender.server.protocol import (
    ProtocolError,
    decode_binding_args,
    decode_extender_args,
    decode_preemption_args,
    encode_filter_result,
    encode_preemption_result,
)
from tests.fuzz import _profile
from tests.fuzz.strategies import (
    JSON_PIECES,
    VALID_BODIES,
    byte_mutated,
    mutated,
    structured_bodies,
)

DECODERS: tuple[Callable[[bytes], Any], ...] = (
    decode_extender_args,
    decode_preemption_args,
    decode_binding_args,
)


def decode_all(body: bytes) -> None:
    """Every decoder on ``body``, twice: the same request or the same ProtocolError."""
    _profile.count()
    for decode in DECODERS:
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(decode(body))
            except ProtocolError as err:
                assert str(err).startswith("invalid ")
                outcomes.append(str(err))
        assert outcomes[0] == outcomes[1]
        decoded = outcomes[0]
        # What was decoded can be answered: the encoders take it as it is.
        if decode is decode_extender_args and not isinstance(decoded, str):
            encode_filter_result(decoded, range(len(decoded.nodes)))
        elif decode is decode_preemption_args and not isinstance(decoded, str):
            encode_preemption_result(decoded.victims)


@_profile.fuzz_settings(short=150, long=20_000)
@given(st.binary(max_size=400))
def test_protocol_random_bytes(body: bytes) -> None:
    decode_all(body)


@_profile.fuzz_settings(short=150, long=15_000)
@given(mutated(VALID_BODIES, JSON_PIECES))
def test_protocol_mutated_bodies(body: str) -> None:
    decode_all(body.encode("utf-8", "surrogatepass"))


@_profile.fuzz_settings(short=100, long=10_000)
@given(byte_mutated(VALID_BODIES))
# Found by the atheris harness: a string that is not UTF-8 made msgspec raise
# UnicodeDecodeError, which escaped the decoder (and became a 500 over HTTP).
@example(b'{"Pod": {}, "Nodes": {"items": [{"metadata": {"name": "\x9a"}}]}}')
@example(b'{"Pod": {"metadata": {"name": "\xff"}}, "NodeNames": []}')
def test_protocol_byte_mutated_bodies(body: bytes) -> None:
    decode_all(body)


@_profile.fuzz_settings(short=100, long=6_000)
@given(structured_bodies())
def test_protocol_structured(body: bytes) -> None:
    decode_all(body)
