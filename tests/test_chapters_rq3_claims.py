"""RQ3's and App. E's claims on the verdict rule (dpolib.chapters.rq3_claims): agree, disagree, not testable."""

import numpy as np
import pytest

from record_factory import make_record

from dpolib.chapters import rq3, rq3_claims
from dpolib.scorecard import AGREES, DISAGREES, NOT_TESTABLE, scorecard

N = 60
SEEDS = (0, 1, 2)


def rec(student, reference, beta, lc, *, degenerate=False, seed=0):
    """A run whose per-prompt gold and LC sit around ``lc`` / 100 (small prompt-level noise per world seed)."""
    q = lc / 100
    noise = np.random.default_rng(seed * 7919 + int(lc * 100)).normal(0, 0.003, N)
    vals = list(np.clip(np.linspace(q - 0.02, q + 0.02, N) + noise, 0, 1))
    objective = "sft" if reference == "none" else "dpo"
    return make_record(student, objective, reference, beta, seed, profile="smoke", lc_win_rate=lc, gold_score=q,
                       degenerate=degenerate, prompt_scores=vals, prompt_lc=vals)


def sweep(student, reference, scores: dict, degenerate=()):
    return [rec(student, reference, b, v, degenerate=b in degenerate, seed=s) for b, v in scores.items() for s in SEEDS]


def world(comp_a=(12.0, 20.0, 15.0), inc_a=(9.0, 10.0, 11.0), app=(15.0, 17.0, 14.0), incompatible_helps=False,
          sft=(7.5, 8.5)):
    """Two students shaped like the paper, every run in three world seeds: compatible helps at β = 1, incompatible
    does not (b's stays below SFT), App. E overtakes its reference at a larger β."""
    rq1 = [rec("a", "none", None, sft[0], seed=s) for s in SEEDS] + [rec("b", "none", None, sft[1], seed=s) for s in SEEDS]
    rq1 += sweep("a", "self", {0.1: 14.0, 0.01: 16.0, 0.001: 30.0}, degenerate=(0.001,))
    rq1 += sweep("b", "self", {0.1: 9.0, 0.02: 10.5, 0.01: 8.0})
    rq3_ = sweep("a", "self", {10.0: 8.0, 1.0: 9.0})
    rq3_ += sweep("a", "compatible", dict(zip((10.0, 1.0, 0.1), comp_a)))
    rq3_ += sweep("a", "incompatible", dict(zip((10.0, 1.0, 0.01), inc_a)))
    rq3_ += sweep("b", "self", {10.0: 8.0, 1.0: 8.5})
    rq3_ += sweep("b", "compatible", {10.0: 9.0, 1.0: 11.0, 0.1: 10.0})
    rq3_ += sweep("b", "incompatible", {10.0: 7.6, 1.0: 12.0 if incompatible_helps else 7.8, 0.1: 5.0}, degenerate=(0.1,))
    appe = sweep("a", "rq1-best", dict(zip((10.0, 1.0, 0.01), app)))
    return {"rq1": rq1, "rq3": rq3_, "appendix-e": appe}


COMPAT = {"measures": {
    "a": {"self": {"logp_corr": 1.0, "kl": 0.0, "kl_se": 0.0}, "compatible": {"logp_corr": 0.95, "kl": 5.0, "kl_se": 1.0},
          "incompatible": {"logp_corr": 0.6, "kl": 40.0, "kl_se": 3.0}},
    "b": {"self": {"logp_corr": 1.0, "kl": 0.0, "kl_se": 0.0}, "compatible": {"logp_corr": 0.9, "kl": 6.0, "kl_se": 1.0},
          "incompatible": {"logp_corr": 0.7, "kl": 30.0, "kl_se": 3.0}},
}}


def card(recs, compat=COMPAT, flipped=()):
    return scorecard(rq3_claims.claims(flipped), rq3.evidence(recs, compat, replicates=lambda r: [])).set_index("id")


def verdict(recs, cid, compat=COMPAT, flipped=()):
    return card(recs, compat, flipped).loc[cid, "verdict"]


def test_paper_shaped_world_agrees_and_the_tokenizer_claim_disagrees():
    c = card(world())
    for cid in ("rq3.compatible-beats-self", "rq3.only-if-compatible", "rq3.incompatible-not-above-sft",
                "rq3.beta-larger-with-compatible", "practice.compatible-stronger-reference",
                "open.compatibility-measure", "appe.student-overtakes-reference"):
        assert c.loc[cid, "verdict"] == AGREES, (cid, c.loc[cid, "ours"], c.loc[cid, "note"])
    # the other-tokenizer reference loses to self for both students: the claim can disagree
    assert c.loc["rq3.no-shared-tokenizer-needed", "verdict"] == DISAGREES


def test_compatible_beats_self_disagrees():
    c = card(world(comp_a=(12.0, 13.0, 15.5)))  # a: compatible best 15.5 < self 16
    assert c.loc["rq3.compatible-beats-self", "verdict"] == DISAGREES
    assert c.loc["practice.compatible-stronger-reference", "verdict"] == DISAGREES


def test_only_if_compatible_disagrees_and_needs_a_reference_that_helps():
    assert verdict(world(incompatible_helps=True), "rq3.only-if-compatible") == DISAGREES
    c = card(world(sft=(40.0, 40.0)))  # nothing beats SFT: "incompatible does not help" is vacuous
    assert c.loc["rq3.only-if-compatible", "verdict"] == NOT_TESTABLE
    assert "nothing helps" in c.loc["rq3.only-if-compatible", "note"]


def test_incompatible_not_above_sft_agree_disagree_not_testable():
    assert verdict(world(), "rq3.incompatible-not-above-sft") == AGREES  # b: 7.8 < 8.5
    assert verdict(world(incompatible_helps=True), "rq3.incompatible-not-above-sft") == DISAGREES
    c = card(world(sft=(40.0, 40.0)))  # no reference arm beats SFT
    assert c.loc["rq3.incompatible-not-above-sft", "verdict"] == NOT_TESTABLE
    assert "nothing helps" in c.loc["rq3.incompatible-not-above-sft", "note"]


def test_beta_larger_disagrees_and_is_not_testable_at_the_top_of_the_grid():
    recs = world()
    recs["rq3"] = [r for r in recs["rq3"] if not (r.student == "a" and r.reference == "compatible")]
    recs["rq3"] += sweep("a", "compatible", {0.001: 20.0, 0.1: 12.0})
    assert verdict(recs, "rq3.beta-larger-with-compatible") == DISAGREES
    recs = world()
    recs["rq3"] += sweep("b", "self", {100.0: 10.8}) + sweep("a", "self", {100.0: 16.5})
    c = card(recs)
    assert c.loc["rq3.beta-larger-with-compatible", "verdict"] == NOT_TESTABLE
    assert "largest tried" in c.loc["rq3.beta-larger-with-compatible", "note"]


def test_tokenizer_claim_agrees_when_an_other_tokenizer_reference_helps():
    assert verdict(world(incompatible_helps=True), "rq3.no-shared-tokenizer-needed") == AGREES


def test_compatibility_measure_disagrees_when_swapped_and_is_not_testable_without_measures():
    swapped = {"measures": {s: {**m, "compatible": m["incompatible"], "incompatible": m["compatible"]}
                            for s, m in COMPAT["measures"].items()}}
    assert verdict(world(), "open.compatibility-measure", swapped) == DISAGREES
    assert verdict(world(), "open.compatibility-measure", None) == NOT_TESTABLE
    ev = rq3.evidence(world(), COMPAT, replicates=lambda r: [])
    assert rq3_claims.compatibility_predicts(ev, "kl").verdict == AGREES


def test_appendix_e_disagrees_and_needs_someone_above_sft():
    assert verdict(world(app=(15.0, 15.5, 14.0)), "appe.student-overtakes-reference") == DISAGREES  # 15.5 < 16
    c = card(world(app=(15.0, 14.0, 17.0)))  # overtakes, but at β 0.01, the reference's own β
    assert c.loc["appe.student-overtakes-reference", "verdict"] == DISAGREES
    c = card(world(sft=(30.0, 8.5)))  # student (17) and reference (16) both below SFT (30)
    assert c.loc["appe.student-overtakes-reference", "verdict"] == NOT_TESTABLE
    assert verdict({**world(), "appendix-e": []}, "appe.student-overtakes-reference") == NOT_TESTABLE


def test_without_per_prompt_values_paired_criteria_are_not_testable():
    recs = {k: [make_record(r.student, r.objective, r.reference, r.beta, r.seed, profile="smoke",
                            lc_win_rate=r.lc, degenerate=r.degenerate) for r in v] for k, v in world().items()}
    assert verdict(recs, "rq3.compatible-beats-self") == NOT_TESTABLE


@pytest.mark.parametrize("cid", ["rq3.compatible-beats-self", "rq3.only-if-compatible", "rq3.beta-larger-with-compatible",
                                 "practice.compatible-stronger-reference", "open.compatibility-measure",
                                 "appe.student-overtakes-reference"])
def test_flipping_a_criterion_turns_agreement_into_disagreement(cid):
    assert verdict(world(), cid) == AGREES
    assert verdict(world(), cid, flipped=[cid]) == DISAGREES


def test_flipping_the_for_some_student_claims():
    # the tokenizer claim flipped ("the other-tokenizer reference loses for some student") agrees in the paper's shape
    assert verdict(world(), "rq3.no-shared-tokenizer-needed", flipped=["rq3.no-shared-tokenizer-needed"]) == AGREES
    flip = ["rq3.incompatible-not-above-sft"]
    assert verdict(world(incompatible_helps=True), flip[0], flipped=flip) == AGREES
    with pytest.raises(ValueError, match="unknown"):
        rq3_claims.claims(["rq3.nope"])


def test_answer_follows_the_verdicts():
    ev = rq3.evidence(world(), COMPAT, replicates=lambda r: [])
    assert "As in the paper" in rq3.answer(ev, scorecard(rq3_claims.claims(), ev))
    ev = rq3.evidence(world(incompatible_helps=True), COMPAT, replicates=lambda r: [])
    assert "Unlike the paper" in rq3.answer(ev, scorecard(rq3_claims.claims(), ev))
    assert "not testable" in rq3.answer(ev, scorecard(rq3_claims.claims(), ev))
