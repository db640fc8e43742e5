"""The shared statistics: one Spearman and one seed-spread rule for every chapter."""

import math

import numpy as np
import pytest

from dpolib.stats import spearman, within_spread


def _average_ranks(values):
    """1-based ranks, ties sharing the mean of their positions (the textbook definition)."""
    order = sorted(values)
    return [sum(i + 1 for i, v in enumerate(order) if v == x) / order.count(x) for x in values]


def test_spearman_matches_pandas_with_ties_and_drops_non_finite_pairs():
    x = [1, 2, 2, 3, 5, 8, float("nan")]
    y = [3, 1, 4, 1, 5, 9, 2]
    expected = np.corrcoef(_average_ranks(x[:-1]), _average_ranks(y[:-1]))[0, 1]  # ranks computed independently
    assert spearman(x, y) == pytest.approx(expected)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [2, 1]))  # too few pairs
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))  # a constant is no trend


def test_within_spread_rule():
    assert within_spread(1.0, 0.6, 3, 0.5, 3) is True  # bars overlap
    assert within_spread(2.0, 0.6, 3, 0.5, 3) is False
    assert within_spread(0.5, math.nan, 1, 1.0, 3) is True  # within the one known spread
    assert within_spread(2.0, math.nan, 1, 1.0, 3) is None  # beyond it: the single-seed arm's sd is unknown
    assert within_spread(0.1, math.nan, 1, math.nan, 1) is None
