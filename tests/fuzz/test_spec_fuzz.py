"""Fuzz targets of the spec parser: random YAML-ish text and bytes, random spec-shaped
documents, and valid example specs after random edits. Whatever comes in, ``parse_spec``
returns a Spec or raises SpecError, the same way every time."""

from __future__ import annotations

import json

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from extender.nfd.spec import Spec, SpecError, parse_spec
from tests.fuzz import _profile
from tests.fuzz.strategies import (
    EXAMPLE_SPECS,
    TRICKY_SCALARS,
    mutated,
    structured_specs,
    yaml_text,
)


def parse_twice(document: str | bytes) -> Spec | None:
    """Parse ``document`` twice: a Spec or a SpecError, and the same one both times."""
    _profile.count()
    outcomes: list[Spec | str] = []
    for _ in range(2):
        try:
            spec = parse_spec(document)
        except SpecError as err:
            assert str(err), "a SpecError says what is wrong"
            outcomes.append(f"{type(err).__name__}: {err}")
        else:
            assert spec.digest.startswith("sha256:")
            outcomes.append(spec)
    first, second = outcomes
    assert first == second
    if isinstance(first, Spec):
        assert isinstance(second, Spec) and first.warnings == second.warnings
        return first
    return None


@_profile.fuzz_settings(short=120, long=15_000)
@given(st.one_of(yaml_text, st.binary(max_size=300)), st.booleans())
def test_spec_random_text(document: str | bytes, wrapped: bool) -> None:
    if wrapped:
        # Inside a valid prefix, so the text reaches the decoder, not only the YAML reader.
        prefix = "version: v1alpha1\ncompatibilities:\n- rules:\n  - "
        document = prefix + (document if isinstance(document, str) else document.decode("latin-1"))
    parse_twice(document)
    if isinstance(document, str):
        parse_twice(document.encode("utf-8", "surrogatepass"))


@_profile.fuzz_settings(short=40, long=4_000)
@given(structured_specs(), st.sampled_from(["json", "yaml", "yaml-flow"]))
# Found by this target: JSON's escaped UTF-16 pair for a character beyond U+FFFF reached the
# digest as two lone surrogates, and UnicodeEncodeError escaped parse_spec.
@example({"version": "v1alpha1", "compatibilities": [{"description": "\U00010000"}]}, "json")
def test_spec_structured(document: dict[str, object], form: str) -> None:
    if form == "json":
        text = json.dumps(document)
    else:
        text = yaml.safe_dump(document, default_flow_style=form == "yaml-flow", allow_unicode=True)
    parse_twice(text)


@_profile.fuzz_settings(short=60, long=6_000)
@given(mutated(EXAMPLE_SPECS, TRICKY_SCALARS))
def test_spec_mutated_examples(document: str) -> None:
    parse_twice(document)
