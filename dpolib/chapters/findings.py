"""Findings at a glance: the paper's headline claims against our scales, every cell a computed verdict.

``notebooks/findings.md`` (the first page of the Experiments part) and the introduction's summary
read this module. Rows are the paper's headline findings (:func:`dpolib.paper.headline_findings`):
its nine RQ1–RQ3 findings and Appendix E's. Appendix B's row is left out: it restates RQ1 for a
1.5B model, and our CPU world has no separate small-model grid to test it on. Columns are our
scales:

* the **exact world** (:mod:`dpolib.chapters.exact`): the default world's :class:`~dpolib.chapters.exact.Verdict`
  of the claim, its margin against the tie tolerance, and how many independently drawn worlds it
  holds, ties and fails in; a claim the exact world has no verdict for reads "not tested at this scale";
* the **CPU world** and **GPU** (real models): the verdict of the claim module that tests the
  claim (:mod:`dpolib.chapters.rq1_claims`, :mod:`dpolib.chapters.rq2_claims`,
  :mod:`dpolib.chapters.rq3_claims`) on the committed records of that profile, with its estimate and
  paired 95% interval as the scorecard shows it; a scale without records reads "no records".

Each cell is a :class:`~dpolib.chapters.findings.Cell` and links to the chapter section where the
claim is discussed. Nothing here is typed: the verdicts come from the records at build time, the
paper's side from :mod:`dpolib.paper`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from .. import paper
from ..experiments.records import load_grid
from ..scorecard import AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTED, OUTCOMES, scorecard, style
from . import exact, rq1_claims, rq2, rq2_claims, rq3, rq3_claims

__all__ = ["SCALES", "SCALE_LABELS", "NO_RECORDS", "NO_CRITERION", "Headline", "HEADLINES", "Cell", "Finding",
           "exact_cell", "lab_cell", "build", "lab_cards", "exact_inputs", "load", "frame", "styled", "counts",
           "summary", "href", "paper_best_betas", "OPENING_COLUMNS", "verdict_table"]

#: Our scales, in the table's column order.
SCALES = ("exact", "cpu", "gpu")
#: Each scale's column header.
SCALE_LABELS = {"exact": "exact world", "cpu": "CPU world", "gpu": "GPU scale (real models)"}
#: A cell's verdict when its scale has no records at all.
NO_RECORDS = "no records"
#: A cell's verdict when its scale has no criterion for the claim.
NO_CRITERION = "not tested at this scale"

#: Where each research question's claims are discussed, as (notebook, label of its scorecard section).
_SECTIONS = {"RQ1": ("rq1_beta", "rq1-scorecard"), "RQ2": ("rq2_reference", "rq2-scorecard"),
             "RQ3": ("rq3_stronger_reference", "rq3-scorecard"), "App. E": ("rq3_stronger_reference", "rq3-scorecard")}
_EXACT_SECTION = ("exact_world", "exact-scorecard")
_GPU_HOWTO = ("../book/reproduce_paper_scale", "")
_FROM_EXACT = {exact.HOLDS: AGREES, exact.FAILS: DISAGREES, exact.TIE: INCONCLUSIVE}


@dataclass(frozen=True)
class Headline:
    """How one of the paper's headline findings is tested at each scale.

    Attributes:
        rq: the research question (``"RQ1"`` ... ``"App. E"``), as :func:`dpolib.paper.headline_findings` has it.
        claim_id: the id of the claim that tests it in the claim modules (CPU world and GPU).
        exact_keys: the keys of :func:`dpolib.chapters.exact.verdicts` that test it (empty: the exact world has none).
    """

    rq: str
    claim_id: str
    exact_keys: tuple = ()


#: The headline findings we test, in the paper module's order (its App. B row left out).
HEADLINES = (
    Headline("RQ1", "rq1.best-beta-small"),
    Headline("RQ1", "rq1.sensitive-below", ("interior",)),
    Headline("RQ1", "rq1.policy-accuracy-rises"),
    Headline("RQ2", "rq2.dpo-best", ("dpo_vs_probability", "dpo_vs_likelihood")),
    Headline("RQ2", "rq2.probability-longer"),
    Headline("RQ3", "rq3.compatible-beats-self", ("compatible_vs_self",)),
    Headline("RQ3", "rq3.incompatible-not-above-sft", ("incompatible",)),
    Headline("RQ3", "rq3.beta-larger-with-compatible", ("compatible_beta",)),
    Headline("RQ3", "rq3.no-shared-tokenizer-needed"),
    Headline("App. E", "appe.student-overtakes-reference"),
)
_LEFT_OUT = ("App. B",)


@dataclass(frozen=True)
class Cell:
    """One scale's verdict on one headline finding.

    Attributes:
        scale: one of :data:`~dpolib.chapters.findings.SCALES`.
        verdict: one of :data:`dpolib.scorecard.OUTCOMES`, "not tested" (evidence absent), :data:`~dpolib.chapters.findings.NO_RECORDS` or
            :data:`~dpolib.chapters.findings.NO_CRITERION`.
        shown: the estimate as the scorecard shows it (with its 95% interval where there is one), or a margin.
        note: the qualifier (a failed precondition, the tie band, the drawn worlds).
        tested: what was tested (a claim id, or the exact world's claim).
        doc: the page that discusses it, relative to ``notebooks/`` without suffix.
        label: the section's label on that page (empty: the page itself).
    """

    scale: str
    verdict: str
    shown: str = ""
    note: str = ""
    tested: str = ""
    doc: str = ""
    label: str = ""


@dataclass(frozen=True)
class Finding:
    """A row of the table: the paper's headline finding and a :class:`~dpolib.chapters.findings.Cell` per scale."""

    rq: str
    finding: str
    paper: str
    claim_id: str
    cells: dict = field(default_factory=dict)


def exact_cell(spec: Headline, verdicts: Mapping | None, robust: pd.DataFrame | None = None) -> Cell:
    """The exact world's cell: the default world's verdicts of ``spec.exact_keys`` (holds → agrees, fails →
    disagrees, tie → inconclusive), joined as a conjunction, with the drawn worlds' counts in the note."""
    doc, label = _EXACT_SECTION
    if verdicts is None:
        return Cell("exact", NO_RECORDS, doc=doc, label=label)
    if not spec.exact_keys:
        return Cell("exact", NO_CRITERION, doc=doc, label=label)
    found = [verdicts[k] for k in spec.exact_keys]
    outcomes = [_FROM_EXACT[v.outcome] for v in found]
    verdict = DISAGREES if DISAGREES in outcomes else AGREES if set(outcomes) == {AGREES} else INCONCLUSIVE
    shown = "; ".join(f"{v.margin:+.3f} {exact.margin_unit(v)} (a tie if within ±{v.tolerance:g})" for v in found)
    notes = []
    for v in found:
        if robust is not None and v.claim in robust.columns:
            col = robust[v.claim]
            notes.append(f"{v.claim}: holds in {int((col == exact.HOLDS).sum())}, ties in "
                         f"{int((col == exact.TIE).sum())}, fails in {int((col == exact.FAILS).sum())} of "
                         f"{len(col)} drawn worlds")
    return Cell("exact", verdict, shown, "; ".join(notes), "; ".join(v.claim for v in found), doc, label)


def lab_cell(spec: Headline, scale: str, cards: Mapping[str, pd.DataFrame]) -> Cell:
    """A record scale's cell: the row of ``spec.claim_id`` in the scorecards ``cards`` (any key; empty: no records)."""
    doc, label = _SECTIONS[spec.rq]
    if not cards:
        if scale == "gpu":
            doc, label = _GPU_HOWTO
        return Cell(scale, NO_RECORDS, tested=spec.claim_id, doc=doc, label=label)
    for card in cards.values():
        rows = card[card["id"] == spec.claim_id]
        if len(rows):
            row = rows.iloc[0]
            return Cell(scale, row["verdict"], row["ours"], row["note"], spec.claim_id, doc, label)
    return Cell(scale, NO_RECORDS, note="no grid of this claim has records", tested=spec.claim_id, doc=doc,
                label=label)


def build(verdicts: Mapping | None, robust: pd.DataFrame | None,
          cards_by_scale: Mapping[str, Mapping[str, pd.DataFrame]]) -> list[Finding]:
    """The table: one :class:`~dpolib.chapters.findings.Finding` per entry of :data:`~dpolib.chapters.findings.HEADLINES`.

    Args:
        verdicts: :func:`dpolib.chapters.exact.verdicts` of the exact record (``None``: no exact record).
        robust: :func:`dpolib.chapters.exact.robustness_table` of the same record (``None``: no counts).
        cards_by_scale: ``{"cpu": {...}, "gpu": {...}}``, each the scorecards of :func:`~dpolib.chapters.findings.lab_cards` (empty: no records).
    """
    heads = paper.headline_findings()
    heads = heads[~heads["rq"].isin(_LEFT_OUT)].reset_index(drop=True)
    if len(heads) != len(HEADLINES) or list(heads["rq"]) != [h.rq for h in HEADLINES]:
        raise ValueError("dpolib.paper.headline_findings no longer matches HEADLINES: map its rows again")
    out = []
    for spec, (_, row) in zip(HEADLINES, heads.iterrows()):
        cells = {"exact": exact_cell(spec, verdicts, robust)}
        for scale in SCALES[1:]:
            cells[scale] = lab_cell(spec, scale, cards_by_scale.get(scale, {}))
        out.append(Finding(spec.rq, row["finding"], row["evidence"], spec.claim_id, cells))
    return out


def lab_cards(profile: str, root: Path | None = None) -> dict[str, pd.DataFrame]:
    """The RQ1, RQ2 and RQ3 scorecards on the committed records of ``profile``, read as the chapters read them.

    Keys ``rq1``, ``rq2``, ``rq3`` for each grid that has records (an empty dict: the profile has none).
    """
    cards = {}
    r1 = load_grid("rq1", profile, rq1_claims.world_seeds(profile), root)
    if r1:
        cards["rq1"] = scorecard(rq1_claims.CLAIMS, rq1_claims.evidence(r1))
    r2 = load_grid("rq2", profile, root=root)
    if r2:
        cards["rq2"] = scorecard(rq2_claims.claims(), rq2.evidence(r2))
    r3 = rq3.load(profile, root)
    if any(r3.values()):
        cards["rq3"] = scorecard(rq3_claims.claims(), rq3.evidence(r3, rq3.load_compatibility(profile, root)))
    return cards


def exact_inputs(root: Path | None = None) -> tuple:
    """``(verdicts, robustness table)`` of the book's exact record, or ``(None, None)`` when it is absent."""
    try:
        record = exact.evidence(root=root)
    except FileNotFoundError:
        return None, None
    return exact.verdicts(record), exact.robustness_table(record)


def load(cpu_profile: str = "cpu", root: Path | None = None) -> list[Finding]:
    """The table from the committed records: the exact record, ``cpu_profile``'s records and the ``gpu`` records."""
    verdicts, robust = exact_inputs(root)
    return build(verdicts, robust, {"cpu": lab_cards(cpu_profile, root), "gpu": lab_cards("gpu", root)})


def href(cell: Cell) -> str:
    """The link from ``notebooks/findings.html`` to the section that discusses the cell's claim."""
    return f"{cell.doc}.html" + (f"#{cell.label}" if cell.label else "")


def frame(findings: list[Finding], labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The table as plain text: ``rq``, ``paper's finding``, ``paper (quoted)``, then per scale its verdict and value."""
    labels = {**SCALE_LABELS, **(labels or {})}
    rows = []
    for f in findings:
        row = {"rq": f.rq, "paper's finding": f.finding, "paper (quoted)": f.paper}
        for scale in SCALES:
            c = f.cells[scale]
            row[labels[scale]] = c.verdict + (f": {c.shown}" if c.shown else "")
        rows.append(row)
    return pd.DataFrame(rows)


_COLOURS = {AGREES: "#d9f0d3", DISAGREES: "#f6d0d0", INCONCLUSIVE: "#fbefc4", NOT_TESTABLE: "#dde4f0"}


def _cell_html(c: Cell) -> str:
    what = "how to produce them" if c.verdict == NO_RECORDS and c.scale == "gpu" else "discussed here"
    parts = [f"<b>{html.escape(c.verdict)}</b>"]
    if c.shown:
        parts.append(html.escape(c.shown))
    if c.note:
        parts.append(f"<small>{html.escape(c.note)}</small>")
    if c.tested:
        parts.append(f"<small>tested as <code>{html.escape(c.tested)}</code></small>")
    parts.append(f'<a href="{html.escape(href(c))}">{what}</a>')
    return "<br>".join(parts)


def styled(findings: list[Finding], labels: Mapping[str, str] | None = None):
    """The table as a pandas Styler for the book: one row per finding, each cell its verdict (coloured), its
    estimate, its note, what was tested and a link to the section that discusses it."""
    labels = {**SCALE_LABELS, **(labels or {})}
    shown = pd.DataFrame([{"rq": f.rq, "paper's finding": html.escape(f.finding),
                           "paper (quoted)": html.escape(f.paper),
                           **{labels[s]: _cell_html(f.cells[s]) for s in SCALES}} for f in findings])
    verdicts = pd.DataFrame([{labels[s]: f.cells[s].verdict for s in SCALES} for f in findings])

    def colour(col):
        return [f"background-color: {_COLOURS.get(v, '#eeeeee')}" for v in verdicts[col.name]]

    return (shown.style.hide(axis="index").apply(colour, subset=[labels[s] for s in SCALES])
            .set_properties(**{"text-align": "left", "vertical-align": "top"}))


def counts(findings: list[Finding], scale: str) -> dict[str, int]:
    """How many findings have each verdict at ``scale`` (every outcome, "not tested", :data:`~dpolib.chapters.findings.NO_RECORDS` and
    :data:`~dpolib.chapters.findings.NO_CRITERION` always present)."""
    keys = (*OUTCOMES, NOT_TESTED, NO_RECORDS, NO_CRITERION)
    found = [f.cells[scale].verdict for f in findings]
    return {k: found.count(k) for k in keys}


def _tally(n: dict) -> str:
    parts = [f"agrees with {n[AGREES]}", f"disagrees with {n[DISAGREES]}", f"cannot tell {n[INCONCLUSIVE]}",
             f"cannot test {n[NOT_TESTABLE] + n[NOT_TESTED]}"]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def summary(findings: list[Finding], labels: Mapping[str, str] | None = None) -> str:
    """One paragraph for the introduction, every count read from ``findings``."""
    labels = {**SCALE_LABELS, **(labels or {})}
    n_rq = sum(f.rq.startswith("RQ") for f in findings)
    extra = {rq: sum(f.rq == rq for f in findings) for rq in dict.fromkeys(f.rq for f in findings)
             if not rq.startswith("RQ")}
    head = (f"We test {len(findings)} of the paper's headline findings: its {n_rq} on RQ1–RQ3"
            + "".join(f" and {n} from {rq}" for rq, n in extra.items())
            + f" ({' and '.join(_LEFT_OUT)}'s finding, which repeats RQ1 with a smaller model, is left out).")
    sentences = [head]
    for scale in SCALES:
        n = counts(findings, scale)
        name = labels[scale]
        if n[NO_RECORDS] == len(findings):
            sentences.append(f"The {name} has no records yet.")
            continue
        tested = len(findings) - n[NO_CRITERION] - n[NO_RECORDS]
        lead = f"The {name}" if tested == len(findings) else f"The {name} tests {tested} of them and"
        sentences.append(f"{lead} {_tally(n)}.")
    return " ".join(sentences)


def paper_best_betas() -> dict[str, str]:
    """The paper's best β values the introduction quotes, read from :mod:`dpolib.paper`.

    Keys: ``rq1`` (the self-reference optima of Table 1, e.g. ``"0.01–0.02"``), ``rq3`` (the optimum of mistral-7b
    with the compatible mistral-v0.2 reference, Table 4), ``customary`` (the "previous work" β of Table 1).
    """
    t1 = paper.TABLE1.sweep()
    best = sorted({float(t1[c].idxmax()) for c in t1.columns})
    previous = next(r.beta for r in paper.TABLE1.rows if r.role == "previous")
    rq3_best = float(paper.TABLE4.sweep()["mistral-7b / ref mistral-v0.2"].idxmax())
    return {"rq1": "–".join(f"{b:g}" for b in best), "rq3": f"{rq3_best:g}", "customary": f"{previous:g}"}


#: The columns of the compact verdict table each chapter opens with.
OPENING_COLUMNS = ("claim", "paper", "ours", "verdict")


def verdict_table(card: pd.DataFrame):
    """The compact verdict table a chapter opens with: its scorecard's claim, the paper's evidence (quoted), our
    estimate and the verdict, coloured as in :func:`dpolib.scorecard.style`."""
    return style(card, OPENING_COLUMNS)
