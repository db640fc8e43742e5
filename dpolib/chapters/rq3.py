"""RQ3 — does DPO benefit from a stronger reference? (paper §6, Tables 4-5; Appendix E, Table 7)

DPO's loss (Eq. 5) only sees the reference through ``log p_ref(y_w|x) - log p_ref(y_l|x)``; the
policy is pulled towards ``p_ref · exp(r/β) / Z`` (the optimum of Eq. 1). RQ3 swaps the SFT model
for a stronger reference and sweeps β ∈ {10, 1, 0.1, 0.01, 0.005} (:data:`dpolib.paper.RQ3_BETAS`):

* ``self``: the student's own SFT model (Eq. 5 as in RQ1);
* ``compatible``: the larger SFT model of the student's family (same tokenizer and pretraining
  corpus style), the analogue of mistral-v0.2 for mistral-7b;
* ``incompatible``: the larger SFT model of the other family (other tokenizer, template, corpus),
  the analogue of mistral-v0.2 for tulu-2-7b.

Appendix E regularises the student towards its own best RQ1 DPO model (``rq1-best``).

The paper's open question (§7) is how to *measure* compatibility. :func:`measure_compatibility`
computes, for every student and reference, on the validation split of the preference data:

* ``logp_corr``: Pearson correlation of log p_s(y|x) and log p_ref(y|x) over all responses;
* ``margin_corr``: the same for the pair margins log p(y_w|x) − log p(y_l|x), the only reference
  quantity DPO uses;
* ``kl``: a Monte-Carlo estimate of the sequence-level KL(p_s ‖ p_ref) =
  E_{y∼p_s}[log p_s(y|x) − log p_ref(y|x)] (Eq. 2 with p_θ = p_s, the DPO start point), from one
  sampled response per validation prompt (responses that end with EOS), with its standard error.
  Each model scores the text with its own tokenizer, so the measure works across tokenizers.

It is cached, with provenance, in ``results/lab/<profile>/compatibility.json`` and read back while
the world's models are unchanged (their stage keys match). Everything else is a pure function of
records, so the tests build synthetic records. Student names are read from the records.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import paper
from ..scorecard import Claim, Measurement
from . import runner
from .rq2 import compare, display, seed_stats
from .stats import spearman

__all__ = [
    "REFERENCES",
    "REFERENCE_LABELS",
    "PAPER_PAIRS",
    "records",
    "students",
    "best",
    "best_table",
    "best_table_with_paper",
    "sweep_table",
    "gains",
    "appendix_e_table",
    "plot_sweeps",
    "plot_appendix_e",
    "compatibility_path",
    "measure_compatibility",
    "compatibility",
    "compatibility_frame",
    "plot_compatibility",
    "reference_strength",
    "evidence",
    "claims",
    "REASONS",
    "answer",
]

#: The three references of RQ3 (the runner's names).
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


def records(profile: str, workers: int = 2) -> dict[str, list[dict]]:
    """The records of the ``rq1`` (SFT rows, self-reference sweep, App. E's reference), ``rq3`` and
    ``appendix-e`` grids at ``profile``, read back when committed; only missing runs run."""
    return {name: runner.run_grid(name, profile, workers=workers) for name in ("rq1", "rq3", "appendix-e")}


def _all(recs: dict | list) -> list[dict]:
    if isinstance(recs, dict):
        seen, out = set(), []
        for rs in recs.values():
            for r in rs:
                key = r.get("key") or id(r)
                if key not in seen:
                    seen.add(key)
                    out.append(r)
        return out
    return list(recs)


def students(recs: dict | list) -> list[str]:
    """The students of the RQ3 records, in first-seen order."""
    out: list[str] = []
    for r in _all(recs):
        s = r["config"]["student"]
        if s not in out:
            out.append(s)
    return out


def _sft(recs, student: str, seed: int = 0) -> dict | None:
    return next((r for r in _all(recs) if r["config"]["objective"] == "sft" and r["config"]["student"] == student
                 and r["config"]["seed"] == seed), None)


def best(recs: dict | list, student: str, reference: str, metric: str = "lc_win_rate", seed: int = 0) -> dict | None:
    """The best non-degenerate DPO record of ``student`` with ``reference`` over all β tried.

    For ``self`` this pools RQ1's and RQ3's self-reference sweeps (the paper's "self" column of
    Table 5 is RQ1's best); ``None`` when every run degenerated or none exists.
    """
    pool = [r for r in _all(recs) if r["config"]["seed"] == seed]
    return runner.best_record(pool, metric=metric, student=student, objective="dpo", reference=reference)


def _runs(recs, student: str, reference: str, seed: int = 0) -> list[dict]:
    return sorted(
        [r for r in _all(recs) if r["config"]["objective"] == "dpo" and r["config"]["student"] == student
         and r["config"]["reference"] == reference and r["config"]["seed"] == seed],
        key=lambda r: -r["config"]["beta"],
    )


def sweep_table(recs: dict | list, metric: str = "lc_win_rate", seed: int = 0, betas: Iterable[float] | None = None) -> pd.DataFrame:
    """Our Table 4: ``metric`` against β, one column per (student, reference); "[degenerate]" marked.

    ``betas`` restricts the rows (default: RQ3's grid, :data:`dpolib.paper.RQ3_BETAS`).
    """
    betas = list(betas or paper.RQ3_BETAS)
    cols = {}
    for s in students(recs):
        for ref in REFERENCES:
            runs = {r["config"]["beta"]: r for r in _runs(recs, s, ref, seed)}
            cols[(display(s), ref)] = [
                ("[degenerate]" if runs[b]["metrics"]["degenerate"] else runs[b]["metrics"][metric]) if b in runs else math.nan
                for b in betas
            ]
    df = pd.DataFrame(cols, index=pd.Index(betas, name="β"))
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["student", "reference"])
    return df


def best_table(recs: dict | list, replicates: Callable | None = None) -> pd.DataFrame:
    """Our Table 5: per student, the SFT model and the best score with each reference.

    Rows: students (display labels). Columns, per reference ``r``: ``r`` (best LC win rate of seed 0),
    ``r β`` (the β it was reached at), ``r seeds`` (mean ± sd over the headline seeds that exist).
    """
    from .rq2 import _pm

    rows = {}
    for s in students(recs):
        sft = _sft(recs, s)
        row = {"original (SFT)": sft["metrics"]["lc_win_rate"] if sft else math.nan,
               "original (SFT) seeds": _pm(seed_stats(sft, replicates=replicates)) if sft else "n/a"}
        for ref in REFERENCES:
            b = best(recs, s, ref)
            row[ref] = b["metrics"]["lc_win_rate"] if b else math.nan
            row[f"{ref} β"] = b["config"]["beta"] if b else math.nan
            row[f"{ref} seeds"] = _pm(seed_stats(b, replicates=replicates)) if b else "n/a (all degenerate or absent)"
        rows[display(s)] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "student"
    return df


def best_table_with_paper(recs: dict | list) -> pd.DataFrame:
    """Table 5 in roles: ours (best LC and β per reference) beside the paper's (quoted) numbers.

    The paper's columns are mapped to roles by :data:`PAPER_PAIRS` (mistral-v0.2 is the compatible
    reference of mistral-7b and the incompatible one of tulu-2-7b; llama3 the reverse, §6).
    """
    ours = best_table(recs)
    rows = []
    for s in ours.index:
        rows.append({("who", ""): f"ours: {s}", **{("original (SFT)", ""): ours.loc[s, "original (SFT)"]},
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


def gains(recs: dict | list, replicates: Callable | None = None) -> pd.DataFrame:
    """The gain of each reference over the self reference: best LC(r) − best LC(self), per student.

    Columns: ``student``, ``reference``, ``best``, ``best β``, ``gain vs self``, ``gain vs SFT``,
    ``seed note`` (whether the difference to self lies within the seed-to-seed spread, :func:`dpolib.chapters.rq2.compare`).
    """
    rows = []
    for s in students(recs):
        sft = _sft(recs, s)
        b_self = best(recs, s, "self")
        st_self = seed_stats(b_self, replicates=replicates)
        for ref in REFERENCES:
            b = best(recs, s, ref)
            st = seed_stats(b, replicates=replicates)
            rows.append({
                "student": s,
                "reference": ref,
                "best": st["mean"],
                "best β": b["config"]["beta"] if b else math.nan,
                "gain vs self": st["mean"] - st_self["mean"],
                "gain vs SFT": st["mean"] - (sft["metrics"]["lc_win_rate"] if sft else math.nan),
                "seed note": "" if ref == "self" else compare(st, st_self)["text"],
                "within spread": None if ref == "self" else compare(st, st_self)["within_spread"],
            })
    return pd.DataFrame(rows)


def appendix_e_table(recs: dict | list, seed: int = 0) -> pd.DataFrame:
    """Our Table 7: the student regularised to its best RQ1 DPO model, against β, beside the paper's.

    The first row is the reference itself (the RQ1 record with the best LC win rate); columns are
    ours (score; "[degenerate]" where so) and the paper's (quoted; mistral-7b with its β = 0.01 DPO
    model as reference).
    """
    rows, index = [], []
    t7 = paper.TABLE7
    col = t7.columns[0]
    for s in students(recs):
        runs = _runs(recs, s, "rq1-best", seed)
        if not runs:
            continue
        ref = _rq1_best(recs, s, seed)
        index.append(f"reference: RQ1 best (β = {ref['config']['beta']:g})" if ref else "reference: RQ1 best")
        rows.append({("ours", display(s)): ref["metrics"]["lc_win_rate"] if ref else math.nan})
        for r in runs:
            index.append(f"{r['config']['beta']:g}")
            rows.append({("ours", display(s)): "[degenerate]" if r["metrics"]["degenerate"] else r["metrics"]["lc_win_rate"]})
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows, index=index).groupby(level=0, sort=False).first()
    theirs = {"reference": t7.cell(t7.rows[0].label, col), **{f"{b:g}": t7.cell(f"{b:g}", col) for b in paper.APP_E_BETAS}}
    df[("paper (quoted)", col)] = [theirs["reference"] if i.startswith("reference") else theirs.get(i, math.nan) for i in df.index]
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    df.index.name = "β"
    return df


def _rq1_best(recs, student: str, seed: int = 0) -> dict | None:
    """App. E's reference: the best RQ1 DPO (self-reference) record, as the runner picks it."""
    betas = {c.beta for c in runner.grid("rq1", "cpu") if c.objective == "dpo"}  # the grid is the same at every profile
    rq1 = [r for r in _all(recs) if r["config"]["seed"] == seed and r["config"]["reference"] == "self"
           and r["config"]["beta"] in betas]
    return runner.best_record(rq1, student=student, objective="dpo")


# --------------------------------------------------------------------------- figures


def plot_sweeps(recs: dict | list, seed: int = 0):
    """One panel per student: LC win rate against β for each reference, SFT dashed (our Table 4 as a figure)."""
    from .. import plotting

    ss = students(recs)
    fig, axes = plotting.figure(ncols=len(ss), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, s in zip(axes, ss):
        for ref in REFERENCES:
            runs = [r for r in _runs(recs, s, ref, seed) if r["config"]["beta"] in paper.RQ3_BETAS]
            ok = [r for r in runs if not r["metrics"]["degenerate"]]
            style = plotting.series(ref, label=REFERENCE_LABELS[ref])
            ax.plot([r["config"]["beta"] for r in ok], [r["metrics"]["lc_win_rate"] for r in ok], **style)
            bad = [r["config"]["beta"] for r in runs if r["metrics"]["degenerate"]]
            if bad:
                ax.plot(bad, [0] * len(bad), linestyle="none", marker="X", markersize=9, color=style["color"],
                        label=f"{ref}: degenerate")
        sft = _sft(recs, s, seed)
        if sft:
            ax.axhline(sft["metrics"]["lc_win_rate"], **plotting.series("sft"))
        plotting.beta_axis(ax, label=r"$\beta$ (larger = closer to the reference)")
        ax.set_title(f"student: {display(s)}", fontsize=9)
    axes[0].set_ylabel("LC win rate vs baseline (%)")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5 * len(ss) + 0.05 * (len(ss) - 1), -0.18), ncol=2)
    return fig, axes


def plot_appendix_e(recs: dict | list, seed: int = 0):
    """Appendix E: LC win rate against β with the student's best RQ1 model as reference; the reference dashed."""
    from .. import plotting

    fig, ax = plotting.figure()
    for s in students(recs):
        runs = [r for r in _runs(recs, s, "rq1-best", seed) if not r["metrics"]["degenerate"]]
        if not runs:
            continue
        line, = ax.plot([r["config"]["beta"] for r in runs], [r["metrics"]["lc_win_rate"] for r in runs],
                        **plotting.series("dpo", label=f"{display(s)}, reference = its best RQ1 model"))
        ref = _rq1_best(recs, s, seed)
        if ref:
            ax.axhline(ref["metrics"]["lc_win_rate"], color=line.get_color(), linestyle=":",
                       label=f"the reference itself (RQ1 best, β = {ref['config']['beta']:g})")
        sft = _sft(recs, s, seed)
        if sft:
            ax.axhline(sft["metrics"]["lc_win_rate"], **plotting.series("sft"))
    plotting.beta_axis(ax, label=r"$\beta$ (larger = closer to the reference)")
    ax.set_ylabel("LC win rate vs baseline (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    return fig, ax


# --------------------------------------------------------------------------- compatibility


def compatibility_path(profile: str, root: Path | None = None) -> Path:
    """``results/lab/<profile>/compatibility.json``."""
    return (root or runner.results_root()) / profile / "compatibility.json"


def _families() -> list[str]:
    from .families import FAMILIES

    return list(FAMILIES)


def _reference_model(student: str, reference: str) -> tuple[str, str]:
    """``(family, size)`` of the SFT model that plays ``reference`` for ``student`` (as the runner builds it)."""
    if reference == "self":
        return student, "small"
    if reference == "compatible":
        return student, "large"
    if reference == "incompatible":
        others = [f for f in _families() if f != student]
        if len(others) != 1:
            raise ValueError(f"expected exactly two families, got {_families()}")
        return others[0], "large"
    raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")


def _world_keys(profile: str) -> dict[str, str]:
    from .pretrain import stage_key
    from .profiles import get_profile

    p = get_profile(profile)
    return {f"{f}/{size}": stage_key(f, size, "sft", p) for f in _families() for size in ("small", "large")}


def measure_compatibility(profile: str, sample_seed: int = 0) -> dict:
    """Measure every student-reference pair's compatibility (see the module docstring); no caching.

    Returns ``{"measures": {student: {reference: {logp_corr, margin_corr, kl, kl_se, kl_n, ...}}},
    "world": stage keys of the models, "provenance": ...}``.
    """
    import torch

    from ..provenance import provenance
    from ..references import ModelReference
    from . import data, evaluate, pretrain
    from .profiles import get_profile

    t0 = time.perf_counter()
    p = get_profile(profile)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        val = data.build_preference_data(p)["validation"]
        prompts = list(val["prompt"])
        n = len(prompts)
        models = {}
        for f in _families():
            for size in ("small", "large"):
                models[(f, size)] = ModelReference.from_pretrained(
                    pretrain.model_dir(f, size, "sft", p), max_length=p.max_length, progress=False
                )
        pair_logps = {k: m.logps(prompts + prompts, list(val["chosen"]) + list(val["rejected"])) for k, m in models.items()}
        out: dict = {}
        for s in _families():
            student = models[(s, "small")]
            settings = evaluate.GenerationSettings(max_new_tokens=p.max_new_tokens, do_sample=True, seed=sample_seed,
                                                   batch_size=p.eval_batch_size)
            gens = evaluate.generate(student.model, student.tokenizer, prompts, settings)
            keep = [i for i, g in enumerate(gens) if g.finished]
            sp = [prompts[i] for i in keep]
            sr = [[{"role": "assistant", "content": gens[i].text}] for i in keep]
            own = student.logps(sp, sr)
            out[s] = {}
            for ref in REFERENCES:
                a, b = pair_logps[(s, "small")], pair_logps[_reference_model(s, ref)]
                log_ratio = (own - models[_reference_model(s, ref)].logps(sp, sr)).numpy()
                lengths = np.array([len(gens[i].text) + 1 for i in keep], float)
                out[s][ref] = {
                    "reference_model": "/".join(_reference_model(s, ref)),
                    "logp_corr": float(np.corrcoef(a.numpy(), b.numpy())[0, 1]),
                    "margin_corr": float(np.corrcoef((a[:n] - a[n:]).numpy(), (b[:n] - b[n:]).numpy())[0, 1]),
                    "kl": float(log_ratio.mean()),
                    "kl_se": float(log_ratio.std(ddof=1) / math.sqrt(len(log_ratio))) if len(log_ratio) > 1 else math.nan,
                    "kl_per_char": float(log_ratio.sum() / lengths.sum()),
                    "kl_n": len(keep),
                    "n_samples": n,
                }
    finally:
        torch.set_num_threads(before)
    return {
        "profile": profile,
        "split": "validation",
        "world": _world_keys(profile),
        "measures": out,
        "provenance": provenance(wall_time_s=time.perf_counter() - t0, seed=sample_seed),
    }


def compatibility(profile: str, compute: bool = True, root: Path | None = None) -> dict | None:
    """The cached compatibility measures of ``profile`` (:func:`measure_compatibility`).

    Read back from :func:`compatibility_path` when its models' stage keys match the current world;
    otherwise measured and written (``compute=True``) or ``None`` (``compute=False``).
    """
    from ..provenance import read_json, write_json

    path = compatibility_path(profile, root)
    if path.exists():
        cached = read_json(path)
        try:
            fresh = cached.get("world") == _world_keys(profile)
        except Exception:  # a profile whose models are not the lab's families (e.g. hub models)
            fresh = True
        if fresh:
            return cached
    if not compute:
        return None
    result = measure_compatibility(profile)
    write_json(path, result)
    return result


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
    from .. import plotting

    fig, ax = plotting.figure()
    for ref in REFERENCES:
        sub = frame[frame["reference"] == ref]
        style = plotting.series(ref, label=REFERENCE_LABELS[ref])
        ax.plot(sub[measure], sub["gain vs self"], linestyle="none", markersize=9,
                **{k: v for k, v in style.items() if k != "linestyle"})
        for _, r in sub.iterrows() if ref != "self" else []:
            ax.annotate(display(r["student"]).split(" ")[0], (r[measure], r["gain vs self"]), textcoords="offset points",
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

    Read from the world report ``results/lab/world_report_<profile>.json`` (``sft_quality``, written with
    its commit and date by :func:`dpolib.world.report.write_world_report`); empty when there is none.
    """
    from ..provenance import read_json

    path = (root or runner.results_root()) / f"world_report_{profile}.json"
    if not path.exists():
        return pd.DataFrame()
    report = read_json(path)
    quality = report.get("sft_quality", {})
    rows = []
    for s in _families():
        own = quality.get(f"{s}/small", {}).get("mean_gold", math.nan)
        for ref in REFERENCES:
            model = "/".join(_reference_model(s, ref))
            rows.append({"student": s, "reference": ref, "reference model": model,
                         "reference mean gold": quality.get(model, {}).get("mean_gold", math.nan),
                         "student mean gold": own})
    df = pd.DataFrame(rows)
    df.attrs["source"] = f"{path.name} (commit {str(report.get('git_commit', '?'))[:8]}, {report.get('date', '?')})"
    return df


# --------------------------------------------------------------------------- claims


def evidence(recs: dict | list, compat: dict | None = None, replicates: Callable | None = None) -> dict:
    """Everything the RQ3 and App. E claims are measured from.

    Keys: ``students``, ``gains`` (:func:`gains`), ``sft`` ({student: LC}), ``compat``
    (:func:`compatibility_frame`), ``appendix_e`` ({student: {best, best_beta, reference, reference_beta}}).
    """
    g = gains(recs, replicates=replicates)
    app = {}
    for s in students(recs):
        b = best(recs, s, "rq1-best")
        ref = _rq1_best(recs, s)
        if b is not None and ref is not None:
            app[s] = {"best": b["metrics"]["lc_win_rate"], "best_beta": b["config"]["beta"],
                      "reference": ref["metrics"]["lc_win_rate"], "reference_beta": ref["config"]["beta"],
                      "n_runs": len(_runs(recs, s, "rq1-best"))}
    sft = {s: (_sft(recs, s) or {}).get("metrics", {}).get("lc_win_rate", math.nan) for s in students(recs)}
    return {"students": students(recs), "gains": g, "sft": sft, "compat": compatibility_frame(compat, g), "appendix_e": app}


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
    top = max(paper.RQ3_BETAS)
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
        return Measurement.missing("no compatibility measures (run rq3.compatibility) or too few references")
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
    from ..scorecard import verdict_counts

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
        parts.append(f"for {display(s)}, " + " and ".join(cells))
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


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Measure and cache student-reference compatibility (RQ3).")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--force", action="store_true", help="remeasure even when a fresh cache exists")
    args = parser.parse_args(argv)
    if args.force and compatibility_path(args.profile).exists():
        compatibility_path(args.profile).unlink()
    result = compatibility(args.profile)
    print(compatibility_path(args.profile))
    for s, refs in result["measures"].items():
        for ref, m in refs.items():
            print(f"{s:>8} {ref:>12}: logp_corr {m['logp_corr']:.3f} margin_corr {m['margin_corr']:.3f} "
                  f"KL {m['kl']:.2f} ± {m['kl_se']:.2f} (n={m['kl_n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
