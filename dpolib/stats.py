"""The two statistics every experiment chapter uses: Spearman's rank correlation and the seed-spread rule.

One definition each, so that the RQ1, RQ2, RQ3 and Practice chapters judge the same
evidence the same way.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["spearman", "within_spread"]


def spearman(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman's rank correlation (Pearson on average ranks, ties averaged).

    Pairs with a non-finite side are dropped; NaN with fewer than 3 pairs left or a constant side
    (a constant is no trend).
    """
    x, y = np.asarray(list(x), float), np.asarray(list(y), float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return math.nan
    rx, ry = pd.Series(x[keep]).rank().to_numpy(), pd.Series(y[keep]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def within_spread(diff: float, sd_a: float, n_a: int, sd_b: float, n_b: int) -> bool | None:
    """Is a difference of two arms' seed means within their seed-to-seed spread?

    With at least two seeds in both arms: True when ``abs(diff) <= sd_a + sd_b`` (the mean ± 1 sd
    bars overlap), else False. With two or more seeds in only one arm, the other arm's sd is
    unknown: a difference within the known arm's sd is within the spread (True), a larger one is
    undecided (None). With fewer than two seeds in both arms: None.
    """
    if n_a >= 2 and n_b >= 2:
        return bool(abs(diff) <= sd_a + sd_b)
    if n_a >= 2 or n_b >= 2:
        known = sd_a if n_a >= 2 else sd_b
        return True if abs(diff) <= known else None
    return None
