"""The exact tabular world's chapter, read from its record: β sweeps, references, robustness worlds, scorecard.

``notebooks/exact_world.md`` (and the RQ1 chapter's dense curve, :func:`curve`) show the
exact world of :mod:`dpolib.tabular`. Every sweep is trained once by
:mod:`dpolib.experiments.exact` (``python -m dpolib.experiments exact``) into
``results/exact/<key>.json``; this module only reads that record and turns it into tables
and figures (it imports neither torch nor :mod:`dpolib.tabular`). The rules of the
robustness scorecard (:func:`robustness_table`) live here, beside the paper's claims they test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import plotting
from ..experiments.exact_records import ExactConfig, read

__all__ = [
    "INTERIOR_DROP",
    "evidence",
    "CLAIMS",
    "betas",
    "curve",
    "summary",
    "sweep_table",
    "reference_gold",
    "reference_table",
    "robustness_table",
    "scorecard",
    "budget_lines",
    "kappa_lines",
    "plot_sweeps",
    "plot_collapse",
    "plot_references",
]

#: The robustness table's questions, each with the paper's claim it tests (Liu et al. 2024).
CLAIMS = {
    "interior optimum, DPO (drop ≥ 0.05 at both ends)": "RQ1: optimal β interior; degradation just below it (Table 1)",
    "DPO best > probability best": "RQ2: DPO 16.25 > probability 12.84 (Table 3)",
    "DPO best > likelihood best": "RQ2: DPO 16.25 > likelihood 13.63 (Table 3)",
    "strong compatible > self": "RQ3: mistral-v0.2 reference 20.25 > self 16.25 (Table 5)",
    "optimal β larger with strong compatible": "RQ3: optimal β 1.0 with a strong compatible reference (Table 4)",
    "incompatible < compatible": "RQ3: incompatible reference does not help (tulu-2 + mistral-v0.2, Table 5)",
}

#: How much gold reward the curve must lose at both ends of the grid to count as an interior optimum.
INTERIOR_DROP = 0.05


def evidence(config: ExactConfig | None = None, root=None) -> dict:
    """The exact-world record for ``config`` (default: the book's), from ``results/exact/``.

    Raises:
        FileNotFoundError: no record yet (the message names the command that writes it).
    """
    return read(config or ExactConfig(), root)


def betas(record: dict) -> np.ndarray:
    """The dense β grid, ascending."""
    return np.asarray(record["betas"])


def _summary_columns(record: dict) -> list[str]:
    b = betas(record)
    return ["best β", "best gold", f"gold at β={b[0]:.3g}", f"gold at β={b[-1]:.3g}", "win vs SFT at best",
            "KL to ref at best", "length at best", "policy accuracy at best"]


def curve(record: dict, student: str = "loglinear", objective: str = "dpo") -> pd.DataFrame:
    """One trained sweep, one row per β (ascending): ``gold``, ``entropy``, ``length``, ``kl_sft``, ``accuracy``.

    ``attrs["sft"]`` holds the SFT model's exact metrics, ``attrs["length_peak"]`` the length the
    gold reward likes best.
    """
    data = record["sweeps"][student][objective]["curve"]
    df = pd.DataFrame(data, index=pd.Index(betas(record), name="β"))
    df.attrs["sft"] = dict(record["world"]["sft"])
    df.attrs["length_peak"] = record["world"]["config"]["length_peak"]
    return df


def summary(record: dict, student: str, objective: str) -> dict:
    """:func:`dpolib.tabular.summarise` of one sweep: best β, best gold, both ends, metrics at the best β."""
    return dict(record["sweeps"][student][objective]["summary"])


def sweep_table(record: dict) -> pd.DataFrame:
    """Every (student, objective) sweep in one row each (rows ``"student / objective"``)."""
    rows = {f"{s} / {o}": summary(record, s, o) for s in record["students"] for o, _ in record["objectives"]}
    return pd.DataFrame(rows).T[_summary_columns(record)]


def reference_gold(record: dict, name: str) -> float:
    """A reference's own expected gold reward."""
    return {r["name"]: r for r in record["references"]}[name]["reference_gold"]


def reference_table(record: dict) -> pd.DataFrame:
    """DPO (log-linear student) with each reference: its gold, its distance to the class, and its sweep's summary."""
    rows = {r["name"]: {**r["summary"], "reference gold": r["reference_gold"], "distance to class": r["distance_to_class"]}
            for r in record["references"]}
    cols = ["reference gold", "distance to class", "best β", "best gold"] + _summary_columns(record)[2:4][::-1]
    return pd.DataFrame(rows).T[cols]


def robustness_table(record: dict) -> pd.DataFrame:
    """Per independently drawn world (index ``seed``), whether each of :data:`CLAIMS` holds there.

    Every claim compares best gold rewards over the coarse β grid (log-linear student):
    ``sft`` is DPO, ``uniform`` the probability objective, ``prior`` the likelihood objective,
    ``compatible``/``incompatible`` the strongest references. An interior optimum loses at
    least :data:`~dpolib.chapters.exact.INTERIOR_DROP` at both ends of the grid.
    """
    rows = []
    for world in record["robustness"]["worlds"]:
        r = world["references"]
        best = {k: v["best"] for k, v in r.items()}
        rows.append({
            "seed": world["seed"],
            "interior optimum, DPO (drop ≥ 0.05 at both ends)": bool(
                best["sft"] - r["sft"]["first"] >= INTERIOR_DROP and best["sft"] - r["sft"]["last"] >= INTERIOR_DROP),
            "DPO best > probability best": best["sft"] > best["uniform"],
            "DPO best > likelihood best": best["sft"] > best["prior"],
            "strong compatible > self": best["compatible"] > best["sft"],
            "optimal β larger with strong compatible": r["compatible"]["best_beta"] > r["sft"]["best_beta"],
            "incompatible < compatible": best["incompatible"] < best["compatible"],
        })
    return pd.DataFrame(rows).set_index("seed")[list(CLAIMS)]


def scorecard(robust: pd.DataFrame) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` beside the number of worlds where it holds."""
    return pd.DataFrame({
        "paper (Liu et al. 2024)": CLAIMS,
        "worlds where it holds": {k: f"{int(robust[k].sum())} / {len(robust)}" for k in CLAIMS},
    })


def budget_lines(record: dict) -> list[str]:
    """Exercise "predict the curve": the log-linear DPO curve at the step budget and at the longer one."""
    b = betas(record)
    return [f"{row['steps']:>5} steps: best β {row['best_beta']:.3g} (gold {row['best']:.2f}); "
            f"gold at β={b[0]:.3g} {row['first']:.2f}; at β={b[-1]:.3g} {row['last']:.2f}"
            for row in record["exercises"]["budget"]]


def kappa_lines(record: dict) -> list[str]:
    """Exercise "an incompatibility that hurts": one line per length slope κ."""
    b = betas(record)
    own = summary(record, "loglinear", "dpo")["best gold"]
    return [f"κ = {row['kappa']:+}: reference gold {row['reference_gold']:.2f}; best gold {row['best']:.2f} "
            f"at β = {row['best_beta']:.3g}; at β = {b[-1]:.3g} {row['last']:.2f} (self-reference best: {own:.2f})"
            for row in record["exercises"]["kappa"]]


# --------------------------------------------------------------------------- figures


def plot_sweeps(record: dict):
    """Expected gold reward against β for both students and the three objectives; dashed: the closed-form optimum."""
    b = betas(record)
    fig, axes = plotting.figure(ncols=2, sharey=True)
    for ax, student in zip(axes, record["students"]):
        for objective, _ in record["objectives"]:
            ax.plot(b, curve(record, student, objective)["gold"], **plotting.series(objective, markersize=3))
        ax.plot(b, record["closed_form_gold"]["dpo"], **plotting.series(
            "dpo", marker="", linestyle="--", label="closed-form optimum of Eq. (1), SFT reference (infinite data)"))
        ax.axhline(record["world"]["sft_gold"], **plotting.series("sft"))
        plotting.beta_axis(ax, label=r"$\beta$ (larger = closer to the reference)")
        ax.set_title(f"{student} student")
    axes[0].set_ylabel("expected gold reward (exact)")
    fig.tight_layout()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2, bbox_to_anchor=(0.5, 0.0))
    return fig, axes


def plot_collapse(record: dict, student: str = "loglinear"):
    """Entropy, expected length and KL to the SFT model against β, per objective: collapse below the optimal β."""
    b = betas(record)
    fig, axes = plotting.figure(ncols=3)
    for objective, _ in record["objectives"]:
        m = curve(record, student, objective)
        for ax, key in zip(axes, ("entropy", "length", "kl_sft")):
            ax.plot(b, m[key], **plotting.series(objective, markersize=3))
    for ax, label in zip(axes, ("entropy (nats)", "expected length", "KL to the SFT model")):
        plotting.beta_axis(ax, label=r"$\beta$")
        ax.set_ylabel(label)
    axes[1].axhline(record["world"]["config"]["length_peak"], color="grey", linestyle=":",
                    label="length the gold reward likes best")
    axes[1].legend(loc="upper right")
    axes[2].set_yscale("log")
    fig.suptitle(f"{'log-linear' if student == 'loglinear' else student} student: collapse and verbosity below the optimal β")
    fig.tight_layout()
    return fig, axes


def plot_references(record: dict):
    """DPO (log-linear student) with references of varied strength and compatibility: gold reward against β."""
    b = betas(record)
    fig, ax = plotting.figure()
    for r in record["references"]:
        name = r["name"]
        label = f"{'self (SFT)' if name == 'sft' else name} (reference gold {r['reference_gold']:.2f})"
        weak = {"linestyle": ":", "marker": ""} if name.endswith("weak") else {"markersize": 3}
        ax.plot(b, r["curve"]["gold"], **plotting.series(r["kind"], label=label, **weak))
    ax.axhline(record["world"]["sft_gold"], **plotting.series("sft"))
    plotting.beta_axis(ax)
    ax.set_ylabel("expected gold reward (exact)")
    ax.set_title("log-linear student, DPO with references of varied strength and compatibility")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig, ax
