"""Input generators shared by the fuzz targets: YAML-ish text, structured specs, mutations of
valid documents, regexps in Go's dialect, node features and extender request bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SPECS = tuple(sorted(p.read_text() for p in (ROOT / "examples" / "specs").glob("*.yaml")))
FILTER_REQUEST = (
    ROOT / "tests" / "server" / "data" / "kube-scheduler-filter-request.json"
).read_text()

# Scalars that YAML 1.1, go-yaml and encoding/json each read in their own way.
TRICKY_SCALARS = [
    "y",
    "n",
    "yes",
    "Off",
    "on",
    "~",
    "null",
    "Null",
    "0200",
    "0x1F",
    "0b101",
    "1_000",
    "+1",
    "-0",
    ".nan",
    ".inf",
    "-.Inf",
    "1e400",
    "1e21",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1.5",
    "0.1",
    "3e-5",
    "190:20:30",
    "0o17",
    "2001-12-14",
    "'quoted'",
    '"esc\\u00e9"',
    '"\\x00"',
    "!!str 5",
    "!!int x",
    "!!float 1",
    "!!binary aGk=",
    "!!bool yes",
    "!!null ''",
    "! 5",
    "!custom x",
    "&a 1",
    "*a",
    "*nope",
    "<<",
    "? complex",
    "|",
    ">-",
    "[]",
    "{}",
    "[[[[",
    "{a: *a}",
    "é",
    "\U0001f600",
    "",
]
YAML_ALPHABET = st.sampled_from(
    [*"abcvOp:-[]{}&*!|>'\"#%@ \n\t0123456789.,?~<=_+eE\\/", "é", "\x00", "\ufeff", "\x85"]
)
FIELD_NAMES = [
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
    "Version",
    "RULES",
    "matchfeatures",
    "<<",
    "unknown",
]
OPS = [
    "",
    "In",
    "NotIn",
    "InRegexp",
    "Exists",
    "DoesNotExist",
    "Gt",
    "Ge",
    "Lt",
    "Le",
    "GtLt",
    "GeLe",
    "IsTrue",
    "IsFalse",
    "in",
    "EXISTS",
    "Foo",
]
VALUES = [
    "1",
    "5",
    "10",
    "-3",
    "+7",
    "007",
    "0x10",
    "1.5",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "true",
    "false",
    "x",
    "",
    " 1",
    "5.15.0-91-generic",
    "v1.2.3",
    "1.2",
    "1.2.3.4",
    "5.14.0-427.13.1.el9_4.x86_64",
    "0.0.0",
    "v0",
    "1.2.3-rc.1+build",
    "01.2.3",
    "é",
    "\x00",
]
# Go regexp syntax, some of which RE2 reads differently or not at all.
REGEX_PIECES = [
    "a",
    "b",
    ".",
    "^",
    "$",
    "*",
    "+",
    "?",
    "|",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "{2}",
    "{1,3}",
    "{1001}",
    "{0,}",
    "\\",
    "\\d",
    "\\D",
    "\\w",
    "\\s",
    "\\b",
    "\\B",
    "\\A",
    "\\z",
    "\\Z",
    "\\C",
    "\\Q",
    "\\E",
    "\\pL",
    "\\p{Greek}",
    "\\PN",
    "\\p{Nope}",
    "\\x{10FFFF}",
    "\\x41",
    "\\0",
    "\\1",
    "\\k<n>",
    "(?i)",
    "(?s)",
    "(?m)",
    "(?U)",
    "(?-i)",
    "(?:",
    "(?P<n>",
    "(?<n>",
    "(?=",
    "(?!",
    "(?<=",
    "[[:alpha:]]",
    "[[:word:]]",
    "[[:nope:]]",
    "[^",
    "[a-",
    "-",
    ",",
    "é",
    "\x00",
    "\n",
    "**",
    "+?",
    "??",
    "(?i:a)",
    ".*",
    "^$",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(VALUES),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=6)), children, max_size=4
        ),
    ),
    max_leaves=20,
)

yaml_text = st.one_of(
    st.text(alphabet=YAML_ALPHABET, max_size=300),
    st.lists(
        st.one_of(
            st.sampled_from(TRICKY_SCALARS),
            st.sampled_from(FIELD_NAMES),
            st.text(YAML_ALPHABET, max_size=8),
        ),
        max_size=40,
    ).map(" ".join),
)


@st.composite
def expressions(draw: st.DrawFn) -> dict[str, Any]:
    """A match expression; ops, values and types are mostly plausible, sometimes not."""
    op = draw(st.one_of(st.sampled_from(OPS), st.text(max_size=6)))
    if op == "InRegexp":
        value: Any = draw(st.lists(regexps(), max_size=3))
    else:
        value = draw(st.lists(st.one_of(st.sampled_from(VALUES), st.text(max_size=8)), max_size=3))
    expression: dict[str, Any] = {"op": op}
    if value or draw(st.booleans()):
        expression["value"] = value
    if draw(st.integers(0, 3)) == 0:
        expression["type"] = draw(st.sampled_from(["version", "", "Version", "int"]))
    if draw(st.integers(0, 15)) == 0:
        # Any shape at all where a field is expected.
        expression[draw(st.sampled_from(["op", "value", "type"]))] = draw(json_values)
    return expression


FEATURES = [
    "cpu.cpuid",
    "kernel.version",
    "kernel.loadedmodule",
    "pci.device",
    "rule.matched",
    "a.b",
    "CPU.CpuID",
    "",
]
NAMES = ["AVX", "major", "full", "class", "vendor", "vfio_pci", "k", "5", ""]


@st.composite
def terms(draw: st.DrawFn) -> dict[str, Any]:
    term: dict[str, Any] = {
        "feature": draw(st.one_of(st.sampled_from(FEATURES), st.text(max_size=8)))
    }
    if draw(st.integers(0, 4)):
        term["matchExpressions"] = draw(
            st.dictionaries(
                st.one_of(st.sampled_from(NAMES), st.text(max_size=5)), expressions(), max_size=3
            )
        )
    if draw(st.integers(0, 3)) == 0:
        term["matchName"] = draw(expressions())
    return term


@st.composite
def structured_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A spec-shaped document with random content, and now and then a wrong shape anywhere."""
    rule = st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["r1", "r2"]), st.text(max_size=6))},
        optional={
            "matchFeatures": st.lists(terms(), max_size=3),
            "matchAny": st.lists(
                st.fixed_dictionaries({"matchFeatures": st.lists(terms(), max_size=2)}), max_size=2
            ),
            "vars": st.dictionaries(
                st.text(max_size=4), st.one_of(st.sampled_from(VALUES), json_scalars), max_size=2
            ),
            "varsTemplate": st.sampled_from(["", "{{ .x }}"]),
        },
    )
    compat = st.fixed_dictionaries(
        {"rules": st.lists(rule, max_size=3)},
        optional={
            "weight": st.one_of(st.integers(-5, 105), json_scalars),
            "tag": st.one_of(st.sampled_from(["fast", "", "x"]), json_scalars),
            "description": st.text(max_size=10),
        },
    )
    spec: dict[str, Any] = {
        "version": draw(
            st.one_of(st.just("v1alpha1"), st.sampled_from(["v1", "", "V1ALPHA1"]), json_scalars)
        ),
        "compatibilities": draw(st.lists(compat, max_size=3)),
    }
    if draw(st.integers(0, 9)) == 0:
        spec[draw(st.sampled_from(FIELD_NAMES))] = draw(json_values)
    return spec


@st.composite
def regexps(draw: st.DrawFn) -> str:
    return "".join(
        draw(st.lists(st.one_of(st.sampled_from(REGEX_PIECES), st.text(max_size=2)), max_size=10))
    )


@st.composite
def mutated(draw: st.DrawFn, documents: tuple[str, ...], pieces: list[str]) -> str:
    """A valid document after a few random edits: cuts, inserts, swaps and duplicated lines."""
    text = draw(st.sampled_from(documents))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 6))
        at = draw(st.integers(0, len(text)))
        if kind == 0:  # cut a slice
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == 1:  # insert a tricky token
            text = text[:at] + draw(st.sampled_from(pieces)) + text[at:]
        elif kind == 2:  # insert random characters
            text = text[:at] + draw(st.text(YAML_ALPHABET, max_size=6)) + text[at:]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == 3:  # duplicate a line
                lines.insert(j, lines[i])
            elif kind == 4:  # swap two lines
                lines[i], lines[j] = lines[j], lines[i]
            elif kind == 5:  # re-indent a line
                lines[i] = " " * draw(st.integers(0, 8)) + lines[i].lstrip()
            else:  # drop a line
                del lines[i]
            text = "\n".join(lines)
    return text


@st.composite
def node_features(draw: st.DrawFn) -> dict[str, Any]:
    name = st.one_of(st.sampled_from(NAMES), st.text(max_size=4))
    value = st.one_of(st.sampled_from(VALUES), st.text(max_size=8))
    values = st.dictionaries(name, value, max_size=4)
    feature = st.one_of(st.sampled_from(FEATURES[:-2]), st.text(max_size=6))
    return {
        "flags": draw(
            st.dictionaries(feature, st.one_of(st.none(), st.lists(name, max_size=3)), max_size=4)
        ),
        "attributes": draw(st.dictionaries(feature, st.one_of(st.none(), values), max_size=4)),
        "instances": draw(st.dictionaries(feature, st.lists(values, max_size=3), max_size=3)),
    }


# -- extender request bodies ------------------------------------------------------------------

POD = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
    "spec": {
        "schedulerName": "image-compat-scheduler",
        "containers": [{"name": "app", "image": "registry.example/app:1"}],
    },
}
NODE_NAMES = ["gpu-h100-01", "dpdk-spr-01", "vm-focal-01", "gone", "", "é"]


def _node(name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        }
    }


VALID_BODIES = (
    FILTER_REQUEST,
    json.dumps({"Pod": POD, "NodeNames": NODE_NAMES[:4], "Nodes": None}),
    json.dumps(
        {
            "Pod": POD,
            "Nodes": {"metadata": {}, "items": [_node(n) for n in NODE_NAMES[:3]]},
            "NodeNames": None,
        }
    ),
    json.dumps(
        {
            "Pod": POD,
            "NodeNameToMetaVictims": {
                "gpu-h100-01": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 0}
            },
        }
    ),
    json.dumps(
        {
            "Pod": POD,
            "NodeNameToVictims": {
                "dpdk-spr-01": {"Pods": [{"metadata": {"uid": "v2"}}], "NumPDBViolations": 1}
            },
        }
    ),
    json.dumps({"PodName": "web", "PodNamespace": "shop", "PodUID": "u-1", "Node": "gpu-h100-01"}),
)
JSON_PIECES = [
    "null",
    "{}",
    "[]",
    '""',
    "0",
    "-0",
    "1e999",
    "NaN",
    "true",
    '"\\ud800"',
    '"\\u0000"',
    ",",
    ":",
    "{",
    "}",
    "[",
    "]",
    '"Pod"',
    '"NodeNames"',
    '"Nodes"',
    '"items"',
    '"metadata"',
    '"labels"',
    '"UID"',
    '"Pods"',
    "9223372036854775808",
    '"\xff"',
    "\x00",
]


@st.composite
def structured_bodies(draw: st.DrawFn) -> bytes:
    """Request-shaped JSON with random values in random places."""
    pod: Any = draw(
        st.one_of(
            st.just(POD),
            st.fixed_dictionaries(
                {},
                optional={
                    "metadata": st.one_of(
                        json_values,
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "name": json_values,
                                "namespace": json_values,
                                "uid": json_values,
                                "annotations": json_values,
                                "labels": json_values,
                            },
                        ),
                    ),
                    "spec": st.one_of(
                        json_values,
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "schedulerName": st.one_of(
                                    st.just("image-compat-scheduler"), json_values
                                ),
                                "containers": st.one_of(
                                    json_values,
                                    st.lists(
                                        st.fixed_dictionaries(
                                            {},
                                            optional={
                                                "name": json_values,
                                                "image": st.one_of(
                                                    st.just("registry.example/app:1"), json_values
                                                ),
                                            },
                                        ),
                                        max_size=3,
                                    ),
                                ),
                                "initContainers": json_values,
                                "imagePullSecrets": json_values,
                                "nodeSelector": json_values,
                            },
                        ),
                    ),
                },
            ),
            json_values,
        )
    )
    body: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "NodeNames": st.one_of(
                    st.lists(
                        st.one_of(st.sampled_from(NODE_NAMES), st.text(max_size=5)), max_size=5
                    ),
                    json_values,
                ),
                "Nodes": st.one_of(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "metadata": json_values,
                            "items": st.one_of(
                                st.lists(
                                    st.one_of(st.sampled_from(NODE_NAMES).map(_node), json_values),
                                    max_size=4,
                                ),
                                json_values,
                            ),
                        },
                    ),
                    json_values,
                ),
                "NodeNameToVictims": json_values,
                "NodeNameToMetaVictims": st.one_of(
                    st.dictionaries(
                        st.sampled_from(NODE_NAMES),
                        st.fixed_dictionaries(
                            {}, optional={"Pods": json_values, "NumPDBViolations": json_values}
                        ),
                        max_size=3,
                    ),
                    json_values,
                ),
                "PodName": json_values,
                "PodNamespace": json_values,
                "Node": json_values,
            },
        )
    )
    if draw(st.booleans()):
        body["Pod"] = pod
    return json.dumps(body).encode()


@st.composite
def byte_mutated(draw: st.DrawFn, documents: tuple[str, ...]) -> bytes:
    """A valid document with random bytes written over a few places: bytes that are not
    UTF-8 inside a string reach the decoder only this way."""
    data = bytearray(draw(st.sampled_from(documents)).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        chunk = draw(st.binary(min_size=1, max_size=4))
        data[at : at + draw(st.integers(0, len(chunk)))] = chunk
    return bytes(data)


request_bodies = st.one_of(
    st.binary(max_size=300),
    mutated(VALID_BODIES, JSON_PIECES).map(lambda text: text.encode("utf-8", "surrogatepass")),
    byte_mutated(VALID_BODIES),
    structured_bodies(),
)
