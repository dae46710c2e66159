"""Spec-reading fixes found by the NFD differential suite (tests/nfd/conformance), one per finding.

Each expectation is what NFD v0.18.3 (sigs.k8s.io/yaml v1.6.0, Go 1.26 encoding/json) does.
"""

from __future__ import annotations

import pytest

from extender.nfd.golang import json_fold
from extender.nfd.rules import evaluate, load_spec
from extender.nfd.spec import SpecError, parse_spec
from extender.nodes.model import NodeFeatures


# encoding/json matches field names with Unicode simple folding: U+017F LONG S is an "s" and
# U+212A KELVIN SIGN a "k". Reproducer: `"rule\u017f": [{}]` is a set with one (empty, matching)
# rule in NFD, where we used to see no rules at all.
def test_long_s_field_name_is_the_rules_field() -> None:
    spec = load_spec('version: v1alpha1\ncompatibilities:\n  - "rule\u017f":\n      - {}\n')
    verdict = evaluate(spec, NodeFeatures.build("n", {}, {}, {}))
    assert [[r.matched for r in s.rules] for s in verdict.sets] == [[True]]


def test_long_s_in_compatibilities_and_match_features() -> None:
    text = (
        'version: v1alpha1\n"compatibilitie\u017f":\n  - rules:\n      - "matchFeature\u017f":\n'
        "          - feature: network.device\n            matchExpressions:\n"
        "              vendor: {OP: gt}\n"
    )
    # NFD reads the unknown op "gt" and fails on any node with a network.device instance.
    with pytest.raises(SpecError, match="unknown op 'gt'"):
        load_spec(text)


@pytest.mark.parametrize(
    ("name", "folded"),
    [("rules", "RULES"), ("rule\u017f", "RULES"), ("Kelvin", "KELVIN"), ("\u212aelvin", "KELVIN")],
)
def test_json_fold(name: str, folded: str) -> None:
    assert json_fold(name) == folded


def test_non_ascii_that_does_not_fold_to_ascii_stays_unknown() -> None:
    spec = parse_spec('version: v1alpha1\ncompatibilities:\n  - "rulés": [{}]\n')
    assert spec.compatibilities[0].rules == ()


# `0200` (YAML 1.1 octal, the integer 128) and "128" are two keys to go-yaml but one JSON key
# to sigs.k8s.io/yaml, which keeps whichever it meets last while ranging over a Go map: NFD's
# verdict is random (the suite saw both). We reject such specs.
@pytest.mark.parametrize(
    "keys",
    ["{0200: {op: Exists}, '128': {op: DoesNotExist}}", '{y: {op: Exists}, "true": {op: In}}'],
)
def test_keys_that_collide_as_json_keys_are_rejected(keys: str) -> None:
    text = (
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - matchFeatures:\n"
        f"    - feature: cpu.cpuid\n      matchExpressions: {keys}\n"
    )
    with pytest.raises(SpecError, match="at random"):
        parse_spec(text)


def test_same_go_value_twice_is_a_plain_duplicate_and_the_later_wins() -> None:
    # 0200 and 128 are the same int to go-yaml: an ordinary duplicate, deterministic.
    spec = parse_spec(
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - matchFeatures:\n"
        "    - feature: f.x\n      matchExpressions: {0200: {op: Exists}, 128: {op: In, value: [a]}}\n"
    )
    expressions = spec.compatibilities[0].rules[0].match_features[0].match_expressions
    assert expressions is not None
    assert [(k, e.op) for k, e in expressions] == [("128", "In")]


def test_key_beyond_int64_is_rejected_like_nfd() -> None:
    # go-yaml reads it as uint64; sigs.k8s.io/yaml: "unsupported map key of type: uint64".
    with pytest.raises(SpecError, match="int64"):
        parse_spec("version: v1alpha1\ncompatibilities: []\nx: {9223372036854775808: 1}\n")


# YAML's non-specific tag "!" makes a scalar a string in go-yaml, whatever it looks like;
# PyYAML resolved it like a plain scalar (`! "5.10"` became 5.1, `! y` became true).
def test_non_specific_tag_makes_a_string() -> None:
    spec = parse_spec(
        'version: v1alpha1\ncompatibilities:\n  - tag: ! y\n    rules:\n    - name: ! "5.10"\n'
        "      matchFeatures:\n      - feature: a.b\n"
        "        matchExpressions: {! 0200: {op: In, value: [! 1.0]}}\n"
    )
    compat = spec.compatibilities[0]
    assert (compat.tag, compat.rules[0].name) == ("y", "5.10")
    expressions = compat.rules[0].match_features[0].match_expressions
    assert expressions is not None
    assert [(k, e.value) for k, e in expressions] == [("0200", ("1.0",))]
