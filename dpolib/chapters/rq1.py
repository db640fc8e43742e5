"""RQ1: how strong should the KL constraint be? Tables, figures and claims of the chapter.

The paper's §4 {Liu, Liu & Cohan 2024} trains DPO (Eq. 5) from two SFT models with
the SFT model itself as the reference, over β ∈ {0.1, 0.05, 0.02, 0.01, 0.005}, and
reports:

* Table 1: the AlpacaEval 2 length-controlled (LC) win rate against β, with the SFT
  model as the row β = ∞ and "[degenerate]" where a model degenerated;
* Table 2: the ranking accuracy on validation pairs of the implicit reward
  r_θ = β log p_θ(y|x)/p_ref(y|x) (Eq. 6) and of the policy p_θ(y|x);
* Figure 1: the distribution over vocabulary tokens of the Eq. (8) statistic
  r̂(y⁽ⁱ⁾) = log p_θ(y⁽ⁱ⁾ | x, y⁽<ⁱ⁾) − log p_ref(y⁽ⁱ⁾ | x, y⁽<ⁱ⁾), averaged per token
  over its occurrences in the validation responses, one curve per β, log-scale ratio;
* Figure 2: the most down-weighted tokens (most negative average Eq. 8) among tokens
  seen at least 100 times; EOS comes first, more so at small β.

This module builds our analogues from the runner's records (:mod:`dpolib.experiments.runner`,
grid ``"rq1"``) and tests the paper's RQ1 claims (digest §1, best practice 1 of §6)
as a :mod:`dpolib.scorecard`. Nothing here knows the students' names: they are read
from the records (:data:`STUDENT_LABELS` only renames them for display).

A record is the runner's dict: ``config`` (student, objective, reference, beta, seed),
``metrics`` (``lc_win_rate``, ``degenerate``, ``policy_accuracy``, ``reward_accuracy``,
``mean_length_tokens``, ``eos_token``, ``token_logp_diff`` = ``{token: {count, mean_diff}}``,
...). The SFT row has ``objective == "sft"`` and ``beta is None``; it is indexed here
by ``math.inf`` (the paper's β = ∞).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import paper
from ..scorecard import Claim, Measurement
from .stats import spearman, within_spread

__all__ = [
    "STUDENT_LABELS",
    "PAPER_COLUMNS",
    "MIN_COUNT",
    "RHO",
    "SENSITIVITY_DROP",
    "student_label",
    "students",
    "sweep_records",
    "sweep_frame",
    "best_beta",
    "table1",
    "table2",
    "styled",
    "token_table",
    "token_label",
    "down_weighted",
    "eos_rank",
    "eos_ranks",
    "imbalance",
    "token_histogram",
    "spearman",
    "headline",
    "compare",
    "evidence",
    "CLAIMS",
    "likely_reason",
    "reasons",
    "train_reward_accuracy",
    "plot_scores",
    "plot_accuracy",
    "plot_token_distribution",
    "plot_down_weighted",
    "plot_length",
    "plot_headline",
    "tabular_curve",
    "plot_tabular",
    "records_by_config",
]

#: Display names of the students; an unknown student is shown by its raw name.
STUDENT_LABELS = {"char": "char student", "bpe": "bpe student"}
#: The paper's columns (Tables 1 and 2) put beside each of our students, in order (display only).
PAPER_COLUMNS = ("mistral-7b", "tulu-2-7b")
#: Figure 2 keeps tokens seen at least this often in the validation responses (the paper used 100, on
#: UltraFeedback's much larger validation set; ours has a few hundred pairs).
MIN_COUNT = 30
#: A trend "holds" when the Spearman rank correlation with β has at least this magnitude.
RHO = 0.7
#: "Sensitive just below the optimum" means one grid step below the best β loses at least this fraction of
#: the best score (or degenerates). The paper's mistral-7b loses 24% (16.25 -> 12.36); tulu-2-7b degenerates.
SENSITIVITY_DROP = 0.10
SFT = math.inf


def student_label(name: str) -> str:
    """How a student is shown: :data:`STUDENT_LABELS` or the raw name."""
    return STUDENT_LABELS.get(name, name)


def _beta(record: dict) -> float:
    b = record["config"]["beta"]
    return SFT if b is None or record["config"]["objective"] == "sft" else float(b)


def _is_rq1(record: dict) -> bool:
    c = record["config"]
    return c["objective"] == "sft" or (c["objective"] == "dpo" and c["reference"] == "self")


def students(records: Iterable[dict]) -> list[str]:
    """The students of the RQ1 records, in order of first appearance."""
    out: list[str] = []
    for r in records:
        s = r["config"]["student"]
        if _is_rq1(r) and s not in out:
            out.append(s)
    return out


def sweep_records(records: Iterable[dict], student: str) -> dict[float, dict]:
    """``{β: record}`` of one student's SFT row (β = ∞) and self-reference DPO runs, largest β first.

    Where several seeds of one β are given, the lowest seed is kept (the sweep is seed 0's;
    :func:`headline` gathers the other seeds).
    """
    out: dict[float, dict] = {}
    for r in records:
        if r["config"]["student"] != student or not _is_rq1(r):
            continue
        b = _beta(r)
        if b not in out or r["config"]["seed"] < out[b]["config"]["seed"]:
            out[b] = r
    return dict(sorted(out.items(), key=lambda kv: -kv[0]))


def _metric(record: dict, metric: str | Callable[[dict], float]) -> float:
    if callable(metric):
        return float(metric(record))
    value = record["metrics"].get(metric)
    return math.nan if value is None else float(value)


def sweep_frame(records: list[dict], metric: str | Callable[[dict], float] = "lc_win_rate") -> pd.DataFrame:
    """One metric against β: rows β (∞ = SFT first, then descending), one column per student; NaN where missing."""
    data = {s: {b: _metric(r, metric) for b, r in sweep_records(records, s).items()} for s in students(records)}
    df = pd.DataFrame(data)
    df = df.loc[sorted(df.index, key=lambda b: -b)] if len(df) else df
    df.index.name = "β"
    return df


def best_beta(records: list[dict], student: str, metric: str = "lc_win_rate") -> float | None:
    """argmax_β of ``metric`` over the student's DPO runs, degenerate runs excluded (as :func:`dpolib.experiments.records.best_record`)."""
    pool = {b: _metric(r, metric) for b, r in sweep_records(records, student).items()
            if b != SFT and not r["metrics"]["degenerate"]}
    pool = {b: v for b, v in pool.items() if not math.isnan(v)}
    return max(pool, key=pool.get) if pool else None


def _row_label(beta: float) -> str:
    return "∞ (SFT)" if beta == SFT else f"{beta:g}"


def _paper_label(beta: float) -> str:
    return "∞ (original)" if beta == SFT else f"{beta:g}"


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


def table1(records: list[dict], metric: str = "lc_win_rate", with_paper: bool = True, decimals: int = 2) -> pd.DataFrame:
    """Our Table 1: ``metric`` (default the LC win rate, %) against β, SFT row included.

    A run whose ``degenerate`` flag is set (more than half of its test outputs never stop or
    repeat themselves) reads "[degenerate]", as in the paper; a missing run "–". With
    ``with_paper``, the paper's Table 1 columns follow, labelled "paper: ..." (β = 0.001 is
    not in the paper's grid). ``attrs["best"]`` holds the (row, column) cells of each
    student's best β (for :func:`styled`).
    """
    betas = sorted({b for s in students(records) for b in sweep_records(records, s)}, key=lambda b: -b)
    cols, best = {}, set()
    for s in students(records):
        runs = sweep_records(records, s)
        col = f"ours: {student_label(s)}"
        cells = []
        for b in betas:
            r = runs.get(b)
            if r is None:
                cells.append("–")
            elif r["metrics"]["degenerate"]:
                cells.append("[degenerate]")
            else:
                cells.append(f"{_metric(r, metric):.{decimals}f}")
        cols[col] = cells
        bb = best_beta(records, s, metric)
        if bb is not None:
            best.add((_row_label(bb), col))
    if with_paper:
        for c in paper.TABLE1.columns:
            cols[f"paper: {c}"] = _paper_column(paper.TABLE1, c, betas)
        best |= {(lab if lab != "∞ (original)" else "∞ (SFT)", f"paper: {c}") for lab, c in paper.TABLE1.bold}
    df = pd.DataFrame(cols, index=pd.Index([_row_label(b) for b in betas], name="β"))
    df.attrs["best"] = best
    return df


def table2(records: list[dict], with_paper: bool = True) -> pd.DataFrame:
    """Our Table 2: ranking accuracy on the validation pairs against β, per student.

    ``r_θ``: fraction of pairs with r_θ(x, y_w) > r_θ(x, y_l), r_θ of Eq. (6) (β cancels);
    ``p_θ``: fraction with log p_θ(y_w|x) > log p_θ(y_l|x) (summed log-probs); ties count 1/2.
    The SFT row's r_θ is 0.5 by construction (r_θ ≡ 0). Degenerate runs are still scored
    (ranking uses the validation pairs, not generations), and marked with a trailing "†".
    """
    betas = sorted({b for s in students(records) for b in sweep_records(records, s)}, key=lambda b: -b)
    cols = {}
    for s in students(records):
        runs = sweep_records(records, s)
        for key, name in (("reward_accuracy", "r_θ"), ("policy_accuracy", "p_θ")):
            cells = []
            for b in betas:
                r = runs.get(b)
                cells.append("–" if r is None else f"{_metric(r, key):.3f}" + ("†" if r["metrics"]["degenerate"] else ""))
            cols[f"ours: {student_label(s)} {name}"] = cells
    if with_paper:
        for c in paper.TABLE2.columns:
            cols[f"paper: {c}"] = _paper_column(paper.TABLE2, c, betas)
    df = pd.DataFrame(cols, index=pd.Index([_row_label(b) for b in betas], name="β"))
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


# --------------------------------------------------------------------------- token statistics (Eq. 8)


def token_table(record: dict) -> pd.DataFrame:
    """The record's Eq. (8) table as a frame: ``token``, ``count``, ``mean_diff``, ``is_eos``; most negative first."""
    rows = [(t, int(v["count"]), float(v["mean_diff"])) for t, v in record["metrics"]["token_logp_diff"].items()]
    df = pd.DataFrame(rows, columns=["token", "count", "mean_diff"])
    df["is_eos"] = df["token"] == record["metrics"].get("eos_token")
    return df.sort_values(["mean_diff", "token"], kind="stable").reset_index(drop=True)


_SHOWN = {" ": "␣", "Ġ": "␣", "\n": "\\n", "Ċ": "\\n", "\t": "\\t"}


def token_label(token: str, eos_token: str | None = None) -> str:
    """A token as the figures show it: EOS spelled out, whitespace made visible, quoted."""
    if eos_token is not None and token == eos_token:
        return f"EOS {token}"
    shown = "".join(_SHOWN.get(ch, ch) for ch in token)
    return f"'{shown}'"


def down_weighted(record: dict, k: int = 10, min_count: int = MIN_COUNT) -> pd.DataFrame:
    """Figure 2 for one run: the ``k`` tokens with the most negative average Eq. (8) among tokens seen ≥ ``min_count`` times.

    Columns ``rank`` (1 = most down-weighted), ``token``, ``count``, ``mean_diff`` (nats; −10 means
    e¹⁰ ≈ 22,000 times less likely on average), ``is_eos``.
    """
    df = token_table(record)
    df = df[df["count"] >= min_count].head(k).reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def eos_rank(record: dict, min_count: int = MIN_COUNT) -> tuple[int | None, int]:
    """Where EOS ranks among the frequent tokens, most down-weighted first: ``(rank, n_tokens)``.

    Tokens seen fewer than ``min_count`` times are left out, as in Figure 2; ``rank`` is ``None``
    when EOS is not among the rest. Ties are broken by the token string (stable and reproducible).
    """
    df = token_table(record)
    df = df[df["count"] >= min_count].reset_index(drop=True)
    hits = np.flatnonzero(df["is_eos"].to_numpy())
    return (int(hits[0]) + 1 if len(hits) else None), len(df)


def eos_ranks(records: list[dict], min_count: int = MIN_COUNT) -> pd.DataFrame:
    """EOS rank and its average Eq. (8) value against β, per student (DPO runs only)."""
    rows = []
    for s in students(records):
        for b, r in sweep_records(records, s).items():
            if b == SFT:
                continue
            rank, n = eos_rank(r, min_count)
            tab = token_table(r)
            eos = tab[tab["is_eos"]]
            rows.append({
                "student": student_label(s), "β": b, "EOS rank": rank, "of frequent tokens": n,
                "EOS mean Eq. 8 (nats)": float(eos["mean_diff"].iloc[0]) if len(eos) else math.nan,
                "most down-weighted token": token_label(down_weighted(r, 1, min_count)["token"].iloc[0], r["metrics"].get("eos_token"))
                if len(down_weighted(r, 1, min_count)) else "–",
            })
    return pd.DataFrame(rows)


def imbalance(record: dict, min_count: int = MIN_COUNT) -> tuple[float, float]:
    """How unevenly Eq. (8) moves across tokens: ``(extreme, ratio)``.

    ``extreme`` = the most negative average Eq. (8) among tokens seen ≥ ``min_count`` times;
    ``ratio`` = max_t abs(d̄_t) / (Σ_t n_t abs(d̄_t) / Σ_t n_t), the largest per-token change over the
    occurrence-weighted mean change. A constraint that held every token to the same small
    change would give a ratio near 1; the paper's Figure 1 (most tokens near 0, a tail to −100)
    means a ratio of many times. NaN for an untrained model (every d̄_t = 0).
    """
    df = token_table(record)
    df = df[df["count"] >= min_count]
    if not len(df):
        return math.nan, math.nan
    mean_abs = float((df["count"] * df["mean_diff"].abs()).sum() / df["count"].sum())
    peak = float(df["mean_diff"].abs().max())
    return float(df["mean_diff"].min()), (peak / mean_abs if mean_abs > 0 else math.nan)


def token_histogram(record: dict, bin_width: float = 1.0, weighted: bool = True) -> pd.Series:
    """Our Figure 1 for one run: the distribution of per-token average Eq. (8), discretised.

    Each vocabulary token seen in the validation responses contributes its average Eq. (8)
    value d̄_t, binned to ``floor(d̄_t / bin_width) * bin_width``. ``weighted``: each token
    counts with its number of occurrences n_t, so a bin's ratio is the fraction of all token
    *occurrences* whose token type's average falls in it; otherwise each vocabulary token
    counts once (the fraction of token types). Not the distribution of individual per-position
    differences: the records keep only per-token means and counts.

    Returns:
        The ratio per bin, indexed by the bin's left edge in nats; the ratios sum to 1.
    """
    df = token_table(record)
    if not len(df):
        return pd.Series(dtype=float)
    bins = np.floor(df["mean_diff"].to_numpy() / bin_width) * bin_width
    w = df["count"].to_numpy(float) if weighted else np.ones(len(df))
    s = pd.Series(w, index=bins).groupby(level=0).sum()
    return (s / s.sum()).sort_index()


# --------------------------------------------------------------------------- seeds: the headline comparison


def _default_replicates(record: dict) -> list[dict]:
    from . import runner

    reps = runner.replicates(runner.config_of(record))
    return reps or [record]


@dataclass(frozen=True)
class Arm:
    """One arm of the headline comparison over the seeds that exist."""

    student: str
    arm: str
    beta: float
    seeds: tuple
    values: tuple

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation (ddof = 1); NaN with one seed."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan


def headline(records: list[dict], replicates: Callable[[dict], list[dict]] | None = None,
             metric: str = "lc_win_rate") -> pd.DataFrame:
    """The headline arms of each student over seeds: SFT, β = 0.1 (the customary value), the best β.

    The best β is chosen on the sweep's seed (0): the other seeds are an independent check of it.
    ``replicates(record)`` returns the records of the record's config at every headline seed that
    exists (default :func:`dpolib.experiments.records.replicates`; the record itself if none is found).

    Returns:
        A frame with one row per student and arm and the columns ``student``, ``arm`` (``"SFT"``,
        ``"β = 0.1"``, ``"best β"``), ``β``, ``n`` (seeds), ``seeds``, ``mean``, ``sd`` (NaN with one
        seed) and ``values``.
    """
    replicates = replicates or _default_replicates
    rows = []
    for s in students(records):
        runs = sweep_records(records, s)
        arms = [("SFT", SFT), ("β = 0.1", 0.1), ("best β", best_beta(records, s, metric))]
        for name, b in arms:
            if b is None or b not in runs:
                continue
            reps = replicates(runs[b]) or [runs[b]]
            reps = sorted(reps, key=lambda r: r["config"]["seed"])
            arm = Arm(s, name, b, tuple(r["config"]["seed"] for r in reps), tuple(_metric(r, metric) for r in reps))
            rows.append({"student": s, "arm": name, "β": b, "n": arm.n, "seeds": arm.seeds,
                         "mean": arm.mean, "sd": arm.sd, "values": arm.values})
    return pd.DataFrame(rows, columns=["student", "arm", "β", "n", "seeds", "mean", "sd", "values"])


def compare(head: pd.DataFrame, student: str, a: str = "best β", b: str = "SFT") -> dict:
    """Is arm ``a`` better than arm ``b`` beyond the seed-to-seed spread?

    The rule is :func:`dpolib.stats.within_spread` (the mean ± 1 sd intervals of the two
    arms overlap); ``within`` is ``None`` when the seeds cannot decide it.

    Returns:
        ``{"diff", "within" (bool | None), "n_a", "n_b", "same" (the arms are one run), "text"}``.
    """
    rows = head[head["student"] == student].set_index("arm")
    if a not in rows.index or b not in rows.index:
        return {"diff": math.nan, "within": None, "n_a": 0, "n_b": 0, "same": False,
                "text": f"{student_label(student)}: the arms {a!r} and {b!r} are not both available."}
    ra, rb = rows.loc[a], rows.loc[b]
    same = ra["β"] == rb["β"]
    d = float(ra["mean"] - rb["mean"])
    label = student_label(student)
    fmt = lambda r: f"{r['mean']:.2f}" + ("" if r["n"] < 2 else f" ± {r['sd']:.2f}") + f" (n = {r['n']})"  # noqa: E731
    a_name = f"best β = {ra['β']:g}" if a == "best β" else a
    if same:
        return {"diff": 0.0, "within": None, "n_a": int(ra["n"]), "n_b": int(rb["n"]), "same": True,
                "text": f"{label}: the best β is {ra['β']:g} itself, so the two arms are the same run."}
    head_text = f"{label}: {a_name} scores {fmt(ra)} against {fmt(rb)} for {b}"
    within = within_spread(d, ra["sd"], int(ra["n"]), rb["sd"], int(rb["n"]))
    if max(ra["n"], rb["n"]) < 2:
        text = (f"{head_text}; only seed 0 exists for both arms, "
                f"so whether the difference of {d:+.2f} exceeds the seed-to-seed spread is unknown.")
    elif within is None:
        text = (f"{head_text}; only seed 0 exists for one arm, and the difference of {d:+.2f} exceeds the other "
                "arm's spread, so whether it exceeds the seed-to-seed spread is unknown.")
    else:
        verdict = ("within the seed-to-seed spread (the mean ± 1 sd intervals overlap)" if within
                   else "outside the seed-to-seed spread (the mean ± 1 sd intervals do not overlap)")
        partial = "" if min(ra["n"], rb["n"]) >= 2 else " (only seed 0 exists for one arm: the spread is the other arm's)"
        text = f"{head_text}; the difference {d:+.2f} is {verdict}{partial}."
    return {"diff": d, "within": within, "n_a": int(ra["n"]), "n_b": int(rb["n"]), "same": False, "text": text}


# --------------------------------------------------------------------------- evidence and claims


def evidence(records: list[dict], replicates: Callable[[dict], list[dict]] | None = None,
             min_count: int = MIN_COUNT, metric: str = "lc_win_rate") -> dict:
    """Everything the RQ1 claims test, per student, computed from the records.

    Returns:
        A dict with ``students`` (a list), ``min_count``, ``headline`` (the frame of
        :func:`headline`) and ``per_student``, a dict per student that holds ``betas`` (DPO β,
        descending), ``score``, ``degenerate``, ``policy_acc``, ``reward_acc``, ``length``,
        ``eos_diff``, ``eos_rank``, ``extreme`` and ``ratio`` (each ``{β: value}``, DPO runs),
        ``sft_score``, ``sft_length``, ``best_beta``.
    """
    per = {}
    for s in students(records):
        runs = sweep_records(records, s)
        dpo = {b: r for b, r in runs.items() if b != SFT}
        d: dict = {"betas": list(dpo), "best_beta": best_beta(records, s, metric)}
        d["score"] = {b: _metric(r, metric) for b, r in dpo.items()}
        d["degenerate"] = {b: bool(r["metrics"]["degenerate"]) for b, r in dpo.items()}
        d["policy_acc"] = {b: _metric(r, "policy_accuracy") for b, r in dpo.items()}
        d["reward_acc"] = {b: _metric(r, "reward_accuracy") for b, r in dpo.items()}
        d["length"] = {b: _metric(r, "mean_length_tokens") for b, r in dpo.items()}
        d["eos_rank"], d["eos_diff"], d["extreme"], d["ratio"] = {}, {}, {}, {}
        for b, r in dpo.items():
            d["eos_rank"][b] = eos_rank(r, min_count)
            tab = token_table(r)
            eos = tab[tab["is_eos"]]
            d["eos_diff"][b] = float(eos["mean_diff"].iloc[0]) if len(eos) else math.nan
            d["extreme"][b], d["ratio"][b] = imbalance(r, min_count)
        sft = runs.get(SFT)
        d["train_acc"] = {b: train_reward_accuracy(r) for b, r in dpo.items()}
        d["sft_score"] = _metric(sft, metric) if sft else math.nan
        d["sft_length"] = _metric(sft, "mean_length_tokens") if sft else math.nan
        per[s] = d
    return {"students": list(per), "per_student": per, "min_count": min_count,
            "headline": headline(records, replicates, metric) if per else pd.DataFrame()}


def _each_student(ev: dict, test: Callable[[str, dict], tuple[bool | None, str]], need: int = 3) -> Measurement:
    """Apply ``test(student, d) -> (ok, shown)`` to every student; agree only if all agree."""
    if not ev["students"]:
        return Measurement.missing("no RQ1 records")
    results, notes = {}, []
    for s in ev["students"]:
        d = ev["per_student"][s]
        if len(d["betas"]) < need:
            results[s] = (None, f"{len(d['betas'])} β values")
            notes.append(f"{student_label(s)}: fewer than {need} β values")
            continue
        results[s] = test(s, d)
    shown = "; ".join(f"{student_label(s)}: {txt}" for s, (_, txt) in results.items())
    oks = [ok for ok, _ in results.values()]
    if any(ok is None for ok in oks):
        return Measurement(results, None, shown, "; ".join(notes) or "not testable for every student")
    n_ok = sum(oks)
    note = "" if n_ok in (0, len(oks)) else f"holds for {n_ok} of {len(oks)} students"
    return Measurement(results, all(oks), shown, note)


def _best_small(s, d):
    b = d["best_beta"]
    if b is None:
        return False, "every run degenerate"
    return b <= 0.02, f"best β {b:g}"


def _interior(s, d):
    b = d["best_beta"]
    if b is None:
        return False, "every run degenerate"
    betas = d["betas"]
    smallest = min(betas)
    low = "[degenerate]" if d["degenerate"][smallest] else f"{d['score'][smallest]:.2f}"
    ok = max(betas) > b > smallest and d["score"][b] > d["score"][max(betas)]
    return ok, f"best β {b:g} ({d['score'][b]:.2f}); β {max(betas):g}: {d['score'][max(betas)]:.2f}; β {smallest:g}: {low}"


def _sensitive(s, d):
    b = d["best_beta"]
    if b is None:
        return False, "every run degenerate"
    below = [x for x in d["betas"] if x < b]
    above = [x for x in d["betas"] if x > b]
    if not below:
        return False, f"best β {b:g} is the smallest tried: no degradation below it was observed"
    nb = max(below)
    if d["degenerate"][nb]:
        return True, f"β {nb:g} (one step below {b:g}) [degenerate]"
    drop_below = d["score"][b] - d["score"][nb]
    ok = drop_below >= SENSITIVITY_DROP * abs(d["score"][b])
    txt = f"one step below ({nb:g}) loses {drop_below:.2f} ({drop_below / abs(d['score'][b]):.0%})"
    if above:
        na = min(above)
        drop_above = d["score"][b] - d["score"][na]
        ok = ok and drop_below > drop_above
        txt += f", one step above ({na:g}) loses {drop_above:.2f}"
    return ok, txt


def _rho(betas, values) -> tuple[float, str]:
    """Spearman ρ(β, values) and a failure note: "" | "too few values" | "constant" (a constant is no trend)."""
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 3:
        return math.nan, "too few values"
    if len(set(finite)) == 1:
        return 0.0, "constant"
    return spearman(betas, values), ""


def _trend(key: str, sign: int, what: str):
    def test(s, d):
        betas = d["betas"]
        rho, why = _rho(betas, [d[key][b] for b in betas])
        if why == "too few values":
            return None, f"{what}: {why}"
        return (sign * rho >= RHO), f"ρ(β, {what}) = {rho:+.2f}" + (f" ({why})" if why else "")
    return test


def _eos_first(s, d):
    b = min(d["betas"])
    rank, n = d["eos_rank"][b]
    if rank is None:
        return False, f"β {b:g}: EOS not among the {n} frequent tokens"
    return rank == 1, f"β {b:g}: EOS rank {rank} of {n} ({d['eos_diff'][b]:+.2f} nats)"


def _eos_deeper(s, d):
    betas = d["betas"]
    rho, why = _rho(betas, [d["eos_diff"][b] for b in betas])
    small = d["eos_diff"][min(betas)]
    if why == "too few values":
        return None, "EOS not found in enough runs"
    return (rho >= RHO and small < 0), f"ρ(β, EOS Eq. 8) = {rho:+.2f}; {small:+.2f} nats at β {min(betas):g}"


def _token_extremes(s, d):
    b = min(d["betas"])
    ext, ratio = d["extreme"][b], d["ratio"][b]
    if math.isnan(ratio):
        return None, "no token statistics"
    ok = ext <= -math.log(10) and ratio >= 5
    return ok, f"β {b:g}: most down-weighted {ext:+.2f} nats (×{math.exp(-ext):.3g}), {ratio:.1f}× the mean |change|"


def _headline_test(a: str, b: str):
    def measure(ev):
        if not ev["students"]:
            return Measurement.missing("no RQ1 records")
        parts, oks, notes = {}, [], []
        for s in ev["students"]:
            c = compare(ev["headline"], s, a, b)
            if c["same"]:
                ok = False
                txt = "the best β is 0.1 itself"
            elif math.isnan(c["diff"]):
                return Measurement.missing(c["text"])
            else:
                ok = c["diff"] > 0 and c["within"] is not True
                spread = {None: "spread unknown (one seed)", True: "within seed spread",
                          False: "beyond seed spread"}[c["within"]]
                txt = f"{c['diff']:+.2f} ({spread}, n = {c['n_a']}/{c['n_b']})"
                if c["within"] is None:
                    notes.append(f"{student_label(s)}: only seed 0")
            parts[s] = (ok, txt)
            oks.append(ok)
        shown = "; ".join(f"{student_label(s)}: {t}" for s, (_, t) in parts.items())
        return Measurement(parts, all(oks), shown, "; ".join(notes))
    return measure


def _practice(ev):
    """Best practice 1: a smaller β than 0.1 is better, but not the smallest: tune it."""
    beats = _headline_test("best β", "β = 0.1")(ev)
    interior = _each_student(ev, _interior)
    if beats.agrees is None or interior.agrees is None:
        return Measurement((beats.value, interior.value), None, f"{beats.shown} | {interior.shown}", beats.note or interior.note)
    return Measurement((beats.value, interior.value), beats.agrees and interior.agrees,
                       f"vs β 0.1: {beats.shown}", beats.note)


#: The RQ1 claims (digest §1 and best practice 1 of §6), each with our criterion.
CLAIMS = [
    Claim("rq1.best-beta-small", "RQ1",
          "With the SFT model as reference, the optimal β is well below the customary 0.1",
          "§4, Table 1 (digest §1)", "best β 0.01 (mistral-7b, 16.25), 0.02 (tulu-2-7b, 10.46)",
          "for every student, the best non-degenerate β by LC win rate is ≤ 0.02 (a factor ≥ 5 below 0.1)",
          lambda ev: _each_student(ev, _best_small, need=2)),
    Claim("rq1.interior-optimum", "RQ1",
          "A smaller β improves performance until it is too small, then performance degrades or degenerates",
          "§4, Table 1", "mistral-7b: 14.03 (0.1) → 16.25 (0.01) → 12.36 (0.005); tulu-2-7b: 9.38 → 10.46 (0.02) → [degenerate] (0.005)",
          "for every student, the best β lies strictly inside the grid and beats β = 0.1",
          lambda ev: _each_student(ev, _interior)),
    Claim("rq1.sensitive-below", "RQ1",
          "DPO is sensitive to β just below the optimum: one step lower degrades quickly",
          "§4, Table 1", "mistral-7b −3.89 one step below, −0.19 one step above; tulu-2-7b [degenerate] below",
          f"for every student, one grid step below the best β is degenerate or loses ≥ {SENSITIVITY_DROP:.0%} of the best "
          "score, and more than one step above loses",
          lambda ev: _each_student(ev, _sensitive)),
    Claim("rq1.dpo-beats-sft", "RQ1",
          "DPO at its best β improves on the SFT model",
          "§4, Table 1", "16.25 vs 7.57 (mistral-7b); 10.46 vs 8.50 (tulu-2-7b)",
          "for every student, mean LC at the best β exceeds the SFT model's, and not within the seed spread",
          _headline_test("best β", "SFT")),
    Claim("rq1.policy-accuracy-rises", "RQ1",
          "The policy's ranking accuracy p_θ rises as β falls",
          "§4.1, Table 2", "mistral-7b p_θ 0.495 (0.1) → 0.704 (0.005); tulu-2-7b 0.462 → 0.680",
          f"for every student, Spearman ρ(β, p_θ accuracy) ≤ −{RHO} over the DPO runs",
          lambda ev: _each_student(ev, _trend("policy_acc", -1, "p_θ acc"))),
    Claim("rq1.eos-most-down-weighted", "RQ1",
          "EOS is the most down-weighted token at small β",
          "§4.2, Figure 2 (digest §5)", "EOS first among tokens seen ≥ 100 times",
          "for every student, EOS ranks first by average Eq. (8) among frequent tokens at the smallest β",
          lambda ev: _each_student(ev, _eos_first, need=1)),
    Claim("rq1.eos-deeper-small-beta", "RQ1",
          "EOS is down-weighted more strongly the smaller β",
          "§4.2, Figure 2", "EOS bar deepest for β = 0.005, shallowest for 0.1 (values not recoverable)",
          f"for every student, Spearman ρ(β, EOS average Eq. 8) ≥ {RHO} and EOS is down-weighted (< 0) at the smallest β",
          lambda ev: _each_student(ev, _eos_deeper)),
    Claim("rq1.longer-small-beta", "RQ1",
          "Smaller β makes outputs longer",
          "§4.2 (digest §5)", "stated, from the down-weighted EOS; no lengths given for RQ1",
          f"for every student, Spearman ρ(β, mean output length in tokens) ≤ −{RHO} over the DPO runs",
          lambda ev: _each_student(ev, _trend("length", -1, "length"))),
    Claim("rq1.token-extremes", "RQ1",
          "A sequence-level KL constraint does not prevent extreme token-level differences",
          "§4.2, Figure 1 (digest §5)", "a small portion of tokens reaches differences down to −100; −10 ≈ 22,000× down-weighting",
          "for every student at the smallest β, the most down-weighted frequent token is down-weighted ≥ 10× (Eq. 8 ≤ −ln 10) "
          "and moves ≥ 5× as far as the occurrence-weighted mean token",
          lambda ev: _each_student(ev, _token_extremes, need=1)),
    Claim("practice.smaller-beta", "Practice",
          "Best practice 1: with the SFT model as reference use a smaller, but sufficiently strong, KL constraint; tune it",
          "§1, §7 (digest §6)", "optimal β 0.01–0.02 rather than 0.1; just below the optimum the model degrades",
          "for every student, the best β beats β = 0.1 (not within the seed spread) and the best β is interior to the grid",
          _practice),
]


def train_reward_accuracy(record: dict, tail: float = 0.1) -> float:
    """r_θ ranking accuracy on the *training* batches at the end of training: the mean of TRL's
    ``rewards/accuracies`` over the last ``tail`` of the logged steps (NaN without curves)."""
    rows = [c["rewards/accuracies"] for c in record.get("curves", []) if "rewards/accuracies" in c]
    if not rows:
        return math.nan
    return float(np.mean(rows[-max(1, int(round(tail * len(rows)))):]))


def likely_reason(claim_id: str, ev: dict) -> str:
    """The most likely reason, from our evidence, why a claim does not hold in our world (one paragraph).

    Every number in the text is read from ``ev``; where the records cannot settle the cause, the
    text says what would.
    """
    per = ev["per_student"]
    lines = []
    if claim_id in ("rq1.best-beta-small", "rq1.interior-optimum", "rq1.dpo-beats-sft", "practice.smaller-beta"):
        for s, d in per.items():
            b = d["best_beta"]
            if b is None:
                lines.append(f"every DPO run of the {student_label(s)} degenerated")
            elif d["score"][b] <= d["sft_score"]:
                lines.append(
                    f"no β improves the {student_label(s)} on its SFT model ({d['score'][b]:.2f} at best vs "
                    f"{d['sft_score']:.2f}) although r_θ ranks {d['reward_acc'][b]:.0%} of validation pairs correctly: "
                    "DPO learns the annotator's preferences, but in this world moving towards them lowers the judged "
                    "score, so the strongest constraint tried (largest β) does least harm and the optimum sits at "
                    "the edge of the grid")
            elif b >= max(d["betas"]):
                lines.append(f"the {student_label(s)} is best at the largest β tried ({b:g}): our short DPO runs may "
                             "move the policy less than the paper's 3 epochs on 61k pairs, so the constraint binds at a larger β")
            elif b > 0.02:
                lines.append(f"the {student_label(s)} peaks at β {b:g}, inside the grid but above 0.02: where the optimum "
                             "falls depends on data size, learning rate and step budget, all different from the paper's")
            elif claim_id == "rq1.dpo-beats-sft" or claim_id == "practice.smaller-beta":
                lines.append(f"the {student_label(s)}'s gain at β {b:g} is not larger than the seed-to-seed spread")
    elif claim_id == "rq1.sensitive-below":
        for s, d in per.items():
            b = d["best_beta"]
            if b is not None and any(x < b for x in d["betas"]):
                nb = max(x for x in d["betas"] if x < b)
                lines.append(f"the {student_label(s)} loses {d['score'][b] - d['score'][nb]:.2f} from β {b:g} to {nb:g} "
                             f"and no run is degenerate below {b:g}" if not any(d["degenerate"][x] for x in d["betas"] if x < b)
                             else f"the {student_label(s)} loses {d['score'][b] - d['score'][nb]:.2f} from β {b:g} to {nb:g}")
        lines.append("a curve that declines steadily from the largest β has no sharp edge below an interior optimum to find")
    elif claim_id == "rq1.policy-accuracy-rises":
        for s, d in per.items():
            hi, lo = max(d["betas"]), min(d["betas"])
            lines.append(
                f"for the {student_label(s)}, p_θ accuracy goes from {d['policy_acc'][hi]:.3f} (β {hi:g}) to "
                f"{d['policy_acc'][lo]:.3f} (β {lo:g}) while r_θ's validation accuracy goes from {d['reward_acc'][hi]:.3f} "
                f"to {d['reward_acc'][lo]:.3f} and its training accuracy at the end of training is "
                f"{d['train_acc'][hi]:.2f} → {d['train_acc'][lo]:.2f}")
        gaps = [d["train_acc"][min(d["betas"])] - d["reward_acc"][min(d["betas"])] for d in per.values()]
        if all(g >= 0.1 for g in gaps if not math.isnan(g)) and not all(math.isnan(g) for g in gaps):
            lines.append("training accuracy stays well above validation accuracy at the smallest β, so the small-β "
                         "policies overfit the training pairs instead of learning a ranking that generalises (the "
                         "paper's 61k pairs leave less room for that than our few thousand)")
        else:
            lines.append("training accuracy falls with β too, so the small-β runs do not even fit the training pairs "
                         "better: with σ(−βΔ) ≈ ½ for every pair none saturates, and the updates lower both responses' "
                         "log-probabilities rather than separate them within our step budget")
    elif claim_id in ("rq1.eos-most-down-weighted", "rq1.eos-deeper-small-beta"):
        for s, d in per.items():
            b = min(d["betas"])
            rank, n = d["eos_rank"][b]
            lines.append(f"at β {b:g} EOS of the {student_label(s)} ranks {rank} of {n} frequent tokens "
                         f"({d['eos_diff'][b]:+.2f} nats; the most down-weighted token {d['extreme'][b]:+.2f})")
        lines.append("EOS is singled out in the paper because the preferred answers are longer, so stopping is what "
                     "separates them; in our world the content tokens (the items an answer gets right or wrong) move "
                     "most, which says the preference pairs differ more in content than in where they stop. "
                     "A length comparison of chosen and rejected answers in the data report would settle it")
    elif claim_id == "rq1.longer-small-beta":
        for s, d in per.items():
            hi, lo = max(d["betas"]), min(d["betas"])
            peak = max(d["betas"], key=lambda b: d["length"][b])
            lines.append(f"the {student_label(s)} writes {d['length'][hi]:.1f} tokens at β {hi:g}, "
                         f"{d['length'][peak]:.1f} at β {peak:g} (its longest) and {d['length'][lo]:.1f} at β {lo:g} "
                         f"(SFT: {d['sft_length']:.1f})")
        lines.append("the paper's mechanism runs through EOS; where EOS is not the token DPO pushes down hardest "
                     "(see the EOS claims), nothing makes the smallest-β outputs run on")
    elif claim_id == "rq1.token-extremes":
        for s, d in per.items():
            b = min(d["betas"])
            lines.append(f"the {student_label(s)} at β {b:g}: most down-weighted {d['extreme'][b]:+.2f} nats, "
                         f"{d['ratio'][b]:.1f}× the mean change")
        lines.append("with a vocabulary of tens of tokens rather than 32,000, most tokens are frequent and move together, "
                     "which lowers the ratio of the extreme to the mean even when the extreme is large")
    return ("; ".join(lines) + ".") if lines else ""


def reasons(card: pd.DataFrame, ev: dict) -> str:
    """Markdown: for every claim we disagree with, the claim and :func:`likely_reason` (empty if none)."""
    out, seen = [], {}
    for _, row in card[card["verdict"] == "disagrees"].iterrows():
        why = likely_reason(row["id"], ev)
        if why in seen:
            why = f"the same reason as for `{seen[why]}`."
        else:
            seen[why] = row["id"]
        out.append(f"- **{row['claim']}** (`{row['id']}`): {why}")
    return "\n".join(out)


# --------------------------------------------------------------------------- figures


def _series_style(i: int, student: str) -> dict:
    from .. import plotting

    name = ("dpo", "compatible", "incompatible", "likelihood")[i % 4]
    return plotting.series(name, label=student_label(student))


def _sft_line(ax, y, colour, label):
    if not math.isnan(y):
        ax.axhline(y, color=colour, linestyle="--", linewidth=1.2, label=label)


def plot_scores(records: list[dict], ax=None, metric: str = "lc_win_rate", ylabel: str = "LC win rate (%)"):
    """Score against β for every student (log β axis); dashed: the SFT model; a cross on the curve: degenerate."""
    from .. import plotting

    if ax is None:
        fig, ax = plotting.figure()
    for i, s in enumerate(students(records)):
        st = _series_style(i, s)
        runs = sweep_records(records, s)
        dpo = {b: r for b, r in runs.items() if b != SFT}
        ax.plot(list(dpo), [_metric(r, metric) for r in dpo.values()], **st)
        deg = [b for b, r in dpo.items() if r["metrics"]["degenerate"]]
        if deg:
            ax.plot(deg, [_metric(dpo[b], metric) for b in deg], "x", color="k", markersize=9, label=f"{student_label(s)}: [degenerate]")
        if SFT in runs:
            _sft_line(ax, _metric(runs[SFT], metric), st["color"], f"{student_label(s)}: SFT (β = ∞)")
    plotting.beta_axis(ax)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")
    return ax.figure, ax


def plot_accuracy(records: list[dict], ax=None):
    """Table 2 as a figure: r_θ (dashed) and p_θ (solid) ranking accuracy against β; the 0.5 line is chance."""
    from .. import plotting

    if ax is None:
        fig, ax = plotting.figure()
    for i, s in enumerate(students(records)):
        st = _series_style(i, s)
        dpo = {b: r for b, r in sweep_records(records, s).items() if b != SFT}
        ax.plot(list(dpo), [_metric(r, "policy_accuracy") for r in dpo.values()], **{**st, "label": f"{student_label(s)}: p_θ"})
        ax.plot(list(dpo), [_metric(r, "reward_accuracy") for r in dpo.values()],
                **{**st, "linestyle": "--", "marker": "o", "markerfacecolor": "none", "label": f"{student_label(s)}: r_θ"})
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance (0.5)")
    plotting.beta_axis(ax)
    ax.set_ylabel("ranking accuracy (validation pairs)")
    ax.legend(loc="best")
    return ax.figure, ax


def plot_token_distribution(records: list[dict], bin_width: float = 1.0, weighted: bool = True):
    """Our Figure 1: one panel per student, one curve per β of the distribution of average Eq. (8) per token (log ratio)."""
    from .. import plotting

    studs = students(records)
    fig, axes = plotting.figure(ncols=max(1, len(studs)), sharey=True)
    axes = np.atleast_1d(axes)
    import matplotlib as mpl

    for ax, s in zip(axes, studs):
        dpo = {b: r for b, r in sweep_records(records, s).items() if b != SFT}
        cmap = mpl.colormaps["viridis"]
        for j, (b, r) in enumerate(dpo.items()):
            h = token_histogram(r, bin_width, weighted)
            if len(h):
                ax.plot(h.index + bin_width / 2, h.values, marker="o", markersize=3,
                        color=cmap(j / max(1, len(dpo) - 1)), label=f"β = {b:g}")
        ax.set_yscale("log")
        ax.set_xlabel("token's average Eq. (8) difference (nats)")
        ax.set_title(student_label(s))
        ax.legend(loc="upper left")
    axes[0].set_ylabel("ratio of token occurrences" if weighted else "ratio of vocabulary tokens")
    fig.tight_layout()
    return fig, axes


def plot_down_weighted(records: list[dict], k: int = 10, min_count: int = MIN_COUNT):
    """Our Figure 2: per student, the ``k`` most down-weighted frequent tokens at the smallest β, one bar per β.

    EOS is always drawn: when it is not among the ``k``, it is added as the last row, labelled with its rank.
    """
    from .. import plotting
    import matplotlib as mpl

    studs = students(records)
    fig, axes = plotting.figure(ncols=max(1, len(studs)), height=4.8)
    axes = np.atleast_1d(axes)
    handles = None
    for ax, s in zip(axes, studs):
        dpo = {b: r for b, r in sweep_records(records, s).items() if b != SFT}
        if not dpo:
            continue
        smallest = dpo[min(dpo)]
        eos = smallest["metrics"].get("eos_token")
        tokens = list(down_weighted(smallest, k, min_count)["token"])
        labels = [token_label(t, eos) for t in tokens]
        rank, n = eos_rank(smallest, min_count)
        if eos is not None and eos not in tokens and rank is not None:
            tokens.append(eos)
            labels.append(f"EOS (rank {rank}/{n})")
        width = 0.8 / max(1, len(dpo))
        cmap = mpl.colormaps["viridis"]
        for j, (b, r) in enumerate(dpo.items()):
            tab = token_table(r).set_index("token")["mean_diff"]
            ys = np.arange(len(tokens)) + j * width
            ax.barh(ys, [tab.get(t, math.nan) for t in tokens], height=width,
                    color=cmap(j / max(1, len(dpo) - 1)), label=f"β = {b:g}")
        ax.set_yticks(np.arange(len(tokens)) + 0.4 - width / 2)
        ax.set_yticklabels(labels)
        ax.invert_yaxis()
        ax.set_xlabel("average Eq. (8) difference (nats)")
        ax.set_title(f"{student_label(s)}: β = {min(dpo):g}'s top {k}, tokens seen ≥ {min_count}×", fontsize=9)
        handles = ax.get_legend_handles_labels()
    fig.tight_layout()
    if handles:
        fig.legend(*handles, loc="upper center", ncol=min(6, len(handles[0])), bbox_to_anchor=(0.5, 0.0))
    return fig, axes


def plot_length(records: list[dict]):
    """Output length (tokens) and EOS's average Eq. (8) against β, per student; dashed: the SFT model's length."""
    from .. import plotting

    fig, axes = plotting.figure(ncols=2)
    for i, s in enumerate(students(records)):
        st = _series_style(i, s)
        runs = sweep_records(records, s)
        dpo = {b: r for b, r in runs.items() if b != SFT}
        axes[0].plot(list(dpo), [_metric(r, "mean_length_tokens") for r in dpo.values()], **st)
        if SFT in runs:
            _sft_line(axes[0], _metric(runs[SFT], "mean_length_tokens"), st["color"], f"{student_label(s)}: SFT")
        eos = []
        for r in dpo.values():
            tab = token_table(r)
            eos.append(float(tab.loc[tab["is_eos"], "mean_diff"].iloc[0]) if tab["is_eos"].any() else math.nan)
        axes[1].plot(list(dpo), eos, **st)
    axes[0].set_ylabel("mean output length (tokens, greedy)")
    axes[1].set_ylabel("EOS: average Eq. (8) difference (nats)")
    axes[1].axhline(0, color="grey", linewidth=1, linestyle=":")
    for ax in axes:
        plotting.beta_axis(ax, label=r"$\beta$")
    axes[0].legend(loc="best")
    fig.tight_layout()
    return fig, axes


def plot_headline(head: pd.DataFrame):
    """The headline arms with their seed spread: bar = mean, error bar = ±1 sd (none with one seed), dots = seeds."""
    from .. import plotting

    fig, ax = plotting.figure()
    studs = list(dict.fromkeys(head["student"]))
    arms = ["SFT", "β = 0.1", "best β"]
    colours = [plotting.SERIES["sft"]["color"], plotting.PALETTE["sky"], plotting.SERIES["dpo"]["color"]]
    width = 0.26
    for j, (arm, colour) in enumerate(zip(arms, colours)):
        sub = head[head["arm"] == arm].set_index("student")
        xs, means, sds = [], [], []
        for i, s in enumerate(studs):
            if s in sub.index:
                xs.append(i + (j - 1) * width)
                means.append(sub.loc[s, "mean"])
                sds.append(0.0 if math.isnan(sub.loc[s, "sd"]) else sub.loc[s, "sd"])
                ax.plot([xs[-1]] * sub.loc[s, "n"], sub.loc[s, "values"], "o", color="k", markersize=3, zorder=3)
        ax.bar(xs, means, width, yerr=sds, capsize=3, color=colour, alpha=0.8, label=arm)
        for x, s in zip(xs, [s for s in studs if s in sub.index]):
            if arm == "best β":
                ax.annotate(f"β={sub.loc[s, 'β']:g}", (x, 0), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, color="white")
    ax.set_xticks(range(len(studs)))
    ax.set_xticklabels([student_label(s) for s in studs])
    ax.set_ylabel("LC win rate (%): mean ± 1 sd over seeds")
    ax.legend(loc="best")
    return fig, ax


# --------------------------------------------------------------------------- the exact world, for contrast


def tabular_curve(n_betas: int = 40, student: str = "loglinear", seed: int | None = None) -> pd.DataFrame:
    """DPO with the SFT reference in :mod:`dpolib.tabular`'s exact world, on a dense β grid.

    Each β is trained on the world's finite preference data (Eq. 5) and evaluated exactly:
    ``gold`` (expected gold reward), ``accuracy`` (policy ranking accuracy, Table 2's p_θ),
    ``length`` (expected length), ``kl_sft`` and ``entropy``; one row per β (ascending).
    """
    from .. import tabular as T

    world = T.make_world() if seed is None else T.make_world(seed=seed)
    betas = T.log_betas(n_betas)
    m = T.evaluate(world, T.train(world, "sft", betas, student), "sft")
    df = pd.DataFrame({k: v.detach().numpy() for k, v in m.items()}, index=pd.Index(betas.numpy(), name="β"))
    df.attrs["sft"] = {k: float(v) for k, v in T.evaluate(world, world.log_sft.unsqueeze(0), "sft").items() if v.numel() == 1}
    df.attrs["length_peak"] = world.config.length_peak
    return df


def plot_tabular(curve: pd.DataFrame):
    """The exact world's dense curves: expected gold reward, policy ranking accuracy and expected length against β."""
    from .. import plotting

    fig, axes = plotting.figure(ncols=3)
    sft = curve.attrs.get("sft", {})
    for ax, key, label in zip(axes, ("gold", "accuracy", "length"),
                              ("expected gold reward (exact)", "policy ranking accuracy (exact)", "expected length")):
        ax.plot(curve.index, curve[key], **plotting.series("dpo", markersize=3, label="DPO, SFT reference"))
        if key in sft:
            ax.axhline(sft[key], **plotting.series("sft"))
        plotting.beta_axis(ax, label=r"$\beta$")
        ax.set_ylabel(label)
    axes[0].legend(loc="lower left")
    fig.suptitle("the exact tabular world (log-linear student): dense β sweep")
    fig.tight_layout()
    return fig, axes


# --------------------------------------------------------------------------- reading records


def records_by_config(configs, folder: Path) -> list[dict]:
    """Records in ``folder`` whose ``config`` equals one of ``configs``, matched by config, not by key.

    :func:`dpolib.experiments.runner.run_grid` finds records by key, which changes with the profile and the
    pipeline version; this reads records of an earlier version too (for inspection and tests).
    """
    from dataclasses import asdict

    from ..provenance import read_json

    wanted = [asdict(c) for c in configs]
    found: dict[int, dict] = {}
    for path in sorted(Path(folder).glob("*.json")):
        rec = read_json(path)
        cfg = rec.get("config")
        if cfg in wanted:
            found.setdefault(wanted.index(cfg), rec)
    return [found[i] for i in sorted(found)]
