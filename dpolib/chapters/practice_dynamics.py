"""Training dynamics: what the logged curves of a DPO run mean (the Practice chapter's curve analyses and figures).

Everything here is a pure function of :class:`~dpolib.experiments.records.Record` s (their
TRL log rows, ``record.curves``, and their metrics), so the Practice chapter computes every
number it states. The puzzles it explains are the ones DPO users ask about most (anchors §C.3):

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

The Practice scorecard and checklist that read these tables are in :mod:`dpolib.chapters.practice`.

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

from ..experiments.records import Record
from ..losses import dpo_loss
from ..references import UniformReference
from ..stats import spearman

__all__ = [
    "LOG2",
    "CONFIG_COLUMNS",
    "run_curves",
    "curves_frame",
    "window_change",
    "chosen_falls_while_margin_grows",
    "trajectory_summary",
    "loss_vs_log2",
    "rank_correlation",
    "drift_table",
    "length_table",
    "uniform_reference_check",
    "reference_free_in_records",
    "plot_trajectories",
    "plot_loss_vs_log2",
    "plot_drift",
    "plot_length",
]

#: The DPO loss of a pair whose margin is zero, −log σ(0) = log 2 ≈ 0.6931.
LOG2 = math.log(2.0)

#: Run-identifying columns carried from a record's config into every frame (``beta`` is ∞ for the SFT row).
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


def _config(record: Record) -> dict:
    """The :data:`CONFIG_COLUMNS` of a record."""
    return {"student": record.student, "objective": record.objective, "reference": record.reference,
            "beta": record.beta, "seed": record.seed}


def _trained(records: Iterable[Record]) -> list[Record]:
    """Records with training curves (the SFT rows have none)."""
    return [r for r in records if r.curves]


# --------------------------------------------------------------------------- curves


def run_curves(record: Record) -> pd.DataFrame:
    """One run's TRL log as a frame indexed by step, with the derived columns (module docstring).

    Args:
        record: a result record (``record.curves`` = TRL log rows; ``record.beta`` scales the rewards).

    Returns:
        columns ``loss, logps_chosen, logps_rejected, reward_chosen, reward_rejected, margin,
        accuracy, chosen_logratio, rejected_logratio, h``; empty for a record without curves.
    """
    cols = list(_CURVE_COLUMNS.values()) + ["chosen_logratio", "rejected_logratio", "h"]
    if not record.curves:
        return pd.DataFrame(columns=cols)
    beta = record.beta
    df = pd.DataFrame(list(record.curves))
    missing = [k for k in _CURVE_COLUMNS if k not in df]
    if missing:
        raise KeyError(f"curves of {record.label or record.config.label()} lack TRL keys {missing}")
    step = df["step"] if "step" in df else pd.Series(range(1, len(df) + 1))
    out = df[list(_CURVE_COLUMNS)].rename(columns=_CURVE_COLUMNS).astype(float)
    out.index = pd.Index(step.astype(int), name="step")
    out["chosen_logratio"] = out["reward_chosen"] / beta
    out["rejected_logratio"] = out["reward_rejected"] / beta
    out["h"] = out["margin"] / beta
    return out


def curves_frame(records: Iterable[Record]) -> pd.DataFrame:
    """All runs' curves in long form: :func:`run_curves` plus the config columns and ``label``."""
    frames = []
    for r in _trained(records):
        df = run_curves(r).reset_index()
        for c, v in _config(r).items():
            df[c] = v
        df["label"] = r.label
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


def trajectory_summary(records: Iterable[Record], frac: float = 0.1, z: float = 2.0) -> pd.DataFrame:
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
                **_config(r),
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


def loss_vs_log2(records: Iterable[Record], frac: float = 0.1, flat_tol: float = 0.1,
                 start_tol: float = 1e-3) -> pd.DataFrame:
    """Where each run's loss starts and ends relative to log 2, and why.

    The per-pair loss is log(1 + exp(−β h)); at β h = 0 it is log 2, and to first order
    it is log 2 − β h / 2. So:

    * the step-1 loss is log 2 (``starts_at_log2``: the step-1 margin h is 0 to within
      ``start_tol`` nats, i.e. float rounding of summed log-probs) exactly when the reference is
      the initial policy (the SFT model as its own reference); any other reference starts elsewhere;
    * the loss ``stays_flat`` when both its step-1 value and its end-window mean are within
      ``flat_tol``·log 2 of log 2: the reward margin β·h stayed small throughout, which at tiny β
      happens however far h itself moves.

    Columns: config columns, ``loss_start`` (the first logged row), ``margin_start`` (β·h there),
    ``h_start``, ``loss_end``, ``margin_end``, ``h_end``, ``first_order`` (log 2 − margin_end/2),
    ``has_step1`` (the first row is step 1 itself; records that keep only window means of their
    curves, :func:`dpolib.experiments.records.compact_curves`, cannot show step 1), ``starts_at_log2``
    (only ever true with ``has_step1``), ``stays_flat``.
    """
    rows = []
    for r in _trained(records):
        cv = run_curves(r)
        loss_start, loss_end = float(cv["loss"].iloc[0]), window_change(cv["loss"], frac)[1]
        margin_end = window_change(cv["margin"], frac)[1]
        rows.append(
            {
                **_config(r),
                "loss_start": loss_start,
                "margin_start": float(cv["margin"].iloc[0]),
                "h_start": float(cv["h"].iloc[0]),
                "loss_end": loss_end,
                "margin_end": margin_end,
                "h_end": window_change(cv["h"], frac)[1],
                "first_order": LOG2 - margin_end / 2,
                "has_step1": bool(cv.index[0] == 1),
                "starts_at_log2": bool(cv.index[0] == 1 and abs(float(cv["h"].iloc[0])) < start_tol),
                "stays_flat": bool(max(abs(loss_start - LOG2), abs(loss_end - LOG2)) < flat_tol * LOG2),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- direction of beta


#: Spearman's rank correlation, :func:`dpolib.stats.spearman` (the one definition the chapters share).
rank_correlation = spearman


def _eos_diff(record: Record) -> float:
    """Eq. (8) for the EOS token against the SFT student (NaN when the record has no entry for it)."""
    m = record.metrics
    entry = (m.token_logp_diff or {}).get(m.eos_token)
    return float(entry["mean_diff"]) if entry else float("nan")


def drift_table(records: Iterable[Record], frac: float = 0.1) -> pd.DataFrame:
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
                **_config(r),
                "drift": window_change((cv["chosen_logratio"].abs() + cv["rejected_logratio"].abs()) / 2, frac)[1],
                "h_end": window_change(cv["h"], frac)[1],
                "margin_end": window_change(cv["margin"], frac)[1],
                "eos_diff": _eos_diff(r),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- length


def length_table(records: Iterable[Record]) -> pd.DataFrame:
    """Output length and what drives it, one row per record (SFT rows included, their ``beta`` is ∞).

    Columns: config columns, ``length_chars``, ``length_tokens``, ``finished_rate``,
    ``eos_diff`` (Eq. 8 for EOS), ``eos_logp`` (mean EOS log-prob, Fig. 3 statistic 1),
    ``lc_win_rate``, ``degenerate``, ``sft_length`` (the student's SFT length), ``longer_than_sft``.
    """
    rows = []
    for r in records:
        m = r.metrics
        rows.append(
            {
                **_config(r),
                "length_chars": float(m.mean_length_chars),
                "length_tokens": float(m.mean_length_tokens),
                "finished_rate": float(m.finished_rate),
                "eos_diff": _eos_diff(r),
                "eos_logp": float((m.eos or {}).get("value", float("nan"))),
                "lc_win_rate": float(m.lc_win_rate),
                "degenerate": r.degenerate,
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


def uniform_reference_check(n_pairs: int = 64, betas: Sequence[float] = (0.01, 0.1, 1.0, 100.0),
                            seed: int = 0) -> pd.DataFrame:
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


def reference_free_in_records(records: Iterable[Record]) -> pd.DataFrame:
    """For each ``probability`` run: is the logged implicit reward β·log p_θ (reference log-prob 0)?

    Columns: config columns, ``max_reward_gap`` = max over steps of abs(``rewards/chosen`` −
    β·``logps/chosen``) and of the rejected analogue, relative to the largest abs(reward);
    ``loss_start`` (not log 2: the uniform reference is not the initial policy).
    """
    rows = []
    for r in _trained(records):
        if r.objective != "probability":
            continue
        cv = run_curves(r)
        gap = max(
            (cv["reward_chosen"] - r.beta * cv["logps_chosen"]).abs().max(),
            (cv["reward_rejected"] - r.beta * cv["logps_rejected"]).abs().max(),
        )
        scale = max(cv["reward_chosen"].abs().max(), cv["reward_rejected"].abs().max(), 1e-12)
        rows.append({**_config(r), "max_reward_gap": float(gap / scale), "loss_start": float(cv["loss"].iloc[0])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figures


def _beta_colours(betas: Sequence[float]):
    import matplotlib as mpl

    betas = sorted(set(betas))
    cmap = mpl.colormaps["viridis"]
    n = max(len(betas) - 1, 1)
    return {b: cmap(i / n) for i, b in enumerate(betas)}


def plot_trajectories(records: Iterable[Record], window: int = 25, axes=None):
    """Three panels over steps (rolling mean of ``window``): chosen and rejected log-ratio to the reference, and h.

    One line per record, coloured by β (dark = small). Returns ``(fig, axes)``.
    """
    from .. import plotting

    recs = _trained(records)
    if axes is None:
        fig, axes = plotting.figure(ncols=3, height=3.6)
    else:
        fig = axes[0].figure
    colours = _beta_colours([r.beta for r in recs])
    for r in recs:
        cv = run_curves(r).rolling(window, min_periods=1).mean()
        kw = {"color": colours[r.beta], "label": f"β = {r.beta:g}"}
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


def plot_loss_vs_log2(records: Iterable[Record], window: int = 25, ax=None):
    """Loss curves (rolling mean) with log 2 marked; one line per record, coloured by β. Returns ``(fig, ax)``."""
    from .. import plotting

    recs = _trained(records)
    fig, ax = plotting.figure() if ax is None else (ax.figure, ax)
    colours = _beta_colours([r.beta for r in recs])
    for r in recs:
        cv = run_curves(r)
        ax.plot(cv.index, cv["loss"].rolling(window, min_periods=1).mean(), color=colours[r.beta],
                label=f"β = {r.beta:g}")
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
    students = sorted(dpo["student"].unique())
    for (student, ref), g in dpo.groupby(["student", "reference"]):
        g = g.groupby("beta").mean(numeric_only=True).reset_index()
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
