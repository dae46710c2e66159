"""``check-spec``: every error and warning a spec author should see before the scheduler does.

Owns the findings about a spec document, each located by a path such as
``compatibilities[0].rules[1].matchFeatures[0].matchExpressions.vfio-pci``:

* **errors**: the spec cannot be loaded (:func:`extender.nfd.spec.parse_spec` and the load-time
  checks of :mod:`.rules`). Every expression is compiled on its own, so all of a spec's
  bad expressions are reported at once, not only the first;
* **warnings** from parsing and compiling (unknown fields, case-variant field names, unquoted
  numbers or booleans in value lists, ``type`` on an op that ignores it, version ranges that
  never match);
* **lint warnings**: names NFD never reports (this module, against the data in
  :mod:`.catalogue`: a hyphen in a ``kernel.loadedmodule`` element, an unknown feature or
  element, ``CONFIG_`` prefixes, PCI/USB IDs written with ``0x`` or upper case, CPUID vendor
  strings), and expressions that can never match (found by :mod:`.satisfiable`: a value op on
  a flag, ``matchName: DoesNotExist``, an integer comparison of ``kernel.version.full``,
  contradictions between expressions on the same element, and the ``matchAny``
  alternatives, sets and specs that can therefore never match).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from extender.nfd.catalogue import (
    ALL_DOMAINS,
    CPUID_VENDOR_STRINGS,
    FEATURES,
    HEX_IDS,
    HUGEPAGES_ELEMENT,
)
from extender.nfd.golang import go_lower
from extender.nfd.rules import compile_spec
from extender.nfd.satisfiable import Atom, dead_reason, set_never_matches
from extender.nfd.spec import (
    COMPARISON_OPS,
    SUPPORTED_VERSION,
    VERSION_TYPE,
    CompatibilitySet,
    FeatureTerm,
    GroupRule,
    MatchExpression,
    Op,
    Spec,
    SpecError,
    iter_terms,
    parse_spec,
)

__all__ = [
    "CheckResult",
    "Finding",
    "Severity",
    "check_spec",
    "lint_spec",
]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in a spec. ``code`` is a stable short name (e.g. ``module-hyphen``)."""

    severity: Severity
    path: str
    message: str
    code: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message} [{self.code}]"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """All findings for one document, errors first; ``spec`` is None when it did not parse."""

    findings: tuple[Finding, ...]
    spec: Spec | None

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)


# --------------------------------------------------------------------------------------------
# Entry point


def check_spec(data: bytes | str) -> CheckResult:
    """Every finding for one spec document: parse, compile and lint, errors first."""
    try:
        spec = parse_spec(data)
    except SpecError as err:
        return CheckResult((Finding(Severity.ERROR, err.path, err.problem, "invalid"),), None)
    findings = [_parse_warning(w.path, w.message) for w in spec.warnings]
    compiled = _compile_each(spec)
    findings.extend(compiled.findings)
    if not compiled.failed:
        try:
            compile_spec(spec)
        except SpecError as err:  # a load-time rule not tied to one expression
            findings.append(Finding(Severity.ERROR, err.path, err.problem, "invalid"))
    findings.extend(lint_spec(spec, skip=compiled.failed))
    findings.sort(key=lambda f: f.severity is not Severity.ERROR)
    return CheckResult(tuple(findings), spec)


_UNKNOWN_FIELD = "unknown field, ignored"
_FIELD_NAMES = (
    "version",
    "compatibilities",
    "rules",
    "weight",
    "tag",
    "description",
    "name",
    "vars",
    "varsTemplate",
    "matchFeatures",
    "matchAny",
    "feature",
    "matchExpressions",
    "matchName",
    "op",
    "value",
    "type",
)
_RULE_ONLY_FIELDS = frozenset(
    {"labels", "labelsTemplate", "annotations", "taints", "extendedResources"}
)


def _parse_warning(path: str, message: str) -> Finding:
    """A parser warning, with a hint for unknown fields."""
    if message == _UNKNOWN_FIELD:
        field = path.rsplit(".", 1)[-1]
        if field in _RULE_ONLY_FIELDS:
            message += (
                f"; {field!r} belongs to NodeFeatureRule rules, not to image compatibility "
                "rules (NFD >= v0.18 reads GroupRule)"
            )
        else:
            message += _did_you_mean(field, _FIELD_NAMES)
        return Finding(Severity.WARNING, path, message, "unknown-field")
    return Finding(Severity.WARNING, path, message, "spec")


@dataclass(slots=True)
class _Compiled:
    findings: list[Finding]
    failed: set[str]  # paths of expressions that do not compile


_MINI_TERM_PATH = "compatibilities[0].rules[0].matchFeatures[0]"


def _compile_each(spec: Spec) -> _Compiled:
    """Compile each expression alone, so that every load-time error is found, not the first."""
    result = _Compiled([], set())
    for set_index, compat in enumerate(spec.compatibilities):
        for rule_index, rule in enumerate(compat.rules):
            for suffix, term in iter_terms(rule):
                term_path = f"compatibilities[{set_index}].rules[{rule_index}].{suffix}"
                for name, expression in term.match_expressions or ():
                    alone = FeatureTerm(term.feature, ((name, expression),), None)
                    path = f"{term_path}.matchExpressions.{name}"
                    _compile_alone(alone, term_path, path, result)
                if term.match_name is not None:
                    alone = FeatureTerm(term.feature, None, term.match_name)
                    _compile_alone(alone, term_path, f"{term_path}.matchName", result)
    return result


def _compile_alone(term: FeatureTerm, term_path: str, path: str, result: _Compiled) -> None:
    mini = Spec(
        SUPPORTED_VERSION,
        (CompatibilitySet((GroupRule("", match_features=(term,)),)),),
        digest="",
    )

    def real(mini_path: str) -> str:
        if mini_path.startswith(_MINI_TERM_PATH):
            return term_path + mini_path[len(_MINI_TERM_PATH) :]
        return path

    try:
        compiled = compile_spec(mini)
    except SpecError as err:
        result.failed.add(path)
        result.findings.append(Finding(Severity.ERROR, real(err.path), err.problem, "invalid"))
        return
    for warning in compiled.warnings:
        result.findings.append(
            Finding(Severity.WARNING, real(warning.path), warning.message, "rules")
        )


# --------------------------------------------------------------------------------------------
# Lint


def lint_spec(spec: Spec, *, skip: Iterable[str] = ()) -> list[Finding]:
    """Lint warnings only (no parse or compile findings); ``skip`` lists expression paths
    that did not compile, which are left out of the analysis."""
    skipped = frozenset(skip)
    findings: list[Finding] = []
    if not spec.compatibilities:
        findings.append(
            _warn("compatibilities", "no compatibility sets: the spec requires nothing", "empty")
        )
    dead_sets = 0
    for set_index, compat in enumerate(spec.compatibilities):
        set_path = f"compatibilities[{set_index}]"
        if not compat.rules:
            findings.append(_warn(set_path, "the set has no rules: it matches every node", "empty"))
        for rule_index, rule in enumerate(compat.rules):
            rule_path = f"{set_path}.rules[{rule_index}]"
            if not rule.match_features and not rule.match_any:
                findings.append(
                    _warn(
                        rule_path,
                        "the rule has neither matchFeatures nor matchAny: it matches every node",
                        "empty",
                    )
                )
            for suffix, term in iter_terms(rule):
                findings.extend(_lint_term(term, f"{rule_path}.{suffix}", skipped))
        reason = set_never_matches(
            compat, set_path, skipped, lambda *found: findings.append(_warn(*found))
        )
        if reason is not None:
            dead_sets += 1
            findings.append(_warn(set_path, f"this set can never match: {reason}", "never-matches"))
    if spec.compatibilities and dead_sets == len(spec.compatibilities):
        findings.append(
            _warn(
                "", "no set can ever match: the image is compatible with no node", "never-matches"
            )
        )
    return findings


def _warn(path: str, message: str, code: str) -> Finding:
    return Finding(Severity.WARNING, path, message, code)


def _lint_term(term: FeatureTerm, path: str, skipped: frozenset[str]) -> list[Finding]:
    findings = _lint_feature_name(term.feature, f"{path}.feature")
    if term.match_expressions is None and term.match_name is None:
        findings.append(
            _warn(
                path,
                "the term has neither matchExpressions nor matchName: NFD then reuses the "
                "previous term's result (or matches whenever the feature exists)",
                "empty-term",
            )
        )
    key = go_lower(term.feature)
    for name, expression in term.match_expressions or ():
        expression_path = f"{path}.matchExpressions.{name}"
        atom = Atom(expression_path, term.feature, key, name, expression)
        findings.extend(_lint_element(atom))
        if expression_path in skipped:
            continue  # its values are already reported as an error
        findings.extend(_lint_values(atom))
        dead = dead_reason(atom)
        if dead is not None and dead.message is not None:
            findings.append(_warn(expression_path, dead.message, dead.code))
        portability = _version_portability(atom)
        if portability is not None:
            findings.append(portability)
    name_path = f"{path}.matchName"
    if term.match_name is not None and name_path not in skipped:
        findings.extend(_lint_match_name(key, term.match_name, name_path))
    return findings


def _lint_feature_name(feature: str, path: str) -> list[Finding]:
    if not feature:
        return [_warn(path, "the feature name is empty: such a term never matches", "feature")]
    findings = []
    key = go_lower(feature)
    if key != feature:
        findings.append(
            _warn(
                path,
                f"{feature!r} has upper-case letters: it matches as {key!r}, but "
                "`nfd compat validate-node` reports every expression of it as failed; "
                f"write {key!r}",
                "feature-case",
            )
        )
    domain, dot, _ = key.partition(".")
    if not dot or domain not in ALL_DOMAINS:
        findings.append(
            _warn(
                path,
                f"{feature!r} is not in a domain NFD reports ({', '.join(ALL_DOMAINS)}); "
                "only a third-party NodeFeature could provide it",
                "unknown-feature",
            )
        )
    elif domain != "local" and key not in FEATURES:
        same_domain = [f for f in FEATURES if f.startswith(domain + ".")]
        hint = _did_you_mean(key, same_domain)
        findings.append(
            _warn(
                path,
                f"NFD's {domain} source reports no feature {key!r}{hint}",
                "unknown-feature",
            )
        )
    return findings


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    options = list(candidates)
    folded = {c.lower(): c for c in options}
    if word.lower() in folded:
        return f"; did you mean {folded[word.lower()]!r}?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _lint_element(atom: Atom) -> list[Finding]:
    key, name = atom.key, atom.name
    findings = []
    known = FEATURES.get(key)
    if known is not None and known[1] is not None and name not in known[1]:
        findings.append(
            _warn(
                atom.path,
                f"NFD reports no element {name!r} in {key} "
                f"(it has {', '.join(sorted(known[1]))}){_did_you_mean(name, known[1])}",
                "unknown-element",
            )
        )
    if key == "memory.hugepages" and not HUGEPAGES_ELEMENT.fullmatch(name):
        findings.append(
            _warn(
                atom.path,
                f"NFD reports no element {name!r} in memory.hugepages (it has 'enabled' "
                "and one 'hugepages-<size>' per page size, e.g. 'hugepages-2Mi')",
                "unknown-element",
            )
        )
    if key == "cpu.cpuid" and name != name.upper():
        findings.append(
            _warn(
                atom.path,
                f"CPUID flag names are upper-case (e.g. AVX512F); write {name.upper()!r}",
                "unknown-element",
            )
        )
    if key == "kernel.loadedmodule" and "-" in name:
        findings.append(
            _warn(
                atom.path,
                f"{name!r} never matches: /proc/modules lists module names with underscores; "
                f"write {name.replace('-', '_')!r}",
                "module-hyphen",
            )
        )
    if key == "kernel.config" and name.startswith("CONFIG_"):
        findings.append(
            _warn(
                atom.path,
                f"NFD strips the CONFIG_ prefix from kconfig names; write {name[7:]!r}",
                "unknown-element",
            )
        )
    if key == "system.osrelease" and name.lower() == name and name.upper() != name:
        findings.append(
            _warn(
                atom.path,
                f"os-release keys are upper-case; write {name.upper()!r}",
                "unknown-element",
            )
        )
    return findings


def _lint_values(atom: Atom) -> list[Finding]:
    if atom.op not in (Op.IN, Op.NOT_IN):
        return []
    findings = []
    width = HEX_IDS.get(atom.key, {}).get(atom.name)
    for i, value in enumerate(atom.expression.value):
        value_path = f"{atom.path}.value[{i}]"
        if width is not None and not re.fullmatch(f"[0-9a-f]{{{width}}}", value):
            findings.append(
                _warn(
                    value_path,
                    f"{value!r} never equals {atom.key} {atom.name}: NFD reports "
                    f"{width} lower-case hex digits without 0x{_hex_hint(value, width)}",
                    "id-format",
                )
            )
        if atom.key == "cpu.model" and atom.name == "vendor_id" and value in CPUID_VENDOR_STRINGS:
            findings.append(
                _warn(
                    value_path,
                    f"NFD reports the vendor as {CPUID_VENDOR_STRINGS[value]!r}, "
                    f"not the CPUID string {value!r}",
                    "id-format",
                )
            )
    return findings


def _hex_hint(value: str, width: int) -> str:
    digits = value[2:] if value[:2].lower() == "0x" else value
    if re.fullmatch("[0-9a-fA-F]+", digits) and len(digits) >= width:
        return f" (e.g. {digits[:width].lower()!r})"
    return ""


def _lint_match_name(key: str, expression: MatchExpression, path: str) -> list[Finding]:
    findings = []
    if expression.op == Op.DOES_NOT_EXIST:
        findings.append(
            _warn(
                path,
                "matchName DoesNotExist never matches: NFD tests it against each element name "
                "that exists; use matchExpressions {NAME: {op: DoesNotExist}}",
                "never-matches",
            )
        )
    if key == "kernel.loadedmodule" and expression.op in (Op.IN, Op.NOT_IN):
        for i, value in enumerate(expression.value):
            if "-" in value:
                findings.append(
                    _warn(
                        f"{path}.value[{i}]",
                        f"{value!r} never matches: /proc/modules lists module names with "
                        f"underscores; write {value.replace('-', '_')!r}",
                        "module-hyphen",
                    )
                )
    return findings


def _version_portability(atom: Atom) -> Finding | None:
    if (
        atom.key == "kernel.version"
        and atom.name == "full"
        and atom.op in COMPARISON_OPS
        and atom.expression.type == VERSION_TYPE
    ):
        return _warn(
            atom.path,
            "RHEL-family kernels (e.g. '5.14.0-427.13.1.el9_4.x86_64') are not versions NFD "
            "can parse: on such nodes this is an evaluation error and the rule does not "
            "match; comparing major/minor with integer ops works everywhere",
            "version-portability",
        )
    return None
