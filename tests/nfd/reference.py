"""A straightforward transliteration of NFD's Go evaluator, for property tests.

It works on the raw spec (as dicts) and raw features, with no compilation, no interning and no
outcome objects, so that the compiled engine can be checked against a plain reading of NFD.
"""

from __future__ import annotations

from typing import Any

import re2

from extender.nfd.golang import go_atoi, parse_version
from extender.nfd.spec import COMPARISON_OPS, PRESENCE_OPS, SINGLE_BOUND_OPS, Op


class RefError(Exception):
    pass


def _eval_expr(e: dict[str, Any], valid: bool, value: str | None) -> bool:
    op, values, typ = e.get("op", ""), e.get("value") or [], e.get("type", "")
    if op in PRESENCE_OPS:
        if values:
            raise RefError("values")
        return True if op == Op.ANY else (valid if op == Op.EXISTS else not valid)
    if not (valid and value is not None):
        return False
    if op == Op.IN:
        if not values:
            raise RefError("empty")
        return value in values
    if op == Op.NOT_IN:
        if not values:
            raise RefError("empty")
        return value not in values
    if op == Op.IN_REGEXP:
        if not values:
            raise RefError("empty")
        return any(re2.search(p, value) for p in values)
    if op in COMPARISON_OPS:
        n = 1 if op in SINGLE_BOUND_OPS else 2
        if len(values) != n:
            raise RefError("count")
        parse = parse_version if typ == "version" else go_atoi
        if typ not in ("", "version"):
            raise RefError("type")
        left = parse(value)
        if left is None:
            raise RefError("node")
        bounds = [parse(v) for v in values]
        if any(b is None for b in bounds):
            raise RefError("bound")
        if n == 1:
            r = bounds[0]
            return {Op.GT: left > r, Op.GE: left >= r, Op.LT: left < r, Op.LE: left <= r}[op]  # type: ignore[operator]
        lo, hi = bounds
        if typ == "" and lo >= hi:  # type: ignore[operator]
            raise RefError("order")
        return lo < left < hi if op == Op.GT_LT else lo <= left <= hi  # type: ignore[operator]
    if op in (Op.IS_TRUE, Op.IS_FALSE):
        if values:
            raise RefError("values")
        return value == ("true" if op == Op.IS_TRUE else "false")
    raise RefError("op")


def _match_multi(
    exprs: dict[str, Any], keys: Any, values: Any, instances: list[dict[str, str]]
) -> bool:
    is_match = keys is not None or values is not None
    for n, e in exprs.items():
        mk = mv = False
        if keys is not None:
            mk = _eval_expr(e, n in keys, None)
            if not mk and e.get("op") == Op.DOES_NOT_EXIST:
                is_match = False
                continue
        if values is not None:
            mv = _eval_expr(e, n in values, values.get(n))
            if not mv and e.get("op") == Op.DOES_NOT_EXIST:
                is_match = False
                continue
        if not mk and not mv:
            is_match = False
    ma = False
    for inst in instances:
        ok = True
        for n, e in exprs.items():
            if not _eval_expr(e, n in inst, inst.get(n)):
                ok = False
        ma = ma or ok
    return is_match or ma


def _match_names(
    e: dict[str, Any], keys: Any, values: Any, instances: list[dict[str, str]]
) -> bool:
    names = list(keys or []) + list(values or []) + [k for i in instances for k in i]
    found = False
    for name in names:
        if _eval_expr(e, True, name):
            found = True
    return found


def _matcher(terms: list[dict[str, Any]], feats: dict[str, Any]) -> bool:
    is_match = is_term = True
    for term in terms:
        f = term.get("feature", "").lower()
        in_f, in_a, in_i = f in feats["flags"], f in feats["attributes"], f in feats["instances"]
        if not (in_f or in_a or in_i):
            is_match = False
            continue
        keys, values = feats["flags"].get(f), feats["attributes"].get(f)
        instances = feats["instances"].get(f, [])
        if term.get("matchExpressions") is not None:
            is_term = _match_multi(term["matchExpressions"], keys, values, instances)
        if is_term and term.get("matchName") is not None:
            is_term = _match_names(term["matchName"], keys, values, instances)
        if not is_term:
            is_match = False
    return is_match


def evaluate_reference(spec: dict[str, Any], features: dict[str, Any]) -> list[list[bool | str]]:
    """Per set, per rule: True/False, or "ERR" (and evaluation of that rule stops)."""
    feats = {
        "flags": dict(features["flags"]),
        "attributes": {
            k: (dict(v) if v is not None else None) for k, v in features["attributes"].items()
        },
        "instances": dict(features["instances"]),
    }
    out: list[list[bool | str]] = []
    for compat in spec.get("compatibilities") or []:
        results: list[bool | str] = []
        for rule in compat.get("rules") or []:
            try:
                any_ok = [
                    _matcher(el.get("matchFeatures") or [], feats)
                    for el in rule.get("matchAny") or []
                ]
                mf = rule.get("matchFeatures") or []
                mf_ok = _matcher(mf, feats) if mf else True
            except RefError:
                results.append("ERR")
                new_vars: dict[str, str] = {}
            else:
                results.append((not any_ok or any(any_ok)) and mf_ok)
                new_vars = dict(rule.get("vars") or {}) if mf_ok else {}
            # NFD creates rule.matched when absent and copies vars into it; one the node has
            # with elements: null stays null while no rule adds vars (NFD panics when one
            # does: docs/semantics.md). Checked with nfd-eval.
            attributes = feats["attributes"]
            current = attributes.get("rule.matched")
            if "rule.matched" not in attributes or current is not None or new_vars:
                attributes["rule.matched"] = {**(current or {}), **new_vars}
        out.append(results)
    return out
