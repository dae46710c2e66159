"""Single-expression semantics, table-driven against NFD's rules."""

from __future__ import annotations

import pytest

from extender.nfd.golang import go_atoi, parse_version
from extender.nfd.rules import SetSemantics, evaluate, load_spec
from extender.nfd.spec import SpecError
from extender.nodes.model import NodeFeatures

ATTR = "test.attr"


def spec_for(expressions: str, feature: str = ATTR) -> str:
    return f"""
version: v1alpha1
compatibilities:
- rules:
  - name: r
    matchFeatures:
    - feature: {feature}
      matchExpressions: {expressions}
"""


def attrs(**values: str) -> NodeFeatures:
    return NodeFeatures.build("n", {}, {ATTR: values}, {})


def rule_result(spec_text: str, features: NodeFeatures) -> bool | str:
    verdict = evaluate(load_spec(spec_text), features)
    rule = verdict.sets[0].rules[0]
    return "ERR" if rule.error else rule.matched


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        # op "" always matches, even when the element is absent (vector 1)
        ('{foo: {op: ""}}', {}, True),
        # NotIn on an absent element is false, not true (vector 2)
        ('{foo: {op: NotIn, value: ["1","2","3"]}}', {}, False),
        ('{foo: {op: NotIn, value: ["1"]}}', {"foo": "2"}, True),
        ('{foo: {op: NotIn, value: ["1"]}}', {"foo": "1"}, False),
        # InRegexp is an unanchored RE2 search (vector 4)
        ('{foo: {op: InRegexp, value: ["val-[0-9]$"]}}', {"foo": "val-12"}, False),
        ('{foo: {op: InRegexp, value: ["val-[0-9]+$"]}}', {"foo": "val-12"}, True),
        ('{foo: {op: InRegexp, value: ["^val-[0-9]$"]}}', {"foo": "val-12"}, False),
        ('{foo: {op: InRegexp, value: ["^val-[0-9]$", "al-[1-9]"]}}', {"foo": "val-12"}, True),
        # negative integers (vector 5)
        ('{foo: {op: Gt, value: ["-10"]}}', {"foo": "-3"}, True),
        # GtLt strict bounds (vector 6)
        ('{foo: {op: GtLt, value: ["1","10"]}}', {"foo": "1"}, False),
        ('{foo: {op: GtLt, value: ["1","10"]}}', {"foo": "10"}, False),
        ('{foo: {op: GtLt, value: ["1","10"]}}', {"foo": "2"}, True),
        ('{foo: {op: GeLe, value: ["-10","10"]}}', {"foo": "10"}, True),
        ('{foo: {op: GeLe, value: ["-10","10"]}}', {"foo": "-11"}, False),
        # IsTrue/IsFalse compare exactly (vectors 7, 18)
        ("{foo: {op: IsTrue}}", {"foo": "true"}, True),
        ("{foo: {op: IsTrue}}", {"foo": "false"}, False),
        ("{foo: {op: IsTrue}}", {"foo": "1"}, False),
        ("{foo: {op: IsTrue}}", {"foo": "True"}, False),
        ("{foo: {op: IsFalse}}", {"foo": "false"}, True),
        # node-side values that cannot be compared are evaluation errors (vectors 9, 17, 23)
        ('{foo: {op: Gt, value: ["2"]}}', {"foo": "3a"}, "ERR"),
        ('{foo: {op: Lt, value: ["2"]}}', {"foo": "1.0"}, "ERR"),
        ('{foo: {op: GeLe, value: ["-10","10"]}}', {"foo": "1.0"}, "ERR"),
        ('{foo: {op: Lt, value: ["10"]}}', {"foo": "0x1"}, "ERR"),
        ('{foo: {op: Lt, value: ["10"]}}', {"foo": " 1"}, "ERR"),
        # Atoi: leading zeros and a plus sign are fine
        ('{foo: {op: Ge, value: ["10"]}}', {"foo": "010"}, True),
        ('{foo: {op: Ge, value: ["10"]}}', {"foo": "+10"}, True),
        # comparisons on an absent element are false without error
        ('{foo: {op: Gt, value: ["2"]}}', {}, False),
        # versions (vectors 15, 16)
        ('{foo: {op: Gt, value: ["2.0"], type: version}}', {"foo": "2.0"}, False),
        ('{foo: {op: Gt, value: ["2.0"], type: version}}', {"foo": "2.1"}, True),
        ('{foo: {op: GeLe, value: ["1","10"], type: version}}', {"foo": "-11"}, "ERR"),
        ('{foo: {op: GeLe, value: ["1","10"], type: version}}', {"foo": "10"}, True),
        ('{foo: {op: GeLe, value: ["1","10"], type: version}}', {"foo": "0"}, False),
        # pre-release is validated, then dropped
        ('{foo: {op: Ge, value: ["5.15"], type: version}}', {"foo": "5.15.0-91-generic"}, True),
        ('{foo: {op: Gt, value: ["5.15"], type: version}}', {"foo": "5.15.0-91-generic"}, False),
        ('{foo: {op: Ge, value: ["6.8"], type: version}}', {"foo": "v6.8.0-1015-aws"}, True),
        (
            '{foo: {op: Ge, value: ["5.0"], type: version}}',
            {"foo": "5.14.0-427.el9_4.x86_64"},
            "ERR",
        ),
        ('{foo: {op: Ge, value: ["1.0"], type: version}}', {"foo": "1.2.3.4"}, "ERR"),
        ('{foo: {op: Ge, value: ["1.0"], type: version}}', {"foo": "1.2.3-05"}, "ERR"),
        ('{foo: {op: Ge, value: ["1.0"], type: version}}', {"foo": "01.02"}, True),
        # reversed version bounds are not checked by NFD: never match
        ('{foo: {op: GtLt, value: ["5","1"], type: version}}', {"foo": "3"}, False),
    ],
)
def test_attribute_expression(expression: str, values: dict[str, str], expected: object) -> None:
    assert rule_result(spec_for(expression), attrs(**values)) == expected


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ('{foo: {op: Exists, value: ["1"]}}', "takes no values"),  # vector 8
        ('{foo: {op: Gt, value: [""]}}', "is not an integer"),  # vector 9
        ('{foo: {op: GtLt, value: ["2","1"]}}', "value[0] < value[1]"),  # vector 10
        ("{foo: {op: non-existent-op}}", "unknown op"),  # vector 11
        ('{foo: {op: in, value: ["a"]}}', "unknown op"),
        ('{foo: {op: Gt, value: ["2.0"]}}', "add type: version"),  # vector 14
        ("{foo: {op: In}}", "needs at least one value"),
        ('{foo: {op: Gt, value: ["1", "2"]}}', "exactly one value"),
        ('{foo: {op: GeLe, value: ["1"]}}', "exactly two values"),
        ('{foo: {op: InRegexp, value: ["(a"]}}', "invalid regexp"),
        ('{foo: {op: InRegexp, value: ["(?=a)"]}}', "invalid regexp"),
        ('{foo: {op: Gt, value: ["1"], type: semver}}', "not supported"),
        ('{foo: {op: Ge, value: ["1.2.3.4"], type: version}}', "is not a version"),
        ('{foo: {op: IsTrue, value: ["true"]}}', "takes no values"),
    ],
)
def test_load_time_errors_carry_a_path(expression: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(spec_for(expression))
    assert problem in str(caught.value)
    assert caught.value.path.startswith(
        "compatibilities[0].rules[0].matchFeatures[0].matchExpressions"
    )


def test_issue_example_error_text() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(spec_for("{vfio_pci: {op: In}}", feature="kernel.loadedmodule"))
    assert str(caught.value) == (
        "compatibilities[0].rules[0].matchFeatures[0].matchExpressions.vfio_pci: "
        "op In needs at least one value"
    )


@pytest.mark.parametrize(
    ("expression", "warning"),
    [
        ('{foo: {op: In, value: ["a"], type: version}}', "no effect"),
        ('{foo: {op: GtLt, value: ["5", "1"], type: version}}', "never match"),
        ('{foo: {op: GtLt, value: ["5", "5"], type: version}}', "never match"),
    ],
)
def test_problems_nfd_never_reports_are_warnings(expression: str, warning: str) -> None:
    compiled = load_spec(spec_for(expression))
    assert any(warning in str(w) for w in compiled.warnings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("-1", -1),
        ("+7", 7),
        ("010", 10),
        ("9223372036854775807", (1 << 63) - 1),
        ("9223372036854775808", None),
        ("1.0", None),
        ("", None),
        ("0x1", None),
        ("1_0", None),
        ("\u0661", None),
        (" 1", None),
    ],
)
def test_go_atoi(text: str, expected: int | None) -> None:
    assert go_atoi(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.15.0-91-generic", (5, 15, 0)),
        ("v1", (1, 0, 0)),
        ("1.2", (1, 2, 0)),
        ("1.2.3+build.5", (1, 2, 3)),
        ("01.002.0003", (1, 2, 3)),
        ("1.2.3.4", None),
        ("4.18.0-553.el8_10", None),
        ("-1", None),
        ("1.2.3-", None),
        ("1.2.3-a..b", None),
        ("1.2.3-0", (1, 2, 3)),
        ("1.2.3-00", None),
        ("1.2.3-0a", (1, 2, 3)),
        ("x1", None),
        ("18446744073709551616", None),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == expected


def test_semantics_enum_round_trips() -> None:
    assert SetSemantics("all") is SetSemantics.ALL
