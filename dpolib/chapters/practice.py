"""The Practice chapter: the paper's two best practices tested on our records, and a computed checklist.

The paper closes with two recommendations (digest §6): with the SFT model as reference use a
β smaller than 0.1 but tune it (a cliff lies just below the optimum), and use a stronger
reference only if it is compatible with the student, with a larger β. This module turns
every record of the RQ1–RQ3 grids into the chapter's evidence (:func:`evidence`), splits the
two recommendations into testable claims (:func:`claims`, evaluated with
:func:`dpolib.scorecard.scorecard`) and writes the chapter's checklist (:func:`checklist`)
from the same evidence and the training-dynamics tables of :mod:`dpolib.chapters.practice_dynamics`.

The claims live in :mod:`dpolib.chapters.practice_claims` (the verdict rule on paired per-prompt
differences pooled over world seeds). The best β of a DPO sweep, in the claims and in the checklist,
is RQ1's rule (:func:`dpolib.chapters.practice_claims.best_beta`: LC averaged over world seeds, a β
degenerate in any world excluded); :func:`~dpolib.chapters.practice.best_arm` applies :func:`~dpolib.chapters.common.best_record`
to the lowest-seed records of other arms (e.g. the probability objective); an arm's score in tables
pools every seed of it, degenerate ones included (:func:`~dpolib.chapters.common.pool_seeds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

import pandas as pd

from .. import paper
from ..experiments.records import HEADLINE_SEEDS, Record, replicates
from ..scorecard import Claim
from ..stats import spearman
from . import practice_claims
from .common import ArmStats, arm_stats, best_record, pool_seeds, sweep
from .rq2 import METHOD_LABELS

__all__ = [
    "PracticeEvidence",
    "with_replicates",
    "arms",
    "evidence",
    "arm_of",
    "best_arm",
    "pooled",
    "best_beta_line",
    "claims",
    "checklist",
    "plot_sweeps",
]


# --------------------------------------------------------------------------- evidence


def with_replicates(records: Iterable[Record], seeds: Iterable[int] | None = None, root=None) -> list[Record]:
    """``records`` plus every other-seed record of the same configs that exists (one record per config).

    ``seeds`` defaults to :data:`dpolib.experiments.records.HEADLINE_SEEDS`; ``root`` to the committed
    results (:func:`dpolib.experiments.records.replicates` reads them; nothing is run).
    """
    seeds = tuple(seeds) if seeds is not None else HEADLINE_SEEDS
    out: dict = {}
    for r in records:
        out.setdefault(r.config, r)
        for rep in replicates(r.config, seeds=seeds, root=root):
            out.setdefault(rep.config, rep)
    return list(out.values())


def _arm_key(record: Record):
    """A record's arm: its config with the seed left out."""
    return replace(record.config, seed=0)


def arm_of(records: Iterable[Record], record: Record) -> list[Record]:
    """The records of ``record``'s arm (same config at any seed) among ``records``."""
    key = _arm_key(record)
    return [r for r in records if _arm_key(r) == key]


def arms(records: Iterable[Record], metric: str = "lc_win_rate") -> pd.DataFrame:
    """One row per arm (student, objective, reference, β), its seeds pooled by :func:`~dpolib.chapters.common.pool_seeds`.

    Columns: ``student, objective, reference, beta`` (∞ for the SFT row), ``score`` (mean ``metric``
    over every seed present, degenerate seeds included), ``spread`` (max − min over those seeds),
    ``n_seeds``, ``n_degenerate``, ``degenerate`` (any seed degenerate), ``policy_accuracy``,
    ``length_chars`` (seed means).
    """
    cols = ["student", "objective", "reference", "beta", "score", "spread", "n_seeds", "n_degenerate", "degenerate",
            "policy_accuracy", "length_chars"]
    groups: dict = {}
    for r in {r.config: r for r in records}.values():
        groups.setdefault(_arm_key(r), []).append(r)
    rows = []
    for reps in groups.values():
        first, stats = reps[0], pool_seeds(reps, metric)
        rows.append({
            "student": first.student, "objective": first.objective, "reference": first.reference, "beta": first.beta,
            "score": stats.mean, "spread": float(max(stats.values) - min(stats.values)), "n_seeds": stats.n,
            "n_degenerate": stats.n_degenerate, "degenerate": stats.n_degenerate > 0,
            "policy_accuracy": pool_seeds(reps, "policy_accuracy").mean,
            "length_chars": pool_seeds(reps, "mean_length_chars").mean,
        })
    if not rows:
        return pd.DataFrame(columns=cols)
    keys = ["student", "objective", "reference", "beta"]
    return pd.DataFrame(rows, columns=cols).sort_values(keys, ascending=[True, True, True, False]).reset_index(drop=True)


@dataclass(frozen=True)
class PracticeEvidence:
    """What the Practice scorecard and checklist read (built by :func:`evidence`).

    Attributes:
        records: every record, one per config (all seeds).
        sweeps: one record per arm, its lowest seed: the records the best-β rule chooses among.
        students: the students, sorted. metric: the score (a :class:`~dpolib.experiments.records.Metrics` field).
        arms: :func:`arms` of ``records`` (for tables and figures).
        cache: the claims' sweeps over world seeds and paired comparisons, filled on first use
            (:func:`dpolib.chapters.practice_claims.sweeps`).
    """

    records: tuple
    sweeps: tuple
    students: list
    metric: str
    arms: pd.DataFrame
    cache: dict = field(default_factory=dict, compare=False, repr=False)


def evidence(records: Iterable[Record], metric: str = "lc_win_rate") -> PracticeEvidence:
    """The chapter's evidence from every record it has (RQ1, RQ2, RQ3 grids and any replicates).

    Configurations shared between grids are counted once.
    """
    unique = list({r.config: r for r in records}.values())
    lowest: dict = {}
    for r in sorted(unique, key=lambda r: r.seed):
        lowest.setdefault(_arm_key(r), r)
    return PracticeEvidence(tuple(unique), tuple(lowest.values()), sorted({r.student for r in unique}), metric,
                            arms(unique, metric))


def pooled(ev: PracticeEvidence, record: Record | None, metric: str | None = None) -> ArmStats:
    """:func:`~dpolib.chapters.common.arm_stats` of ``record``'s arm over the evidence's seeds (``metric``
    defaults to the evidence's)."""
    return arm_stats(record, metric or ev.metric, replicates_of=lambda r: arm_of(ev.records, r))


def best_arm(ev: PracticeEvidence, **match) -> Record | None:
    """The best β of the matching sweep records: :func:`~dpolib.chapters.common.best_record` (degenerate excluded)."""
    return best_record(ev.sweeps, ev.metric, **match)


def _sweep(ev: PracticeEvidence, student: str, reference: str) -> list[Record]:
    """A student's DPO sweep with ``reference``, smallest β first (one record per β)."""
    return sorted(sweep(ev.sweeps, student, "dpo", reference, seed=None).values(), key=lambda r: r.beta)


def _best(ev: PracticeEvidence, student: str, reference: str) -> Record | None:
    """The lowest-seed record of the student's best β with ``reference``, chosen by RQ1's rule on LC pooled over
    world seeds (:func:`dpolib.chapters.practice_claims.best_beta`)."""
    b = practice_claims.best_beta(ev, student, reference)
    return None if b is None else next((r for r in _sweep(ev, student, reference) if r.beta == b), None)


def best_beta_line(ev: PracticeEvidence, students: list[str], reference: str) -> str:
    """One line per student: the best β with ``reference``, its score pooled over seeds, and the seed count."""
    rows = []
    for s in students:
        best = _best(ev, s, reference)
        if best is not None:
            stats = pooled(ev, best)
            rows.append(f"{s}: β = {best.beta:g} (LC {stats.mean:.1f}, {stats.n} seed(s))")
    return "; ".join(rows) or "no runs"


# --------------------------------------------------------------------------- claims


def claims(flipped: Iterable[str] = ()) -> list[Claim]:
    """The paper's two best practices (digest §6) as testable claims over :func:`~dpolib.chapters.practice.evidence`:
    :func:`dpolib.chapters.practice_claims.claims` (the verdict rule on paired per-prompt differences pooled
    over world seeds, the best β by RQ1's rule; ``flipped`` negates criteria, for tests)."""
    return practice_claims.claims(flipped)


# --------------------------------------------------------------------------- checklist


def checklist(card: pd.DataFrame, ev: PracticeEvidence, trajectories: pd.DataFrame, log2: pd.DataFrame,
              drift: pd.DataFrame, lengths: pd.DataFrame) -> pd.DataFrame:
    """The chapter's checklist: each item, the paper's basis and our evidence, computed.

    Args:
        card: the Practice scorecard (:func:`dpolib.scorecard.scorecard` of :func:`claims`).
        ev: :func:`evidence`.
        trajectories, log2, drift, lengths: :func:`~dpolib.chapters.practice_dynamics.trajectory_summary`,
            :func:`~dpolib.chapters.practice_dynamics.loss_vs_log2`, :func:`~dpolib.chapters.practice_dynamics.drift_table`,
            :func:`~dpolib.chapters.practice_dynamics.length_table` of the same records.

    Returns:
        columns ``item``, ``paper``, ``ours`` (computed text), ``see`` (scorecard ids or chapter section).
    """
    verdict = dict(zip(card["id"], card["verdict"])) if len(card) else {}
    ours_of = dict(zip(card["id"], card["ours"])) if len(card) else {}
    paper_of = dict(zip(card["id"], card["paper"])) if len(card) else {}  # the paper's side, from dpolib.paper

    def best_betas(reference):
        parts = [f"{s} {b.beta:g}" for s in ev.students if (b := _best(ev, s, reference)) is not None]
        return ", ".join(parts) or "no runs"

    self_dpo = drift[(drift["objective"] == "dpo") & (drift["reference"] == "self")] if len(drift) else drift
    rho_drift = spearman(self_dpo["beta"], self_dpo["drift"]) if len(self_dpo) else float("nan")
    rho_margin = spearman(self_dpo["beta"], self_dpo["margin_end"]) if len(self_dpo) else float("nan")
    n_fall = int(trajectories["falls_while_grows"].sum()) if len(trajectories) else 0
    n_runs = len(trajectories)
    n_flat = int(log2["stays_flat"].sum()) if len(log2) else 0
    flat_betas = sorted({float(b) for b in log2.loc[log2["stays_flat"], "beta"]}) if n_flat else []
    n_start = int(log2["starts_at_log2"].sum()) if len(log2) else 0
    n_step1 = int(log2["has_step1"].sum()) if len(log2) else 0
    start_refs = sorted(set(log2.loc[log2["starts_at_log2"], "reference"])) if n_start else []
    trained = lengths[lengths["objective"] != "sft"] if len(lengths) else lengths
    n_longer = int(trained["longer_than_sft"].sum()) if len(trained) else 0
    dpo_len = trained[(trained["objective"] == "dpo") & (trained["reference"] == "self")] if len(trained) else trained
    rho_len = spearman(dpo_len["beta"], dpo_len["length_chars"]) if len(dpo_len) else float("nan")

    prob_students = {r.student for r in ev.sweeps if r.objective == "probability"}
    candidates = [r for r in ev.sweeps if r.student in prob_students]
    prob = best_record(candidates, ev.metric, objective="probability")
    dpo = best_record(candidates, ev.metric, objective="dpo", reference="self")

    def arm_text(name, r):
        return (f"{name} {pooled(ev, r).mean:.1f} (β {r.beta:g}, "
                f"{pooled(ev, r, 'mean_length_chars').mean:.0f} chars)")

    prob_text = (f"{arm_text('best probability', prob)} vs {arm_text('best DPO', dpo)}"
                 if prob is not None and dpo is not None else "no probability runs")
    f = lambda x: "n/a" if x != x else f"{x:+.2f}"  # noqa: E731
    t3 = paper.TABLE3  # the paper's side of items 5 and 6
    t3_length = {k: t3.cell(label, "Length") for k, label in METHOD_LABELS.items()}
    t3_score = {k: t3.cell(label, "Score (LC)") for k, label in METHOD_LABELS.items()}
    items = [
        ("Sweep β on a log grid on both sides of 0.1 (with the SFT reference) and keep the step below the optimum "
         "in view: the optimum moves by orders of magnitude between settings.",
         f"{paper_of.get('practice.best-beta-below-0.1', 'n/a')}; {paper_of.get('practice.cliff-below-optimum', 'n/a')}",
         f"best β with the self reference: {best_betas('self')}; with the compatible one: {best_betas('compatible')}. "
         f"Scorecard: best β < 0.1 {verdict.get('practice.best-beta-below-0.1', 'n/a')}; cliff below the optimum "
         f"{verdict.get('practice.cliff-below-optimum', 'n/a')}.",
         "practice.best-beta-below-0.1, practice.cliff-below-optimum"),
        ("Remember the direction: larger β = stronger constraint (closer to the reference). Compare runs by how far "
         "the policy moved and by held-out quality, not by the logged reward margin, which is scaled by β.",
         "Eq. 1, Eq. 6",
         f"rank correlation with β over self-reference runs: distance from the reference {f(rho_drift)}, logged "
         f"reward margin {f(rho_margin)}.",
         "§ Which way is stronger"),
        ("Do not panic when logps/chosen falls: DPO only fixes the margin, and both log-probs can fall while it grows.",
         "not discussed by the paper (§7 lists training dynamics as open)",
         f"{n_fall} of {n_runs} runs had the chosen log-prob fall while the margin grew.",
         "§ The chosen log-prob falls"),
        ("A step-1 loss of exactly log 2 means the reference equals the initial policy; a loss that stays near log 2 "
         "means β·margin stays small (expected at tiny β; a bug if the margins are exactly 0 throughout).",
         "Eq. 5 at zero margin",
         (f"{n_start} of {n_step1} runs with a logged step 1 started at log 2 "
          f"(references: {', '.join(start_refs) or 'none'}); " if n_step1 else
          "no run keeps its step-1 loss (the records keep window means of their curves), so the start is not "
          "measured here; ")
         + f"{n_flat} started and ended within 10% of log 2"
         + (f" (β = {', '.join(f'{b:g}' for b in flat_betas)})." if flat_betas else "."),
         "§ A loss stuck at log 2"),
        ("Log output length and the EOS log-prob next to the score; a falling β lengthens outputs.",
         f"EOS the most down-weighted token; length {t3_length['sft']:.0f} → {t3_length['dpo']:.0f} (DPO) and "
         f"{t3_length['probability']:.0f} (probability), {t3.number}",
         f"{n_longer} of {len(trained)} trained runs write longer outputs than their SFT model; rank correlation of "
         f"length with β (self-reference DPO): {f(rho_len)}.",
         "§ Outputs get longer"),
        ("'Reference-free' is DPO with a uniform reference: its first loss is not log 2, its β lives on another "
         "scale, and it is not a free lunch.",
         f"probability {t3_score['probability']:.2f} vs DPO {t3_score['dpo']:.2f} ({t3.number}), outputs "
         f"{t3_length['probability'] / t3_length['dpo']:.1f}× longer",
         prob_text + ".",
         "§ What reference-free means"),
        ("Try a stronger reference from the student's own family, and raise β with it; treat another family's "
         "model as an experiment.",
         f"{paper_of.get('practice.compatible-reference-helps', 'n/a')}; incompatible "
         f"{paper_of.get('practice.incompatible-reference-no-help', 'n/a')}; "
         f"{paper_of.get('practice.larger-beta-with-strong-reference', 'n/a')}",
         f"compatible helps: {ours_of.get('practice.compatible-reference-helps', 'n/a')} "
         f"({verdict.get('practice.compatible-reference-helps', 'n/a')}); incompatible: "
         f"{ours_of.get('practice.incompatible-reference-no-help', 'n/a')} "
         f"({verdict.get('practice.incompatible-reference-no-help', 'n/a')}); larger β: "
         f"{verdict.get('practice.larger-beta-with-strong-reference', 'n/a')}.",
         "practice.compatible-reference-helps, practice.incompatible-reference-no-help, "
         "practice.larger-beta-with-strong-reference"),
    ]
    return pd.DataFrame(items, columns=["item", "paper", "ours", "see"])


# --------------------------------------------------------------------------- figures


def plot_sweeps(arms_table: pd.DataFrame, axes=None):
    """Score against β, one panel per student, one line per reference of the DPO runs; the SFT score dashed.

    ``arms_table`` is :func:`arms` (scores pooled over seeds; arms with a degenerate seed are also drawn
    as crosses on the axis). Returns ``(fig, axes)``.
    """
    from .. import plotting

    students = sorted(arms_table["student"].unique())
    if axes is None:
        fig, axes = plotting.figure(ncols=max(len(students), 1), height=3.6, squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    for ax, student in zip(axes, students):
        sub = arms_table[arms_table["student"] == student]
        for ref in ("self", "compatible", "incompatible"):
            g = sub[(sub["objective"] == "dpo") & (sub["reference"] == ref)].sort_values("beta")
            if g.empty:
                continue
            ax.plot(g["beta"], g["score"], **plotting.series(ref))
            bad = g[g["degenerate"]]
            if len(bad):
                ax.plot(bad["beta"], [0.0] * len(bad), ls="none", marker="x", color=plotting.series(ref)["color"])
        sft = sub.loc[sub["objective"] == "sft", "score"]
        if len(sft):
            ax.axhline(float(sft.mean()), **{k: v for k, v in plotting.series("sft").items() if k != "marker"})
        ax.set_title(student)
        plotting.beta_axis(ax)
    axes[0].set_ylabel("LC win rate (%)")
    axes[0].legend(loc="best")
    return fig, axes
