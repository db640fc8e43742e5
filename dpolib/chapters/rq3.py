"""RQ3 — does DPO benefit from a stronger reference? (paper §6, Tables 4-5; Appendix E, Table 7)

DPO's loss (Eq. 5) only sees the reference through ``log p_ref(y_w|x) - log p_ref(y_l|x)``; the
policy is pulled towards ``p_ref · exp(r/β) / Z`` (the optimum of Eq. 1). RQ3 swaps the SFT model
for a stronger reference and sweeps β over :data:`dpolib.experiments.config.BETAS` ``["rq3"]``
(the paper's {10, 1, 0.1, 0.01, 0.005}):

* ``self``: the student's own SFT model (Eq. 5 as in RQ1);
* ``compatible``: the larger SFT model of the student's family (same tokenizer and pretraining
  corpus style), the analogue of mistral-v0.2 for mistral-7b;
* ``incompatible``: the larger SFT model of the other family (other tokenizer, template, corpus),
  the analogue of mistral-v0.2 for tulu-2-7b.

Appendix E regularises the student towards its own best RQ1 DPO model (``rq1-best``).

The records are those of the ``rq1``, ``rq3`` and ``appendix-e`` grids (:func:`load`). The paper's
open question (§7), how to *measure* compatibility, is answered by the world
(:mod:`dpolib.world.compatibility`, stored in ``results/lab/<profile>/compatibility.json`` with
provenance); this chapter only reads that file (:func:`load_compatibility`). Everything else is a pure
function of :class:`~dpolib.experiments.records.Record` s, so the tests build synthetic records.
The best β of an arm is :func:`dpolib.experiments.records.best_record`; an arm's value over seeds is
:func:`dpolib.chapters.common.arm_stats`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import paper, paths, plotting
from ..experiments.config import BETAS
from ..experiments.records import Record, load_grid, select
from ..provenance import read_json
from ..scorecard import AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE, verdict_counts
from ..world.families import reference_model
from .common import arm_stats, best_record, compare, pm, student_label, students, sweep

__all__ = [
    "REFERENCES", "REFERENCE_LABELS", "PAPER_PAIRS", "GRIDS", "load", "pool", "appendix_e_reference", "best_table",
    "best_table_with_paper", "sweep_table", "gains", "appendix_e_table", "plot_sweeps", "plot_appendix_e",
    "load_compatibility", "compatibility_frame", "plot_compatibility", "reference_strength", "evidence",
    "answer",
]

#: The three references of RQ3 (the run configs' names).
REFERENCES = ("self", "compatible", "incompatible")
#: How each reference reads in tables and figures.
REFERENCE_LABELS = {
    "self": "self (own SFT model)",
    "compatible": "stronger, compatible (same family)",
    "incompatible": "stronger, incompatible (other family and tokenizer)",
}
#: Which of the paper's Table 5 columns plays each role, per paper student.
PAPER_PAIRS = {
    "mistral-7b": {"self": "self", "compatible": "mistral-v0.2", "incompatible": "llama3"},
    "tulu-2-7b": {"self": "self", "compatible": "llama3", "incompatible": "mistral-v0.2"},
}
#: The grids this chapter reads (RQ1 for the SFT rows, the self-reference sweep and App. E's reference; RQ3; App. E).
GRIDS = ("rq1", "rq3", "appendix-e")

#: ``record -> records of its arm at every seed`` (default: :func:`dpolib.experiments.records.replicates`).
Replicates = Callable[[Record], list[Record]]
Records = dict[str, list[Record]] | list[Record]


def load(profile: str, root: Path | None = None, complete: bool = False) -> dict[str, list[Record]]:
    """The committed records of :data:`GRIDS` at ``profile`` (reads only; ``complete``: see ``load_grid``)."""
    return {name: load_grid(name, profile, root=root, complete=complete) for name in GRIDS}


def pool(recs: Records) -> list[Record]:
    """The records of several grids as one list, each run once (RQ1 and RQ3 share self-reference runs)."""
    if not isinstance(recs, dict):
        return list(recs)
    return list({r.config: r for rs in recs.values() for r in rs}.values())


def _sft(recs: Records, student: str, seed: int = 0) -> Record | None:
    return next(iter(select(pool(recs), student=student, objective="sft", seed=seed)), None)


def _best(recs: Records, student: str, reference: str, seed: int = 0) -> Record | None:
    # for "self" this pools RQ1's and RQ3's sweeps (the paper's "self" column of Table 5 is RQ1's best)
    return best_record(pool(recs), student=student, objective="dpo", reference=reference, seed=seed)


def _runs(recs: Records, student: str, reference: str, seed: int = 0) -> list[Record]:
    return list(sweep(pool(recs), student, "dpo", reference, seed).values())


def appendix_e_reference(recs: Records, student: str, seed: int = 0) -> Record | None:
    """App. E's reference as the runner picks it: :func:`~dpolib.experiments.records.best_record` over the student's RQ1-grid DPO runs."""
    rq1 = [r for r in pool(recs) if r.beta in BETAS["rq1"]]
    return best_record(rq1, student=student, objective="dpo", reference="self", seed=seed)


def _lc(record: Record | None) -> float:
    return record.lc if record is not None else math.nan


def _cell(record: Record | None, metric: str = "lc_win_rate"):
    if record is None:
        return math.nan
    return "[degenerate]" if record.degenerate else getattr(record.metrics, metric)


# --------------------------------------------------------------------------- tables


def sweep_table(recs: Records, metric: str = "lc_win_rate", seed: int = 0, betas: Iterable[float] | None = None) -> pd.DataFrame:
    """Our Table 4: ``metric`` against β, one column per (student, reference); "[degenerate]" marked.

    ``betas`` restricts the rows (default: RQ3's grid, :data:`dpolib.experiments.config.BETAS` ``["rq3"]``).
    """
    betas = list(betas or BETAS["rq3"])
    cols = {}
    for s in students(pool(recs)):
        for ref in REFERENCES:
            runs = sweep(pool(recs), s, "dpo", ref, seed)
            cols[(student_label(s), ref)] = [_cell(runs.get(b), metric) for b in betas]
    df = pd.DataFrame(cols, index=pd.Index(betas, name="β"))
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["student", "reference"])
    return df


def best_table(recs: Records, replicates: Replicates | None = None) -> pd.DataFrame:
    """Our Table 5: per student, the SFT model and the best score with each reference.

    Rows: students (display labels). Columns, per reference ``r``: ``r`` (best LC win rate of seed 0),
    ``r β`` (the β it was reached at), ``r seeds`` (mean ± sd over the headline seeds that exist).
    """
    rows = {}
    for s in students(pool(recs)):
        sft = _sft(recs, s)
        row = {"original (SFT)": _lc(sft),
               "original (SFT) seeds": pm(arm_stats(sft, replicates_of=replicates)) if sft else "n/a"}
        for ref in REFERENCES:
            b = _best(recs, s, ref)
            row[ref] = _lc(b)
            row[f"{ref} β"] = b.beta if b else math.nan
            row[f"{ref} seeds"] = pm(arm_stats(b, replicates_of=replicates)) if b else "n/a (all degenerate or absent)"
        rows[student_label(s)] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "student"
    return df


def best_table_with_paper(recs: Records, replicates: Replicates | None = None) -> pd.DataFrame:
    """Table 5 in roles: ours (best LC and β per reference) beside the paper's (quoted) numbers.

    The paper's columns are mapped to roles by :data:`PAPER_PAIRS` (mistral-v0.2 is the compatible
    reference of mistral-7b and the incompatible one of tulu-2-7b; llama3 the reverse, §6).
    """
    ours = best_table(recs, replicates)
    rows = []
    for s in ours.index:
        rows.append({("who", ""): f"ours: {s}", ("original (SFT)", ""): ours.loc[s, "original (SFT)"],
                     **{(ref, "score"): ours.loc[s, ref] for ref in REFERENCES},
                     **{(ref, "β"): ours.loc[s, f"{ref} β"] for ref in REFERENCES}})
    t4 = paper.TABLE4.sweep()
    for student, roles in PAPER_PAIRS.items():
        row = {("who", ""): f"paper (quoted): {student}", ("original (SFT)", ""): paper.TABLE5.cell(student, "original")}
        for ref, col in roles.items():
            row[(ref, "score")] = paper.TABLE5.cell(student, col)
            if ref == "self":
                row[(ref, "β")] = float(paper.TABLE1.sweep()[student].idxmax())
            else:
                row[(ref, "β")] = float(t4[f"{student} / ref {col}"].idxmax())
        rows.append(row)
    df = pd.DataFrame(rows).set_index(("who", ""))
    df.index.name = None
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def gains(recs: Records, replicates: Replicates | None = None) -> pd.DataFrame:
    """The gain of each reference over the self reference: best LC(r) − best LC(self), per student.

    Columns: ``student``, ``reference``, ``best`` (mean over seeds), ``best β``, ``gain vs self``,
    ``gain vs SFT``, ``seed note`` and ``within spread`` (whether the difference to self lies within
    the seed-to-seed spread, :func:`dpolib.chapters.common.compare`).
    """
    rows = []
    for s in students(pool(recs)):
        sft = _sft(recs, s)
        st_self = arm_stats(_best(recs, s, "self"), replicates_of=replicates)
        for ref in REFERENCES:
            b = _best(recs, s, ref)
            st = arm_stats(b, replicates_of=replicates)
            cmp = None if ref == "self" else compare(st, st_self)
            rows.append({
                "student": s,
                "reference": ref,
                "best": st.mean,
                "best β": b.beta if b else math.nan,
                "gain vs self": st.mean - st_self.mean,
                "gain vs SFT": st.mean - _lc(sft),
                "seed note": cmp.text if cmp else "",
                "within spread": cmp.within_spread if cmp else None,
            })
    return pd.DataFrame(rows)


def appendix_e_table(recs: Records, seed: int = 0) -> pd.DataFrame:
    """Our Table 7: the student regularised to its best RQ1 DPO model, against β, beside the paper's.

    The first row is the reference itself (:func:`appendix_e_reference`); columns are ours (score;
    "[degenerate]" where so) and the paper's (quoted; mistral-7b with its β = 0.01 DPO model as reference).
    """
    rows, index = [], []
    t7 = paper.TABLE7
    col = t7.columns[0]
    for s in students(pool(recs)):
        runs = _runs(recs, s, "rq1-best", seed)
        if not runs:
            continue
        ref = appendix_e_reference(recs, s, seed)
        index.append(f"reference: RQ1 best (β = {ref.beta:g})" if ref else "reference: RQ1 best")
        rows.append({("ours", student_label(s)): _lc(ref)})
        for r in runs:
            index.append(f"{r.beta:g}")
            rows.append({("ours", student_label(s)): _cell(r)})
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows, index=index).groupby(level=0, sort=False).first()
    theirs = {"reference": t7.cell(t7.rows[0].label, col), **{f"{b:g}": t7.cell(f"{b:g}", col) for b in paper.APP_E_BETAS}}
    df[("paper (quoted)", col)] = [theirs["reference"] if i.startswith("reference") else theirs.get(i, math.nan) for i in df.index]
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    df.index.name = "β"
    return df


# --------------------------------------------------------------------------- figures


def plot_sweeps(recs: Records, seed: int = 0):
    """One panel per student: LC win rate against β for each reference, SFT dashed (our Table 4 as a figure)."""
    ss = students(pool(recs))
    fig, axes = plotting.figure(ncols=len(ss), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, s in zip(axes, ss):
        for ref in REFERENCES:
            runs = [r for r in _runs(recs, s, ref, seed) if r.beta in BETAS["rq3"]]
            ok = [r for r in runs if not r.degenerate]
            style = plotting.series(ref, label=REFERENCE_LABELS[ref])
            ax.plot([r.beta for r in ok], [r.lc for r in ok], **style)
            bad = [r.beta for r in runs if r.degenerate]
            if bad:
                ax.plot(bad, [0] * len(bad), linestyle="none", marker="X", markersize=9, color=style["color"],
                        label=f"{ref}: degenerate")
        sft = _sft(recs, s, seed)
        if sft:
            ax.axhline(sft.lc, **plotting.series("sft"))
        plotting.beta_axis(ax, label=r"$\beta$ (larger = closer to the reference)")
        ax.set_title(f"student: {student_label(s)}", fontsize=9)
    axes[0].set_ylabel("LC win rate vs baseline (%)")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5 * len(ss) + 0.05 * (len(ss) - 1), -0.18), ncol=2)
    return fig, axes


def plot_appendix_e(recs: Records, seed: int = 0):
    """Appendix E: LC win rate against β with the student's best RQ1 model as reference; the reference dotted."""
    fig, ax = plotting.figure()
    for s in students(pool(recs)):
        runs = [r for r in _runs(recs, s, "rq1-best", seed) if not r.degenerate]
        if not runs:
            continue
        line, = ax.plot([r.beta for r in runs], [r.lc for r in runs],
                        **plotting.series("dpo", label=f"{student_label(s)}, reference = its best RQ1 model"))
        ref = appendix_e_reference(recs, s, seed)
        if ref:
            ax.axhline(ref.lc, color=line.get_color(), linestyle=":",
                       label=f"the reference itself (RQ1 best, β = {ref.beta:g})")
        sft = _sft(recs, s, seed)
        if sft:
            ax.axhline(sft.lc, **plotting.series("sft"))
    plotting.beta_axis(ax, label=r"$\beta$ (larger = closer to the reference)")
    ax.set_ylabel("LC win rate vs baseline (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    return fig, ax


# --------------------------------------------------------------------------- compatibility


def load_compatibility(profile: str, root: Path | None = None) -> dict | None:
    """The stored compatibility measures of ``profile`` (``results/lab/<profile>/compatibility.json``), or ``None``.

    Written, with provenance and the stage keys of the models measured, by
    :func:`dpolib.world.compatibility.write_compatibility` (``python -m dpolib.experiments world``).
    """
    path = paths.compatibility_path(profile, root)
    return read_json(path) if path.exists() else None


def compatibility_frame(compat: dict | None, gain: pd.DataFrame) -> pd.DataFrame:
    """One row per (student, reference): the compatibility measures beside the gain of that reference."""
    rows = []
    for _, g in gain.iterrows():
        m = (compat or {}).get("measures", {}).get(g["student"], {}).get(g["reference"], {})
        rows.append({
            "student": g["student"],
            "reference": g["reference"],
            "reference model": m.get("reference_model", ""),
            "logp_corr": m.get("logp_corr", math.nan),
            "margin_corr": m.get("margin_corr", math.nan),
            "kl": m.get("kl", math.nan),
            "kl_se": m.get("kl_se", math.nan),
            "gain vs self": g["gain vs self"],
            "best β": g["best β"],
        })
    return pd.DataFrame(rows)


def plot_compatibility(frame: pd.DataFrame, measure: str = "logp_corr"):
    """The gain of each reference over self against a compatibility measure; one marker per reference."""
    fig, ax = plotting.figure()
    for ref in REFERENCES:
        sub = frame[frame["reference"] == ref]
        style = plotting.series(ref, label=REFERENCE_LABELS[ref])
        ax.plot(sub[measure], sub["gain vs self"], linestyle="none", markersize=9,
                **{k: v for k, v in style.items() if k != "linestyle"})
        for _, r in sub.iterrows() if ref != "self" else []:
            ax.annotate(r["student"], (r[measure], r["gain vs self"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        if measure == "kl":
            ax.errorbar(sub["kl"], sub["gain vs self"], xerr=1.96 * sub["kl_se"], linestyle="none", color=style["color"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel({"logp_corr": "correlation of sequence log-probs, student vs reference",
                   "margin_corr": "correlation of pair margins, student vs reference",
                   "kl": "KL(student ‖ reference), nats per response (95% CI)"}.get(measure, measure))
    ax.set_ylabel("best LC win rate: reference − self (points)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    return fig, ax


def reference_strength(profile: str, root: Path | None = None) -> pd.DataFrame:
    """How strong each SFT model is on its own: mean gold score of its greedy outputs on test prompts.

    Read from the world report ``results/lab/world_report_<profile>.json`` (``sft_quality``, keyed
    ``family/size``, written with its commit and date by :func:`dpolib.world.report.write_world_report`);
    empty when there is none. The roles are the cpu backend's: ``self`` = the student's ``small`` model,
    ``compatible`` = its family's ``large`` one, ``incompatible`` = the other family's ``large`` one.
    """
    path = paths.world_report_path(profile, root)
    if not path.exists():
        return pd.DataFrame()
    report = read_json(path)
    quality = report.get("sft_quality", {})
    families = list(dict.fromkeys(k.split("/")[0] for k in quality))
    rows = []
    for s in families:
        models = {ref: "/".join(reference_model(s, ref, families)) if len(families) == 2 or ref != "incompatible" else ""
                  for ref in REFERENCES}
        for ref in REFERENCES:
            rows.append({"student": s, "reference": ref, "reference model": models[ref],
                         "reference mean gold": quality.get(models[ref], {}).get("mean_gold", math.nan),
                         "student mean gold": quality.get(f"{s}/small", {}).get("mean_gold", math.nan)})
    df = pd.DataFrame(rows)
    df.attrs["source"] = f"{path.name} (commit {str(report.get('git_commit', '?'))[:8]}, {report.get('date', '?')})"
    return df


# --------------------------------------------------------------------------- claims


def evidence(recs: Records, compat: dict | None = None, replicates: Replicates | None = None) -> dict:
    """Everything the RQ3 and App. E claims are measured from.

    Keys: ``records`` (:func:`pool`, every world seed), ``students``, ``gains`` (:func:`gains`), ``sft`` ({student: LC}), ``compat``
    (:func:`compatibility_frame` of ``compat``, :func:`load_compatibility`'s dict), ``appendix_e``
    ({student: {best, best_beta, reference, reference_beta, n_runs}}).
    """
    g = gains(recs, replicates=replicates)
    ss = students(pool(recs))
    app = {}
    for s in ss:
        b, ref = _best(recs, s, "rq1-best"), appendix_e_reference(recs, s)
        if b is not None and ref is not None:
            app[s] = {"best": b.lc, "best_beta": b.beta, "reference": ref.lc, "reference_beta": ref.beta,
                      "n_runs": len(_runs(recs, s, "rq1-best"))}
    sft = {s: _lc(_sft(recs, s)) for s in ss}
    return {"records": pool(recs), "students": ss, "gains": g, "sft": sft, "compat": compatibility_frame(compat, g), "appendix_e": app}


def answer(ev: dict, card: pd.DataFrame) -> str:
    """The chapter's one-paragraph answer, computed from :func:`evidence` and the scorecard."""
    g = ev["gains"]
    parts = []
    for s in ev["students"]:
        cells = []
        for ref in ("compatible", "incompatible"):
            row = g[(g["student"] == s) & (g["reference"] == ref)]
            if row.empty or math.isnan(row["gain vs self"].iloc[0]):
                cells.append(f"the {ref} reference has no usable run")
            else:
                cells.append(f"the {ref} reference changes the best score by {row['gain vs self'].iloc[0]:+.2f} "
                             f"(at β = {row['best β'].iloc[0]:g})")
        parts.append(f"for {student_label(s)}, " + " and ".join(cells))
    verdict = card.set_index("id")["verdict"]
    counts = verdict_counts(card)
    pattern = {
        "agrees": "As in the paper, a stronger reference helps only when it is compatible. ",
        "disagrees": "Unlike the paper, this is not the pattern 'helps only when compatible'. ",
    }.get(verdict.get("rq3.only-if-compatible"), "")
    return (
        "In our lab world, " + "; ".join(parts) + " (points of LC win rate against the self reference's best). "
        + pattern + f"Of the {len(card)} claims, {counts[AGREES]} agree, {counts[DISAGREES]} disagree, "
        f"{counts[INCONCLUSIVE]} are inconclusive and {counts[NOT_TESTABLE]} are not testable here."
    )
