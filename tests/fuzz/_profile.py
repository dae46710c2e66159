"""Hypothesis settings of the fuzz targets and the tally of inputs each target ran.

Two modes. The short mode (the default) runs in ``make test``: a few dozen examples per
target, derandomized, so a run is cheap and the same on every machine. The long mode
(``HYPOTHESIS_PROFILE=fuzz``, what ``make fuzz`` sets) runs each target's long budget,
multiplied by ``FUZZ_SCALE``, with fresh random inputs every run.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
LONG_PROFILE = "fuzz"
SHORT_PROFILE = "fuzz-short"

# Fuzz inputs are large and often rejected on purpose; only a crash or a broken property is a
# finding, not the pace at which inputs are drawn.
_SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]

settings.register_profile(
    SHORT_PROFILE,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    LONG_PROFILE,
    deadline=None,
    derandomize=False,
    database=None,
    print_blob=True,
    report_multiple_bugs=True,
    suppress_health_check=_SUPPRESSED,
)

LONG = os.environ.get(PROFILE_ENV) == LONG_PROFILE
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))

# Inputs run per target (the test function's name), counted by each target itself, so the
# figure includes what shrinking ran and excludes examples Hypothesis threw away.
INPUTS: Counter[str] = Counter()
current_target = [""]


def fuzz_settings(short: int, long: int) -> settings:
    """The settings of one target: ``short`` examples in make test, ``long`` in make fuzz."""
    if LONG:
        return settings(
            settings.get_profile(LONG_PROFILE), max_examples=max(1, round(long * SCALE))
        )
    return settings(settings.get_profile(SHORT_PROFILE), max_examples=short)


def count() -> None:
    """One input reached the target under test."""
    INPUTS[current_target[0]] += 1
