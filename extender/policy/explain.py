"""Why a pod fits or not, node by node: the answer of ``GET /explain`` and ``explain``.

Owns :func:`explain`, which runs filter's and prioritize's own steps (the pod's plan, the
specs through the artifact source within the wait budget, the verdicts through the memo, the
prioritize normalisation over every node) and returns, per node of the feature store,
whether filter would pass it, its fit and score, and per image the ``validate`` report of
:func:`extender.nfd.report.node_report` (each set's rules) with
:func:`extender.nfd.report.rule_failures` (each failing rule's expressions with the node's
actual values), and
:func:`render_explanation`, the same as text for people.

The JSON answer::

    {"pod": "ns/name", "ours": true, "mode": "enforce", "tags": [], "problem": "",
     "images": [{"image": "...", "artifact": "", "containers": ["app"],
                 "specs": {"linux/amd64": "sha256:..." | null}}],
     "nodes": [{"node": "n1", "platform": "linux/amd64", "passes": false, "compatible": false,
                "fit": 0, "score": 0, "reason": "...",
                "images": [{"image": "...", "spec": "sha256:...", NODE_REPORT,
                            "failures": RULE_FAILURES}]}]}

``compatible`` is the truth of every spec on the node; ``passes`` is filter's answer, which
differs in prefer mode (every node passes), for pods that are not ours or off, and when the
pod itself is at fault (``problem``: every node is rejected with it). An image with no spec
for the node's platform states no requirement and has no entry in the node's ``images``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from extender.nfd import report
from extender.nfd.rules import CompiledSpec, ImageVerdict
from extender.policy.decide import (
    REASON_PREFIX,
    Policy,
    PolicyUnavailableError,
    normalise_score,
    short_image,
)
from extender.policy.pods import Mode, Pod, PodPlan

__all__ = ["UnknownNodeError", "explain", "render_explanation"]


class UnknownNodeError(LookupError):
    """The node asked for is not in the feature store."""


async def explain(policy: Policy, pod: Pod, node: str | None = None) -> dict[str, Any]:
    """The explanation of ``pod`` on every node of the store (or on ``node`` only).

    Raises :class:`PolicyUnavailableError` when filter could not decide either (features not
    synced, a spec not loaded within the wait budget, a registry failure), and
    :class:`UnknownNodeError` when ``node`` is not in the store.
    """
    plan = policy.plan(pod)
    snapshot = policy.store.snapshot()
    every = sorted(set(snapshot.nodes) | set(snapshot.platforms))
    names = every
    if node is not None:
        if node not in every:
            raise UnknownNodeError(f"node {node!r} is not in the feature store")
        names = [node]
    judged = plan.ours and plan.mode is not Mode.OFF
    specs: Mapping[tuple[int, str], CompiledSpec | None] = {}
    problem = plan.problem
    if judged and not problem and plan.requirements:
        # Every node's platform, even with ``node``: the score is normalised over them all.
        platforms = {snapshot.platform(name) for name in every} or {""}
        specs, problem = await policy.specs_for(plan, platforms)
        if any(spec is not None for spec in specs.values()) and not snapshot.synced:
            waiting = ", ".join(snapshot.waiting) or "feature sources"
            raise PolicyUnavailableError(
                f"{REASON_PREFIX}node features not synced yet (waiting for {waiting})"
            )
    images = [
        {
            "image": requirement.image,
            "artifact": requirement.artifact,
            "containers": list(requirement.containers),
            "specs": {
                platform or "(any)": spec.digest if spec is not None else None
                for (index, platform), spec in sorted(specs.items())
                if index == i
            },
        }
        for i, requirement in enumerate(plan.requirements)
    ]
    rows: list[dict[str, Any]] = []
    raws: list[int] = []
    for name in names:
        platform = snapshot.platform(name)
        record = snapshot.record(name)
        reports: list[dict[str, Any]] = []
        for index, requirement in enumerate(plan.requirements):
            spec = specs.get((index, platform))
            if spec is None:
                continue
            verdict = policy.memo.verdict(spec, plan.tags, record)
            reports.append(
                {
                    "image": requirement.image,
                    "spec": spec.digest,
                    **report.node_report(name, spec.spec, verdict),
                    "failures": report.rule_failures(verdict),
                }
            )
        by_index = {
            index: policy.memo.verdict(spec, plan.tags, record)
            for (index, on), spec in specs.items()
            if on == platform and spec is not None
        }
        compatible = not problem and not _failing_group(plan, by_index)
        raw = _group_fit(plan, by_index)
        raws.append(raw)
        row: dict[str, Any] = {
            "node": name,
            "platform": platform,
            "features": record is not None,
            "passes": _passes(plan.ours, plan.mode, bool(problem), compatible),
            "compatible": compatible,
            "fit": raw,
        }
        reason = _reason(problem, plan, by_index)
        if reason:
            row["reason"] = reason
        row["images"] = reports
        rows.append(row)
    # prioritize's normalisation runs over the nodes it is given; here, the whole store.
    if node is not None:
        best = max(_raw_fits(policy, plan, specs, snapshot, every), default=0)
    else:
        best = max(raws, default=0)
    scored = judged and not plan.problem
    for row, raw in zip(rows, raws, strict=True):
        row["score"] = normalise_score(raw, best) if scored else 0
    return {
        "pod": plan.pod,
        "ours": plan.ours,
        "mode": plan.mode.value,
        "tags": sorted(plan.tags),
        "problem": problem,
        "synced": snapshot.synced,
        "images": images,
        "nodes": rows,
    }


def _passes(ours: bool, mode: Mode, problem: bool, compatible: bool) -> bool:
    if not ours or (mode is Mode.OFF and not problem):
        return True
    if problem:
        return False
    return mode is Mode.PREFER or compatible


def _failing_group(plan: PodPlan, by_index: Mapping[int, ImageVerdict]) -> tuple[int, ...]:
    """The first group (a container's image, or its variants) no alternative of which passes
    on the node, as filter checks them; () when every group passes."""
    for group in plan.groups:
        if not any(index not in by_index or by_index[index].compatible for index in group):
            return group
    return ()


def _group_fit(plan: PodPlan, by_index: Mapping[int, ImageVerdict]) -> int:
    """prioritize's raw fit: per group, its best alternative's fit."""
    return sum(
        max((by_index[i].fit for i in group if i in by_index), default=0) for group in plan.groups
    )


def _reason(problem: str, plan: PodPlan, by_index: Mapping[int, ImageVerdict]) -> str:
    """Filter's reason for the node, in filter's words (the first failing image)."""
    if problem:
        return REASON_PREFIX + problem
    group = _failing_group(plan, by_index)
    if not group:
        return ""
    first = short_image(plan.requirements[group[0]].image)  # as filter names it
    verdict = by_index[group[0]]
    for variants in plan.variants:
        if variants.indices == group:
            label = f"container {variants.container}: no compatible variant: {first}: "
            return REASON_PREFIX + label + verdict.reason
    several = len(plan.requirements) > 1
    return (f"{REASON_PREFIX}{first}: " if several else REASON_PREFIX) + verdict.reason


def _raw_fits(
    policy: Policy,
    plan: PodPlan,
    specs: Mapping[tuple[int, str], CompiledSpec | None],
    snapshot: Any,
    names: Sequence[str],
) -> list[int]:
    fits = []
    for name in names:
        platform, record = snapshot.platform(name), snapshot.record(name)
        by_index = {
            index: policy.memo.verdict(spec, plan.tags, record)
            for (index, on), spec in specs.items()
            if on == platform and spec is not None
        }
        fits.append(_group_fit(plan, by_index))
    return fits


# --------------------------------------------------------------------------------------------
# Text for people


def render_explanation(data: Mapping[str, Any], *, style: report.Style | None = None) -> str:
    """A summary line per node (as ``validate``'s matrix), then the failing sets and rules of
    each image on each node that is not compatible (as ``validate``'s table)."""
    style = style or report.Style()
    head = f"pod {data['pod']}: "
    if not data["ours"]:
        head += "not scheduled by a scheduler this extender serves; every node passes"
    else:
        head += f"mode {data['mode']}"
        if data["tags"]:
            head += f", tags {','.join(data['tags'])}"
    lines = [style.bold(head)]
    if data["problem"]:
        lines.append(style.bad(f"every node is rejected: {data['problem']}"))
    for image in data["images"]:
        specs = image["specs"]
        shown = ", ".join(f"{p}: {d or 'no spec'}" for p, d in specs.items()) or "not looked up"
        via = f" (artifact {image['artifact']})" if image["artifact"] else ""
        lines.append(f"image {image['image']}{via}: {shown}")
    nodes = data["nodes"]
    if not nodes:
        lines.append("no nodes in the feature store")
        return "\n".join(lines) + "\n"
    width = max(len("NODE"), *(len(n["node"]) for n in nodes))
    lines.append("")
    lines.append(style.bold(f"{'NODE':<{width}}  FILTER  COMPATIBLE  FIT  SCORE  REASON"))
    for n in nodes:
        verdict = "pass  " if n["passes"] else "reject"
        painted = style.good(verdict) if n["passes"] else style.bad(verdict)
        compatible = "yes" if n["compatible"] else "no"
        reason = n.get("reason", "") or ("" if n["features"] else "(no NodeFeature)")
        lines.append(
            f"{n['node']:<{width}}  {painted}  {compatible:<10}  {n['fit']:>3}  {n['score']:>5}  "
            f"{reason}".rstrip()
        )
    details = [n for n in nodes if not n["compatible"] and n["images"]]
    if len(nodes) == 1:
        details = [n for n in nodes if n["images"]]
    for n in details:
        for entry in n["images"]:
            if entry["compatible"] and len(nodes) > 1:
                continue
            lines.append("")
            lines.append(_render_report(entry, style))
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_report(entry: Mapping[str, Any], style: report.Style) -> str:
    """One node report (JSON shape) as text: each set, each rule, each failing expression with
    the node's value, worded as ``validate``'s table."""
    status = (
        style.good(style.bold("compatible")) + f", fit {entry['fit']}"
        if entry["compatible"]
        else style.bad(style.bold("NOT compatible")) + f": {entry.get('reason', '')}"
    )
    lines = [f"{entry['image']} on node {style.bold(entry['node'])}: {status}"]
    why = {(f["set"], f["rule"]): f["failures"] for f in entry.get("failures", [])}
    for number, item in enumerate(entry["sets"], start=1):
        if "error" in item:
            mark = style.warn("ERROR   ")
        elif item["matched"]:
            mark = style.good("MATCH   ")
        else:
            mark = style.bad("NO MATCH")
        title = [f"set {number}"]
        if item.get("tag"):
            title.append(f"tag {item['tag']}")
        title.append(f"weight {item.get('weight', 0)}")
        text = ", ".join(title)
        if item.get("description"):
            text += f": {item['description']}"
        lines.append(f"  {mark} {text}")
        for position, rule in enumerate(item["rules"]):
            name = rule["name"] or "(unnamed rule)"
            if rule["isMatch"]:
                lines.append(f"    {style.good('OK   ')} {name}")
                continue
            if "error" in rule:
                lines.append(f"    {style.warn('ERROR')} {name}: {rule['error']}")
                continue
            texts = why.get((number - 1, position)) or ["did not match"]
            lines.append(f"    {style.bad('FAIL ')} {name}: {texts[0]}")
            lines.extend(f"          {' ' * len(name)}  {more}" for more in texts[1:])
    return "\n".join(lines)
