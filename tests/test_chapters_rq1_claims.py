"""dpolib.chapters.rq1_claims: every RQ1 criterion on synthetic records with per-prompt values over several world
seeds, each with evidence that must agree, evidence that must disagree and, where it has a precondition, evidence
that must be not testable; and a mutation test (a flipped direction cannot agree)."""

import math

import numpy as np
import pytest
from record_factory import make_record

from dpolib import scorecard as sc
from dpolib.chapters import rq1_claims

SEEDS = (0, 1, 2)
N_PROMPTS = 200
#: LC (%) by β shaped like the paper's Table 1: rises from β = 10 to an optimum at 0.01, drops at 0.005, degenerates
#: at 0.001 (β = 1 and 10 are the RQ3 grid's additions).
PAPER_LC = {10.0: 8.0, 1.0: 11.0, 0.1: 14.0, 0.05: 13.3, 0.02: 16.0, 0.01: 16.3, 0.005: 12.0, 0.001: 3.0}
SFT_LC = 7.6
#: Monotone: best at the largest β, every smaller β worse.
DECLINING_LC = {b: 10.0 + 2.0 * math.log10(b) for b in PAPER_LC}


def tokens(i, eos_first=True, scale=1.0):
    k = (i + 1) * scale
    return {"</s>": {"count": 600, "mean_diff": -3.0 * k if eos_first else -0.1},
            "sure": {"count": 200, "mean_diff": -1.0 * k}, "x": {"count": 5000, "mean_diff": -0.05 * k}}


def world(student="s1", lc=None, sft_lc=SFT_LC, degenerate=(0.001,), seeds=SEEDS, eos_first=True, acc_slope=0.04,
          length_slope=5.0, token_scale=1.0, per_prompt=True, world_shift=None):
    """One student's SFT row and DPO sweep in every world seed; per-prompt LC and gold share each world's prompt
    difficulty (paired), so a difference of a point is resolved. ``world_shift``: ``{seed: {β: extra LC}}``."""
    lc = dict(PAPER_LC if lc is None else lc)
    recs = []
    for w in seeds:
        rng = np.random.default_rng(100 + w)
        difficulty = rng.normal(0, 0.15, N_PROMPTS)

        def prompts(points, salt):
            noise = np.random.default_rng(1000 * w + salt).normal(0, 0.01, N_PROMPTS)
            lc_p = points / 100 + difficulty + noise
            return dict(prompt_lc=list(lc_p) if per_prompt else [], prompt_scores=list(lc_p / 2) if per_prompt else [],
                        lc_win_rate=points, gold_score=points / 200)

        recs.append(make_record(student, "sft", seed=w, mean_length_tokens=15.0, **prompts(sft_lc, 0)))
        for i, b in enumerate(sorted(lc, reverse=True)):
            points = lc[b] + (world_shift or {}).get(w, {}).get(b, 0.0)
            recs.append(make_record(
                student, "dpo", beta=b, seed=w, degenerate=b in degenerate, policy_accuracy=0.45 + acc_slope * i,
                reward_accuracy=0.7, mean_length_tokens=20 + length_slope * i, token_logp_diff=tokens(i, eos_first, token_scale),
                curves=[{"rewards/accuracies": 0.8, "logps/chosen": -10.0, "logps/rejected": -10.0},
                        {"rewards/accuracies": 0.9, "logps/chosen": -12.0, "logps/rejected": -15.0}],
                **prompts(points, 1 + i)))
    return recs


def verdicts(recs, flipped=()):
    ev = rq1_claims.evidence(recs, replicates_of=lambda r: [r])
    card = sc.scorecard(rq1_claims.claims(flipped), ev)
    return card.set_index("id")["verdict"], ev, card


PAPER_WORLD = world("a") + world("b")


def test_paper_like_world_agrees_with_every_claim():
    v, ev, card = verdicts(PAPER_WORLD)
    assert dict(v) == {cid: sc.AGREES for cid in rq1_claims.CLAIM_IDS}
    assert ev["sweeps"]["a"].best_beta == 0.01 and ev["sweeps"]["a"].seeds == list(SEEDS)
    assert card.attrs["values"]  # the parts are kept
    row = card.set_index("id").loc["rq1.dpo-beats-sft"]
    assert "LC: +" in row["ours"] and "[" in row["ours"] and "gold: " in row["ours"]


@pytest.mark.parametrize("claim_id", rq1_claims.CLAIM_IDS)
def test_flipping_a_criterion_cannot_agree(claim_id):
    """Mutation test: the same evidence, the criterion's direction flipped; the agreement above must not survive."""
    v, _, _ = verdicts(PAPER_WORLD, flipped=[claim_id])
    assert v[claim_id] != sc.AGREES
    assert v[claim_id] in (sc.DISAGREES, sc.INCONCLUSIVE)
    others = [c for c in rq1_claims.CLAIM_IDS if c != claim_id]
    assert all(v[c] == sc.AGREES for c in others)


def test_declining_score_disagrees_on_the_beta_claims_and_sensitivity_is_not_testable():
    """A monotone decline from the largest β: the old criterion called it 'sensitive below the optimum'."""
    v, ev, card = verdicts(world(lc=DECLINING_LC, degenerate=()))
    assert ev["sweeps"]["s1"].best_beta == 10.0
    for cid in ("rq1.best-beta-small", "rq1.interior-optimum", "practice.smaller-beta"):
        assert v[cid] == sc.DISAGREES, cid
    assert v["rq1.sensitive-below"] == sc.NOT_TESTABLE
    note = card.set_index("id").loc["rq1.sensitive-below", "note"]
    assert "largest tried" in note


def test_best_at_the_smallest_beta_is_not_testable_for_sensitivity():
    rising = {b: 20.0 - 2.0 * math.log10(b) for b in PAPER_LC}
    v, ev, card = verdicts(world(lc=rising, degenerate=()))
    assert ev["sweeps"]["s1"].best_beta == 0.001
    assert v["rq1.sensitive-below"] == sc.NOT_TESTABLE
    assert "smallest tried" in card.set_index("id").loc["rq1.sensitive-below", "note"]
    assert v["rq1.interior-optimum"] == sc.DISAGREES  # the smallest β does not degrade
    assert v["rq1.best-beta-small"] == sc.AGREES


def test_sensitivity_disagrees_when_the_drop_is_steeper_above():
    lc = {**PAPER_LC, 0.005: 16.0, 0.02: 12.0}  # one step below the optimum barely moves, one step above drops
    v, _, _ = verdicts(world(lc=lc))
    assert v["rq1.sensitive-below"] == sc.DISAGREES


def test_dpo_versus_sft():
    assert verdicts(world(sft_lc=50.0))[0]["rq1.dpo-beats-sft"] == sc.DISAGREES
    assert verdicts(world(sft_lc=PAPER_LC[0.01]))[0]["rq1.dpo-beats-sft"] == sc.INCONCLUSIVE  # same mean


def test_one_world_against_the_others_is_inconclusive():
    """Pooled the best β beats SFT, but world seed 2 points the other way: not an agreement."""
    v, _, card = verdicts(world(sft_lc=12.0, world_shift={2: {b: -6.0 for b in PAPER_LC}}))
    assert v["rq1.dpo-beats-sft"] == sc.INCONCLUSIVE
    assert "world seed 2" in card.set_index("id").loc["rq1.dpo-beats-sft", "note"]


def test_every_run_degenerate_is_not_testable():
    v, _, _ = verdicts(world(degenerate=tuple(PAPER_LC)))
    for cid in ("rq1.best-beta-small", "rq1.sensitive-below", "rq1.dpo-beats-sft"):
        assert v[cid] == sc.NOT_TESTABLE, cid


def test_records_without_per_prompt_values_are_not_testable():
    v, _, card = verdicts(world(per_prompt=False))
    for cid in ("rq1.best-beta-small", "rq1.interior-optimum", "rq1.sensitive-below", "rq1.dpo-beats-sft",
                "practice.smaller-beta"):
        assert v[cid] == sc.NOT_TESTABLE, cid
    assert "per-prompt" in card.set_index("id").loc["rq1.dpo-beats-sft", "note"]


def test_diagnostic_trends_flip():
    v, _, _ = verdicts(world(acc_slope=-0.04, length_slope=-5.0))
    assert v["rq1.policy-accuracy-rises"] == sc.DISAGREES and v["rq1.longer-small-beta"] == sc.DISAGREES
    v, _, _ = verdicts(world(eos_first=False))
    assert v["rq1.eos-most-down-weighted"] == sc.DISAGREES  # another token moves further
    assert v["rq1.eos-deeper-small-beta"] == sc.DISAGREES  # constant −0.1: no trend
    assert verdicts(world(token_scale=0.01))[0]["rq1.token-extremes"] == sc.DISAGREES  # nothing moves by a factor 10


def test_diagnostics_not_testable():
    few = [r for r in world() if r.is_sft or r.beta in (0.1, 0.01)]
    v, _, _ = verdicts(few)
    for cid in ("rq1.policy-accuracy-rises", "rq1.longer-small-beta", "rq1.eos-deeper-small-beta",
                "rq1.interior-optimum"):
        assert v[cid] == sc.NOT_TESTABLE, cid
    v, _, _ = verdicts(world(token_scale=0.0))  # untrained: no token moved, no frequent token table to rank
    assert v["rq1.token-extremes"] == sc.NOT_TESTABLE


def test_no_records_is_not_testable():
    v, _, _ = verdicts([])
    assert set(v) == {sc.NOT_TESTABLE}


def test_best_beta_pooled_over_world_seeds_excludes_a_beta_degenerate_anywhere():
    recs = world()
    recs = [r if not (r.seed == 1 and r.beta == 0.01) else r.__class__(
        r.config, r.metrics.__class__(**{**r.metrics.__dict__, "degenerate": True}), r.curves, r.provenance, r.key,
        r.label) for r in recs]
    sweep = rq1_claims.student_sweep(recs, "s1")
    assert sweep.degenerate_in[0.01] == (1,) and sweep.best_beta == 0.02
    assert sweep.pooled_lc[0.01] == pytest.approx(PAPER_LC[0.01])


def test_chapter_sentences_and_reasons_are_computed():
    v, ev, card = verdicts(world(lc=DECLINING_LC, degenerate=(), eos_first=False, token_scale=0.01, sft_lc=50.0))
    assert "10 (the largest β tried) for the s1" in rq1_claims.best_betas_text(ev)
    assert "disagrees" in rq1_claims.versus_sft_text(ev)
    text = rq1_claims.reasons(card, ev)
    assert "`rq1.best-beta-small`" in text and "yet no β raises the pooled LC above the SFT model's" in text
    assert "the same diagnostics as for" in text
    assert "chosen validation answers are not longer" in text  # make_record's pairs: 20 vs 20 tokens
    assert rq1_claims.reasons(verdicts(PAPER_WORLD)[2], verdicts(PAPER_WORLD)[1]) == ""


def test_paper_side_is_read_from_dpolib_paper():
    from dpolib import paper

    best = paper.TABLE1.sweep()["mistral-7b"].idxmax()
    c = {x.id: x for x in rq1_claims.CLAIMS}
    assert f"best β {best:g} (mistral-7b" in c["rq1.best-beta-small"].paper_value
    with pytest.raises(ValueError):
        rq1_claims.claims(flipped=["rq1.nope"])


def test_world_seeds_of_a_profile():
    assert rq1_claims.world_seeds("smoke") == (0,)
    assert rq1_claims.world_seeds("gpu") == (0,)
