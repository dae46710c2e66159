"""Each crash the fuzz targets found, as a plain test on the minimal input."""

from __future__ import annotations

import pytest

from extender.nfd.spec import SpecError, parse_spec


@pytest.mark.parametrize(
    "document",
    [
        # JSON writes U+10000 as the escaped UTF-16 pair; PyYAML keeps its two halves.
        '{"version": "v1alpha1", "compatibilities": [{"description": "\\ud800\\udc00"}]}',
        'version: v1alpha1\ncompatibilities: [{rules: [{name: "\\udc00"}]}]\n',
        'version: v1alpha1\n"\\ud800": 1\n',
    ],
    ids=["escaped-pair", "lone-low-half", "in-a-key"],
)
def test_surrogate_escapes_are_a_spec_error(document: str) -> None:
    # go-yaml refuses these escapes; here they once raised UnicodeEncodeError.
    with pytest.raises(SpecError, match="surrogate"):
        parse_spec(document)
    with pytest.raises(SpecError, match="surrogate"):
        parse_spec(document.encode())


def test_characters_beyond_the_bmp_written_as_themselves_are_read() -> None:
    spec = parse_spec(
        'version: v1alpha1\ncompatibilities: [{description: "\U0001f600 \\U0001F600"}]\n'
    )
    assert spec.compatibilities[0].description == "\U0001f600 \U0001f600"
