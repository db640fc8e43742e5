"""dpolib.chapters.practice_claims: every Practice criterion on synthetic records with per-prompt values over three
world seeds, with evidence that must agree, evidence that must disagree and, for each precondition, evidence that must
be not testable; and a mutation test (a flipped direction cannot agree)."""

import math

import numpy as np
import pytest
from record_factory import make_record

from dpolib import scorecard as sc
from dpolib.chapters import practice as P
from dpolib.chapters import practice_claims as PC

SEEDS = (0, 1, 2)
N_PROMPTS = 200
#: LC (%) by β shaped like the paper: an interior self optimum at 0.01 with a cliff below it.
SELF_LC = {10.0: 5.0, 1.0: 6.0, 0.1: 8.0, 0.05: 9.0, 0.02: 11.5, 0.01: 12.0, 0.005: 7.0, 0.001: 3.0}
#: The compatible reference helps, best at β 1.
COMP_LC = {10.0: 13.0, 1.0: 15.0, 0.1: 13.5, 0.01: 10.0, 0.005: 8.0}
#: The incompatible reference hurts.
INC_LC = {10.0: 5.0, 1.0: 6.0, 0.1: 4.0}
#: Monotone: best at the largest β, every smaller β worse (the vacuous pass of the old "too small degrades").
DECLINING_LC = {b: 10.0 + 2.0 * math.log10(b) for b in SELF_LC}


def world(student="s1", self_lc=None, comp_lc=None, inc_lc=None, degenerate=(), seeds=SEEDS, noise=0.01,
          world_shift=None):
    """One student's SFT row and DPO sweeps (self, compatible, incompatible) in every world seed; per-prompt LC and gold
    share each world's prompt difficulty (paired). ``world_shift``: ``{seed: {(reference, β): extra LC}}``."""
    sweeps = {"self": SELF_LC if self_lc is None else self_lc, "compatible": COMP_LC if comp_lc is None else comp_lc,
              "incompatible": INC_LC if inc_lc is None else inc_lc}
    recs = []
    for w in seeds:
        difficulty = np.random.default_rng(100 + w).normal(0, 0.15, N_PROMPTS)
        salt = iter(range(1, 10_000))

        def prompts(points):
            lc_p = points / 100 + difficulty + np.random.default_rng(1000 * w + next(salt)).normal(0, noise, N_PROMPTS)
            return dict(prompt_lc=list(lc_p), prompt_scores=list(lc_p / 2), lc_win_rate=points, gold_score=points / 200)

        recs.append(make_record(student, "sft", seed=w, **prompts(4.0)))
        for ref, lc in sweeps.items():
            for b, v in lc.items():
                v += (world_shift or {}).get(w, {}).get((ref, b), 0.0)
                recs.append(make_record(student, "dpo", ref, beta=b, seed=w, degenerate=(ref, b) in degenerate,
                                        **prompts(v)))
    return recs


def verdicts(recs, flipped=()):
    card = sc.scorecard(P.claims(flipped), P.evidence(recs))
    return dict(zip(card["id"], card["verdict"])), card.set_index("id")


def test_a_paper_like_world_agrees_on_every_claim_with_any_student_names():
    v, card = verdicts(world("alpha") + world("omega"))
    assert set(v.values()) == {sc.AGREES}, card[["ours", "verdict", "note"]]
    assert "alpha" in card.loc["practice.best-beta-below-0.1", "ours"] and "[" in card.loc["practice.best-beta-below-0.1", "ours"]
    assert list(v) == list(PC.CLAIM_IDS)


def test_the_opposite_world_disagrees_on_every_score_claim():
    # best β 0.1 (inside the grid) with a gentle decline below it and a steep one above; the compatible reference
    # hurts and peaks at a smaller β than self; the incompatible one helps
    v, card = verdicts(world(self_lc={10.0: 5.0, 1.0: 8.0, 0.1: 12.0, 0.05: 11.0, 0.02: 10.0, 0.01: 9.0, 0.005: 8.0,
                                      0.001: 7.0},
                             comp_lc={10.0: 3.0, 1.0: 2.0, 0.1: 4.0, 0.01: 5.0, 0.005: 1.0}, inc_lc={1.0: 20.0}))
    assert v["practice.best-beta-below-0.1"] == sc.DISAGREES
    assert v["practice.compatible-reference-helps"] == sc.DISAGREES
    assert v["practice.incompatible-reference-no-help"] == sc.DISAGREES
    assert v["practice.larger-beta-with-strong-reference"] == sc.DISAGREES  # compatible best at 0.01 < self's 0.1
    # one step below the optimum loses less than one step above: the cliff is on the wrong side
    assert v["practice.cliff-below-optimum"] == sc.DISAGREES, card.loc["practice.cliff-below-optimum"]


def test_too_small_disagrees_when_the_smallest_beta_beats_the_best_above_it():
    # an interior pooled optimum (0.01) and a smallest β that beats every larger β in the paired comparison although
    # it degenerates in one world seed (so it is not the best β)
    lc = {**SELF_LC, 0.001: 20.0}
    v, card = verdicts(world(self_lc=lc, degenerate={("self", 0.001)}))
    assert v["practice.too-small-degrades"] == sc.DISAGREES, card.loc["practice.too-small-degrades"]


def test_too_small_and_cliff_are_not_testable_when_the_best_beta_sits_at_the_top_edge():
    v, card = verdicts(world(self_lc=DECLINING_LC))
    for cid in ("practice.too-small-degrades", "practice.cliff-below-optimum"):
        assert v[cid] == sc.NOT_TESTABLE and "largest tried" in card.loc[cid, "note"]
    assert v["practice.larger-beta-with-strong-reference"] == sc.NOT_TESTABLE
    assert "largest β tried" in card.loc["practice.larger-beta-with-strong-reference", "note"]


def test_too_small_and_cliff_are_not_testable_when_the_best_beta_is_the_smallest():
    v, card = verdicts(world(self_lc={b: 10.0 - 2.0 * math.log10(b) for b in SELF_LC}))
    for cid in ("practice.too-small-degrades", "practice.cliff-below-optimum"):
        assert v[cid] == sc.NOT_TESTABLE and "smallest tried" in card.loc[cid, "note"]


def test_a_small_cliff_within_the_noise_is_inconclusive():
    # the old criterion passed −0.8 vs −0.1 LC from one student: with prompt noise far above it, the interval says so
    lc = {**SELF_LC, 0.02: 11.9, 0.005: 11.2}
    v, card = verdicts(world(self_lc=lc, noise=0.5))
    assert v["practice.cliff-below-optimum"] == sc.INCONCLUSIVE, card.loc["practice.cliff-below-optimum"]


def test_a_world_seed_that_breaks_ranks_makes_it_inconclusive():
    shift = {2: {("compatible", b): -4.0 for b in COMP_LC}}  # world 2's compatible sweep falls below its self optimum
    v, card = verdicts(world(world_shift=shift))
    assert v["practice.compatible-reference-helps"] == sc.INCONCLUSIVE
    assert "world seed 2" in card.loc["practice.compatible-reference-helps", "note"]


def test_reference_claims_not_testable_without_their_sweeps():
    recs = [r for r in world() if r.reference in ("self", "none")]
    v, card = verdicts(recs)
    for cid in ("practice.compatible-reference-helps", "practice.incompatible-reference-no-help",
                "practice.larger-beta-with-strong-reference"):
        assert v[cid] == sc.NOT_TESTABLE, cid
    assert v["practice.best-beta-below-0.1"] == sc.AGREES
    assert set(verdicts([])[0].values()) == {sc.NOT_TESTABLE}


def test_best_beta_below_not_testable_without_a_beta_on_each_side():
    v, card = verdicts(world(self_lc={0.02: 10.0, 0.01: 12.0, 0.005: 8.0}))
    assert v["practice.best-beta-below-0.1"] == sc.NOT_TESTABLE


def test_larger_beta_not_testable_without_a_compatible_beta_above_the_self_optimum():
    v, card = verdicts(world(comp_lc={0.01: 10.0, 0.005: 8.0, 0.001: 7.0}))
    assert v["practice.larger-beta-with-strong-reference"] == sc.NOT_TESTABLE
    assert "above the self optimum" in card.loc["practice.larger-beta-with-strong-reference", "note"]


def test_an_incompatible_reference_that_always_degenerates_is_compared_by_its_best_arm():
    v, card = verdicts(world(degenerate={("incompatible", b) for b in INC_LC}))
    assert v["practice.incompatible-reference-no-help"] == sc.AGREES
    assert "every β degenerate" in card.loc["practice.incompatible-reference-no-help", "ours"]


def test_without_per_prompt_values_the_score_claims_are_not_testable():
    recs = [r.__class__(**{**r.__dict__, "metrics": r.metrics.__class__(**{**r.metrics.__dict__, "prompt_lc": [],
                                                                          "prompt_scores": []})}) for r in world()]
    v, card = verdicts(recs)
    assert v["practice.compatible-reference-helps"] == sc.NOT_TESTABLE
    assert "per-prompt" in card.loc["practice.compatible-reference-helps", "note"]


def test_best_beta_is_rq1s_pooled_rule():
    ev = P.evidence(world(world_shift={0: {("self", 0.02): 1.0}}))  # 0.02 wins world 0 alone, 0.01 wins pooled
    assert PC.best_beta(ev, "s1") == 0.01
    from dpolib.chapters import rq1_claims

    assert PC.best_beta(ev, "s1") == rq1_claims.student_sweep(ev.records, "s1").best_beta


@pytest.mark.parametrize("cid", PC.CLAIM_IDS)
def test_mutation_a_flipped_direction_cannot_agree(cid):
    v, card = verdicts(world(), flipped=[cid])
    assert v[cid] == sc.DISAGREES, card.loc[cid]
    assert all(v[c] == sc.AGREES for c in PC.CLAIM_IDS if c != cid)


def test_unknown_flipped_id_raises():
    with pytest.raises(ValueError):
        PC.claims(["practice.nope"])
