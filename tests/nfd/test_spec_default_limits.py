"""The default spec limits: real specs fit with room to spare, a heavy spec is refused with a
reason that names the limit, and an oversized one is refused while it is still being read."""

from __future__ import annotations

from pathlib import Path

import pytest

from extender.nfd.spec import DEFAULT_LIMITS, SpecError, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "specs"


def rules_spec(rules: int, expressions_per_rule: int = 1) -> str:
    lines = ["version: v1alpha1", "compatibilities:", "- rules:"]
    for r in range(rules):
        lines += [
            f"  - name: r{r}",
            "    matchFeatures:",
            "    - feature: kernel.loadedmodule",
            "      matchExpressions:",
        ]
        lines += [f"        m{r}_{e}: {{op: Exists}}" for e in range(expressions_per_rule)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_spec_fits_the_defaults_with_room(path: Path) -> None:
    spec = parse_spec(path.read_bytes())
    rules = sum(len(s.rules) for s in spec.compatibilities)
    assert rules * 4 <= DEFAULT_LIMITS.max_rules


def test_a_few_dozen_rules_fit() -> None:
    parse_spec(rules_spec(48, expressions_per_rule=3))


def test_too_many_rules_names_the_limit() -> None:
    with pytest.raises(SpecError, match=rf"more than {DEFAULT_LIMITS.max_rules} rules"):
        parse_spec(rules_spec(DEFAULT_LIMITS.max_rules + 1))


def test_too_many_expressions_names_the_limit() -> None:
    rules = DEFAULT_LIMITS.max_expressions // 8 + 1
    with pytest.raises(SpecError, match=rf"more than {DEFAULT_LIMITS.max_expressions} expr"):
        parse_spec(rules_spec(rules, expressions_per_rule=8))


def test_an_oversized_spec_is_refused_while_it_is_read() -> None:
    # 5,000 rules fit in the byte limit; the YAML composer stops long before the end.
    text = rules_spec(5000)
    assert len(text.encode()) < DEFAULT_LIMITS.max_bytes
    with pytest.raises(SpecError, match="YAML nodes"):
        parse_spec(text)


def test_a_spec_at_every_count_limit_loads_in_match_any_form() -> None:
    # 64 sets x 4 rules x 4 matchAny alternatives: the set, rule and expression limits at
    # once, in the form that takes the most YAML nodes per expression.
    lines = ["version: v1alpha1", "compatibilities:"]
    for s in range(DEFAULT_LIMITS.max_sets):
        lines += [f"- description: s{s}", "  rules:"]
        for r in range(DEFAULT_LIMITS.max_rules // DEFAULT_LIMITS.max_sets):
            lines += [f"  - name: r{s}-{r}", "    matchAny:"]
            for e in range(4):
                lines += [
                    "    - matchFeatures:",
                    "      - feature: kernel.config",
                    "        matchExpressions:",
                    f"          OPTION_{s}_{r}_{e}: {{op: InRegexp, value: ['^(y|m)$']}}",
                ]
    spec = parse_spec("\n".join(lines) + "\n")
    assert sum(len(s.rules) for s in spec.compatibilities) == DEFAULT_LIMITS.max_rules
