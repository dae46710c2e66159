"""Unit tests for extender.nfd.report: the validate JSON, the table and the matrix."""

from __future__ import annotations

import io
from typing import Any

from extender.nfd.report import (
    MatrixCell,
    Style,
    go_expression_string,
    matrix_json,
    node_report,
    render_matrix,
    render_table,
    use_color,
)
from extender.nfd.rules import ImageVerdict, SetSemantics, evaluate, load_spec
from extender.nfd.spec import MatchExpression, Spec
from extender.nodes.model import NodeFeatures


def verdict_for(text: str, features: NodeFeatures) -> tuple[Spec, ImageVerdict]:
    compiled = load_spec(text)
    return compiled.spec, evaluate(compiled, features, has_features=not features.is_empty)


def report_for(text: str, features: NodeFeatures) -> dict[str, Any]:
    spec, verdict = verdict_for(text, features)
    return node_report(features.node, spec, verdict)


NODE = NodeFeatures.build(
    "n1",
    {"kernel.loadedmodule": ["vfio_pci"], "cpu.cpuid": ["AVX2"]},
    {"cpu.model": {"vendor_id": "Intel", "family": "6"}, "system.osrelease": {"ID": "rhel"}},
    {"pci.device": [{"vendor": "8086", "class": "0200"}, {"vendor": "10de", "class": "0302"}]},
)


def test_go_expression_string() -> None:
    assert go_expression_string(MatchExpression("Exists")) == '{op: "Exists"}'
    assert go_expression_string(MatchExpression("In", ("Intel", "AMD"))) == (
        '{op: "In", value: ["Intel" "AMD"]}'
    )
    # type is not part of NFD's String()
    assert go_expression_string(MatchExpression("Ge", ("5.15",), "version")) == (
        '{op: "Ge", value: ["5.15"]}'
    )


def test_rows_are_sorted_like_nfd_and_match_name_rows_come_first() -> None:
    text = """
version: v1alpha1
compatibilities:
- rules:
  - name: r
    matchFeatures:
    - feature: kernel.loadedmodule
      matchExpressions:
        vfio_pci: {op: Exists}
        ice: {op: DoesNotExist}
    - feature: cpu.model
      matchExpressions:
        vendor_id: {op: In, value: ["Intel"]}
    - feature: kernel.loadedmodule
      matchName: {op: In, value: ["vfio_pci"]}
    - feature: cpu.model
      matchExpressions:
        vendor_id: {op: Exists}
"""
    rows = report_for(text, NODE)["sets"][0]["rules"][0]["matchedExpressions"]
    assert [(r["feature"], r["name"], r["expression"]["op"]) for r in rows] == [
        ("cpu.model", "vendor_id", "Exists"),  # '{op: "Exists"}' < '{op: "In", ...}'
        ("cpu.model", "vendor_id", "In"),
        ("kernel.loadedmodule", "", "In"),  # matchName: name ""
        ("kernel.loadedmodule", "ice", "DoesNotExist"),
        ("kernel.loadedmodule", "vfio_pci", "Exists"),
    ]
    assert all(r["isMatch"] for r in rows)
    assert rows[2]["matcherType"] == "matchName"


def test_missing_feature_rows_are_all_false_even_does_not_exist() -> None:
    text = """
version: v1alpha1
compatibilities:
- rules:
  - name: r
    matchFeatures:
    - feature: usb.device
      matchExpressions:
        vendor: {op: DoesNotExist}
      matchName: {op: Exists}
"""
    report = report_for(text, NODE)
    rows = report["sets"][0]["rules"][0]["matchedExpressions"]
    assert [(r["name"], r["matcherType"], r["isMatch"]) for r in rows] == [
        ("", "matchName", False),
        ("vendor", "matchExpression", False),
    ]
    assert report["reason"] == "usb.device: feature missing"


def test_is_match_is_truthful_where_nfd_reports_quirks() -> None:
    # NFD reports every row of an upper-case feature as failed, and an instance expression as
    # matched when *some* instance satisfies it alone; we report what is true.
    text = """
version: v1alpha1
compatibilities:
- rules:
  - name: upper-case feature
    matchFeatures:
    - feature: System.OsRelease
      matchExpressions:
        ID: {op: In, value: ["rhel"]}
  - name: one device with both
    matchFeatures:
    - feature: pci.device
      matchExpressions:
        vendor: {op: In, value: ["8086"]}
        class: {op: In, value: ["0302"]}
"""
    upper, device = report_for(text, NODE)["sets"][0]["rules"]
    assert upper["isMatch"] is True
    assert upper["matchedExpressions"][0]["isMatch"] is True
    assert upper["matchedExpressions"][0]["feature"] == "System.OsRelease"  # as written
    assert device["isMatch"] is False
    # No single device is an Intel 3D controller: not every row may say true (NFD says both).
    assert [r["isMatch"] for r in device["matchedExpressions"]] != [True, True]


def test_match_any_rows_and_omitted_fields() -> None:
    text = """
version: v1alpha1
compatibilities:
- rules:
  - name: nic
    matchAny:
    - matchFeatures:
      - feature: pci.device
        matchExpressions:
          vendor: {op: In, value: ["15b3"]}
    - matchFeatures: []
"""
    report = report_for(text, NODE)
    [compat] = report["sets"]
    assert list(compat) == ["rules", "matched"]  # no description, weight 0, tag ""
    [nic] = compat["rules"]
    assert list(nic) == ["name", "isMatch", "matchedAny"]
    assert nic["matchedAny"][1] == {"matchedExpressions": []}  # never omitted, never null
    assert nic["matchedAny"][0]["matchedExpressions"][0]["isMatch"] is False
    assert nic["isMatch"] is True  # the empty alternative matches


def test_evaluation_error_on_the_rule_and_the_set() -> None:
    text = """
version: v1alpha1
compatibilities:
- description: d
  weight: 5
  tag: t
  rules:
  - name: bad
    matchFeatures:
    - feature: cpu.model
      matchExpressions:
        vendor_id: {op: Gt, value: ["1"]}
  - name: good
    matchFeatures:
    - feature: cpu.model
      matchExpressions:
        family: {op: In, value: ["6"]}
"""
    report = report_for(text, NODE)
    [compat] = report["sets"]
    assert list(compat) == ["rules", "description", "weight", "tag", "matched", "error"]
    bad, good = compat["rules"]
    assert bad == {"name": "bad", "isMatch": False, "error": compat["error"]}
    assert "not a number 'Intel'" in compat["error"]
    assert good["isMatch"] is True


def test_use_color() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_color(Terminal(), {}) is True
    assert use_color(Terminal(), {"NO_COLOR": "1"}) is False
    assert use_color(Terminal(), {"NO_COLOR": ""}) is True  # set but empty: no effect
    assert use_color(io.StringIO(), {}) is False


DPDK_LIKE = """
version: v1alpha1
compatibilities:
- description: fast
  tag: preferred
  weight: 10
  rules:
  - name: modules
    matchFeatures:
    - feature: kernel.loadedmodule
      matchExpressions:
        vfio_pci: {op: Exists}
        nvidia: {op: Exists}
  - name: cpu
    matchFeatures:
    - feature: cpu.model
      matchExpressions:
        vendor_id: {op: In, value: ["AMD"]}
"""


def test_table_lines() -> None:
    _, verdict = verdict_for(DPDK_LIKE, NODE)
    text = render_table("n1", "app", verdict)
    assert text.splitlines() == [
        "app on node n1: NOT compatible: kernel.loadedmodule: nvidia Exists",
        "  NO MATCH set 1, tag preferred, weight 10: fast",
        "    FAIL  modules: kernel.loadedmodule: nvidia Exists (node: absent)",
        "    FAIL  cpu: cpu.model: vendor_id In [AMD] (node: 'Intel')",
    ]
    assert "\x1b[" not in text
    coloured = render_table("n1", "app", verdict, style=Style(color=True))
    assert "\x1b[31m" in coloured
    assert "every set must match" in render_table("n1", "app", verdict, semantics=SetSemantics.ALL)


def test_matrix() -> None:
    other = NodeFeatures.build(
        "n2",
        {"kernel.loadedmodule": ["vfio_pci", "nvidia"]},
        {"cpu.model": {"vendor_id": "AMD"}},
        {},
    )
    cells = []
    for node in (NODE, other):
        spec, verdict = verdict_for(DPDK_LIKE, node)
        cells.append(MatrixCell(node.node, "app", spec, verdict))
    single = render_matrix(cells).splitlines()
    assert single[0].split() == ["NODE", "COMPATIBLE", "REASON"]
    assert single[1].split(None, 2) == ["n1", "no", "kernel.loadedmodule: nvidia Exists"]
    assert single[2].split() == ["n2", "yes", "(fit", "11)"]
    spec, verdict = verdict_for(DPDK_LIKE.replace("AMD", "Intel"), NODE)
    cells.append(MatrixCell("n1", "other", spec, verdict))
    grid = render_matrix(cells).splitlines()
    assert grid[0].split() == ["NODE", "app", "other"]
    assert grid[1].split() == ["n1", "no", "no"]
    assert grid[2].split() == ["n2", "yes", "(fit", "11)"]  # no cell for n2/other
    assert grid[3:] == [
        "",
        "Not compatible:",
        "  n1 / app: kernel.loadedmodule: nvidia Exists",
        "  n1 / other: kernel.loadedmodule: nvidia Exists",
    ]
    listed = matrix_json(cells)
    assert [(r["spec"], r["node"], r["compatible"]) for r in listed] == [
        ("app", "n1", False),
        ("app", "n2", True),
        ("other", "n1", False),
    ]
