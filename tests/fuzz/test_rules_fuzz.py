"""Fuzz targets of the rule compiler and evaluator: random expressions (Go regexps fed to
RE2 included) compiled and tested on random values, and random specs compiled and evaluated
on random node features. Compiling raises only SpecError; evaluating never raises and gives
the same verdict every time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from extender.nfd.rules import compile_expression, evaluate, load_spec
from extender.nfd.spec import MatchExpression, SpecError
from extender.nodes.model import NodeFeatures
from tests.fuzz import _profile
from tests.fuzz.strategies import OPS, VALUES, node_features, regexps, structured_specs


def features_from(raw: dict[str, Any]) -> NodeFeatures:
    return NodeFeatures.build("n", raw["flags"], raw["attributes"], raw["instances"])


@_profile.fuzz_settings(short=150, long=20_000)
@given(
    st.one_of(st.sampled_from(OPS), st.text(max_size=6)),
    st.lists(st.one_of(regexps(), st.sampled_from(VALUES), st.text(max_size=8)), max_size=3),
    st.sampled_from(["", "version", "int", "Version"]),
    st.lists(st.one_of(st.sampled_from(VALUES), st.text(max_size=12)), max_size=4),
)
def test_rules_expression(op: str, values: list[str], value_type: str, probes: list[str]) -> None:
    _profile.count()
    expression = MatchExpression(op, tuple(values), value_type)
    try:
        compiled = compile_expression(expression, "e")
    except SpecError as err:
        assert err.path.startswith("e")
        # Rejected the same way every time.
        try:
            compile_expression(expression, "e")
        except SpecError as second_err:
            assert str(second_err) == str(err)
        else:
            raise AssertionError("the second compile accepted what the first refused")
        return
    again = compile_expression(expression, "e")
    for probe in probes:
        # holds() swallows node-side comparison errors: a bad node value does not match.
        assert compiled.holds(probe) is again.holds(probe)
        assert isinstance(compiled.on_flag(True), bool)


@_profile.fuzz_settings(short=40, long=4_000)
@given(
    structured_specs(), node_features(), st.lists(st.sampled_from(["fast", "", "x"]), max_size=2)
)
def test_rules_spec_evaluate(
    raw_spec: dict[str, Any], raw_features: dict[str, Any], tags: list[str]
) -> None:
    _profile.count()
    try:
        compiled = load_spec(json.dumps(raw_spec))
    except SpecError:
        return
    features = features_from(raw_features)
    first = evaluate(compiled, features, tags=tags)
    second = evaluate(load_spec(json.dumps(raw_spec)), features_from(raw_features), tags=tags)
    assert (first.compatible, first.fit, first.reason, first.error) == (
        second.compatible,
        second.fit,
        second.reason,
        second.error,
    )
    assert first.compatible == (first.reason == "")
    assert first.fit == 0 or first.compatible
    # Every outcome can be described, as explain and the scheduler's reasons do.
    for outcome in first.sets:
        outcome.first_failure()
