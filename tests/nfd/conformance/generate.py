"""Seeded generators of compatibility specs (as YAML text) and node feature sets.

Two sources of cases:

* :func:`random_scenarios`: a random node, a spec guided by that node (so rules match often
  enough to matter) written with random YAML scalar forms, field-name case variants, vars
  back-references, tags and the odd malformed piece; each spec is evaluated on the node and on
  a few mutations of it, under several ``--tags`` selections.
* :func:`grid_cases`: one expression on one feature, for every op x {element absent, match,
  no match, error} x {flag, attribute, instance, multi-type feature}, plus matchName and
  ``type: version``. These guarantee the coverage that random cases only make likely; the
  suite checks NFD's verdicts on them against :data:`ATTAINABLE`.

Everything is a pure function of the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from extender.nfd.spec import NO_VALUE_OPS, PRESENCE_OPS, SET_OPS, SINGLE_BOUND_OPS, Op
from tests.nfd.conformance.yamltext import (
    Document,
    Mapping,
    Node,
    Raw,
    Scalar,
    Sequence,
    double_quoted,
    plain_ok,
)

OPS = tuple(Op)  # in declaration order: the weights in _aimed_op follow it
BAD_OPS = ("in", "exists", "Equals", "IN", "isTrue", "gt")

# Feature name -> the types it has on a node: F(lags), A(ttributes), I(nstances).
UNIVERSE = {
    "kernel.loadedmodule": "F",
    "cpu.cpuid": "FA",
    "cpu.model": "A",
    "kernel.version": "A",
    "system.osrelease": "A",
    "pci.device": "I",
    "network.device": "I",
    "fake.multi": "FAI",
    "usb.device": "I",
}
MISSING = ("local.label", "foo.bar", "nodot", "rule.unknown", "")
CASE_VARIANTS = {
    "kernel.loadedmodule": ("Kernel.LoadedModule", "KERNEL.LOADEDMODULE"),
    "cpu.cpuid": ("CPU.cpuid", "cpu.CPUID"),
    "cpu.model": ("Cpu.Model",),
    "kernel.version": ("kernel.Version",),
    "system.osrelease": ("system.osRelease", "System.OSRelease"),
    "pci.device": ("PCI.device",),
    "fake.multi": ("Fake.Multi",),
    "rule.matched": ("Rule.Matched", "rule.MATCHED"),
}
KEYS = ("a", "b", "c", "A", "vfio_pci", "vendor", "class", "1", "10", "true", "0200", "128")
VAR_KEYS = ("a", "v", "w", "A", "vendor", "1")
NODE_VALUES = (
    "1",
    "2",
    "5",
    "10",
    "-3",
    "+5",
    "007",
    "0200",
    "128",
    "5.10",
    "5.1",
    "1.0",
    "3a",
    "0x1F",
    "31",
    "",
    "x",
    "abc",
    "true",
    "false",
    "True",
    "y",
    "on",
    "1.2.3",
    "v1.2.3",
    "1.10.0",
    "5.15.0-91-generic",
    "6.8.0-1015-aws",
    "4.18.0-553.el8_10.x86_64",
    "1.2.3.4",
    "-11",
    "1.2.3-05",
    "1.2.3+build.7",
    "9223372036854775807",
    "9223372036854775808",
    "10de",
    "0302",
    "Intel",
    "é",
)
# Extra spellings only the spec side sees: YAML 1.1 coerces them when written unquoted.
SPEC_ONLY_VALUES = (
    "1_000",
    "0x1F",
    "0o17",
    "0b101",
    "1e3",
    ".5",
    "5.",
    "~",
    "null",
    "Null",
    "yes",
    "No",
    "ON",
    "off",
    "Y",
    "n",
    ".inf",
    "-.Inf",
    "0.1",
    "1.5e-7",
    "123456789",
    "2.0",
    "-0",
    "+12",
    "0777",
    "08",
)
# RE2 as Go's regexp package reads it: valid ones (some are easy to get wrong in other
# RE2 front ends) and invalid ones.
VALID_REGEXES = (
    "^1",
    "a",
    "^v?1\\.",
    "[0-9]+",
    "^(true|false)$",
    "",
    ".*",
    "^$",
    "(?i)INTEL",
    "\\d",
    "x{2,}",
    "[[:alpha:]]",
    "\\pL",
    "\\p{Greek}",
    "(?P<n>a)",
    "(?<n>a)",
    "\\z",
    "\\Q.\\E",
    "é",
    "(?s).",
    "^\\x{41}",
    "\\b1\\b",
    "(?U)a+",
    "[^\\x00-\\x7F]",
    "\\v",
    "a{1000}",
    "(?m)^1$",
    "[\\d-z]",
    "\\C",
)
INVALID_REGEXES = (
    "(",
    "a**",
    "[z-a]",
    "a{1001}",
    "a{2,1}",
    "(a)\\1",
    "(?=a)",
    "a++",
    "\\8",
    "\\Z",
    "[[:word:]]",
    "(?P=n)",
    "x{1001,}",
)
# More patterns for the regexp dialect cases: Unicode classes (Go looks their names up
# loosely, RE2 exactly), case folding, Perl classes.
REGEX_EXTRAS = (
    "(?i)k",
    "(?i)s",
    "(?i)\u03c3",
    "\\w+",
    "\\W",
    "\\s",
    "\\S",
    "[[:space:]]",
    "[[:upper:]]",
    "(?i)[[:upper:]]",
    "(?i)\\p{Lu}",
    "^.$",
    "(?s)^.$",
    "\\Bx",
    "(?i)[k]",
    "(?i)[^k]",
    "\\p{letter}",
    "\\p{LC}",
    "[\\p{LC}1]",
    "\\P{LC}",
    "\\p{ascii}",
    "[^\\p{ASCII}]",
    "\\p{^Greek}",
    "\\pl",
    "(?i)é",
    "\\x{212A}",
    "(?m)^y$",
    "$",
    "[\\x{0}-\\x{7f}]",
    "\\p{Cased_Letter}",
    "\\p{greek}",
    "\\p{Any}",
    "\\p{Old_Italic}",
    "\\p{Cn}",
)
REGEX_PROBES = (
    "",
    "a",
    "A",
    "1",
    "10",
    "true",
    "é",
    "É",
    "k",
    "K",
    "\u212a",
    "\u017f",
    "S",
    "x\ny",
    "y\n",
    "Intel",
    "v1.2",
    "aaa",
    "Σ",
    "ς",
    "\t",
    " ",
    "x_y",
    "Ω",
    "\U0001f600",
)
NAMES = ("r1", "r2", "gpu", "0200", "y", "5.10", "null", "", "~", "1e3", "Rule One", "r1")
TAGS = ("a", "b", "A", "", "prefered", "1", "y")
TAG_SELECTIONS: tuple[tuple[str, ...] | None, ...] = (
    *([None] * 25),
    ("a",),
    ("a", "b"),
    ("",),
    ("A",),
    ("prefered", "b"),
    ("1", "true"),
)


# --------------------------------------------------------------------------------------------
# Node feature sets


@dataclass
class Node_:  # noqa: N801 - "Node" is the YAML node type
    """A node's features; ``None`` containers model Go's ``elements: null``."""

    flags: dict[str, list[str] | None] = field(default_factory=dict)
    attributes: dict[str, dict[str, str] | None] = field(default_factory=dict)
    instances: dict[str, list[dict[str, str]] | None] = field(default_factory=dict)

    def to_nfd(self) -> dict[str, Any]:
        """NodeFeature ``spec.features`` JSON, as nfd-eval reads it."""
        return {
            "flags": {
                k: {"elements": None if v is None else {n: {} for n in v}}
                for k, v in self.flags.items()
            },
            "attributes": {k: {"elements": v} for k, v in self.attributes.items()},
            "instances": {
                k: {"elements": None if v is None else [{"attributes": i} for i in v]}
                for k, v in self.instances.items()
            },
        }

    def copy(self) -> Node_:
        return Node_(
            {k: None if v is None else list(v) for k, v in self.flags.items()},
            {k: None if v is None else dict(v) for k, v in self.attributes.items()},
            {k: None if v is None else [dict(i) for i in v] for k, v in self.instances.items()},
        )

    def names(self) -> set[str]:
        return set(self.flags) | set(self.attributes) | set(self.instances)

    def keys_of(self, feature: str) -> list[str]:
        keys = list(self.flags.get(feature) or ())
        keys += list(self.attributes.get(feature) or ())
        for instance in self.instances.get(feature) or ():
            keys += list(instance)
        return keys

    def values_of(self, feature: str, key: str) -> list[str]:
        values = []
        attributes = self.attributes.get(feature) or {}
        if key in attributes:
            values.append(attributes[key])
        for instance in self.instances.get(feature) or ():
            if key in instance:
                values.append(instance[key])
        return values


def _pick_keys(rng: random.Random, low: int, high: int) -> list[str]:
    return rng.sample(KEYS, rng.randint(low, high))


def _attributes(rng: random.Random, low: int = 0, high: int = 5) -> dict[str, str]:
    return {k: rng.choice(NODE_VALUES) for k in _pick_keys(rng, low, high)}


def random_node(rng: random.Random) -> Node_:
    node = Node_()
    for name, kinds in UNIVERSE.items():
        if rng.random() < 0.12 or (name == "usb.device" and rng.random() < 0.7):
            continue
        if "F" in kinds:
            node.flags[name] = None if rng.random() < 0.03 else _pick_keys(rng, 0, 5)
        if "A" in kinds:
            node.attributes[name] = None if rng.random() < 0.03 else _attributes(rng)
        if "I" in kinds:
            count = rng.choice((0, 1, 1, 2, 2, 3))
            node.instances[name] = (
                None if rng.random() < 0.02 else [_attributes(rng, 0, 4) for _ in range(count)]
            )
    roll = rng.random()
    if roll < 0.04:
        node.attributes["rule.matched"] = _attributes(rng, 1, 3)
    elif roll < 0.05:
        node.attributes["rule.matched"] = None
    elif roll < 0.06:
        node.flags["rule.matched"] = _pick_keys(rng, 1, 2)
    if rng.random() < 0.03:
        # Feature names are lower-case by construction; an upper-case one is never found.
        node.attributes["CPU.model"] = _attributes(rng, 1, 3)
    return node


def mutate_node(rng: random.Random, node: Node_) -> Node_:
    out = node.copy()
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        names = sorted(out.names())
        if not names:
            break
        name = rng.choice(names)
        if roll < 0.15:
            out.flags.pop(name, None)
            out.attributes.pop(name, None)
            out.instances.pop(name, None)
        elif roll < 0.4 and out.attributes.get(name):
            attributes = out.attributes[name]
            assert attributes is not None
            key = rng.choice(sorted(attributes))
            if rng.random() < 0.5:
                del attributes[key]
            else:
                attributes[key] = rng.choice(NODE_VALUES)
        elif roll < 0.55 and out.flags.get(name):
            flags = out.flags[name]
            assert flags is not None
            flags.remove(rng.choice(flags))
        elif roll < 0.7 and name in out.flags and out.flags[name] is not None:
            flags = out.flags[name]
            assert flags is not None
            key = rng.choice(KEYS)
            if key not in flags:
                flags.append(key)
        elif roll < 0.85 and out.instances.get(name):
            instances = out.instances[name]
            assert instances is not None
            index = rng.randrange(len(instances))
            if rng.random() < 0.5:
                del instances[index]
            else:
                instances[index] = _attributes(rng, 0, 4)
        elif name in out.attributes and out.attributes[name] is not None:
            attributes = out.attributes[name]
            assert attributes is not None
            attributes[rng.choice(KEYS)] = rng.choice(NODE_VALUES)
        else:
            out.instances.setdefault(name, [])
            instances = out.instances[name]
            if instances is not None:
                instances.append(_attributes(rng, 1, 4))
    return out


# --------------------------------------------------------------------------------------------
# Scalars in their written forms


@dataclass
class _TaggedRate:
    """How often :func:`written` emits an explicitly tagged scalar (random specs only)."""

    rate: float = 0.0


_TAGGED = _TaggedRate()


def written(rng: random.Random, text: str, quote_bias: float = 0.5) -> Scalar | Raw:
    """``text`` as a YAML scalar: plain (so YAML 1.1 may retype it), quoted, or tagged."""
    if _TAGGED.rate and rng.random() < _TAGGED.rate:
        return _tagged(rng, text)
    roll = rng.random()
    if roll < 1 - quote_bias:
        return Scalar(text, "plain")
    return Scalar(text, "double" if roll < 1 - quote_bias / 2 else "single")


def _tagged(rng: random.Random, text: str) -> Scalar | Raw:
    """An explicitly tagged scalar: ``!!str 0200`` stays a string, ``!!int "7"`` is 7."""
    plain = text if plain_ok(text) else double_quoted(text)
    tag = rng.choice(("!!str", "!!str", "!!int", "!!float", "!!bool", "!!null", "!"))
    return Raw(f"{tag} {rng.choice((plain, double_quoted(text)))}")


def field_name(rng: random.Random, name: str, odd: float = 0.04) -> Scalar:
    """A field name, occasionally in another case (encoding/json matches case-insensitively)."""
    if rng.random() >= odd:
        return Scalar(name)
    variants = [name.lower(), name.upper(), name[0].upper() + name[1:]]
    if "s" in name:
        # U+017F LATIN SMALL LETTER LONG S: encoding/json folds it to "s".
        variants.append(name.replace("s", "\u017f", 1))
    if "k" in name:
        variants.append(name.replace("k", "\u212a", 1))  # KELVIN SIGN folds to "k"
    return Scalar(rng.choice(variants), rng.choice(("plain", "double")))


def mapping(*items: tuple[Scalar | Raw, Node], flow: bool = False) -> Mapping:
    return Mapping(tuple(items), flow)


def seq(*items: Node, flow: bool = False) -> Sequence:
    return Sequence(tuple(items), flow)


# --------------------------------------------------------------------------------------------
# Specs


@dataclass
class _SpecState:
    node: Node_
    rng: random.Random
    faults_left: int = 0  # malformed pieces this spec may still get
    vars_written: list[str] = field(default_factory=list)

    def fault(self, weight: float = 1.0) -> bool:
        """Whether to put a malformed piece here (only in specs chosen to have one)."""
        if self.faults_left and self.rng.random() < 0.15 * weight:
            self.faults_left -= 1
            return True
        return False


def _value_for(rng: random.Random, state: _SpecState, feature: str, key: str) -> str:
    existing = state.node.values_of(feature, key)
    if existing and rng.random() < 0.6:
        return rng.choice(existing)
    return rng.choice(NODE_VALUES + SPEC_ONLY_VALUES) if rng.random() < 0.8 else rng.choice(KEYS)


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?[0-9]{1,18}", text))


def _integer_near(rng: random.Random, seed_text: str | None, state: _SpecState) -> str:
    if state.fault():
        return rng.choice(("x", "1.0", "", "0x1F", "9223372036854775808", "1e3", " 1"))
    base = int(seed_text) if seed_text is not None and _is_int(seed_text) else 5
    # Written forms YAML 1.1 reads as the same integer: 0o-less octal and underscores too.
    text = str(base + rng.randint(-2, 2))
    if rng.random() < 0.1:
        text = rng.choice((text, "+" + text.lstrip("+"), "0" + text if text[0] != "-" else text))
    return text


def _version_near(rng: random.Random, seed_text: str | None, state: _SpecState) -> str:
    if state.fault():
        return rng.choice(("1.2.3.4", "x", "-1", "1.2.3-05", "", "1.2_3", "4.18.0-553.el8_10"))
    if seed_text and rng.random() < 0.6:
        match = re.match(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", seed_text)
        if match:
            parts = [int(p or 0) for p in match.groups()]
            index = rng.randrange(3)
            parts[index] += rng.choice((-1, 0, 1))
            parts = [max(p, 0) for p in parts]
            return ".".join(str(p) for p in parts[: rng.randint(1, 3)])
    return rng.choice(
        ("1.2.3", "1.10", "5.15", "6", "v1.2.3", "5.15.0-91-generic", "1.2.3+b", "1.2-rc.1")
    )


def expression_node(
    rng: random.Random,
    op: str,
    values: list[str] | None,
    value_type: str | None,
    *,
    flow: bool | None = None,
) -> Node:
    """``{op, value, type}`` with written forms picked at random."""
    items: list[tuple[Scalar, Node]] = [(field_name(rng, "op"), written(rng, op, quote_bias=0.3))]
    if values is not None:
        value_items = tuple(written(rng, v) for v in values)
        items.append((field_name(rng, "value"), Sequence(value_items, rng.random() < 0.7)))
    if value_type is not None:
        items.append((field_name(rng, "type"), written(rng, value_type, quote_bias=0.3)))
    if rng.random() < 0.5:
        rng.shuffle(items)
    return Mapping(tuple(items), rng.random() < 0.6 if flow is None else flow)


def _aimed_op(rng: random.Random, state: _SpecState, feature: str, key: str | None) -> str:
    """An op that often holds on the guiding node, so that rules match often enough."""
    if key is None or rng.random() < 0.2:
        return rng.choices(OPS, weights=(3, 12, 8, 6, 10, 6, 5, 4, 4, 4, 4, 4, 5, 4))[0]
    values = state.node.values_of(feature, key)
    if key not in state.node.keys_of(feature):
        return rng.choice((Op.DOES_NOT_EXIST, Op.DOES_NOT_EXIST, Op.EXISTS, Op.IN, Op.NOT_IN))
    if not values:  # a flag
        return rng.choice((Op.EXISTS, Op.EXISTS, Op.ANY, Op.DOES_NOT_EXIST, Op.IN))
    value = values[0]
    if value in ("true", "false"):
        return rng.choice((Op.IS_TRUE, Op.IS_FALSE, Op.IN))
    if _is_int(value):
        return rng.choice((Op.GT, Op.GE, Op.LT, Op.LE, Op.GT_LT, Op.GE_LE, Op.IN, Op.NOT_IN))
    return rng.choice((Op.IN, Op.NOT_IN, Op.IN_REGEXP, Op.EXISTS, Op.GT, Op.GE))


def _aimed_expression(
    rng: random.Random, state: _SpecState, feature: str, key: str
) -> tuple[str, list[str] | None, str | None]:
    """An expression meant to hold for ``key`` on the guiding node (YAML may retype values)."""
    if key not in state.node.keys_of(feature):
        return rng.choice(((Op.DOES_NOT_EXIST, None, None), (Op.ANY, None, None)))
    values = state.node.values_of(feature, key)
    if not values:  # only a flag
        return rng.choice(((Op.EXISTS, None, None), (Op.ANY, None, None), (Op.EXISTS, [], None)))
    value = rng.choice(values)
    choices: list[tuple[str, list[str] | None, str | None]] = [
        (Op.EXISTS, None, None),
        (Op.IN, [value, rng.choice(NODE_VALUES)], None),
        (Op.NOT_IN, [rng.choice(NODE_VALUES) + "~"], None),
        (Op.IN_REGEXP, ["^" + re.escape(value) + "$"], None),
    ]
    if value in ("true", "false"):
        choices.append((Op.IS_TRUE if value == "true" else Op.IS_FALSE, None, None))
    if _is_int(value):
        number = int(value)
        low, high = str(number - rng.randint(1, 3)), str(number + rng.randint(1, 3))
        choices += [
            (Op.GT, [low], None),
            (Op.GE, [value], None),
            (Op.LT, [high], None),
            (Op.LE, [str(number)], None),
            (Op.GT_LT, [low, high], None),
            (Op.GE_LE, [str(number), high], None),
        ]
    version = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-[0-9A-Za-z.-]+)?", value)
    if version:
        parts = [int(p or 0) for p in version.groups()]
        below = ".".join(str(p) for p in (parts[0], parts[1], max(parts[2] - 1, 0)))
        above = f"{parts[0]}.{parts[1] + 1}"
        choices += [
            (Op.GE, [below], "version"),
            (Op.LT, [above], "version"),
            (Op.GE_LE, [below, above], "version"),
        ]
    return rng.choice(choices)


def _random_expression(
    rng: random.Random, state: _SpecState, feature: str, key: str | None
) -> Node:
    if state.fault(0.1):
        return Scalar(rng.choice(("null", "~", "")), "plain")  # a null expression
    if key is not None and rng.random() < 0.6:
        return expression_node(rng, *_aimed_expression(rng, state, feature, key))
    op = rng.choice(BAD_OPS) if state.fault(0.2) else _aimed_op(rng, state, feature, key)
    seed = _value_for(rng, state, feature, key) if key is not None else rng.choice(KEYS)
    value_type: str | None = None
    values: list[str] | None
    odd_count = state.fault(0.3)
    if op in NO_VALUE_OPS or op in BAD_OPS:
        values = None if rng.random() < 0.8 else []
        if odd_count:
            values = [seed]
    elif op in SET_OPS:
        count = rng.choice((1, 1, 2, 3)) if not odd_count else 0
        if op == Op.IN_REGEXP:
            pool = [re.escape(seed), "^" + re.escape(seed) + "$", *VALID_REGEXES]
            values = [rng.choice(pool) for _ in range(count)]
            if values and state.fault(0.3):
                values[rng.randrange(count)] = rng.choice(INVALID_REGEXES)
        else:
            aim = rng.random() < 0.6
            first = seed if aim == (op == Op.IN) else rng.choice(NODE_VALUES + SPEC_ONLY_VALUES)
            values = [first] + [rng.choice(NODE_VALUES + SPEC_ONLY_VALUES) for _ in range(3)]
            values = values[:count]
    else:
        count = 1 if op in SINGLE_BOUND_OPS else 2
        if odd_count:
            count = rng.choice((0, 3) if count == 1 else (0, 1, 3))
        if rng.random() < 0.3:
            value_type = "version"
            values = [_version_near(rng, seed, state) for _ in range(count)]
            if count == 2 and rng.random() < 0.8:
                values.sort(key=lambda v: [int(p) for p in re.findall(r"\d+", v)[:3]])
        else:
            values = [_integer_near(rng, seed, state) for _ in range(count)]
            if count == 2 and not state.fault(0.5):
                values.sort(key=lambda v: int(v) if _is_int(v) else 0)
                if values[0] == values[1] and _is_int(values[1]):
                    values[1] = str(int(values[1]) + 1)
    if state.fault(0.2):
        value_type = rng.choice(("Version", "int", "VERSION", "semver"))
    elif value_type is None and rng.random() < 0.05:
        value_type = rng.choice(("version", ""))
    if values is not None and state.fault(0.2):
        # A scalar where a list belongs, or a nested list: NFD cannot decode these.
        return mapping(
            (Scalar("op"), Scalar(op or '""', "plain" if op else "double")),
            (Scalar("value"), rng.choice((Scalar("x"), Raw("[[a]]"), Raw("{a: b}")))),
            flow=True,
        )
    return expression_node(rng, op, values, value_type)


def _feature_for_term(rng: random.Random, state: _SpecState) -> str:
    roll = rng.random()
    if roll < 0.1 and state.vars_written:
        name = "rule.matched"
    elif roll < 0.16:
        name = rng.choice(MISSING)
    else:
        present = sorted(state.node.names() & set(UNIVERSE))
        name = (
            rng.choice(present) if present and rng.random() < 0.85 else rng.choice(list(UNIVERSE))
        )
    if name in CASE_VARIANTS and rng.random() < 0.12:
        name = rng.choice(CASE_VARIANTS[name])
    return name


def _name_expression(rng: random.Random, state: _SpecState, feature: str) -> Node:
    """A matchName expression, usually about names the guiding node has."""
    names = state.node.keys_of(feature)
    if not names or rng.random() < 0.25:
        return _random_expression(rng, state, feature, None)
    name = rng.choice(names)
    op, values = rng.choice(
        (
            (Op.IN, [name]),
            (Op.IN, [name, rng.choice(KEYS)]),
            (Op.NOT_IN, [name]),
            (Op.IN_REGEXP, ["^" + re.escape(name)]),
            (Op.EXISTS, None),
            (Op.DOES_NOT_EXIST, None),
            (Op.IS_TRUE, None),
        )
    )
    return expression_node(rng, op, values, None)


def _term(rng: random.Random, state: _SpecState) -> Node:
    feature = _feature_for_term(rng, state)
    lookup = feature.lower()
    items: list[tuple[Scalar, Node]] = [(field_name(rng, "feature"), written(rng, feature, 0.2))]
    roll = rng.random()
    with_expressions = roll < 0.8
    with_name = roll >= 0.7 or rng.random() < 0.03
    if with_expressions:
        if rng.random() < 0.03:
            items.append((field_name(rng, "matchExpressions"), Scalar("null")))
        else:
            count = rng.choice((0, 1, 1, 1, 2, 2, 3)) if rng.random() > 0.03 else 0
            if lookup == "rule.matched":
                known = state.vars_written + list(state.node.keys_of("rule.matched"))
            else:
                known = state.node.keys_of(lookup)
            entries: dict[str, Node] = {}
            for _ in range(count):
                key = rng.choice(known) if known and rng.random() < 0.7 else rng.choice(KEYS)
                entries[key] = _random_expression(rng, state, lookup, key)
            expressions = Mapping(
                tuple((written(rng, k, 0.3), v) for k, v in entries.items()),
                flow=rng.random() < 0.15,
            )
            items.append((field_name(rng, "matchExpressions"), expressions))
    if with_name:
        items.append((field_name(rng, "matchName"), _name_expression(rng, state, lookup)))
    return Mapping(tuple(items))


def _matcher(rng: random.Random, state: _SpecState, low: int, high: int) -> Sequence:
    return Sequence(tuple(_term(rng, state) for _ in range(rng.randint(low, high))))


def _rule(rng: random.Random, state: _SpecState) -> Node:
    items: list[tuple[Scalar, Node]] = []
    if rng.random() < 0.95:
        items.append((field_name(rng, "name"), written(rng, rng.choice(NAMES), 0.4)))
    if rng.random() < 0.3:
        keys = rng.sample(VAR_KEYS, rng.randint(1, 2))
        values = tuple((written(rng, k, 0.3), written(rng, rng.choice(NODE_VALUES))) for k in keys)
        items.append((field_name(rng, "vars"), Mapping(values, rng.random() < 0.5)))
    roll = rng.random()
    if roll < 0.85:
        items.append((field_name(rng, "matchFeatures"), _matcher(rng, state, 1, 2)))
    if roll > 0.7 or roll < 0.12:
        elements = tuple(
            mapping((field_name(rng, "matchFeatures"), _matcher(rng, state, 1, 2)))
            for _ in range(rng.randint(1, 3))
        )
        items.append((field_name(rng, "matchAny"), Sequence(elements)))
    if state.fault(0.05):
        items.append((Scalar("varsTemplate"), Scalar("{{ range .cpu.model }}x=y{{ end }}")))
    if rng.random() < 0.01:
        items.append((Scalar("labels"), mapping((Scalar("ignored"), Scalar("yes")))))
    # vars are written after the rule is evaluated: only later rules can read them.
    for key, value in items:
        if key.text.lower() == "vars" and isinstance(value, Mapping):
            state.vars_written += [k.text for k, _ in value.items]
    if rng.random() < 0.3:
        rng.shuffle(items)
    return Mapping(tuple(items))


def _set(rng: random.Random, state: _SpecState) -> Node:
    items: list[tuple[Scalar, Node]] = []
    rules = Sequence(tuple(_rule(rng, state) for _ in range(rng.choice((1, 1, 2, 2, 3)))))
    if state.fault(0.1):
        items.append((Scalar("rules"), rng.choice((Raw("{}"), Scalar("x"), Scalar("null")))))
    elif rng.random() < 0.99:
        items.append((field_name(rng, "rules"), rules))
    if rng.random() < 0.5:
        if state.fault(0.2):
            weight: Scalar = rng.choice(
                (Scalar("10", "double"), Scalar("150"), Scalar("-1"), Scalar("7.5"), Scalar("x"))
            )
        elif rng.random() < 0.1:
            # YAML 1.1 numbers that are whole: NFD reads them as integers.
            weight = Scalar(rng.choice(("5.0", "1e1", "0x0A", "010", "~", "1_0", "+7")))
        else:
            weight = Scalar(str(rng.randint(0, 100)))
        items.append((field_name(rng, "weight"), weight))
    if rng.random() < 0.6:
        items.append((field_name(rng, "tag"), written(rng, rng.choice(TAGS), 0.4)))
    if rng.random() < 0.2:
        items.append((field_name(rng, "description"), written(rng, rng.choice(NAMES), 0.4)))
    if rng.random() < 0.3:
        rng.shuffle(items)
    return Mapping(tuple(items))


def random_spec(rng: random.Random, node: Node_, faulty: float = 0.3) -> Document:
    _TAGGED.rate = 0.004
    try:
        return _random_spec(rng, node, faulty)
    finally:
        _TAGGED.rate = 0.0


def _random_spec(rng: random.Random, node: Node_, faulty: float) -> Document:
    state = _SpecState(node, rng, faults_left=1 if rng.random() < faulty else 0)
    items: list[tuple[Scalar, Node]] = []
    if state.fault(0.1):
        if rng.random() < 0.5:
            items.append((Scalar("version"), written(rng, rng.choice(("v1", "V1alpha1", "1.0")))))
    else:
        items.append((field_name(rng, "version", 0.03), written(rng, "v1alpha1", 0.3)))
    sets = Sequence(tuple(_set(rng, state) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))))
    if state.fault(0.05):
        items.append((Scalar("compatibilities"), rng.choice((Scalar("5"), Raw("{}")))))
    elif rng.random() < 0.99:
        items.append((field_name(rng, "compatibilities", 0.03), sets))
    if rng.random() < 0.02:
        items.append((Scalar("unknownField"), Scalar("ignored")))
    if rng.random() < 0.2:
        rng.shuffle(items)
    return _document_quirks(rng, Document(Mapping(tuple(items))))


def _document_quirks(rng: random.Random, doc: Document) -> Document:
    if rng.random() < 0.01:
        doc = Document(doc.root, line_end="\r\n")
    if rng.random() < 0.005:
        doc = Document(doc.root, line_end=doc.line_end, bom=True)
    roll = rng.random()
    if roll < 0.01:
        return replace(doc, prefix="---\n")
    if roll < 0.015:
        return replace(doc, suffix="---\nversion: v2\n")
    if roll < 0.02:
        return replace(doc, prefix="# a comment\n%YAML 1.1\n---\n")
    if roll < 0.025:
        return replace(doc, suffix="...\n")
    return doc


# --------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    """One spec evaluated on one node with one --tags selection."""

    doc: Document
    node: Node_
    tags: tuple[str, ...] | None
    origin: str  # "random" or "grid:<kind>:<op>:<condition>"


def random_scenarios(rng: random.Random, nodes_per_spec: int = 8) -> Iterator[Case]:
    """Endless stream: each spec is evaluated on its guiding node and mutations of it."""
    while True:
        node = random_node(rng)
        doc = random_spec(rng, node)
        nodes = [node] + [mutate_node(rng, node) for _ in range(nodes_per_spec - 1)]
        written_tags = _set_tags(doc)
        for variant in nodes:
            tags = rng.choice(TAG_SELECTIONS)
            if tags is not None and written_tags and rng.random() < 0.7:
                tags = tuple(rng.sample(written_tags, rng.randint(1, len(written_tags))))
            yield Case(doc, variant, tags, "random")


def _set_tags(doc: Document) -> list[str]:
    """The tags of the spec's sets as written (YAML may read them differently)."""
    tags = []
    for key, sets in doc.root.items if isinstance(doc.root, Mapping) else ():
        if key.text.lower() == "compatibilities" and isinstance(sets, Sequence):
            for item in sets.items:
                for field_key, value in item.items if isinstance(item, Mapping) else ():
                    if field_key.text.lower() == "tag" and isinstance(value, Scalar):
                        tags.append(value.text)
    return sorted(set(tags))


# --------------------------------------------------------------------------------------------
# The systematic grid

KINDS = ("flag", "attribute", "instance", "multi")
CONDITIONS = ("absent", "match", "nomatch", "error")


Bad = tuple[tuple[str, ...] | None, str | None]  # (values, type) of an invalid expression


@dataclass(frozen=True)
class _OpPlan:
    """One op's grid: a valid expression, node values per verdict, invalid variants."""

    values: tuple[str, ...] | None  # the expression's values (None: no value field)
    value_type: str | None
    match: str | None  # a node value that matches (None: no such value)
    nomatch: str | None
    node_error: str | None  # a node value NFD cannot compare
    bad: tuple[Bad, ...] = ()


# Values are chosen so that their meaning does not depend on how they are written (plain or
# quoted); the random cases take care of YAML scalar forms.
_PLANS: dict[str, _OpPlan] = {
    Op.ANY: _OpPlan(None, None, "x", None, None, ((("x",), None),)),
    Op.EXISTS: _OpPlan(None, None, "x", None, None, ((("x",), None),)),
    Op.DOES_NOT_EXIST: _OpPlan(None, None, None, "x", None, ((("x",), None),)),
    Op.IN: _OpPlan(("a", "b"), None, "b", "c", None, (((), None), (None, None))),
    Op.NOT_IN: _OpPlan(("a", "b"), None, "c", "a", None, (((), None),)),
    Op.IN_REGEXP: _OpPlan(("^v?1\\.", "z$"), None, "v1.2", "2.1", None, ((("(",), None),)),
    Op.GT: _OpPlan(("5",), None, "6", "5", "5.0", ((("x",), None), (("5",), "int"))),
    Op.GE: _OpPlan(("+5",), None, "5", "4", "0x5", ((("5", "6"), None),)),
    Op.LT: _OpPlan(("-3",), None, "-4", "-3", " 1", ((("1.0",), None),)),
    Op.LE: _OpPlan(("007",), None, "7", "8", "", (((), None),)),
    Op.GT_LT: _OpPlan(("1", "10"), None, "2", "10", "x", ((("10", "1"), None),)),
    Op.GE_LE: _OpPlan(("1", "10"), None, "10", "0", "1e1", ((("1", "1"), None),)),
    Op.IS_TRUE: _OpPlan(None, None, "true", "True", None, ((("true",), None),)),
    Op.IS_FALSE: _OpPlan((), None, "false", "0", None, ((("false",), None),)),
}
_VERSION_PLANS: dict[str, _OpPlan] = {
    Op.GT: _OpPlan(
        ("1.2",), "version", "1.10.0", "1.2.0-rc.1", "1.2.3.4", ((("1.2.3.4",), "version"),)
    ),
    Op.GE: _OpPlan(
        ("v5.15",), "version", "5.15.0-91-generic", "5.14.99", "-1", ((("",), "version"),)
    ),
    Op.LT: _OpPlan(
        ("6.8.0",), "version", "6.7", "6.8.0+b", "4.18.0-553.el8_10", ((("6.8.0.1",), "version"),)
    ),
    Op.LE: _OpPlan(
        ("1.2.3",), "version", "1.2.3-05x", "1.2.4", "1.2.3-05", ((("1.2.3-05",), "version"),)
    ),
    Op.GT_LT: _OpPlan(("1.0", "2.0"), "version", "1.5", "2.0.0", "x", ((("1", "x"), "version"),)),
    Op.GE_LE: _OpPlan(
        ("1.0", "2.0"),
        "version",
        "2.0.0",
        "2.0.1",
        "x",
        ((("1",), "version"), (("1", "2"), "semver")),
    ),
}
GRID_PLACEMENTS = {
    "flag": ("F",),
    "attribute": ("A",),
    "instance": ("I",),
    "multi": ("F", "A", "I", "FAI"),
}


def _grid_node(kind: str, key: str, value: str | None, where: str) -> Node_:
    """Feature ``g.<kind>`` of that kind; element ``key`` is placed per ``where`` (F, A, I)
    unless value is None. Every instance gets the element, so "no instance matches" is
    reachable for DoesNotExist too."""
    feature = f"g.{kind}"
    node = Node_(attributes={"other.attr": {"k": "v"}})
    present = value is not None
    element = {key: value} if value is not None else {}
    if kind in ("flag", "multi"):
        node.flags[feature] = ["zz"] + ([key] if present and "F" in where else [])
    if kind in ("attribute", "multi"):
        node.attributes[feature] = {"zz": "1"} | (element if "A" in where else {})
    if kind in ("instance", "multi"):
        extra = element if "I" in where else {}
        node.instances[feature] = [{"zz": "2"} | extra, {"zz": "3"} | extra]
    return node


def _name_node(kind: str, name: str | None) -> Node_:
    """Feature ``g.<kind>`` whose only element name is ``name`` (no elements for None)."""
    feature = f"g.{kind}"
    node = Node_()
    names = [name] if name is not None else []
    if kind in ("flag", "multi"):
        node.flags[feature] = names[:]
    if kind in ("attribute", "multi"):
        node.attributes[feature] = {n: "1" for n in names}
    if kind in ("instance", "multi"):
        node.instances[feature] = [{n: "1"} for n in names]
    return node


def _term_doc(
    rng: random.Random, feature: str, key: str, expression: Node, *, match_name: bool = False
) -> Document:
    if match_name:
        term = mapping((Scalar("feature"), Scalar(feature)), (Scalar("matchName"), expression))
    else:
        term = mapping(
            (Scalar("feature"), Scalar(feature)),
            (Scalar("matchExpressions"), mapping((written(rng, key, 0.5), expression))),
        )
    rule = mapping((Scalar("name"), Scalar("r")), (Scalar("matchFeatures"), seq(term)))
    compat = mapping((Scalar("rules"), seq(rule)))
    return Document(
        mapping((Scalar("version"), Scalar("v1alpha1")), (Scalar("compatibilities"), seq(compat)))
    )


def op_label(op: str, value_type: str | None = None) -> str:
    return (op or '""') + ("/version" if value_type == "version" else "")


def grid_cases(rng: random.Random) -> list[Case]:
    """Single-expression cases; ``origin`` is ``grid:<kind>:<op label>:<present|absent>``."""
    cases: list[Case] = []
    plans = [*_PLANS.items(), *_VERSION_PLANS.items()]
    for op, plan in plans:
        label = op_label(op, plan.value_type)
        for kind in KINDS:
            feature = f"g.{kind}"
            for where in GRID_PLACEMENTS[kind]:
                good = expression_node(rng, op, _listed(plan.values), plan.value_type)
                runs: list[tuple[str | None, Node]] = [(None, good)]
                runs += [
                    (v, good) for v in (plan.match, plan.nomatch, plan.node_error) if v is not None
                ]
                for values, value_type in plan.bad:
                    bad = expression_node(rng, op, _listed(values), value_type)
                    runs.append((plan.match or plan.nomatch or "x", bad))
                for value, expression in runs:
                    doc = _term_doc(rng, feature, "key", expression)
                    node = _grid_node(kind, "key", value, where)
                    presence = "absent" if value is None else "present"
                    cases.append(Case(doc, node, None, f"grid:{kind}:{label}:{presence}"))
        if plan.value_type:
            continue
        # matchName: the expression is tested against every element name of the feature.
        for kind in KINDS:
            for name, values in _NAME_PLANS[op]:
                expression = expression_node(rng, op, _listed(values), None)
                doc = _term_doc(rng, f"g.{kind}", "", expression, match_name=True)
                presence = "absent" if name is None else "present"
                origin = f"grid:{kind}:matchName {label}:{presence}"
                cases.append(Case(doc, _name_node(kind, name), None, origin))
    # Regexp dialect: Go's regexp (NFD) against RE2 (ours), pattern by value.
    for pattern in (*VALID_REGEXES, *REGEX_EXTRAS):
        expression = expression_node(rng, Op.IN_REGEXP, [pattern], None)
        doc = _term_doc(rng, "g.attribute", "key", expression)
        for value in REGEX_PROBES:
            node = Node_(attributes={"g.attribute": {"key": value}})
            cases.append(Case(doc, node, None, "regexp"))
    # Unknown ops are errors whenever anything is evaluated; null expressions panic in NFD.
    for kind in KINDS:
        for where in GRID_PLACEMENTS[kind]:
            for bad_op in ("in", "Equals"):
                expression = expression_node(rng, bad_op, None, None)
                doc = _term_doc(rng, f"g.{kind}", "key", expression)
                node = _grid_node(kind, "key", "1", where)
                cases.append(Case(doc, node, None, f"grid:{kind}:{bad_op}:present"))
            doc = _term_doc(rng, f"g.{kind}", "key", Scalar("null"))
            node = _grid_node(kind, "key", "1", where)
            cases.append(Case(doc, node, None, f"grid:{kind}:null:present"))
    return cases


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


# matchName plans per op: (the only element name on the node, None for no elements; values)
_NAME_PLANS: dict[str, list[tuple[str | None, tuple[str, ...] | None]]] = {
    Op.ANY: [(None, None), ("a", None), ("a", ("a",))],
    Op.EXISTS: [(None, None), ("a", None), ("a", ("a",))],
    Op.DOES_NOT_EXIST: [(None, None), ("a", None), ("a", ("a",))],
    Op.IN: [(None, ("a",)), ("a", ("a",)), ("b", ("a",)), ("a", ())],
    Op.NOT_IN: [(None, ("zz",)), ("a", ("zz",)), ("zz", ("zz",)), ("a", ())],
    Op.IN_REGEXP: [(None, ("^a",)), ("ab", ("^a",)), ("b", ("^a",)), ("a", ("[",))],
    Op.GT: [(None, ("5",)), ("1", ("-1",)), ("1", ("5",)), ("a", ("5",)), ("1", ("x",))],
    Op.GE: [(None, ("5",)), ("7", ("007",)), ("1", ("2",)), ("1", ("5", "6"))],
    Op.LT: [(None, ("5",)), ("1", ("5",)), ("9", ("5",)), ("1", ())],
    Op.LE: [(None, ("5",)), ("5", ("5",)), ("6", ("5",)), ("x", ("5",))],
    Op.GT_LT: [(None, ("1", "9")), ("5", ("1", "9")), ("9", ("1", "9")), ("5", ("9", "1"))],
    Op.GE_LE: [(None, ("1", "9")), ("9", ("1", "9")), ("10", ("1", "9")), ("5", ("1",))],
    Op.IS_TRUE: [(None, None), ("true", None), ("a", None), ("true", ("true",))],
    Op.IS_FALSE: [(None, None), ("false", None), ("true", None), ("x", ("x",))],
}


def required_cells() -> set[tuple[str, str, str]]:
    """(kind, op label, condition) cells the grid must show NFD producing.

    condition is ``absent`` (the element is missing; any verdict) or the verdict with the
    element present: ``match``, ``nomatch``, ``error``. Cells NFD cannot produce are left
    out: value ops (In, Gt, IsTrue, ...) never match a flag and are not even validated there
    (NFD evaluates flag keys with a nil value); ``""`` and Exists cannot fail on a present
    element, DoesNotExist cannot hold for one on a flag or attribute.
    """
    cells: set[tuple[str, str, str]] = set()
    labels: list[tuple[str, str]] = [(op, op_label(op)) for op in OPS]
    labels += [(op, op_label(op, "version")) for op in _VERSION_PLANS]
    for op, label in labels:
        for kind in KINDS:
            cells.add((kind, label, "absent"))
            if kind == "flag" and op not in PRESENCE_OPS:
                cells.add((kind, label, "nomatch"))
                continue
            if op != Op.DOES_NOT_EXIST:
                cells.add((kind, label, "match"))
            if op not in ("", Op.EXISTS):
                cells.add((kind, label, "nomatch"))
            cells.add((kind, label, "error"))
    for op in OPS:
        label = "matchName " + op_label(op)
        for kind in KINDS:
            cells.add((kind, label, "absent"))
            cells.add((kind, label, "error"))
            if op != Op.DOES_NOT_EXIST:
                cells.add((kind, label, "match"))
            if op not in ("", Op.EXISTS):
                cells.add((kind, label, "nomatch"))
    for kind in KINDS:
        for bad in ("in", "Equals", "null"):
            cells.add((kind, bad, "error"))
    return cells
