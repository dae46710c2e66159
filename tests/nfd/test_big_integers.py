"""Integers of any length: past Go's 64 bits they are out of range, as NFD's parsing says, and
never reach Python's 4,300-digit conversion limit (a ValueError and a traceback before)."""

from __future__ import annotations

import pytest

from extender.nfd.golang import go_atoi, go_parse_int_base0, parse_version, resolve_plain_scalar
from extender.nfd.rules import evaluate, load_spec
from extender.nfd.spec import SpecError, parse_spec
from extender.nodes.model import FeatureError, NodeFeatures, load_node_features

HUGE = "9" * 5000


@pytest.mark.parametrize(
    "text", [HUGE, "-" + HUGE, "+" + HUGE, "0" * 5000 + "7", "-" + "0" * 5000 + "12"]
)
def test_atoi_of_any_length_is_out_of_range_or_exact(text: str) -> None:
    expected = int(text.lstrip("+-").lstrip("0") or "0") if len(text.strip("+-0")) < 20 else None
    if expected is not None and text.startswith("-"):
        expected = -expected
    assert go_atoi(text) == expected


def test_yaml_scalars_past_64_bits_stay_strings_as_in_go_yaml() -> None:
    assert resolve_plain_scalar(HUGE) == HUGE
    assert resolve_plain_scalar("0x" + "f" * 5000) == "0x" + "f" * 5000
    assert go_parse_int_base0("0o" + "7" * 5000, signed=True) is None
    assert parse_version("1." + HUGE + ".0") is None


def test_a_huge_weight_is_a_spec_error() -> None:
    spec = f"version: v1alpha1\ncompatibilities:\n- weight: {HUGE}\n  rules: []\n"
    with pytest.raises(SpecError, match="expected an integer"):
        parse_spec(spec)


def test_a_huge_bound_is_a_spec_error_not_a_traceback() -> None:
    spec = (
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - name: r\n    matchFeatures:\n"
        "    - feature: memory.numa\n      matchExpressions:\n"
        f"        node_count: {{op: Gt, value: ['{HUGE}']}}\n"
    )
    with pytest.raises(SpecError):
        load_spec(spec)


def test_a_huge_node_value_fails_the_rule() -> None:
    spec = load_spec(
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - name: numa\n    matchFeatures:\n"
        "    - feature: memory.numa\n      matchExpressions:\n"
        "        node_count: {op: Gt, value: ['1']}\n"
    )
    node = NodeFeatures.build("n", {}, {"memory.numa": {"node_count": HUGE}}, {})
    verdict = evaluate(spec, node)
    assert not verdict.compatible


def test_a_features_file_with_a_huge_integer_is_a_clear_error() -> None:
    with pytest.raises(FeatureError, match="invalid YAML"):
        load_node_features(f"kind: NodeFeature\nspec: {{a: {HUGE}}}\n")
