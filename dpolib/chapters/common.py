"""What every chapter shares: labels, sweeps, seed pooling, comparisons of arms, and how numbers are shown.

One definition each, so that the RQ1, RQ2, RQ3, Appendix E and Practice chapters read
the same evidence the same way:

* :data:`STUDENT_LABELS` (short display names) and :data:`STUDENT_DESCRIPTIONS` (what each student is);
* :func:`sweep` — an arm's runs by β at one seed (β = ∞ for the SFT row);
* the best β is :func:`dpolib.experiments.records.best_record` (re-exported as :func:`best_record`);
* :func:`pool_seeds` — an arm's value over its seeds (:class:`ArmStats`), every seed counted,
  degenerate ones included (a seed that degenerates is an outcome of the arm, not missing data);
* :func:`compare` — the difference of two arms and whether it lies within their seed spread
  (:func:`dpolib.stats.within_spread`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..experiments.records import Record, best_record, replicates
from ..stats import within_spread

__all__ = [
    "SFT_BETA",
    "STUDENT_LABELS",
    "STUDENT_DESCRIPTIONS",
    "student_label",
    "beta_label",
    "metric_of",
    "students",
    "sweep",
    "best_record",
    "ArmStats",
    "pool_seeds",
    "arm_stats",
    "Comparison",
    "compare",
    "pm",
]

#: β of the SFT row, which has no KL-regularised training (the paper's "∞ / original" row).
SFT_BETA = math.inf

#: How the CPU world's students are named in tables and figures; any other name (a gpu student) is shown as is.
STUDENT_LABELS = {"char": "char student", "bpe": "bpe student"}
#: What each CPU-world student is (for the set-up paragraphs of the chapters).
STUDENT_DESCRIPTIONS = {
    "char": "char (character tokenizer, Zephyr-like template)",
    "bpe": "bpe (BPE tokenizer, ChatML-like template)",
}


def student_label(name: str) -> str:
    """The display name of a student: :data:`STUDENT_LABELS` or the raw name."""
    return STUDENT_LABELS.get(name, name)


def beta_label(beta: float, sft: str = "∞ (SFT)") -> str:
    """β as a row label: ``sft`` for β = ∞, else ``f"{β:g}"``."""
    return sft if beta == SFT_BETA else f"{beta:g}"


def metric_of(record: Record, metric: str | Callable[[Record], float]) -> float:
    """A metric of a record as a float: a :class:`~dpolib.experiments.records.Metrics` field name or a function."""
    if callable(metric):
        return float(metric(record))
    value = getattr(record.metrics, metric)
    return math.nan if value is None else float(value)


def students(records: Iterable[Record]) -> list[str]:
    """The students of ``records`` in order of first appearance."""
    return list(dict.fromkeys(r.student for r in records))


def sweep(records: Iterable[Record], student: str, objective: str = "dpo", reference: str = "self",
          seed: int | None = 0, with_sft: bool = False) -> dict[float, Record]:
    """``{β: record}`` of one arm, largest β first (``with_sft``: the SFT row at β = ∞ first).

    ``seed=None`` keeps the lowest seed of each β.
    """
    out: dict[float, Record] = {}
    for r in records:
        if r.student != student or (seed is not None and r.seed != seed):
            continue
        if not ((r.objective == objective and r.reference == reference) or (with_sft and r.is_sft)):
            continue
        if r.beta not in out or r.seed < out[r.beta].seed:
            out[r.beta] = r
    return dict(sorted(out.items(), key=lambda kv: -kv[0]))


@dataclass(frozen=True)
class ArmStats:
    """One arm's metric over the seeds that exist (every seed counted, degenerate ones included).

    Attributes:
        values: the metric at each seed, in seed order. seeds: those seeds. n_degenerate: seeds that degenerated.
    """

    values: tuple = ()
    seeds: tuple = ()
    n_degenerate: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation (ddof = 1); NaN with fewer than two seeds."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan


def pool_seeds(records: Iterable[Record], metric: str | Callable[[Record], float] = "lc_win_rate") -> ArmStats:
    """The one seed-pooling rule: every given record of an arm, in seed order, degenerate ones included."""
    reps = sorted(records, key=lambda r: r.seed)
    return ArmStats(tuple(metric_of(r, metric) for r in reps), tuple(r.seed for r in reps),
                    sum(r.degenerate for r in reps))


def arm_stats(record: Record | None, metric: str | Callable[[Record], float] = "lc_win_rate",
              replicates_of: Callable[[Record], list[Record]] | None = None) -> ArmStats:
    """:func:`pool_seeds` over the arm of ``record``: its config at every headline seed that has a record.

    ``replicates_of(record)`` finds them (default: :func:`dpolib.experiments.records.replicates` of the
    record's config; tests pass a stub); the record alone when none is found; empty for ``None``.
    """
    if record is None:
        return ArmStats()
    reps = (replicates_of or (lambda r: replicates(r.config)))(record) or [record]
    return pool_seeds(reps, metric)


@dataclass(frozen=True)
class Comparison:
    """``a − b`` of two arms, and whether the difference lies within their seed spread (``None``: cannot tell)."""

    diff: float
    within_spread: bool | None
    text: str


def pm(stats: ArmStats, digits: int = 2) -> str:
    """``mean ± sd (n seeds)``; ``n/a`` without seeds."""
    if stats.n == 0:
        return "n/a"
    if stats.n == 1:
        return f"{stats.mean:.{digits}f} (1 seed)"
    return f"{stats.mean:.{digits}f} ± {stats.sd:.{digits}f} ({stats.n} seeds)"


def compare(a: ArmStats, b: ArmStats) -> Comparison:
    """The difference of two arms' seed means and whether it exceeds the seed-to-seed spread.

    The rule is :func:`dpolib.stats.within_spread` (the mean ± 1 sd bars overlap); with too
    few seeds the text says the spread is unknown.
    """
    diff = a.mean - b.mean
    within = within_spread(diff, a.sd, a.n, b.sd, b.n)
    if within is not None and a.n >= 2 and b.n >= 2:
        relation = "is within" if within else "exceeds"
        text = (f"difference {diff:+.2f} {relation} the seed-to-seed spread (sd {a.sd:.2f} and {b.sd:.2f}; "
                f"{a.n} and {b.n} seeds)")
    elif within:
        known = a if a.n >= 2 else b
        text = (f"difference {diff:+.2f} is within the seed-to-seed spread of the arm with seeds "
                f"(sd {known.sd:.2f}; {a.n} and {b.n} seeds)")
    else:
        text = f"difference {diff:+.2f}; seed spread unknown ({a.n} and {b.n} seeds; needs at least 2 per arm)"
    return Comparison(diff, within, text)
