"""InRegexp patterns read the way Go's regexp package reads them (NFD compiles them in Go).

Found by the NFD differential suite (tests/nfd/conformance); expectations are NFD v0.18.3 built
with Go 1.26.
"""

from __future__ import annotations

import json

import pytest

from extender.nfd.golang import GoRegexpError, go_regexp_to_re2
from extender.nfd.rules import evaluate, load_spec
from extender.nfd.spec import SpecError
from extender.nodes.model import NodeFeatures


def regexp_rule(pattern: str, value: str) -> bool | str:
    spec = load_spec(
        "version: v1alpha1\ncompatibilities:\n- rules:\n  - name: r\n    matchFeatures:\n"
        f"    - feature: a.b\n      matchExpressions:\n        k: {{op: InRegexp, value: [{json.dumps(pattern)}]}}\n"
    )
    rule = evaluate(spec, NodeFeatures.build("n", {}, {"a.b": {"k": value}}, {})).sets[0].rules[0]
    return "ERR" if rule.error else rule.matched


# \C (any byte) is C++ RE2 only: Go reports "invalid escape sequence", so NFD fails on every
# node with the element. We accepted it.
@pytest.mark.parametrize("pattern", ["\\C", "a\\C", "[\\C]"])
def test_any_byte_escape_is_rejected(pattern: str) -> None:
    with pytest.raises(SpecError, match="invalid escape sequence"):
        regexp_rule(pattern, "x")


def test_quoted_backslash_c_is_literal_text() -> None:
    assert regexp_rule("\\Q\\C\\E", "a\\Cb") is True
    assert regexp_rule("a\\\\C", "a\\C") is True


# Go 1.25+ looks \p names up ignoring case, "_", "-" and spaces, and knows category aliases,
# Any, ASCII and LC. RE2 wants exact names, so we rejected all of these.
@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("^\\p{greek}$", "Σ", True),
        ("^\\p{GREEK}$", "S", False),
        ("^\\p{Letter}+$", "Intel", True),
        ("^\\pl$", "1", False),
        ("^\\p{Cased_Letter}$", "a", True),
        ("^\\p{LC}$", "\u017f", True),
        ("^\\P{LC}$", "1", True),
        ("^[\\p{LC}1]+$", "a1", True),
        ("^\\p{ascii}+$", "abc", True),
        ("^[^\\p{ASCII}]$", "é", True),
        ("^\\p{^Greek}$", "a", True),
        ("^\\P{^any}$", "x", True),
        ("\\p{Gre-ek}", "Ω", True),
        ("^\\p{digit}$", "7", True),
    ],
)
def test_unicode_class_names_are_looked_up_like_go(
    pattern: str, value: str, expected: bool
) -> None:
    assert regexp_rule(pattern, value) is expected


# Go's loose lookup cannot find multi-word script names (its table keys keep the "_"): NFD
# fails on them, and so do we now (RE2 alone accepted them).
@pytest.mark.parametrize("pattern", ["\\p{Old_Italic}", "\\p{SignWriting}", "\\p{Nag_Mundari}"])
def test_multi_word_scripts_are_rejected_like_go(pattern: str) -> None:
    with pytest.raises(SpecError, match="invalid character class range"):
        regexp_rule(pattern, "x")


# Classes Go has and RE2 cannot express: a documented difference (docs/semantics.md).
@pytest.mark.parametrize("pattern", ["\\p{Cn}", "\\p{Assigned}", "[\\P{LC}]", "[x\\P{ascii}]"])
def test_classes_without_an_re2_form_are_rejected(pattern: str) -> None:
    with pytest.raises(GoRegexpError, match="no RE2 equivalent"):
        go_regexp_to_re2(pattern)


@pytest.mark.parametrize(
    "pattern", ["", "^a$", "[\\]]", "[]a]", "[[:alpha:]\\d]", "\\pL", "\\p{Greek}", "\\x{41}"]
)
def test_patterns_re2_already_reads_like_go_are_unchanged(pattern: str) -> None:
    assert go_regexp_to_re2(pattern) in (pattern, pattern.replace("\\pL", "\\p{L}"))
