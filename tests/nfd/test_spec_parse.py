"""Spec parsing: NFD's YAML reading (sigs.k8s.io/yaml over go-yaml v2), limits and errors."""

from __future__ import annotations

import pytest

from extender.nfd.golang import go_format_float32, resolve_plain_scalar
from extender.nfd.spec import SpecError, SpecLimits, parse_spec


def values_of(value_yaml: str) -> tuple[str, ...]:
    spec = parse_spec(
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - matchFeatures:\n    - feature: f.x\n"
        f"      matchExpressions:\n        k: {{op: In, value: {value_yaml}}}\n"
    )
    expressions = spec.compatibilities[0].rules[0].match_features[0].match_expressions
    assert expressions is not None
    return expressions[0][1].value


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("[0200]", ("128",)),  # YAML 1.1 octal
        ('["0200"]', ("0200",)),
        ("[09]", ("9",)),  # not octal: a float, formatted back
        ("[1_000]", ("1000",)),
        ("[0x1F]", ("31",)),
        ("[0b101]", ("5",)),
        ("[+1]", ("1",)),
        ("[1.0]", ("1",)),
        ("[5.10]", ("5.1",)),
        ("[22.04]", ("22.04",)),
        ("[3.14159265]", ("3.1415927",)),  # float32 precision
        ("[1e6]", ("1e+06",)),
        ("[1000000]", ("1000000",)),
        ("[0.00001]", ("1e-05",)),
        ("[y]", ("true",)),  # YAML 1.1 booleans
        ("[yes, on, n, off, No]", ("true", "true", "false", "false", "false")),
        ("[true, 'y']", ("true", "y")),
        ("[~, null]", ("", "")),
        ("[1e400]", ("1e400",)),  # out of float64 range: Go leaves it a string
        ("[2001-12-14]", ("2001-12-14",)),
        ("[!!str 0200]", ("0200",)),
        ("[.inf, -.Inf, .nan]", ("+Inf", "-Inf", "NaN")),
        ('["m", m, M]', ("m", "m", "M")),
    ],
)
def test_scalars_read_as_nfd_reads_them(written: str, read: tuple[str, ...]) -> None:
    assert values_of(written) == read


def test_unquoted_coercions_warn() -> None:
    spec = parse_spec(
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - matchFeatures:\n    - feature: f.x\n"
        '      matchExpressions:\n        k: {op: In, value: [0200, 5, "7"]}\n'
    )
    messages = [str(w) for w in spec.warnings]
    assert any("unquoted 0200 is read as '128'" in m for m in messages)
    assert any("value[1]" in m and "quote it" in m for m in messages)
    assert not any("value[2]" in m for m in messages)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("-0", 0),
        ("0o17", 15),
        ("017", 15),
        ("08", 8.0),
        ("-0x10", -16),
        ("18446744073709551615", 18446744073709551615),
        ("99999999999999999999", 1e20),
        (".5", 0.5),
        ("~", None),
        ("", None),
        ("abc", "abc"),
        ("0x", "0x"),
        ("1__0", 10),
    ],
)
def test_resolve_plain_scalar(text: str, value: object) -> None:
    assert resolve_plain_scalar(text) == value


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.1, "0.1"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e20, "1e+20"),
        (-2.5, "-2.5"),
        (0.0001, "0.0001"),
        (1e39, "+Inf"),
    ],
)
def test_go_format_float32(number: float, text: str) -> None:
    assert go_format_float32(number) == text


def test_fields_are_case_insensitive_last_sorted_variant_wins() -> None:
    spec = parse_spec("version: v1alpha1\nCompatibilities:\n- Weight: 3\n  weight: 7\n  TAG: t\n")
    compat = spec.compatibilities[0]
    assert (compat.weight, compat.tag) == (7, "t")
    assert any("differs in case" in str(w) for w in spec.warnings)


def test_unknown_fields_are_ignored_with_a_warning() -> None:
    spec = parse_spec("version: v1alpha1\ncompatibilities:\n- rules: [{name: r, labels: {a: b}}]\n")
    assert [str(w) for w in spec.warnings] == [
        "compatibilities[0].rules[0].labels: unknown field, ignored"
    ]


def test_match_expressions_absent_differs_from_empty() -> None:
    spec = parse_spec(
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - matchFeatures:\n"
        "    - feature: a.b\n    - feature: a.c\n      matchExpressions: {}\n"
    )
    terms = spec.compatibilities[0].rules[0].match_features
    assert terms[0].match_expressions is None and terms[1].match_expressions == ()


def test_digest_is_canonical() -> None:
    a = parse_spec('{"version": "v1alpha1", "compatibilities": [{"weight": 1, "tag": "x"}]}')
    b = parse_spec(
        "compatibilities:\n- tag: x   # same thing in YAML\n  weight: 1\nversion: v1alpha1\n"
    )
    c = parse_spec("version: v1alpha1\ncompatibilities:\n- tag: y\n  weight: 1\n")
    assert a.digest == b.digest != c.digest


def test_merge_keys() -> None:
    spec = parse_spec(
        "base: &b {op: In, value: [a]}\nversion: v1alpha1\ncompatibilities:\n- rules:\n"
        "  - matchFeatures:\n    - feature: f.x\n      matchExpressions:\n        k: {<<: *b, value: [z]}\n"
    )
    expressions = spec.compatibilities[0].rules[0].match_features[0].match_expressions
    assert expressions is not None and expressions[0][1].value == ("z",)
    assert expressions[0][1].op == "In"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("", "version: missing: only 'v1alpha1' is supported"),
        ("version: v2\n", "version: 'v2': only 'v1alpha1' is supported"),
        ("[1, 2]", "expected an object"),
        ("version: v1alpha1\ncompatibilities: {a: 1}\n", "compatibilities: expected a list"),
        ("version: v1alpha1\ncompatibilities:\n- weight: '10'\n", "expected an integer"),
        ("version: v1alpha1\ncompatibilities:\n- weight: 10.5\n", "expected an integer"),
        ("version: v1alpha1\ncompatibilities:\n- weight: -1\n", "outside 0..100"),
        ("version: v1alpha1\ncompatibilities:\n- weight: true\n", "expected an integer"),
        ("version: v1alpha1\ncompatibilities:\n- tag: [a]\n", "expected a string"),
        (
            "version: v1alpha1\ncompatibilities:\n- rules: [{varsTemplate: 'x={{.a}}'}]\n",
            "Go templates",
        ),
        ("version: v1alpha1\ncompatibilities:\n- rules: [{vars: [a]}]\n", "expected an object"),
        (
            "version: v1alpha1\ncompatibilities:\n- rules:\n  - matchFeatures:\n    - {feature: a.b, matchExpressions: {k: null}}\n",
            "expression is null",
        ),
        (
            "version: v1alpha1\ncompatibilities:\n- rules:\n  - matchFeatures:\n    - {feature: a.b, matchExpressions: {k: {op: In, value: a}}}\n",
            "expected a list",
        ),
        ("version: v1alpha1\nx: .nan\n", "cannot be represented in JSON"),
        ("version: v1alpha1\n{a: 1}: 2\n", "key must be a scalar"),
        ("version: v1alpha1\n~: 2\n", "key cannot be null"),
        ("version: [v1alpha1\n", "invalid YAML"),
        ("version: v1alpha1\nx: !!python/object:os.system ls\n", "unsupported YAML tag"),
        ("a: &a [*a]\n", "nesting deeper"),
        ("\tversion: v1alpha1\n", "invalid YAML"),
    ],
)
def test_bad_specs_give_clear_errors(document: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(document)
    assert problem in str(caught.value)


def test_limits() -> None:
    limits = SpecLimits(max_bytes=100, max_sets=2, max_aliases=3)
    with pytest.raises(SpecError, match="over the 100-byte limit"):
        parse_spec("#" * 101, limits=limits)
    with pytest.raises(SpecError, match="more than 2 sets"):
        parse_spec("version: v1alpha1\ncompatibilities: [{}, {}, {}]", limits=limits)
    with pytest.raises(SpecError, match="aliases"):
        parse_spec("a: &x 1\nb: [*x, *x, *x, *x]\n", limits=limits)
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join('*' + chr(97 + i) for _ in range(10))}]\n"
        for i in range(8)
    )
    with pytest.raises(SpecError, match="YAML nodes after aliases"):
        parse_spec(laughs)


def test_non_utf8_and_nul_are_errors() -> None:
    with pytest.raises(SpecError, match="not UTF-8"):
        parse_spec(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="invalid YAML"):
        parse_spec("version: v1alpha1\x00")


def test_only_first_document_counts() -> None:
    spec = parse_spec("version: v1alpha1\n---\nthis is: [not parsed\n")
    assert spec.compatibilities == ()
