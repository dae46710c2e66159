"""A tiny YAML document model and writer that keeps each scalar's written form.

Specs are generated as trees of :class:`Scalar`, :class:`Mapping` and :class:`Sequence` and
written out as text, so the test controls exactly how every scalar is spelled (plain ``0200``
vs quoted ``"0200"``, ``y`` vs ``"y"``) and both engines read the same bytes. :class:`Raw`
injects text verbatim (malformed specs). Trees are immutable-by-convention and cheap to copy,
which the shrinker relies on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Style = Literal["plain", "single", "double"]


@dataclass(frozen=True, slots=True)
class Scalar:
    text: str
    style: Style = "plain"


@dataclass(frozen=True, slots=True)
class Raw:
    """Text written as-is where a value goes (may be invalid YAML on purpose)."""

    text: str


@dataclass(frozen=True, slots=True)
class Mapping:
    items: tuple[tuple[Scalar | Raw, Node], ...] = ()
    flow: bool = False


@dataclass(frozen=True, slots=True)
class Sequence:
    items: tuple[Node, ...] = ()
    flow: bool = False


Node = Scalar | Raw | Mapping | Sequence


@dataclass(frozen=True, slots=True)
class Document:
    root: Node
    prefix: str = ""  # e.g. "%YAML 1.1\n---\n"
    suffix: str = field(default="")  # e.g. "\n---\nsecond: doc\n"
    line_end: str = "\n"  # "\r\n" for CRLF text
    bom: bool = False


# Plain scalars the writer may emit unquoted in both block and flow context.
_PLAIN_SAFE = re.compile(r"[A-Za-z0-9_.+~/-][A-Za-z0-9_.+~/ -]*")


def plain_ok(text: str) -> bool:
    return (
        bool(_PLAIN_SAFE.fullmatch(text))
        and not text.endswith(" ")
        and text not in ("-", "--", "---")
        and not text.startswith(("- ", "-- "))
        and "  " not in text
    )


def scalar_text(node: Scalar) -> str:
    if node.style == "plain" and plain_ok(node.text):
        return node.text
    if node.style == "single" and node.text.isprintable():
        return "'" + node.text.replace("'", "''") + "'"
    return double_quoted(node.text)


def double_quoted(text: str) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif (char.isprintable() and char.isascii()) or (code > 0xFF and char.isprintable()):
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _flow(node: Node) -> str:
    if isinstance(node, Scalar):
        return scalar_text(node)
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Mapping):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in node.items) + "}"
    return "[" + ", ".join(_flow(item) for item in node.items) + "]"


def _inline(node: Node) -> bool:
    return (
        isinstance(node, Scalar | Raw)
        or node.flow
        or (isinstance(node, Mapping | Sequence) and not node.items)
    )


def _block(node: Node, indent: int) -> list[str]:
    pad = " " * indent
    if _inline(node):
        return [pad + _flow(node)]
    lines: list[str] = []
    if isinstance(node, Mapping):
        for key, value in node.items:
            head = f"{pad}{_flow(key)}:"
            if _inline(value):
                lines.append(f"{head} {_flow(value)}")
            else:
                lines.append(head)
                lines.extend(_block(value, indent + 2))
        return lines
    assert isinstance(node, Sequence)
    for item in node.items:
        if _inline(item):
            lines.append(f"{pad}- {_flow(item)}")
            continue
        inner = _block(item, indent + 2)
        inner[0] = pad + "- " + inner[0][indent + 2 :]
        lines.extend(inner)
    return lines


def render(document: Document | Node) -> str:
    doc = document if isinstance(document, Document) else Document(document)
    text = doc.prefix + "\n".join(_block(doc.root, 0)) + "\n" + doc.suffix
    if doc.line_end != "\n":
        text = text.replace("\n", doc.line_end)
    return ("\ufeff" if doc.bom else "") + text


def get(mapping: Node, name: str) -> Node | None:
    """The value under key ``name`` (exact text), or None."""
    if isinstance(mapping, Mapping):
        for key, value in mapping.items:
            if key.text == name:
                return value
    return None
