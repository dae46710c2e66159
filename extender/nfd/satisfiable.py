"""Which expressions, ``matchAny`` alternatives and sets no node can satisfy.

Owns the "never matches" analysis behind ``check-spec``: an expression that cannot hold on
any node NFD describes (a value op on a flag, an integer comparison of ``kernel.version``
``full``, an empty version range), and expressions on one flag or attribute element that
cannot all hold together, wherever in a set they are written. Whether an expression holds
for a value is always the engine's answer (:func:`extender.nfd.rules.compile_expression`),
so this analysis and the engine cannot disagree. :mod:`.lint` turns the results into
findings.

Claims that something *never matches* assume NFD's own feature types (e.g. that
``kernel.loadedmodule`` holds flags and ``cpu.model`` attributes). Instance features
(``pci.device``...) are never checked for contradictions across terms, since two terms can
be satisfied by two different instances, and ``rule.matched`` is left alone because earlier
rules' ``vars`` change it during evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from extender.nfd.catalogue import Kind, element_kind
from extender.nfd.golang import go_atoi, go_lower, parse_version
from extender.nfd.rules import compile_expression
from extender.nfd.spec import (
    COMPARISON_OPS,
    RANGE_OPS,
    VALUE_OPS,
    VERSION_TYPE,
    CompatibilitySet,
    FeatureTerm,
    MatchExpression,
    Op,
    SpecError,
)

__all__ = ["Atom", "Dead", "Warn", "atoms", "dead_reason", "set_never_matches"]

Warn = Callable[[str, str, str], None]  # (path, message, code): a warning found on the way


@dataclass(frozen=True, slots=True)
class Atom:
    """One matchExpressions entry of one term, where it is, and what it is about."""

    path: str
    feature: str  # as written
    key: str  # lower-cased, as NFD looks it up
    name: str
    expression: MatchExpression

    @property
    def op(self) -> str:
        return self.expression.op

    def describe(self) -> str:
        return f"{self.name} {self.expression.describe()}"


@dataclass(frozen=True, slots=True)
class Dead:
    reason: str  # short, for the set-level finding
    message: str | None  # the expression's own finding; None where compiling already warns
    code: str


def dead_reason(atom: Atom) -> Dead | None:
    """Why one expression can never match on any node NFD describes, if it cannot."""
    op, expression = atom.op, atom.expression
    where = f"{atom.key}: {atom.describe()}"
    if element_kind(atom.key, atom.name) == "flag" and op in VALUE_OPS:
        return Dead(
            f"{where} tests the value of a flag",
            f"{op} never matches: {atom.key} elements are flags (present or absent, with no "
            "value); use Exists or DoesNotExist",
            "flag-value-op",
        )
    if (
        atom.key == "kernel.version"
        and atom.name == "full"
        and op in COMPARISON_OPS
        and expression.type != VERSION_TYPE
    ):
        return Dead(
            f"{where} is an evaluation error on every node",
            f"{op} compares integers, and kernel.version full (e.g. '5.15.0-91-generic') is "
            "never one: every node gives an evaluation error; add type: version or compare "
            "major/minor",
            "never-matches",
        )
    if op in RANGE_OPS and expression.type == VERSION_TYPE and not _some_value([expression]):
        return Dead(f"{where} is an empty range", None, "never-matches")
    return None


def atoms(term: FeatureTerm, path: str, skipped: frozenset[str]) -> list[Atom]:
    key = go_lower(term.feature)
    atoms = []
    for name, expression in term.match_expressions or ():
        expression_path = f"{path}.matchExpressions.{name}"
        if expression_path not in skipped:
            atoms.append(Atom(expression_path, term.feature, key, name, expression))
    return atoms


def _term_dead(term: FeatureTerm, path: str, skipped: frozenset[str]) -> str | None:
    """Why no node can satisfy this term on its own, if none can."""
    for atom in atoms(term, path, skipped):
        dead = dead_reason(atom)
        if dead is not None:
            return f"{dead.reason} ({atom.path})"
    name_path = f"{path}.matchName"
    match_name = term.match_name
    if match_name is not None and match_name.op == Op.DOES_NOT_EXIST and name_path not in skipped:
        return f"{go_lower(term.feature)}: matchName DoesNotExist ({name_path})"
    return None


def set_never_matches(
    compat: CompatibilitySet, set_path: str, skipped: frozenset[str], warn: Warn
) -> str | None:
    """Why a set can never match, if it cannot; contradictions and dead ``matchAny``
    alternatives are passed to ``warn`` as they are found."""
    required: list[Atom] = []
    for rule_index, rule in enumerate(compat.rules):
        for term_index, term in enumerate(rule.match_features):
            term_path = f"{set_path}.rules[{rule_index}].matchFeatures[{term_index}]"
            dead = _term_dead(term, term_path, skipped)
            if dead is not None:
                return dead
            required.extend(atoms(term, term_path, skipped))
    core = _first_conflict(required, ())
    if core is not None:
        _contradiction(core, warn)
        return _core_reason(core)
    for rule_index, rule in enumerate(compat.rules):
        dead_alternatives = 0
        for any_index, element in enumerate(rule.match_any):
            element_path = f"{set_path}.rules[{rule_index}].matchAny[{any_index}]"
            reason = None
            own: list[Atom] = []
            for term_index, term in enumerate(element.match_features):
                term_path = f"{element_path}.matchFeatures[{term_index}]"
                reason = _term_dead(term, term_path, skipped)
                if reason is not None:
                    break
                own.extend(atoms(term, term_path, skipped))
            if reason is None:
                core = _first_conflict(required + own, own)
                if core is not None:
                    _contradiction(core, warn)
                    reason = _core_reason(core)
            if reason is not None:
                dead_alternatives += 1
                warn(
                    element_path,
                    f"this matchAny alternative can never match: {reason}",
                    "never-matches",
                )
        if rule.match_any and dead_alternatives == len(rule.match_any):
            return f"no matchAny alternative of rules[{rule_index}] can match"
    return None


def _contradiction(core: Sequence[Atom], warn: Warn) -> None:
    last, others = core[-1], core[:-1]
    listed = " and ".join(f"{a.expression.describe()} at {a.path}" for a in others)
    warn(
        last.path,
        f"{last.expression.describe()} contradicts {listed}: no node has a {last.key} "
        f"{last.name!r} that satisfies all of them",
        "contradiction",
    )


def _core_reason(core: Sequence[Atom]) -> str:
    first = core[0]
    expressions = " and ".join(a.expression.describe() for a in core)
    return f"{first.key}: {first.name} {expressions} cannot all hold"


def _first_conflict(atoms: Sequence[Atom], must_include: Sequence[Atom]) -> list[Atom] | None:
    """A minimal set of atoms on one element that no node satisfies together, if any.

    Only flag and attribute elements of NFD's own features are considered: an element of
    those has one state per node, so expressions in different terms and rules all apply to it.
    """
    groups: dict[tuple[str, str], list[Atom]] = {}
    for atom in atoms:
        groups.setdefault((atom.key, atom.name), []).append(atom)
    wanted = {a.path for a in must_include}
    for (key, name), group in groups.items():
        kind = element_kind(key, name)
        if kind not in ("flag", "attribute") or len(group) < 2:
            continue
        if wanted and not any(a.path in wanted for a in group):
            continue
        if _satisfiable(kind, [a.expression for a in group]):
            continue
        core = list(group)
        for atom in list(core):
            trial = [a for a in core if a is not atom]
            if trial and not _satisfiable(kind, [a.expression for a in trial]):
                core = trial
        return core
    return None


def _satisfiable(kind: Kind, expressions: Sequence[MatchExpression]) -> bool:
    """Can one element (a flag, or an attribute with one value) satisfy every expression?"""
    ops = [e for e in expressions if e.op != Op.ANY]
    if any(e.op == Op.DOES_NOT_EXIST for e in ops):
        return all(e.op == Op.DOES_NOT_EXIST for e in ops)  # absent satisfies nothing else
    if kind == "flag":
        return all(e.op == Op.EXISTS for e in ops)
    return _some_value([e for e in ops if e.op != Op.EXISTS])


def _some_value(expressions: Sequence[MatchExpression]) -> bool:
    """Is there a string value that satisfies every value expression? Errs towards yes.

    The engine's own matchers decide, on a few candidate values: the values In, IsTrue and
    IsFalse allow, when any of them is present; else each integer or version bound and its
    neighbours, which include the least value of any range the comparisons leave open.
    Beside comparisons, NotIn and InRegexp are not tested (they rarely exclude every value).
    """
    candidates: set[str] | None = None
    for expression in expressions:
        if expression.op == Op.IN:
            allowed = set(expression.value)
        elif expression.op == Op.IS_TRUE:
            allowed = {"true"}
        elif expression.op == Op.IS_FALSE:
            allowed = {"false"}
        else:
            continue
        candidates = allowed if candidates is None else candidates & allowed
    if candidates is not None:
        return _any_holds(expressions, candidates)
    compared = [e for e in expressions if e.op in COMPARISON_OPS]
    integers = [e for e in compared if not e.type]
    versions = [e for e in compared if e.type == VERSION_TYPE]
    return _any_holds(integers, _integer_candidates(integers)) and _any_holds(
        versions, _version_candidates(versions)
    )


def _any_holds(expressions: Sequence[MatchExpression], candidates: Iterable[str]) -> bool:
    if not expressions:
        return True
    tests = [_engine_test(e) for e in expressions]
    return any(all(test(value) for test in tests) for value in candidates)


def _engine_test(expression: MatchExpression) -> Callable[[str], bool]:
    """The engine's test of a present element's value; one that does not compile holds."""
    try:
        return compile_expression(expression).holds
    except SpecError:
        return lambda value: True


def _integer_candidates(expressions: Sequence[MatchExpression]) -> set[str]:
    bounds = {go_atoi(v) for e in expressions for v in e.value}
    return {str(b + step) for b in bounds if b is not None for step in (-1, 0, 1)}


def _version_candidates(expressions: Sequence[MatchExpression]) -> set[str]:
    # Versions are (major, minor, patch): the least one and each bound's successor suffice.
    found = {"0.0.0"}
    for version in {parse_version(v) for e in expressions for v in e.value}:
        if version is not None:
            major, minor, patch = version
            found |= {f"{major}.{minor}.{patch}", f"{major}.{minor}.{patch + 1}"}
    return found
