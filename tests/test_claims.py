"""The book's verdict rule (dpolib.scorecard): agrees / disagrees / inconclusive / not testable, and the older API beside it."""

import pytest

from dpolib.scorecard import (AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTED, OUTCOMES, Claim, Measurement,
                              combine, decide, decide_by_worlds, scorecard, side_by_side, style, verdict_counts)
from dpolib.stats import Interval


def iv(estimate, low, high):
    return Interval(estimate, low, high, n=100)


ABOVE, BELOW, STRADDLES = iv(1.23, 0.41, 2.05), iv(-1.0, -1.8, -0.2), iv(0.3, -0.2, 0.8)


@pytest.mark.parametrize("direction", [1, -1])
def test_decide_agrees_only_in_the_claimed_direction(direction):
    claimed, opposite = (ABOVE, BELOW) if direction == 1 else (BELOW, ABOVE)
    assert decide(claimed, direction).verdict == AGREES
    assert decide(opposite, direction).verdict == DISAGREES
    assert decide(STRADDLES, direction).verdict == INCONCLUSIVE


def test_decide_needs_every_world_for_agreement():
    worlds = {0: iv(1.0, 0.1, 2.0), 1: iv(2.0, 1.0, 3.0), 2: iv(-0.1, -0.9, 0.7)}
    m = decide(ABOVE, 1, worlds)
    assert m.verdict == INCONCLUSIVE and "world seed 2" in m.note
    assert decide(ABOVE, 1, {0: iv(1.0, 0.1, 2.0), 1: iv(0.2, -0.5, 0.9)}).verdict == AGREES  # sign, not resolution
    assert decide(BELOW, 1, worlds).verdict == DISAGREES  # the pooled interval against the claim
    assert decide(ABOVE, 1, [iv(1.0, 0.1, 2.0), iv(-1.0, -2.0, 0.5)]).verdict == INCONCLUSIVE  # a plain list works
    with pytest.raises(ValueError):
        decide(ABOVE, 0)


def test_measurement_shows_estimate_and_interval():
    m = decide(ABOVE, 1)
    assert m.shown == "+1.23 [+0.41, +2.05]" and m.interval == ABOVE and m.value == pytest.approx(1.23)
    assert Measurement(1.0, interval=ABOVE).shown == "+1.23 [+0.41, +2.05]"
    with pytest.raises(ValueError):
        Measurement(1.0, outcome="maybe")


def test_not_testable_names_its_precondition():
    m = Measurement.not_testable("the best β is at the grid's edge")
    assert m.verdict == NOT_TESTABLE and m.note == "the best β is at the grid's edge" and m.shown == "n/a"


def test_decide_by_worlds():
    assert decide_by_worlds({0: True, 1: True}).verdict == AGREES
    assert decide_by_worlds({0: False, 1: False}).verdict == DISAGREES
    assert decide_by_worlds({0: True, 1: False}).verdict == INCONCLUSIVE
    assert decide_by_worlds({0: True, 1: None}).verdict == NOT_TESTABLE
    assert decide_by_worlds({}).verdict == NOT_TESTABLE


def test_combine_is_a_conjunction():
    agree, disagree, unsure = decide(ABOVE, 1), decide(BELOW, 1), decide(STRADDLES, 1)
    untestable = Measurement.not_testable("edge")
    assert combine({"a": agree, "b": agree}).verdict == AGREES
    assert combine({"a": agree, "b": disagree, "c": untestable}).verdict == DISAGREES
    assert combine({"a": agree, "b": unsure, "c": untestable}).verdict == NOT_TESTABLE
    assert combine({"a": agree, "b": Measurement.missing("absent")}).verdict == NOT_TESTABLE
    assert combine({"a": agree, "b": unsure}).verdict == INCONCLUSIVE
    assert combine({}).verdict == NOT_TESTABLE
    m = combine({"LC": agree, "gold": untestable})
    assert m.shown == "LC: +1.23 [+0.41, +2.05]; gold: n/a" and "gold: edge" in m.note


def claim(cid, measure):
    return Claim(cid, "RQ1", "c", "s", "p", "crit", measure)


def test_scorecard_counts_and_styles_every_outcome():
    cards = [claim("rq1.a", lambda ev: decide(ABOVE, 1)), claim("rq1.b", lambda ev: decide(BELOW, 1)),
             claim("rq1.c", lambda ev: decide(STRADDLES, 1)), claim("rq1.d", lambda ev: Measurement.not_testable("x")),
             claim("rq1.e", lambda ev: Measurement.missing("y")), claim("rq1.f", lambda ev: Measurement(1, True))]
    card = scorecard(cards, {})
    assert list(card["verdict"]) == [*OUTCOMES, NOT_TESTED, AGREES]
    assert verdict_counts(card) == {AGREES: 2, DISAGREES: 1, INCONCLUSIVE: 1, NOT_TESTABLE: 1, NOT_TESTED: 1}
    assert card.attrs["intervals"]["rq1.a"] == ABOVE and card.attrs["intervals"]["rq1.f"] is None
    assert card.loc[0, "ours"] == "+1.23 [+0.41, +2.05]"
    html = style(card).to_html()
    assert "#fbefc4" in html and "#dde4f0" in html  # inconclusive and not testable have their colours
    both = side_by_side({"one": card, "two": card.iloc[:2]})
    assert list(both["two"]) == [AGREES, DISAGREES, NOT_TESTED, NOT_TESTED, NOT_TESTED, NOT_TESTED]
