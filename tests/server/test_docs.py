"""docs/configuration.md and docs/metrics.md are generated from the tables in the code; a
stale page fails here (regenerate it with `make docs`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from extender.server import config, metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    ("page", "render"),
    [("configuration.md", config.configuration_page), ("metrics.md", metrics.metrics_page)],
)
def test_generated_page_is_up_to_date(page: str, render: object) -> None:
    assert callable(render)
    committed = (DOCS / page).read_text()
    assert committed == render(), f"docs/{page} is stale: run `make docs` and commit it"


def test_configuration_page_has_a_row_per_flag_and_variable() -> None:
    text = (DOCS / "configuration.md").read_text()
    for option in config.OPTIONS:
        assert f"| `{option.flag}`" in text
        assert f"`{option.env}`" in text


def test_metrics_page_has_one_row_per_metric() -> None:
    rows = [
        line for line in (DOCS / "metrics.md").read_text().splitlines() if line.startswith("| `")
    ]
    assert [row.split("`")[1] for row in rows] == [m.name for m in metrics.METRICS]
