"""evaluation/stats.py against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from rewardgym.evaluation.stats import (
    MIN_SEEDS_FOR_IQM,
    bootstrap_ci,
    defined,
    iqm,
    prob_beats,
    summarise,
)


def test_bootstrap_ci_of_a_constant_is_that_constant() -> None:
    assert bootstrap_ci([5.0, 5.0, 5.0, 5.0]) == (5.0, 5.0)


def test_bootstrap_ci_of_one_value_has_zero_width() -> None:
    assert bootstrap_ci([2.5]) == (2.5, 2.5)


def test_bootstrap_ci_of_one_two_three_spans_the_extremes() -> None:
    # a resample of [1, 2, 3] is all ones (mean 1) with probability 1/27 ≈ 3.7 % > 2.5 %, and
    # all threes likewise, so the 2.5th and 97.5th percentiles of the means are exactly 1 and 3
    assert bootstrap_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)


def test_bootstrap_ci_narrows_with_lower_confidence_and_is_seeded() -> None:
    values = [1.0, 4.0, 2.0, 8.0, 5.0, 7.0]
    low95, high95 = bootstrap_ci(values)
    low50, high50 = bootstrap_ci(values, confidence=0.5)
    assert low95 < low50 < sum(values) / len(values) < high50 < high95
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)


def test_bootstrap_ci_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="bootstrap_ci needs at least one value"):
        bootstrap_ci([])


def test_iqm_cuts_a_quarter_from_each_end() -> None:
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100]) == 3.5  # middle four: 2, 3, 4, 5
    assert iqm([100, 1, 3, 2, 4]) == 3.0  # sorted 1..4, 100: cut one each end -> 2, 3, 4
    assert iqm([7.0]) == 7.0
    assert iqm([1.0, 3.0]) == 2.0  # nothing to cut from two values


def test_prob_beats_counts_ties_as_half() -> None:
    # pairs (2,1) win, (2,2) tie, (3,1) win, (3,2) win -> 3.5 / 4
    assert prob_beats([2, 3], [1, 2]) == 0.875
    assert prob_beats([1, 1], [1, 1]) == 0.5
    assert prob_beats([0], [1]) == 0.0


def test_prob_beats_lower_is_better() -> None:
    assert prob_beats([1, 2], [2, 3], higher_is_better=False) == 0.875
    assert prob_beats([5], [1], higher_is_better=False) == 0.0


def test_defined_drops_none_nan_inf_and_bools() -> None:
    assert defined([1, None, float("nan"), 2.5, float("inf"), True, -3]) == [1.0, 2.5, -3.0]


def test_summarise_ignores_undefined_values_but_keeps_them_listed() -> None:
    s = summarise([1.0, None, 3.0, float("nan"), 2.0])
    assert (s.n, s.mean, s.iqm) == (3, 2.0, None)
    assert s.ci_low is not None and 1.0 <= s.ci_low <= s.ci_high <= 3.0
    assert s.values[:3] == [1.0, None, 3.0] and math.isnan(s.values[3])


def test_two_values_get_no_confidence_interval() -> None:
    """A bootstrap interval of two values is only their range: the report gives the range."""
    s = summarise([1.0, None, 3.0])
    assert (s.n, s.mean, s.ci_low, s.ci_high) == (2, 2.0, None, None)


def test_summarise_with_no_defined_value_has_no_statistics() -> None:
    s = summarise([None, None])
    assert s.to_dict() == {
        "n": 0,
        "mean": None,
        "ci_low": None,
        "ci_high": None,
        "iqm": None,
        "values": [None, None],
    }


def test_summarise_gives_iqm_only_from_five_seeds() -> None:
    assert MIN_SEEDS_FOR_IQM == 5
    assert summarise([1.0, 2.0, 3.0, 4.0]).iqm is None
    s = summarise([100.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.n, s.mean, s.iqm) == (5, 22.0, 3.0)


def test_summarise_of_a_constant() -> None:
    s = summarise([4.0, 4.0, 4.0])
    assert (s.n, s.mean, s.ci_low, s.ci_high) == (3, 4.0, 4.0, 4.0)
