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
from ..scorecard import Claim, Measurement, verdict_counts
from ..stats import spearman
from ..world.families import reference_model
from .common import arm_stats, best_record, compare, pm, student_label, students, sweep

__all__ = [
    "REFERENCES", "REFERENCE_LABELS", "PAPER_PAIRS", "GRIDS", "load", "pool", "appendix_e_reference", "best_table",
    "best_table_with_paper", "sweep_table", "gains", "appendix_e_table", "plot_sweeps", "plot_appendix_e",
    "load_compatibility", "compatibility_frame", "plot_compatibility", "reference_strength", "evidence", "claims",
    "REASONS", "answer",
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

    Keys: ``students``, ``gains`` (:func:`gains`), ``sft`` ({student: LC}), ``compat``
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
    return {"students": ss, "gains": g, "sft": sft, "compat": compatibility_frame(compat, g), "appendix_e": app}
def _row(ev, student, ref):
    g = ev["gains"]
    sub = g[(g["student"] == student) & (g["reference"] == ref)]
    return None if sub.empty or math.isnan(sub["best"].iloc[0]) else sub.iloc[0]


def _need(ev, *refs):
    missing = [f"{s}/{r}" for s in ev["students"] for r in refs if _row(ev, s, r) is None]
    return Measurement.missing("no usable run for " + ", ".join(missing)) if missing or not ev["students"] else None


def _compatible_beats_self(ev) -> Measurement:
    if (m := _need(ev, "self", "compatible")):
        return m
    rows = {s: _row(ev, s, "compatible") for s in ev["students"]}
    shown = "; ".join(f"{s}: {r['best']:.2f} vs self {_row(ev, s, 'self')['best']:.2f}" for s, r in rows.items())
    notes = "; ".join(f"{s}: {r['seed note']}" for s, r in rows.items())
    return Measurement({s: r["gain vs self"] for s, r in rows.items()}, all(r["gain vs self"] > 0 for r in rows.values()),
                       shown, notes)


def _only_if_compatible(ev) -> Measurement:
    if (m := _need(ev, "self", "compatible", "incompatible")):
        return m
    gc = {s: _row(ev, s, "compatible")["gain vs self"] for s in ev["students"]}
    gi = {s: _row(ev, s, "incompatible")["gain vs self"] for s in ev["students"]}
    ok = all(gc[s] > 0 >= gi[s] for s in ev["students"])
    shown = "; ".join(f"{s}: compatible {gc[s]:+.2f}, incompatible {gi[s]:+.2f}" for s in ev["students"])
    return Measurement((gc, gi), ok, shown, "gain of the best score over the self reference's best")


def _incompatible_vs_sft(ev) -> Measurement:
    if (m := _need(ev, "incompatible")):
        return m
    below = {s: _row(ev, s, "incompatible")["gain vs SFT"] <= 0 for s in ev["students"]}
    shown = "; ".join(f"{s}: {_row(ev, s, 'incompatible')['best']:.2f} vs SFT {ev['sft'][s]:.2f}" for s in ev["students"])
    k = sum(below.values())
    return Measurement(k, k >= 1, shown, f"{k} of {len(below)} students do not beat their SFT model (paper: 1 of 2)")


def _beta_larger(ev) -> Measurement:
    if (m := _need(ev, "self", "compatible")):
        return m
    pairs = {s: (_row(ev, s, "compatible")["best β"], _row(ev, s, "self")["best β"]) for s in ev["students"]}
    shown = "; ".join(f"{s}: {c:g} vs self {b:g}" for s, (c, b) in pairs.items())
    top = max(BETAS["rq3"])
    at_top = [s for s, (_, b) in pairs.items() if b >= top]
    note = "best β over the pooled RQ1 and RQ3 grids (self) and the RQ3 grid (compatible)"
    if at_top:
        note += f"; self's best β is already the largest tried ({top:g}) for " + ", ".join(at_top)
    return Measurement(pairs, all(c > b for c, b in pairs.values()), shown, note)


def _tokenizer(ev) -> Measurement:
    if (m := _need(ev, "self", "incompatible")):
        return m
    gi = {s: _row(ev, s, "incompatible")["gain vs self"] for s in ev["students"]}
    helped = [s for s, g in gi.items() if g > 0]
    if helped:
        return Measurement(gi, True, "; ".join(f"{s}: {g:+.2f}" for s, g in gi.items()),
                           "a reference with another tokenizer (and family) helped: " + ", ".join(helped))
    return Measurement(gi, None, "; ".join(f"{s}: {g:+.2f}" for s, g in gi.items()),
                       "not testable here: our compatible reference shares the student's tokenizer, and the other-tokenizer "
                       "reference is also from another family, so a failure cannot be blamed on the tokenizer")


def _practice(ev) -> Measurement:
    parts = {"compatible beats self": _compatible_beats_self(ev), "incompatible does not": _only_if_compatible(ev),
             "larger best β": _beta_larger(ev)}
    if any(p.agrees is None for p in parts.values()):
        return Measurement.missing("needs the self, compatible and incompatible sweeps of every student")
    failed = [k for k, p in parts.items() if not p.agrees]
    return Measurement({k: p.agrees for k, p in parts.items()}, not failed,
                       "; ".join(f"{k}: {'yes' if p.agrees else 'no'}" for k, p in parts.items()),
                       "all three parts hold" if not failed else "fails: " + ", ".join(failed))


def _compat_predicts(ev, measure: str = "logp_corr") -> Measurement:
    f = ev["compat"]
    f = f[f["reference"] != "self"].dropna(subset=[measure, "gain vs self"])
    if len(f) < 2:
        return Measurement.missing("no compatibility measures (python -m dpolib.experiments world writes them) or too few references")
    within = []
    for s, sub in f.groupby("student"):
        if len(sub) == 2:
            a, b = sub.iloc[0], sub.iloc[1]
            more = a if (a[measure] > b[measure]) == (measure != "kl") else b  # larger corr / smaller KL = more compatible
            other = b if more is a else a
            within.append(more["gain vs self"] > other["gain vs self"])
    rho = spearman(f[measure], f["gain vs self"])
    if measure == "kl":
        rho = -rho
    shown = f"Spearman {rho:+.2f} over {len(f)} student-reference pairs; more compatible reference gains more for {sum(within)} of {len(within)} students"
    return Measurement(rho, bool(within) and all(within), shown,
                       f"measure: {measure}; 4 points cannot separate a measure from the family label it follows")


def _appendix_e(ev) -> Measurement:
    app = ev["appendix_e"]
    if not app:
        return Measurement.missing("no Appendix E runs or no RQ1 record for the reference")
    over = {s: a["best"] > a["reference"] for s, a in app.items()}
    larger = {s: a["best_beta"] > a["reference_beta"] for s, a in app.items()}
    shown = "; ".join(f"{s}: {a['best']:.2f} at β {a['best_beta']:g} vs reference {a['reference']:.2f} (its β {a['reference_beta']:g})"
                      for s, a in app.items())
    ok = all(over.values()) and all(larger.values())
    note = "overtakes at a larger β" if ok else (
        "does not overtake its reference" if not all(over.values()) else "overtakes, but not at a larger β")
    return Measurement(app, ok, shown, note)


def claims() -> list[Claim]:
    """The RQ3, best-practice-2, open-question and Appendix E claims (digest §1, §6; Tables 4, 5, 7)."""
    t5 = paper.TABLE5
    return [
        Claim("rq3.compatible-beats-self", "RQ3", "A stronger, compatible reference beats the self reference", "§6, Table 5",
              f"mistral-7b: {t5.cell('mistral-7b', 'mistral-v0.2')} vs {t5.cell('mistral-7b', 'self')}; "
              f"tulu-2-7b: {t5.cell('tulu-2-7b', 'llama3')} vs {t5.cell('tulu-2-7b', 'self')}",
              "for every student, best LC with the compatible reference > best with self (means over seeds)",
              _compatible_beats_self),
        Claim("rq3.only-if-compatible", "RQ3", "A stronger reference helps only when it is compatible", "§6, Table 5",
              f"incompatible: mistral-7b {t5.cell('mistral-7b', 'llama3')} < self {t5.cell('mistral-7b', 'self')}; "
              f"tulu-2-7b {t5.cell('tulu-2-7b', 'mistral-v0.2')} < self {t5.cell('tulu-2-7b', 'self')}",
              "for every student, gain over self > 0 with the compatible reference and ≤ 0 with the incompatible one",
              _only_if_compatible),
        Claim("rq3.incompatible-not-above-sft", "RQ3", "An incompatible reference need not even beat the SFT model",
              "§6, Tables 4-5", f"tulu-2-7b with mistral-v0.2: {t5.cell('tulu-2-7b', 'mistral-v0.2')} vs SFT "
              f"{t5.cell('tulu-2-7b', 'original')} (3 of 5 β degenerate)",
              "at least one student's best with the incompatible reference ≤ its SFT model", _incompatible_vs_sft),
        Claim("rq3.beta-larger-with-compatible", "RQ3", "With a stronger compatible reference the optimal β is larger",
              "§6, Table 4", "β = 1.0 vs 0.01 (mistral-7b) and 0.02 (tulu-2-7b) with self",
              "for every student, best β (compatible) > best β (self)", _beta_larger),
        Claim("rq3.no-shared-tokenizer-needed", "RQ3", "Compatibility does not need a shared tokenizer", "§6, Table 5",
              f"tulu-2-7b gains from llama3 (another tokenizer): {t5.cell('tulu-2-7b', 'llama3')} vs {t5.cell('tulu-2-7b', 'self')}",
              "a reference with another tokenizer improves on self for some student", _tokenizer),
        Claim("practice.compatible-stronger-reference", "Practice",
              "Best practice 2: a stronger reference can help but must be compatible; then use a larger β",
              "§7 (Introduction)", "20.25 at β = 1.0 (mistral-7b, mistral-v0.2)",
              "the three RQ3 criteria above hold together", _practice),
        Claim("open.compatibility-measure", "Open question",
              "Compatibility can be measured, and the measure predicts which reference helps", "§7 (open question)",
              "no measure given; KL estimates called high-variance",
              "within each student, the reference with the higher log-prob correlation has the larger gain",
              _compat_predicts),
        Claim("appe.student-overtakes-reference", "App. E",
              "A student regularised to its own best DPO model overtakes that reference, at a larger β", "App. E, Table 7",
              "16.75 at β = 1.0 vs reference 16.24 (β = 0.01)",
              "best App. E LC > the reference's LC, at a β larger than the reference's own", _appendix_e),
    ]


#: The most likely reason for a disagreement, per claim id (shown only when the verdict is "disagrees").
REASONS = {
    "rq3.compatible-beats-self": (
        "our stronger reference is only a wider, deeper SFT model of the same family, trained on the same SFT "
        "data; pulling the student towards a model whose probabilities it cannot represent at its size costs "
        "capacity, while the paper's mistral-v0.2 was a much better instruction model (LC 20.55 vs 7.57)"
    ),
    "rq3.only-if-compatible": (
        "see the two claims it combines: the compatible reference must help and the incompatible one must not"
    ),
    "rq3.incompatible-not-above-sft": (
        "our incompatible reference is only moderately stronger, so regularising towards it costs little"
    ),
    "rq3.beta-larger-with-compatible": (
        "if the self reference's optimum is already at the largest β tried (see the note), no larger β exists "
        "in the grid; otherwise the compatible reference is not strong enough for the pull towards it to pay"
    ),
    "practice.compatible-stronger-reference": "it holds only if the three RQ3 claims above hold",
    "open.compatibility-measure": (
        "four points, two per student, cannot rank references reliably when the gains are within noise"
    ),
    "appe.student-overtakes-reference": (
        "our RQ1-best model is itself a weak improvement (or none) over SFT, so regularising to it at a large β "
        "keeps the student close to a model that is not better"
    ),
}


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
        + pattern + f"{counts['agrees']} of the {len(card)} claims agree, {counts['disagrees']} disagree and "
        f"{counts['not tested']} cannot be tested here."
    )
