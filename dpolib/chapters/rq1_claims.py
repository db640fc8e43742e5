"""RQ1's claims on the book's verdict rule: paired per-prompt differences, pooled over world seeds.

Every claim of the paper about β with the SFT reference (digest §1, best practice 1 of §6)
is tested by :mod:`dpolib.scorecard`'s rule (agrees / disagrees / inconclusive / not testable):

* claims about the **score** compare two β values of one student prompt by prompt, on the
  length-controlled win probability (LC, points) and on gold, with
  :func:`dpolib.chapters.evidence.compare_arms` (paired bootstrap per world seed, pooled over world
  seeds); each metric is decided by :func:`dpolib.scorecard.decide` and the two, and the students, are
  joined by :func:`dpolib.scorecard.combine` (a conjunction);
* the **best β** is the book's one rule, :func:`dpolib.experiments.records.best_record`, applied to every
  self-reference run of the student (β = 1 and 10 included) with its LC win rate averaged over world
  seeds; a β that degenerates in any world seed is excluded, as the paper excludes degenerate models;
* claims about **diagnostics** a record keeps as one number per run (ranking accuracy, output length,
  token statistics) have no interval: :func:`dpolib.scorecard.decide_by_worlds` asks that every world
  seed shows the claimed direction.

Each criterion states its preconditions; when one fails the outcome is "not testable" and the note
says which. :func:`~dpolib.chapters.rq1_claims.claims` can flip a criterion's direction (the tests use it to show each criterion
can fail). :func:`~dpolib.chapters.rq1_claims.likely_reason` explains a disagreement only with numbers read from the records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import paper
from ..experiments.records import Record
from ..scorecard import directed_claims, DISAGREES, Claim, Measurement, combine, decide, decide_by_worlds
from ..stats import spearman
from ..world.profiles import get_profile
from . import rq1
from .common import SFT_BETA, best_record, student_label
from .evidence import compare_arms
from .rq1_tokens import MIN_COUNT, eos_diff, eos_rank, imbalance

__all__ = [
    "CUSTOMARY_BETA", "EXTREME_NATS", "EXTREME_RATIO", "CLAIM_IDS", "world_seeds", "StudentSweep", "student_sweep",
    "evidence", "difference", "claims", "CLAIMS", "best_betas_text", "versus_sft_text", "likely_reason", "reasons",
]

#: The β most earlier work used (the paper's "previous work" row), the reference point of the best-β claim.
CUSTOMARY_BETA = 0.1
#: Token extremes need the most down-weighted frequent token to lose a factor 10 or more (Eq. 8 at or below −ln 10).
EXTREME_NATS = -math.log(10)
#: Token extremes also need that token to move at least this many times as far as the occurrence-weighted mean token.
EXTREME_RATIO = 5.0
#: The two yardsticks of every score comparison, name to display name.
_METRICS = {"lc": "LC", "gold": "gold"}
_DIGITS = {"lc": 2, "gold": 3}


def world_seeds(profile: str) -> tuple:
    """The world seeds of a world profile (``(0,)`` for a profile that is not a world profile, e.g. ``gpu``)."""
    try:
        return tuple(get_profile(profile).seeds)
    except ValueError:
        return (0,)


@dataclass(frozen=True)
class StudentSweep:
    """One student's self-reference DPO runs and SFT rows, by β and world seed.

    Attributes:
        student: the student's name.
        runs: DPO β (largest first) to ``{world seed: record}``.
        sft: ``{world seed: record}`` of the SFT rows.
        pooled_lc: DPO β to the LC win rate averaged over its world seeds.
        degenerate_in: DPO β to the world seeds whose run degenerated.
        best_beta: the best β pooled over world seeds (``None`` when every β degenerated somewhere).
    """

    student: str
    runs: dict
    sft: dict
    pooled_lc: dict
    degenerate_in: dict
    best_beta: float | None

    @property
    def betas(self) -> list:
        """The DPO β values, largest first."""
        return list(self.runs)

    def best_among(self, betas: Iterable[float]) -> float | None:
        """:func:`dpolib.experiments.records.best_record` over the pooled runs of ``betas`` (``None``: none usable)."""
        pooled = [_pooled_record(self.runs[b]) for b in betas if b in self.runs]
        best = best_record(pooled)
        return None if best is None else best.beta

    def world(self, seed: int) -> dict:
        """``{β: record}`` of the DPO runs in one world seed, largest β first."""
        return {b: rs[seed] for b, rs in self.runs.items() if seed in rs}

    @property
    def seeds(self) -> list:
        """Every world seed with a DPO run, ascending."""
        return sorted({w for rs in self.runs.values() for w in rs})


def _pooled_record(by_seed: dict) -> Record:
    """One record standing for a β over its world seeds: mean LC win rate, degenerate if any world degenerated."""
    first = by_seed[min(by_seed)]
    lc = float(np.mean([r.metrics.lc_win_rate for r in by_seed.values()]))
    degenerate = any(r.degenerate for r in by_seed.values())
    return replace(first, metrics=replace(first.metrics, lc_win_rate=lc, degenerate=degenerate))


def student_sweep(records: Iterable[Record], student: str) -> StudentSweep:
    """The student's RQ1 runs (off-policy pairs only) over every world seed given, with the pooled best β."""
    runs: dict = {}
    sft: dict = {}
    for r in records:
        if r.student != student or r.config.pairs != "pool":
            continue
        if r.is_sft:
            sft[r.seed] = r
        elif r.objective == "dpo" and r.reference == "self":
            runs.setdefault(r.beta, {})[r.seed] = r
    runs = dict(sorted(runs.items(), key=lambda kv: -kv[0]))
    pooled = {b: _pooled_record(rs) for b, rs in runs.items()}
    best = best_record(pooled.values())
    return StudentSweep(student, runs, sft, {b: p.metrics.lc_win_rate for b, p in pooled.items()},
                        {b: tuple(w for w, r in sorted(rs.items()) if r.degenerate) for b, rs in runs.items()},
                        None if best is None else best.beta)


def evidence(records: Iterable[Record], replicates_of: Callable[[Record], list[Record]] | None = None,
             min_count: int = MIN_COUNT) -> dict:
    """:func:`dpolib.chapters.rq1.evidence` (the seed-0 diagnostics and headline) plus what the claims need.

    Adds ``sweeps`` (student to :class:`~dpolib.chapters.rq1_claims.StudentSweep`, every world seed) and ``comparisons`` (a cache of
    :func:`~dpolib.chapters.rq1_claims.difference`).
    """
    records = list(records)
    ev = rq1.evidence(records, replicates_of, min_count)
    ev["sweeps"] = {s: student_sweep(records, s) for s in ev["students"]}
    ev["comparisons"] = {}
    return ev


def difference(ev: dict, student: str, a: float, b: float, metric: str):
    """β ``a`` minus β ``b`` (``SFT_BETA``: the SFT row) of one student on ``metric``, paired and pooled over the
    world seeds both have: an :class:`~dpolib.chapters.evidence.ArmComparison`, or a string saying why none exists."""
    key = (student, a, b, metric)
    if key not in ev["comparisons"]:
        sw = ev["sweeps"][student]
        arms = [list((sw.sft if x == SFT_BETA else sw.runs.get(x, {})).values()) for x in (a, b)]
        label = f"{student_label(student)} β {a:g} − β {b:g}".replace("β inf", "SFT")
        try:
            ev["comparisons"][key] = compare_arms(arms[0], arms[1], metric, label)
        except ValueError as err:
            ev["comparisons"][key] = f"{label}: {err}"
    return ev["comparisons"][key]


def _name(beta: float) -> str:
    return "SFT" if beta == SFT_BETA else f"β {beta:g}"


def _pair(ev: dict, student: str, a: float, b: float, direction: int) -> Measurement:
    """``a − b`` on LC and gold, each decided for ``direction`` (+1: the claim says a beats b), joined."""
    parts = {}
    for metric, name in _METRICS.items():
        c = difference(ev, student, a, b, metric)
        if isinstance(c, str):
            return Measurement.not_testable(f"no paired per-prompt values ({c})")
        parts[name] = decide(c.pooled, direction, c.per_world, digits=_DIGITS[metric])
    m = combine(parts)
    return replace(m, shown=f"{_name(a)} − {_name(b)}: {m.shown}")


# --------------------------------------------------------------------------- the paper's side, from dpolib.paper


def _cell(column: str, beta: float) -> str:
    value = paper.TABLE1.sweep()[column].get(beta, math.nan)
    return "[degenerate]" if math.isnan(value) else f"{value:.2f}"


def _paper_side() -> dict:
    """The paper's evidence for each claim, read from :data:`dpolib.paper.TABLE1` and :data:`dpolib.paper.TABLE2`."""
    t1, t2 = paper.TABLE1.sweep(), paper.TABLE2.sweep()
    best = {c: float(t1[c].idxmax()) for c in t1.columns}
    sft = {c: paper.TABLE1.cell("∞ (original)", c) for c in t1.columns}

    def steps(c):
        betas = sorted(t1.index)
        i = betas.index(best[c])
        below = betas[i - 1] if i > 0 else None
        above = betas[i + 1] if i + 1 < len(betas) else None
        return (f"{c}: {_cell(c, best[c])} at {best[c]:g}, " + (f"{_cell(c, below)} at {below:g}" if below else "")
                + (f", {_cell(c, above)} at {above:g}" if above else ""))

    hi, lo = max(t2.index), min(t2.index)
    return {
        "rq1.best-beta-small": "; ".join(f"best β {b:g} ({c}, {_cell(c, b)} vs {_cell(c, CUSTOMARY_BETA)} at 0.1)"
                                         for c, b in best.items()),
        "rq1.interior-optimum": "; ".join(f"{c}: {_cell(c, hi)} ({hi:g}) → {_cell(c, best[c])} ({best[c]:g}) → "
                                          f"{_cell(c, lo)} ({lo:g})" for c in t1.columns),
        "rq1.sensitive-below": "; ".join(steps(c) for c in t1.columns),
        "rq1.dpo-beats-sft": "; ".join(f"{_cell(c, best[c])} vs {sft[c]:.2f} ({c})" for c in t1.columns),
        "rq1.policy-accuracy-rises": "; ".join(f"{c} {t2[c][hi]:.3f} ({hi:g}) → {t2[c][lo]:.3f} ({lo:g})"
                                               for c in t2.columns if c.endswith("p_θ")),
        "practice.smaller-beta": "optimal β " + ", ".join(f"{b:g} ({c})" for c, b in best.items())
                                 + f" rather than {CUSTOMARY_BETA:g}; just below the optimum the model degrades",
    }


# --------------------------------------------------------------------------- the criteria, per student


def _best_small(ev, s, d):
    sw = ev["sweeps"][s]
    below = sw.best_among(b for b in sw.betas if b < CUSTOMARY_BETA)
    above = sw.best_among(b for b in sw.betas if b >= CUSTOMARY_BETA)
    if below is None or above is None:
        side = "below" if below is None else "at or above"
        return Measurement.not_testable(f"no β {side} {CUSTOMARY_BETA:g} that is non-degenerate in every world seed")
    m = _pair(ev, s, below, above, d)
    best = "none" if sw.best_beta is None else f"{sw.best_beta:g}"
    return replace(m, shown=f"best β {best}; {m.shown}")


def _smaller_improves(ev, s, d):
    sw = ev["sweeps"][s]
    if len(sw.betas) < 3:
        return Measurement.not_testable(f"{len(sw.betas)} β values (needs 3)")
    top = max(sw.betas)
    below = sw.best_among(b for b in sw.betas if b < top)
    if below is None:
        return Measurement.not_testable(f"no β below {top:g} is non-degenerate in every world seed")
    return _pair(ev, s, below, top, d)


def _too_small_degrades(ev, s, d):
    sw = ev["sweeps"][s]
    if len(sw.betas) < 3:
        return Measurement.not_testable(f"{len(sw.betas)} β values (needs 3)")
    low = min(sw.betas)
    above = sw.best_among(b for b in sw.betas if b > low)
    if above is None:
        return Measurement.not_testable(f"no β above {low:g} is non-degenerate in every world seed")
    return _pair(ev, s, low, above, -d)


def _interior(ev, s, d):
    return combine({"smaller β improves": _smaller_improves(ev, s, d), "too small degrades": _too_small_degrades(ev, s, d)})


def _sensitive(ev, s, d):
    sw = ev["sweeps"][s]
    b = sw.best_beta
    if b is None:
        return Measurement.not_testable("every β degenerated in some world seed: no optimum")
    if b == min(sw.betas):
        return Measurement.not_testable(f"the best β ({b:g}) is the smallest tried: nothing below the optimum to test")
    if b == max(sw.betas):
        return Measurement.not_testable(f"the best β ({b:g}) is the largest tried: no optimum inside the grid, so a "
                                        "decline below it is not sensitivity below an optimum")
    below, above = max(x for x in sw.betas if x < b), min(x for x in sw.betas if x > b)
    return combine({"one step below loses": _pair(ev, s, below, b, -d),
                    "steeper below than above": _pair(ev, s, below, above, -d)})


def _beats_sft(ev, s, d):
    sw = ev["sweeps"][s]
    if sw.best_beta is None:
        return Measurement.not_testable("every β degenerated in some world seed: no best β")
    if not sw.sft:
        return Measurement.not_testable("no SFT row")
    return _pair(ev, s, sw.best_beta, SFT_BETA, d)


def _practice(ev, s, d):
    return combine({"a β below 0.1 wins": _best_small(ev, s, d), "too small degrades": _too_small_degrades(ev, s, d)})


def _rho(betas, values) -> float:
    """Spearman ρ(β, values); 0 for a constant (no trend); NaN with fewer than 3 finite values."""
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 3:
        return math.nan
    return 0.0 if len(set(finite)) == 1 else spearman(betas, values)


def _by_worlds(test: Callable[[dict], tuple[bool | None, str]]):
    """A criterion from a per-world test ``test(sweep of one world) -> (holds, shown)``; ``d = −1`` negates it."""
    def measure(ev, s, d):
        sw = ev["sweeps"][s]
        holds, shown = {}, []
        for w in sw.seeds:
            ok, txt = test(sw.world(w))
            holds[w] = None if ok is None else (ok if d > 0 else not ok)
            shown.append(f"world {w}: {txt}")
        return decide_by_worlds(holds, "; ".join(shown))
    return measure


def _trend(key: Callable[[Record], float], sign: int, what: str):
    def test(runs):
        rho = _rho(list(runs), [key(r) for r in runs.values()])
        if math.isnan(rho):
            return None, f"{what}: fewer than 3 values"
        return sign * rho >= rq1.RHO, f"ρ(β, {what}) = {rho:+.2f}"
    return _by_worlds(test)


def _eos_first(runs):
    if not runs:
        return None, "no run"
    b = min(runs)
    rank, n = eos_rank(runs[b])
    if n == 0:
        return None, f"β {b:g}: no frequent token"
    return rank == 1, f"β {b:g}: EOS rank {rank if rank is not None else '–'} of {n}"


def _eos_deeper(runs):
    if len(runs) < 3:
        return None, "fewer than 3 β"
    rho = _rho(list(runs), [eos_diff(r) for r in runs.values()])
    small = eos_diff(runs[min(runs)])
    if math.isnan(rho):
        return None, "EOS not found in enough runs"
    return rho >= rq1.RHO and small < 0, f"ρ(β, EOS Eq. 8) = {rho:+.2f}, {small:+.2f} nats at β {min(runs):g}"


def _token_extremes(runs):
    if not runs:
        return None, "no run"
    b = min(runs)
    extreme, ratio = imbalance(runs[b])
    if math.isnan(ratio):
        return None, f"β {b:g}: no token statistics"
    return (extreme <= EXTREME_NATS and ratio >= EXTREME_RATIO), f"β {b:g}: {extreme:+.2f} nats, {ratio:.1f}× the mean"


def _each_student(criterion):
    def measure(ev, d=1):
        if not ev["students"]:
            return Measurement.not_testable("no RQ1 records")
        return combine({student_label(s): criterion(ev, s, d) for s in ev["students"]})
    return measure


_PAIRED = ("paired per-prompt difference, 95% interval pooled over world seeds, every world the same sign; "
           "LC and gold both")

_PAPER = _paper_side()

#: Each claim as id, rq, claim, source, the paper's evidence, criterion, and its per-student measure.
_SPECS = (
    ("rq1.best-beta-small", "RQ1", "With the SFT model as reference, the optimal β is well below the customary 0.1",
     "§4, Table 1 (digest §1)", _PAPER["rq1.best-beta-small"],
     f"the best β below 0.1 beats the best β at or above 0.1 ({_PAIRED}); best β by records.best_record on LC pooled "
     "over world seeds, β = 1 and 10 included. Precondition: a non-degenerate β on each side", _best_small),
    ("rq1.interior-optimum", "RQ1",
     "A smaller β improves performance until it is too small, then performance degrades or degenerates",
     "§4, Table 1", _PAPER["rq1.interior-optimum"],
     f"the best β below the largest beats the largest, and the smallest β loses to the best above it ({_PAIRED}). "
     "Precondition: 3 β values", _interior),
    ("rq1.sensitive-below", "RQ1", "DPO is sensitive to β just below the optimum: one step lower degrades quickly",
     "§4, Table 1", _PAPER["rq1.sensitive-below"],
     f"one grid step below the best β loses to the best β and to one step above it ({_PAIRED}). Precondition: the "
     "best β is inside the grid (neither edge)", _sensitive),
    ("rq1.dpo-beats-sft", "RQ1", "DPO at its best β improves on the SFT model", "§4, Table 1",
     _PAPER["rq1.dpo-beats-sft"],
     f"the best β beats the SFT model ({_PAIRED}). Precondition: a best β and an SFT row", _beats_sft),
    ("rq1.policy-accuracy-rises", "RQ1", "The policy's ranking accuracy p_θ rises as β falls", "§4.1, Table 2",
     _PAPER["rq1.policy-accuracy-rises"],
     f"in every world seed Spearman ρ(β, p_θ accuracy) ≤ −{rq1.RHO} (one number per run: no interval)",
     _trend(lambda r: r.metrics.policy_accuracy, -1, "p_θ acc")),
    ("rq1.eos-most-down-weighted", "RQ1", "EOS is the most down-weighted token at small β", "§4.2, Figure 2 (digest §5)",
     "EOS first among tokens seen ≥ 100 times",
     "in every world seed EOS ranks first by average Eq. (8) among frequent tokens at the smallest β", _by_worlds(_eos_first)),
    ("rq1.eos-deeper-small-beta", "RQ1", "EOS is down-weighted more strongly the smaller β", "§4.2, Figure 2",
     "EOS bar deepest for β = 0.005, shallowest for 0.1 (values not recoverable)",
     f"in every world seed Spearman ρ(β, EOS average Eq. 8) ≥ {rq1.RHO} and EOS is down-weighted at the smallest β",
     _by_worlds(_eos_deeper)),
    ("rq1.longer-small-beta", "RQ1", "Smaller β makes outputs longer", "§4.2 (digest §5)",
     "stated, from the down-weighted EOS; no lengths given for RQ1",
     f"in every world seed Spearman ρ(β, mean output length) ≤ −{rq1.RHO} (one number per run: no interval)",
     _trend(lambda r: r.metrics.mean_length_tokens, -1, "length")),
    ("rq1.token-extremes", "RQ1", "A sequence-level KL constraint does not prevent extreme token-level differences",
     "§4.2, Figure 1 (digest §5)", "a small portion of tokens reaches differences down to −100",
     "in every world seed at the smallest β the most down-weighted frequent token loses ≥ 10× (Eq. 8 ≤ −ln 10) and "
     f"moves ≥ {EXTREME_RATIO:g}× as far as the occurrence-weighted mean token", _by_worlds(_token_extremes)),
    ("practice.smaller-beta", "Practice",
     "Best practice 1: with the SFT model as reference use a smaller, but sufficiently strong, KL constraint; tune it",
     "§1, §7 (digest §6)", _PAPER["practice.smaller-beta"],
     f"both: a β below 0.1 beats the best at or above 0.1, and the smallest β loses to the best above it ({_PAIRED})",
     _practice),
)

#: The ids of the RQ1 claims, in scorecard order.
CLAIM_IDS = tuple(spec[0] for spec in _SPECS)


def claims(flipped: Iterable[str] = ()) -> list[Claim]:
    """The RQ1 claims, each with its criterion; a claim id in ``flipped`` tests the opposite direction (for tests)."""
    return directed_claims([(*spec[:6], _each_student(spec[6])) for spec in _SPECS], flipped)


#: The RQ1 claims (digest §1 and best practice 1 of §6), each with our criterion.
CLAIMS = claims()


# --------------------------------------------------------------------------- sentences for the chapter


def best_betas_text(ev: dict) -> str:
    """The best β of each student, pooled over world seeds, as a phrase."""
    parts = []
    for s, sw in ev["sweeps"].items():
        b = sw.best_beta
        where = ("" if b is None else " (the largest β tried)" if b == max(sw.betas)
                 else " (the smallest β tried)" if b == min(sw.betas) else "")
        parts.append(f"{'none (every β degenerated in some world seed)' if b is None else f'{b:g}'}{where} "
                     f"for the {student_label(s)}")
    n = max((len(sw.seeds) for sw in ev["sweeps"].values()), default=0)
    return " and ".join(parts) + f" (LC pooled over {n} world seed{'s' * (n != 1)})"


def versus_sft_text(ev: dict) -> str:
    """One sentence per student: the best β against the SFT model, with the paired pooled intervals and verdict."""
    out = []
    for s in ev["students"]:
        m = _beats_sft(ev, s, 1)
        out.append(f"Against its SFT model the {student_label(s)}'s best β gives {m.shown} ({m.verdict}"
                   + (f": {m.note}" if m.note else "") + ").")
    return " ".join(out)


def _pair_lengths(record: Record) -> tuple[float, float]:
    lengths = record.metrics.pair_length_tokens or {}
    return float(lengths.get("chosen_mean", math.nan)), float(lengths.get("rejected_mean", math.nan))


def _curve_change(record: Record, key: str) -> float:
    rows = [c[key] for c in record.curves if key in c]
    return float(rows[-1] - rows[0]) if len(rows) >= 2 else math.nan


def _diagnostics(ev: dict, s: str, claim_id: str) -> str:
    """Numbers read from the student's records that bear on ``claim_id``; a sentence is added only when its condition
    is computed true."""
    d, sw, label = ev["per_student"][s], ev["sweeps"][s], student_label(s)
    if not d["betas"]:
        return f"the {label} has no DPO run"
    hi, lo = max(d["betas"]), min(d["betas"])
    small = rq1.sweep_records([r for rs in sw.runs.values() for r in rs.values()], s).get(lo)
    chosen, rejected = _pair_lengths(small) if small is not None else (math.nan, math.nan)
    lines = []
    if claim_id in ("rq1.best-beta-small", "rq1.interior-optimum", "rq1.sensitive-below", "rq1.dpo-beats-sft",
                    "practice.smaller-beta"):
        b = sw.best_beta
        if b is None:
            return f"every β of the {label} degenerated in some world seed"
        sft_lc = float(np.mean([r.metrics.lc_win_rate for r in sw.sft.values()])) if sw.sft else math.nan
        lines.append(f"the {label} is best at β {b:g} (LC {sw.pooled_lc[b]:.2f} pooled; SFT {sft_lc:.2f})")
        acc = d["reward_acc"].get(b, math.nan)
        if acc > 0.5:
            lines.append(f"there r_θ ranks {acc:.0%} of validation pairs correctly, so DPO did learn the preferences")
        if sw.pooled_lc[b] <= sft_lc:
            lines.append("yet no β raises the pooled LC above the SFT model's")
    elif claim_id == "rq1.policy-accuracy-rises":
        lines.append(f"the {label}'s p_θ accuracy is {d['policy_acc'][hi]:.3f} at β {hi:g} and {d['policy_acc'][lo]:.3f} "
                     f"at β {lo:g}; r_θ's {d['reward_acc'][hi]:.3f} and {d['reward_acc'][lo]:.3f}; training r_θ "
                     f"accuracy at the end {d['train_acc'][hi]:.2f} and {d['train_acc'][lo]:.2f}")
        gap = d["train_acc"][lo] - d["reward_acc"][lo]
        if gap >= 0.1:
            lines.append(f"at β {lo:g} training accuracy exceeds validation accuracy by {gap:.2f}: the policy fits its "
                         "training pairs better than it ranks new ones")
        dc, dr = (_curve_change(small, k) for k in ("logps/chosen", "logps/rejected")) if small else (math.nan,) * 2
        if dc < 0 and dr < 0:
            lines.append(f"over training at β {lo:g} both responses' log-probabilities fell (chosen {dc:+.1f}, "
                         f"rejected {dr:+.1f} nats)")
    elif claim_id in ("rq1.eos-most-down-weighted", "rq1.eos-deeper-small-beta", "rq1.longer-small-beta"):
        rank, n = d["eos_rank"][lo]
        lines.append(f"at β {lo:g} the {label}'s EOS ranks {rank if rank is not None else '–'} of {n} frequent tokens "
                     f"({d['eos_diff'][lo]:+.2f} nats; the most down-weighted {d['extreme'][lo]:+.2f}); mean output "
                     f"length {d['length'][hi]:.1f} tokens at β {hi:g}, {d['length'][lo]:.1f} at β {lo:g}, "
                     f"SFT {d['sft_length']:.1f}")
        if chosen <= rejected:
            lines.append(f"its chosen validation answers are not longer than the rejected ones ({chosen:.1f} vs "
                         f"{rejected:.1f} tokens), so the preferences do not reward stopping later, the paper's "
                         "reason for EOS to be pushed down")
        elif chosen > rejected:
            lines.append(f"its chosen validation answers are longer than the rejected ones ({chosen:.1f} vs "
                         f"{rejected:.1f} tokens)")
    elif claim_id == "rq1.token-extremes":
        lines.append(f"at β {lo:g} the {label}'s most down-weighted frequent token moves {d['extreme'][lo]:+.2f} nats, "
                     f"{d['ratio'][lo]:.1f}× the occurrence-weighted mean change, over {d['eos_rank'][lo][1]} "
                     "frequent tokens")
    return ", ".join(lines)


def likely_reason(claim_id: str, ev: dict) -> str:
    """What the records show that bears on a claim we disagree with, every number read from ``ev`` (one paragraph).

    No mechanism is asserted that the records do not show: an interpretive clause appears only when
    the condition it rests on is computed true (e.g. the chosen answers are not longer than the rejected).
    """
    lines = [x for x in (_diagnostics(ev, s, claim_id) for s in ev["students"]) if x]
    return ("; ".join(lines) + ".") if lines else ""


def reasons(card: pd.DataFrame, ev: dict) -> str:
    """Markdown: for every claim we disagree with, the claim and :func:`~dpolib.chapters.rq1_claims.likely_reason` (empty if none)."""
    out, seen = [], {}
    for _, row in card[card["verdict"] == DISAGREES].iterrows():
        why = likely_reason(row["id"], ev)
        if why in seen:
            why = f"the same diagnostics as for `{seen[why]}`."
        else:
            seen[why] = row["id"]
        out.append(f"- **{row['claim']}** (`{row['id']}`): {why}")
    return "\n".join(out)
