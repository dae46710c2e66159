"""The NFD rule engine: compile a spec once, evaluate it against a node's features.

Owns NFD's matching semantics (``pkg/apis/nfd/nodefeaturerule`` as used by ``nfd compat
validate-node``: failFast off, static ``vars`` feeding the ``rule.matched`` back-reference),
the set/image verdicts (sets are alternatives; fit = 1 + best matched weight),
and the outcome objects that say what failed and why. It knows nothing of Kubernetes or HTTP:
features come in through the small :class:`Features` protocol.

Spec-side problems that NFD reports whenever the element exists (unknown op, wrong value
count, bad regexp, non-integer bound, reversed integer range, unknown ``type``) are load-time
errors here (:class:`~extender.nfd.spec.SpecError` with a path). Problems NFD never reports are
warnings. Node-side values that cannot be compared are evaluation errors of the rule, as in NFD.

Go's number, case and regexp rules come from :mod:`.golang`. The module stays whole (over 500
lines): compiling and evaluating share the compiled types, and the engine is one concept with
a small public surface (:func:`load_spec`, :func:`compile_spec`, :func:`evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import re2

from extender.nfd.golang import GoRegexpError, go_atoi, go_lower, go_regexp_to_re2, parse_version
from extender.nfd.spec import (
    NO_VALUE_OPS,
    RANGE_OPS,
    SET_OPS,
    SINGLE_BOUND_OPS,
    VERSION_TYPE,
    CompatibilitySet,
    FeatureTerm,
    GroupRule,
    MatchExpression,
    Op,
    Spec,
    SpecError,
    SpecIssue,
    known_op,
    parse_spec,
)

__all__ = [
    "BACKREF_FEATURE",
    "CompiledSpec",
    "ExpressionOutcome",
    "Features",
    "ImageVerdict",
    "RuleOutcome",
    "SetOutcome",
    "SetSemantics",
    "TermOutcome",
    "compile_expression",
    "compile_spec",
    "evaluate",
    "load_spec",
]

BACKREF_FEATURE = "rule.matched"

_T = TypeVar("_T")


class SetSemantics(StrEnum):
    """How an image's compatibility sets combine (``--set-semantics``)."""

    ANY = "any"  # sets are alternatives: one matching set is enough (the default)
    ALL = "all"  # every set is a requirement


class Features(Protocol):
    """A node's NFD features, as NodeFeature ``spec.features`` holds them.

    ``None`` as a flag or attribute element container means the feature entry exists with
    ``elements: null``; NFD treats that differently from ``{}`` in one place (MatchMulti).
    """

    @property
    def flags(self) -> Mapping[str, frozenset[str] | None]: ...

    @property
    def attributes(self) -> Mapping[str, Mapping[str, str] | None]: ...

    @property
    def instances(self) -> Mapping[str, Sequence[Mapping[str, str]]]: ...


class EvaluationError(Exception):
    """A node-side value NFD cannot compare (not an integer, not a version)."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors become SpecErrors; RE2 need not print them too


# --------------------------------------------------------------------------------------------
# Compiled form


ValueMatcher = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """One expression with its value test prepared (sets built, numbers parsed, RE2 compiled)."""

    name: str  # the element key; "" for matchName
    expression: MatchExpression
    test: ValueMatcher  # for a present element's value (or an element name for matchName)

    @property
    def op(self) -> str:
        return self.expression.op

    def on_value(self, present: bool, value: str | None) -> bool:
        op = self.expression.op
        if op == Op.ANY:
            return True
        if op == Op.EXISTS:
            return present
        if op == Op.DOES_NOT_EXIST:
            return not present
        if not present or value is None:
            return False
        return self.test(value)

    def on_flag(self, present: bool) -> bool:
        # NFD evaluates flag keys with a nil value: value ops never match a flag.
        return self.on_value(present, None)

    def holds(self, value: str) -> bool:
        """Does an element that exists with this value satisfy the expression? A value NFD
        cannot compare does not (on a node it is an evaluation error of the rule)."""
        try:
            return self.on_value(True, value)
        except EvaluationError:
            return False


@dataclass(frozen=True, slots=True)
class CompiledTerm:
    term: FeatureTerm
    feature: str  # lower-cased lookup key
    expressions: tuple[CompiledExpression, ...] | None
    match_name: CompiledExpression | None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: GroupRule
    match_features: tuple[CompiledTerm, ...]
    match_any: tuple[tuple[CompiledTerm, ...], ...]
    vars: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CompiledSet:
    index: int
    compat: CompatibilitySet
    rules: tuple[CompiledRule, ...]


@dataclass(frozen=True, slots=True)
class CompiledSpec:
    """A spec ready to evaluate; compile once per spec digest and share."""

    spec: Spec
    sets: tuple[CompiledSet, ...]
    # Lower-cased feature names any term looks at: the part of a node that decides a verdict.
    referenced_features: tuple[str, ...]
    warnings: tuple[SpecIssue, ...] = field(compare=False)

    @property
    def digest(self) -> str:
        return self.spec.digest


def _compile_test(
    expression: MatchExpression, path: str, warnings: list[SpecIssue]
) -> ValueMatcher:
    text, values, value_type = expression.op, expression.value, expression.type
    op = known_op(text)
    if op is None:
        raise SpecError(path, f"unknown op {text!r} (ops are case-sensitive: {_OP_LIST})")
    if op in NO_VALUE_OPS:
        shown = text or '""'
        if values:
            raise SpecError(path, f"op {shown} takes no values (have {len(values)})")
        if value_type:
            warnings.append(SpecIssue(path, f"type {value_type!r} has no effect on op {shown}"))
        if op is Op.IS_TRUE:
            return lambda value: value == "true"
        if op is Op.IS_FALSE:
            return lambda value: value == "false"
        return lambda value: True  # "", Exists, DoesNotExist never reach the value test
    if op in SET_OPS:
        if not values:
            raise SpecError(path, f"op {op} needs at least one value")
        if value_type:
            warnings.append(SpecIssue(path, f"type {value_type!r} has no effect on op {op}"))
        if op is Op.IN:
            members = frozenset(values)
            return members.__contains__
        if op is Op.NOT_IN:
            excluded = frozenset(values)
            return lambda value: value not in excluded
        patterns = []
        for i, pattern in enumerate(values):
            try:
                patterns.append(re2.compile(go_regexp_to_re2(pattern), _RE2_OPTIONS))
            except (re2.error, GoRegexpError) as err:
                raise SpecError(
                    f"{path}.value[{i}]", f"invalid regexp {pattern!r}: {err}"
                ) from None
        return lambda value: any(p.search(value) is not None for p in patterns)
    expected = 1 if op in SINGLE_BOUND_OPS else 2
    if len(values) != expected:
        count = "exactly one value" if expected == 1 else "exactly two values"
        raise SpecError(path, f"op {op} needs {count} (have {len(values)})")
    if value_type == VERSION_TYPE:
        return _version_test(op, values, path, warnings)
    if value_type:
        raise SpecError(f"{path}.type", f"type {value_type!r} is not supported (only 'version')")
    return _integer_test(op, values, path)


_OP_LIST = ", ".join(sorted(frozenset(Op) - {Op.ANY})) + ' and ""'

# value, bounds -> holds; one table serves integers and versions.
_COMPARE: dict[Op, Callable[[Any, Sequence[Any]], bool]] = {
    Op.GT: lambda value, bounds: value > bounds[0],
    Op.GE: lambda value, bounds: value >= bounds[0],
    Op.LT: lambda value, bounds: value < bounds[0],
    Op.LE: lambda value, bounds: value <= bounds[0],
    Op.GT_LT: lambda value, bounds: bounds[0] < value < bounds[1],
    Op.GE_LE: lambda value, bounds: bounds[0] <= value <= bounds[1],
}


def _comparison(op: Op, bounds: Sequence[_T], node_value: Callable[[str], _T]) -> ValueMatcher:
    compare = _COMPARE[op]
    return lambda value: compare(node_value(value), bounds)


def _integer_test(op: Op, values: tuple[str, ...], path: str) -> ValueMatcher:
    bounds = []
    for i, text in enumerate(values):
        bound = go_atoi(text)
        if bound is None:
            hint = " (add type: version to compare versions)" if parse_version(text) else ""
            raise SpecError(f"{path}.value[{i}]", f"{text!r} is not an integer{hint}")
        bounds.append(bound)
    if op in RANGE_OPS and bounds[0] >= bounds[1]:
        low, high = bounds
        raise SpecError(path, f"op {op} needs value[0] < value[1] (have {low}, {high})")

    def node_integer(value: str) -> int:
        number = go_atoi(value)
        if number is None:
            raise EvaluationError(f"not a number {value!r}")
        return number

    return _comparison(op, bounds, node_integer)


def _version_test(
    op: Op, values: tuple[str, ...], path: str, warnings: list[SpecIssue]
) -> ValueMatcher:
    bounds = []
    for i, text in enumerate(values):
        bound = parse_version(text)
        if bound is None:
            raise SpecError(f"{path}.value[{i}]", f"{text!r} is not a version")
        bounds.append(bound)
    if op in RANGE_OPS:
        low, high = bounds
        if low > high or (op is Op.GT_LT and low == high):
            # NFD does not check version bounds: such an expression simply never matches.
            warnings.append(SpecIssue(path, f"op {op} bounds {values[0]}..{values[1]} never match"))

    def node_version(value: str) -> tuple[int, int, int]:
        version = parse_version(value)
        if version is None:
            raise EvaluationError(f"not a version {value!r}")
        return version

    return _comparison(op, bounds, node_version)


def compile_expression(expression: MatchExpression, path: str = "") -> CompiledExpression:
    """One expression compiled as the engine compiles it; raises SpecError where it would."""
    return CompiledExpression("", expression, _compile_test(expression, path, []))


def _compile_term(term: FeatureTerm, path: str, warnings: list[SpecIssue]) -> CompiledTerm:
    expressions = None
    if term.match_expressions is not None:
        expressions = tuple(
            CompiledExpression(
                name, e, _compile_test(e, f"{path}.matchExpressions.{name}", warnings)
            )
            for name, e in term.match_expressions
        )
    match_name = None
    if term.match_name is not None:
        match_name = CompiledExpression(
            "", term.match_name, _compile_test(term.match_name, f"{path}.matchName", warnings)
        )
    return CompiledTerm(term, go_lower(term.feature), expressions, match_name)


def compile_spec(spec: Spec) -> CompiledSpec:
    """Validate and prepare every expression. Raises SpecError (with a path) on load-time errors."""
    warnings: list[SpecIssue] = list(spec.warnings)
    sets = []
    referenced: set[str] = set()
    for i, compat in enumerate(spec.compatibilities):
        rules = []
        for j, rule in enumerate(compat.rules):
            path = f"compatibilities[{i}].rules[{j}]"
            match_features = tuple(
                _compile_term(t, f"{path}.matchFeatures[{k}]", warnings)
                for k, t in enumerate(rule.match_features)
            )
            match_any = tuple(
                tuple(
                    _compile_term(t, f"{path}.matchAny[{a}].matchFeatures[{k}]", warnings)
                    for k, t in enumerate(elem.match_features)
                )
                for a, elem in enumerate(rule.match_any)
            )
            for term in match_features + tuple(t for elem in match_any for t in elem):
                referenced.add(term.feature)
            rules.append(CompiledRule(rule, match_features, match_any, dict(rule.vars)))
        sets.append(CompiledSet(i, compat, tuple(rules)))
    return CompiledSpec(spec, tuple(sets), tuple(sorted(referenced)), tuple(warnings))


def load_spec(data: bytes | str) -> CompiledSpec:
    """Parse and compile a spec document in one step."""
    return compile_spec(parse_spec(data))


# --------------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True, slots=True)
class ExpressionOutcome:
    """One expression on one node: matched or not, with what the node actually has."""

    feature: str  # as written in the spec
    name: str  # element key; "" for matchName
    expression: MatchExpression
    matcher_type: str  # "matchExpression" | "matchName"
    matched: bool
    actual: str  # the node's value, "present"/"absent", or the matching names
    evaluated: bool = True  # False for a matchName NFD skips after a failed term

    def describe(self) -> str:
        """Stable text for scheduler reasons: ``kernel.loadedmodule: vfio_pci Exists``."""
        subject = self.name if self.matcher_type == "matchExpression" else "name"
        return f"{self.feature}: {subject} {self.expression.describe()}"


@dataclass(frozen=True, slots=True)
class TermOutcome:
    feature: str
    feature_present: bool
    matched: bool
    expressions: tuple[ExpressionOutcome, ...]

    def first_failure(self) -> str:
        if not self.feature_present:
            return f"{self.feature}: feature missing"
        for outcome in self.expressions:
            if not outcome.matched:
                return outcome.describe()
        return f"{self.feature}: no match"


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    name: str
    matched: bool
    error: str | None
    match_features: tuple[TermOutcome, ...]
    match_any: tuple[tuple[TermOutcome, ...], ...]
    match_any_matched: tuple[bool, ...]

    def first_failure(self) -> str:
        if self.error is not None:
            return self.error
        for term in self.match_features:
            if not term.matched:
                return term.first_failure()
        if self.match_any and not any(self.match_any_matched):
            first = next((t.first_failure() for t in self.match_any[0] if not t.matched), "")
            others = len(self.match_any) - 1
            return first + (f" (nor {others} other matchAny alternatives)" if others else "")
        return f"rule {self.name!r} did not match"


@dataclass(frozen=True, slots=True)
class SetOutcome:
    index: int
    tag: str
    weight: int
    description: str
    matched: bool
    rules: tuple[RuleOutcome, ...]

    @property
    def error(self) -> str | None:
        return next((r.error for r in self.rules if r.error is not None), None)

    @property
    def failed_rules(self) -> int:
        return sum(1 for r in self.rules if not r.matched)

    def first_failure(self) -> str:
        return next((r.first_failure() for r in self.rules if not r.matched), "")


@dataclass(frozen=True, slots=True)
class ImageVerdict:
    """What one spec says about one node.

    ``fit`` is 1 + the highest weight among matched sets when compatible, else 0. A spec with
    no sets at all states no requirement: compatible with fit 0, like an image without a spec.
    """

    compatible: bool
    fit: int
    sets: tuple[SetOutcome, ...]
    reason: str  # empty when compatible

    @property
    def error(self) -> str | None:
        return next((s.error for s in self.sets if s.error is not None), None)


# --------------------------------------------------------------------------------------------
# Evaluation


class _View:
    """A node's features plus the ``rule.matched`` attributes written during evaluation."""

    __slots__ = ("_backref", "_features", "_inserted")

    def __init__(self, features: Features) -> None:
        self._features = features
        self._inserted = False  # rule.matched written by a rule (NFD's InsertAttributeFeatures)
        self._backref: dict[str, str] | None = None  # its elements; None for Go's nil map

    def insert_backref(self, variables: Mapping[str, str] | None) -> None:
        if not self._inserted:
            self._inserted = True
            attributes = self._features.attributes
            if BACKREF_FEATURE not in attributes:
                self._backref = {}
            else:
                # NFD inserts into the node's own rule.matched. Its ``elements: null`` stays
                # null while rules add no vars (maps.Copy of nothing into a nil map).
                existing = attributes[BACKREF_FEATURE]
                self._backref = None if existing is None else dict(existing)
        if variables:
            # Copying vars into a nil map panics in NFD; we start a map (docs/semantics.md).
            if self._backref is None:
                self._backref = {}
            self._backref.update(variables)

    def lookup(
        self, feature: str
    ) -> tuple[bool, frozenset[str] | None, Mapping[str, str] | None, Sequence[Mapping[str, str]]]:
        flags_all, attributes_all = self._features.flags, self._features.attributes
        instances_all = self._features.instances
        in_flags, in_attributes = feature in flags_all, feature in attributes_all
        attributes = attributes_all.get(feature)
        if feature == BACKREF_FEATURE and self._inserted:
            in_attributes, attributes = True, self._backref
        present = in_flags or in_attributes or feature in instances_all
        return present, flags_all.get(feature), attributes, instances_all.get(feature, ())


def _match_multi(
    feature: str,
    expressions: tuple[CompiledExpression, ...],
    flags: frozenset[str] | None,
    attributes: Mapping[str, str] | None,
    instances: Sequence[Mapping[str, str]],
) -> tuple[bool, tuple[ExpressionOutcome, ...]]:
    """NFD's MatchMulti without failFast: flags/attributes as a union, instances apart."""
    union_match = flags is not None or attributes is not None
    union_results: list[bool] = []
    for compiled in expressions:
        matched_flag = matched_value = False
        skip_values = False
        if flags is not None:
            matched_flag = compiled.on_flag(compiled.name in flags)
            if not matched_flag and compiled.op == Op.DOES_NOT_EXIST:
                union_match, skip_values = False, True
        if attributes is not None and not skip_values:
            present = compiled.name in attributes
            try:
                matched_value = compiled.on_value(present, attributes.get(compiled.name))
            except EvaluationError as err:
                raise _located(err, feature, compiled) from None
            if not matched_value and compiled.op == Op.DOES_NOT_EXIST:
                union_match = False
        if not matched_flag and not matched_value:
            union_match = False
        union_results.append(matched_flag or matched_value)

    # Every expression is evaluated on every instance, so a bad value anywhere is an error.
    # For explanations keep the first fully matching instance, else the closest one.
    best: list[bool] | None = None
    best_index, best_score, instance_match = -1, -1, False
    for index, instance in enumerate(instances):
        results = []
        for compiled in expressions:
            present = compiled.name in instance
            try:
                results.append(compiled.on_value(present, instance.get(compiled.name)))
            except EvaluationError as err:
                raise _located(err, feature, compiled) from None
        if instance_match:
            continue
        if all(results):
            best, best_index, instance_match = results, index, True
        elif sum(results) > best_score:
            best, best_index, best_score = results, index, sum(results)

    outcomes = []
    for position, compiled in enumerate(expressions):
        via_instance = best is not None and best[position]
        matched = union_results[position] or via_instance
        if via_instance and not union_results[position]:
            actual = _instance_actual(instances[best_index], compiled.name, best_index)
        else:
            actual = _union_actual(compiled.name, flags, attributes, instances)
        outcomes.append(
            ExpressionOutcome(
                feature, compiled.name, compiled.expression, "matchExpression", matched, actual
            )
        )
    return union_match or instance_match, tuple(outcomes)


def _instance_actual(instance: Mapping[str, str], name: str, index: int) -> str:
    value = instance.get(name)
    return f"instance {index}: " + (repr(value) if value is not None else "absent")


def _union_actual(
    name: str,
    flags: frozenset[str] | None,
    attributes: Mapping[str, str] | None,
    instances: Sequence[Mapping[str, str]],
) -> str:
    if attributes is not None and name in attributes:
        return repr(attributes[name])
    if flags is not None and name in flags:
        return "present"
    if instances and flags is None and attributes is None:
        values = sorted({i[name] for i in instances if name in i})
        shown = ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        return f"no instance matches (values: {shown})" if values else "absent in every instance"
    return "absent"


def _located(err: EvaluationError, feature: str, compiled: CompiledExpression) -> EvaluationError:
    subject = compiled.name or "name"
    return EvaluationError(f"{feature}: {subject} {compiled.expression.describe()}: {err}")


def _match_names(
    feature: str,
    compiled: CompiledExpression,
    flags: frozenset[str] | None,
    attributes: Mapping[str, str] | None,
    instances: Sequence[Mapping[str, str]],
) -> ExpressionOutcome:
    """NFD's MatchNamesMulti: true if any element name satisfies the expression."""
    names: list[str] = sorted(flags or ()) + sorted(attributes or ())
    for instance in instances:
        names.extend(instance)
    matching = []
    for name in names:
        try:
            if compiled.on_value(True, name):
                matching.append(name)
        except EvaluationError as err:
            raise _located(err, feature, compiled) from None
    shown = ", ".join(sorted(set(matching))[:5]) if matching else "no name matches"
    return ExpressionOutcome(feature, "", compiled.expression, "matchName", bool(matching), shown)


def _evaluate_matcher(
    terms: tuple[CompiledTerm, ...], view: _View
) -> tuple[bool, tuple[TermOutcome, ...]]:
    """NFD's evaluateFeatureMatcher without failFast, including its isTermMatch carry-over."""
    is_match = True
    is_term_match = True  # deliberately not reset per term: NFD carries it over
    outcomes = []
    for term in terms:
        feature = term.term.feature
        present, flags, attributes, instances = view.lookup(term.feature)
        if not present:
            is_match = False
            outcomes.append(TermOutcome(feature, False, False, ()))
            continue
        rows: list[ExpressionOutcome] = []
        if term.expressions is not None:
            is_term_match, expression_rows = _match_multi(
                feature, term.expressions, flags, attributes, instances
            )
            rows.extend(expression_rows)
        if term.match_name is not None:
            if is_term_match:
                name_row = _match_names(feature, term.match_name, flags, attributes, instances)
                is_term_match = name_row.matched
                rows.append(name_row)
            else:
                rows.append(
                    ExpressionOutcome(
                        feature,
                        "",
                        term.match_name.expression,
                        "matchName",
                        False,
                        "not evaluated: an earlier expression failed",
                        evaluated=False,
                    )
                )
        if not is_term_match:
            is_match = False
        outcomes.append(TermOutcome(feature, True, is_term_match, tuple(rows)))
    return is_match, tuple(outcomes)


def _evaluate_rule(rule: CompiledRule, view: _View) -> RuleOutcome:
    name = rule.rule.name
    try:
        any_results = [_evaluate_matcher(elem, view) for elem in rule.match_any]
        features_matched, feature_terms = True, tuple[TermOutcome, ...]()
        if rule.match_features:
            features_matched, feature_terms = _evaluate_matcher(rule.match_features, view)
    except EvaluationError as err:
        view.insert_backref(None)
        return RuleOutcome(name, False, str(err), (), (), ())
    any_matched = tuple(matched for matched, _ in any_results)
    matched = (not rule.match_any or any(any_matched)) and features_matched
    # NFD returns no vars when matchFeatures failed, but still copies them when only
    # matchAny failed; either way rule.matched exists afterwards.
    view.insert_backref(rule.vars if features_matched else None)
    return RuleOutcome(
        name,
        matched,
        None,
        feature_terms,
        tuple(outcomes for _, outcomes in any_results),
        any_matched,
    )


def evaluate(
    compiled: CompiledSpec,
    features: Features,
    *,
    tags: Iterable[str] | None = None,
    semantics: SetSemantics = SetSemantics.ANY,
    has_features: bool = True,
) -> ImageVerdict:
    """Evaluate every (tag-selected) set in spec order and combine them: the sets are
    alternatives (docs/semantics.md).

    ``tags`` keeps only sets whose tag is listed, like ``validate-node --tags``; an empty or
    None value keeps all. ``has_features=False`` marks a node with no NodeFeature at all, so a
    failure reads ``no NFD features`` rather than a missing feature.
    """
    wanted = frozenset(tags or ())
    view = _View(features)
    outcomes = []
    for compiled_set in compiled.sets:
        compat = compiled_set.compat
        if wanted and compat.tag not in wanted:
            continue
        rules = tuple(_evaluate_rule(rule, view) for rule in compiled_set.rules)
        outcomes.append(
            SetOutcome(
                compiled_set.index,
                compat.tag,
                compat.weight,
                compat.description,
                all(r.matched for r in rules),
                rules,
            )
        )
    sets = tuple(outcomes)
    if not compiled.sets:
        return ImageVerdict(True, 0, sets, "")
    if not sets:
        listed = ",".join(sorted(wanted))
        return ImageVerdict(False, 0, sets, f"no compatibility set is tagged {listed}")
    matched = [s for s in sets if s.matched]
    if semantics is SetSemantics.ALL:
        compatible = len(matched) == len(sets)
        failing = next((s for s in sets if not s.matched), None)
    else:
        compatible = bool(matched)
        # The closest set is the one with fewest failing rules; earlier sets win ties.
        failing = min(sets, key=lambda s: s.failed_rules) if not compatible else None
    if compatible:
        return ImageVerdict(True, 1 + max(s.weight for s in matched), sets, "")
    assert failing is not None
    reason = failing.first_failure()
    if not has_features and failing.error is None:
        reason = "no NFD features"
    return ImageVerdict(False, 0, sets, reason)
