"""RQ2 — is the reference policy a necessary regulariser? (paper §5, Table 3, Figure 3, Tables 8-10)

The paper compares three rewards under one Bradley-Terry loss, each at its best β:

* **DPO** (Eq. 5), the SFT model as reference:
  ``-log σ(β[(log p_θ(y_w|x) - log p_ref(y_w|x)) - (log p_θ(y_l|x) - log p_ref(y_l|x))])``;
* the **posterior-probability** objective (Eq. 10), ``-log σ(β[log p_θ(y_w|x) - log p_θ(y_l|x)])``:
  DPO with a *uniform* reference, equivalently maximum-entropy RL (Eq. 11);
* the **likelihood** objective (Eq. 15), ``-log σ(β[log p_θ(x|y_w) - log p_θ(x|y_l)])``: by Bayes
  (Eqs. 13-14) DPO with the unconditional prior p_LM(y) of the SFT model as reference.

The records are the ``rq2`` grid's (:func:`dpolib.experiments.records.load_grid` ``("rq2", profile)``):
one student (the first family), its SFT row, a DPO sweep and a sweep of each alternative objective.
Everything here is a pure function of :class:`~dpolib.experiments.records.Record` s, so the tests
build synthetic records and the chapter (``notebooks/rq2_reference.md``) renders the committed ones.

The best β of an objective is :func:`dpolib.experiments.records.best_record` (highest ``lc_win_rate``
among runs that did **not** degenerate, as the paper excludes "[degenerate]" runs); an arm's value
over seeds is :func:`dpolib.chapters.common.arm_stats`.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import paper, plotting
from ..experiments.records import Record, select
from ..scorecard import AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE, verdict_counts
from .common import arm_stats, best_record, beta_label, metric_of, pm, students

__all__ = [
    "OBJECTIVES",
    "METHOD_LABELS",
    "student_of",
    "by_objective",
    "best_by_objective",
    "sft_record",
    "sweep_table",
    "table3",
    "table3_with_paper",
    "eos_table",
    "plot_sweeps",
    "plot_figure3",
    "samples_table",
    "evidence",
    "LONGER_FACTOR",
    "disagreements",
    "answer",
]

#: The three objectives of RQ2, in the paper's order (Table 3).
OBJECTIVES = ("dpo", "probability", "likelihood")
#: Row labels of Table 3, as the paper prints them (``dpolib.paper.TABLE3``).
METHOD_LABELS = {
    "sft": "original (SFT)",
    "dpo": "DPO (Eq. 5)",
    "probability": "probability (Eq. 10)",
    "likelihood": "likelihood (Eq. 15)",
}
#: "Much longer outputs" (§5.2) means the probability objective's mean length is at least this many
#: times DPO's. The paper's own ratio (Table 3, ``dpolib.paper.TABLE3``) is above it; the same threshold is
#: used by :func:`dpolib.paper.headline_findings` on the paper's own numbers.
LONGER_FACTOR = 1.5

#: ``record -> records of its arm at every seed`` (default: :func:`dpolib.experiments.records.replicates`).
Replicates = Callable[[Record], list[Record]]


def student_of(recs: Iterable[Record]) -> str:
    """The one student of a set of RQ2 records (raises if there are several)."""
    found = students(recs)
    if not found:
        raise ValueError("no RQ2 records; python -m dpolib.experiments run --grid rq2 --profile <profile> makes them")
    if len(found) != 1:
        raise ValueError(f"RQ2 records should have one student, got {sorted(found)}")
    return found[0]


def by_objective(recs: Iterable[Record], objective: str, seed: int | None = 0) -> list[Record]:
    """Records of one objective (at one seed, default 0; ``None`` for all), sorted by β descending."""
    out = [r for r in recs if r.objective == objective and (seed is None or r.seed == seed)]
    return sorted(out, key=lambda r: -r.beta)


def best_by_objective(recs: Iterable[Record], metric: str = "lc_win_rate", seed: int = 0) -> dict[str, Record | None]:
    """``{objective: best record}`` over each objective's β sweep at ``seed`` (:func:`~dpolib.experiments.records.best_record`).

    ``None`` for an objective whose runs are all degenerate or absent.
    """
    pool = select(recs, seed=seed)
    return {o: best_record(pool, metric, objective=o) for o in OBJECTIVES}


def sft_record(recs: Iterable[Record], student: str | None = None, seed: int = 0) -> Record | None:
    """The SFT row (the paper's β = ∞ / "original"), if present."""
    match = {"student": student} if student is not None else {}
    return next(iter(select(recs, objective="sft", seed=seed, **match)), None)


# --------------------------------------------------------------------------- tables


def sweep_table(recs: list[Record], metric: str = "lc_win_rate", seed: int = 0) -> pd.DataFrame:
    """``metric`` against β for each objective (rows β, descending; columns objectives).

    A degenerate run's cell is the string ``"[degenerate]"`` (the paper's marker); a β an objective
    was not run at is empty (NaN).
    """
    cells: dict = {}
    for o in OBJECTIVES:
        for r in by_objective(recs, o, seed):
            cells.setdefault(r.beta, {})[o] = "[degenerate]" if r.degenerate else metric_of(r, metric)
    df = pd.DataFrame.from_dict(cells, orient="index").reindex(columns=list(OBJECTIVES))
    df.index.name = "β"
    return df.sort_index(ascending=False)


def _degenerate_runs(sweep: list[Record]) -> str:
    return f"{sum(r.degenerate for r in sweep)} of {len(sweep)}" if sweep else ""


def table3(recs: list[Record], metric: str = "lc_win_rate", replicates: Replicates | None = None) -> pd.DataFrame:
    """Our Table 3: each objective at its best β (by ``metric``), and the SFT row.

    Columns: ``score`` (``lc_win_rate`` of seed 0, %), ``score (seeds)`` (mean ± sd over the
    headline seeds that exist, :func:`dpolib.chapters.common.arm_stats`), ``policy accuracy`` (p_θ
    ranking accuracy on the validation pairs, the paper's "Accuracy"), ``length (chars)``,
    ``length (tokens)``, ``β`` (the selected β; ∞ for SFT), ``β at grid edge`` (the selected β is the
    largest or smallest tried, so the optimum may lie outside the grid), ``degenerate runs`` (how many
    of the objective's sweep degenerated). Rows use the paper's labels (:data:`METHOD_LABELS`).
    """
    best = best_by_objective(recs, metric)
    rows = {}
    for key, rec in [("sft", sft_record(recs)), *best.items()]:
        sweep = [] if key == "sft" else by_objective(recs, key)
        if rec is None:
            rows[METHOD_LABELS[key]] = {"β": math.nan, "degenerate runs": sum(r.degenerate for r in sweep)}
            continue
        m = rec.metrics
        rows[METHOD_LABELS[key]] = {
            "score": m.lc_win_rate,
            "score (seeds)": pm(arm_stats(rec, "lc_win_rate", replicates)),
            "policy accuracy": m.policy_accuracy,
            "length (chars)": m.mean_length_chars,
            "length (tokens)": m.mean_length_tokens,
            "β": rec.beta,
            "β at grid edge": _at_edge(rec, sweep),
            "degenerate runs": _degenerate_runs(sweep),
        }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "method"
    return df


def _at_edge(rec: Record, sweep: list[Record]):
    """Whether the selected β is the largest or smallest β tried (the optimum may lie outside the grid)."""
    betas = [r.beta for r in sweep]
    if not betas:
        return ""
    return bool(rec.beta in (max(betas), min(betas)))


def table3_with_paper(recs: list[Record], replicates: Replicates | None = None) -> pd.DataFrame:
    """Our Table 3 beside the paper's (``dpolib.paper.TABLE3``), columns grouped ``ours`` / ``paper (quoted)``."""
    ours = table3(recs, replicates=replicates)[["score", "policy accuracy", "length (chars)", "β"]]
    theirs = paper.TABLE3.frame(with_beta=True).rename(
        columns={"Score (LC)": "score", "Accuracy": "policy accuracy", "Length": "length"}
    )
    theirs.loc["original (SFT)", "β"] = math.inf
    theirs.index.name = "method"
    return pd.concat({"ours": ours, "paper (quoted)": theirs.reindex(ours.index)}, axis=1)


def eos_table(recs: list[Record], seed: int = 0) -> pd.DataFrame:
    """Figure 3's statistics per objective: the EOS log-prob "value" and chosen-minus-rejected "difference".

    For every run the policy scores the validation pairs; ``value`` is the mean log p_θ(EOS) over
    all responses and ``difference`` the mean of log p_θ(EOS | y_w) - log p_θ(EOS | y_l) over pairs
    (:func:`dpolib.evaluation.eos_statistics`). As in the paper, each objective's bar averages its
    runs over the β values tried (non-degenerate runs); the ``... at best β`` columns give the
    best-β run alone, and the SFT row is the start point.
    """
    best = best_by_objective(recs)
    rows = {}
    sft = sft_record(recs, seed=seed)
    if sft is not None:
        e = sft.metrics.eos
        rows[METHOD_LABELS["sft"]] = {"value": e["value"], "difference": e["difference"], "n runs": 1,
                                      "value at best β": e["value"], "difference at best β": e["difference"]}
    for o in OBJECTIVES:
        runs = [r for r in by_objective(recs, o, seed) if not r.degenerate]
        if not runs:
            continue
        b = best[o].metrics.eos if best[o] is not None else {"value": math.nan, "difference": math.nan}
        rows[METHOD_LABELS[o]] = {
            "value": float(np.mean([r.metrics.eos["value"] for r in runs])),
            "difference": float(np.mean([r.metrics.eos["difference"] for r in runs])),
            "n runs": len(runs),
            "value at best β": b["value"],
            "difference at best β": b["difference"],
        }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "method"
    return df


# --------------------------------------------------------------------------- figures


def plot_sweeps(recs: list[Record], seed: int = 0):
    """Two panels against β: LC win rate and mean output length, one line per objective, SFT dashed.

    Degenerate runs are drawn as crosses at the bottom of the axes. Returns ``(fig, axes)``.
    """
    fig, axes = plotting.figure(ncols=2)
    sft = sft_record(recs, seed=seed)
    for ax, metric, ylabel in (
        (axes[0], "lc_win_rate", "LC win rate vs baseline (%)\n(AlpacaEval 2 LC analogue)"),
        (axes[1], "mean_length_chars", "mean output length (characters)"),
    ):
        for o in OBJECTIVES:
            runs = by_objective(recs, o, seed)
            ok = [r for r in runs if not r.degenerate]
            ax.plot([r.beta for r in ok], [metric_of(r, metric) for r in ok], **plotting.series(o))
            bad = [r.beta for r in runs if r.degenerate]
            if bad:
                ax.plot(bad, [ax.get_ylim()[0]] * len(bad), linestyle="none", marker="X", markersize=9,
                        color=plotting.series(o)["color"], label=f"{o}: degenerate")
        if sft is not None:
            ax.axhline(metric_of(sft, metric), **plotting.series("sft"))
        plotting.beta_axis(ax, label=r"$\beta$ (larger = closer to the reference)")
        ax.set_ylabel(ylabel)
    axes[0].legend(loc="upper center", bbox_to_anchor=(1.1, -0.2), ncol=2)
    return fig, axes


def plot_figure3(eos: pd.DataFrame):
    """Our Figure 3: grouped bars of the EOS ``value`` and ``difference`` per objective (:func:`eos_table`)."""
    fig, ax = plotting.figure()
    names = [o for o in OBJECTIVES if METHOD_LABELS[o] in eos.index]
    width = 0.8 / max(1, len(names))
    for i, o in enumerate(names):
        row = eos.loc[METHOD_LABELS[o]]
        style = plotting.series(o)
        ax.bar(np.arange(2) + (i - (len(names) - 1) / 2) * width, [row["value"], row["difference"]], width,
               color=style["color"], label=style["label"])
    if METHOD_LABELS["sft"] in eos.index:
        row = eos.loc[METHOD_LABELS["sft"]]
        ax.scatter(np.arange(2), [row["value"], row["difference"]], color="black", marker="_", s=600, zorder=3,
                   label="SFT model (start point)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(2), ["value: mean log p(EOS)", "difference: chosen − rejected"])
    ax.set_ylabel("EOS log-probability (nats), averaged over β")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return fig, ax


def samples_table(recs: list[Record], index: int = 0) -> pd.DataFrame:
    """Tables 8-10's analogue: the outputs of SFT and of each objective's best-β model for one test prompt.

    ``index`` picks one of the test prompts every record keeps samples for (the first by default,
    a prompt nobody chose). Columns: ``model``, ``β``, ``response``, ``finished`` (emitted EOS),
    ``length (chars)``, ``gold`` (the task's gold score of this response).
    """
    chosen = [("sft", sft_record(recs)), *best_by_objective(recs).items()]
    rows, prompt = [], None
    for key, rec in chosen:
        if rec is None:
            continue
        s = rec.metrics.samples[index]
        if prompt is not None and s["prompt"] != prompt:
            raise ValueError("records disagree on the sample prompts; were they produced in the same world?")
        prompt = s["prompt"]
        rows.append({
            "model": METHOD_LABELS[key],
            "β": beta_label(rec.beta, sft="∞"),
            "response": s["response"],
            "finished": s["finished"],
            "length (chars)": len(s["response"]),
            "gold": s["gold"],
        })
    df = pd.DataFrame(rows)
    df.attrs["prompt"] = prompt
    return df


# --------------------------------------------------------------------------- claims


def evidence(recs: list[Record], replicates: Replicates | None = None) -> dict:
    """Everything the RQ2 claims are measured from, computed once.

    Keys: ``records`` (all of them, every world seed), ``student``, ``sft`` (record), ``best`` ({objective: record}), ``stats`` ({objective or
    "sft": :class:`~dpolib.chapters.common.ArmStats` of LC over seeds}), ``eos`` (:func:`eos_table`),
    ``table3`` (:func:`table3`). ``replicates`` finds an arm's records at every seed (tests pass a stub).
    """
    best = best_by_objective(recs)
    sft = sft_record(recs)
    stats = {k: arm_stats(r, "lc_win_rate", replicates) for k, r in [("sft", sft), *best.items()]}
    return {
        "records": list(recs),
        "student": student_of(recs),
        "sft": sft,
        "best": best,
        "stats": stats,
        "eos": eos_table(recs),
        "table3": table3(recs, replicates=replicates),
    }


def disagreements(card: pd.DataFrame) -> str:
    """Markdown: every claim whose verdict is "disagrees", with the paper's evidence and what we measured.

    No reason is typed in: the row's measured values and note (computed from the records) are all it says.
    """
    rows = card[card["verdict"] == DISAGREES]
    if rows.empty:
        return "No claim **disagrees** with the paper in these runs (see the scorecard for the other outcomes)."
    lines = [f"We **disagree** with the paper on {len(rows)} of {len(card)} claims in these runs:", ""]
    for _, r in rows.iterrows():
        lines.append(f"- *{r['claim']}* ({r['source']}). Paper: {r['paper']}. Ours: {r['ours']}"
                     + (f" ({r['note']})." if r["note"] else "."))
    return "\n".join(lines)


def answer(ev: dict, card: pd.DataFrame) -> str:
    """The chapter's one-paragraph answer, computed from :func:`~dpolib.chapters.rq2.evidence` and the scorecard (``rq2.dpo-best``'s verdict)."""
    best, s = ev["best"], ev["stats"]
    if any(best[o] is None for o in OBJECTIVES) or ev["sft"] is None:
        return "Some objective has no usable run at this profile; see the scorecard."
    ordering = sorted(OBJECTIVES, key=lambda o: -s[o].mean)
    counts = verdict_counts(card)
    row = card.set_index("id").loc["rq2.dpo-best"] if "rq2.dpo-best" in set(card["id"]) else None
    verdict = "" if row is None else row["verdict"]
    says = {
        AGREES: "DPO with its SFT reference beats both alternatives beyond the paired 95% intervals, as in the paper. ",
        DISAGREES: "Unlike the paper, an alternative beats DPO with its SFT reference beyond the paired 95% interval. ",
        INCONCLUSIVE: "Whether DPO with its SFT reference is best cannot be told from our intervals. ",
        NOT_TESTABLE: f"Whether DPO is best is not testable here ({row['note'] if row is not None else ''}). ",
    }.get(verdict, "")
    return (
        "In our lab world the mean best-β LC win rates are "
        + ", ".join(f"{o} {s[o].mean:.2f}" for o in ordering)
        + f"; the SFT model scores {s['sft'].mean:.2f} (%). " + says
        + f"Of the paper's {len(card)} RQ2 claims, {counts[AGREES]} agree with our runs, {counts[DISAGREES]} disagree, "
        f"{counts[INCONCLUSIVE]} are inconclusive and {counts[NOT_TESTABLE]} are not testable (scorecard below)."
    )
