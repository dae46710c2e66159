"""What a spec says about a node, for people and for programs: validate reports and tables.

Owns the output of ``image-compat-extender validate`` (and later ``explain``): the JSON report,
the human table and the compatibility matrix, built from the rule engine's outcomes
(:class:`~extender.nfd.rules.ImageVerdict`). Nothing here parses arguments, reads files or knows
about HTTP; callers pass the parsed :class:`~extender.nfd.spec.Spec` and the verdict.

**The JSON report** of one spec on one node is::

    {"node": "n1", "compatible": false, "fit": 0, "reason": "...", "sets": [SET, ...]}

``reason`` (the scheduler's one-line reason) is present only when the node is not compatible.
Each ``SET`` carries the fields of ``nfd compat validate-node``'s ``CompatibilityStatus``, with
its names, order and omit-empty rules (``rules`` always; ``description``, ``weight`` and ``tag``
only when non-empty/non-zero), followed by our own fields: ``matched`` (all of the set's rules
match: NFD computes no set verdict) and, when a rule could not be evaluated, ``error``. Each
rule is ``{name, isMatch, matchedExpressions?, matchedAny?}`` (plus ``error`` when it could not
be evaluated, in which case it has no expression rows); each row is ``{feature, name,
expression, matcherType, isMatch}``. Rows of one matchFeatures list (the rule's own, or one
``matchedAny`` element's) are sorted by feature, name and NFD's ``MatchExpression.String()``,
as NFD sorts them; ``matchedAny`` elements always carry their ``matchedExpressions`` list.

**Where we differ from NFD on purpose** (NFD's report quirks are not copied):
a row's ``isMatch`` is the truth about that expression on this node, computed directly. NFD
instead reconstructs it by comparing expressions, so in NFD's report

* every row of a feature written with upper-case letters (``system.osRelease``) says false,
  although NFD matched the feature case-insensitively;
* identical expressions in two terms of one feature share one status;
* an expression on an instance feature says true when it held for *some* instance, even if no
  single instance satisfied the whole term (here it is true only for the instance that best
  satisfies the term: the first matching one, else the closest).

Rows of a term whose feature the node does not have say false, ``DoesNotExist`` included (the
term fails, as in NFD). A ``matchName`` that NFD skips because an earlier expression of its term
failed says false. An evaluation error, which aborts ``nfd compat validate-node``, is instead
reported on the rule (``error``) and makes the set not match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from extender.nfd.rules import (
    ExpressionOutcome,
    ImageVerdict,
    RuleOutcome,
    SetOutcome,
    SetSemantics,
    TermOutcome,
)
from extender.nfd.spec import FeatureTerm, GroupRule, MatchExpression, Spec

__all__ = [
    "MatrixCell",
    "Style",
    "go_expression_string",
    "matrix_json",
    "node_report",
    "render_matrix",
    "render_table",
    "rule_failures",
    "rule_report",
    "set_report",
    "use_color",
]

MATCH_EXPRESSION = "matchExpression"
MATCH_NAME = "matchName"


# --------------------------------------------------------------------------------------------
# JSON report


def go_expression_string(expression: MatchExpression) -> str:
    """NFD's ``MatchExpression.String()``: ``{op: "In", value: ["a" "b"]}``, the row sort key."""
    if not expression.value:
        return f"{{op: {_go_quote(expression.op)}}}"
    values = " ".join(_go_quote(v) for v in expression.value)
    return f"{{op: {_go_quote(expression.op)}, value: [{values}]}}"


def _go_quote(text: str) -> str:
    # Go's %q and JSON agree on printable text, which is all a sort key needs.
    return json.dumps(text, ensure_ascii=False)


def _row(
    feature: str, name: str, expression: MatchExpression, matcher_type: str, matched: bool
) -> tuple[tuple[str, str, str], dict[str, Any]]:
    """A report row with NFD's sort key: (feature, name, ``MatchExpression.String()``)."""
    row = {
        "feature": feature,
        "name": name,
        "expression": expression.to_json(),
        "matcherType": matcher_type,
        "isMatch": matched,
    }
    return (feature, name, go_expression_string(expression)), row


def _term_rows(
    term: FeatureTerm, outcome: TermOutcome
) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
    if outcome.feature_present:
        return [
            _row(e.feature, e.name, e.expression, e.matcher_type, e.matched)
            for e in outcome.expressions
        ]
    # The node lacks the feature: the engine records no expressions, so list the spec's.
    rows = [
        _row(term.feature, name, expression, MATCH_EXPRESSION, False)
        for name, expression in term.match_expressions or ()
    ]
    if term.match_name is not None:
        rows.append(_row(term.feature, "", term.match_name, MATCH_NAME, False))
    return rows


def _sorted_rows(
    terms: Sequence[FeatureTerm], outcomes: Sequence[TermOutcome]
) -> list[dict[str, Any]]:
    keyed = [row for term, o in zip(terms, outcomes, strict=True) for row in _term_rows(term, o)]
    keyed.sort(key=lambda pair: pair[0])
    return [row for _, row in keyed]


def rule_report(rule: GroupRule, outcome: RuleOutcome) -> dict[str, Any]:
    """One ``ProcessedRuleStatus``: ``{name, isMatch, matchedExpressions?, matchedAny?}``."""
    out: dict[str, Any] = {"name": outcome.name, "isMatch": outcome.matched}
    if outcome.error is not None:
        out["error"] = outcome.error
        return out
    if rule.match_features:
        rows = _sorted_rows(rule.match_features, outcome.match_features)
        if rows:
            out["matchedExpressions"] = rows
    if rule.match_any:
        out["matchedAny"] = [
            {"matchedExpressions": _sorted_rows(elem.match_features, terms)}
            for elem, terms in zip(rule.match_any, outcome.match_any, strict=True)
        ]
    return out


def set_report(spec: Spec, outcome: SetOutcome) -> dict[str, Any]:
    """One ``CompatibilityStatus`` plus our ``matched`` (and ``error``)."""
    compat = spec.compatibilities[outcome.index]
    out: dict[str, Any] = {
        "rules": [
            rule_report(rule, rule_outcome)
            for rule, rule_outcome in zip(compat.rules, outcome.rules, strict=True)
        ]
    }
    if outcome.description:
        out["description"] = outcome.description
    if outcome.weight:
        out["weight"] = outcome.weight
    if outcome.tag:
        out["tag"] = outcome.tag
    out["matched"] = outcome.matched
    if outcome.error is not None:
        out["error"] = outcome.error
    return out


def node_report(node: str, spec: Spec, verdict: ImageVerdict) -> dict[str, Any]:
    """The validate report of one spec on one node (see the module docstring)."""
    out: dict[str, Any] = {"node": node, "compatible": verdict.compatible, "fit": verdict.fit}
    if not verdict.compatible:
        out["reason"] = verdict.reason
    out["sets"] = [set_report(spec, s) for s in verdict.sets]
    return out


@dataclass(frozen=True, slots=True)
class MatrixCell:
    """One (node, spec) verdict of a matrix. ``label`` names the spec in a column header."""

    node: str
    label: str
    spec: Spec
    verdict: ImageVerdict


def matrix_json(cells: Sequence[MatrixCell]) -> list[dict[str, Any]]:
    """A list of node reports, each with the ``spec`` it answers for, in the given order."""
    return [{"spec": c.label, **node_report(c.node, c.spec, c.verdict)} for c in cells]


# --------------------------------------------------------------------------------------------
# Text for people


def use_color(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set to anything non-empty."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR", ""):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@dataclass(frozen=True, slots=True)
class Style:
    """ANSI styling that turns into plain text when ``color`` is off."""

    color: bool = False

    def _wrap(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def good(self, text: str) -> str:
        return self._wrap(text, "32")

    def bad(self, text: str) -> str:
        return self._wrap(text, "31")

    def warn(self, text: str) -> str:
        return self._wrap(text, "33")

    def bold(self, text: str) -> str:
        return self._wrap(text, "1")

    def dim(self, text: str) -> str:
        return self._wrap(text, "2")


def _expression_text(outcome: ExpressionOutcome) -> str:
    if not outcome.evaluated:
        return f"{outcome.describe()} ({outcome.actual})"
    return f"{outcome.describe()} (node: {outcome.actual})"


def _term_failures(term: TermOutcome) -> list[str]:
    if not term.feature_present:
        return [f"{term.feature}: the node has no such feature"]
    failures = [_expression_text(e) for e in term.expressions if not e.matched]
    if not failures:
        # Every expression held on its own, but not all on one instance.
        failures = [f"{term.feature}: no single instance matches every expression"]
    return failures


def _rule_failures(outcome: RuleOutcome) -> list[str]:
    """Every reason a rule failed, most relevant first: matchFeatures, then matchAny."""
    if outcome.error is not None:
        return [outcome.error]
    failures = [f for t in outcome.match_features if not t.matched for f in _term_failures(t)]
    if outcome.match_any and not any(outcome.match_any_matched):
        count = len(outcome.match_any)
        for i, terms in enumerate(outcome.match_any, start=1):
            first = next((_term_failures(t)[0] for t in terms if not t.matched), "no match")
            failures.append(f"matchAny {i}/{count}: {first}")
    return failures or [f"rule {outcome.name!r} did not match"]


def rule_failures(verdict: ImageVerdict) -> list[dict[str, Any]]:
    """Each rule that did not match, with why in :func:`render_table`'s words (each failing
    expression with the node's actual value, which the JSON report's rows do not carry):
    ``{"set": position in the report's sets, "rule": position in that set's rules, "name",
    "failures": [text, ...]}``."""
    return [
        {"set": n, "rule": i, "name": rule.name, "failures": _rule_failures(rule)}
        for n, s in enumerate(verdict.sets)
        for i, rule in enumerate(s.rules)
        if not rule.matched
    ]


def _set_title(outcome: SetOutcome) -> str:
    parts = [f"set {outcome.index + 1}"]
    if outcome.tag:
        parts.append(f"tag {outcome.tag}")
    parts.append(f"weight {outcome.weight}")
    title = ", ".join(parts)
    return f"{title}: {outcome.description}" if outcome.description else title


def _rule_name(outcome: RuleOutcome) -> str:
    return outcome.name or "(unnamed rule)"


def render_table(
    node: str,
    label: str,
    verdict: ImageVerdict,
    *,
    semantics: SetSemantics = SetSemantics.ANY,
    style: Style | None = None,
) -> str:
    """The human report of one spec on one node: one line per set and rule.

    A failing rule's line names its first failing expression with the node's actual value;
    further failures follow on indented lines.
    """
    style = style or Style()
    lines = []
    if verdict.compatible:
        status = style.good(style.bold("compatible")) + f", fit {verdict.fit}"
    else:
        status = style.bad(style.bold("NOT compatible"))
        if verdict.reason:
            status += f": {verdict.reason}"
    lines.append(f"{label} on node {style.bold(node)}: {status}")
    if semantics is SetSemantics.ALL and verdict.sets:
        lines.append(style.dim("(--set-semantics all: every set must match)"))
    if not verdict.sets:
        lines.append("  no compatibility sets evaluated")
    for outcome in verdict.sets:
        if outcome.error is not None:
            mark = style.warn("ERROR   ")
        elif outcome.matched:
            mark = style.good("MATCH   ")
        else:
            mark = style.bad("NO MATCH")
        lines.append(f"  {mark} {_set_title(outcome)}")
        if not outcome.rules:
            lines.append(f"    {style.dim('(no rules: matches every node)')}")
        for rule in outcome.rules:
            name = _rule_name(rule)
            if rule.matched:
                lines.append(f"    {style.good('OK   ')} {name}")
                continue
            failures = _rule_failures(rule)
            word = style.warn("ERROR") if rule.error is not None else style.bad("FAIL ")
            lines.append(f"    {word} {name}: {failures[0]}")
            lines.extend(f"          {' ' * len(name)}  {more}" for more in failures[1:])
    return "\n".join(lines) + "\n"


def _cell_text(verdict: ImageVerdict) -> tuple[str, str]:
    """(plain text, kind) of one matrix cell."""
    if verdict.compatible:
        return f"yes (fit {verdict.fit})", "good"
    if verdict.error is not None:
        return "error", "warn"
    return "no", "bad"


def _paint(style: Style, kind: str, text: str) -> str:
    return {"good": style.good, "bad": style.bad, "warn": style.warn}[kind](text)


def _why(verdict: ImageVerdict) -> str:
    error = verdict.error
    if error is not None and error != verdict.reason:
        return f"{verdict.reason}; evaluation error: {error}"
    return verdict.reason


def render_matrix(cells: Sequence[MatrixCell], *, style: Style | None = None) -> str:
    """Nodes down, specs across; why a node is not compatible is listed below the grid.

    With a single spec it is one line per node with the reason in the last column.
    """
    style = style or Style()
    nodes = list(dict.fromkeys(c.node for c in cells))
    labels = list(dict.fromkeys(c.label for c in cells))
    by_key = {(c.node, c.label): c for c in cells}
    node_width = max([len("NODE"), *(len(n) for n in nodes)])
    lines = []
    if len(labels) == 1:
        label = labels[0]
        width = max([len("COMPATIBLE"), *(len(_cell_text(c.verdict)[0]) for c in cells)])
        lines.append(style.bold(f"{'NODE':<{node_width}}  {'COMPATIBLE':<{width}}  REASON"))
        for node in nodes:
            verdict = by_key[(node, label)].verdict
            text, kind = _cell_text(verdict)
            cell = _paint(style, kind, f"{text:<{width}}")
            reason = _why(verdict)
            lines.append(f"{node:<{node_width}}  {cell}  {reason}".rstrip())
        return "\n".join(lines) + "\n"
    widths = {
        label: max(len(label), *(len(_cell_text(c.verdict)[0]) for c in cells if c.label == label))
        for label in labels
    }
    header = "  ".join([f"{'NODE':<{node_width}}", *(f"{lb:<{widths[lb]}}" for lb in labels)])
    lines.append(style.bold(header.rstrip()))
    for node in nodes:
        row = [f"{node:<{node_width}}"]
        for label in labels:
            entry = by_key.get((node, label))
            if entry is None:
                row.append(" " * widths[label])
                continue
            text, kind = _cell_text(entry.verdict)
            row.append(_paint(style, kind, f"{text:<{widths[label]}}"))
        lines.append("  ".join(row).rstrip())
    reasons = []
    for node in nodes:
        for label in labels:
            found = by_key.get((node, label))
            if found is not None and not found.verdict.compatible:
                reasons.append(f"  {node} / {label}: {_why(found.verdict)}")
    if reasons:
        lines.append("")
        lines.append("Not compatible:")
        lines.extend(reasons)
    return "\n".join(lines) + "\n"
