"""Where every benchmark here puts its numbers: ``NAME.json`` and a ``NAME.png`` plot in the
results folder (``benchmarks/results/`` unless ``--out`` says otherwise).

The plot needs matplotlib (the ``demo`` extra); without it a benchmark still writes its JSON
and says why there is no plot.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["pyplot", "write_results"]


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[demo]'): no plot", file=sys.stderr)
        return None
    return plt


def write_results(
    out: Path, name: str, document: Mapping[str, Any], plot: Callable[[Path], bool]
) -> None:
    """Write ``out/NAME.json``, let ``plot`` draw ``out/NAME.png``, and say what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.json"]
    written[0].write_text(json.dumps(document, indent=2) + "\n")
    if plot(out / f"{name}.png"):
        written.append(out / f"{name}.png")
    print(f"\nwrote {' and '.join(str(path) for path in written)}")
