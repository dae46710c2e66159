"""Property tests: the parser never crashes, evaluation is deterministic, and the compiled
engine agrees with a plain transliteration of NFD's evaluator (tests/nfd/reference.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extender.nfd.rules import evaluate, load_spec
from extender.nfd.spec import COMPARISON_OPS, RANGE_OPS, Op, SpecError, parse_spec
from extender.nodes.model import NodeFeatures

from .reference import evaluate_reference

FEATURES = ["a.flag", "a.attr", "a.inst", "a.multi", "rule.matched", "a.missing"]
NAMES = ["k1", "k2", "k3", "5", "true"]
VALUES = ["1", "5", "10", "-3", "true", "false", "x", "1.2", "5.15.0-91-generic", "v2", "", "0x1"]
OPS = list(Op)


@st.composite
def expressions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(OPS))
    count = {
        Op.IN: (1, 3),
        Op.NOT_IN: (1, 3),
        Op.IN_REGEXP: (1, 2),
        Op.GT: (1, 1),
        Op.GE: (1, 1),
        Op.LT: (1, 1),
        Op.LE: (1, 1),
        Op.GT_LT: (2, 2),
        Op.GE_LE: (2, 2),
    }.get(op, (0, 0))
    pool = (
        ["^k", "1$", "x|5", "[0-9]+"]
        if op == Op.IN_REGEXP
        else ["1", "5", "10", "-3", "2.0", "x", "true"]
    )
    expr: dict[str, Any] = {"op": op}
    values = draw(st.lists(st.sampled_from(pool), min_size=count[0], max_size=count[1]))
    if op in RANGE_OPS:
        values = sorted(values, key=lambda v: (len(v), v))
    if values:
        expr["value"] = values
    if op in COMPARISON_OPS and draw(st.booleans()):
        expr["type"] = "version"
    return expr


@st.composite
def terms(draw: st.DrawFn) -> dict[str, Any]:
    term: dict[str, Any] = {"feature": draw(st.sampled_from([*FEATURES, "A.Attr"]))}
    if draw(st.integers(0, 4)):
        term["matchExpressions"] = draw(
            st.dictionaries(st.sampled_from(NAMES), expressions(), max_size=3)
        )
    if not draw(st.integers(0, 3)):
        term["matchName"] = draw(expressions())
    return term


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    rule = st.fixed_dictionaries(
        {"name": st.sampled_from(["r1", "r2"])},
        optional={
            "matchFeatures": st.lists(terms(), max_size=3),
            "matchAny": st.lists(
                st.fixed_dictionaries({"matchFeatures": st.lists(terms(), max_size=2)}), max_size=2
            ),
            "vars": st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES), max_size=2),
        },
    )
    compat = st.fixed_dictionaries(
        {"rules": st.lists(rule, max_size=3)}, optional={"weight": st.integers(0, 100)}
    )
    return {
        "version": "v1alpha1",
        "compatibilities": draw(st.lists(compat, min_size=1, max_size=3)),
    }


@st.composite
def node_features(draw: st.DrawFn) -> dict[str, Any]:
    values = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES), max_size=4)
    flags: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    instances: dict[str, Any] = {}
    for feature in FEATURES[:-1]:
        kind = draw(st.sampled_from(["none", "flag", "attr", "inst", "multi", "nullattr"]))
        if kind in ("flag", "multi"):
            flags[feature] = draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
        if kind in ("attr", "multi"):
            attributes[feature] = draw(values)
        if kind == "nullattr":
            attributes[feature] = None
        if kind in ("inst", "multi"):
            instances[feature] = draw(st.lists(values, max_size=3))
    return {"flags": flags, "attributes": attributes, "instances": instances}


def _ours(spec: Any, features: NodeFeatures) -> list[list[bool | str]]:
    verdict = evaluate(spec, features)
    return [["ERR" if r.error else r.matched for r in s.rules] for s in verdict.sets]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), node_features())
def test_compiled_engine_equals_reference(
    raw_spec: dict[str, Any], raw_features: dict[str, Any]
) -> None:
    try:
        compiled = load_spec(json.dumps(raw_spec))
    except SpecError:
        return  # stricter load-time validation; the conformance suite checks these against NFD
    features = NodeFeatures.build(
        "n", raw_features["flags"], raw_features["attributes"], raw_features["instances"]
    )
    assert _ours(compiled, features) == evaluate_reference(raw_spec, raw_features)


@settings(max_examples=150, deadline=None)
@given(specs(), node_features())
def test_evaluation_is_deterministic(
    raw_spec: dict[str, Any], raw_features: dict[str, Any]
) -> None:
    try:
        compiled = load_spec(json.dumps(raw_spec))
    except SpecError:
        return
    first = NodeFeatures.build(
        "n", raw_features["flags"], raw_features["attributes"], raw_features["instances"]
    )
    # Same content built in another order must give the same verdict and fingerprints.
    second = NodeFeatures.build(
        "m",
        dict(reversed(list(raw_features["flags"].items()))),
        dict(reversed(list(raw_features["attributes"].items()))),
        dict(reversed(list(raw_features["instances"].items()))),
    )
    a, b = evaluate(compiled, first), evaluate(compiled, second)
    assert (a.compatible, a.fit, a.reason) == (b.compatible, b.fit, b.reason)
    assert first.fingerprint_of(compiled.referenced_features) == second.fingerprint_of(
        compiled.referenced_features
    )


yaml_text = st.text(
    alphabet=st.sampled_from([*list("abc:-[]{}&*!|>'\"#%@ \n\t0123456789.,?~<="), "é", "\x00"]),
    max_size=200,
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(yaml_text, st.binary(max_size=200)))
def test_parser_never_crashes(document: str | bytes) -> None:
    for text in (document, f"version: v1alpha1\ncompatibilities:\n- {document!s}"):
        try:
            spec = parse_spec(text)
        except SpecError as err:
            assert str(err)
        else:
            assert spec.digest.startswith("sha256:")


@settings(max_examples=200, deadline=None)
@given(specs())
def test_any_generated_spec_loads_or_fails_cleanly(raw_spec: dict[str, Any]) -> None:
    try:
        compiled = load_spec(json.dumps(raw_spec))
    except SpecError as err:
        assert err.path.startswith("compatibilities[")
    else:
        assert compiled.spec == parse_spec(json.dumps(raw_spec))
