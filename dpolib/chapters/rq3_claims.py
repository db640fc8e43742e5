"""RQ3's and Appendix E's claims on the book's verdict rule: paired per-prompt differences of best-β arms.

The RQ3 and Appendix E grids sweep β in world seed 0; each reference's best β
(:func:`dpolib.experiments.records.best_record`, seed 0; for ``self`` over the pooled RQ1 and RQ3
sweeps) is rerun in the other world seeds, so an *arm* is that configuration in every world seed it
exists in (:func:`dpolib.chapters.rq2_claims.arm`). Two arms are compared prompt by prompt on the
length-controlled win probability (LC, points) and on gold with
:func:`dpolib.chapters.evidence.compare_arms`, pooled over the world seeds both have, and decided by
:func:`dpolib.scorecard.decide`; metrics and students are joined by :func:`dpolib.scorecard.combine`
(a conjunction) or, for the paper's "for some student" claims, by :func:`~dpolib.chapters.rq3_claims.some`.

Preconditions give "not testable", with the failed one in the note: "an incompatible reference does
not help" needs a reference that does help (else it cannot be told apart from "nothing helps"); a
student "overtaking" its reference needs one of them above the SFT model; "a larger β" needs a
larger β in the grid. :func:`~dpolib.chapters.rq3_claims.claims` can flip a criterion's direction (the tests use it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from .. import paper
from ..experiments.config import BETAS
from ..scorecard import directed_claims, AGREES, DISAGREES, NOT_TESTABLE, NOT_TESTED, Claim, Measurement, combine, decide, decide_by_worlds
from .common import student_label
from .evidence import compare_arms
from .rq2_claims import arm
from .rq3 import _best, _runs, _sft, appendix_e_reference

__all__ = ["CLAIM_IDS", "arms", "pair", "some", "beats_sft", "compatibility_predicts", "claims"]

_METRICS = {"lc": ("LC", 2), "gold": ("gold", 3)}
_NAMES = {"sft": "SFT", "rq1-best": "App. E best", "appe-reference": "its reference"}
#: The ids of the RQ3, best-practice, open-question and Appendix E claims, in the scorecard's order.
CLAIM_IDS = ("rq3.compatible-beats-self", "rq3.only-if-compatible", "rq3.incompatible-not-above-sft",
             "rq3.beta-larger-with-compatible", "rq3.no-shared-tokenizer-needed",
             "practice.compatible-stronger-reference", "open.compatibility-measure", "appe.student-overtakes-reference")


def arms(ev: dict, student: str) -> dict:
    """``{"sft", "self", "compatible", "incompatible", "rq1-best", "appe-reference": arm}`` of one student (cached).

    Each arm is the seed-0 record's configuration in every world seed (empty when there is no usable run).
    """
    cache = ev.setdefault("arms", {})
    if student not in cache:
        recs = ev["records"]
        best = {ref: _best(recs, student, ref) for ref in ("self", "compatible", "incompatible", "rq1-best")}
        cache[student] = {"sft": arm(recs, _sft(recs, student)), **{k: arm(recs, r) for k, r in best.items()},
                          "appe-reference": arm(recs, appendix_e_reference(recs, student))}
    return cache[student]


def _beta(ev: dict, student: str, name: str) -> float | None:
    a = arms(ev, student)[name]
    return next((r.beta for r in a if r.seed == 0), a[0].beta if a else None)


def pair(ev: dict, student: str, a: str, b: str, direction: int) -> Measurement:
    """Arm ``a`` minus arm ``b`` of ``student`` on LC and gold, each decided for ``direction``, joined."""
    x, y = arms(ev, student)[a], arms(ev, student)[b]
    if not x or not y:
        return Measurement.not_testable(f"no usable run for {', '.join(n for n, v in ((a, x), (b, y)) if not v)}")
    parts = {}
    for metric, (name, digits) in _METRICS.items():
        try:
            c = compare_arms(x, y, metric, f"{a} − {b}")
        except ValueError as err:
            return Measurement.not_testable(f"no paired per-prompt values ({err})")
        parts[name] = decide(c.pooled, direction, c.per_world, digits=digits)
    m = combine(parts)
    return replace(m, shown=f"{_NAMES.get(a, a)} − {_NAMES.get(b, b)}: {m.shown}")


def beats_sft(ev: dict, student: str, name: str) -> bool:
    """Whether arm ``name`` beats the student's SFT model (LC and gold, paired, pooled: the verdict rule agrees)."""
    return pair(ev, student, name, "sft", 1).verdict == AGREES


def some(parts: dict, note: str = "") -> Measurement:
    """A "for some student" claim: **agrees** when any testable part agrees, **disagrees** when every testable
    part disagrees, **inconclusive** otherwise; **not testable** when no part is testable."""
    testable = {k: m for k, m in parts.items() if m.verdict not in (NOT_TESTABLE, NOT_TESTED)}
    if not testable:
        return replace(combine(parts, note), outcome=NOT_TESTABLE) if parts else Measurement.not_testable(note)
    m = combine(testable, note)
    verdicts = {p.verdict for p in testable.values()}
    outcome = AGREES if AGREES in verdicts else DISAGREES if verdicts == {DISAGREES} else "inconclusive"
    skipped = [f"{k}: {p.note}" for k, p in parts.items() if k not in testable]
    return replace(m, value=dict(parts), outcome=outcome, shown="; ".join(f"{k}: {p.shown}" for k, p in parts.items()),
                   note="; ".join(x for x in (m.note if outcome != AGREES else note, *skipped) if x))


def _each(ev, f, join=combine) -> Measurement:
    if not ev["students"]:
        return Measurement.not_testable("no student has records")
    return join({student_label(s): f(s) for s in ev["students"]})


def _compatible_beats_self(ev, d):
    return _each(ev, lambda s: pair(ev, s, "compatible", "self", d))


def _incompatible_not_better(ev, s, d):
    if not (beats_sft(ev, s, "compatible") or beats_sft(ev, s, "self")):
        return Measurement.not_testable("neither the self nor the compatible reference beats SFT: 'the incompatible "
                                        "one does not help' cannot be told apart from 'nothing helps'")
    return pair(ev, s, "incompatible", "self", -d)


def _only_if_compatible(ev, d):
    return _each(ev, lambda s: combine({"compatible helps": pair(ev, s, "compatible", "self", d),
                                        "incompatible does not": _incompatible_not_better(ev, s, d)}))


def _incompatible_vs_sft(ev, d):
    def one(s):
        helps = [r for r in ("self", "compatible") if beats_sft(ev, s, r)]
        if not helps:
            return Measurement.not_testable("no reference arm beats SFT: 'the incompatible one does not' cannot be "
                                            "told apart from 'nothing helps'")
        return pair(ev, s, "incompatible", "sft", -d)
    return _each(ev, one, some)


def _beta_larger(ev, d):
    top = max(BETAS["rq3"])

    def one(s):
        bc, bs = _beta(ev, s, "compatible"), _beta(ev, s, "self")
        if bc is None or bs is None:
            return Measurement.not_testable("no usable run for the compatible or self reference")
        if bs >= top:
            return Measurement.not_testable(f"self's best β ({bs:g}) is the largest tried: no larger β to find")
        return decide_by_worlds({0: (bc > bs) == (d > 0)}, f"compatible {bc:g} vs self {bs:g}",
                                "the β sweep runs in world seed 0 only")
    return _each(ev, one)


def _tokenizer(ev, d):
    m = _each(ev, lambda s: pair(ev, s, "incompatible", "self", d), some)
    return replace(m, note="; ".join(x for x in (m.note, "the other-tokenizer reference is also of another family") if x))


def _practice(ev, d):
    return combine({"compatible beats self": _compatible_beats_self(ev, d), "only if compatible": _only_if_compatible(ev, d),
                    "larger best β": _beta_larger(ev, d)})


def compatibility_predicts(ev: dict, measure: str = "logp_corr", direction: int = 1) -> Measurement:
    """Within each student, the more compatible of the two other references (larger correlation, or smaller KL for
    ``"kl"``) minus the less compatible one, on LC and gold, paired and pooled; joined over students."""
    f = ev["compat"]
    f = f[f["reference"] != "self"].dropna(subset=[measure])
    if f.empty:
        return Measurement.not_testable("no compatibility measures (python -m dpolib.experiments world writes them)")

    def one(s):
        sub = f[f["student"] == s]
        if len(sub) != 2:
            return Measurement.not_testable(f"{len(sub)} references with a {measure} measure (needs 2)")
        a, b = sub.iloc[0], sub.iloc[1]
        more = a if (a[measure] > b[measure]) == (measure != "kl") else b
        less = b if more is a else a
        m = pair(ev, s, more["reference"], less["reference"], direction)
        return replace(m, shown=f"{measure} {more[measure]:.2f} vs {less[measure]:.2f}; {m.shown}")
    m = _each(ev, one)
    return replace(m, note="; ".join(x for x in (m.note, "two references per student cannot separate a measure from "
                                                  "the family label it follows") if x))


def _appendix_e(ev, d):
    def one(s):
        a = arms(ev, s)
        if not a["appe-reference"]:
            return Measurement.not_testable("no RQ1 record for the reference")
        if not (beats_sft(ev, s, "rq1-best") or beats_sft(ev, s, "appe-reference")):
            return Measurement.not_testable("neither the student nor its reference beats SFT: overtaking a reference "
                                            "that did not improve is not the paper's claim")
        bb, br = _beta(ev, s, "rq1-best"), _beta(ev, s, "appe-reference")
        larger = decide_by_worlds({0: (bb > br) == (d > 0)}, f"β {bb:g} vs the reference's {br:g}",
                                  f"{len(_runs(ev['records'], s, 'rq1-best'))} β values in world seed 0")
        return combine({"overtakes": pair(ev, s, "rq1-best", "appe-reference", d), "at a larger β": larger})
    ran = [s for s in ev["students"] if arms(ev, s)["rq1-best"]]
    if not ran:
        return Measurement.not_testable("no Appendix E runs")
    return combine({student_label(s): one(s) for s in ran})


def claims(flipped: Iterable[str] = ()) -> list[Claim]:
    """The RQ3, best-practice-2, open-question and Appendix E claims (digest §1, §6; Tables 4, 5, 7) on
    :func:`dpolib.chapters.rq3.evidence`; ids in ``flipped`` have their criterion's direction reversed."""
    t5, t7 = paper.TABLE5, paper.TABLE7
    col = t7.columns[0]
    pooled = "paired 95% interval on LC and gold, pooled over the world seeds of the best-β arms"
    t4 = paper.TABLE4.sweep()
    app_best = max(((float(r.label), t7.cell(r.label, col)) for r in t7.rows[1:]
                    if t7.cell(r.label, col) == t7.cell(r.label, col)), key=lambda x: x[1])
    best_c = float(t4["mistral-7b / ref mistral-v0.2"].idxmax())
    specs = [
        ("rq3.compatible-beats-self", "RQ3", "A stronger, compatible reference beats the self reference", "§6, Table 5",
         f"mistral-7b: {t5.cell('mistral-7b', 'mistral-v0.2')} vs {t5.cell('mistral-7b', 'self')}; "
         f"tulu-2-7b: {t5.cell('tulu-2-7b', 'llama3')} vs {t5.cell('tulu-2-7b', 'self')}",
         f"for every student, compatible − self > 0 ({pooled})", _compatible_beats_self),
        ("rq3.only-if-compatible", "RQ3", "A stronger reference helps only when it is compatible", "§6, Table 5",
         f"incompatible: mistral-7b {t5.cell('mistral-7b', 'llama3')} < self {t5.cell('mistral-7b', 'self')}; "
         f"tulu-2-7b {t5.cell('tulu-2-7b', 'mistral-v0.2')} < self {t5.cell('tulu-2-7b', 'self')}",
         f"for every student, compatible − self > 0 and incompatible − self < 0 ({pooled}); the second part not "
         "testable unless self or compatible beats SFT", _only_if_compatible),
        ("rq3.incompatible-not-above-sft", "RQ3", "An incompatible reference need not even beat the SFT model",
         "§6, Tables 4-5", f"tulu-2-7b with mistral-v0.2: {t5.cell('tulu-2-7b', 'mistral-v0.2')} vs SFT "
         f"{t5.cell('tulu-2-7b', 'original')}",
         f"for some student, incompatible − SFT < 0 ({pooled}); not testable for a student none of whose "
         "references beats SFT", _incompatible_vs_sft),
        ("rq3.beta-larger-with-compatible", "RQ3", "With a stronger compatible reference the optimal β is larger",
         "§6, Table 4", f"β = {best_c:g} (mistral-7b with mistral-v0.2) vs {float(paper.TABLE1.sweep()['mistral-7b'].idxmax()):g} with self",
         "for every student, best β (compatible) > best β (self), world seed 0 sweeps; not testable when self's "
         "best β is the largest tried", _beta_larger),
        ("rq3.no-shared-tokenizer-needed", "RQ3", "Compatibility does not need a shared tokenizer", "§6, Table 5",
         f"tulu-2-7b gains from llama3 (another tokenizer): {t5.cell('tulu-2-7b', 'llama3')} vs {t5.cell('tulu-2-7b', 'self')}",
         f"for some student, the other-tokenizer reference − self > 0 ({pooled}); disagrees when it loses for every "
         "student", _tokenizer),
        ("practice.compatible-stronger-reference", "Practice",
         "Best practice 2: a stronger reference can help but must be compatible; then use a larger β",
         "§7 (Introduction)", f"{t5.cell('mistral-7b', 'mistral-v0.2')} at β = {best_c:g} (mistral-7b, mistral-v0.2)",
         "the three RQ3 criteria above hold together", _practice),
        ("open.compatibility-measure", "Open question",
         "Compatibility can be measured, and the measure predicts which reference helps", "§7 (open question)",
         "no measure given; KL estimates called high-variance",
         f"for every student, the reference with the higher log-prob correlation − the other > 0 ({pooled})",
         lambda ev, d: compatibility_predicts(ev, "logp_corr", d)),
        ("appe.student-overtakes-reference", "App. E",
         "A student regularised to its own best DPO model overtakes that reference, at a larger β", "App. E, Table 7",
         f"{app_best[1]} at β = {app_best[0]:g} vs {t7.rows[0].label} {t7.cell(t7.rows[0].label, col)} ({col})",
         f"for every student with App. E runs, App. E best − its reference > 0 ({pooled}) at a larger β; not testable when neither "
         "beats SFT", _appendix_e),
    ]
    return directed_claims(specs, flipped)
