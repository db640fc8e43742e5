"""RQ1's figures against β: score, ranking accuracy, output length, the headline arms over seeds, and the exact world.

Each ``plot_*`` function draws one figure of the RQ1 chapter (``notebooks/rq1_beta.md``)
from typed :class:`~dpolib.experiments.records.Record`\\ s in the book's one style
(:mod:`dpolib.plotting`): our analogues of the paper's Table 1 and Table 2 as curves, the
output length beside EOS's Eq. (8) value, and the headline arms of
:func:`dpolib.chapters.rq1.headline` with their seed spread. :func:`tabular_curve` adds a
dense β sweep in the exact tabular world (read from its record, :mod:`dpolib.chapters.exact`) for contrast. The
token-level Figures 1 and 2 are in :mod:`dpolib.chapters.rq1_tokens`.
"""

from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

from .. import plotting
from ..experiments.records import Record
from .common import SFT_BETA, metric_of, student_label
from .exact import curve as exact_curve
from .exact import evidence as exact_evidence
from .rq1 import HEADLINE_ARMS, students, sweep_records
from .rq1_tokens import eos_diff

__all__ = ["plot_scores", "plot_accuracy", "plot_length", "plot_headline", "tabular_curve", "plot_tabular"]


def _series_style(i: int, student: str) -> dict:
    name = ("dpo", "compatible", "incompatible", "likelihood")[i % 4]
    return plotting.series(name, label=student_label(student))


def _sft_line(ax, y, colour, label):
    if not math.isnan(y):
        ax.axhline(y, color=colour, linestyle="--", linewidth=1.2, label=label)


def _split(records: list[Record], student: str) -> tuple[dict[float, Record], Record | None]:
    """The student's DPO runs ``{β: record}`` (largest β first) and its SFT row (or ``None``)."""
    runs = sweep_records(records, student)
    return {b: r for b, r in runs.items() if b != SFT_BETA}, runs.get(SFT_BETA)


def plot_scores(records: Iterable[Record], ax=None, metric: str = "lc_win_rate", ylabel: str = "LC win rate (%)"):
    """Score against β for every student (log β axis); dashed: the SFT model; a cross on the curve: degenerate."""
    records = list(records)
    if ax is None:
        fig, ax = plotting.figure()
    for i, s in enumerate(students(records)):
        st = _series_style(i, s)
        dpo, sft = _split(records, s)
        ax.plot(list(dpo), [metric_of(r, metric) for r in dpo.values()], **st)
        deg = [b for b, r in dpo.items() if r.degenerate]
        if deg:
            ax.plot(deg, [metric_of(dpo[b], metric) for b in deg], "x", color="k", markersize=9,
                    label=f"{student_label(s)}: [degenerate]")
        if sft is not None:
            _sft_line(ax, metric_of(sft, metric), st["color"], f"{student_label(s)}: SFT (β = ∞)")
    plotting.beta_axis(ax)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")
    return ax.figure, ax


def plot_accuracy(records: Iterable[Record], ax=None):
    """Table 2 as a figure: r_θ (dashed) and p_θ (solid) ranking accuracy against β; the 0.5 line is chance."""
    records = list(records)
    if ax is None:
        fig, ax = plotting.figure()
    for i, s in enumerate(students(records)):
        st = _series_style(i, s)
        dpo, _ = _split(records, s)
        ax.plot(list(dpo), [metric_of(r, "policy_accuracy") for r in dpo.values()],
                **{**st, "label": f"{student_label(s)}: p_θ"})
        ax.plot(list(dpo), [metric_of(r, "reward_accuracy") for r in dpo.values()],
                **{**st, "linestyle": "--", "marker": "o", "markerfacecolor": "none", "label": f"{student_label(s)}: r_θ"})
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance (0.5)")
    plotting.beta_axis(ax)
    ax.set_ylabel("ranking accuracy (validation pairs)")
    ax.legend(loc="best")
    return ax.figure, ax


def plot_length(records: Iterable[Record]):
    """Output length (tokens) and EOS's average Eq. (8) against β, per student; dashed: the SFT model's length."""
    records = list(records)
    fig, axes = plotting.figure(ncols=2)
    for i, s in enumerate(students(records)):
        st = _series_style(i, s)
        dpo, sft = _split(records, s)
        axes[0].plot(list(dpo), [metric_of(r, "mean_length_tokens") for r in dpo.values()], **st)
        if sft is not None:
            _sft_line(axes[0], metric_of(sft, "mean_length_tokens"), st["color"], f"{student_label(s)}: SFT")
        axes[1].plot(list(dpo), [eos_diff(r) for r in dpo.values()], **st)
    axes[0].set_ylabel("mean output length (tokens, greedy)")
    axes[1].set_ylabel("EOS: average Eq. (8) difference (nats)")
    axes[1].axhline(0, color="grey", linewidth=1, linestyle=":")
    for ax in axes:
        plotting.beta_axis(ax, label=r"$\beta$")
    axes[0].legend(loc="best")
    fig.tight_layout()
    return fig, axes


def plot_headline(head: pd.DataFrame):
    """The headline arms (:func:`dpolib.chapters.rq1.headline`) with their seed spread: bar = mean,
    error bar = ±1 sd (none with one seed), dots = seeds."""
    fig, ax = plotting.figure()
    studs = list(dict.fromkeys(head["student"]))
    colours = [plotting.SERIES["sft"]["color"], plotting.PALETTE["sky"], plotting.SERIES["dpo"]["color"]]
    width = 0.26
    for j, (arm, colour) in enumerate(zip(HEADLINE_ARMS, colours)):
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


def tabular_curve(student: str = "loglinear", record: dict | None = None) -> pd.DataFrame:
    """DPO with the SFT reference in :mod:`dpolib.tabular`'s exact world, on the exact-world record's dense β grid.

    Each β was trained on the world's finite preference data (Eq. 5) and evaluated exactly when
    the record was written (:mod:`dpolib.chapters.exact`, ``python -m dpolib.experiments exact``):
    ``gold`` (expected gold reward), ``accuracy`` (policy ranking accuracy, Table 2's p_θ),
    ``length`` (expected length), ``kl_sft`` and ``entropy``; one row per β (ascending).
    ``attrs["sft"]`` holds the SFT model's exact metrics. ``record`` defaults to the book's.
    """
    return exact_curve(record if record is not None else exact_evidence(), student, "dpo")


def plot_tabular(curve: pd.DataFrame):
    """The exact world's dense curves: expected gold reward, policy ranking accuracy and expected length against β."""
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
