"""RQ2's claims on the book's verdict rule: paired per-prompt differences of best-β arms, pooled over world seeds.

The RQ2 grid sweeps β for each objective in world seed 0; the best β of each objective
(:func:`dpolib.experiments.records.best_record`, seed 0) is rerun in the other world seeds, so an
*arm* is that configuration in every world seed it exists in (:func:`~dpolib.chapters.rq2_claims.arm`). Two arms are
compared prompt by prompt on the length-controlled win probability (LC, points) and on gold with
:func:`dpolib.chapters.evidence.compare_arms`, pooled over the world seeds both have, and decided by
:func:`dpolib.scorecard.decide`; metrics and objectives are joined by :func:`dpolib.scorecard.combine`.
Numbers a record keeps once per run (mean length, EOS statistics, the selected β) have no interval:
:func:`dpolib.scorecard.decide_by_worlds` asks every world seed for the claimed direction.

Each criterion states its preconditions; when one fails the outcome is "not testable" and the note
says which (e.g. ranking objectives that are all worse than SFT, or whose optimum sits at the edge
of the β grid). :func:`~dpolib.chapters.rq2_claims.claims` can flip a criterion's direction (the tests use it).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable

from .. import paper
from ..experiments.records import Record
from ..scorecard import directed_claims, Claim, Measurement, combine, decide, decide_by_worlds
from .evidence import compare_arms
from .rq2 import LONGER_FACTOR, METHOD_LABELS, OBJECTIVES, by_objective

__all__ = ["CLAIM_IDS", "arm", "pair", "versus_sft", "at_edge", "claims"]

_METRICS = {"lc": ("LC", 2), "gold": ("gold", 3)}
#: The ids of the RQ2 claims, in the scorecard's order.
CLAIM_IDS = ("rq2.all-improve-on-sft", "rq2.dpo-best", "rq2.probability-large-beta", "rq2.probability-longer",
             "rq2.probability-extreme-eos", "rq2.dpo-separates-eos", "rq2.beats-orpo")


def arm(records: Iterable[Record], rec: Record | None) -> list[Record]:
    """Every record of ``rec``'s configuration, one per world seed (empty for ``None``)."""
    if rec is None:
        return []
    key = replace(rec.config, seed=0)
    return sorted((r for r in records if replace(r.config, seed=0) == key), key=lambda r: r.seed)


def _arms(ev: dict) -> dict:
    """``{"sft" or objective: arm}`` of the seed-0 SFT row and each objective's best β."""
    if "arms" not in ev:
        recs = ev["records"]
        ev["arms"] = {"sft": arm(recs, ev["sft"]), **{o: arm(recs, r) for o, r in ev["best"].items()}}
    return ev["arms"]


def pair(ev: dict, a: str, b: str, direction: int) -> Measurement:
    """Arm ``a`` minus arm ``b`` ("sft" or an objective) on LC and gold, each decided for ``direction``, joined."""
    arms = _arms(ev)
    if not arms[a] or not arms[b]:
        return Measurement.not_testable(f"no usable run for {', '.join(x for x in (a, b) if not arms[x])}")
    parts = {}
    for metric, (name, digits) in _METRICS.items():
        try:
            c = compare_arms(arms[a], arms[b], metric, f"{a} − {b}")
        except ValueError as err:
            return Measurement.not_testable(f"no paired per-prompt values ({err})")
        parts[name] = decide(c.pooled, direction, c.per_world, digits=digits)
    m = combine(parts)
    return replace(m, shown=f"{a} − {b}: {m.shown}")


def versus_sft(ev: dict, objective: str) -> float:
    """The pooled LC difference (points) of an objective's best-β arm minus SFT (NaN when it cannot be paired)."""
    try:
        return compare_arms(_arms(ev)[objective], _arms(ev)["sft"], "lc").pooled.estimate
    except (ValueError, KeyError):
        return math.nan


def at_edge(ev: dict, objective: str) -> bool:
    """Whether the objective's best β is the largest or smallest β of its world-0 sweep."""
    rec = ev["best"].get(objective)
    betas = [r.beta for r in by_objective(ev["records"], objective)]
    return rec is not None and len(betas) > 0 and rec.beta in (max(betas), min(betas))


def _improve_on_sft(ev, d):
    return combine({o: pair(ev, o, "sft", d) for o in OBJECTIVES})


def _dpo_best(ev, d):
    absent = [o for o in OBJECTIVES if not _arms(ev)[o]]
    if absent:
        return Measurement.not_testable("no usable run for " + ", ".join(absent) + " (absent or every β degenerate)")
    gains = {o: versus_sft(ev, o) for o in OBJECTIVES}
    if _arms(ev)["sft"] and all(g <= 0 for g in gains.values() if not math.isnan(g)) and \
            not all(math.isnan(g) for g in gains.values()):
        return Measurement.not_testable("every objective's best β is below the SFT model on LC ("
                                        + ", ".join(f"{o} {g:+.2f}" for o, g in gains.items())
                                        + "): ranking them would rank failures")
    edge = [o for o in OBJECTIVES if at_edge(ev, o)]
    if edge:
        return Measurement.not_testable("the best β of " + ", ".join(f"{o} ({ev['best'][o].beta:g})" for o in edge)
                                        + " is at the edge of its grid: its optimum may lie outside")
    return combine({f"DPO − {o}": pair(ev, "dpo", o, d) for o in ("probability", "likelihood")})


def _probability_beta(ev, d):
    bp, bd = ev["best"].get("probability"), ev["best"].get("dpo")
    if bp is None or bd is None:
        return Measurement.not_testable("no usable run for probability or DPO")
    if bp.beta > bd.beta and at_edge(ev, "dpo") and bd.beta == max(r.beta for r in by_objective(ev["records"], "dpo")):
        return Measurement.not_testable("DPO's best β is the largest tried, so its optimum may lie above")
    if bp.beta < bd.beta and bp.beta == min(r.beta for r in by_objective(ev["records"], "probability")):
        return Measurement.not_testable("probability's best β is the smallest tried, so its optimum may lie below")
    holds = bp.beta > bd.beta if d > 0 else bp.beta < bd.beta
    return decide_by_worlds({0: holds}, f"probability {bp.beta:g}, DPO {bd.beta:g}",
                            "the β sweep runs in world seed 0 only")


def _per_world(ev, a: str, b: str, test, shown_of):
    """``test(record a, record b)`` in every world seed both arms share, by :func:`dpolib.scorecard.decide_by_worlds`."""
    arms = _arms(ev)
    if not arms[a] or not arms[b]:
        return Measurement.not_testable(f"no usable run for {a} or {b}")
    by_b = {r.seed: r for r in arms[b]}
    pairs = {r.seed: (r, by_b[r.seed]) for r in arms[a] if r.seed in by_b}
    return decide_by_worlds({w: test(x, y) for w, (x, y) in pairs.items()},
                            "; ".join(f"world {w}: {shown_of(x, y)}" for w, (x, y) in pairs.items()))


def _longer(ev, d):
    def ratio(p, q):
        return p.metrics.mean_length_chars / q.metrics.mean_length_chars if q.metrics.mean_length_chars else math.inf
    m = _per_world(ev, "probability", "dpo", lambda p, q: (ratio(p, q) >= LONGER_FACTOR) == (d > 0),
                   lambda p, q: f"{p.metrics.mean_length_chars:.1f} vs {q.metrics.mean_length_chars:.1f} chars "
                                f"({ratio(p, q):.2f}x)")
    return replace(m, note="; ".join(x for x in (m.note, f"'much longer' read as ≥ {LONGER_FACTOR}x") if x))


def _extreme_eos(ev, d):
    return _per_world(ev, "probability", "dpo",
                      lambda p, q: (abs(p.metrics.eos["value"]) > abs(q.metrics.eos["value"])) == (d > 0),
                      lambda p, q: f"log p(EOS) probability {p.metrics.eos['value']:.2f}, DPO {q.metrics.eos['value']:.2f}")


def _eos_separation(ev, d):
    return _per_world(ev, "dpo", "probability",
                      lambda p, q: (abs(p.metrics.eos["difference"]) > abs(q.metrics.eos["difference"])) == (d > 0),
                      lambda p, q: f"EOS chosen − rejected DPO {p.metrics.eos['difference']:+.2f}, "
                                   f"probability {q.metrics.eos['difference']:+.2f}")


def _orpo(ev, d):
    return Measurement.not_testable("our grid has no ORPO arm (the paper compares with a leaderboard number, not a rerun)")


def claims(flipped: Iterable[str] = ()) -> list[Claim]:
    """The RQ2 claims (digest §1, §5), each tested on :func:`dpolib.chapters.rq2.evidence`; ids in ``flipped`` have
    their criterion's direction reversed (the tests use it to show each criterion can fail)."""
    t3 = paper.TABLE3
    score = {k: t3.cell(v, "Score (LC)") for k, v in METHOD_LABELS.items()}
    length = {k: t3.cell(v, "Length") for k, v in METHOD_LABELS.items()}
    pooled = "paired 95% interval on LC and gold, pooled over the world seeds of the best-β arms"
    specs = [
        ("rq2.all-improve-on-sft", "All three objectives improve on the SFT model", "§5, Table 3",
         f"DPO {score['dpo']}, probability {score['probability']}, likelihood {score['likelihood']} > SFT {score['sft']}",
         f"each objective's best β − SFT > 0 ({pooled})", _improve_on_sft),
        ("rq2.dpo-best", "DPO at its best β beats both reference-free alternatives", "§5, Table 3",
         f"{score['dpo']} vs {score['probability']} (probability), {score['likelihood']} (likelihood)",
         f"DPO − each alternative > 0 ({pooled}); not testable when every objective is below SFT or a best β is at "
         "the grid edge", _dpo_best),
        ("rq2.probability-large-beta", "The probability objective needs a much larger β", "Table 3",
         "β = 100 (probability) vs 0.01 (DPO)", "best β of probability > best β of DPO (world 0 sweeps); not testable "
         "when the grid edge leaves the order open", _probability_beta),
        ("rq2.probability-longer", "Without a reference (probability objective) outputs get much longer",
         "§5.2, Table 3", f"{length['probability']} vs {length['dpo']} (DPO)",
         f"mean length at best β, probability ≥ {LONGER_FACTOR} × DPO, in every world seed", _longer),
        ("rq2.probability-extreme-eos", "The probability objective gives more extreme EOS log-probs",
         "§5.2, Figure 3", "bars only (values not recoverable)",
         "|mean log p(EOS)| at best β: probability > DPO, in every world seed", _extreme_eos),
        ("rq2.dpo-separates-eos", "DPO separates EOS between chosen and rejected responses more",
         "§5.2, Figure 3", "bars only (values not recoverable)",
         "|EOS chosen−rejected difference| at best β: DPO > probability, in every world seed", _eos_separation),
        ("rq2.beats-orpo", "With a tuned β, DPO beats reference-free ORPO", "§5",
         f"DPO {score['dpo']} vs ORPO's AlpacaEval leaderboard score",
         "needs an ORPO run", _orpo),
    ]
    return directed_claims([(cid, "RQ2", *rest) for cid, *rest in specs], flipped)
