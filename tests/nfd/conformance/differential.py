"""Our engine against NFD, case by case: verdicts, exposure of rejected specs, shrinking.

What is compared (verdicts only, never error text):

* Both read the spec: per rule, in evaluation order, match / no match, up to and including
  NFD's first error (NFD aborts there, we mark that rule errored and go on); overall, "some
  error" vs "no error"; and the sets' tags, weights, descriptions and rule names (they show
  how YAML scalars were read).
* NFD cannot decode the spec: we must reject it too.
* We reject the spec (our documented stricter load-time validation): NFD must fail on it for
  some node where the offending element exists. The case's own node may show that already;
  otherwise "exposing" nodes are built from the spec (every referenced feature present, with
  the referenced elements, values chosen to satisfy the expressions so evaluation gets that
  far) and NFD must fail on one of them. Rejections that are pure policy (``version``,
  ``varsTemplate``, ``weight`` range; docs/semantics.md) need no NFD failure.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from extender.nfd.golang import json_fold
from extender.nfd.rules import CompiledSpec, evaluate, load_spec
from extender.nfd.spec import COMPARISON_OPS, Op, SpecError
from extender.nodes.model import NodeFeatures
from tests.nfd.conformance.generate import Case, Node_
from tests.nfd.conformance.oracle import NfdEval, NfdResult
from tests.nfd.conformance.yamltext import Document, Mapping, Sequence, render

# --------------------------------------------------------------------------------------------
# Our side


@dataclass(frozen=True)
class OurRule:
    name: str
    matched: bool
    error: str | None


@dataclass(frozen=True)
class OurSet:
    tag: str
    weight: int
    description: str
    rules: tuple[OurRule, ...]


@dataclass(frozen=True)
class Ours:
    rejected: SpecError | None = None
    sets: tuple[OurSet, ...] = ()
    crash: str | None = None  # an exception other than SpecError: always a bug


class SpecCache:
    """Compiles each distinct spec text once."""

    def __init__(self) -> None:
        self._compiled: dict[str, CompiledSpec | SpecError | Exception] = {}

    def get(self, text: str) -> CompiledSpec | SpecError | Exception:
        if text not in self._compiled:
            try:
                self._compiled[text] = load_spec(text)
            except SpecError as err:
                self._compiled[text] = err
            except Exception as err:
                self._compiled[text] = err
        return self._compiled[text]


def node_features(node: Node_) -> NodeFeatures:
    return NodeFeatures.build(
        "n",
        dict(node.flags),
        dict(node.attributes),
        {k: v or [] for k, v in node.instances.items()},
    )


def our_verdict(cache: SpecCache, text: str, node: Node_, tags: tuple[str, ...] | None) -> Ours:
    compiled = cache.get(text)
    if isinstance(compiled, SpecError):
        return Ours(rejected=compiled)
    if isinstance(compiled, Exception):
        return Ours(crash=f"load_spec raised {compiled!r}")
    try:
        verdict = evaluate(compiled, node_features(node), tags=tags)
    except Exception as err:
        return Ours(crash=f"evaluate raised {err!r}")
    return Ours(
        sets=tuple(
            OurSet(
                s.tag,
                s.weight,
                s.description,
                tuple(OurRule(r.name, r.matched, r.error) for r in s.rules),
            )
            for s in verdict.sets
        )
    )


# --------------------------------------------------------------------------------------------
# Judging one case

POLICY = "we reject (documented policy)"
EXPOSED_HERE = "we reject; NFD fails on this node too"
EXPOSED = "we reject; NFD fails on an exposing node"
NEEDS_EXPOSURE = "we reject; exposing nodes needed"


@dataclass(frozen=True)
class Judgement:
    category: str  # for the distribution
    disagreement: str | None = None  # a short kind, e.g. "rule verdict differs"
    detail: str = ""
    rules: Counter[str] = field(default_factory=Counter)  # compared rule verdicts


def policy_rejection(err: SpecError) -> str | None:
    """The documented stricter rules that need no NFD failure (docs/semantics.md)."""
    if err.path == "version":
        return "version other than v1alpha1"
    if err.path.endswith(".varsTemplate"):
        return "varsTemplate"
    if err.path.endswith(".weight") and "outside" in err.problem:
        return "weight outside 0..100"
    if "keeps one of them at random" in err.problem:
        return "keys that only differ before YAML-to-JSON conversion"
    if "has no RE2 equivalent" in err.problem:
        return "regexp class RE2 cannot express (Cn, Assigned, negated LC/ASCII in [...])"
    if "pattern too large" in err.problem:
        return "regexp beyond RE2's memory budget"
    return None


def _flat(sets: tuple[Any, ...]) -> list[Any]:
    return [rule for s in sets for rule in s.rules]


def known_nfd_bug(case: Case, nfd: NfdResult, ours: Ours) -> str | None:
    """NFD failures we deliberately do not copy (docs/semantics.md, "Where we differ")."""
    if nfd.stage == "backref" and case.node.attributes.get("rule.matched", {}) is None:
        # Go's InsertAttributeFeatures copies vars into a nil map: a panic.
        return "NFD panics on vars when the node has rule.matched with elements: null"
    return None


def judge(
    case: Case, text: str, nfd: NfdResult, ours: Ours, exposed: Callable[[], bool]
) -> Judgement:
    if ours.rejected is not None:
        # First: where NFD's reading is random, any NFD result goes.
        policy = policy_rejection(ours.rejected)
        if policy is not None:
            return Judgement(f"{POLICY}: {policy}")
    if nfd.stage in ("input", "internal"):
        return Judgement("harness", "nfd-eval internal error", nfd.error)
    if ours.crash is not None:
        return Judgement("crash", "our engine crashed", ours.crash)
    if ours.rejected is not None:
        err = ours.rejected
        if nfd.stage == "spec":
            return Judgement("both reject the spec (NFD cannot decode it)")
        if nfd.error:
            return Judgement(EXPOSED_HERE)
        if exposed():
            return Judgement(EXPOSED)
        return Judgement(
            "DISAGREE",
            "we reject a spec NFD evaluates without error",
            f"our SpecError: {err}; NFD evaluated this node and the exposing nodes fine",
        )
    if nfd.stage == "spec":
        return Judgement("DISAGREE", "NFD cannot decode a spec we accept", nfd.error)

    rules: Counter[str] = Counter()
    nfd_sets, our_sets = nfd.sets, ours.sets
    # NFD's sets end at its error; all sets before that must agree in full.
    complete = len(nfd_sets) if not nfd.error else len(nfd_sets) - 1
    if not nfd.error and len(our_sets) != len(nfd_sets):
        return Judgement(
            "DISAGREE", "set count differs", f"NFD {len(nfd_sets)}, ours {len(our_sets)}"
        )
    for index, nfd_set in enumerate(nfd_sets):
        if index >= len(our_sets):
            return Judgement("DISAGREE", "set count differs", f"ours lacks set {index}")
        ours_set = our_sets[index]
        meta_nfd = (nfd_set.tag, nfd_set.weight, nfd_set.description)
        meta_ours = (ours_set.tag, ours_set.weight, ours_set.description)
        if meta_nfd != meta_ours:
            return Judgement(
                "DISAGREE",
                "set tag/weight/description differs",
                f"NFD {meta_nfd}, ours {meta_ours}",
            )
        if index < complete and len(ours_set.rules) != len(nfd_set.rules):
            return Judgement("DISAGREE", "rule count differs", f"set {index}")
    nfd_rules, our_rules = _flat(nfd_sets), _flat(our_sets)
    for position, nfd_rule in enumerate(nfd_rules):
        if position >= len(our_rules):
            return Judgement("DISAGREE", "rule count differs", f"ours lacks rule {position}")
        our_rule = our_rules[position]
        if nfd_rule.name != our_rule.name:
            return Judgement(
                "DISAGREE", "rule name differs", f"NFD {nfd_rule.name!r}, ours {our_rule.name!r}"
            )
        if our_rule.error is not None:
            return Judgement(
                "DISAGREE",
                "we fail a rule NFD evaluates",
                f"rule {position} ({nfd_rule.name!r}): NFD says {nfd_rule.matched}; "
                f"ours: {our_rule.error}",
            )
        if our_rule.matched != nfd_rule.matched:
            return Judgement(
                "DISAGREE",
                "rule verdict differs",
                f"rule {position} ({nfd_rule.name!r}): NFD {nfd_rule.matched}, "
                f"ours {our_rule.matched}",
            )
        rules["match" if nfd_rule.matched else "no match"] += 1
    if not nfd.error:
        if len(our_rules) != len(nfd_rules):
            return Judgement("DISAGREE", "rule count differs", "")
        if not nfd_rules:
            return Judgement("no rule evaluated (no sets/rules, or --tags left none)", rules=rules)
        if all(r.matched for r in nfd_rules):
            return Judgement("all rules match", rules=rules)
        return Judgement("some rule does not match", rules=rules)
    # NFD failed after the rules above.
    if nfd.stage == "rule":
        failing = len(nfd_rules)
        if failing >= len(our_rules) or our_rules[failing].error is None:
            shown = our_rules[failing].matched if failing < len(our_rules) else "no such rule"
            return Judgement(
                "DISAGREE",
                "NFD fails a rule we evaluate",
                f"rule {failing}: NFD: {nfd.error}; ours: {shown}",
            )
        rules["error"] += 1
        return Judgement("NFD fails evaluating a rule; so do we", rules=rules)
    bug = known_nfd_bug(case, nfd, ours)
    if bug is not None:
        return Judgement(f"known NFD bug: {bug}", rules=rules)
    return Judgement("DISAGREE", f"NFD fails ({nfd.stage}) where we do not", nfd.error)


# --------------------------------------------------------------------------------------------
# Exposing nodes for specs we reject


def _text(value: Any) -> str:
    """A YAML-loaded scalar back to the string Go would see (near enough for a search)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str) and json_fold(key) == json_fold(name):
                return value
    return None


def _number(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


def _version(text: str) -> list[int] | None:
    match = re.fullmatch(r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?([-+].*)?", text)
    return [int(p or 0) for p in match.groups()[:3]] if match else None


_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PROBES = ("", "a", "1", "x", "true", "v1.2.3", "abc", "10")


def satisfying_value(expression: Any) -> str | None:
    """A value that satisfies the expression, None for "leave the element out"."""
    op = _text(_field(expression, "op"))
    values = [_text(v) for v in _field(expression, "value") or [] if not isinstance(v, list | dict)]
    is_version = _text(_field(expression, "type")) == "version"
    first = values[0] if values else "1"
    if op == Op.DOES_NOT_EXIST:
        return None
    if op == Op.IN:
        return first
    if op == Op.NOT_IN:
        return "\u2603"
    if op == Op.IN_REGEXP:
        # A pattern's own text, anchors and escapes removed, often matches it.
        literals = [re.sub(r"\\(.)", r"\1", v.strip("^$")) for v in values]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for probe in (*_PROBES, *literals, *values):
                for pattern in values:
                    try:
                        if re.search(pattern, probe):
                            return probe
                    except (re.error, RecursionError):
                        continue
        return "x"
    if op in (Op.IS_TRUE, Op.IS_FALSE):
        return "true" if op == Op.IS_TRUE else "false"
    if op in COMPARISON_OPS:
        steps: dict[str, int] = {Op.GT: 1, Op.LT: -1, Op.GT_LT: 1}
        step = steps.get(op, 0)
        if is_version:
            parts = _version(first)
            if parts is None:
                return first
            if step < 0:
                return "0.0.0"
            parts[2] += step
            return ".".join(str(p) for p in parts)
        number = _number(first)
        return first if number is None else str(number + step)
    return "x"


def exposing_nodes(text: str) -> list[Node_]:
    """Nodes on which NFD evaluates (nearly) every expression of the spec."""
    try:
        tree = next(iter(yaml.load_all(text, Loader=_FastLoader)), None)
    except Exception:  # PyYAML also raises KeyError/ValueError on odd tagged scalars
        return []
    wanted: dict[str, dict[str, str | None]] = {}
    names: dict[str, set[str]] = {}

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            feature = _field(obj, "feature")
            is_term = any(_field(obj, f) is not None for f in ("matchExpressions", "matchName"))
            if (feature is not None or is_term) and not isinstance(feature, dict | list):
                name = _text(feature).lower()
                elements = wanted.setdefault(name, {})
                expressions = _field(obj, "matchExpressions")
                if isinstance(expressions, dict):
                    for key, expression in expressions.items():
                        elements[_text(key)] = satisfying_value(expression)
                match_name = _field(obj, "matchName")
                if match_name is not None:
                    names.setdefault(name, set()).add(satisfying_value(match_name) or "x")
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(tree)
    if not wanted:
        return []
    nodes: list[Node_] = []
    satisfied: dict[str, dict[str, str]] = {}
    for name, elements in wanted.items():
        present = {k: v for k, v in elements.items() if v is not None}
        present.update(dict.fromkeys(names.get(name, ()), "1"))
        satisfied[name] = present
    nodes.append(Node_(attributes={n: dict(e) for n, e in satisfied.items()}))
    nodes.append(Node_(flags={n: list(e) for n, e in satisfied.items()}))
    nodes.append(Node_(instances={n: [dict(e)] for n, e in satisfied.items()}))
    for probe in ("1", "true", "x", "1.0.0"):
        constant: dict[str, dict[str, str] | None] = {
            n: dict.fromkeys([*wanted[n], *names.get(n, ())], probe) for n in wanted
        }
        nodes.append(Node_(attributes=constant))
    nodes.append(
        Node_(
            flags={n: list(e) for n, e in satisfied.items()},
            attributes={n: dict(e) for n, e in satisfied.items()},
            instances={n: [dict(e)] for n, e in satisfied.items()},
        )
    )
    return nodes


# --------------------------------------------------------------------------------------------
# Running a suite


def nfd_case(text: str, node: Node_, tags: tuple[str, ...] | None) -> dict[str, Any]:
    return {"spec": text, "features": node.to_nfd(), "tags": list(tags) if tags else None}


@dataclass
class Finding:
    case: Case
    judgement: Judgement


@dataclass
class Report:
    cases: int = 0
    exposure_cases: int = 0
    distribution: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    # Grid coverage: (kind, op label, "absent" or NFD's verdict on the present element).
    cells: set[tuple[str, str, str]] = field(default_factory=set)

    def summary(self) -> str:
        lines = [
            f"{self.cases} cases (+{self.exposure_cases} exposing-node evaluations)",
            "verdict distribution:",
        ]
        width = max((len(k) for k in self.distribution), default=10)
        for key, count in sorted(self.distribution.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {key:<{width}}  {count:7d}  {100 * count / max(self.cases, 1):5.1f}%")
        total = sum(self.rules.values())
        shown = ", ".join(f"{k} {v}" for k, v in sorted(self.rules.items()))
        lines.append(f"rule verdicts compared: {total} ({shown})")
        kinds = Counter(f.judgement.disagreement for f in self.findings)
        if kinds:
            lines.append("disagreements:")
            lines += [f"  {kind}: {count}" for kind, count in kinds.most_common()]
        return "\n".join(lines)


def _verdict_letter(nfd: NfdResult) -> str:
    if nfd.error:
        return "error"
    rules = _flat(nfd.sets)
    return "match" if rules and rules[0].matched else "nomatch"


def run_suite(oracle: NfdEval, cases: list[Case]) -> Report:
    cache = SpecCache()
    rendered: dict[int, str] = {}
    texts = [rendered.setdefault(id(c.doc), render(c.doc)) for c in cases]
    # NFD works through the batch in its own process while we evaluate the same cases here.
    pending = oracle.start(nfd_case(t, c.node, c.tags) for t, c in zip(texts, cases, strict=True))
    ours = [our_verdict(cache, t, c.node, c.tags) for t, c in zip(texts, cases, strict=True)]
    nfd = pending.results()

    # Specs we reject and NFD evaluated without error on the case's node: try exposing nodes.
    needs: dict[str, list[Node_]] = {}
    for text, mine, theirs in zip(texts, ours, nfd, strict=True):
        if (
            mine.rejected is not None
            and not theirs.error
            and policy_rejection(mine.rejected) is None
            and text not in needs
        ):
            needs[text] = exposing_nodes(text)
    batch = [(text, node) for text, nodes in needs.items() for node in nodes]
    results = oracle.run(nfd_case(text, node, None) for text, node in batch)
    exposed_specs = {text for (text, _), result in zip(batch, results, strict=True) if result.error}

    report = Report(cases=len(cases), exposure_cases=len(batch))
    for case, text, mine, theirs in zip(cases, texts, ours, nfd, strict=True):
        exposed = functools.partial(operator.contains, exposed_specs, text)
        judgement = judge(case, text, theirs, mine, exposed)
        report.distribution[judgement.category] += 1
        report.rules.update(judgement.rules)
        if case.origin.startswith("grid:"):
            _, kind, label, presence = case.origin.split(":")
            condition = "absent" if presence == "absent" else _verdict_letter(theirs)
            report.cells.add((kind, label, condition))
        if judgement.disagreement is not None:
            report.findings.append(Finding(case, judgement))
    return report


def judge_one(oracle: NfdEval, case: Case, cache: SpecCache | None = None) -> Judgement:
    """Judge a single case from scratch (used while shrinking)."""
    cache = cache or SpecCache()
    text = render(case.doc)
    mine = our_verdict(cache, text, case.node, case.tags)
    theirs = oracle.one(nfd_case(text, case.node, case.tags))

    def exposed() -> bool:
        nodes = exposing_nodes(text)
        return any(r.error for r in oracle.run(nfd_case(text, n, None) for n in nodes))

    return judge(case, text, theirs, mine, exposed)


# --------------------------------------------------------------------------------------------
# Shrinking


def _tree_variants(node: Any) -> Iterator[Any]:
    """Smaller trees: drop one item of a mapping/sequence anywhere, outermost first."""
    if isinstance(node, Mapping):
        for i in range(len(node.items)):
            yield replace(node, items=node.items[:i] + node.items[i + 1 :])
        for i, (key, value) in enumerate(node.items):
            for smaller in _tree_variants(value):
                yield replace(node, items=(*node.items[:i], (key, smaller), *node.items[i + 1 :]))
    elif isinstance(node, Sequence):
        for i in range(len(node.items)):
            yield replace(node, items=node.items[:i] + node.items[i + 1 :])
        for i, item in enumerate(node.items):
            for smaller in _tree_variants(item):
                yield replace(node, items=(*node.items[:i], smaller, *node.items[i + 1 :]))


def _node_variants(node: Node_) -> Iterator[Node_]:
    for kind in ("flags", "attributes", "instances"):
        table: dict[str, Any] = getattr(node, kind)
        for name in list(table):
            smaller = node.copy()
            del getattr(smaller, kind)[name]
            yield smaller
    for name, flags in node.flags.items():
        for i in range(len(flags or ())):
            smaller = node.copy()
            elements = smaller.flags[name]
            assert elements is not None
            del elements[i]
            yield smaller
    for name, attributes in node.attributes.items():
        for key in list(attributes or ()):
            smaller = node.copy()
            values = smaller.attributes[name]
            assert values is not None
            del values[key]
            yield smaller
    for name, instances in node.instances.items():
        for i, instance in enumerate(instances or ()):
            smaller = node.copy()
            listed = smaller.instances[name]
            assert listed is not None
            del listed[i]
            yield smaller
            for key in list(instance):
                smaller = node.copy()
                listed = smaller.instances[name]
                assert listed is not None
                del listed[i][key]
                yield smaller


def _case_variants(case: Case) -> Iterator[Case]:
    if case.tags is not None:
        yield replace(case, tags=None)
    if case.doc.prefix or case.doc.suffix:
        yield replace(case, doc=Document(case.doc.root))
    for root in _tree_variants(case.doc.root):
        yield replace(case, doc=replace(case.doc, root=root))
    for node in _node_variants(case.node):
        yield replace(case, node=node)


def shrink(oracle: NfdEval, case: Case, kind: str, budget: int = 3000) -> Case:
    """Greedy: keep the first smaller case that still shows a disagreement of this kind."""
    cache = SpecCache()
    calls = 0
    progress = True
    while progress and calls < budget:
        progress = False
        for smaller in _case_variants(case):
            calls += 1
            if judge_one(oracle, smaller, cache).disagreement == kind:
                case, progress = smaller, True
                break
            if calls >= budget:
                break
    return case


# --------------------------------------------------------------------------------------------
# Reproducers


def _describe_nfd(nfd: NfdResult) -> str:
    verdicts = [[r.matched for r in s.rules] for s in nfd.sets]
    if nfd.error:
        return f"{verdicts}, then failed ({nfd.stage}): {nfd.error}"
    return f"{verdicts}"


def _describe_ours(ours: Ours) -> str:
    if ours.rejected is not None:
        return f"SpecError: {ours.rejected}"
    if ours.crash is not None:
        return ours.crash
    return str([[("error" if r.error else r.matched) for r in s.rules] for s in ours.sets])


def reproducer(oracle: NfdEval, case: Case, judgement: Judgement) -> str:
    text = render(case.doc)
    nfd = oracle.one(nfd_case(text, case.node, case.tags))
    ours = our_verdict(SpecCache(), text, case.node, case.tags)
    features = json.dumps(case.node.to_nfd(), sort_keys=True)
    digest = hashlib.sha256((text + features + repr(case.tags)).encode()).hexdigest()[:8]
    flags = {k: v for k, v in case.node.flags.items()}
    attributes = {k: v for k, v in case.node.attributes.items()}
    instances = {k: v or [] for k, v in case.node.instances.items()}
    expected: list[bool | str] = [r.matched for r in _flat(nfd.sets)]
    if nfd.stage == "rule":
        expected.append("error")
    lines = [
        f"=== NFD conformance disagreement: {judgement.disagreement} ({case.origin})",
        judgement.detail,
        "--- spec:",
        text.rstrip("\n"),
        f"--- features: {features}",
        f"--- tags: {list(case.tags) if case.tags else None}",
        f"--- NFD v0.18.3: {_describe_nfd(nfd)}",
        f"--- ours: {_describe_ours(ours)}",
        "--- as a unit test (tests/nfd/...):",
        f"def test_nfd_conformance_{digest}() -> None:",
    ]
    if nfd.stage == "spec":
        lines += [
            "    # NFD cannot decode this spec (sigs.k8s.io/yaml into its Go types)",
            "    with pytest.raises(SpecError):",
            f"        load_spec({text!r})",
        ]
    elif nfd.error and nfd.stage != "rule":
        lines += [f"    # NFD fails ({nfd.stage}): {nfd.error}", f"    spec = load_spec({text!r})"]
    else:
        lines += [
            f"    spec = load_spec({text!r})",
            f'    node = NodeFeatures.build("n", {flags!r}, {attributes!r}, {instances!r})',
            f"    verdict = evaluate(spec, node, tags={case.tags!r})",
            "    got = [",
            '        "error" if r.error else r.matched for s in verdict.sets for r in s.rules',
            "    ]",
            f"    assert got[: {len(expected)}] == {expected!r}"
            if nfd.error
            else f"    assert got == {expected!r}",
        ]
    return "\n".join(lines)
