"""World 4's evidence rules: paired comparisons over test prompts, pooled over world seeds, and the validity gate.

A difference between two arms is measured on the same test prompts, so it is a *paired*
difference: per world seed, the per-prompt differences of gold (or of the length-controlled
win probability, in points) are bootstrapped over prompts (:func:`dpolib.stats.paired_bootstrap`);
pooled over world seeds, each world's mean difference counts equally and its prompts are
resampled within it (:func:`dpolib.stats.pooled_paired_bootstrap`). A finding counts when the
pooled 95% interval excludes zero **and** its direction holds in every world seed
(:attr:`ArmComparison.holds`).

The **validity gate** (issue "World 4"): before a grid is read as evidence about the paper, the
world must be able to show a DPO gain; at least one off-policy DPO arm must beat its SFT student
on gold beyond the pooled 95% interval. The on-policy control is shown beside it, labelled as a
diagnostic, never as a headline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..experiments.records import Record
from ..stats import Interval, paired_bootstrap, pooled_paired_bootstrap

__all__ = ["METRICS", "prompt_values", "ArmComparison", "compare_arms", "versus_sft", "Gate", "validity_gate",
           "half_width_summary"]

#: The per-prompt metrics a comparison can read, name -> (record field, scale, display name).
METRICS = {"gold": ("prompt_scores", 1.0, "gold"), "lc": ("prompt_lc", 100.0, "LC (points)")}


def prompt_values(record: Record, metric: str) -> np.ndarray:
    """A record's per-test-prompt values of ``metric`` (``"gold"`` or ``"lc"``, LC in points).

    Raises ``ValueError`` when the record holds no per-prompt values (a record older than World 4).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    name, scale, _ = METRICS[metric]
    values = getattr(record.metrics, name)
    if not values:
        raise ValueError(f"{record.config.label()} has no per-prompt {metric} values (a record older than World 4)")
    return scale * np.asarray(values, float)


@dataclass(frozen=True)
class ArmComparison:
    """Arm A minus arm B on one metric: per world seed and pooled, each with its paired 95% interval.

    Attributes:
        label: what A and B are.
        metric: ``"gold"`` or ``"lc"``.
        per_world: world seed -> the paired interval of that world's mean difference.
        pooled: the pooled interval (every world seed counted equally).
    """

    label: str
    metric: str
    per_world: dict
    pooled: Interval

    @property
    def holds(self) -> bool:
        """The pooled interval excludes zero and every world seed's estimate has the pooled sign."""
        sign = self.pooled.sign
        return sign != 0 and all(np.sign(iv.estimate) == sign for iv in self.per_world.values())

    @property
    def verdict(self) -> str:
        """``"A > B"``, ``"A < B"`` (each only when :attr:`holds`), or ``"cannot tell"``."""
        if not self.holds:
            return "cannot tell"
        return "A > B" if self.pooled.sign > 0 else "A < B"


def compare_arms(a: Sequence[Record], b: Sequence[Record], metric: str = "gold", label: str = "",
                 seed: int = 0) -> ArmComparison:
    """Arm ``a`` minus arm ``b``, matched by world seed (seeds present in only one arm are left out).

    Raises ``ValueError`` when the arms share no world seed or their test prompts differ in number.
    """
    by_seed_a, by_seed_b = {r.seed: r for r in a}, {r.seed: r for r in b}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    if not seeds:
        raise ValueError(f"arms {label or '?'} share no world seed ({sorted(by_seed_a)} vs {sorted(by_seed_b)})")
    pairs = [(prompt_values(by_seed_a[s], metric), prompt_values(by_seed_b[s], metric)) for s in seeds]
    per_world = {s: paired_bootstrap(x, y, seed=seed) for s, (x, y) in zip(seeds, pairs)}
    return ArmComparison(label, metric, per_world, pooled_paired_bootstrap(pairs, seed=seed))


def versus_sft(records: Iterable[Record], metric: str = "gold", **match) -> list[tuple[Record, ArmComparison]]:
    """Every trained arm matching ``match`` (grouped by student, objective, reference, β and pairs) against its
    student's SFT row in the same world seeds; returns ``(the arm's seed-0 record or first record, comparison)``."""
    records = list(records)
    arms: dict[tuple, list[Record]] = {}
    for r in records:
        if not r.is_sft and r.matches(**match):
            key = (r.student, r.objective, r.reference, r.beta, r.config.pairs)
            arms.setdefault(key, []).append(r)
    out = []
    for (student, objective, reference, beta, pairs), rows in arms.items():
        sft = [r for r in records if r.is_sft and r.student == student]
        if not sft:
            continue
        label = f"{student} {objective}/{reference} β={beta:g}" + ("" if pairs == "pool" else f" [{pairs}]")
        out.append((min(rows, key=lambda r: r.seed), compare_arms(rows, sft, metric, label)))
    return out


@dataclass(frozen=True)
class Gate:
    """The validity gate's outcome.

    Attributes:
        passed: some off-policy DPO arm beats its SFT student on gold beyond the pooled 95% interval.
        best: the off-policy arm with the largest pooled gold gain (``None`` without records).
        arms: every off-policy arm's comparison with its SFT student.
        controls: the on-policy control arms' comparisons (diagnostic, never a headline).
    """

    passed: bool
    best: ArmComparison | None
    arms: tuple
    controls: tuple

    def sentence(self) -> str:
        """One sentence saying whether the world passed, computed from the comparisons."""
        if self.best is None:
            return "The validity gate cannot be computed: no off-policy DPO records with per-prompt scores."
        iv = self.best.pooled
        if self.passed:
            return (f"The validity gate passes: {self.best.label} beats its SFT student on gold by "
                    f"{iv.format(3)} (pooled over {len(self.best.per_world)} world seeds, paired 95% interval).")
        return (f"The validity gate FAILS: no off-policy DPO arm beats its SFT student on gold beyond the 95% "
                f"interval; the best, {self.best.label}, differs by {iv.format(3)}. This world cannot test the "
                "paper's claims.")


def validity_gate(records: Iterable[Record]) -> Gate:
    """The gate over the RQ1 self-reference arms (DPO with the SFT reference, off-policy pairs) of ``records``."""
    records = [r for r in records if r.metrics.prompt_scores]
    arms = [c for _, c in versus_sft(records, "gold", objective="dpo", reference="self", pairs="pool")]
    controls = [c for _, c in versus_sft(records, "gold", objective="dpo", reference="self", pairs="on-policy")]
    best = max(arms, key=lambda c: c.pooled.estimate, default=None)
    passed = any(c.pooled.low > 0 for c in arms)
    return Gate(passed, best, tuple(arms), tuple(controls))


def half_width_summary(records: Iterable[Record]) -> dict:
    """The achieved paired 95% half-widths of DPO − SFT differences: per world seed and pooled, gold and LC.

    Returns ``{"lc_per_world": [...], "lc_pooled": [...], "gold_per_world": [...], "gold_pooled": [...]}``
    (one entry per off-policy arm; their medians and maxima are what the chapter reports).
    """
    records = [r for r in records if r.metrics.prompt_scores and r.metrics.prompt_lc]
    out: dict = {"lc_per_world": [], "lc_pooled": [], "gold_per_world": [], "gold_pooled": []}
    for metric in ("lc", "gold"):
        for _, c in versus_sft(records, metric, pairs="pool"):
            out[f"{metric}_per_world"] += [iv.half_width for iv in c.per_world.values()]
            out[f"{metric}_pooled"].append(c.pooled.half_width)
    return {k: [float(x) for x in v if math.isfinite(x)] for k, v in out.items()}
