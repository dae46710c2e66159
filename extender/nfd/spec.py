"""The image compatibility spec model and its parser.

Owns: reading an NFD image-compatibility spec (``v1alpha1``) from YAML or JSON bytes into
typed, immutable objects, with NFD's reading rules and our safety limits.

NFD parses specs with ``sigs.k8s.io/yaml``: YAML 1.1 (go-yaml v2) into generic values, then
JSON, then ``encoding/json`` into Go structs. Three consequences are reproduced here:

* plain scalars are typed the YAML 1.1 way (``y``/``yes``/``on`` are booleans, ``0200`` is
  octal 128, ``1_000`` is 1000, ``0x1F`` is 31);
* a number or boolean that lands in a *string* field is turned back into a string in Go's
  formatting (integers in decimal, floats with ``strconv.FormatFloat(f, 'g', -1, 32)``), so
  ``value: [0200]`` means ``"128"`` and ``value: [y]`` means ``"true"``;
* field names match case-insensitively and unknown fields are ignored.

Where we are stricter than NFD (a version other than ``v1alpha1``, ``varsTemplate``, weights
outside 0..100, null expressions, and the rule checks done in :mod:`.rules`) we raise
:class:`SpecError` with the path of the offending element. docs/semantics.md lists them.
Nothing here knows about Kubernetes, HTTP or registries.

It also owns the operator vocabulary, :class:`Op` and its groups, used by the engine, the
lint and the tests. Expressions keep their ``op`` as the string the document holds, so
that an unknown op is an error of the engine with a path, not of the parser.

The Go parsing helpers it relies on live in :mod:`.golang`. The module stays whole (over 500
lines) because the decoder and the model it builds are one concept: splitting them would put
each field's type and its reading rules in two places.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from extender.nfd.golang import (
    INT64_MAX,
    INT64_MIN,
    go_format_float32,
    json_fold,
    resolve_plain_scalar,
)

__all__ = [
    "ARTIFACT_TYPE",
    "COMPARISON_OPS",
    "DEFAULT_LIMITS",
    "MAX_WEIGHT",
    "NO_VALUE_OPS",
    "PRESENCE_OPS",
    "RANGE_OPS",
    "SET_OPS",
    "SINGLE_BOUND_OPS",
    "SPEC_MEDIA_TYPE",
    "SUPPORTED_VERSION",
    "VALUE_OPS",
    "VERSION_TYPE",
    "CompatibilitySet",
    "FeatureTerm",
    "GroupRule",
    "MatchAnyElem",
    "MatchExpression",
    "Op",
    "Spec",
    "SpecError",
    "SpecIssue",
    "SpecLimits",
    "iter_terms",
    "known_op",
    "parse_spec",
]

ARTIFACT_TYPE = "application/vnd.nfd.image-compatibility.v1alpha1"
SPEC_MEDIA_TYPE = "application/vnd.nfd.image-compatibility.spec.v1alpha1+yaml"
SUPPORTED_VERSION = "v1alpha1"
MAX_WEIGHT = 100
VERSION_TYPE = "version"  # the one ``type`` NFD knows: compare versions, not integers
_MAX_SHOWN_PATH = 160


class Op(StrEnum):
    """NFD's match operators, spelled as NFD spells them (case-sensitive)."""

    ANY = ""  # NFD's MatchAny: holds whether or not the element exists
    IN = "In"
    NOT_IN = "NotIn"
    IN_REGEXP = "InRegexp"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    GE = "Ge"
    LT = "Lt"
    LE = "Le"
    GT_LT = "GtLt"
    GE_LE = "GeLe"
    IS_TRUE = "IsTrue"
    IS_FALSE = "IsFalse"


# Ops that only ask whether the element exists.
PRESENCE_OPS = frozenset({Op.ANY, Op.EXISTS, Op.DOES_NOT_EXIST})
NO_VALUE_OPS = PRESENCE_OPS | {Op.IS_TRUE, Op.IS_FALSE}
SET_OPS = frozenset({Op.IN, Op.NOT_IN, Op.IN_REGEXP})
SINGLE_BOUND_OPS = frozenset({Op.GT, Op.GE, Op.LT, Op.LE})  # integer or version comparisons
RANGE_OPS = frozenset({Op.GT_LT, Op.GE_LE})
COMPARISON_OPS = SINGLE_BOUND_OPS | RANGE_OPS
VALUE_OPS = frozenset(Op) - PRESENCE_OPS  # they look at a value, so never match a flag


def known_op(text: str) -> Op | None:
    """The operator ``text`` names, None for an unknown one (ops are case-sensitive)."""
    try:
        return Op(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """A problem found in a spec, located by a path such as ``compatibilities[0].rules[1]``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """The spec cannot be used: NFD would reject it, or it breaks one of our documented rules."""

    def __init__(self, path: str, problem: str) -> None:
        if len(path) > _MAX_SHOWN_PATH:
            path = path[: _MAX_SHOWN_PATH // 2] + "..." + path[-_MAX_SHOWN_PATH // 2 :]
        self.issue = SpecIssue(path, problem)
        super().__init__(str(self.issue))

    @property
    def path(self) -> str:
        return self.issue.path

    @property
    def problem(self) -> str:
        return self.issue.message


@dataclass(frozen=True, slots=True)
class SpecLimits:
    """Bounds on what a spec may cost us to read and evaluate; a spec beyond them is rejected.

    Real specs hold a few sets and a few dozen rules. The bounds leave them ample room while
    keeping one spec's first evaluation over a cluster's node types short: every other pod's
    filter shares the server with it. ``max_nodes`` stops reading early, while the YAML is
    composed, so an oversized spec costs little before it is refused.
    """

    max_bytes: int = 1 << 20
    max_depth: int = 64
    max_aliases: int = 256
    # YAML nodes visited after alias expansion: stops "billion laughs" documents, and any
    # document far larger than the counts below allow, before it is fully read. A spec at
    # max_expressions in matchAny form takes about 12 nodes an expression, so this leaves it
    # room while a 5,000-rule document stops at a fraction of its length.
    max_nodes: int = 20_000
    max_sets: int = 64
    max_rules: int = 256  # in all sets together
    max_expressions: int = 1024  # in all rules together
    max_values: int = 1024  # in one expression


DEFAULT_LIMITS = SpecLimits()


@dataclass(frozen=True, slots=True)
class MatchExpression:
    """One NFD match expression: ``{op, value, type}``."""

    op: str
    value: tuple[str, ...] = ()
    type: str = ""

    def describe(self) -> str:
        """Short, stable text such as ``In [Intel,AMD]`` or ``Exists``."""
        text = self.op or '""'
        if self.value:
            text += " [" + ",".join(self.value) + "]"
        if self.type:
            text += f" ({self.type})"
        return text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        if self.value:
            out["value"] = list(self.value)
        if self.type:
            out["type"] = self.type
        return out


@dataclass(frozen=True, slots=True)
class FeatureTerm:
    """A ``matchFeatures`` term. ``match_expressions`` is None when absent (not ``{}``)."""

    feature: str
    match_expressions: tuple[tuple[str, MatchExpression], ...] | None = None
    match_name: MatchExpression | None = None


@dataclass(frozen=True, slots=True)
class MatchAnyElem:
    match_features: tuple[FeatureTerm, ...]


@dataclass(frozen=True, slots=True)
class GroupRule:
    name: str
    vars: tuple[tuple[str, str], ...] = ()
    match_features: tuple[FeatureTerm, ...] = ()
    match_any: tuple[MatchAnyElem, ...] = ()


@dataclass(frozen=True, slots=True)
class CompatibilitySet:
    rules: tuple[GroupRule, ...]
    weight: int = 0
    tag: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed spec. ``digest`` identifies its canonical form (``sha256:<hex>``)."""

    version: str
    compatibilities: tuple[CompatibilitySet, ...]
    digest: str
    warnings: tuple[SpecIssue, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return _canonical(self.version, self.compatibilities)


# --------------------------------------------------------------------------------------------
# YAML 1.1 scalars the go-yaml v2 way


@dataclass(frozen=True, slots=True)
class _Scalar:
    """A scalar as go-yaml v2 resolved it, with the text it was written as."""

    value: bool | int | float | str | None
    raw: str
    plain: bool


def _string_form(scalar: _Scalar) -> str | None:
    """The string sigs.k8s.io/yaml puts into a Go string field for this scalar, None for null."""
    value = scalar.value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_format_float32(value)
    return value


def _shown(scalar: _Scalar) -> str:
    return scalar.raw if scalar.plain else json.dumps(scalar.raw)


def _go_map_key(scalar: _Scalar) -> tuple[str, Any]:
    """The identity of a key in go-yaml's ``map[interface{}]interface{}`` (type and value)."""
    value = scalar.value
    if isinstance(value, float) and math.isnan(value):
        return ("float64", "NaN")
    return (type(value).__name__, value)


def _key_form(scalar: _Scalar, path: str) -> str:
    """How sigs.k8s.io/yaml turns a YAML mapping key into a JSON object key."""
    value = scalar.value
    if value is None:
        raise SpecError(path, "a mapping key cannot be null")
    if isinstance(value, int) and not isinstance(value, bool) and value > INT64_MAX:
        # go-yaml reads it as a uint64, a key type sigs.k8s.io/yaml does not convert.
        raise SpecError(path, f"mapping key {scalar.raw} is out of the int64 range")
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return {math.inf: ".inf", -math.inf: "-.inf"}.get(value, ".nan")
    form = _string_form(scalar)
    assert form is not None
    return form


# --------------------------------------------------------------------------------------------
# Bounded YAML composition


class _Loader(yaml.SafeLoader):
    """Composes nodes only; plain scalars are tagged for go-yaml v2 resolution, with limits."""

    PLAIN_TAG = "tag:image-compat,plain"

    def __init__(self, stream: str, limits: SpecLimits) -> None:
        super().__init__(stream)
        self._limits = limits
        self._depth = 0
        self._aliases = 0

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            return self.PLAIN_TAG
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, ScalarEvent) and event.tag == "!":
            # The non-specific tag "!": go-yaml reads the scalar as a string, whatever it
            # looks like; PyYAML would resolve it like a plain scalar.
            event.tag = "tag:yaml.org,2002:str"
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise SpecError("", f"more than {self._limits.max_aliases} YAML aliases")
        self._depth += 1
        try:
            if self._depth > self._limits.max_depth:
                raise SpecError("", f"YAML nesting deeper than {self._limits.max_depth}")
            node: Node | None = Composer.compose_node(self, parent, index)
            assert node is not None
            return node
        finally:
            self._depth -= 1


# Only these built-in scalar tags may be written explicitly; go-yaml v2 would accept a few
# more (e.g. !!binary), which no compatibility spec needs.
_EXPLICIT_SCALAR_TAGS = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:bool": bool,
    "tag:yaml.org,2002:null": type(None),
}
_MERGE_KEY = "<<"
# A "\ud800"-style escape leaves half a UTF-16 pair in the text: go-yaml refuses such escapes,
# and no UTF-8 encoder can write one (the digest is taken over UTF-8).
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(slots=True)
class _Mapping:
    """A YAML mapping after merges; keys in order, duplicates resolved (the later one wins).

    Keys that differ in YAML but not as JSON keys (``0200`` and ``"128"``) are an error.
    """

    items: dict[str, tuple[_Scalar, Any]]


class _Builder:
    """Turns composed nodes into scalars, lists and ``_Mapping``s, counting expanded nodes."""

    def __init__(self, limits: SpecLimits) -> None:
        self._limits = limits
        self._nodes = 0
        self._depth = 0

    def build(self, node: Node, path: str) -> Any:
        self._nodes += 1
        if self._nodes > self._limits.max_nodes:
            raise SpecError(
                path,
                f"more than {self._limits.max_nodes} YAML nodes after aliases: the spec is far "
                "larger than a compatibility spec needs to be",
            )
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        # Aliases can make the node graph deeper than the text (or cyclic): bound it here too.
        self._depth += 1
        try:
            if self._depth > self._limits.max_depth:
                raise SpecError(path, f"YAML nesting deeper than {self._limits.max_depth}")
            if isinstance(node, SequenceNode):
                return [self.build(child, f"{path}[{i}]") for i, child in enumerate(node.value)]
            if isinstance(node, MappingNode):
                mapping = _Mapping({})
                self._merge_into(mapping, node, path)
                return mapping
        finally:
            self._depth -= 1
        raise SpecError(path, f"unsupported YAML node {node.tag}")

    def _merge_into(self, mapping: _Mapping, node: MappingNode, path: str) -> None:
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise SpecError(path, "a mapping key must be a scalar")
            key = self._scalar(key_node, path)
            if key.plain and key.raw == _MERGE_KEY:
                # go-yaml v2 applies a merge where it appears: later keys override it.
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        raise SpecError(path, "a << merge needs a mapping or a list of mappings")
                    self._nodes += 1
                    self._depth += 1
                    try:
                        if self._depth > self._limits.max_depth:
                            raise SpecError(path, "YAML merges nested too deep")
                        self._merge_into(mapping, source, path)
                    finally:
                        self._depth -= 1
                continue
            name = _key_form(key, path)
            previous = mapping.items.get(name)
            if previous is not None and _go_map_key(previous[0]) != _go_map_key(key):
                # go-yaml keeps both (they differ in type), then sigs.k8s.io/yaml writes both
                # to one JSON key while ranging over a Go map: which one NFD sees is random.
                raise SpecError(
                    _join(path, name),
                    f"keys {_shown(previous[0])} and {_shown(key)} both mean {name!r} to NFD, "
                    "which then keeps one of them at random; write one key",
                )
            mapping.items[name] = (key, self.build(value_node, _join(path, name)))

    @staticmethod
    def _scalar(node: ScalarNode, path: str) -> _Scalar:
        if _SURROGATE.search(node.value):
            raise SpecError(path, "invalid Unicode character escape (a UTF-16 surrogate)")
        if node.tag == _Loader.PLAIN_TAG:
            return _Scalar(resolve_plain_scalar(node.value), node.value, True)
        expected = _EXPLICIT_SCALAR_TAGS.get(node.tag)
        if expected is None:
            raise SpecError(path, f"unsupported YAML tag {node.tag}")
        if expected is str:
            return _Scalar(node.value, node.value, False)
        value = resolve_plain_scalar(node.value)
        if isinstance(value, bool) and expected is not bool:
            value = str(value)
        if expected is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, expected):
            raise SpecError(path, f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}")
        return _Scalar(value, node.value, False)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Decoder:
    """Decodes the generic tree into the model with encoding/json's rules and our checks."""

    def __init__(self, limits: SpecLimits) -> None:
        self.limits = limits
        self.warnings: list[SpecIssue] = []
        self.rules = 0
        self.expressions = 0

    # -- shapes ----------------------------------------------------------------------------

    def fields(self, node: Any, path: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        """Object fields by case-insensitive name; None for null. Unknown fields warn."""
        if node is None or (isinstance(node, _Scalar) and node.value is None):
            return None
        if not isinstance(node, _Mapping):
            raise SpecError(path, f"expected an object, got {_describe(node)}")
        chosen: dict[str, tuple[str, Any]] = {}
        folded = {json_fold(name): name for name in names}
        for key in node.items:
            field_name = folded.get(json_fold(key))
            if field_name is None:
                self._check_marshallable(node.items[key][1], _join(path, key))
                self.warnings.append(SpecIssue(_join(path, key), "unknown field, ignored"))
                continue
            if key != field_name:
                self.warnings.append(
                    SpecIssue(_join(path, key), f"field name differs in case from {field_name!r}")
                )
            # encoding/json sees keys sorted (sigs.k8s.io/yaml marshals a Go map) and the last
            # case-variant of a field name wins.
            previous = chosen.get(field_name)
            if previous is None or key > previous[0]:
                chosen[field_name] = (key, node.items[key][1])
        return {name: value for name, (_, value) in chosen.items()}

    def _check_marshallable(self, node: Any, path: str) -> None:
        """json.Marshal fails on NaN/Inf anywhere, also in fields nobody reads."""
        if isinstance(node, _Scalar):
            if isinstance(node.value, float) and not math.isfinite(node.value):
                raise SpecError(path, f"{node.raw} cannot be represented in JSON")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                self._check_marshallable(child, f"{path}[{i}]")
        elif isinstance(node, _Mapping):
            for key, (_, child) in node.items.items():
                self._check_marshallable(child, _join(path, key))

    def string(self, node: Any, path: str, *, warn_unquoted: bool = False) -> str:
        if node is None:
            return ""
        if not isinstance(node, _Scalar):
            raise SpecError(path, f"expected a string, got {_describe(node)}")
        text = _string_form(node)
        if text is None:
            return ""
        if warn_unquoted and node.plain and not isinstance(node.value, str):
            if text != node.raw:
                message = f"unquoted {node.raw} is read as {text!r}; quote it to keep it as written"
            else:
                message = f"unquoted {node.raw} is a YAML {type(node.value).__name__}; quote it"
            self.warnings.append(SpecIssue(path, message))
        return text

    def integer(self, node: Any, path: str) -> int:
        if node is None or (isinstance(node, _Scalar) and node.value is None):
            return 0
        value = node.value if isinstance(node, _Scalar) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(path, f"expected an integer, got {_describe(node)}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise SpecError(path, f"{node.raw} cannot be represented in JSON")
            if not value.is_integer() or abs(value) >= 1e21:
                raise SpecError(path, f"expected an integer, got {node.raw}")
            value = int(value)
        if not INT64_MIN <= value <= INT64_MAX:
            raise SpecError(path, f"integer {node.raw} out of range")
        return value

    def items(self, node: Any, path: str) -> list[Any]:
        if node is None or (isinstance(node, _Scalar) and node.value is None):
            return []
        if not isinstance(node, list):
            raise SpecError(path, f"expected a list, got {_describe(node)}")
        return node

    def mapping(self, node: Any, path: str) -> dict[str, Any] | None:
        if node is None or (isinstance(node, _Scalar) and node.value is None):
            return None
        if not isinstance(node, _Mapping):
            raise SpecError(path, f"expected an object, got {_describe(node)}")
        return {key: value for key, (_, value) in node.items.items()}

    # -- the model -------------------------------------------------------------------------

    def spec(self, node: Any) -> tuple[str, tuple[CompatibilitySet, ...]]:
        top = self.fields(node, "", ("version", "compatibilities"))
        top = top or {}
        version = self.string(top.get("version"), "version")
        if version != SUPPORTED_VERSION:
            shown = repr(version) if version else "missing"
            raise SpecError("version", f"{shown}: only {SUPPORTED_VERSION!r} is supported")
        raw_sets = self.items(top.get("compatibilities"), "compatibilities")
        if len(raw_sets) > self.limits.max_sets:
            raise SpecError(
                "compatibilities", f"more than {self.limits.max_sets} sets (the limit per spec)"
            )
        sets = tuple(
            self.compat_set(raw, f"compatibilities[{i}]") for i, raw in enumerate(raw_sets)
        )
        return version, sets

    def compat_set(self, node: Any, path: str) -> CompatibilitySet:
        names = ("rules", "weight", "tag", "description")
        fields = self.fields(node, path, names) or {}
        weight = self.integer(fields.get("weight"), f"{path}.weight")
        if not 0 <= weight <= MAX_WEIGHT:
            raise SpecError(f"{path}.weight", f"{weight} is outside 0..{MAX_WEIGHT}")
        raw_rules = self.items(fields.get("rules"), f"{path}.rules")
        rules = tuple(self.rule(raw, f"{path}.rules[{i}]") for i, raw in enumerate(raw_rules))
        return CompatibilitySet(
            rules=rules,
            weight=weight,
            tag=self.string(fields.get("tag"), f"{path}.tag"),
            description=self.string(fields.get("description"), f"{path}.description"),
        )

    def rule(self, node: Any, path: str) -> GroupRule:
        self.rules += 1
        if self.rules > self.limits.max_rules:
            raise SpecError(path, f"more than {self.limits.max_rules} rules (the limit per spec)")
        names = ("name", "vars", "varsTemplate", "matchFeatures", "matchAny")
        fields = self.fields(node, path, names) or {}
        template = self.string(fields.get("varsTemplate"), f"{path}.varsTemplate")
        if template:
            raise SpecError(
                f"{path}.varsTemplate",
                "Go templates are not supported; use static vars for rule.matched",
            )
        raw_vars = self.mapping(fields.get("vars"), f"{path}.vars") or {}
        variables = tuple(
            (key, self.string(value, f"{path}.vars.{key}")) for key, value in raw_vars.items()
        )
        match_features = self.feature_matcher(fields.get("matchFeatures"), f"{path}.matchFeatures")
        match_any = tuple(
            self.match_any_elem(raw, f"{path}.matchAny[{i}]")
            for i, raw in enumerate(self.items(fields.get("matchAny"), f"{path}.matchAny"))
        )
        return GroupRule(
            name=self.string(fields.get("name"), f"{path}.name"),
            vars=variables,
            match_features=match_features,
            match_any=match_any,
        )

    def match_any_elem(self, node: Any, path: str) -> MatchAnyElem:
        fields = self.fields(node, path, ("matchFeatures",)) or {}
        return MatchAnyElem(
            self.feature_matcher(fields.get("matchFeatures"), f"{path}.matchFeatures")
        )

    def feature_matcher(self, node: Any, path: str) -> tuple[FeatureTerm, ...]:
        return tuple(self.term(raw, f"{path}[{i}]") for i, raw in enumerate(self.items(node, path)))

    def term(self, node: Any, path: str) -> FeatureTerm:
        fields = self.fields(node, path, ("feature", "matchExpressions", "matchName")) or {}
        raw_expressions = self.mapping(fields.get("matchExpressions"), f"{path}.matchExpressions")
        expressions = None
        if raw_expressions is not None:
            expressions = tuple(
                (key, self.expression(value, f"{path}.matchExpressions.{key}"))
                for key, value in raw_expressions.items()
            )
        match_name = None
        raw_name = fields.get("matchName")
        if raw_name is not None and not (isinstance(raw_name, _Scalar) and raw_name.value is None):
            match_name = self.expression(raw_name, f"{path}.matchName")
        return FeatureTerm(
            feature=self.string(fields.get("feature"), f"{path}.feature"),
            match_expressions=expressions,
            match_name=match_name,
        )

    def expression(self, node: Any, path: str) -> MatchExpression:
        self.expressions += 1
        if self.expressions > self.limits.max_expressions:
            raise SpecError(
                path, f"more than {self.limits.max_expressions} expressions (the limit per spec)"
            )
        fields = self.fields(node, path, ("op", "value", "type"))
        if fields is None:
            # NFD keeps a nil expression and panics when it evaluates it.
            raise SpecError(path, "expression is null; write {op: ...}")
        raw_values = self.items(fields.get("value"), f"{path}.value")
        if len(raw_values) > self.limits.max_values:
            raise SpecError(f"{path}.value", f"more than {self.limits.max_values} values")
        values = tuple(
            self.string(raw, f"{path}.value[{i}]", warn_unquoted=True)
            for i, raw in enumerate(raw_values)
        )
        return MatchExpression(
            op=self.string(fields.get("op"), f"{path}.op"),
            value=values,
            type=self.string(fields.get("type"), f"{path}.type"),
        )


def _describe(node: Any) -> str:
    if isinstance(node, _Mapping):
        return "an object"
    if isinstance(node, list):
        return "a list"
    if isinstance(node, _Scalar):
        kind = type(node.value).__name__ if node.value is not None else "null"
        return f"{kind} {node.raw!r}"
    return "nothing"


# --------------------------------------------------------------------------------------------
# Canonical form and digest


def _term_json(term: FeatureTerm) -> dict[str, Any]:
    out: dict[str, Any] = {"feature": term.feature}
    if term.match_expressions is not None:
        out["matchExpressions"] = {name: e.to_json() for name, e in term.match_expressions}
    if term.match_name is not None:
        out["matchName"] = term.match_name.to_json()
    return out


def _canonical(version: str, sets: tuple[CompatibilitySet, ...]) -> dict[str, Any]:
    return {
        "version": version,
        "compatibilities": [
            {
                "rules": [
                    {
                        "name": rule.name,
                        "vars": dict(rule.vars),
                        "matchFeatures": [_term_json(t) for t in rule.match_features],
                        "matchAny": [
                            {"matchFeatures": [_term_json(t) for t in elem.match_features]}
                            for elem in rule.match_any
                        ],
                    }
                    for rule in compat.rules
                ],
                "weight": compat.weight,
                "tag": compat.tag,
                "description": compat.description,
            }
            for compat in sets
        ],
    }


def _digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Public entry point


def parse_spec(data: bytes | str, *, limits: SpecLimits = DEFAULT_LIMITS) -> Spec:
    """Parse a spec document (YAML or JSON). Raises :class:`SpecError` with a path."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limits.max_bytes:
        raise SpecError("", f"document is {size} bytes, over the {limits.max_bytes}-byte limit")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise SpecError("", f"not UTF-8 text: {err.reason} at byte {err.start}") from None
    else:
        text = data
    loader: _Loader | None = None
    try:
        # The reader rejects unprintable characters already while it is constructed.
        loader = _Loader(text, limits)
        # Like go-yaml v2, only the first document of a stream counts.
        node = loader.get_node() if loader.check_node() else None
    except SpecError:
        raise
    except yaml.YAMLError as err:
        raise SpecError("", f"invalid YAML: {_yaml_problem(err)}") from None
    except RecursionError:
        raise SpecError("", "YAML nesting too deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    tree = _Builder(limits).build(node, "") if node is not None else None
    decoder = _Decoder(limits)
    version, sets = decoder.spec(tree)
    return Spec(
        version=version,
        compatibilities=sets,
        digest=_digest(_canonical(version, sets)),
        warnings=tuple(decoder.warnings),
    )


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def iter_terms(rule: GroupRule) -> Iterator[tuple[str, FeatureTerm]]:
    """Every term of a rule with its path suffix: matchFeatures first, then matchAny."""
    for i, term in enumerate(rule.match_features):
        yield f"matchFeatures[{i}]", term
    for j, elem in enumerate(rule.match_any):
        for i, term in enumerate(elem.match_features):
            yield f"matchAny[{j}].matchFeatures[{i}]", term
