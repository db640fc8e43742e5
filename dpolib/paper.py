"""The paper's numbers, as data.

Liu, Liu & Cohan, "Understanding Reference Policies in Direct Preference
Optimization" (arXiv 2407.13709v2, Findings of NAACL 2025). Every table of
results in the paper is here with its caption and where it comes from, so a
chapter can put the paper's numbers beside its own without retyping them.
Values were transcribed from the arXiv v2 text (via the project's paper digest);
``tests/test_paper.py`` checks them against the values the paper prints in bold.

A cell the paper prints as "[degenerate]" (the run produced degenerate text and
was not scored) is the marker :data:`~dpolib.paper_table.DEGENERATE`, never a number: it becomes
``NaN`` in :meth:`~dpolib.paper_table.PaperTable.frame` and is listed by
:attr:`~dpolib.paper_table.PaperTable.degenerate`.

Usage::

    from dpolib import paper
    paper.TABLE1.frame()           # all rows, as printed
    paper.TABLE1.sweep()           # only the beta sweep, indexed by beta (float)
    paper.TABLE1.display()         # styled like the paper: bold best, [degenerate]
    paper.plot_sweep(paper.TABLE4) # LC win rate vs beta, beta on a log axis
"""

from __future__ import annotations

import math
import textwrap

import matplotlib as mpl
import pandas as pd

from .paper_table import DEGENERATE, Degenerate, PaperRow, PaperTable

__all__ = [
    "CITATION",
    "BIBKEY",
    "RQ1_BETAS",
    "RQ3_BETAS",
    "APP_B_BETAS",
    "APP_E_BETAS",
    "RQ2_OPTIMAL_BETA",
    "MODELS",
    "RECIPE",
    "TABLE1",
    "TABLE2",
    "TABLE3",
    "TABLE4",
    "TABLE5",
    "TABLE6",
    "TABLE7",
    "TABLES",
    "headline_findings",
    "plot_sweep",
]

#: How to cite the paper in text (the book's BibTeX key is :data:`BIBKEY`).
CITATION = (
    "Yixin Liu, Pengfei Liu and Arman Cohan. Understanding Reference Policies in Direct Preference "
    "Optimization. arXiv 2407.13709v2 (2024); Findings of NAACL 2025, pp. 8022-8037."
)
#: The paper's key in the book's bibliography (``book/references.bib``).
BIBKEY = "liu2024refdpo"


RQ1_BETAS = (0.1, 0.05, 0.02, 0.01, 0.005)
#: beta grid of RQ3 (Table 4), as printed.
RQ3_BETAS = (10.0, 1.0, 0.1, 0.01, 0.005)
#: beta grid of App. B (Table 6, Qwen2-1.5B), which is RQ1's grid plus 0.001.
APP_B_BETAS = RQ1_BETAS + (0.001,)
#: beta grid of App. E (Table 7).
APP_E_BETAS = RQ3_BETAS
#: The beta at which each objective of RQ2 is reported (Table 3). The sweep grids of the
#: probability and likelihood objectives are not given in the paper.
RQ2_OPTIMAL_BETA = {"dpo": 0.01, "probability": 100.0, "likelihood": 0.01}

#: The models by the paper's short names, with Hugging Face id, role and AlpacaEval 2 LC win rate (%).
MODELS = {
    "mistral-7b": {"hf_id": "HuggingFaceH4/mistral-7b-sft-beta", "role": "SFT start and default reference", "lc": 7.57},
    "tulu-2-7b": {"hf_id": "allenai/tulu-2-7b", "role": "SFT start and default reference", "lc": 8.50},
    "mistral-v0.2": {"hf_id": "mistralai/Mistral-7B-Instruct-v0.2", "role": "stronger reference (RQ3)", "lc": 20.55},
    "llama3": {"hf_id": "meta-llama/Meta-Llama-3-70B-Instruct", "role": "stronger reference (RQ3)", "lc": 34.40},
    "qwen2-1.5b-sft": {"hf_id": "Qwen/Qwen2-1.5B (SFT on UltraChat by the authors; not released)", "role": "small-scale start (App. B)", "lc": 4.82},
}

#: The paper's training recipe. ``source`` says where each value comes from, "paper" (the text),
#: "repo" (github.com/yale-nlp/refdpo at c1dc5e1, where the paper is silent) or "inferred".
RECIPE = {
    "dataset": {"value": "UltraFeedback, binarized (allenai/ultrafeedback_binarized_cleaned; 60,829 train pairs)", "source": "paper+repo"},
    "epochs": {"value": 3, "source": "paper"},
    "batch_size_pairs": {"value": 32, "source": "paper"},
    "lr_schedule": {"value": "linear, 10% warmup, decay to 0", "source": "paper"},
    "learning_rate": {"value": 5e-7, "source": "repo"},
    "optimizer": {"value": "AdamW (PyTorch defaults: betas 0.9/0.999, eps 1e-8, weight decay 0.01)", "source": "repo"},
    "max_length_tokens": {"value": 2048, "source": "repo"},
    "checkpoint_selection": {"value": "lowest validation DPO loss, evaluated every 500 steps", "source": "paper"},
    "precision": {"value": "bf16 mixed precision, TF32, gradient checkpointing, FlashAttention-2", "source": "repo"},
    "parallelism": {"value": "8 GPUs x 4 pairs, DeepSpeed ZeRO-3, gradient clipping 1.0", "source": "repo"},
    "hardware": {"value": "8 NVIDIA RTX 6000 Ada (48 GB; the paper says 40 GB)", "source": "paper"},
    "time_per_run": {"value": "about 9 hours for 3 epochs", "source": "paper"},
    "steps_per_run": {"value": "about 5.7k optimizer steps (60.8k / 32 x 3), about 570 warmup", "source": "inferred"},
    "reference_logps": {"value": "precomputed once per reference, one scalar per response (sequence log-prob)", "source": "repo"},
    "evaluation": {"value": "AlpacaEval 2 length-controlled win rate vs gpt-4-1106-preview (alpaca_eval 0.6)", "source": "paper+repo"},
    "seed": {"value": 18890426, "source": "repo"},
}

def _sweep_rows(betas, *columns):
    return tuple(PaperRow(label=f"{b:g}", beta=b, values=tuple(col[i] for col in columns)) for i, b in enumerate(betas))


_D = DEGENERATE

TABLE1 = PaperTable(
    key="table1",
    number="Table 1",
    title="AlpacaEval 2 LC win rate vs beta, the SFT model as reference (RQ1)",
    caption=(
        "Model performance on AlpacaEval2 with varying values of β (regularization strength with respect to the "
        "reference model). The DPO fine-tuning is started from mistral-7b and tulu-2-7b respectively. *: the DPO "
        "fine-tuned models in previous work, Zephyr (Tunstall et al., 2023) and Tulu-2 (Ivison et al., 2023)."
    ),
    section="§4 (RQ1)",
    metric="AlpacaEval 2 length-controlled win rate (%)",
    row_header="β",
    columns=("mistral-7b", "tulu-2-7b"),
    rows=(
        PaperRow("∞ (original)", (7.57, 8.50), beta=math.inf, role="sft"),
        PaperRow("0.1 (previous work*)", (13.42, 9.20), beta=0.1, role="previous"),
        *_sweep_rows(RQ1_BETAS, (14.03, 13.29, 16.06, 16.25, 12.36), (9.38, 9.96, 10.46, 7.86, _D)),
    ),
    bold=frozenset({("0.01", "mistral-7b"), ("0.02", "tulu-2-7b")}),
)

TABLE2 = PaperTable(
    key="table2",
    number="Table 2",
    title="Ranking accuracy of the implicit reward and of the policy vs beta (RQ1)",
    caption=(
        "Ranking accuracy of the learned reward model rθ(x,y) and the policy model pθ(y|x) on the Ultrafeedback "
        "validation set."
    ),
    section="§4 (RQ1)",
    metric="ranking accuracy on the UltraFeedback validation set (fraction of pairs)",
    row_header="β",
    columns=("mistral-7b r_θ", "mistral-7b p_θ", "tulu-2-7b r_θ", "tulu-2-7b p_θ"),
    rows=(
        PaperRow("∞ (original)", (0.500, 0.435, 0.500, 0.439), beta=math.inf, role="sft"),
        *_sweep_rows(
            RQ1_BETAS,
            (0.718, 0.744, 0.746, 0.751, 0.766),
            (0.495, 0.513, 0.544, 0.605, 0.704),
            (0.773, 0.778, 0.766, 0.758, 0.750),
            (0.462, 0.483, 0.536, 0.605, 0.680),
        ),
    ),
    decimals={c: 3 for c in ("mistral-7b r_θ", "mistral-7b p_θ", "tulu-2-7b r_θ", "tulu-2-7b p_θ")},
    notes=(
        "No cell is bold in the paper.",
        "r_θ of the SFT model is 0.500 by construction: its implicit reward (Eq. 6) is 0 for every response.",
    ),
)

TABLE3 = PaperTable(
    key="table3",
    number="Table 3",
    title="DPO vs the posterior-probability and likelihood objectives on mistral-7b (RQ2)",
    caption=(
        "Performance comparison of different training objectives for fine-tuning mistral-7b. The best performance "
        "with the optimal β is reported. The AlpacaEval2 score, the ranking accuracy of the model's probability, "
        "and the output length are reported."
    ),
    section="§5 (RQ2)",
    metric="LC win rate (%), policy ranking accuracy (fraction), output length (units not stated)",
    row_header="Method",
    columns=("Score (LC)", "Accuracy", "Length"),
    rows=(
        PaperRow("original (SFT)", (7.57, 0.435, 205.0), beta=None, role="sft"),
        PaperRow("DPO (Eq. 5)", (16.25, 0.605, 359.4), beta=RQ2_OPTIMAL_BETA["dpo"], role="objective"),
        PaperRow("probability (Eq. 10)", (12.84, 0.697, 744.5), beta=RQ2_OPTIMAL_BETA["probability"], role="objective"),
        PaperRow("likelihood (Eq. 15)", (13.63, 0.602, 389.3), beta=RQ2_OPTIMAL_BETA["likelihood"], role="objective"),
    ),
    bold=frozenset({("DPO (Eq. 5)", "Score (LC)")}),
    decimals={"Score (LC)": 2, "Accuracy": 3, "Length": 1},
    notes=("Only the score column has a bold value in the paper.", "The unit of Length is not stated in the paper."),
)

TABLE4 = PaperTable(
    key="table4",
    number="Table 4",
    title="AlpacaEval 2 LC win rate vs beta with stronger references (RQ3)",
    caption=(
        "Model performance on AlpacaEval2 with varying values of β fine-tuned from mistral-7b and tulu-2-7b. Two "
        "reference models, mistral-v0.2 and llama3 are used."
    ),
    section="§6 (RQ3)",
    metric="AlpacaEval 2 length-controlled win rate (%)",
    row_header="β",
    columns=(
        "mistral-7b / ref mistral-v0.2",
        "mistral-7b / ref llama3",
        "tulu-2-7b / ref mistral-v0.2",
        "tulu-2-7b / ref llama3",
    ),
    rows=_sweep_rows(
        RQ3_BETAS,
        (18.74, 20.25, 19.58, 17.18, 15.34),
        (13.29, 9.59, 10.99, 15.37, 11.70),
        (7.61, 7.85, _D, _D, _D),
        (9.79, 11.17, 10.31, 9.16, 3.29),
    ),
    bold=frozenset(
        {
            ("1", "mistral-7b / ref mistral-v0.2"),
            ("0.01", "mistral-7b / ref llama3"),
            ("1", "tulu-2-7b / ref mistral-v0.2"),
            ("1", "tulu-2-7b / ref llama3"),
        }
    ),
    notes=("The paper prints the betas as 10.0, 1.00, 0.10, 0.01, 0.005; labels here use the shortest form.",),
)

TABLE5 = PaperTable(
    key="table5",
    number="Table 5",
    title="Best LC win rate over beta for each reference (RQ3)",
    caption=(
        "Model performance on AlpacaEval2. The best performance across different values of β with different "
        "reference models is compared, including the SFT model itself (self), mistral-v0.2, and llama3."
    ),
    section="§6 (RQ3)",
    metric="AlpacaEval 2 length-controlled win rate (%), best over the beta grid",
    row_header="Student",
    columns=("original", "self", "mistral-v0.2", "llama3"),
    rows=(
        PaperRow("mistral-7b", (7.57, 16.25, 20.25, 15.37), role="student"),
        PaperRow("tulu-2-7b", (8.50, 10.46, 7.85, 11.17), role="student"),
    ),
    bold=frozenset({("mistral-7b", "mistral-v0.2"), ("tulu-2-7b", "llama3")}),
    baseline_columns=frozenset({"original"}),
)

TABLE6 = PaperTable(
    key="table6",
    number="Table 6 (App. B)",
    title="AlpacaEval 2 LC win rate vs beta for Qwen2-1.5B, self-reference (small scale)",
    caption=(
        "Model performance on AlpacaEval2 with varying values of β ... The DPO fine-tuning is started from an SFT "
        "checkpoint fine-tuned from qwen2-1.5b."
    ),
    section="Appendix B",
    metric="AlpacaEval 2 length-controlled win rate (%)",
    row_header="β",
    columns=("qwen2-1.5b",),
    rows=(
        PaperRow("SFT", (4.82,), beta=math.inf, role="sft"),
        *_sweep_rows(APP_B_BETAS, (4.75, 5.00, 5.89, 4.91, 5.52, _D)),
    ),
    bold=frozenset({("0.02", "qwen2-1.5b")}),
    notes=(
        "The paper prints this table with β as columns; here β is the row, as in Table 1.",
        "The caption is abridged (\"...\") in the transcription.",
    ),
)

TABLE7 = PaperTable(
    key="table7",
    number="Table 7 (App. E)",
    title="mistral-7b with its own best DPO model (β = 0.01) as reference",
    caption=(
        "AlpacaEval 2 LC win rate of DPO from mistral-7b with varying β, using the DPO model fine-tuned from "
        "mistral-7b with β = 0.01 as the reference model."
    ),
    section="Appendix E",
    metric="AlpacaEval 2 length-controlled win rate (%)",
    row_header="β",
    columns=("mistral-7b / ref DPO(β=0.01)",),
    rows=(
        PaperRow("reference (β = 0.01 DPO model)", (16.24,), beta=None, role="reference"),
        *_sweep_rows(APP_E_BETAS, (15.20, 16.75, 14.99, 15.07, 14.80)),
    ),
    bold=frozenset({("1", "mistral-7b / ref DPO(β=0.01)")}),
    caption_verbatim=False,
    notes=(
        "Caption paraphrased: the transcription gives the table's content, not its caption.",
        "The reference scores 16.24 here and 16.25 in Table 1 (same model): a discrepancy in the paper.",
    ),
)

#: Every table by key, in the paper's order.
TABLES = {t.key: t for t in (TABLE1, TABLE2, TABLE3, TABLE4, TABLE5, TABLE6, TABLE7)}


def _argmax_beta(table: PaperTable, column: str) -> float:
    return float(table.sweep()[column].idxmax())


def headline_findings() -> pd.DataFrame:
    """The paper's headline findings, each recomputed from its own tables.

    Returns:
        One row per finding with columns ``rq``, ``finding``, ``evidence`` (the numbers,
        with the table they come from) and ``holds`` (whether the tables support it).
        The RQ chapters put the same findings beside our reruns.
    """
    t1, t2, t3, t4, t5, t6, t7 = (TABLES[f"table{i}"] for i in range(1, 8))
    rows = []

    def add(rq, finding, evidence, holds):
        rows.append({"rq": rq, "finding": finding, "evidence": evidence, "holds": bool(holds)})

    best = {m: _argmax_beta(t1, m) for m in t1.columns}
    add("RQ1", "With the SFT model as reference, the best beta is far below the customary 0.1",
        f"Table 1: best beta {best['mistral-7b']:g} (mistral-7b), {best['tulu-2-7b']:g} (tulu-2-7b)",
        all(b < 0.1 for b in best.values()))
    below = {}
    for m in t1.columns:
        sweep = t1.sweep()[m]
        smaller = [b for b in sweep.index if b < best[m]]
        nxt = max(smaller)
        below[m] = (nxt, t1.cell(f"{nxt:g}", m))
    add("RQ1", "Just below the best beta, performance drops sharply or the model degenerates",
        "Table 1: " + "; ".join(f"{m} at beta {b:g}: {v!s} vs {t1.sweep()[m].max():.2f}" for m, (b, v) in below.items()),
        all(v is DEGENERATE or v < t1.sweep()[m].max() - 2 for m, (_, v) in below.items()))
    p_cols = [c for c in t2.columns if c.endswith("p_θ")]
    add("RQ1", "Smaller beta gives higher policy ranking accuracy",
        "Table 2: " + "; ".join(f"{c} {t2.sweep()[c].iloc[0]:.3f} (beta 0.1) to {t2.sweep()[c].iloc[-1]:.3f} (beta 0.005)" for c in p_cols),
        all(t2.sweep()[c].is_monotonic_increasing for c in p_cols))
    score = {r.label.split(" ")[0]: r.values[0] for r in t3.rows}
    add("RQ2", "DPO (SFT reference) beats the reference-free posterior-probability and the likelihood objectives",
        f"Table 3: DPO {score['DPO']:.2f}, probability {score['probability']:.2f}, likelihood {score['likelihood']:.2f}, SFT {score['original']:.2f}",
        score["DPO"] > max(score["probability"], score["likelihood"]) and min(score["probability"], score["likelihood"]) > score["original"])
    length = {r.label.split(" ")[0]: r.values[2] for r in t3.rows}
    add("RQ2", "Without a reference (probability objective) the outputs get much longer",
        f"Table 3: length {length['probability']:.1f} vs {length['DPO']:.1f} (DPO), {length['original']:.1f} (SFT)",
        length["probability"] > 1.5 * length["DPO"])
    add("RQ3", "A stronger, compatible reference helps: mistral-7b with mistral-v0.2 beats its own SFT reference",
        f"Table 5: {t5.cell('mistral-7b', 'mistral-v0.2'):.2f} vs {t5.cell('mistral-7b', 'self'):.2f} (self)",
        t5.cell("mistral-7b", "mistral-v0.2") > t5.cell("mistral-7b", "self"))
    add("RQ3", "A stronger but incompatible reference does not: tulu-2-7b with mistral-v0.2 stays below its SFT model",
        f"Table 5: {t5.cell('tulu-2-7b', 'mistral-v0.2'):.2f} vs SFT {t5.cell('tulu-2-7b', 'original'):.2f}; "
        f"{len([d for d in t4.degenerate if d[1] == 'tulu-2-7b / ref mistral-v0.2'])} of 5 betas degenerate (Table 4)",
        t5.cell("tulu-2-7b", "mistral-v0.2") < t5.cell("tulu-2-7b", "original"))
    add("RQ3", "With a stronger compatible reference the best beta is larger (1.0)",
        f"Table 4: best beta {_argmax_beta(t4, 'mistral-7b / ref mistral-v0.2'):g} (mistral-7b / mistral-v0.2), "
        f"{_argmax_beta(t4, 'tulu-2-7b / ref llama3'):g} (tulu-2-7b / llama3)",
        _argmax_beta(t4, "mistral-7b / ref mistral-v0.2") == 1.0 and _argmax_beta(t4, "tulu-2-7b / ref llama3") == 1.0)
    add("RQ3", "Compatibility does not need a shared tokenizer: tulu-2-7b (Llama-2 tokenizer) gains from llama3",
        f"Table 5: {t5.cell('tulu-2-7b', 'llama3'):.2f} vs {t5.cell('tulu-2-7b', 'self'):.2f} (self)",
        t5.cell("tulu-2-7b", "llama3") > t5.cell("tulu-2-7b", "self"))
    add("App. B", "At 1.5B the best beta is again small (0.02) and the smallest beta degenerates",
        f"Table 6: best beta {_argmax_beta(t6, 'qwen2-1.5b'):g}; beta 0.001 {t6.cell('0.001', 'qwen2-1.5b')!s}",
        _argmax_beta(t6, "qwen2-1.5b") == 0.02 and t6.cell("0.001", "qwen2-1.5b") is DEGENERATE)
    ref_row = "reference (β = 0.01 DPO model)"
    col = t7.columns[0]
    add("App. E", "A student regularised towards its own best DPO model overtakes that reference, at a large beta",
        f"Table 7: {t7.sweep()[col].max():.2f} at beta {_argmax_beta(t7, col):g} vs reference {t7.cell(ref_row, col):.2f}",
        t7.sweep()[col].max() > t7.cell(ref_row, col))
    return pd.DataFrame(rows)


def plot_sweep(table: PaperTable, columns=None, ax=None, series=None, baseline: bool = True):
    """Plot a table's beta sweep in the book's style: one line per column, beta on a log axis.

    Degenerate cells are drawn as crosses on the x axis; the SFT or reference row (if the
    table has one) is a dashed horizontal line in the column's colour, and a model from
    previous work (Table 1) a hollow marker. Every mark has a legend entry, placed
    below the axes.

    Args:
        table: a table with a beta sweep (Tables 1, 2, 4, 6, 7).
        columns: columns to plot (default: all).
        ax: matplotlib axes to draw on (default: a new figure from :func:`dpolib.plotting.figure`).
        series: optional ``{column: series name}`` for :func:`dpolib.plotting.series` styles.
        baseline: draw the SFT / reference / previous-work rows.

    Returns:
        ``(fig, ax)``.
    """
    from dpolib import plotting

    if ax is None:
        fig, ax = plotting.figure()
    else:
        plotting.use_style()
        fig = ax.figure
    sweep = table.sweep()
    columns = list(columns or table.columns)
    colours = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    degenerate = set(table.degenerate)
    label_of = {r.beta: r.label for r in table.rows if r.role == "sweep"}
    crosses = []
    for i, column in enumerate(columns):
        style = plotting.series(series[column]) if series and column in series else {"color": colours[i % len(colours)], "marker": "o"}
        colour = style["color"]
        ax.plot(sweep.index, sweep[column], **{**style, "label": column})
        xs = [b for b in sweep.index if (label_of[b], column) in degenerate]
        if xs:
            crosses.append((column, xs, colour))
        if not baseline:
            continue
        for row in table.rows:
            value = row.values[table.columns.index(column)]
            if row.role in {"sft", "reference"}:
                what = "before DPO (SFT)" if row.role == "sft" else "the reference itself"
                ax.axhline(value, color=colour, linestyle="--", linewidth=1.0, alpha=0.8, label=f"{column}, {what}")
            elif row.role == "previous" and row.beta is not None:
                ax.plot([row.beta], [value], linestyle="none", marker=style.get("marker") or "o", markersize=8,
                        markerfacecolor="none", color=colour, label=f"{column}, previous work*")
    if crosses:
        ymin, ymax = ax.get_ylim()
        for column, xs, colour in crosses:
            ax.plot(xs, [ymin] * len(xs), linestyle="none", marker="X", markersize=9, color=colour, clip_on=False,
                    label=f"{column}, degenerate (not scored)")
        ax.set_ylim(ymin, ymax)
    plotting.beta_axis(ax)
    ax.set_ylabel(textwrap.fill(table.metric, 40))
    ax.set_title(f"{table.number}: {table.title}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return fig, ax
