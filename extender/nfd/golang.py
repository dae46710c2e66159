"""Go, strconv, YAML 1.1 and regexp-dialect compatibility: what NFD's Go code does, in Python.

Owns every helper that reproduces a Go library's behaviour so our reading and matching agree
with NFD's: YAML 1.1 plain-scalar resolution and ``strconv.ParseInt``/``ParseFloat`` as
go-yaml v2 applies them, ``strconv.FormatFloat(f, 'g', -1, 32)``, ``encoding/json``'s
case-insensitive field folding, ``strconv.Atoi``, the loose version parsing NFD's version
comparisons use, ``strings.ToLower``, and the translation of Go regexp syntax to RE2's C++
dialect. Nothing here knows about specs or nodes.
"""

from __future__ import annotations

import math
import re
import struct

INT64_MIN, INT64_MAX, UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1

__all__ = [
    "GoRegexpError",
    "go_atoi",
    "go_format_float32",
    "go_lower",
    "go_regexp_to_re2",
    "parse_version",
    "resolve_plain_scalar",
]

_BOOLS_AND_NULLS: dict[str, bool | float | None] = {
    **dict.fromkeys(
        ["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"], True
    ),
    **dict.fromkeys(
        ["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"], False
    ),
    **dict.fromkeys(["", "~", "null", "Null", "NULL"], None),
    **dict.fromkeys([".nan", ".NaN", ".NAN"], math.nan),
    **dict.fromkeys([".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"], math.inf),
    **dict.fromkeys(["-.inf", "-.Inf", "-.INF"], -math.inf),
}
# go-yaml v2 only tries to resolve a plain scalar whose first character is one of these.
_RESOLVE_HINTS = frozenset("+-0123456789yYnNtTfFoO~.")
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_FLOAT_SYNTAX = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_DIGITS_BY_BASE = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


# The most significant digits a uint64 has, per base: a longer number is out of range for Go
# without converting it (Python refuses to convert over 4,300 decimal digits).
_MAX_DIGITS = {2: 64, 8: 22, 10: 20, 16: 16}


def _digits_to_int(digits: str, base: int) -> int | None:
    """``int(digits, base)``, or None when it cannot fit 64 bits whatever its length."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS[base]:
        return None
    return int(significant or "0", base)


def go_parse_int_base0(text: str, *, signed: bool) -> int | None:
    """``strconv.ParseInt(text, 0, 64)`` (or ParseUint), without underscores."""
    body, negative = text, False
    if signed and body[:1] in ("+", "-"):
        negative, body = body[0] == "-", body[1:]
    base = 10
    if len(body) > 1 and body[0] == "0":
        prefix = body[1].lower()
        base, body = {"x": (16, body[2:]), "o": (8, body[2:]), "b": (2, body[2:])}.get(
            prefix, (8, body[1:])
        )
    if not body or any(c not in _DIGITS_BY_BASE[base] for c in body):
        return None
    magnitude = _digits_to_int(body, base)
    if magnitude is None:
        return None
    number = -magnitude if negative else magnitude
    low, high = (INT64_MIN, INT64_MAX) if signed else (0, UINT64_MAX)
    return number if low <= number <= high else None


def go_parse_float(text: str) -> float | None:
    """``strconv.ParseFloat(text, 64)`` for decimal syntax; out of range is an error as in Go."""
    if not _GO_FLOAT_SYNTAX.fullmatch(text):
        return None
    number = float(text)
    return None if math.isinf(number) else number


def resolve_plain_scalar(text: str) -> bool | int | float | str | None:
    """Type a plain (unquoted) YAML scalar exactly as go-yaml v2 does."""
    if text in _BOOLS_AND_NULLS:
        return _BOOLS_AND_NULLS[text]
    if not text or text[0] not in _RESOLVE_HINTS:
        return text
    if text[0] == ".":
        number = go_parse_float(text)
        return text if number is None else number
    if text[0] in "yYnNtTfFoO~":
        return text
    plain = text.replace("_", "")
    for signed in (True, False):
        integer = go_parse_int_base0(plain, signed=signed)
        if integer is not None:
            return integer
    if _YAML_STYLE_FLOAT.fullmatch(plain):
        number = go_parse_float(plain)
        if number is not None:
            return number
    return text


def go_format_float32(number: float) -> str:
    """``strconv.FormatFloat(number, 'g', -1, 32)``: shortest float32 digits, Go's layout."""
    try:
        single = struct.unpack("f", struct.pack("f", number))[0]
    except OverflowError:
        single = math.copysign(math.inf, number)
    if math.isnan(single):
        return "NaN"
    if math.isinf(single):
        return "+Inf" if single > 0 else "-Inf"
    if single == 0:
        return "-0" if math.copysign(1.0, single) < 0 else "0"
    for precision in range(1, 18):
        candidate = f"{single:.{precision - 1}e}"
        if struct.unpack("f", struct.pack("f", float(candidate)))[0] == single:
            break
    mantissa, exponent_text = candidate.split("e")
    negative = mantissa.startswith("-")
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    exponent = int(exponent_text)
    sign = "-" if negative else ""
    if exponent < -4 or exponent >= 6:
        head, tail = digits[0], digits[1:]
        fraction = "." + tail if tail else ""
        return f"{sign}{head}{fraction}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    point = exponent + 1
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


# --------------------------------------------------------------------------------------------
# encoding/json-style typed decoding


def _fold_rune(char: str) -> str:
    """Go's ``foldRune``: the smallest rune of the character's simple case-folding orbit."""
    orbit = {char}
    frontier = [char]
    while frontier:
        for other in (frontier[0].lower(), frontier[0].upper()):
            if len(other) == 1 and other not in orbit:
                orbit.add(other)
                frontier.append(other)
        frontier.pop(0)
    return min(orbit)


def json_fold(name: str) -> str:
    """The key encoding/json matches struct field names by (``foldName``, like EqualFold).

    ASCII letters fold to upper case; other characters to the smallest member of their case
    orbit, so U+017F LONG S matches ``s`` and U+212A KELVIN SIGN matches ``k``: JSON key
    ``"rule\\u017f"`` sets the field ``rules``.
    """
    if name.isascii():
        return name.upper()
    return "".join(c.upper() if c.isascii() else _fold_rune(c) for c in name)


# --------------------------------------------------------------------------------------------
# Go-compatible scalar helpers

_ATOI = re.compile(r"[+-]?[0-9]+")
_LOOSE_VERSION = re.compile(
    r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)


def go_atoi(text: str) -> int | None:
    """``strconv.Atoi`` on 64-bit: optional sign, ASCII decimal digits, int64 range."""
    if not _ATOI.fullmatch(text):
        return None
    number = _digits_to_int(text.lstrip("+-"), 10)
    if number is None:
        return None
    number = -number if text.startswith("-") else number
    return number if INT64_MIN <= number <= INT64_MAX else None


def parse_version(text: str) -> tuple[int, int, int] | None:
    """Masterminds semver ``NewVersion`` (coercing) with the pre-release dropped, as NFD does.

    Returns (major, minor, patch), or None where NFD says "not a version": four parts, ``_``,
    a negative number, a numeric pre-release identifier with a leading zero, overflow.
    """
    match = _LOOSE_VERSION.fullmatch(text)
    if match is None:
        return None
    parts = [match.group(1), (match.group(2) or ".0")[1:], (match.group(3) or ".0")[1:]]
    numbers = [_digits_to_int(p, 10) for p in parts]
    if any(n is None or n > UINT64_MAX for n in numbers):
        return None
    prerelease = match.group(5)
    if prerelease:
        for identifier in prerelease.split("."):
            if identifier.isdigit() and len(identifier) > 1 and identifier[0] == "0":
                return None
    major, minor, patch = numbers
    assert major is not None and minor is not None and patch is not None
    return major, minor, patch


def go_lower(text: str) -> str:
    """``strings.ToLower``: per rune, unlike Python's ``str.lower`` which may grow a string."""
    if text.isascii():
        return text.lower()
    return "".join(c.lower() if len(c.lower()) == 1 else _GO_LOWER_SPECIAL.get(c, c) for c in text)


_GO_LOWER_SPECIAL = {"\u0130": "i"}  # LATIN CAPITAL LETTER I WITH DOT ABOVE


# --------------------------------------------------------------------------------------------
# Go regexp syntax on RE2
#
# NFD compiles InRegexp values with Go's regexp package; we match with RE2 (C++). Both speak
# RE2 syntax, with these differences (checked against NFD built with Go 1.26):
# * ``\C`` (any byte) exists only in C++ RE2: Go rejects it, so do we.
# * Go (1.25+) looks ``\p{...}`` names up loosely: case, ``_``, ``-`` and spaces do not count,
#   and Unicode category aliases (``Letter``), ``Any``, ``ASCII``, ``Assigned``, ``LC`` and
#   ``Cn`` are known. That loose lookup also makes Go reject multi-word script names such as
#   ``Old_Italic``. C++ RE2 wants exact category and script names. We resolve names the Go
#   way and hand RE2 the exact name (or an equivalent class); ``Cn``/``Assigned``, and
#   ``LC``/``ASCII`` negated inside a bracket class, have no RE2 form and are rejected.

# Go's unicode package: Categories, the single-word Scripts (the only ones Go's lookup can
# find), and CategoryAliases (Unicode 15.0.0 in Go 1.26).
_GO_CATEGORIES = frozenset(
    "C Cc Cf Cn Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps "  # noqa: SIM905
    "S Sc Sk Sm So Z Zl Zp Zs".split()
)
_GO_SCRIPTS = frozenset(
    "Adlam Ahom Arabic Armenian Avestan Balinese Bamum Batak Bengali Bhaiksuki Bopomofo "  # noqa: SIM905
    "Brahmi Braille Buginese Buhid Carian Chakma Cham Cherokee Chorasmian Common Coptic "
    "Cuneiform Cypriot Cyrillic Deseret Devanagari Dogra Duployan Elbasan Elymaic Ethiopic "
    "Georgian Glagolitic Gothic Grantha Greek Gujarati Gurmukhi Han Hangul Hanunoo Hatran "
    "Hebrew Hiragana Inherited Javanese Kaithi Kannada Katakana Kawi Kharoshthi Khmer Khojki "
    "Khudawadi Lao Latin Lepcha Limbu Lisu Lycian Lydian Mahajani Makasar Malayalam Mandaic "
    "Manichaean Marchen Medefaidrin Miao Modi Mongolian Mro Multani Myanmar Nabataean "
    "Nandinagari Newa Nko Nushu Ogham Osage Osmanya Palmyrene Phoenician Rejang Runic "
    "Samaritan Saurashtra Sharada Shavian Siddham Sinhala Sogdian Soyombo Sundanese Syriac "
    "Tagalog Tagbanwa Takri Tamil Tangsa Tangut Telugu Thaana Thai Tibetan Tifinagh Tirhuta "
    "Toto Ugaritic Vai Vithkuqi Wancho Yezidi Yi".split()
)
_GO_CATEGORY_ALIASES = {
    "Casedletter": "LC",
    "Closepunctuation": "Pe",
    "Combiningmark": "M",
    "Connectorpunctuation": "Pc",
    "Control": "Cc",
    "Currencysymbol": "Sc",
    "Dashpunctuation": "Pd",
    "Decimalnumber": "Nd",
    "Enclosingmark": "Me",
    "Finalpunctuation": "Pf",
    "Format": "Cf",
    "Initialpunctuation": "Pi",
    "Letter": "L",
    "Letternumber": "Nl",
    "Lineseparator": "Zl",
    "Lowercaseletter": "Ll",
    "Mark": "M",
    "Mathsymbol": "Sm",
    "Modifierletter": "Lm",
    "Modifiersymbol": "Sk",
    "Nonspacingmark": "Mn",
    "Number": "N",
    "Openpunctuation": "Ps",
    "Other": "C",
    "Otherletter": "Lo",
    "Othernumber": "No",
    "Otherpunctuation": "Po",
    "Othersymbol": "So",
    "Paragraphseparator": "Zp",
    "Privateuse": "Co",
    "Punctuation": "P",
    "Separator": "Z",
    "Spaceseparator": "Zs",
    "Spacingmark": "Mc",
    "Surrogate": "Cs",
    "Symbol": "S",
    "Titlecaseletter": "Lt",
    "Unassigned": "Cn",
    "Uppercaseletter": "Lu",
    "Cntrl": "Cc",
    "Digit": "Nd",
    "Punct": "P",
}


class GoRegexpError(ValueError):
    """A pattern Go's regexp rejects, or one RE2 cannot express."""


def _go_canonical_name(name: str) -> str:
    """regexp/syntax ``canonicalName``: ``_ - space`` dropped, first letter upper, rest lower."""
    out = []
    first = True
    for char in name:
        if char in "_- ":
            continue
        if first:
            out.append(char.upper() if "a" <= char <= "z" else char)
            first = False
        else:
            out.append(char.lower() if "A" <= char <= "Z" else char)
    return "".join(out)


def _unicode_class(name: str, negated: bool, in_class: bool, seq: str) -> str:
    """RE2 text for Go's ``\\p{name}`` (``\\P`` when negated)."""
    if name.startswith("^"):
        negated, name = not negated, name[1:]
    canonical = _go_canonical_name(name)
    parts: list[str]
    if canonical == "Any":
        parts = ["\\p{Any}"]
    elif canonical == "Ascii":
        parts = ["\\x00-\\x7F"]
    elif canonical == "Lc":
        parts = ["\\p{Lu}", "\\p{Ll}", "\\p{Lt}"]
    elif canonical == "Assigned":
        raise GoRegexpError(f"{seq}: Go's Assigned class has no RE2 equivalent")
    else:
        actual = canonical if canonical in _GO_CATEGORIES | _GO_SCRIPTS else None
        actual = actual or _GO_CATEGORY_ALIASES.get(canonical)
        if actual is None:
            raise GoRegexpError(f"invalid character class range: {seq}")
        if actual == "Cn":
            raise GoRegexpError(f"{seq}: the unassigned class Cn has no RE2 equivalent")
        if actual == "LC":
            parts = ["\\p{Lu}", "\\p{Ll}", "\\p{Lt}"]
        else:
            return ("\\P{" if negated else "\\p{") + actual + "}"
    if len(parts) == 1 and parts[0].startswith("\\p"):
        return parts[0].replace("\\p", "\\P", 1) if negated else parts[0]
    if not in_class:
        return ("[^" if negated else "[") + "".join(parts) + "]"
    if negated:
        raise GoRegexpError(f"{seq} negated inside a bracket class has no RE2 equivalent")
    return "".join(parts)


def go_regexp_to_re2(pattern: str) -> str:
    """Rewrite a Go regexp so that RE2 reads it as Go does; GoRegexpError if impossible.

    Anything this scan does not understand is passed through for RE2 to judge.
    """
    if "\\" not in pattern:
        return pattern
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        char = pattern[i]
        if char == "\\" and i + 1 < n:
            escaped = pattern[i + 1]
            if escaped == "Q":  # literal text up to \E
                end = pattern.find("\\E", i + 2)
                end = n if end < 0 else end + 2
                out.append(pattern[i:end])
                i = end
                continue
            if escaped == "C":
                raise GoRegexpError("invalid escape sequence: \\C")
            if escaped in "pP" and i + 2 < n:
                if pattern[i + 2] == "{":
                    close = pattern.find("}", i + 3)
                    if close < 0:
                        out.append(pattern[i:])
                        break
                    name, end = pattern[i + 3 : close], close + 1
                else:
                    name, end = pattern[i + 2], i + 3
                out.append(_unicode_class(name, escaped == "P", in_class, pattern[i:end]))
                i = end
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):  # a leading ] is a literal
                out.append("]")
                i += 1
            continue
        if in_class and pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            if close >= 0:
                out.append(pattern[i : close + 2])
                i = close + 2
                continue
        if in_class and char == "]":
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)
