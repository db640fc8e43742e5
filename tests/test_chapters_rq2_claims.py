"""RQ2's claims on the verdict rule (dpolib.chapters.rq2_claims): agree, disagree and not-testable cases per criterion."""

import numpy as np
import pytest

from record_factory import make_record

from dpolib.chapters import rq2, rq2_claims
from dpolib.scorecard import AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTABLE, scorecard

N = 60
GRIDS = {"dpo": (1.0, 0.1, 0.01), "probability": (100.0, 10.0, 1.0), "likelihood": (1.0, 0.1, 0.01)}
BEST = {"dpo": 0.1, "probability": 10.0, "likelihood": 0.1}


def rec(objective, beta, q, seed=0, length=30.0, eos=(-0.5, 0.7)):
    """A run whose per-prompt gold and LC sit around ``q`` (small prompt-level noise, fixed per prompt)."""
    noise = np.random.default_rng(seed * 1000 + int(q * 1000)).normal(0, 0.01, N)
    base = np.linspace(0.2, 0.6, N)
    vals = list(np.clip(base + q - 0.4 + noise, 0, 1))
    return make_record("char", objective, beta=beta, seed=seed, profile="smoke", lc_win_rate=100 * q, gold_score=q,
                       prompt_scores=vals, prompt_lc=vals, mean_length_chars=length,
                       eos={"value": eos[0], "difference": eos[1], "n_pairs": 10})


def world(q=None, best=None, lengths=None, eos=None, seeds=(0, 1, 2), grids=None):
    """The sweeps in world 0 (best β interior), the best-β arms and SFT rerun in every world seed."""
    q = {"sft": 0.40, "dpo": 0.50, "probability": 0.45, "likelihood": 0.46, **(q or {})}
    best = {**BEST, **(best or {})}
    lengths = {"dpo": 35.0, "probability": 80.0, "likelihood": 30.0, **(lengths or {})}
    eos = {"dpo": (-1.0, 1.5), "probability": (-3.0, 0.2), "likelihood": (-0.5, 0.7), **(eos or {})}
    out = [rec("sft", None, q["sft"], s) for s in seeds]
    for o, grid in {**GRIDS, **(grids or {})}.items():
        for b in grid:
            if b != best[o]:
                out.append(rec(o, b, q[o] - 0.05, 0, lengths[o], eos[o]))
        out += [rec(o, best[o], q[o], s, lengths[o], eos[o]) for s in seeds]
    return out


def card(recs, flipped=()):
    return scorecard(rq2_claims.claims(flipped), rq2.evidence(recs, replicates=lambda r: [])).set_index("id")


def verdict(recs, cid, flipped=()):
    return card(recs, flipped).loc[cid, "verdict"]


def test_all_improve_on_sft():
    assert verdict(world(), "rq2.all-improve-on-sft") == AGREES
    assert verdict(world(q={"sft": 0.55}), "rq2.all-improve-on-sft") == DISAGREES
    assert verdict([r for r in world() if not r.is_sft], "rq2.all-improve-on-sft") == NOT_TESTABLE


def test_dpo_best_agrees_disagrees_and_its_preconditions():
    assert verdict(world(), "rq2.dpo-best") == AGREES
    assert verdict(world(q={"likelihood": 0.6}), "rq2.dpo-best") == DISAGREES
    # every objective below SFT: ranking failures is not testable
    c = card(world(q={"sft": 0.7}))
    assert c.loc["rq2.dpo-best", "verdict"] == NOT_TESTABLE and "below the SFT" in c.loc["rq2.dpo-best", "note"]
    # DPO's best at the edge of its grid: the optimum may lie outside
    c = card(world(best={"dpo": 0.01}))
    assert c.loc["rq2.dpo-best", "verdict"] == NOT_TESTABLE and "edge" in c.loc["rq2.dpo-best", "note"]


def test_dpo_best_without_replicates_pools_the_world_seeds_there_are():
    c = card(world(seeds=(0,)))
    assert c.loc["rq2.dpo-best", "verdict"] == AGREES
    assert c.attrs["intervals"]["rq2.dpo-best"] is None  # a combined measurement keeps its parts, not one interval


def test_equal_arms_are_inconclusive():
    assert verdict(world(q={"probability": 0.5, "likelihood": 0.5}), "rq2.dpo-best") == INCONCLUSIVE


def test_probability_beta():
    assert verdict(world(), "rq2.probability-large-beta") == AGREES
    high_dpo = {"dpo": (100.0, 50.0, 20.0)}
    assert verdict(world(best={"dpo": 50.0}, grids=high_dpo), "rq2.probability-large-beta") == DISAGREES
    # probability's best is its smallest β and below DPO's: its optimum may lie lower still
    assert verdict(world(best={"dpo": 50.0, "probability": 1.0}, grids=high_dpo),
                   "rq2.probability-large-beta") == NOT_TESTABLE
    # DPO's best is its largest β and below probability's: its optimum may lie higher
    assert verdict(world(best={"dpo": 1.0}), "rq2.probability-large-beta") == NOT_TESTABLE


def test_length_and_eos_per_world():
    c = card(world())
    for cid in ("rq2.probability-longer", "rq2.probability-extreme-eos", "rq2.dpo-separates-eos"):
        assert c.loc[cid, "verdict"] == AGREES, cid
    c = card(world(lengths={"probability": 40.0}, eos={"probability": (-0.5, 2.0)}))
    for cid in ("rq2.probability-longer", "rq2.probability-extreme-eos", "rq2.dpo-separates-eos"):
        assert c.loc[cid, "verdict"] == DISAGREES, cid
    recs = [r for r in world() if r.objective != "probability"]
    assert verdict(recs, "rq2.probability-longer") == NOT_TESTABLE
    assert verdict(world(), "rq2.beats-orpo") == NOT_TESTABLE


@pytest.mark.parametrize("cid", [c for c in rq2_claims.CLAIM_IDS if c not in ("rq2.beats-orpo",)])
def test_flipping_a_criterion_turns_agreement_into_disagreement(cid):
    assert verdict(world(), cid) == AGREES
    assert verdict(world(), cid, flipped=[cid]) == DISAGREES


def test_unknown_flip_is_rejected():
    with pytest.raises(ValueError, match="unknown"):
        rq2_claims.claims(["rq2.nope"])


def test_answer_and_disagreements_follow_the_verdicts():
    recs = world()
    c = card(recs).reset_index()
    assert "as in the paper" in rq2.answer(rq2.evidence(recs), c)
    recs = world(q={"likelihood": 0.6})
    c = card(recs).reset_index()
    assert "Unlike the paper" in rq2.answer(rq2.evidence(recs), c)
    assert "rq2.dpo-best" not in rq2.disagreements(c) and "beats both" in rq2.disagreements(c)
    c = card(world(q={"sft": 0.7})).reset_index()
    assert "not testable" in rq2.answer(rq2.evidence(world(q={"sft": 0.7})), c)
