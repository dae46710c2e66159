"""Rule-engine fixes found by the NFD differential suite (tests/nfd/conformance).

Expectations are what NFD v0.18.3 (``nfd compat validate-node``'s evaluation) does.
"""

from __future__ import annotations

from extender.nfd.rules import evaluate, load_spec
from extender.nodes.model import NodeFeatures


def verdicts(spec_text: str, node: NodeFeatures) -> list[bool | str]:
    verdict = evaluate(load_spec(spec_text), node)
    return ["error" if r.error else r.matched for s in verdict.sets for r in s.rules]


# A node whose rule.matched has `elements: null`: NFD's InsertAttributeFeatures copies a
# rule's (empty) vars into that nil map, which leaves it nil, so a later term on rule.matched
# sees neither flags nor attributes and fails. We used to turn it into an empty map (match).
def test_null_rule_matched_stays_null_while_rules_add_no_vars() -> None:
    spec = (
        'version: "v1alpha1"\ncompatibilities:\n  - rules:\n      - {}\n      - matchFeatures:\n'
        "          - feature: 'rule.matched'\n            matchExpressions: {}\n"
    )
    node = NodeFeatures.build("n", {}, {"rule.matched": None}, {})
    assert verdicts(spec, node) == [True, False]


def test_missing_rule_matched_is_created_empty_by_the_first_rule() -> None:
    spec = (
        'version: "v1alpha1"\ncompatibilities:\n  - rules:\n      - {}\n      - matchFeatures:\n'
        "          - feature: rule.matched\n            matchExpressions: {}\n"
    )
    assert verdicts(spec, NodeFeatures.build("n", {}, {}, {})) == [True, True]


def test_vars_into_a_null_rule_matched_start_a_map() -> None:
    # NFD panics here (a Go nil-map write); we document the difference and carry on.
    spec = (
        "version: v1alpha1\ncompatibilities:\n  - rules:\n      - vars: {gpu: 'yes'}\n"
        "      - matchFeatures:\n          - feature: rule.matched\n"
        "            matchExpressions: {gpu: {op: In, value: ['yes']}}\n"
    )
    node = NodeFeatures.build("n", {}, {"rule.matched": None}, {})
    assert verdicts(spec, node) == [True, True]
