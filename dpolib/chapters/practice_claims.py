"""The Practice chapter's claims on the book's verdict rule: paired per-prompt differences, pooled over world seeds.

The paper's two best practices (digest §6) are split into six claims, each tested by
:mod:`dpolib.scorecard`'s rule (agrees / disagrees / inconclusive / not testable), as the RQ1
claims are (:mod:`dpolib.chapters.rq1_claims`):

* a **score** comparison of two arms of one student is paired prompt by prompt, on the
  length-controlled win probability (LC, points) and on gold, with
  :func:`dpolib.chapters.evidence.compare_arms` (bootstrap per world seed, pooled over world seeds),
  each metric decided by :func:`dpolib.scorecard.decide` and the two, and the students, joined by
  :func:`dpolib.scorecard.combine` (a conjunction);
* the **best β** of a sweep is RQ1's rule, ``best_beta`` of :class:`dpolib.chapters.rq1_claims.StudentSweep`
  (:func:`dpolib.experiments.records.best_record` on the LC win rate averaged over world seeds, a β that
  degenerates in any world seed excluded); the self-reference sweep is
  :func:`dpolib.chapters.rq1_claims.student_sweep` itself, the stronger references' sweeps are built
  the same way (:func:`~dpolib.chapters.practice_claims.reference_sweep`).

Preconditions make a claim "not testable" instead of letting a grid edge pass it: "too small a
β degrades" and "a cliff below the optimum" need the best β inside the grid (neither edge), and
"a larger β with a stronger reference" needs the self optimum below the top of the grid and a
compatible β on each side of it. :func:`~dpolib.chapters.practice_claims.claims` can flip a
criterion's direction (the tests use it to show each criterion can fail).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from .. import paper
from ..experiments.records import Record
from ..scorecard import directed_claims, Claim, Measurement, combine, decide
from . import rq1_claims as q
from .common import best_record, student_label
from .evidence import compare_arms

__all__ = ["REFERENCES", "CUSTOMARY_BETA", "CLAIM_IDS", "reference_sweep", "sweeps", "best_beta", "claims", "CLAIMS"]

#: The references a Practice claim reads, each swept over β.
REFERENCES = ("self", "compatible", "incompatible")
#: The β most earlier work used, the threshold of best practice 1.
CUSTOMARY_BETA = q.CUSTOMARY_BETA
_METRICS = {"lc": "LC", "gold": "gold"}
_DIGITS = {"lc": 2, "gold": 3}
#: The stronger reference of the student's own family in the paper's Table 5 (the others are of another family).
_PAPER_COMPATIBLE = {"mistral-7b": "mistral-v0.2", "tulu-2-7b": "llama3"}


def reference_sweep(records: Iterable[Record], student: str, reference: str = "self") -> q.StudentSweep:
    """The student's DPO runs with ``reference`` (off-policy pairs) over every world seed, with the pooled best β.

    ``"self"`` is :func:`dpolib.chapters.rq1_claims.student_sweep`; another reference is pooled by the same rule.
    """
    records = list(records)
    own = q.student_sweep(records, student)
    if reference == "self":
        return own
    runs: dict = {}
    for r in records:
        if (r.student == student and r.objective == "dpo" and r.reference == reference and not r.is_sft
                and r.config.pairs == "pool"):
            runs.setdefault(r.beta, {})[r.seed] = r
    runs = dict(sorted(runs.items(), key=lambda kv: -kv[0]))
    pooled = {b: q._pooled_record(rs) for b, rs in runs.items()}
    best = best_record(pooled.values())
    return q.StudentSweep(student, runs, own.sft, {b: p.metrics.lc_win_rate for b, p in pooled.items()},
                          {b: tuple(w for w, r in sorted(rs.items()) if r.degenerate) for b, rs in runs.items()},
                          None if best is None else best.beta)


def sweeps(ev) -> dict:
    """``{(student, reference): StudentSweep}`` of a :class:`~dpolib.chapters.practice.PracticeEvidence`, cached on it."""
    cache = ev.cache
    if "sweeps" not in cache:
        cache["sweeps"] = {(s, ref): reference_sweep(ev.records, s, ref) for s in ev.students for ref in REFERENCES}
    return cache["sweeps"]


def best_beta(ev, student: str, reference: str = "self") -> float | None:
    """The pooled best β of a student's sweep with ``reference`` (``None``: no β usable in every world seed)."""
    return sweeps(ev)[(student, reference)].best_beta


def _rq1_view(ev) -> dict:
    """The self-reference sweeps in the shape :mod:`dpolib.chapters.rq1_claims`' criteria read (shared cache)."""
    cache = ev.cache
    if "rq1" not in cache:
        cache["rq1"] = {"students": list(ev.students), "comparisons": {},
                        "sweeps": {s: sweeps(ev)[(s, "self")] for s in ev.students}}
    return cache["rq1"]


def _arms_pair(a: list, b: list, label: str, direction: int) -> Measurement:
    """Arm ``a`` minus arm ``b`` (records over world seeds) on LC and gold, each decided for ``direction``, joined."""
    parts = {}
    for metric, name in _METRICS.items():
        try:
            c = compare_arms(a, b, metric, label)
        except ValueError as err:
            return Measurement.not_testable(f"no paired per-prompt values ({label}: {err})")
        parts[name] = decide(c.pooled, direction, c.per_world, digits=_DIGITS[metric])
    m = combine(parts)
    return replace(m, shown=f"{label}: {m.shown}")


def _edge(sw: q.StudentSweep) -> str:
    """Why the best β cannot show what lies below and above it ("" when it is inside the grid)."""
    b = sw.best_beta
    if b is None:
        return "every β degenerated in some world seed: no optimum"
    if len(sw.betas) < 3:
        return f"{len(sw.betas)} β values (needs 3)"
    if b == max(sw.betas):
        return f"the best β ({b:g}) is the largest tried: no optimum inside the grid, so a decline below it is not a β too small"
    if b == min(sw.betas):
        return f"the best β ({b:g}) is the smallest tried: no β below the optimum to test"
    return ""


# --------------------------------------------------------------------------- the criteria, per student


def _below_customary(ev, s, d):
    return q._best_small(_rq1_view(ev), s, d)


def _too_small_degrades(ev, s, d):
    why = _edge(sweeps(ev)[(s, "self")])
    return Measurement.not_testable(why) if why else q._too_small_degrades(_rq1_view(ev), s, d)


def _cliff_below(ev, s, d):
    why = _edge(sweeps(ev)[(s, "self")])
    return Measurement.not_testable(why) if why else q._sensitive(_rq1_view(ev), s, d)


def _versus_self(reference: str, direction: int):
    """Best β with ``reference`` minus the best self-reference β; ``direction`` is the paper's sign."""
    def measure(ev, s, d):
        own, other = sweeps(ev)[(s, "self")], sweeps(ev)[(s, reference)]
        if not other.runs:
            return Measurement.not_testable(f"no {reference}-reference run")
        if own.best_beta is None:
            return Measurement.not_testable("no self-reference β non-degenerate in every world seed")
        b = other.best_beta
        note = ""
        if b is None:  # every β degenerated somewhere: its highest-scoring arm is still a model to compare
            b = max(other.pooled_lc, key=other.pooled_lc.get)
            note = f"every {reference} β degenerated in some world seed; its highest pooled LC (β {b:g}) compared"
        m = _arms_pair(list(other.runs[b].values()), list(own.runs[own.best_beta].values()),
                       f"{reference} β {b:g} − self β {own.best_beta:g}", direction * d)
        return replace(m, shown=m.shown + (" (every β degenerate)" if note else ""),
                       note="; ".join(x for x in (note, m.note) if x))
    return measure


def _larger_beta(ev, s, d):
    own, comp = sweeps(ev)[(s, "self")], sweeps(ev)[(s, "compatible")]
    if not comp.runs:
        return Measurement.not_testable("no compatible-reference run")
    b = own.best_beta
    if b is None:
        return Measurement.not_testable("no self-reference β non-degenerate in every world seed")
    if b == max(own.betas):
        return Measurement.not_testable(f"the self optimum ({b:g}) is the largest β tried: the grid cannot order the optima")
    above = comp.best_among(x for x in comp.betas if x > b)
    below = comp.best_among(x for x in comp.betas if x <= b)
    if above is None or below is None:
        side = "above" if above is None else "at or below"
        return Measurement.not_testable(f"no compatible β {side} the self optimum {b:g} that is non-degenerate in "
                                        "every world seed")
    m = _arms_pair(list(comp.runs[above].values()), list(comp.runs[below].values()),
                   f"compatible β {above:g} − β {below:g} (self optimum {b:g})", d)
    return replace(m, shown=f"best β: compatible {comp.best_beta:g}, self {b:g}; {m.shown}")


def _each_student(criterion):
    def measure(ev, d=1):
        if not ev.students:
            return Measurement.not_testable("no records")
        return combine({student_label(s): criterion(ev, s, d) for s in ev.students})
    return measure


# --------------------------------------------------------------------------- the paper's side, from dpolib.paper


def _paper_side() -> dict:
    t1, t5 = paper.TABLE1.sweep(), paper.TABLE5
    best = {c: float(t1[c].idxmax()) for c in t1.columns}
    six = paper.TABLE6.sweep()
    best.update({c: float(six[c].idxmax()) for c in six.columns})
    table = {**{c: t1[c] for c in t1.columns}, **{c: six[c] for c in six.columns}}

    def cell(c, b):
        v = table[c].get(b, float("nan"))
        return "[degenerate]" if v != v else f"{v:.2f}"

    def step(c, k):
        betas = sorted(table[c].index)
        i = betas.index(best[c]) + k
        return betas[i] if 0 <= i < len(betas) else None

    def rows(col):
        return {s: t5.cell(s, col) for s in _PAPER_COMPATIBLE}

    own, comp = rows("self"), {s: t5.cell(s, r) for s, r in _PAPER_COMPATIBLE.items()}
    other = {s: t5.cell(s, next(r for r in ("mistral-v0.2", "llama3") if r != _PAPER_COMPATIBLE[s]))
             for s in _PAPER_COMPATIBLE}
    t4 = paper.TABLE4.sweep()
    best4 = {s: float(t4[f"{s} / ref {r}"].idxmax()) for s, r in _PAPER_COMPATIBLE.items()}
    return {
        "below": "best β " + ", ".join(f"{best[c]:g} ({c})" for c in best),
        "too-small": "; ".join(f"{c} {cell(c, min(table[c].index))} at {min(table[c].index):g}" for c in table),
        "cliff": "; ".join(f"{c}: {cell(c, step(c, -1))} one step below, {cell(c, best[c])} at {best[c]:g}, "
                           f"{cell(c, step(c, 1))} one step above" for c in t1.columns),
        "compatible": "; ".join(f"{s}: {comp[s]:.2f} ({_PAPER_COMPATIBLE[s]}) vs {own[s]:.2f} (self)" for s in own),
        "incompatible": "; ".join(f"{s}: {other[s]:.2f} vs {own[s]:.2f} (self)" for s in own),
        "larger": "; ".join(f"{s}: β {best4[s]:g} with {_PAPER_COMPATIBLE[s]} vs {best[s]:g} with self" for s in best4),
    }


_P = _paper_side()
_PAIRED = "paired per-prompt difference, 95% interval pooled over world seeds, every world the same sign; LC and gold both"
_BEST = "best β by records.best_record on LC pooled over world seeds (RQ1's rule)"

#: Each claim as id, rq, claim, source, the paper's evidence, criterion, and its per-student measure.
_SPECS = (
    ("practice.best-beta-below-0.1", "Practice 1",
     "With the SFT model as reference, the best β is smaller than the customary 0.1", "§1, §7; Table 1, Table 6",
     _P["below"], f"the best β below 0.1 beats the best β at or above 0.1 ({_PAIRED}); {_BEST}. Precondition: a "
     "non-degenerate β on each side", _below_customary),
    ("practice.too-small-degrades", "Practice 1",
     "…but the constraint must stay strong enough: too small a β degrades", "§4.1, Table 1", _P["too-small"],
     f"the smallest β loses to the best β above it ({_PAIRED}). Precondition: the best β is inside the grid (neither "
     "edge), else a monotone decline would pass", _too_small_degrades),
    ("practice.cliff-below-optimum", "Practice 1", "Tune carefully: just below the optimum the model degrades quickly",
     "§4.1, Table 1", _P["cliff"],
     f"one grid step below the best β loses to the best β and to one step above it ({_PAIRED}). Precondition: the "
     "best β is inside the grid (neither edge)", _cliff_below),
    ("practice.compatible-reference-helps", "Practice 2", "A stronger reference of the same family improves DPO",
     "§6, Table 5", _P["compatible"],
     f"the best β with the compatible reference beats the best self-reference β ({_PAIRED}). Precondition: both "
     "sweeps exist", _versus_self("compatible", +1)),
    ("practice.incompatible-reference-no-help", "Practice 2",
     "…only if compatible: a stronger reference of another family does not help", "§6, Table 5", _P["incompatible"],
     f"the best β with the incompatible reference loses to the best self-reference β ({_PAIRED}; if every "
     "incompatible β degenerated, its highest pooled LC). Precondition: both sweeps exist",
     _versus_self("incompatible", -1)),
    ("practice.larger-beta-with-strong-reference", "Practice 2",
     "With a stronger compatible reference the optimal β is larger", "§6, Table 4", _P["larger"],
     f"with the compatible reference, its best β above the self optimum beats its best β at or below it ({_PAIRED}). "
     "Precondition: the self optimum is below the largest β tried and the compatible sweep has a β on each side",
     _larger_beta),
)

#: The ids of the Practice claims, in scorecard order.
CLAIM_IDS = tuple(spec[0] for spec in _SPECS)


def claims(flipped: Iterable[str] = ()) -> list[Claim]:
    """The Practice claims over a :class:`~dpolib.chapters.practice.PracticeEvidence`; an id in ``flipped`` tests
    the opposite direction (for tests)."""
    return directed_claims([(*spec[:6], _each_student(spec[6])) for spec in _SPECS], flipped)


#: The Practice claims, each with its criterion.
CLAIMS = claims()
