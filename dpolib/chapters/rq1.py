"""RQ1: how strong should the KL constraint be? The chapter's evidence, tables and seed comparison.

The paper's §4 {Liu, Liu & Cohan 2024} trains DPO (Eq. 5) from two SFT models with
the SFT model itself as the reference, over β ∈ {0.1, 0.05, 0.02, 0.01, 0.005}, and
reports:

* Table 1: the AlpacaEval 2 length-controlled (LC) win rate against β, with the SFT
  model as the row β = ∞ and "[degenerate]" where a model degenerated;
* Table 2: the ranking accuracy on validation pairs of the implicit reward
  r_θ = β log p_θ(y|x)/p_ref(y|x) (Eq. 6) and of the policy p_θ(y|x);
* Figures 1 and 2: token-level changes (Eq. 8), in :mod:`dpolib.chapters.rq1_tokens`; the figures
  against β and the exact world's dense curve are in :mod:`dpolib.chapters.rq1_figures`.

This module builds our analogues from typed :class:`~dpolib.experiments.records.Record`\\ s
(grid ``"rq1"``, read with :func:`dpolib.experiments.records.load_grid`) and gathers the
per-run diagnostics the paper's RQ1 claims need; the claims themselves, decided by the
book's verdict rule on paired per-prompt evidence pooled over world seeds, are in
``dpolib.chapters.rq1_claims``. The evidence is every SFT row and every self-reference DPO run it is given, whatever grid
it came from (the RQ3 grid's β = 1 and 10 included). Nothing here knows the students'
names: they are read from the records. The SFT row is β = ∞ (:attr:`Record.beta
<dpolib.experiments.records.Record.beta>`); the best β is
:func:`dpolib.experiments.records.best_record`; seeds are pooled by
:func:`dpolib.chapters.common.pool_seeds` and arms compared by :func:`dpolib.chapters.common.compare`.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import paper
from ..experiments.records import Record
from .common import (SFT_BETA, arm_stats, beta_label, best_record, compare, metric_of, pm, student_label,
                     students as _all_students, sweep)
from .rq1_tokens import MIN_COUNT, dpo_sweep, eos_diff, eos_rank, imbalance

__all__ = [
    "PAPER_COLUMNS", "RHO", "students", "sweep_records", "sweep_frame", "best_beta", "table1", "table2", "styled",
    "HEADLINE_ARMS", "headline", "arm_of", "versus", "evidence", "train_reward_accuracy",
]

#: The paper's columns (Tables 1 and 2) put beside each of our students, in order (display only).
PAPER_COLUMNS = ("mistral-7b", "tulu-2-7b")
#: A trend "holds" when the Spearman rank correlation with β has at least this magnitude.
RHO = 0.7
#: The headline arms of each student, compared over seeds.
HEADLINE_ARMS = ("SFT", "β = 0.1", "best β")


def _is_rq1(record: Record) -> bool:
    return record.is_sft or (record.objective == "dpo" and record.reference == "self")


def students(records: Iterable[Record]) -> list[str]:
    """The students that have an SFT row or a self-reference DPO run, in order of first appearance."""
    return _all_students(r for r in records if _is_rq1(r))


def sweep_records(records: Iterable[Record], student: str) -> dict[float, Record]:
    """``{β: record}`` of one student's SFT row (β = ∞) and self-reference DPO runs, largest β first.

    :func:`dpolib.chapters.common.sweep` with the SFT row; where several seeds of one β are given,
    the lowest is kept (the sweep is seed 0's; :func:`headline` gathers the other seeds).
    """
    return sweep(records, student, "dpo", "self", seed=None, with_sft=True)


def sweep_frame(records: Iterable[Record], metric: str | Callable[[Record], float] = "lc_win_rate") -> pd.DataFrame:
    """One metric against β: rows β (∞ = SFT first, then descending), one column per student; NaN where missing."""
    records = list(records)
    data = {s: {b: metric_of(r, metric) for b, r in sweep_records(records, s).items()} for s in students(records)}
    df = pd.DataFrame(data)
    df = df.loc[sorted(df.index, key=lambda b: -b)] if len(df) else df
    df.index.name = "β"
    return df


def best_beta(records: Iterable[Record], student: str, metric: str = "lc_win_rate") -> float | None:
    """The student's best β: :func:`~dpolib.experiments.records.best_record` over its self-reference DPO sweep
    (degenerate runs excluded); ``None`` when every run degenerated."""
    best = best_record(dpo_sweep(records, student).values(), metric)
    return None if best is None else best.beta


# --------------------------------------------------------------------------- Tables 1 and 2


def _paper_label(beta: float) -> str:
    return beta_label(beta, sft="∞ (original)")


def _paper_column(table: paper.PaperTable, column: str, betas: list[float]) -> list[str]:
    labels = {r.label for r in table.rows}
    degenerate = set(table.degenerate)
    out = []
    for b in betas:
        label = _paper_label(b)
        if label not in labels:
            out.append("–")
        elif (label, column) in degenerate:
            out.append("[degenerate]")
        else:
            out.append(f"{table.cell(label, column):.{table.decimals.get(column, 2)}f}")
    return out


def _betas(records: list[Record]) -> list[float]:
    return sorted({b for s in students(records) for b in sweep_records(records, s)}, key=lambda b: -b)


def table1(records: Iterable[Record], metric: str = "lc_win_rate", with_paper: bool = True,
           decimals: int = 2) -> pd.DataFrame:
    """Our Table 1: ``metric`` (default the LC win rate, %) against β, SFT row included.

    A run whose ``degenerate`` flag is set (more than half of its test outputs never stop or
    repeat themselves) reads "[degenerate]", as in the paper; a missing run "–". With
    ``with_paper``, the paper's Table 1 columns follow, labelled "paper: ..." (β = 0.001 is
    not in the paper's grid). ``attrs["best"]`` holds the (row, column) cells of each
    student's best β (for :func:`styled`).
    """
    records = list(records)
    betas = _betas(records)
    cols, best = {}, set()
    for s in students(records):
        runs = sweep_records(records, s)
        col = f"ours: {student_label(s)}"
        cells = []
        for b in betas:
            r = runs.get(b)
            cells.append("–" if r is None else "[degenerate]" if r.degenerate else f"{metric_of(r, metric):.{decimals}f}")
        cols[col] = cells
        bb = best_beta(records, s, metric)
        if bb is not None:
            best.add((beta_label(bb), col))
    if with_paper:
        for c in paper.TABLE1.columns:
            cols[f"paper: {c}"] = _paper_column(paper.TABLE1, c, betas)
        best |= {(lab if lab != "∞ (original)" else beta_label(SFT_BETA), f"paper: {c}") for lab, c in paper.TABLE1.bold}
    df = pd.DataFrame(cols, index=pd.Index([beta_label(b) for b in betas], name="β"))
    df.attrs["best"] = best
    return df


def table2(records: Iterable[Record], with_paper: bool = True) -> pd.DataFrame:
    """Our Table 2: ranking accuracy on the validation pairs against β, per student.

    ``r_θ``: fraction of pairs with r_θ(x, y_w) > r_θ(x, y_l), r_θ of Eq. (6) (β cancels);
    ``p_θ``: fraction with log p_θ(y_w|x) > log p_θ(y_l|x) (summed log-probs); ties count 1/2.
    The SFT row's r_θ is 0.5 by construction (r_θ ≡ 0). Degenerate runs are still scored
    (ranking uses the validation pairs, not generations), and marked with a trailing "†".
    """
    records = list(records)
    betas = _betas(records)
    cols = {}
    for s in students(records):
        runs = sweep_records(records, s)
        for key, name in (("reward_accuracy", "r_θ"), ("policy_accuracy", "p_θ")):
            cells = []
            for b in betas:
                r = runs.get(b)
                cells.append("–" if r is None else f"{metric_of(r, key):.3f}" + ("†" if r.degenerate else ""))
            cols[f"ours: {student_label(s)} {name}"] = cells
    if with_paper:
        for c in paper.TABLE2.columns:
            cols[f"paper: {c}"] = _paper_column(paper.TABLE2, c, betas)
    df = pd.DataFrame(cols, index=pd.Index([beta_label(b) for b in betas], name="β"))
    df.attrs["best"] = set()
    return df


def styled(table: pd.DataFrame, caption: str = ""):
    """A Styler: the cells in ``table.attrs["best"]`` bold, paper columns shaded, index kept."""
    best = table.attrs.get("best", set())

    def weight(frame):
        return pd.DataFrame(
            [["font-weight: bold" if (i, c) in best else "" for c in frame.columns] for i in frame.index],
            index=frame.index, columns=frame.columns,
        )

    paper_cols = [c for c in table.columns if str(c).startswith("paper:")]
    sty = table.style.apply(weight, axis=None)
    if paper_cols:
        sty = sty.set_properties(subset=paper_cols, **{"background-color": "#f3f3f3"})
    if caption:
        sty = sty.set_caption(caption).set_table_styles(
            [{"selector": "caption", "props": "caption-side: top; text-align: left; max-width: 48em"}])
    return sty


# --------------------------------------------------------------------------- seeds: the headline comparison


def headline(records: Iterable[Record], replicates_of: Callable[[Record], list[Record]] | None = None,
             metric: str = "lc_win_rate") -> pd.DataFrame:
    """The headline arms of each student over seeds: SFT, β = 0.1 (the customary value), the best β.

    The best β is chosen on the sweep's seed (0): the other seeds are an independent check of it.
    Each arm is :func:`dpolib.chapters.common.arm_stats` of its sweep record: ``replicates_of(record)``
    returns the records of the record's config at every headline seed that exists (default
    :func:`dpolib.experiments.records.replicates`; the record itself if none is found), pooled by
    :func:`~dpolib.chapters.common.pool_seeds` (every seed, degenerate ones included).

    Returns:
        A frame with one row per student and arm and the columns ``student``, ``arm`` (:data:`HEADLINE_ARMS`),
        ``β``, ``n`` (seeds), ``seeds``, ``mean``, ``sd`` (NaN with one seed), ``values``,
        ``n_degenerate`` and ``stats`` (the :class:`~dpolib.chapters.common.ArmStats`).
    """
    records = list(records)
    columns = ["student", "arm", "β", "n", "seeds", "mean", "sd", "values", "n_degenerate", "stats"]
    rows = []
    for s in students(records):
        runs = sweep_records(records, s)
        for name, b in zip(HEADLINE_ARMS, (SFT_BETA, 0.1, best_beta(records, s, metric))):
            if b is None or b not in runs:
                continue
            st = arm_stats(runs[b], metric, replicates_of)
            rows.append({"student": s, "arm": name, "β": b, "n": st.n, "seeds": st.seeds, "mean": st.mean,
                         "sd": st.sd, "values": st.values, "n_degenerate": st.n_degenerate, "stats": st})
    return pd.DataFrame(rows, columns=columns)


def arm_of(head: pd.DataFrame, student: str, arm: str) -> pd.Series | None:
    """The row of one student's arm in a :func:`headline` frame (``None`` when absent)."""
    rows = head[(head["student"] == student) & (head["arm"] == arm)]
    return rows.iloc[0] if len(rows) else None


def versus(head: pd.DataFrame, student: str, a: str = "best β", b: str = "SFT") -> str:
    """One sentence: arm ``a`` against arm ``b`` of a student, with :func:`~dpolib.chapters.common.compare`'s verdict."""
    label = student_label(student)
    ra, rb = arm_of(head, student, a), arm_of(head, student, b)
    if ra is None or rb is None:
        return f"{label}: the arms {a!r} and {b!r} are not both available."
    if ra["β"] == rb["β"]:
        return f"{label}: the best β is {ra['β']:g} itself, so the two arms are the same run."
    a_name = f"best β = {ra['β']:g}" if a == "best β" else a
    return f"{label}: {a_name} scores {pm(ra['stats'])} against {pm(rb['stats'])} for {b}; {compare(ra['stats'], rb['stats']).text}."


# --------------------------------------------------------------------------- evidence


def train_reward_accuracy(record: Record, tail: float = 0.1) -> float:
    """r_θ ranking accuracy on the *training* batches at the end of training: the mean of TRL's
    ``rewards/accuracies`` over the last ``tail`` of the logged steps (NaN without curves)."""
    rows = [c["rewards/accuracies"] for c in record.curves if "rewards/accuracies" in c]
    if not rows:
        return math.nan
    return float(np.mean(rows[-max(1, int(round(tail * len(rows)))):]))


def evidence(records: Iterable[Record], replicates_of: Callable[[Record], list[Record]] | None = None,
             min_count: int = MIN_COUNT, metric: str = "lc_win_rate") -> dict:
    """Everything the RQ1 claims test, per student, computed from the records.

    Every SFT row and self-reference DPO run given is evidence (pass the RQ3 grid's records too and
    its β = 1 and 10 runs join the sweep).

    Returns:
        A dict with ``students`` (a list), ``min_count``, ``headline`` (the frame of
        :func:`headline`) and ``per_student``, a dict per student that holds ``betas`` (DPO β,
        descending), ``score``, ``degenerate``, ``policy_acc``, ``reward_acc``, ``length``,
        ``eos_diff``, ``eos_rank``, ``extreme``, ``ratio`` and ``train_acc`` (each ``{β: value}``, DPO runs),
        ``sft_score``, ``sft_length``, ``best_beta``.
    """
    records = list(records)
    per = {}
    for s in students(records):
        runs = sweep_records(records, s)
        dpo = {b: r for b, r in runs.items() if b != SFT_BETA}
        d: dict = {"betas": list(dpo), "best_beta": best_beta(records, s, metric)}
        d["score"] = {b: metric_of(r, metric) for b, r in dpo.items()}
        d["degenerate"] = {b: r.degenerate for b, r in dpo.items()}
        d["policy_acc"] = {b: metric_of(r, "policy_accuracy") for b, r in dpo.items()}
        d["reward_acc"] = {b: metric_of(r, "reward_accuracy") for b, r in dpo.items()}
        d["length"] = {b: metric_of(r, "mean_length_tokens") for b, r in dpo.items()}
        d["eos_rank"] = {b: eos_rank(r, min_count) for b, r in dpo.items()}
        d["eos_diff"] = {b: eos_diff(r) for b, r in dpo.items()}
        d["extreme"], d["ratio"] = {}, {}
        for b, r in dpo.items():
            d["extreme"][b], d["ratio"][b] = imbalance(r, min_count)
        d["train_acc"] = {b: train_reward_accuracy(r) for b, r in dpo.items()}
        sft = runs.get(SFT_BETA)
        d["sft_score"] = metric_of(sft, metric) if sft else math.nan
        d["sft_length"] = metric_of(sft, "mean_length_tokens") if sft else math.nan
        per[s] = d
    return {"students": list(per), "per_student": per, "min_count": min_count,
            "headline": headline(records, replicates_of, metric) if per else pd.DataFrame()}
