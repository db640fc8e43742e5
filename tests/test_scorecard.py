"""Findings scorecards: verdicts are computed from the evidence, missing evidence is 'not tested', bad claims fail loudly."""

import pytest

from dpolib.scorecard import (AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTED, Claim, Measurement, scorecard,
                              side_by_side, style, verdict_counts)


def _best_beta_claim():
    def measure(ev):
        if "best_beta" not in ev:
            return Measurement.missing("no RQ1 grid at this profile")
        return Measurement(ev["best_beta"], ev["best_beta"] < 0.1, f"{ev['best_beta']:g}")

    return Claim(
        "rq1.best-beta-small", "RQ1", "The best beta is well below 0.1", source="§1, Table 1",
        paper_value="0.01 (mistral-7b)", criterion="best beta < 0.1", measure=measure,
    )  # fmt: skip


def test_verdict_follows_the_evidence():
    claim = _best_beta_claim()
    agree = scorecard([claim], {"best_beta": 0.02})
    disagree = scorecard([claim], {"best_beta": 0.1})
    missing = scorecard([claim], {})
    assert agree.loc[0, "verdict"] == AGREES and agree.loc[0, "ours"] == "0.02"
    assert disagree.loc[0, "verdict"] == DISAGREES
    assert missing.loc[0, "verdict"] == NOT_TESTED and missing.loc[0, "note"] == "no RQ1 grid at this profile"
    assert agree.attrs["values"] == {"rq1.best-beta-small": 0.02}
    assert verdict_counts(agree) == {AGREES: 1, DISAGREES: 0, INCONCLUSIVE: 0, NOT_TESTABLE: 0, NOT_TESTED: 0}
    assert verdict_counts(scorecard([], {})) == dict.fromkeys((AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTED), 0)


def test_bad_claims_fail_loudly():
    with pytest.raises(ValueError, match="<rq>.<slug>"):
        Claim("nodot", "RQ1", "c", "s", "p", "crit", lambda ev: Measurement(1, True))
    with pytest.raises(TypeError, match="callable"):
        Claim("rq1.x", "RQ1", "c", "s", "p", "crit", measure=3)
    returns_bool = Claim("rq1.x", "RQ1", "c", "s", "p", "crit", lambda ev: True)
    with pytest.raises(TypeError, match="expected Measurement"):
        scorecard([returns_bool], {})
    with pytest.raises(ValueError, match="duplicate"):
        scorecard([_best_beta_claim(), _best_beta_claim()], {"best_beta": 0.02})
    raises = Claim("rq1.y", "RQ1", "c", "s", "p", "crit", lambda ev: ev["absent"])
    with pytest.raises(KeyError):  # a criterion that crashes is a bug, never a silent "not tested"
        scorecard([raises], {})


def test_style_labels_the_paper_column():
    html = style(scorecard([_best_beta_claim()], {"best_beta": 0.02})).to_html()
    assert "paper (quoted)" in html and "ours (measured)" in html and AGREES in html


def test_side_by_side_lines_up_verdicts_per_setting():
    claim = _best_beta_claim()
    other = Claim("rq1.other", "RQ1", "c2", "s", "p", "crit", lambda ev: Measurement(1, ev.get("flag")))
    a = scorecard([claim, other], {"best_beta": 0.02, "flag": True})
    b = scorecard([claim], {"best_beta": 0.5})
    both = side_by_side({"main": a, "low lr": b})
    assert list(both["claim"]) == ["The best beta is well below 0.1", "c2"]
    assert list(both["main"]) == [AGREES, AGREES]
    assert list(both["low lr"]) == [DISAGREES, NOT_TESTED]  # a claim the second card lacks is "not tested"
    assert list(both["low lr: ours"]) == ["0.5", "n/a"]
    with pytest.raises(ValueError):
        side_by_side({})
