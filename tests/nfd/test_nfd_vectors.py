"""NFD's own unit-test vectors: its expression-api, rule and validator tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from extender.nfd.rules import evaluate, load_spec
from extender.nodes.model import NodeFeatures

F = "test.feat"


def node(
    keys: Sequence[str] | None = None,
    values: Mapping[str, str] | None = None,
    instances: Sequence[Mapping[str, str]] | None = None,
) -> NodeFeatures:
    """A node whose feature F has exactly the given flag keys, attributes and instances."""
    return NodeFeatures.build(
        "n",
        {F: keys} if keys is not None else {},
        {F: values} if values is not None else {},
        {F: instances} if instances is not None else {},
    )


def term_matches(term_yaml: str, features: NodeFeatures) -> bool | str:
    spec = load_spec(
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - name: r\n    matchFeatures:\n"
        f"    - feature: {F}\n" + "".join(f"      {line}\n" for line in term_yaml.splitlines())
    )
    rule = evaluate(spec, features).sets[0].rules[0]
    return "ERR" if rule.error else rule.matched


# Vector 12/13: value ops never match flag keys; DoesNotExist on keys.
@pytest.mark.parametrize(
    ("keys", "expected"),
    [(["bar"], True), ([], True), (["bar", "foo"], False)],
)
def test_does_not_exist_on_keys(keys: list[str], expected: bool) -> None:
    assert term_matches("matchExpressions: {foo: {op: DoesNotExist}}", node(keys=keys)) == expected


def test_value_op_on_flag_key_is_false_without_error() -> None:
    assert (
        term_matches('matchExpressions: {foo: {op: In, value: ["foo"]}}', node(keys=["foo"]))
        is False
    )


# Vector 19: an empty expression set.
@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (node(keys=[]), True),
        (node(instances=[{}]), True),
        (node(instances=[]), False),
    ],
)
def test_empty_expression_set(features: NodeFeatures, expected: bool) -> None:
    assert term_matches("matchExpressions: {}", features) == expected


def test_feature_entirely_absent_fails_even_for_does_not_exist() -> None:
    empty = NodeFeatures.build("n", {"other.x": ["a"]}, {}, {})
    assert term_matches("matchExpressions: {foo: {op: DoesNotExist}}", empty) is False


# Vector 20.
@pytest.mark.parametrize(
    ("keys", "expected"), [(["bar", "baz", "buzz"], True), (["foo", "bar", "baz"], False)]
)
def test_keys_exists_and_does_not_exist(keys: list[str], expected: bool) -> None:
    term = "matchExpressions: {foo: {op: DoesNotExist}, bar: {op: Exists}}"
    assert term_matches(term, node(keys=keys)) == expected


# Vector 21.
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"foo": "1", "bar": "val", "baz": "123", "buzz": "light"}, True),
        ({"bar": "val"}, False),
        ({"foo": "1", "bar": "val", "baz": "123.0"}, "ERR"),
    ],
)
def test_values(values: dict[str, str], expected: object) -> None:
    term = 'matchExpressions: {foo: {op: Exists}, bar: {op: In, value: [val, wal]}, baz: {op: Gt, value: ["10"]}}'
    assert term_matches(term, node(values=values)) == expected


# Vectors 22, 23: one instance must satisfy every expression.
@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        ([{"foo": "1"}, {"bar": "1"}], False),
        ([{"foo": "1"}, {"foo": "2", "bar": "1"}], True),
        ([{"foo": "1"}, {"foo": "2", "bar": "0x1"}], "ERR"),
    ],
)
def test_instances(instances: list[dict[str, str]], expected: object) -> None:
    term = 'matchExpressions: {foo: {op: Exists}, bar: {op: Lt, value: ["10"]}}'
    assert term_matches(term, node(instances=instances)) == expected


MULTI = {"keys": ["bar", "baz", "qux"], "values": {"foo": "1", "bar": "2", "quux": "3"}}


# Vectors 24-26: multi-type features.
@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ('matchExpressions: {foo: {op: In, value: ["1"]}, baz: {op: Exists}}', True),
        ('matchExpressions: {bar: {op: NotIn, value: ["2"]}}', False),
        ('matchExpressions: {bar: {op: NotIn, value: ["1", "3"]}}', True),
        ("matchExpressions: {quux: {op: DoesNotExist}}", False),
    ],
)
def test_multi_type(term: str, expected: bool) -> None:
    assert term_matches(term, node(**MULTI)) == expected  # type: ignore[arg-type]


# Vectors 27-30: matchName.
@pytest.mark.parametrize(
    ("term", "features", "expected"),
    [
        ("matchName: {op: Exists}", node(keys=[]), False),
        ('matchName: {op: ""}', node(values={}), False),
        ("matchName: {op: Exists}", node(instances=[]), False),
        ('matchName: {op: NotIn, value: ["key1"]}', node(keys=["key1", "key2"]), True),
        ("matchName: {op: DoesNotExist}", node(keys=["key1", "key2"]), False),
        ('matchName: {op: InRegexp, value: ["^key"]}', node(instances=[{"key9": "x"}]), True),
        ('matchName: {op: Gt, value: ["1"]}', node(keys=["key1"]), "ERR"),
        ('matchName: {op: Gt, value: ["1"]}', node(keys=["5"]), True),
    ],
)
def test_match_name(term: str, features: NodeFeatures, expected: object) -> None:
    assert term_matches(term, features) == expected


# Vector 35: matchExpressions and matchName together.
@pytest.mark.parametrize(
    ("names", "expected"), [('["key-1", "key-4"]', True), ('["key-not-exists"]', False)]
)
def test_match_name_with_expressions(names: str, expected: bool) -> None:
    values = {f"key-{i}": f"val-{i}" for i in range(1, 5)}
    term = (
        f"matchExpressions: {{key-5: {{op: DoesNotExist}}}}\nmatchName: {{op: In, value: {names}}}"
    )
    assert term_matches(term, node(values=values)) == expected


def rule_spec(rule_yaml: str) -> str:
    body = "".join(f"    {line}\n" for line in rule_yaml.strip().splitlines())
    return "version: v1alpha1\ncompatibilities:\n- rules:\n  - name: r\n" + body


def test_empty_rule_matches() -> None:  # vector 31
    verdict = evaluate(load_spec(rule_spec("vars: {a: b}")), NodeFeatures.empty())
    assert verdict.sets[0].rules[0].matched and verdict.compatible


def test_match_any_needs_one_element() -> None:  # vector 34
    features = NodeFeatures.build("n", {"domain-1.kf-1": ["key-1"]}, {}, {})
    base = """
matchFeatures:
- feature: domain-1.kf-1
  matchExpressions: {key-1: {op: Exists}}
matchAny:
- matchFeatures:
  - feature: domain-1.kf-1
    matchExpressions: {key-na: {op: Exists}}
"""
    assert not evaluate(load_spec(rule_spec(base)), features).sets[0].rules[0].matched
    extended = (
        base
        + """- matchFeatures:
  - feature: domain-1.kf-1
    matchExpressions: {key-1: {op: Exists}}
"""
    )
    assert evaluate(load_spec(rule_spec(extended)), features).sets[0].rules[0].matched


# The validator's fake source (vectors 36-38).
FAKE = NodeFeatures.build(
    "fake",
    {"fake.flag": ["flag_1", "flag_2", "flag_3"]},
    {"fake.attribute": {"attr_1": "true", "attr_2": "false", "attr_3": "10"}},
    {
        "fake.instance": [
            {
                "name": "instance_1",
                "attr_1": "true",
                "attr_2": "false",
                "attr_3": "10",
                "attr_4": "foobar",
            },
            {"name": "instance_2", "attr_1": "true", "attr_2": "true", "attr_3": "100"},
            {"name": "instance_3"},
        ]
    },
)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            'matchFeatures:\n- feature: fake.flag\n  matchName: {op: InRegexp, value: ["^flag"]}',
            True,
        ),
        (
            "matchFeatures:\n- feature: fake.flag\n  matchExpressions: {flag_unknown: {op: Exists}}\n"
            '- feature: fake.attribute\n  matchExpressions: {attr_1: {op: In, value: ["true"]}}',
            False,
        ),
        (
            "matchFeatures:\n- feature: unknown.unknown\n  matchExpressions: {name: {op: In, value: [instance_1]}}",
            False,
        ),
        # "fake_3": instance_2 exists and some instance has attr_1=false? none does.
        (
            'matchFeatures:\n- feature: fake.instance\n  matchExpressions: {name: {op: In, value: [instance_2]}, attr_1: {op: In, value: ["false"]}}',
            False,
        ),
        (
            "matchFeatures:\n- feature: fake.instance\n  matchExpressions: {name: {op: In, value: [instance_1]}, attr_4: {op: Exists}}",
            True,
        ),
    ],
)
def test_validator_vectors(rule: str, expected: bool) -> None:
    verdict = evaluate(load_spec(rule_spec(rule)), FAKE)
    assert verdict.sets[0].rules[0].matched is expected


def test_feature_lookup_is_case_insensitive() -> None:
    features = NodeFeatures.build("n", {}, {"system.osrelease": {"ID": "ubuntu"}}, {})
    spec = rule_spec(
        "matchFeatures:\n- feature: System.OsRelease\n  matchExpressions: {ID: {op: In, value: [ubuntu]}}"
    )
    assert evaluate(load_spec(spec), features).compatible
