"""The soak's answer checks refuse wrong answers: without this, a soak with zero errors could
mean a checker that never looks."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import soak

ASKED = ["a", "b", "c"]


def test_filter_sets_of_a_right_answer() -> None:
    # A node passes: the rejected ones are not named (serve's default --filter-reasons).
    answer = {"NodeNames": ["a"], "FailedAndUnresolvableNodes": {}, "FailedNodes": {}}
    assert soak.filter_sets(answer, ASKED) == (["a"], {"b", "c"})
    # None passes: every one is named.
    answer = {
        "NodeNames": [],
        "FailedAndUnresolvableNodes": {"a": "x", "b": "x"},
        "FailedNodes": {"c": "y"},
    }
    assert soak.filter_sets(answer, ASKED) == ([], {"a", "b", "c"})


@pytest.mark.parametrize(
    "answer",
    [
        {"NodeNames": None, "Error": "not synced"},
        {"NodeNames": [], "FailedAndUnresolvableNodes": {"a": "x", "b": "x"}},  # c unnamed
        {"NodeNames": ["a"], "FailedAndUnresolvableNodes": {"b": "x"}},  # named though a passes
        {"NodeNames": ["a", "b", "c", "d"]},  # d was not asked
        {"NodeNames": ["a", "a", "b", "c"]},
        {"NodeNames": ["a", "b", "c"], "FailedAndUnresolvableNodes": {"a": "x"}},
        ["a", "b", "c"],
    ],
)
def test_filter_sets_refuses(answer: object) -> None:
    with pytest.raises(soak.WrongAnswerError):
        soak.filter_sets(answer, ASKED)


def test_history_allows_only_the_states_held_during_the_call() -> None:
    history = soak.History({7: 0}, lag=1.0)
    history.record(7, sent=10.0, accepted=10.5, kind=3)
    history.record(7, sent=20.0, accepted=20.5, kind=0)
    assert history.allowed(7, 0.0, 9.9) == {0}
    assert history.allowed(7, 11.0, 11.4) == {0, 3}  # within the lag after type 3 was accepted
    assert history.allowed(7, 12.0, 19.0) == {3}
    assert history.allowed(7, 19.0, 20.0) == {3, 0}
    assert history.allowed(7, 22.0, math.inf) == {0}
    # Not yet accepted: from the moment it is sent, the new state and the old are both right,
    # and the old stays right until the apiserver accepted the update and the lag passed.
    history.send(7, 3)
    assert history.allowed(7, 1e12, 1e12) == {0, 3}
    history.accepted(7)
    assert history.allowed(7, math.inf, math.inf) == {3}


def test_rss_slope() -> None:
    assert soak.slope_kb_per_min([(0.0, 100), (60.0, 110), (120.0, 120)]) == pytest.approx(10.0)
    assert soak.slope_kb_per_min([(0.0, 100), (60.0, 100)]) is None
