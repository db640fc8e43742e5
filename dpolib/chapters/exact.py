r"""The exact tabular world's chapter, read from its record: β sweeps, references, verdicts, robustness, scorecard.

``notebooks/exact_world.md`` (and the RQ1 chapter's dense curve, :func:`curve`) show the
exact world of :mod:`dpolib.tabular`. Every sweep is trained once by
:mod:`dpolib.experiments.exact` (``python -m dpolib.experiments exact``) into
``results/exact/<key>.json``; this module only reads that record and turns it into tables,
figures and verdicts (it imports neither torch nor :mod:`dpolib.tabular`).

Every qualitative statement the chapter makes ("DPO beats the probability objective",
"incompatibility did not hurt", ...) is a :class:`Verdict`: a *margin* (the signed difference
in the direction of the claim) decided against a *tolerance*. With margin :math:`m` and
tolerance :math:`\tau`, the claim *holds* if :math:`m > \tau`, *fails* if :math:`m < -\tau` and
is a *tie* if :math:`|m| \le \tau`. Gold rewards use :data:`TIE_TOLERANCE`, β values
:data:`BETA_TOLERANCE_DECADES`. The robustness scorecard (:func:`robustness_table`) applies the
same verdict functions to every independently drawn world. The paper's side of each claim is
read from :mod:`dpolib.paper`, never typed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import paper, plotting
from ..experiments.exact_records import ExactConfig, read

__all__ = [
    "INTERIOR_DROP",
    "TIE_TOLERANCE",
    "BETA_TOLERANCE_DECADES",
    "HOLDS",
    "FAILS",
    "TIE",
    "decide",
    "Verdict",
    "above_verdict",
    "larger_beta_verdict",
    "interior_optimum_verdict",
    "closed_form_verdict",
    "kappa_verdict",
    "verdicts",
    "verdict_table",
    "CLAIM_KEYS",
    "margin_unit",
    "opening_table",
    "answer",
    "grid_resolution",
    "evidence",
    "CLAIMS",
    "betas",
    "curve",
    "summary",
    "sweep_table",
    "reference_gold",
    "reference_table",
    "robustness_margins",
    "robustness_table",
    "scorecard",
    "budget_lines",
    "kappa_lines",
    "plot_sweeps",
    "plot_collapse",
    "plot_references",
]

#: How much gold reward the curve must lose at both ends of the grid to count as an interior optimum.
INTERIOR_DROP = 0.05

#: Two gold rewards closer than this (absolute, in gold-reward units) are a tie, never a win.
#: The exact world has no sampling noise, but every "best gold" is a maximum over a finite β grid,
#: so it is only known to the grid's resolution: a difference smaller than the amount by which
#: the best value moves when the grid is refined says where the grid points fall, not which
#: objective or reference is better. :func:`grid_resolution` measures that amount in the default
#: world (the robustness grid against the dense grid); the chapter prints it and
#: ``tests/test_exact_verdicts.py`` checks that it stays below this tolerance.
TIE_TOLERANCE = 0.02

#: Two β values closer than this in log10 (decades) are the same β. It is under half a step of
#: either of the book's grids (40 and 20 log-spaced values over 5 decades), so two best β values
#: on the same grid tie exactly when they are the same grid point.
BETA_TOLERANCE_DECADES = 0.05

#: A verdict whose margin exceeds the tolerance (the claim holds).
HOLDS = "holds"
#: A verdict whose margin is below minus the tolerance (the claim fails).
FAILS = "fails"
#: A verdict whose margin is within the tolerance either way.
TIE = "tie"


def decide(margin: float, tolerance: float) -> str:
    """:data:`HOLDS` if ``margin > tolerance``, :data:`FAILS` if ``margin < -tolerance``, else :data:`TIE`."""
    if margin > tolerance:
        return HOLDS
    if margin < -tolerance:
        return FAILS
    return TIE


@dataclass(frozen=True)
class Verdict:
    """One qualitative statement of the exact world, decided from its numbers.

    Attributes:
        claim: what is tested, phrased in the direction the margin is positive.
        margin: the signed difference in the claim's direction (gold reward, or decades of β).
        tolerance: the margin's tie band (:data:`TIE_TOLERANCE` or :data:`BETA_TOLERANCE_DECADES`).
        sentence: the verdict in words, with the numbers it rests on.
    """

    claim: str
    margin: float
    tolerance: float
    sentence: str

    @property
    def outcome(self) -> str:
        """:func:`decide` of the margin: :data:`HOLDS`, :data:`FAILS` or :data:`TIE`."""
        return decide(self.margin, self.tolerance)


def _with_paper(outcome: str, paper_evidence: str | None) -> str:
    """The sentence's comparison with the paper (whose claims point the way the margins do)."""
    if not paper_evidence:
        return ""
    lead = {HOLDS: "As in the paper", FAILS: "Unlike the paper", TIE: "The paper found a clear difference"}[outcome]
    return f" {lead}: {paper_evidence}."


def above_verdict(claim: str, left: str, left_value: float, right: str, right_value: float,
                  paper_evidence: str | None = None, meaning: dict | None = None) -> Verdict:
    """Claim ``left_value > right_value`` (gold rewards or drops); margin ``left_value - right_value``.

    ``left`` and ``right`` name the two quantities in the sentence ("DPO's best gold reward",
    "the probability objective's"); ``paper_evidence`` is the paper's side, from :mod:`dpolib.paper`;
    ``meaning`` maps an outcome to a sentence saying what it means (added after the numbers).
    The tie band is :data:`TIE_TOLERANCE`.
    """
    tolerance = TIE_TOLERANCE
    margin = left_value - right_value
    outcome = decide(margin, tolerance)
    head = f"{left} ({left_value:.3f})"
    if outcome == HOLDS:
        text = f"{head} is above {right} ({right_value:.3f}) by {margin:.3f}."
    elif outcome == FAILS:
        text = f"{head} is below {right} ({right_value:.3f}) by {-margin:.3f}."
    else:
        text = (f"{head} ties with {right} ({right_value:.3f}): the difference, {margin:+.3f}, is within "
                f"the tolerance of {tolerance:g}.")
    if meaning:
        text += f" {meaning[outcome]}"
    return Verdict(claim, margin, tolerance, text + _with_paper(outcome, paper_evidence))


def larger_beta_verdict(claim: str, larger: str, larger_beta: float, smaller: str, smaller_beta: float,
                        paper_evidence: str | None = None) -> Verdict:
    """Claim: ``larger`` is best at a larger β than ``smaller``; margin ``log10(larger_beta / smaller_beta)`` decades.

    A tie (within :data:`BETA_TOLERANCE_DECADES`) means both are best at the same β.
    """
    margin = math.log10(larger_beta / smaller_beta)
    outcome = decide(margin, BETA_TOLERANCE_DECADES)
    pair = f"(β = {larger_beta:.3g} against β = {smaller_beta:.3g})"
    text = {HOLDS: f"{larger} is best at a larger β than {smaller} {pair}.",
            FAILS: f"{larger} is best at a smaller β than {smaller} {pair}.",
            TIE: f"{larger} is best at the same β as {smaller} (β = {larger_beta:.3g})."}[outcome]
    return Verdict(claim, margin, BETA_TOLERANCE_DECADES, text + _with_paper(outcome, paper_evidence))


def interior_optimum_verdict(claim: str, who: str, best: float, best_beta: float, first: float, last: float,
                             low_beta: float, high_beta: float, paper_evidence: str | None = None) -> Verdict:
    """Claim: the curve has an interior optimum; margin ``min(best - first, best - last) - INTERIOR_DROP``.

    ``first`` and ``last`` are the gold rewards at the grid's smallest (``low_beta``) and largest
    (``high_beta``) β. The curve must lose at least :data:`INTERIOR_DROP` at both ends; a smaller
    drop within :data:`TIE_TOLERANCE` of it is a tie (the best value is only known to that resolution).
    """
    drop_low, drop_high = best - first, best - last
    margin = min(drop_low, drop_high) - INTERIOR_DROP
    outcome = decide(margin, TIE_TOLERANCE)
    drops = (f"it peaks at β = {best_beta:.3g} ({best:.3f}) and loses {drop_low:.3f} by β = {low_beta:.3g} "
             f"and {drop_high:.3f} by β = {high_beta:.3g}")
    smaller = f"{min(drop_low, drop_high):.3f}"
    subject = who[:1].upper() + who[1:]
    text = {HOLDS: f"{subject} has an interior optimum: {drops}, both more than the {INTERIOR_DROP:g} that counts as a drop.",
            FAILS: f"{subject} has no interior optimum: {drops}; the smaller drop, {smaller}, is short of {INTERIOR_DROP:g}.",
            TIE: (f"Whether {who} has an interior optimum is undecided: {drops}; the smaller drop, {smaller}, is "
                  f"within {TIE_TOLERANCE:g} of the {INTERIOR_DROP:g} that counts.")}[outcome]
    return Verdict(claim, margin, TIE_TOLERANCE, text + _with_paper(outcome, paper_evidence))


def closed_form_verdict(betas_ascending, gold) -> Verdict:
    """Claim: the closed-form optimum of Eq. (1) rises as β → 0; margin ``gold(smallest β) - gold(largest β)``.

    The sentence says "monotonically" only if no step towards smaller β lowers the gold reward.
    """
    b, g = np.asarray(betas_ascending, dtype=float), np.asarray(gold, dtype=float)
    margin = float(g[0] - g[-1])
    outcome = decide(margin, TIE_TOLERANCE)
    monotone = bool(np.all(np.diff(g) <= 0)) if outcome == HOLDS else bool(np.all(np.diff(g) >= 0))
    how = "monotonically" if monotone else "though not monotonically"
    ends = f"from {g[-1]:.3f} at β = {b[-1]:.3g} to {g[0]:.3f} at β = {b[0]:.3g}"
    text = {HOLDS: f"The closed-form optimum rises as β → 0, {how}, {ends}.",
            FAILS: f"The closed-form optimum falls as β → 0, {how}, {ends}.",
            TIE: f"The closed-form optimum is flat in β to within {TIE_TOLERANCE:g}, {ends}."}[outcome]
    return Verdict("closed-form optimum rises as β → 0", margin, TIE_TOLERANCE, text)


def kappa_verdict(kappas, bests, self_best: float) -> Verdict:
    """Claim: no length-tilted incompatible reference (exercise) falls below the self-reference.

    The margin is :math:`\min_\kappa(\text{best}_\kappa - \text{best}_\text{self})`, the worst tilt's gain.
    """
    gaps = [(k, g, g - self_best) for k, g in zip(kappas, bests)]
    worst_kappa, _, margin = min(gaps, key=lambda row: row[2])
    outcome = decide(margin, TIE_TOLERANCE)
    listing = "; ".join(f"κ = {k:+g} reaches {g:.3f} ({d:+.3f})" for k, g, d in gaps)
    base = f"whose best gold reward is {self_best:.3f}: {listing}"
    text = {HOLDS: f"No tilt hurts: every tilted reference beats the self-reference, {base}.",
            FAILS: f"A tilt hurts: κ = {worst_kappa:+g} falls below the self-reference, {base}.",
            TIE: (f"No tilt hurts beyond the tolerance of {TIE_TOLERANCE:g}: the worst, κ = {worst_kappa:+g}, ties "
                  f"with the self-reference, {base}.")}[outcome]
    return Verdict("no length-tilted reference below self", margin, TIE_TOLERANCE, text)


# --------------------------------------------------------------------------- the paper's side of each claim

_INTERIOR = f"interior optimum, DPO (drop ≥ {INTERIOR_DROP:g} at both ends)"
_DPO_VS_PROBABILITY = "DPO best > probability best"
_DPO_VS_LIKELIHOOD = "DPO best > likelihood best"
_COMPATIBLE_VS_SELF = "strong compatible > self"
_COMPATIBLE_BETA = "optimal β larger with strong compatible"
_INCOMPATIBLE = "incompatible < compatible"


def _paper_evidence() -> dict[str, str]:
    """Each claim's evidence in the paper, read from :mod:`dpolib.paper` (Tables 1, 3, 4, 5)."""
    t1, t3, t4, t5 = paper.TABLE1, paper.TABLE3, paper.TABLE4, paper.TABLE5
    best1 = {m: float(t1.sweep()[m].idxmax()) for m in t1.columns}
    comp_col = "mistral-7b / ref mistral-v0.2"
    dpo, prob, lik = "DPO (Eq. 5)", "probability (Eq. 10)", "likelihood (Eq. 15)"
    lc = {label: t3.cell(label, "Score (LC)") for label in (dpo, prob, lik)}
    return {
        _INTERIOR: (f"with the SFT model as reference the best β was {best1['mistral-7b']:g} (mistral-7b) and "
                    f"{best1['tulu-2-7b']:g} (tulu-2-7b), inside the grid, with a drop or degeneration one step below "
                    f"({t1.number})"),
        _DPO_VS_PROBABILITY: f"DPO {lc[dpo]:.2f} against probability {lc[prob]:.2f} LC ({t3.number})",
        _DPO_VS_LIKELIHOOD: f"DPO {lc[dpo]:.2f} against likelihood {lc[lik]:.2f} LC ({t3.number})",
        "probability beta": (f"the probability objective was best at β = {t3.row(prob).beta:g}, DPO at "
                             f"β = {t3.row(dpo).beta:g} ({t3.number})"),
        _COMPATIBLE_VS_SELF: (f"mistral-7b reached {t5.cell('mistral-7b', 'mistral-v0.2'):.2f} LC with the mistral-v0.2 "
                              f"reference against {t5.cell('mistral-7b', 'self'):.2f} with itself ({t5.number})"),
        _COMPATIBLE_BETA: (f"mistral-7b was best at β = {float(t4.sweep()[comp_col].idxmax()):g} with the mistral-v0.2 "
                           f"reference against β = {best1['mistral-7b']:g} with itself ({t1.number} and {t4.number})"),
        _INCOMPATIBLE: (f"tulu-2-7b with the incompatible mistral-v0.2 reference reached "
                        f"{t5.cell('tulu-2-7b', 'mistral-v0.2'):.2f} LC, below its SFT model's "
                        f"{t5.cell('tulu-2-7b', 'original'):.2f} ({t5.number})"),
    }


_PAPER = _paper_evidence()

#: The robustness table's questions, each with the paper's evidence for it (from :mod:`dpolib.paper`).
CLAIMS = {claim: f"{rq}: {_PAPER[claim]}" for claim, rq in (
    (_INTERIOR, "RQ1"), (_DPO_VS_PROBABILITY, "RQ2"), (_DPO_VS_LIKELIHOOD, "RQ2"),
    (_COMPATIBLE_VS_SELF, "RQ3"), (_COMPATIBLE_BETA, "RQ3"), (_INCOMPATIBLE, "RQ3"))}

_INCOMPATIBILITY_MEANS = {HOLDS: "Here incompatibility hurt.",
                          FAILS: "Here incompatibility did not hurt: the incompatible reference did better.",
                          TIE: "Here incompatibility did not hurt beyond the tolerance."}


def _claim_verdicts(ends: dict, low_beta: float, high_beta: float) -> list[Verdict]:
    """The verdicts of :data:`CLAIMS`, in order, from each reference's curve in four numbers.

    ``ends[name]`` has ``best``, ``best_beta``, ``first`` (gold at ``low_beta``) and ``last`` (at
    ``high_beta``) for ``sft`` (DPO), ``uniform`` (probability), ``prior`` (likelihood) and the strong
    ``compatible`` and ``incompatible`` references.
    """
    sft, uni, pri, comp, inc = (ends[k] for k in ("sft", "uniform", "prior", "compatible", "incompatible"))
    return [
        interior_optimum_verdict(_INTERIOR, "the log-linear student's DPO curve", sft["best"], sft["best_beta"],
                                 sft["first"], sft["last"], low_beta, high_beta, _PAPER[_INTERIOR]),
        above_verdict(_DPO_VS_PROBABILITY, "DPO's best gold reward", sft["best"], "the probability objective's",
                      uni["best"], _PAPER[_DPO_VS_PROBABILITY]),
        above_verdict(_DPO_VS_LIKELIHOOD, "DPO's best gold reward", sft["best"], "the likelihood objective's",
                      pri["best"], _PAPER[_DPO_VS_LIKELIHOOD]),
        above_verdict(_COMPATIBLE_VS_SELF, "The best gold reward with the strong compatible reference", comp["best"],
                      "the self-reference's", sft["best"], _PAPER[_COMPATIBLE_VS_SELF]),
        larger_beta_verdict(_COMPATIBLE_BETA, "The strong compatible reference", comp["best_beta"], "the self-reference",
                            sft["best_beta"], _PAPER[_COMPATIBLE_BETA]),
        above_verdict(_INCOMPATIBLE, "The best gold reward with the strong compatible reference", comp["best"],
                      "the strength-matched incompatible one's", inc["best"], _PAPER[_INCOMPATIBLE],
                      _INCOMPATIBILITY_MEANS),
    ]


def _ends(s: dict, low: str, high: str) -> dict:
    """A sweep's summary (:func:`summary`) as the robustness record's four numbers."""
    return {"best": s["best gold"], "best_beta": s["best β"], "first": s[low], "last": s[high]}


def verdicts(record: dict) -> dict[str, Verdict]:
    """Every qualitative statement of the chapter about the default world, decided from the record (dense grid).

    Keys: ``interior``, ``dpo_vs_probability``, ``dpo_vs_likelihood``, ``compatible_vs_self``,
    ``compatible_beta``, ``incompatible`` (the claims of :data:`CLAIMS`, log-linear student),
    ``probability_beta`` (the probability objective best at a larger β than DPO, as in the paper),
    ``collapse`` (the log-linear student loses more towards the smallest β than the full one),
    ``closed_form`` (the Gibbs optimum rises as β → 0), ``ends_above_reference`` (with the strong
    incompatible reference, the student at the largest β ends above the reference's own gold reward)
    and ``kappa`` (the exercise's length-tilted references against the self-reference).
    """
    b = betas(record)
    low, high = f"gold at β={b[0]:.3g}", f"gold at β={b[-1]:.3g}"
    ll = {ref: summary(record, "loglinear", objective) for objective, ref in record["objectives"]}
    full = summary(record, "full", "dpo")
    strong = record["robustness"]["strength"]
    refs = {r["name"]: r for r in record["references"]}
    comp, inc = refs[f"compatible {strong}"], refs[f"incompatible {strong}"]
    ends = {**{ref: _ends(s, low, high) for ref, s in ll.items()},
            "compatible": _ends(comp["summary"], low, high), "incompatible": _ends(inc["summary"], low, high)}
    keys = ("interior", "dpo_vs_probability", "dpo_vs_likelihood", "compatible_vs_self", "compatible_beta", "incompatible")
    out = dict(zip(keys, _claim_verdicts(ends, b[0], b[-1])))
    out["probability_beta"] = larger_beta_verdict(
        "probability best at a larger β than DPO", "The probability objective", ends["uniform"]["best_beta"], "DPO",
        ends["sft"]["best_beta"], _PAPER["probability beta"])
    out["collapse"] = above_verdict(
        "log-linear collapse costs more than full", f"The log-linear student's loss from its best to β = {b[0]:.3g}",
        ends["sft"]["best"] - ends["sft"]["first"], "the full student's", full["best gold"] - full[low],
        meaning={HOLDS: "The full student's collapse costs less.", FAILS: "The full student's collapse costs more.",
                 TIE: "Both collapses cost the same, to within the tolerance."})
    out["closed_form"] = closed_form_verdict(b, record["closed_form_gold"]["dpo"])
    out["ends_above_reference"] = above_verdict(
        "incompatible ends above its reference at the largest β",
        f"At β = {b[-1]:.3g} the student with the strong incompatible reference", inc["summary"][high],
        "that reference's own gold reward", inc["reference_gold"])
    kappa = record["exercises"]["kappa"]
    out["kappa"] = kappa_verdict([r["kappa"] for r in kappa], [r["best"] for r in kappa], ends["sft"]["best"])
    return out


def verdict_table(found: dict[str, Verdict]) -> pd.DataFrame:
    """One row per verdict (index: its key): the claim, its margin, the tolerance and the outcome."""
    return pd.DataFrame({key: {"claim": v.claim, "margin": v.margin, "tolerance": v.tolerance, "outcome": v.outcome}
                         for key, v in found.items()}).T


#: The keys of :func:`~dpolib.chapters.exact.verdicts` that test the paper's claims, in the order of the claims table.
CLAIM_KEYS = ("interior", "dpo_vs_probability", "dpo_vs_likelihood", "compatible_vs_self", "compatible_beta", "incompatible")


def margin_unit(v: Verdict) -> str:
    """The unit of a verdict's margin: gold reward, or decades of β for a β comparison."""
    return "decades of β" if v.tolerance == BETA_TOLERANCE_DECADES else "gold"


def opening_table(found: dict[str, Verdict]) -> pd.DataFrame:
    """The compact verdict table the chapter opens with: one row per claim of the paper tested here
    (:data:`~dpolib.chapters.exact.CLAIM_KEYS`), with the paper's evidence (quoted), our margin and the outcome."""
    rows = [{"claim": found[k].claim, "paper": CLAIMS[found[k].claim],
             "ours": f"margin {found[k].margin:+.3f} {margin_unit(found[k])} (a tie if within ±{found[k].tolerance:g})",
             "verdict": found[k].outcome} for k in CLAIM_KEYS]
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "verdict"])


def answer(found: dict[str, Verdict]) -> str:
    """The chapter's answer in one sentence: how many of the paper's claims hold, tie and fail in the default world."""
    outcomes = [found[k].outcome for k in CLAIM_KEYS]
    n = {o: outcomes.count(o) for o in (HOLDS, TIE, FAILS)}
    return (f"In the default world {n[HOLDS]} of the paper's {len(outcomes)} findings tested here hold, {n[TIE]} "
            f"tie (differ by less than the tolerance) and {n[FAILS]} fail.")


def grid_resolution(record: dict) -> float:
    """How far a best gold reward moves between the robustness grid and the dense grid, in the default world.

    The robustness world drawn with the default world's seed is the default world on the coarse
    grid; this is :math:`\\max_r |\\text{best}_\\text{dense}(r) - \\text{best}_\\text{coarse}(r)|` over its five
    references (DPO, probability, likelihood, strong compatible, strong incompatible). NaN if no
    robustness world has that seed. :data:`TIE_TOLERANCE` must exceed it.
    """
    seed = record["world"]["config"]["seed"]
    world = next((w for w in record["robustness"]["worlds"] if w["seed"] == seed), None)
    if world is None:
        return math.nan
    strong = record["robustness"]["strength"]
    refs = {r["name"]: r["summary"]["best gold"] for r in record["references"]}
    dense = {ref: summary(record, "loglinear", objective)["best gold"] for objective, ref in record["objectives"]}
    dense.update(compatible=refs[f"compatible {strong}"], incompatible=refs[f"incompatible {strong}"])
    return max(abs(value - world["references"][ref]["best"]) for ref, value in dense.items())


# --------------------------------------------------------------------------- reading the record


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


def _robustness_verdicts(record: dict) -> dict[int, list[Verdict]]:
    """Per robustness world (by seed), the verdicts of :data:`CLAIMS` on the coarse grid."""
    config = record.get("config", {})
    low, high = config.get("beta_low", ExactConfig.beta_low), config.get("beta_high", ExactConfig.beta_high)
    return {world["seed"]: _claim_verdicts(world["references"], low, high) for world in record["robustness"]["worlds"]}


def robustness_margins(record: dict) -> pd.DataFrame:
    """Per independently drawn world (index ``seed``), each claim's margin (:attr:`Verdict.margin`; positive: it holds)."""
    rows = {seed: {v.claim: v.margin for v in found} for seed, found in _robustness_verdicts(record).items()}
    return pd.DataFrame(rows).T.rename_axis("seed")[list(CLAIMS)]


def robustness_table(record: dict) -> pd.DataFrame:
    """Per independently drawn world (index ``seed``), each claim of :data:`CLAIMS` decided: holds, fails or tie.

    The rules are the default world's verdict functions on the coarse β grid (log-linear student):
    ``sft`` is DPO, ``uniform`` the probability objective, ``prior`` the likelihood objective,
    ``compatible``/``incompatible`` the strongest references. Gold rewards within
    :data:`TIE_TOLERANCE` tie; best β values within :data:`BETA_TOLERANCE_DECADES` (the same grid
    point) tie; an interior optimum loses at least :data:`INTERIOR_DROP` at both ends of the grid.
    """
    rows = {seed: {v.claim: v.outcome for v in found} for seed, found in _robustness_verdicts(record).items()}
    return pd.DataFrame(rows).T.rename_axis("seed")[list(CLAIMS)]


def scorecard(robust: pd.DataFrame) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` beside the paper's evidence and how many worlds it holds, ties and fails in."""
    return pd.DataFrame({
        "paper (Liu et al. 2024)": CLAIMS,
        HOLDS: {k: int((robust[k] == HOLDS).sum()) for k in CLAIMS},
        TIE: {k: int((robust[k] == TIE).sum()) for k in CLAIMS},
        FAILS: {k: int((robust[k] == FAILS).sum()) for k in CLAIMS},
        "worlds": {k: len(robust) for k in CLAIMS},
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
