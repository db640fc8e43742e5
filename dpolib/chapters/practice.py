"""Training dynamics and practice: what the logged curves of a DPO run mean, and the paper's advice checked.

Everything here is a function of result records (:mod:`dpolib.experiments.runner`) or of TRL's
per-step log rows, so the Practice chapter computes every number it states.
The puzzles it explains are the ones DPO users ask about most (anchors §C.3):

* the chosen log-prob falls while the reward margin grows
  (:func:`chosen_falls_while_margin_grows`, :func:`trajectory_summary`);
* a loss that sits at log 2 (:func:`loss_vs_log2`): at step 1 the loss is
  log 2 = 0.6931 exactly when the reference *is* the initial policy (the margin
  is 0), and it stays near log 2 when β·margin stays small, as at tiny β;
* which direction of β is the stronger constraint (:func:`drift_table`):
  larger β keeps the policy closer to the reference, although the *logged*
  reward margin β·h grows with β;
* outputs getting longer (:func:`length_table`);
* "reference-free" is DPO with a uniform reference
  (:func:`uniform_reference_check`, :func:`reference_free_in_records`).

The Practice scorecard (:func:`practice_claims`, evaluated with
:func:`dpolib.scorecard.scorecard` on :func:`practice_evidence`) tests the
paper's two best practices (digest §6) on our records, and :func:`checklist`
turns the same evidence into a short, computed checklist.

Column names follow TRL's log keys (``logps/chosen``, ``rewards/margins``, ...);
the derived columns are

* ``chosen_logratio`` = ``rewards/chosen`` / β = log p_θ(y_w|x) − log p_ref(y_w|x) (nats),
* ``rejected_logratio`` likewise for y_l,
* ``h`` = ``rewards/margins`` / β, the bracket of Eq. (5) in nats (``margin`` is β·h, as TRL logs it).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..losses import dpo_loss
from ..references import UniformReference
from ..scorecard import Claim, Measurement
from .stats import spearman

__all__ = [
    "best_beta_line",
    "LOG2",
    "run_curves",
    "curves_frame",
    "window_change",
    "chosen_falls_while_margin_grows",
    "trajectory_summary",
    "loss_vs_log2",
    "drift_table",
    "length_table",
    "rank_correlation",
    "uniform_reference_check",
    "reference_free_in_records",
    "with_replicates",
    "arms",
    "practice_evidence",
    "practice_claims",
    "checklist",
    "plot_trajectories",
    "plot_loss_vs_log2",
    "plot_drift",
    "plot_length",
    "plot_sweeps",
]

#: The DPO loss of a pair whose margin is zero, −log σ(0) = log 2 ≈ 0.6931.
LOG2 = math.log(2.0)

#: Run-identifying columns carried from a record's config into every frame.
CONFIG_COLUMNS = ("student", "objective", "reference", "beta", "seed")

_CURVE_COLUMNS = {
    "loss": "loss",
    "logps/chosen": "logps_chosen",
    "logps/rejected": "logps_rejected",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "rewards/margins": "margin",
    "rewards/accuracies": "accuracy",
}


def _trained(records: Iterable[dict]) -> list[dict]:
    """Records with training curves (the SFT rows have none)."""
    return [r for r in records if r.get("curves")]


# --------------------------------------------------------------------------- curves


def run_curves(record: dict) -> pd.DataFrame:
    """One run's TRL log as a frame indexed by step, with the derived columns (module docstring).

    Args:
        record: a result record (``config`` with ``beta``; ``curves`` = TRL log rows).

    Returns:
        columns ``loss, logps_chosen, logps_rejected, reward_chosen, reward_rejected, margin,
        accuracy, chosen_logratio, rejected_logratio, h``; empty for a record without curves.
    """
    rows = record.get("curves") or []
    cols = list(_CURVE_COLUMNS.values()) + ["chosen_logratio", "rejected_logratio", "h"]
    if not rows:
        return pd.DataFrame(columns=cols)
    beta = record["config"]["beta"]
    df = pd.DataFrame(rows)
    missing = [k for k in _CURVE_COLUMNS if k not in df]
    if missing:
        raise KeyError(f"curves of {record.get('label', '?')} lack TRL keys {missing}")
    step = df["step"] if "step" in df else pd.Series(range(1, len(df) + 1))
    out = df[list(_CURVE_COLUMNS)].rename(columns=_CURVE_COLUMNS).astype(float)
    out.index = pd.Index(step.astype(int), name="step")
    out["chosen_logratio"] = out["reward_chosen"] / beta
    out["rejected_logratio"] = out["reward_rejected"] / beta
    out["h"] = out["margin"] / beta
    return out


def curves_frame(records: Iterable[dict]) -> pd.DataFrame:
    """All runs' curves in long form: :func:`run_curves` plus the config columns and ``label``."""
    frames = []
    for r in _trained(records):
        df = run_curves(r).reset_index()
        for c in CONFIG_COLUMNS:
            df[c] = r["config"].get(c)
        df["label"] = r.get("label", "")
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def window_change(values: Sequence[float], frac: float = 0.1) -> tuple[float, float, float, float]:
    """Mean of the last ``frac`` of a per-step series minus the mean of its first ``frac``.

    Each logged step is one mini-batch, so a single step is noisy; comparing window
    means over many steps (the same pairs are drawn in every epoch) is not. The
    batch noise σ is estimated from successive differences, σ² = Var(x_{t+1} − x_t)/2,
    which a smooth trend does not inflate.

    Returns:
        ``(start, end, change, se)``: the two window means, their difference and its standard
        error σ·√(2/n) (0 for a noise-free series).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("empty series")
    n = max(1, int(round(frac * x.size)))
    a, b = x[:n], x[-n:]
    sigma2 = float(np.var(np.diff(x)) / 2) if x.size > 2 else 0.0
    se = math.sqrt(2 * sigma2 / n)
    return float(a.mean()), float(b.mean()), float(b.mean() - a.mean()), se


def chosen_falls_while_margin_grows(
    curves: pd.DataFrame, chosen: str = "logps_chosen", margin: str = "margin", frac: float = 0.1, z: float = 2.0
) -> bool:
    """Whether a run shows the classic DPO puzzle: log p_θ(y_w) goes *down* while the margin goes *up*.

    Both changes are window changes (:func:`window_change`) and must exceed ``z`` standard
    errors, so batch-to-batch noise is not read as a trend.

    Args:
        curves: one run's frame from :func:`run_curves` (or any frame with the two columns).
        chosen: the chosen log-prob column (``logps_chosen`` as TRL logs it, or ``chosen_logratio``).
        margin: the margin column (``margin`` = β·h, or ``h``).
    """
    if curves.empty:
        return False
    *_, dc, sc = window_change(curves[chosen], frac)
    *_, dm, sm = window_change(curves[margin], frac)
    return bool(dc < -z * sc and dc < 0 and dm > z * sm and dm > 0)


def trajectory_summary(records: Iterable[dict], frac: float = 0.1, z: float = 2.0) -> pd.DataFrame:
    """One row per trained run: how the chosen and rejected log-probs and the margin moved.

    Columns: the config columns; ``chosen_start/end/change`` (``logps/chosen``, window means),
    ``rejected_change``; ``chosen_logratio_end`` and ``rejected_logratio_end`` (nats from the
    reference); ``h_end``; ``margin_end`` (β·h); ``falls_while_grows`` (:func:`chosen_falls_while_margin_grows`
    on ``logps/chosen``); ``both_fall`` (chosen and rejected both fell, rejected by more).
    """
    rows = []
    for r in _trained(records):
        cv = run_curves(r)
        cs, ce, dc, sc = window_change(cv["logps_chosen"], frac)
        *_, dr, sr = window_change(cv["logps_rejected"], frac)
        rows.append(
            {
                **{c: r["config"].get(c) for c in CONFIG_COLUMNS},
                "chosen_start": cs,
                "chosen_end": ce,
                "chosen_change": dc,
                "chosen_change_se": sc,
                "rejected_change": dr,
                "chosen_logratio_end": window_change(cv["chosen_logratio"], frac)[1],
                "rejected_logratio_end": window_change(cv["rejected_logratio"], frac)[1],
                "h_end": window_change(cv["h"], frac)[1],
                "margin_end": window_change(cv["margin"], frac)[1],
                "falls_while_grows": chosen_falls_while_margin_grows(cv, frac=frac, z=z),
                "both_fall": bool(dc < -z * sc and dr < -z * sr and dr < dc),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- loss and log 2


def loss_vs_log2(records: Iterable[dict], frac: float = 0.1, flat_tol: float = 0.1, start_tol: float = 1e-3) -> pd.DataFrame:
    """Where each run's loss starts and ends relative to log 2, and why.

    The per-pair loss is log(1 + exp(−β h)); at β h = 0 it is log 2, and to first order
    it is log 2 − β h / 2. So:

    * the step-1 loss is log 2 (``starts_at_log2``: the step-1 margin h is 0 to within
      ``start_tol`` nats, i.e. float rounding of summed log-probs) exactly when the reference is
      the initial policy (the SFT model as its own reference); any other reference starts elsewhere;
    * the loss ``stays_flat`` when both its step-1 value and its end-window mean are within
      ``flat_tol``·log 2 of log 2: the reward margin β·h stayed small throughout, which at tiny β
      happens however far h itself moves.

    Columns: config columns, ``loss_start`` (step 1), ``margin_start`` (β·h at step 1),
    ``h_start``, ``loss_end``, ``margin_end``, ``h_end``, ``first_order`` (log 2 − margin_end/2),
    ``starts_at_log2``, ``stays_flat``.
    """
    rows = []
    for r in _trained(records):
        cv = run_curves(r)
        loss_start, loss_end = float(cv["loss"].iloc[0]), window_change(cv["loss"], frac)[1]
        margin_end = window_change(cv["margin"], frac)[1]
        rows.append(
            {
                **{c: r["config"].get(c) for c in CONFIG_COLUMNS},
                "loss_start": loss_start,
                "margin_start": float(cv["margin"].iloc[0]),
                "h_start": float(cv["h"].iloc[0]),
                "loss_end": loss_end,
                "margin_end": margin_end,
                "h_end": window_change(cv["h"], frac)[1],
                "first_order": LOG2 - margin_end / 2,
                "starts_at_log2": bool(abs(float(cv["h"].iloc[0])) < start_tol),
                "stays_flat": bool(max(abs(loss_start - LOG2), abs(loss_end - LOG2)) < flat_tol * LOG2),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- direction of beta


#: Spearman's rank correlation, :func:`dpolib.stats.spearman` (the one definition the chapters share).
rank_correlation = spearman


def _eos_diff(record: dict) -> float:
    m = record["metrics"]
    entry = m.get("token_logp_diff", {}).get(m.get("eos_token"))
    return float(entry["mean_diff"]) if entry else float("nan")


def drift_table(records: Iterable[dict], frac: float = 0.1) -> pd.DataFrame:
    """How far each trained policy moved from its reference, against β.

    Columns: config columns; ``drift`` = end-window mean of (abs(chosen log-ratio) + abs(rejected
    log-ratio))/2, nats per training response away from the reference; ``h_end`` (the margin
    in nats); ``margin_end`` (β·h, TRL's ``rewards/margins``); ``eos_diff`` (Eq. 8 for the EOS
    token against the SFT student, from the record's evaluation).
    """
    rows = []
    for r in _trained(records):
        cv = run_curves(r)
        rows.append(
            {
                **{c: r["config"].get(c) for c in CONFIG_COLUMNS},
                "drift": window_change((cv["chosen_logratio"].abs() + cv["rejected_logratio"].abs()) / 2, frac)[1],
                "h_end": window_change(cv["h"], frac)[1],
                "margin_end": window_change(cv["margin"], frac)[1],
                "eos_diff": _eos_diff(r),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- length


def length_table(records: Iterable[dict]) -> pd.DataFrame:
    """Output length and what drives it, one row per record (SFT rows included, ``beta`` NaN).

    Columns: config columns, ``length_chars``, ``length_tokens``, ``finished_rate``,
    ``eos_diff`` (Eq. 8 for EOS), ``eos_logp`` (mean EOS log-prob, Fig. 3 statistic 1),
    ``lc_win_rate``, ``degenerate``, ``sft_length`` (the student's SFT length), ``longer_than_sft``.
    """
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append(
            {
                **{c: r["config"].get(c) for c in CONFIG_COLUMNS},
                "length_chars": float(m["mean_length_chars"]),
                "length_tokens": float(m["mean_length_tokens"]),
                "finished_rate": float(m["finished_rate"]),
                "eos_diff": _eos_diff(r),
                "eos_logp": float(m.get("eos", {}).get("value", float("nan"))),
                "lc_win_rate": float(m["lc_win_rate"]),
                "degenerate": bool(m["degenerate"]),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["beta"] = df["beta"].astype(float)
    sft = df[df["objective"] == "sft"].groupby("student")["length_chars"].mean()
    df["sft_length"] = df["student"].map(sft)
    df["longer_than_sft"] = df["length_chars"] > df["sft_length"]
    return df


# --------------------------------------------------------------------------- reference-free = uniform reference


def uniform_reference_check(n_pairs: int = 64, betas: Sequence[float] = (0.01, 0.1, 1.0, 100.0), seed: int = 0) -> pd.DataFrame:
    """Eq. (10) against DPO with a uniform reference (Eq. 5 with p_ref = U), on a random batch.

    For each β: the largest absolute difference between the per-pair *reference-free* loss
    −log σ(β[log p_θ(y_w) − log p_θ(y_l)]) and :func:`dpolib.losses.dpo_loss` with reference
    log-probs from :class:`dpolib.references.UniformReference` (at log-prob 0 and at an arbitrary
    constant), and between their gradients with respect to the policy log-probs. All are 0 up
    to rounding: the constant cancels inside the margin.
    """
    g = torch.Generator().manual_seed(seed)
    pc = (-80 + 20 * torch.randn(n_pairs, generator=g, dtype=torch.float64)).requires_grad_()
    pr = (-80 + 20 * torch.randn(n_pairs, generator=g, dtype=torch.float64)).requires_grad_()
    prompts, responses = [f"x{i}" for i in range(n_pairs)], [f"y{i}" for i in range(n_pairs)]
    rows = []
    for beta in betas:
        free = -torch.nn.functional.logsigmoid(beta * (pc - pr))
        (g_free,) = torch.autograd.grad(free.sum(), pc)
        row = {"beta": float(beta), "mean loss (Eq. 10)": float(free.detach().mean())}
        for const in (0.0, -123.4):
            ref = UniformReference(log_prob=const).logps(prompts, responses)
            out = dpo_loss(pc, pr, ref, ref, beta).losses
            (g_dpo,) = torch.autograd.grad(out.sum(), pc)
            row[f"max |loss diff| (log U = {const:g})"] = float((out - free).detach().abs().max())
            row[f"max |grad diff| (log U = {const:g})"] = float((g_dpo - g_free).abs().max())
        rows.append(row)
    return pd.DataFrame(rows)


def reference_free_in_records(records: Iterable[dict]) -> pd.DataFrame:
    """For each ``probability`` run: is the logged implicit reward β·log p_θ (reference log-prob 0)?

    Columns: config columns, ``max_reward_gap`` = max over steps of abs(``rewards/chosen`` −
    β·``logps/chosen``) and of the rejected analogue, relative to the largest abs(reward);
    ``loss_start`` (not log 2: the uniform reference is not the initial policy).
    """
    rows = []
    for r in _trained(records):
        if r["config"]["objective"] != "probability":
            continue
        cv = run_curves(r)
        beta = r["config"]["beta"]
        gap = max(
            (cv["reward_chosen"] - beta * cv["logps_chosen"]).abs().max(),
            (cv["reward_rejected"] - beta * cv["logps_rejected"]).abs().max(),
        )
        scale = max(cv["reward_chosen"].abs().max(), cv["reward_rejected"].abs().max(), 1e-12)
        rows.append(
            {
                **{c: r["config"].get(c) for c in CONFIG_COLUMNS},
                "max_reward_gap": float(gap / scale),
                "loss_start": float(cv["loss"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- arms over seeds


def with_replicates(records: Iterable[dict], seeds: Iterable[int] | None = None, root=None) -> list[dict]:
    """``records`` plus every other-seed record of the same configs that exists (deduplicated by key).

    ``seeds`` defaults to :data:`dpolib.experiments.records.HEADLINE_SEEDS`; ``root`` to the committed results.
    """
    from . import runner

    seeds = tuple(seeds) if seeds is not None else runner.HEADLINE_SEEDS
    out: dict[str, dict] = {}
    for r in records:
        out.setdefault(r["key"], r)
        for rep in runner.replicates(runner.config_of(r), seeds=seeds, root=root):
            out.setdefault(rep["key"], rep)
    return list(out.values())


def arms(records: Iterable[dict], metric: str = "lc_win_rate") -> pd.DataFrame:
    """One row per configuration (student, objective, reference, β), averaged over the seeds present.

    Columns: ``student, objective, reference, beta, score`` (mean ``metric`` over non-degenerate
    seeds; NaN when all degenerate), ``spread`` (max − min over seeds), ``n_seeds``, ``degenerate``
    (any seed degenerate), ``policy_accuracy``, ``length_chars``.
    """
    rows = [
        {
            "student": r["config"]["student"],
            "objective": r["config"]["objective"],
            "reference": r["config"]["reference"],
            "beta": float("inf") if r["config"]["beta"] is None else float(r["config"]["beta"]),
            "seed": r["config"]["seed"],
            "value": float(r["metrics"][metric]),
            "degenerate": bool(r["metrics"]["degenerate"]),
            "policy_accuracy": float(r["metrics"].get("policy_accuracy", float("nan"))),
            "length_chars": float(r["metrics"]["mean_length_chars"]),
        }
        for r in {r["key"]: r for r in records}.values()
    ]
    cols = ["student", "objective", "reference", "beta", "score", "spread", "n_seeds", "degenerate", "policy_accuracy", "length_chars"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    keys = ["student", "objective", "reference", "beta"]
    ok = df[~df["degenerate"]]
    agg = df.groupby(keys).agg(
        n_seeds=("seed", "nunique"),
        degenerate=("degenerate", "any"),
        policy_accuracy=("policy_accuracy", "mean"),
        length_chars=("length_chars", "mean"),
    )
    sc = ok.groupby(keys)["value"].agg(score="mean", spread=lambda v: float(v.max() - v.min()))
    out = agg.join(sc).reset_index()
    return out[cols].sort_values(keys, ascending=[True, True, True, False]).reset_index(drop=True)


# --------------------------------------------------------------------------- practice scorecard


def practice_evidence(records: Iterable[dict], metric: str = "lc_win_rate") -> dict:
    """The evidence the Practice scorecard and checklist read: :func:`arms` of all records and the students.

    Pass every record the chapter has (RQ1, RQ2, RQ3 grids and any replicates); configurations
    shared between grids are counted once.
    """
    table = arms(records, metric)
    return {"arms": table, "students": sorted(table["student"].unique()) if len(table) else [], "metric": metric}


def _sweep(ev: dict, student: str, reference: str) -> pd.DataFrame:
    a = ev["arms"]
    return a[(a["student"] == student) & (a["objective"] == "dpo") & (a["reference"] == reference)].sort_values("beta")


def _best(sweep: pd.DataFrame):
    ok = sweep.dropna(subset=["score"])
    ok = ok[~ok["degenerate"]]
    return None if ok.empty else ok.loc[ok["score"].idxmax()]


def _per_student(ev: dict, fn, shown_fmt) -> Measurement:
    """Apply ``fn(student) -> (agrees | None, value, note)`` to every student; agree only if all tested agree."""
    results = {s: fn(s) for s in ev["students"]}
    tested = {s: v for s, v in results.items() if v[0] is not None}
    if not tested:
        notes = "; ".join(f"{s}: {v[2]}" for s, v in results.items()) or "no records"
        return Measurement.missing(notes)
    agrees = all(v[0] for v in tested.values())
    shown = "; ".join(f"{s}: {shown_fmt(v[1])}" for s, v in results.items() if v[0] is not None)
    notes = [f"{s}: {v[2]}" for s, v in results.items() if v[2]]
    n = sorted({int(x) for x in ev["arms"]["n_seeds"]}) if len(ev["arms"]) else []
    seeds = f"seeds per arm: {n[0]}" if len(n) == 1 else f"seeds per arm: {n[0]}–{n[-1]}" if n else ""
    return Measurement({s: v[1] for s, v in tested.items()}, agrees, shown, "; ".join([*notes, seeds]).strip("; "))


def _best_beta_below(ev, threshold=0.1):
    def fn(s):
        best = _best(_sweep(ev, s, "self"))
        if best is None:
            return None, None, "no non-degenerate self-reference run"
        return bool(best["beta"] < threshold), (best["beta"], best["score"]), ""

    return _per_student(ev, fn, lambda v: f"best β {v[0]:g} ({v[1]:.1f})")


def _too_small_degrades(ev):
    def fn(s):
        sw = _sweep(ev, s, "self")
        best = _best(sw)
        if best is None or len(sw) < 3:
            return None, None, "fewer than 3 self-reference β values"
        low = sw.iloc[0]
        low_score = -math.inf if low["degenerate"] or pd.isna(low["score"]) else low["score"]
        agrees = bool(low["beta"] < best["beta"] and low_score < best["score"])
        shown = "degenerate" if low_score == -math.inf else f"{low_score:.1f}"
        return agrees, (low["beta"], shown, best["score"]), ""

    return _per_student(ev, fn, lambda v: f"β {v[0]:g}: {v[1]} vs best {v[2]:.1f}")


def _cliff_below(ev):
    def fn(s):
        sw = _sweep(ev, s, "self").reset_index(drop=True)
        best = _best(sw)
        if best is None:
            return None, None, "no non-degenerate self-reference run"
        i = int(sw.index[sw["beta"] == best["beta"]][0])
        if i == 0:
            return False, (None, None), "best β is the smallest tried: nothing below it degrades"
        if i == len(sw) - 1:
            return None, None, f"best β {best['beta']:g} is the largest tried: no step above to compare"

        def drop(j):
            row = sw.iloc[j]
            return math.inf if row["degenerate"] or pd.isna(row["score"]) else float(best["score"] - row["score"])

        below, above = drop(i - 1), drop(i + 1)
        return bool(below > above), (below, above), ""

    def fmt(v):
        below, above = v
        return "degenerate below" if below == math.inf else f"−{below:.1f} below vs −{above:.1f} above"

    return _per_student(ev, fn, fmt)


def _compatible_helps(ev):
    def fn(s):
        self_best, comp_best = _best(_sweep(ev, s, "self")), _best(_sweep(ev, s, "compatible"))
        if self_best is None or comp_best is None:
            return None, None, "no compatible-reference or self-reference run"
        return bool(comp_best["score"] > self_best["score"]), (comp_best["score"], self_best["score"]), ""

    return _per_student(ev, fn, lambda v: f"{v[0]:.1f} vs self {v[1]:.1f}")


def _incompatible_no_help(ev):
    def fn(s):
        self_best, inc_best = _best(_sweep(ev, s, "self")), _best(_sweep(ev, s, "incompatible"))
        if self_best is None:
            return None, None, "no self-reference run"
        if inc_best is None:
            if len(_sweep(ev, s, "incompatible")):
                return True, ("degenerate", self_best["score"]), "every incompatible run degenerate"
            return None, None, "no incompatible-reference run"
        return bool(inc_best["score"] < self_best["score"]), (f"{inc_best['score']:.1f}", self_best["score"]), ""

    return _per_student(ev, fn, lambda v: f"{v[0]} vs self {v[1]:.1f}")


def _larger_beta_with_strong(ev):
    def fn(s):
        self_best, comp_best = _best(_sweep(ev, s, "self")), _best(_sweep(ev, s, "compatible"))
        if self_best is None or comp_best is None:
            return None, None, "no compatible-reference or self-reference run"
        top = min(_sweep(ev, s, "self")["beta"].max(), _sweep(ev, s, "compatible")["beta"].max())
        if comp_best["beta"] >= top and self_best["beta"] >= top:
            return None, None, f"both optima at the largest β tried ({top:g}): the grid cannot order them"
        return bool(comp_best["beta"] > self_best["beta"]), (comp_best["beta"], self_best["beta"]), ""

    return _per_student(ev, fn, lambda v: f"β {v[0]:g} vs self {v[1]:g}")


def practice_claims() -> list[Claim]:
    """The paper's two best practices (digest §6), split into testable claims over :func:`practice_evidence`.

    Scores are the evidence's metric (LC win rate by default), averaged over the seeds present;
    "best" excludes degenerate runs (the paper's "[degenerate]"); the self-reference sweep is every
    self-reference β we ran (the RQ1 grid and the larger β of the RQ3 grid).
    """
    return [
        Claim(
            "practice.best-beta-below-0.1", "Practice 1",
            "With the SFT model as reference, the best β is smaller than the customary 0.1",
            "§1, §7; Table 1, Table 6", "best β 0.01 (mistral-7b), 0.02 (tulu-2-7b), 0.02 (qwen2-1.5b)",
            "best self-reference β < 0.1 for every student", _best_beta_below,
        ),
        Claim(
            "practice.too-small-degrades", "Practice 1",
            "…but the constraint must stay strong enough: too small a β degrades",
            "§4.1, Table 1", "tulu-2-7b degenerate at 0.005; qwen2-1.5b at 0.001",
            "the smallest β tried scores below the best (or degenerates), for every student", _too_small_degrades,
        ),
        Claim(
            "practice.cliff-below-optimum", "Practice 1",
            "Tune carefully: just below the optimum the model degrades quickly",
            "§4.1, Table 1", "mistral-7b: −3.89 one step below vs −0.19 above; tulu-2-7b: −2.60 vs −0.50",
            "one grid step below the best β loses more than one step above, for every student", _cliff_below,
        ),
        Claim(
            "practice.compatible-reference-helps", "Practice 2",
            "A stronger reference of the same family improves DPO",
            "§6, Table 5", "mistral-7b: 20.25 (mistral-v0.2) vs 16.25 (self); tulu-2-7b: 11.17 (llama3) vs 10.46",
            "best score with the compatible reference > best with the self reference, for every student",
            _compatible_helps,
        ),
        Claim(
            "practice.incompatible-reference-no-help", "Practice 2",
            "…only if compatible: a stronger reference of another family does not help",
            "§6, Table 5", "mistral-7b: 15.37 (llama3) vs 16.25 (self); tulu-2-7b: 7.85 (mistral-v0.2) vs 10.46",
            "best score with the incompatible reference < best with the self reference, for every student",
            _incompatible_no_help,
        ),
        Claim(
            "practice.larger-beta-with-strong-reference", "Practice 2",
            "With a stronger compatible reference the optimal β is larger",
            "§6, Table 4", "β = 1.0 for both students (vs 0.01 and 0.02 with self)",
            "best β with the compatible reference > best β with the self reference, for every student",
            _larger_beta_with_strong,
        ),
    ]


# --------------------------------------------------------------------------- checklist


def checklist(card: pd.DataFrame, evidence: dict, trajectories: pd.DataFrame, log2: pd.DataFrame,
              drift: pd.DataFrame, lengths: pd.DataFrame) -> pd.DataFrame:
    """The chapter's checklist: each item, the paper's basis and our evidence, computed.

    Args:
        card: the Practice scorecard (:func:`dpolib.scorecard.scorecard` of :func:`practice_claims`).
        evidence: :func:`practice_evidence`.
        trajectories, log2, drift, lengths: :func:`trajectory_summary`, :func:`loss_vs_log2`,
            :func:`drift_table`, :func:`length_table` of the same records.

    Returns:
        columns ``item``, ``paper``, ``ours`` (computed text), ``see`` (scorecard ids or chapter section).
    """
    verdict = dict(zip(card["id"], card["verdict"])) if len(card) else {}
    ours_of = dict(zip(card["id"], card["ours"])) if len(card) else {}
    a = evidence["arms"]

    def best_betas(reference):
        parts = []
        for s in evidence["students"]:
            b = _best(_sweep(evidence, s, reference))
            if b is not None:
                parts.append(f"{s} {b['beta']:g}")
        return ", ".join(parts) or "no runs"

    self_dpo = drift[(drift["objective"] == "dpo") & (drift["reference"] == "self")] if len(drift) else drift
    rho_drift = rank_correlation(self_dpo["beta"], self_dpo["drift"]) if len(self_dpo) else float("nan")
    rho_margin = rank_correlation(self_dpo["beta"], self_dpo["margin_end"]) if len(self_dpo) else float("nan")
    n_fall = int(trajectories["falls_while_grows"].sum()) if len(trajectories) else 0
    n_runs = len(trajectories)
    n_flat = int(log2["stays_flat"].sum()) if len(log2) else 0
    flat_betas = sorted({float(b) for b in log2.loc[log2["stays_flat"], "beta"]}) if n_flat else []
    n_start = int(log2["starts_at_log2"].sum()) if len(log2) else 0
    start_refs = sorted(set(log2.loc[log2["starts_at_log2"], "reference"])) if n_start else []
    trained = lengths[lengths["objective"] != "sft"] if len(lengths) else lengths
    n_longer = int(trained["longer_than_sft"].sum()) if len(trained) else 0
    dpo_len = trained[(trained["objective"] == "dpo") & (trained["reference"] == "self")] if len(trained) else trained
    rho_len = rank_correlation(dpo_len["beta"], dpo_len["length_chars"]) if len(dpo_len) else float("nan")

    def best_of(objective):
        sub = a[(a["objective"] == objective) & ~a["degenerate"]].dropna(subset=["score"]) if len(a) else a
        if objective == "dpo":
            sub = sub[sub["reference"] == "self"]
        sub = sub[sub["student"].isin(set(a.loc[a["objective"] == "probability", "student"]))] if len(sub) else sub
        return None if sub.empty else sub.loc[sub["score"].idxmax()]

    prob, dpo = best_of("probability"), best_of("dpo")
    prob_text = (
        f"best probability {prob['score']:.1f} (β {prob['beta']:g}, {prob['length_chars']:.0f} chars) vs best DPO "
        f"{dpo['score']:.1f} (β {dpo['beta']:g}, {dpo['length_chars']:.0f} chars)"
        if prob is not None and dpo is not None else "no probability runs"
    )
    f = lambda x: "n/a" if x != x else f"{x:+.2f}"  # noqa: E731
    items = [
        ("Sweep β on a log grid on both sides of 0.1 (with the SFT reference) and keep the step below the optimum "
         "in view: the optimum moves by orders of magnitude between settings.",
         "best β 0.01–0.02 with the SFT reference, 1.0 with a strong one; a cliff just below",
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
         f"{n_start} of {len(log2)} runs started at log 2 (references: {', '.join(start_refs) or 'none'}); "
         f"{n_flat} started and ended within 10% of log 2"
         + (f" (β = {', '.join(f'{b:g}' for b in flat_betas)})." if flat_betas else "."),
         "§ A loss stuck at log 2"),
        ("Log output length and the EOS log-prob next to the score; a falling β lengthens outputs.",
         "EOS the most down-weighted token; length 205 → 359 (DPO) and 745 (probability), Table 3",
         f"{n_longer} of {len(trained)} trained runs write longer outputs than their SFT model; rank correlation of "
         f"length with β (self-reference DPO): {f(rho_len)}.",
         "§ Outputs get longer"),
        ("'Reference-free' is DPO with a uniform reference: its first loss is not log 2, its β lives on another "
         "scale, and it is not a free lunch.",
         "probability 12.84 vs DPO 16.25 (Table 3), outputs 2× longer",
         prob_text + ".",
         "§ What reference-free means"),
        ("Try a stronger reference from the student's own family, and raise β with it; treat another family's "
         "model as an experiment.",
         "20.25 vs 16.25 (compatible); 7.85 < 8.50 SFT (incompatible); best β 1.0",
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


def _beta_colours(betas: Sequence[float]):
    import matplotlib as mpl

    betas = sorted(set(betas))
    cmap = mpl.colormaps["viridis"]
    n = max(len(betas) - 1, 1)
    return {b: cmap(i / n) for i, b in enumerate(betas)}


def plot_trajectories(records: Iterable[dict], window: int = 25, axes=None):
    """Three panels over steps (rolling mean of ``window``): chosen and rejected log-ratio to the reference, and h.

    One line per record, coloured by β (dark = small). Returns ``(fig, axes)``.
    """
    from .. import plotting

    recs = _trained(records)
    if axes is None:
        fig, axes = plotting.figure(ncols=3, height=3.6)
    else:
        fig = axes[0].figure
    colours = _beta_colours([r["config"]["beta"] for r in recs])
    for r in recs:
        cv = run_curves(r).rolling(window, min_periods=1).mean()
        kw = {"color": colours[r["config"]["beta"]], "label": f"β = {r['config']['beta']:g}"}
        axes[0].plot(cv.index, cv["chosen_logratio"], **kw)
        axes[1].plot(cv.index, cv["rejected_logratio"], **kw)
        axes[2].plot(cv.index, cv["h"], **kw)
    titles = ("chosen: log p_θ(y_w) − log p_ref(y_w)", "rejected: log p_θ(y_l) − log p_ref(y_l)", "margin h (nats)")
    for ax, t in zip(axes, titles):
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(t)
        ax.set_xlabel("training step")
    axes[0].set_ylabel("nats (rolling mean)")
    axes[2].legend(loc="upper left")
    return fig, axes


def plot_loss_vs_log2(records: Iterable[dict], window: int = 25, ax=None):
    """Loss curves (rolling mean) with log 2 marked; one line per record, coloured by β. Returns ``(fig, ax)``."""
    from .. import plotting

    recs = _trained(records)
    fig, ax = plotting.figure() if ax is None else (ax.figure, ax)
    colours = _beta_colours([r["config"]["beta"] for r in recs])
    for r in recs:
        cv = run_curves(r)
        ax.plot(cv.index, cv["loss"].rolling(window, min_periods=1).mean(), color=colours[r["config"]["beta"]],
                label=f"β = {r['config']['beta']:g}")
    ax.axhline(LOG2, color="black", ls="--", lw=1, label="log 2 = 0.693 (margin 0)")
    ax.set_xlabel("training step")
    ax.set_ylabel("DPO loss (rolling mean)")
    ax.legend(loc="lower left", ncol=2)
    return fig, ax


def plot_drift(drift: pd.DataFrame, axes=None):
    """Two panels against β for DPO runs, one line per (student, reference): distance moved, and logged margin β·h."""
    from .. import plotting

    fig, axes = plotting.figure(ncols=2, height=3.6) if axes is None else (axes[0].figure, axes)
    dpo = drift[drift["objective"] == "dpo"]
    styles = ["-", "--", ":", "-."]
    for k, ((student, ref), g) in enumerate(dpo.groupby(["student", "reference"])):
        g = g.groupby("beta").mean(numeric_only=True).reset_index()
        students = sorted(dpo["student"].unique())
        kw = plotting.series(ref, label=f"{student}, {ref} reference", linestyle=styles[students.index(student) % 4])
        axes[0].plot(g["beta"], g["drift"], **kw)
        axes[1].plot(g["beta"], g["margin_end"], **kw)
    axes[0].set_ylabel("|log p_θ − log p_ref| per response (nats)")
    axes[0].set_title("how far the policy moved")
    axes[1].set_ylabel("rewards/margins = β·h (as logged)")
    axes[1].set_title("what the logs show")
    axes[1].set_yscale("symlog", linthresh=1.0)
    for ax in axes:
        plotting.beta_axis(ax)
    axes[0].legend(loc="upper right")
    return fig, axes


def plot_length(lengths: pd.DataFrame, student: str | None = None, axes=None):
    """Two panels against β, one line per objective (self-reference DPO, probability, likelihood): output length
    with the SFT length dashed, and Eq. (8) for EOS. ``student`` defaults to the one with the most objectives."""
    from .. import plotting

    fig, axes = plotting.figure(ncols=2, height=3.6) if axes is None else (axes[0].figure, axes)
    if student is None:
        student = lengths.groupby("student")["objective"].nunique().idxmax()
    sub = lengths[lengths["student"] == student]
    for objective in ("dpo", "probability", "likelihood"):
        g = sub[(sub["objective"] == objective) & (sub["reference"].isin(["self", "uniform", "prior"]))]
        if g.empty:
            continue
        g = g.groupby("beta").mean(numeric_only=True).reset_index()
        axes[0].plot(g["beta"], g["length_chars"], **plotting.series(objective))
        axes[1].plot(g["beta"], g["eos_diff"], **plotting.series(objective))
    sft = sub.loc[sub["objective"] == "sft", "length_chars"]
    if len(sft):
        axes[0].axhline(float(sft.mean()), **{k: v for k, v in plotting.series("sft").items() if k != "marker"})
    axes[0].set_ylabel("mean output length (characters)")
    axes[0].set_title(f"output length ({student})")
    axes[1].axhline(0, color="black", lw=0.8)
    axes[1].set_ylabel("Eq. 8 for EOS: mean log p_θ − log p_SFT")
    axes[1].set_title("EOS vs the SFT model")
    for ax in axes:
        plotting.beta_axis(ax)
    axes[0].legend(loc="best")
    return fig, axes


def plot_sweeps(arms_table: pd.DataFrame, axes=None):
    """Score against β, one panel per student, one line per reference of the DPO runs; the SFT score dashed.

    ``arms_table`` is :func:`arms` (scores averaged over seeds; degenerate arms are drawn as crosses on
    the axis). Returns ``(fig, axes)``.
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


def best_beta_line(evidence: dict, students: list[str], reference: str) -> str:
    """One line per student: the best non-degenerate beta with ``reference``, its LC win rate (seed mean) and seeds.

    ``evidence`` is :func:`practice_evidence`'s; reads its ``arms`` frame (``score`` = mean over the seeds present).
    """
    arms = evidence["arms"]
    rows = []
    for s in students:
        sw = arms[(arms["student"] == s) & (arms["objective"] == "dpo") & (arms["reference"] == reference) & ~arms["degenerate"]]
        if len(sw):
            b = sw.loc[sw["score"].idxmax()]
            rows.append(f"{s}: β = {b['beta']:g} (LC {b['score']:.1f}, {int(b['n_seeds'])} seed(s))")
    return "; ".join(rows) or "no runs"
