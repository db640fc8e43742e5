"""Findings scorecards: each of the paper's claims, the criterion we test it with, our value, a computed verdict.

A :class:`Claim` pairs a paper claim (paraphrased, with where the paper makes it)
with a *criterion*: a function of our evidence (records, tables, anything the
chapter computed) that returns a :class:`Measurement`, the value we measured and
whether it meets the criterion. :func:`~dpolib.scorecard.scorecard` evaluates a list of claims and
returns one row each. Verdicts are computed, never typed: a chapter that wants to
say "our run agrees" reads it from the scorecard.

**The verdict rule.** A criterion ends in one of four outcomes (:data:`~dpolib.scorecard.OUTCOMES`):

* **agrees**: the 95% interval of the measured difference excludes zero in the direction the
  paper claims, and the direction holds in every world seed that has its own estimate;
* **disagrees**: the interval excludes zero in the opposite direction;
* **inconclusive**: anything else (the interval contains zero, or the worlds disagree);
* **not testable**: a stated precondition failed (say which), e.g. the best β sits at the edge
  of the grid so there is nothing "below the optimum" to test.

:func:`~dpolib.scorecard.decide` applies the rule to an :class:`~dpolib.stats.Interval` (a :class:`~dpolib.scorecard.Measurement`
then shows ``"+1.23 [+0.41, +2.05]"``); :func:`~dpolib.scorecard.decide_by_worlds` applies it where a record holds
no per-prompt values, so there is no interval and only the world seeds can agree; :meth:`~dpolib.scorecard.Measurement.not_testable`
names the failed precondition; :func:`~dpolib.scorecard.combine` joins parts (several students, two metrics)
into one outcome, a conjunction (any part that disagrees refutes it).

Chapters still on the older API build ``Measurement(value, agrees, shown, note)`` (``agrees``
True / False) and ``Measurement.missing(reason)``, whose verdict reads "not tested" (:data:`~dpolib.scorecard.NOT_TESTED`,
evidence absent); :func:`~dpolib.scorecard.verdict_counts`, :func:`~dpolib.scorecard.side_by_side` and :func:`~dpolib.scorecard.style` know every outcome.
A criterion that raises is a bug and is not swallowed.

Example::

    claim = Claim(
        "rq1.dpo-beats-sft", "RQ1", "DPO at its best beta improves on the SFT model",
        source="§4, Table 1", paper_value="quoted from dpolib.paper",
        criterion="LC(best beta) - LC(SFT) > 0: paired 95% interval, pooled over world seeds",
        measure=lambda ev: decide(ev["best_minus_sft"], +1),
    )
    scorecard([claim], {"best_minus_sft": Interval(1.2, 0.4, 2.0, n=2000)})  # agrees, shown "+1.20 [+0.40, +2.00]"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from .stats import Interval

__all__ = [
    "Measurement", "Claim", "directed_claims", "scorecard", "verdict_counts", "side_by_side", "style", "decide", "decide_by_worlds",
    "combine", "AGREES", "DISAGREES", "INCONCLUSIVE", "NOT_TESTABLE", "NOT_TESTED", "OUTCOMES", "VERDICTS",
]  # fmt: skip

#: The interval excludes zero in the claimed direction, and every world seed has that direction.
AGREES = "agrees"
#: The interval excludes zero against the claimed direction.
DISAGREES = "disagrees"
#: The interval cannot tell (it contains zero, or the world seeds point different ways).
INCONCLUSIVE = "inconclusive"
#: A stated precondition of the criterion failed; the note says which.
NOT_TESTABLE = "not testable"
#: The older API's verdict for absent evidence (``Measurement.missing``), kept for chapters not yet migrated.
NOT_TESTED = "not tested"
#: The four outcomes of the verdict rule.
OUTCOMES = (AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE)
#: Every verdict a scorecard row can carry (the four outcomes and the older "not tested").
VERDICTS = (*OUTCOMES, NOT_TESTED)


@dataclass(frozen=True)
class Measurement:
    """What a criterion measured.

    Attributes:
        value: the measured quantity (a number, a tuple, the parts of :func:`~dpolib.scorecard.combine`), kept for programmatic use.
        agrees: the older API's verdict, whether our value meets the criterion (``None``: not tested); ignored when
            ``outcome`` is given.
        shown: how the value reads in the table (default: the interval's ``"+1.23 [+0.41, +2.05]"``, else ``str(value)``).
        note: a short qualifier (e.g. which precondition failed).
        outcome: one of :data:`~dpolib.scorecard.OUTCOMES` (the verdict rule's result); empty for the older API.
        interval: the estimate with its 95% interval, when the criterion has one.
    """

    value: Any
    agrees: bool | None = None
    shown: str = ""
    note: str = ""
    outcome: str = ""
    interval: Interval | None = None

    def __post_init__(self):
        if self.outcome and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if not self.shown and self.interval is not None:
            object.__setattr__(self, "shown", self.interval.format())

    @classmethod
    def missing(cls, reason: str) -> "Measurement":
        """The evidence for the criterion is absent (say why); the older API's "not tested"."""
        return cls(None, None, "n/a", reason)

    @classmethod
    def not_testable(cls, reason: str, value: Any = None, shown: str = "n/a") -> "Measurement":
        """A stated precondition of the criterion failed: ``reason`` says which (it becomes the note)."""
        return cls(value, None, shown, reason, NOT_TESTABLE)

    @property
    def verdict(self) -> str:
        """The outcome; for the older API, agrees / disagrees / not tested from :attr:`~dpolib.scorecard.Measurement.agrees`."""
        if self.outcome:
            return self.outcome
        if self.agrees is None:
            return NOT_TESTED
        return AGREES if self.agrees else DISAGREES


def _sign(x: float) -> int:
    return 1 if x > 0 else -1 if x < 0 else 0


def decide(interval: Interval, direction: int, per_world: Mapping[Any, Interval] | Iterable[Interval] = (),
           shown: str = "", note: str = "", value: Any = None, digits: int = 2) -> Measurement:
    """The verdict rule for a directional claim about a difference, from its 95% interval.

    ``direction`` is +1 when the paper claims the difference is positive, −1 when negative.
    **agrees** when ``interval`` excludes zero on the side of ``direction`` and every per-world
    estimate in ``per_world`` (interval by world seed, or a plain list) has that sign; **disagrees**
    when ``interval`` excludes zero on the other side; **inconclusive** otherwise. The measurement
    keeps ``interval`` and shows it (``shown`` overrides); a world that breaks ranks is named in the note.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    worlds = dict(per_world) if isinstance(per_world, Mapping) else dict(enumerate(per_world))
    against = [w for w, iv in worlds.items() if _sign(iv.estimate) != direction]
    if interval.sign == direction and not against:
        outcome = AGREES
    elif interval.sign == -direction:
        outcome = DISAGREES
    else:
        outcome = INCONCLUSIVE
    notes = [note] if note else []
    if interval.sign == direction and against:
        notes.append(f"world seed{'s' * (len(against) > 1)} {', '.join(map(str, against))} point the other way")
    elif interval.sign == 0:
        notes.append("the 95% interval contains zero")
    return Measurement(interval.estimate if value is None else value, None, shown or interval.format(digits),
                       "; ".join(notes), outcome, interval)


def decide_by_worlds(holds: Mapping[Any, bool | None], shown: str = "", note: str = "", value: Any = None) -> Measurement:
    """The verdict rule where there is no interval (a record keeps one number per run, not per prompt).

    ``holds`` maps each world seed to whether the claimed direction holds there (``None``: the
    world cannot say). **agrees** when it holds in every world, **disagrees** when it fails in
    every world, **inconclusive** when the worlds differ; **not testable** with no world, or a world
    that cannot say.
    """
    if not holds:
        return Measurement.not_testable("no world seed has this evidence", value, shown or "n/a")
    silent = [w for w, h in holds.items() if h is None]
    if silent:
        return Measurement.not_testable(
            "; ".join(x for x in (note, f"world seed(s) {', '.join(map(str, silent))} cannot say") if x),
            value, shown or "n/a")
    n_hold = sum(bool(h) for h in holds.values())
    outcome = AGREES if n_hold == len(holds) else DISAGREES if n_hold == 0 else INCONCLUSIVE
    extra = "" if outcome != INCONCLUSIVE else f"holds in {n_hold} of {len(holds)} world seeds"
    return Measurement(dict(holds) if value is None else value, None, shown, "; ".join(x for x in (note, extra) if x),
                       outcome)


def combine(parts: Mapping[str, Measurement], note: str = "") -> Measurement:
    """Parts of one claim (each student, each metric) as one outcome: the claim is their conjunction.

    **disagrees** when any part disagrees; else **not testable** when any part is (or is "not tested");
    else **inconclusive** when any part is; else **agrees**. Shown: ``"<part>: <shown>; ..."``; the note
    collects the notes of the parts that do not agree. Not testable without parts.
    """
    if not parts:
        return Measurement.not_testable(note or "no evidence to test")
    verdicts = {k: m.verdict for k, m in parts.items()}
    for outcome in (DISAGREES, NOT_TESTABLE, INCONCLUSIVE, AGREES):
        if outcome in verdicts.values() or (outcome == NOT_TESTABLE and NOT_TESTED in verdicts.values()):
            break
    shown = "; ".join(f"{k}: {m.shown}" for k, m in parts.items())
    notes = [note] if note else []
    notes += [f"{k}: {m.note}" for k, m in parts.items() if m.note and m.verdict != AGREES]
    return Measurement(dict(parts), None, shown, "; ".join(notes), outcome)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how we test it.

    Attributes:
        id: a stable identifier, ``"<rq>.<slug>"`` (e.g. ``"rq1.eos-most-down-weighted"``).
        rq: the research question or section it belongs to (``"RQ1"``, ``"RQ2"``, ``"RQ3"``, ``"App. E"``, ``"Practice"``).
        claim: the paper's claim, paraphrased.
        source: where the paper makes it (section, table or figure; digest section).
        paper_value: the paper's own evidence, quoted from the digest (labelled as the paper's in the table).
        criterion: the test we apply to our runs, in words.
        measure: ``evidence -> Measurement``.
    """

    id: str
    rq: str
    claim: str
    source: str
    paper_value: str
    criterion: str
    measure: Callable[[Any], Measurement]

    def __post_init__(self):
        if not self.id or "." not in self.id:
            raise ValueError(f"claim id {self.id!r} must look like '<rq>.<slug>'")
        if not callable(self.measure):
            raise TypeError(f"claim {self.id}: measure must be callable, got {type(self.measure).__name__}")

    def evaluate(self, evidence: Any) -> Measurement:
        m = self.measure(evidence)
        if not isinstance(m, Measurement):
            raise TypeError(f"claim {self.id}: measure returned {type(m).__name__}, expected Measurement")
        return m


def directed_claims(specs: Iterable[tuple], flipped: Iterable[str] = ()) -> list[Claim]:
    """Claims from ``(id, rq, claim, source, paper_value, criterion, measure)`` specs, where
    ``measure(evidence, direction)`` tests the claimed direction at ``+1`` and the opposite at ``-1``.

    An id in ``flipped`` is tested in the opposite direction: the tests use it to show that each
    criterion can fail. Raises ``ValueError`` naming any id of ``flipped`` that no spec has.
    """
    specs, flipped = list(specs), set(flipped)
    unknown = flipped - {spec[0] for spec in specs}
    if unknown:
        raise ValueError(f"unknown claim ids: {sorted(unknown)}")
    return [Claim(cid, rq, text, source, paper_value, criterion,
                  lambda ev, m=measure, d=(-1 if cid in flipped else 1): m(ev, d))
            for cid, rq, text, source, paper_value, criterion, measure in specs]


def scorecard(claims: Iterable[Claim], evidence: Any) -> pd.DataFrame:
    """Evaluate ``claims`` on ``evidence``; one row per claim.

    Columns: ``id``, ``rq``, ``claim``, ``source``, ``paper`` (the paper's evidence),
    ``criterion``, ``ours`` (our measured value as shown), ``verdict`` (one of :data:`~dpolib.scorecard.VERDICTS`),
    ``note``; the raw measured value is in ``attrs["values"]`` and the interval (or ``None``) in ``attrs["intervals"]``.
    """
    claims = list(claims)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    rows, values, intervals = [], {}, {}
    for c in claims:
        m = c.evaluate(evidence)
        values[c.id] = m.value
        intervals[c.id] = m.interval
        rows.append(
            {
                "id": c.id,
                "rq": c.rq,
                "claim": c.claim,
                "source": c.source,
                "paper": c.paper_value,
                "criterion": c.criterion,
                "ours": m.shown or ("n/a" if m.value is None else str(m.value)),
                "verdict": m.verdict,
                "note": m.note,
            }
        )
    df = pd.DataFrame(rows, columns=["id", "rq", "claim", "source", "paper", "criterion", "ours", "verdict", "note"])
    df.attrs["values"] = values
    df.attrs["intervals"] = intervals
    return df


def verdict_counts(card: pd.DataFrame) -> dict[str, int]:
    """The number of rows with each verdict, every key of :data:`~dpolib.scorecard.VERDICTS` always present (zero when absent)."""
    counts = card["verdict"].value_counts().to_dict() if len(card) else {}
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def side_by_side(cards: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The verdicts of the same claims under several settings, one column per setting.

    ``cards`` maps a setting's label (e.g. ``"lr 2.5e-05"``) to its scorecard; rows follow the
    first card's claims (a claim missing from a card reads "not tested"). Columns: ``rq``,
    ``claim``, then per setting ``<label>`` (the verdict) and ``<label>: ours`` (the value).
    """
    if not cards:
        raise ValueError("no scorecards to compare")
    first = next(iter(cards.values()))
    out = first.loc[:, ["id", "rq", "claim"]].copy()
    for label, card in cards.items():
        by_id = card.set_index("id")
        out[label] = [by_id["verdict"].get(i, NOT_TESTED) for i in out["id"]]
        out[f"{label}: ours"] = [by_id["ours"].get(i, "n/a") for i in out["id"]]
    return out.drop(columns="id")


_VERDICT_COLOURS = {AGREES: "#d9f0d3", DISAGREES: "#f6d0d0", INCONCLUSIVE: "#fbefc4", NOT_TESTABLE: "#dde4f0",
                    NOT_TESTED: "#eeeeee"}


def style(card: pd.DataFrame, columns: tuple[str, ...] = ("rq", "claim", "paper", "criterion", "ours", "verdict", "note")):
    """A pandas Styler of the scorecard for the book: verdict cells coloured, index hidden.

    The ``paper`` column header reads "paper (quoted)" so the paper's numbers are labelled as the paper's.
    """
    shown = card.loc[:, list(columns)].rename(columns={"paper": "paper (quoted)", "ours": "ours (measured)"})
    return (
        shown.style.hide(axis="index")
        .map(lambda v: f"background-color: {_VERDICT_COLOURS.get(v, '')}", subset=["verdict"])
        .set_properties(**{"text-align": "left", "vertical-align": "top"})
    )
