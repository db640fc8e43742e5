"""RQ1's token-level view: the Eq. (8) statistics of a run, EOS's rank, and the paper's Figures 1 and 2.

The paper's §4.2 {Liu, Liu & Cohan 2024} measures, per vocabulary token, the Eq. (8)
difference r̂(y⁽ⁱ⁾) = log p_θ(y⁽ⁱ⁾ | x, y⁽<ⁱ⁾) − log p_ref(y⁽ⁱ⁾ | x, y⁽<ⁱ⁾) averaged over the
token's occurrences in the validation responses:

* Figure 1: the distribution of these per-token averages, one curve per β (log-scale ratio);
* Figure 2: the most down-weighted tokens among tokens seen at least 100 times; EOS comes
  first, more so at small β.

A record keeps the statistic as ``record.metrics.token_logp_diff`` = ``{token: {count, mean_diff}}``
(per-token means and counts, not per-position values) and the EOS token's text as
``record.metrics.eos_token``. Everything here is a pure function of records; the claims that
use these statistics are in :mod:`dpolib.chapters.rq1`.
"""

from __future__ import annotations

import math
from typing import Iterable

import matplotlib as mpl
import numpy as np
import pandas as pd

from .. import plotting
from ..experiments.records import Record
from .common import student_label, students, sweep

__all__ = [
    "MIN_COUNT",
    "token_table",
    "token_label",
    "down_weighted",
    "eos_rank",
    "eos_diff",
    "eos_ranks",
    "imbalance",
    "token_histogram",
    "dpo_sweep",
    "plot_token_distribution",
    "plot_down_weighted",
]

#: Figure 2 keeps tokens seen at least this often in the validation responses (the paper used 100, on
#: UltraFeedback's much larger validation set; ours has a few hundred pairs).
MIN_COUNT = 30


def dpo_sweep(records: Iterable[Record], student: str) -> dict[float, Record]:
    """``{β: record}`` of the student's self-reference DPO runs, largest β first (lowest seed per β)."""
    return sweep(records, student, "dpo", "self", seed=None)


def token_table(record: Record) -> pd.DataFrame:
    """The record's Eq. (8) table as a frame: ``token``, ``count``, ``mean_diff``, ``is_eos``; most negative first."""
    rows = [(t, int(v["count"]), float(v["mean_diff"])) for t, v in record.metrics.token_logp_diff.items()]
    df = pd.DataFrame(rows, columns=["token", "count", "mean_diff"])
    df["is_eos"] = df["token"] == record.metrics.eos_token
    return df.sort_values(["mean_diff", "token"], kind="stable").reset_index(drop=True)


_SHOWN = {" ": "␣", "Ġ": "␣", "\n": "\\n", "Ċ": "\\n", "\t": "\\t"}


def token_label(token: str, eos_token: str | None = None) -> str:
    """A token as the figures show it: EOS spelled out, whitespace made visible, quoted."""
    if eos_token is not None and token == eos_token:
        return f"EOS {token}"
    shown = "".join(_SHOWN.get(ch, ch) for ch in token)
    return f"'{shown}'"


def _frequent(record: Record, min_count: int) -> pd.DataFrame:
    df = token_table(record)
    return df[df["count"] >= min_count].reset_index(drop=True)


def down_weighted(record: Record, k: int = 10, min_count: int = MIN_COUNT) -> pd.DataFrame:
    """Figure 2 for one run: the ``k`` tokens with the most negative average Eq. (8) among tokens seen ≥ ``min_count`` times.

    Columns ``rank`` (1 = most down-weighted), ``token``, ``count``, ``mean_diff`` (nats; −10 means
    e¹⁰ ≈ 22,000 times less likely on average), ``is_eos``.
    """
    df = _frequent(record, min_count).head(k).reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def eos_rank(record: Record, min_count: int = MIN_COUNT) -> tuple[int | None, int]:
    """Where EOS ranks among the frequent tokens, most down-weighted first: ``(rank, n_tokens)``.

    Tokens seen fewer than ``min_count`` times are left out, as in Figure 2; ``rank`` is ``None``
    when EOS is not among the rest. Ties are broken by the token string (stable and reproducible).
    """
    df = _frequent(record, min_count)
    hits = np.flatnonzero(df["is_eos"].to_numpy())
    return (int(hits[0]) + 1 if len(hits) else None), len(df)


def eos_diff(record: Record) -> float:
    """EOS's average Eq. (8) difference in nats (NaN when EOS is not in the record's token table)."""
    tab = token_table(record)
    eos = tab[tab["is_eos"]]
    return float(eos["mean_diff"].iloc[0]) if len(eos) else math.nan


def eos_ranks(records: Iterable[Record], min_count: int = MIN_COUNT) -> pd.DataFrame:
    """EOS rank and its average Eq. (8) value against β, per student (self-reference DPO runs only)."""
    records = list(records)
    rows = []
    for s in students(records):
        for b, r in dpo_sweep(records, s).items():
            rank, n = eos_rank(r, min_count)
            top = down_weighted(r, 1, min_count)
            rows.append({
                "student": student_label(s), "β": b, "EOS rank": rank, "of frequent tokens": n,
                "EOS mean Eq. 8 (nats)": eos_diff(r),
                "most down-weighted token": token_label(top["token"].iloc[0], r.metrics.eos_token) if len(top) else "–",
            })
    return pd.DataFrame(rows)


def imbalance(record: Record, min_count: int = MIN_COUNT) -> tuple[float, float]:
    """How unevenly Eq. (8) moves across tokens: ``(extreme, ratio)``.

    ``extreme`` = the most negative average Eq. (8) among tokens seen ≥ ``min_count`` times;
    ``ratio`` = max_t abs(d̄_t) / (Σ_t n_t abs(d̄_t) / Σ_t n_t), the largest per-token change over the
    occurrence-weighted mean change. A constraint that held every token to the same small
    change would give a ratio near 1; the paper's Figure 1 (most tokens near 0, a tail to −100)
    means a ratio of many times. NaN for an untrained model (every d̄_t = 0).
    """
    df = _frequent(record, min_count)
    if not len(df):
        return math.nan, math.nan
    mean_abs = float((df["count"] * df["mean_diff"].abs()).sum() / df["count"].sum())
    peak = float(df["mean_diff"].abs().max())
    return float(df["mean_diff"].min()), (peak / mean_abs if mean_abs > 0 else math.nan)


def token_histogram(record: Record, bin_width: float = 1.0, weighted: bool = True) -> pd.Series:
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


# --------------------------------------------------------------------------- Figures 1 and 2


def plot_token_distribution(records: Iterable[Record], bin_width: float = 1.0, weighted: bool = True):
    """Our Figure 1: one panel per student, one curve per β of the distribution of average Eq. (8) per token (log ratio)."""
    records = list(records)
    studs = students(records)
    fig, axes = plotting.figure(ncols=max(1, len(studs)), sharey=True)
    axes = np.atleast_1d(axes)
    cmap = mpl.colormaps["viridis"]
    for ax, s in zip(axes, studs):
        dpo = dpo_sweep(records, s)
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


def plot_down_weighted(records: Iterable[Record], k: int = 10, min_count: int = MIN_COUNT):
    """Our Figure 2: per student, the ``k`` most down-weighted frequent tokens at the smallest β, one bar per β.

    EOS is always drawn: when it is not among the ``k``, it is added as the last row, labelled with its rank.
    """
    records = list(records)
    studs = students(records)
    fig, axes = plotting.figure(ncols=max(1, len(studs)), height=4.8)
    axes = np.atleast_1d(axes)
    cmap = mpl.colormaps["viridis"]
    handles = None
    for ax, s in zip(axes, studs):
        dpo = dpo_sweep(records, s)
        if not dpo:
            continue
        smallest = dpo[min(dpo)]
        eos = smallest.metrics.eos_token
        tokens = list(down_weighted(smallest, k, min_count)["token"])
        labels = [token_label(t, eos) for t in tokens]
        rank, n = eos_rank(smallest, min_count)
        if eos is not None and eos not in tokens and rank is not None:
            tokens.append(eos)
            labels.append(f"EOS (rank {rank}/{n})")
        width = 0.8 / max(1, len(dpo))
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
