"""Findings scorecards: each of the paper's claims, the criterion we test it with, our value, a computed verdict.

A :class:`Claim` pairs a paper claim (paraphrased, with where the paper makes it)
with a *criterion*: a function of our evidence (records, tables, anything the
chapter computed) that returns a :class:`Measurement`, the value we measured and
whether it meets the criterion. :func:`scorecard` evaluates a list of claims and
returns one row each. Verdicts are computed, never typed: a chapter that wants to
say "our run agrees" reads it from the scorecard.

A criterion may find the evidence missing (e.g. a grid not run at this profile);
it then returns ``Measurement.missing(reason)`` and the verdict is "not tested".
A criterion that raises is a bug and is not swallowed.

Example::

    claim = Claim(
        "rq1.best-beta-small", "RQ1", "The best beta is well below the customary 0.1",
        source="§1, Table 1", paper_value="0.01 (mistral-7b), 0.02 (tulu-2-7b)",
        criterion="best beta by LC win rate < 0.1 for every student",
        measure=lambda ev: Measurement(ev["best_beta"], ev["best_beta"] < 0.1, f"{ev['best_beta']:g}"),
    )
    scorecard([claim], {"best_beta": 0.02})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pandas as pd

__all__ = [
    "Measurement", "Claim", "scorecard", "verdict_counts", "side_by_side", "AGREES", "DISAGREES", "NOT_TESTED", "style",
]  # fmt: skip

AGREES = "agrees"
DISAGREES = "disagrees"
NOT_TESTED = "not tested"


@dataclass(frozen=True)
class Measurement:
    """What a criterion measured.

    Attributes:
        value: the measured quantity (a number, a tuple, ...), kept for programmatic use.
        agrees: whether our value meets the criterion; ``None`` when it could not be tested.
        shown: how the value reads in the table (default ``str(value)``).
        note: a short qualifier (e.g. "difference within the seed spread").
    """

    value: Any
    agrees: bool | None
    shown: str = ""
    note: str = ""

    @classmethod
    def missing(cls, reason: str) -> "Measurement":
        """The evidence for the criterion is absent (say why)."""
        return cls(None, None, "n/a", reason)

    @property
    def verdict(self) -> str:
        if self.agrees is None:
            return NOT_TESTED
        return AGREES if self.agrees else DISAGREES


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


def scorecard(claims: Iterable[Claim], evidence: Any) -> pd.DataFrame:
    """Evaluate ``claims`` on ``evidence``; one row per claim.

    Columns: ``id``, ``rq``, ``claim``, ``source``, ``paper`` (the paper's evidence),
    ``criterion``, ``ours`` (our measured value as shown), ``verdict`` (agrees /
    disagrees / not tested), ``note``; the raw measured value is in ``attrs["values"]``.
    """
    claims = list(claims)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    rows, values = [], {}
    for c in claims:
        m = c.evaluate(evidence)
        values[c.id] = m.value
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
    return df


def verdict_counts(card: pd.DataFrame) -> dict[str, int]:
    """``{"agrees": n, "disagrees": n, "not tested": n}`` for a scorecard (all three keys always present)."""
    counts = card["verdict"].value_counts().to_dict() if len(card) else {}
    return {v: int(counts.get(v, 0)) for v in (AGREES, DISAGREES, NOT_TESTED)}


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


_VERDICT_COLOURS = {AGREES: "#d9f0d3", DISAGREES: "#f6d0d0", NOT_TESTED: "#eeeeee"}


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
