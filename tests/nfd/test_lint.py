"""Unit tests for extender.nfd.lint: each finding, and no finding where a spec is fine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extender.nfd.lint import Finding, Severity, check_spec
from extender.nfd.rules import compile_expression
from extender.nfd.spec import VERSION_TYPE, MatchExpression, Op

SPECS = Path(__file__).resolve().parents[2] / "examples" / "specs"


def spec(*sets: str) -> str:
    body = "".join(sets)
    return f"version: v1alpha1\ncompatibilities:\n{body}"


def rule(*terms: str, name: str = "r", match_any: tuple[tuple[str, ...], ...] = ()) -> str:
    text = f"  - name: {name}\n"
    if terms:
        text += "    matchFeatures:\n" + "".join(terms)
    if match_any:
        text += "    matchAny:\n"
        for element in match_any:
            text += "    - matchFeatures:\n" + "".join(
                "\n".join("  " + line for line in term.splitlines()) + "\n" for term in element
            )
    return text


def a_set(*rules: str) -> str:
    return "- rules:\n" + "".join(rules)


def term(feature: str, **expressions: str) -> str:
    lines = [f"    - feature: {feature}", "      matchExpressions:"]
    lines += [f"        {name}: {expression}" for name, expression in expressions.items()]
    return "\n".join(lines) + "\n"


def codes(text: str) -> list[str]:
    return [f.code for f in check_spec(text).findings]


def find(text: str, code: str) -> list[Finding]:
    return [f for f in check_spec(text).findings if f.code == code]


def one_set(*terms: str) -> str:
    return spec(a_set(rule(*terms)))


# -- errors ------------------------------------------------------------------------------------


def test_parse_error_is_the_only_finding() -> None:
    result = check_spec("version: v1alpha1\ncompatibilities: [\n")
    assert result.spec is None
    [error] = result.findings
    assert error.severity is Severity.ERROR
    assert error.message.startswith("invalid YAML")


def test_every_bad_expression_is_an_error_at_its_own_path() -> None:
    text = one_set(
        term("cpu.model", family='{op: Gt, value: ["6", "7"]}', id="{op: Exists, value: [x]}"),
        term("system.osrelease", ID='{op: InRegexp, value: ["(ubuntu"]}'),
    )
    result = check_spec(text)
    base = "compatibilities[0].rules[0].matchFeatures"
    assert [(f.severity, f.path) for f in result.errors] == [
        (Severity.ERROR, f"{base}[0].matchExpressions.family"),
        (Severity.ERROR, f"{base}[0].matchExpressions.id"),
        (Severity.ERROR, f"{base}[1].matchExpressions.ID.value[0]"),
    ]
    assert result.findings[: len(result.errors)] == result.errors  # errors come first


def test_varstemplate_is_an_error() -> None:
    text = spec("- rules:\n  - name: r\n    varsTemplate: '{{ .x }}'\n")
    [error] = check_spec(text).errors
    assert error.path == "compatibilities[0].rules[0].varsTemplate"


def test_compile_warnings_keep_their_real_path() -> None:
    text = one_set(term("kernel.version", full='{op: GtLt, value: ["6.0", "5.0"], type: version}'))
    [warning] = find(text, "rules")
    assert warning.path == "compatibilities[0].rules[0].matchFeatures[0].matchExpressions.full"
    assert "never match" in warning.message
    assert find(text, "never-matches")[0].path == "compatibilities[0]"


# -- parser warnings with hints ----------------------------------------------------------------


def test_unknown_fields_get_a_hint() -> None:
    text = spec("- weigth: 3\n  rules:\n  - name: r\n    labels: {a: b}\n")
    messages = {f.path: f.message for f in find(text, "unknown-field")}
    assert messages["compatibilities[0].weigth"].endswith("did you mean 'weight'?")
    assert "NodeFeatureRule" in messages["compatibilities[0].rules[0].labels"]


def test_unquoted_values_are_parser_warnings() -> None:
    text = one_set(term("pci.device", **{"class": "{op: In, value: [0300]}"}))
    warnings = find(text, "spec")
    assert [w.path.rsplit(".", 1)[-1] for w in warnings] == ["value[0]"]
    assert "'192'" in warnings[0].message


# -- names NFD never reports -------------------------------------------------------------------


def test_hyphen_in_loaded_module_names() -> None:
    text = one_set(term("kernel.loadedmodule", **{"vfio-pci": "{op: Exists}"}))
    [finding] = find(text, "module-hyphen")
    assert finding.path.endswith("matchExpressions.vfio-pci")
    assert "'vfio_pci'" in finding.message
    by_name = spec(
        a_set(
            rule(
                '    - feature: kernel.loadedmodule\n      matchName: {op: In, value: ["a-b", c]}\n'
            )
        )
    )
    assert [f.path.rsplit(".", 1)[-1] for f in find(by_name, "module-hyphen")] == ["value[0]"]


def test_enabled_modules_may_have_hyphens() -> None:
    # modules.builtin names keep the file name (e.g. crc32c-intel), so no warning there.
    text = one_set(term("kernel.enabledmodule", **{"crc32c-intel": "{op: Exists}"}))
    assert codes(text) == []


def test_unknown_features_and_domains() -> None:
    text = one_set(
        "    - feature: cpu.modle\n      matchExpressions: {vendor_id: {op: Exists}}\n",
        "    - feature: gpu.nvidia\n      matchExpressions: {x: {op: Exists}}\n",
        "    - feature: local.label\n      matchExpressions: {x: {op: Exists}}\n",
        "    - feature: rule.matched\n      matchExpressions: {x: {op: Exists}}\n",
    )
    findings = find(text, "unknown-feature")
    assert [f.path for f in findings] == [
        "compatibilities[0].rules[0].matchFeatures[0].feature",
        "compatibilities[0].rules[0].matchFeatures[1].feature",
    ]
    assert findings[0].message.endswith("did you mean 'cpu.model'?")
    assert "domain" in findings[1].message


def test_upper_case_feature_names() -> None:
    text = one_set(term("System.OsRelease", ID="{op: In, value: [rhel]}"))
    [finding] = find(text, "feature-case")
    assert "'system.osrelease'" in finding.message


@pytest.mark.parametrize(
    ("feature", "name", "hint"),
    [
        ("cpu.model", "Vendor_ID", "did you mean 'vendor_id'?"),
        ("kernel.version", "patch", "it has full, major, minor, revision"),
        ("pci.device", "vendor_id", ""),
        ("memory.hugepages", "hugepages-1G", "hugepages-2Mi"),
        ("kernel.config", "CONFIG_VFIO_PCI", "'VFIO_PCI'"),
        ("system.osrelease", "version_id", "'VERSION_ID'"),
        ("cpu.cpuid", "avx512f", "'AVX512F'"),
    ],
)
def test_unknown_elements(feature: str, name: str, hint: str) -> None:
    text = one_set(term(feature, **{name: "{op: Exists}"}))
    [finding] = find(text, "unknown-element")
    assert hint in finding.message


@pytest.mark.parametrize(
    ("feature", "name", "value", "bad"),
    [
        ("pci.device", "vendor", "0x10de", True),
        ("pci.device", "vendor", "10DE", True),
        ("pci.device", "class", "030200", True),
        ("pci.device", "class", "0302", False),
        ("pci.device", "subsystem_device", "16c1", False),
        ("usb.device", "class", "03", False),
        ("usb.device", "class", "0x03", True),
        ("pci.device", "sriov_totalvfs", "8", False),
        ("cpu.model", "vendor_id", "GenuineIntel", True),
        ("cpu.model", "vendor_id", "Intel", False),
    ],
)
def test_id_formats(feature: str, name: str, value: str, bad: bool) -> None:
    for op in ("In", "NotIn"):
        text = one_set(term(feature, **{name: f'{{op: {op}, value: ["{value}"]}}'}))
        assert bool(find(text, "id-format")) is bad


# -- expressions that never match --------------------------------------------------------------


@pytest.mark.parametrize(
    ("feature", "name", "expression", "dead"),
    [
        ("kernel.loadedmodule", "nvidia", '{op: In, value: ["nvidia"]}', True),
        ("kernel.loadedmodule", "nvidia", "{op: IsTrue}", True),
        ("cpu.cpuid", "AVX512F", '{op: In, value: ["true"]}', True),
        ("cpu.cpuid", "AVX10_VERSION", '{op: Ge, value: ["1"]}', False),  # an attribute
        ("cpu.cpuid", "AVX512F", "{op: Exists}", False),
        ("kernel.loadedmodule", "nvidia", "{op: DoesNotExist}", False),
    ],
)
def test_value_ops_on_flags(feature: str, name: str, expression: str, dead: bool) -> None:
    text = one_set(term(feature, **{name: expression}))
    assert bool(find(text, "flag-value-op")) is dead
    assert bool(find(text, "never-matches")) is dead


def test_integer_comparison_of_the_full_kernel_version() -> None:
    text = one_set(term("kernel.version", full='{op: Ge, value: ["5"]}'))
    assert [f.path for f in find(text, "never-matches")] == [
        "compatibilities[0].rules[0].matchFeatures[0].matchExpressions.full",
        "compatibilities[0]",
        "",
    ]


def test_version_type_on_the_full_kernel_version_warns_about_rhel() -> None:
    text = one_set(term("kernel.version", full='{op: Ge, value: ["5.15"], type: version}'))
    assert codes(text) == ["version-portability"]


def test_match_name_does_not_exist() -> None:
    text = spec(a_set(rule("    - feature: cpu.cpuid\n      matchName: {op: DoesNotExist}\n")))
    paths = [f.path for f in find(text, "never-matches")]
    assert paths == [
        "compatibilities[0].rules[0].matchFeatures[0].matchName",
        "compatibilities[0]",
        "",
    ]


# -- contradictions: precise, no false positives -----------------------------------------------

MODEL = "cpu.model"


@pytest.mark.parametrize(
    ("first", "second", "contradiction"),
    [
        ('{op: In, value: ["Intel"]}', '{op: NotIn, value: ["Intel"]}', True),
        ('{op: In, value: ["Intel", "AMD"]}', '{op: NotIn, value: ["Intel"]}', False),
        ('{op: In, value: ["Intel"]}', '{op: In, value: ["AMD"]}', True),
        ("{op: Exists}", "{op: DoesNotExist}", True),
        ('{op: In, value: ["Intel"]}', "{op: DoesNotExist}", True),
        ("{op: DoesNotExist}", "{op: DoesNotExist}", False),
        ('{op: ""}', "{op: DoesNotExist}", False),
        ("{op: IsTrue}", "{op: IsFalse}", True),
        ("{op: IsTrue}", '{op: In, value: ["true"]}', False),
        ("{op: IsTrue}", '{op: NotIn, value: ["true"]}', True),
        ('{op: InRegexp, value: ["^Int"]}', '{op: In, value: ["AMD"]}', True),
        ('{op: InRegexp, value: ["^Int"]}', '{op: In, value: ["AMD", "Intel"]}', False),
        ('{op: InRegexp, value: ["^Int"]}', '{op: NotIn, value: ["Intel"]}', False),
        ('{op: Gt, value: ["5"]}', '{op: Lt, value: ["6"]}', True),  # no integer in between
        ('{op: Gt, value: ["5"]}', '{op: Lt, value: ["7"]}', False),
        ('{op: GeLe, value: ["1", "3"]}', '{op: Gt, value: ["3"]}', True),
        ('{op: GeLe, value: ["1", "3"]}', '{op: Ge, value: ["3"]}', False),
        ('{op: In, value: ["6"]}', '{op: Gt, value: ["6"]}', True),
        ('{op: In, value: ["6", "7"]}', '{op: Gt, value: ["6"]}', False),
        ('{op: In, value: ["x"]}', '{op: Gt, value: ["6"]}', True),  # an error is no match
        ('{op: GeLe, value: ["1", "3"]}', '{op: NotIn, value: ["1", "2", "3"]}', False),  # "01"
        (
            '{op: Ge, value: ["6.0"], type: version}',
            '{op: Lt, value: ["5.0"], type: version}',
            True,
        ),
        (
            '{op: Ge, value: ["5.15"], type: version}',
            '{op: Lt, value: ["6"], type: version}',
            False,
        ),
        (
            '{op: Gt, value: ["5.0"], type: version}',
            '{op: Le, value: ["5.0"], type: version}',
            True,
        ),
        # Versions are (major, minor, patch) to the engine: none lies between 1.2.3 and 1.2.4.
        (
            '{op: Gt, value: ["1.2.3"], type: version}',
            '{op: Lt, value: ["1.2.4"], type: version}',
            True,
        ),
        (
            '{op: Gt, value: ["1.2.3"], type: version}',
            '{op: Lt, value: ["1.2.5"], type: version}',
            False,
        ),
        # Patterns are read the Go way, as the engine reads them: \p{letter} is \p{L}.
        ("{op: InRegexp, value: ['^\\p{letter}+$']}", '{op: In, value: ["123"]}', True),
        ("{op: InRegexp, value: ['^\\p{letter}+$']}", '{op: In, value: ["abc"]}', False),
    ],
)
def test_contradictions_across_rules(first: str, second: str, contradiction: bool) -> None:
    text = spec(
        a_set(rule(term(MODEL, id=first), name="a"), rule(term(MODEL, id=second), name="b"))
    )
    found = find(text, "contradiction")
    assert bool(found) is contradiction
    if contradiction:
        assert found[0].path == "compatibilities[0].rules[1].matchFeatures[0].matchExpressions.id"
        assert [f.path for f in find(text, "never-matches")] == ["compatibilities[0]", ""]


def test_contradiction_between_terms_of_one_rule() -> None:
    text = one_set(
        term("cpu.cpuid", AVX512F="{op: Exists}"), term("cpu.cpuid", AVX512F="{op: DoesNotExist}")
    )
    assert "contradiction" in codes(text)


def test_instances_never_contradict_across_terms() -> None:
    # Two different PCI devices can satisfy the two terms.
    text = spec(
        a_set(
            rule(term("pci.device", vendor='{op: In, value: ["10de"]}'), name="a"),
            rule(term("pci.device", vendor='{op: NotIn, value: ["10de"]}'), name="b"),
        )
    )
    assert codes(text) == []


def test_rule_matched_is_not_analysed() -> None:
    # An earlier rule's vars can add the element between the two rules.
    text = spec(
        a_set(
            rule(term("rule.matched", gpu="{op: DoesNotExist}"), name="a"),
            rule(term("rule.matched", gpu="{op: Exists}"), name="b"),
        )
    )
    assert codes(text) == []


def test_unknown_features_are_not_analysed() -> None:
    text = spec(
        a_set(
            rule(term("vendor.thing", x="{op: Exists}"), name="a"),
            rule(term("vendor.thing", x="{op: DoesNotExist}"), name="b"),
        )
    )
    assert "contradiction" not in codes(text)


def test_sets_are_separate() -> None:
    text = spec(
        a_set(rule(term(MODEL, vendor_id='{op: In, value: ["Intel"]}'))),
        a_set(rule(term(MODEL, vendor_id='{op: In, value: ["AMD"]}'))),
    )
    assert codes(text) == []


def test_match_any_alternatives() -> None:
    hugepages_on = term("memory.hugepages", enabled="{op: IsTrue}")
    off = term("memory.hugepages", enabled="{op: IsFalse}")
    gpu = term("pci.device", vendor='{op: In, value: ["10de"]}')
    one_dead = spec(a_set(rule(hugepages_on, match_any=((off,), (gpu,)))))
    findings = check_spec(one_dead).findings
    assert [(f.code, f.path) for f in findings] == [
        ("contradiction", "compatibilities[0].rules[0].matchAny[0].matchFeatures[0]"
         ".matchExpressions.enabled"),
        ("never-matches", "compatibilities[0].rules[0].matchAny[0]"),
    ]  # fmt: skip
    all_dead = spec(a_set(rule(hugepages_on, match_any=((off,),))))
    assert [f.path for f in find(all_dead, "never-matches")] == [
        "compatibilities[0].rules[0].matchAny[0]",
        "compatibilities[0]",
        "",
    ]
    # A requirement in another rule of the set applies to the alternatives too.
    across_rules = spec(a_set(rule(hugepages_on, name="a"), rule(match_any=((off,),), name="b")))
    assert find(across_rules, "never-matches")[-1].path == ""


def test_one_live_set_keeps_the_spec_alive() -> None:
    dead = a_set(rule(term(MODEL, id="{op: Exists}"), term(MODEL, id="{op: DoesNotExist}")))
    live = a_set(rule(term(MODEL, id="{op: Exists}")))
    paths = [f.path for f in find(spec(dead, live), "never-matches")]
    assert paths == ["compatibilities[0]"]


# -- the rest ----------------------------------------------------------------------------------


def test_empty_things_match_everything() -> None:
    assert codes("version: v1alpha1\n") == ["empty"]
    assert codes(spec("- rules: []\n")) == ["empty"]
    assert codes(spec("- rules:\n  - name: nothing\n")) == ["empty"]


def test_term_without_expressions() -> None:
    text = spec(a_set(rule("    - feature: cpu.model\n")))
    assert codes(text) == ["empty-term"]


def test_examples_are_clean() -> None:
    for path in sorted(SPECS.glob("*.yaml")):
        result = check_spec(path.read_bytes())
        expected = ["version-portability"] if path.name == "cuda-app.yaml" else []
        assert [f.code for f in result.findings] == expected, path


def test_finding_text() -> None:
    finding = Finding(Severity.WARNING, "a.b", "message", "code")
    assert str(finding) == "warning: a.b: message [code]"
    assert str(Finding(Severity.ERROR, "", "message", "x")) == "error: message [x]"


# -- contradictions are the engine's answer --------------------------------------------------

_INTEGER_EXPRESSIONS = [
    MatchExpression(Op.GT, ("5",)),
    MatchExpression(Op.GE, ("6",)),
    MatchExpression(Op.LT, ("6",)),
    MatchExpression(Op.LE, ("5",)),
    MatchExpression(Op.GT_LT, ("4", "6")),
    MatchExpression(Op.GE_LE, ("5", "6")),
]
_VERSION_EXPRESSIONS = [
    MatchExpression(op, values, VERSION_TYPE)
    for op, values in [
        (Op.GT, ("1.2.3",)),
        (Op.LT, ("1.2.4",)),
        (Op.GE, ("1.2.4",)),
        (Op.LE, ("1.3.0",)),
        (Op.GT_LT, ("1.2.3", "1.3.0")),
    ]
]
_LISTED = [MatchExpression(Op.IN, ("5", "7")), MatchExpression(Op.IS_TRUE)]
# Every value that can satisfy two of the expressions above, and more.
_PROBES = [str(n) for n in range(-2, 12)] + [
    "0.0.0",
    "1.2.3",
    "1.2.4",
    "1.2.5",
    "1.3.0",
    "1.3.1",
    "true",
]


@pytest.mark.parametrize(
    "first", _INTEGER_EXPRESSIONS + _VERSION_EXPRESSIONS + _LISTED, ids=MatchExpression.describe
)
def test_contradictions_agree_with_the_engine(first: MatchExpression) -> None:
    """Lint claims a contradiction exactly when the engine matches no value, for comparisons
    of one kind and for listed values; across kinds it may only err towards no claim."""
    for second in _INTEGER_EXPRESSIONS + _VERSION_EXPRESSIONS + _LISTED:
        text = spec(
            a_set(
                rule(term(MODEL, id=json.dumps(first.to_json())), name="a"),
                rule(term(MODEL, id=json.dumps(second.to_json())), name="b"),
            )
        )
        tests = [compile_expression(first).holds, compile_expression(second).holds]
        engine_matches = any(all(test(value) for test in tests) for value in _PROBES)
        claimed = bool(find(text, "contradiction"))
        listed = first in _LISTED or second in _LISTED
        if claimed or listed or first.type == second.type:
            assert claimed is not engine_matches, (first.describe(), second.describe())
