"""The exact world's verdicts (dpolib.chapters.exact): every one computed, with ties inside a stated tolerance.

Each verdict function gets an input that agrees with its claim, one that disagrees and one
within the tolerance that must be a tie, so every criterion can fail. The sentences are built
from the numbers, so changing a number changes the sentence. The tolerance's reason (the
β grid's resolution) is checked on the book's record.
"""

from __future__ import annotations

import copy
import math

import pytest

from dpolib import paper
from dpolib.chapters import exact
from dpolib.experiments.exact_records import ExactConfig

TOL = exact.TIE_TOLERANCE


@pytest.fixture(scope="module")
def book():
    return exact.evidence()


def test_decide_splits_margins_into_holds_ties_and_fails():
    assert exact.decide(0.03, 0.02) == exact.HOLDS
    assert exact.decide(-0.03, 0.02) == exact.FAILS
    assert [exact.decide(m, 0.02) for m in (0.02, -0.02, 0.0, 1e-4)] == [exact.TIE] * 4


def test_above_verdict_holds_fails_and_ties():
    agree = exact.above_verdict("a > b", "A's best", 4.2, "B's", 4.0, "paper says so")
    assert agree.outcome == exact.HOLDS and agree.margin == pytest.approx(0.2)
    assert agree.sentence == "A's best (4.200) is above B's (4.000) by 0.200. As in the paper: paper says so."
    disagree = exact.above_verdict("a > b", "A's best", 3.9, "B's", 4.0, "paper says so")
    assert disagree.outcome == exact.FAILS
    assert "is below B's (4.000) by 0.100" in disagree.sentence and "Unlike the paper" in disagree.sentence
    # the case: +0.0001 is not a win
    tie = exact.above_verdict("a > b", "A's best", 4.0001, "B's", 4.0, "paper says so")
    assert tie.outcome == exact.TIE and tie.tolerance == TOL
    assert "ties with B's" in tie.sentence and f"within the tolerance of {TOL:g}" in tie.sentence
    assert "The paper found a clear difference" in tie.sentence
    assert exact.above_verdict("a > b", "A", 4.0 + TOL / 2, "B", 4.0).outcome == exact.TIE
    assert exact.above_verdict("a > b", "A", 4.0 - TOL / 2, "B", 4.0).outcome == exact.TIE


def test_above_verdict_says_what_each_outcome_means():
    meaning = {exact.HOLDS: "It hurt.", exact.FAILS: "It helped.", exact.TIE: "No difference."}
    sentences = [exact.above_verdict("c", "C", c, "I", 1.0, meaning=meaning).sentence for c in (1.5, 0.5, 1.001)]
    assert [s.split(". ")[-1] for s in sentences] == ["It hurt.", "It helped.", "No difference."]


def test_larger_beta_verdict_holds_fails_and_ties():
    agree = exact.larger_beta_verdict("larger", "The compatible reference", 1.0, "the self-reference", 0.01, "paper")
    assert agree.outcome == exact.HOLDS and agree.margin == pytest.approx(2.0)
    assert "at a larger β than the self-reference (β = 1 against β = 0.01)" in agree.sentence
    disagree = exact.larger_beta_verdict("larger", "The compatible reference", 0.01, "the self-reference", 1.0)
    assert disagree.outcome == exact.FAILS and "at a smaller β" in disagree.sentence
    tie = exact.larger_beta_verdict("larger", "The compatible reference", 0.1 * 1.01, "the self-reference", 0.1)
    assert tie.outcome == exact.TIE and "at the same β as the self-reference" in tie.sentence


def test_the_beta_tolerance_is_under_half_a_step_of_both_grids():
    config = ExactConfig()
    decades = math.log10(config.beta_high / config.beta_low)
    for n in (config.n_betas, config.robustness_betas):
        assert exact.BETA_TOLERANCE_DECADES < 0.5 * decades / (n - 1)


def test_interior_optimum_verdict_holds_fails_and_ties():
    def verdict(first, last):
        return exact.interior_optimum_verdict("interior", "the curve", 1.0, 0.03, first, last, 0.001, 100.0, "paper")

    agree = verdict(0.5, 0.2)
    assert agree.outcome == exact.HOLDS and agree.margin == pytest.approx(0.5 - exact.INTERIOR_DROP)
    assert agree.sentence.startswith("The curve has an interior optimum: it peaks at β = 0.03 (1.000) and loses 0.500")
    disagree = verdict(1.0, 0.2)  # best at the small end: no drop there
    assert disagree.outcome == exact.FAILS and "has no interior optimum" in disagree.sentence
    tie = verdict(1.0 - exact.INTERIOR_DROP - TOL / 2, 0.2)  # a drop just above the threshold, within the tolerance
    assert tie.outcome == exact.TIE and "undecided" in tie.sentence


def test_closed_form_verdict_holds_fails_and_ties():
    betas = [0.001, 0.1, 10.0]
    agree = exact.closed_form_verdict(betas, [5.0, 4.0, 3.0])
    assert agree.outcome == exact.HOLDS and "rises as β → 0, monotonically, from 3.000 at β = 10 to 5.000" in agree.sentence
    assert "not monotonically" in exact.closed_form_verdict(betas, [5.0, 2.0, 3.0]).sentence
    disagree = exact.closed_form_verdict(betas, [3.0, 4.0, 5.0])
    assert disagree.outcome == exact.FAILS and "falls as β → 0" in disagree.sentence
    tie = exact.closed_form_verdict(betas, [3.0 + TOL / 2, 3.0, 3.0])
    assert tie.outcome == exact.TIE and "flat" in tie.sentence


def test_kappa_verdict_holds_fails_and_ties():
    agree = exact.kappa_verdict([-3.0, 3.0], [4.3, 4.4], 4.1)
    assert agree.outcome == exact.HOLDS and agree.margin == pytest.approx(0.2)
    assert "No tilt hurts" in agree.sentence and "κ = -3 reaches 4.300 (+0.200)" in agree.sentence
    disagree = exact.kappa_verdict([-3.0, 3.0], [4.3, 4.0], 4.1)
    assert disagree.outcome == exact.FAILS and "κ = +3 falls below the self-reference" in disagree.sentence
    tie = exact.kappa_verdict([-3.0, 3.0], [4.3, 4.1 + TOL / 2], 4.1)
    assert tie.outcome == exact.TIE and "the worst, κ = +3, ties" in tie.sentence


def test_the_books_verdicts_are_computed_from_its_record(book):
    found = exact.verdicts(book)
    assert list(found) == ["interior", "dpo_vs_probability", "dpo_vs_likelihood", "compatible_vs_self",
                           "compatible_beta", "incompatible", "probability_beta", "collapse", "closed_form",
                           "ends_above_reference", "kappa"]
    assert all(v.outcome in {exact.HOLDS, exact.FAILS, exact.TIE} and v.sentence for v in found.values())
    table = exact.verdict_table(found)
    assert list(table.columns) == ["claim", "margin", "tolerance", "outcome"]
    assert [found[k].claim for k in list(found)[:6]] == list(exact.CLAIMS)
    # the default world's verdicts and the robustness rules are the same functions
    ends = exact.summary(book, "loglinear", "dpo")
    assert found["dpo_vs_probability"].margin == pytest.approx(
        ends["best gold"] - exact.summary(book, "loglinear", "probability")["best gold"])


def test_changing_the_numbers_changes_the_sentence(book):
    """The incompatibility verdict flips when the record says the incompatible reference did worse."""
    worse = copy.deepcopy(book)
    strong = worse["robustness"]["strength"]
    comp = next(r for r in worse["references"] if r["name"] == f"compatible {strong}")
    inc = next(r for r in worse["references"] if r["name"] == f"incompatible {strong}")
    inc["summary"]["best gold"] = comp["summary"]["best gold"] - 0.1
    flipped = exact.verdicts(worse)["incompatible"]
    assert flipped.outcome == exact.HOLDS and "Here incompatibility hurt." in flipped.sentence
    inc["summary"]["best gold"] = comp["summary"]["best gold"] + 0.1
    better = exact.verdicts(worse)["incompatible"]
    assert better.outcome == exact.FAILS and "the incompatible reference did better" in better.sentence


def test_a_tiny_difference_in_a_robustness_world_is_a_tie_not_a_win():
    world = {"seed": 0, "references": {
        "sft": {"best": 4.0001, "best_beta": 0.1, "first": 3.0, "last": 3.0},
        "uniform": {"best": 4.0, "best_beta": 0.1, "first": 3.0, "last": 3.0},
        "prior": {"best": 3.0, "best_beta": 0.1, "first": 3.0, "last": 3.0},
        "compatible": {"best": 4.5, "best_beta": 1.0, "first": 3.0, "last": 3.0},
        "incompatible": {"best": 4.0, "best_beta": 1.0, "first": 3.0, "last": 3.0}}}
    robust = exact.robustness_table({"robustness": {"worlds": [world]}})
    assert robust.loc[0, "DPO best > probability best"] == exact.TIE
    assert robust.loc[0, "DPO best > likelihood best"] == exact.HOLDS
    margins = exact.robustness_margins({"robustness": {"worlds": [world]}})
    assert margins.loc[0, "DPO best > probability best"] == pytest.approx(1e-4)


def test_the_tolerance_exceeds_the_grid_resolution_it_stands_for(book):
    resolution = exact.grid_resolution(book)
    assert 0 < resolution < exact.TIE_TOLERANCE
    other_seed = copy.deepcopy(book)
    other_seed["world"]["config"]["seed"] = 10_000
    assert math.isnan(exact.grid_resolution(other_seed))


def test_the_claims_quote_the_paper_from_dpolib_paper():
    t3, t5 = paper.TABLE3, paper.TABLE5
    text = " ".join(exact.CLAIMS.values())
    for value in (t3.cell("DPO (Eq. 5)", "Score (LC)"), t3.cell("probability (Eq. 10)", "Score (LC)"),
                  t3.cell("likelihood (Eq. 15)", "Score (LC)"), t5.cell("mistral-7b", "mistral-v0.2"),
                  t5.cell("tulu-2-7b", "mistral-v0.2"), t5.cell("tulu-2-7b", "original")):
        assert f"{value:.2f}" in text


def test_the_opening_table_and_answer_follow_the_verdicts(book):
    from dataclasses import replace

    found = exact.verdicts(book)
    table = exact.opening_table(found)
    assert list(table["claim"]) == [found[k].claim for k in exact.CLAIM_KEYS]
    assert list(table["verdict"]) == [found[k].outcome for k in exact.CLAIM_KEYS]
    assert all(p == exact.CLAIMS[c] for c, p in zip(table["claim"], table["paper"]))  # the paper's side, from dpolib.paper
    flipped = {k: replace(v, margin=-1.0) for k, v in found.items()}  # every claim fails by a wide margin
    assert set(exact.opening_table(flipped)["verdict"]) == {exact.FAILS}
    assert exact.answer(flipped).startswith(f"In the default world 0 of the paper's {len(exact.CLAIM_KEYS)} findings")
    assert exact.answer(flipped) != exact.answer({k: replace(v, margin=1.0) for k, v in found.items()})


def test_mutating_the_tie_band_changes_the_books_verdicts(book, monkeypatch):
    """The tolerance is not decorative: with no tie band only exact equalities tie, with a huge one everything
    ties, and at least one of the two changes what the book's record says."""
    before = {k: v.outcome for k, v in exact.verdicts(book).items()}
    changed = []
    for tolerance in (0.0, 10.0):
        monkeypatch.setattr(exact, "TIE_TOLERANCE", tolerance)
        monkeypatch.setattr(exact, "BETA_TOLERANCE_DECADES", tolerance)
        found = exact.verdicts(book)
        if tolerance == 0.0:
            assert all(v.margin == 0 for v in found.values() if v.outcome == exact.TIE)
        else:
            assert {v.outcome for v in found.values()} == {exact.TIE}
        changed.append({k: v.outcome for k, v in found.items()} != before)
    assert any(changed)
