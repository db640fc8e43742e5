"""RQ2 analysis (dpolib.chapters.rq2) on small synthetic records: selection, tables and computed verdicts."""

import math

import pandas as pd
import pytest

from record_factory import make_record

from dpolib.chapters import rq2, rq2_claims
from dpolib.chapters.common import arm_stats, compare
from dpolib.experiments.records import grid, load_grid
from dpolib.scorecard import AGREES, DISAGREES, NOT_TESTABLE, OUTCOMES, scorecard


def rec(objective, beta, lc, *, degenerate=False, length=30.0, eos=(-0.5, 0.7), acc=0.5, seed=0, student="char", response=None):
    return make_record(
        student, objective, beta=beta, seed=seed, profile="smoke", lc_win_rate=lc, gold_score=lc / 100,
        degenerate=degenerate, mean_length_chars=length, mean_length_tokens=length + 1, policy_accuracy=acc,
        eos={"value": eos[0], "difference": eos[1], "n_pairs": 10},
        samples=[{"prompt": "p0", "response": response or f"{objective} answer", "gold": 1.0, "finished": True},
                 {"prompt": "p1", "response": "x", "gold": 0.0, "finished": False}],
    )


def world(dpo=20.0, prob=12.0, lik=14.0, sft=8.0, prob_len=80.0, dpo_len=35.0, eos_prob=(-3.0, 0.2), eos_dpo=(-1.0, 1.5)):
    """A grid shaped like the paper's: DPO best at 0.01, probability at 100, likelihood at 0.01."""
    return [
        rec("sft", None, sft, length=20.0),
        rec("dpo", 0.1, dpo - 4, length=25.0, eos=eos_dpo),
        rec("dpo", 0.01, dpo, length=dpo_len, eos=eos_dpo),
        rec("dpo", 0.001, dpo + 10, degenerate=True, eos=(-50.0, 9.0)),  # best score, but degenerate
        rec("probability", 100.0, prob, length=prob_len, eos=eos_prob),
        rec("probability", 1.0, prob - 5, eos=eos_prob),
        rec("likelihood", 0.1, lik - 2),
        rec("likelihood", 0.01, lik),
    ]


def one_seed(record):
    return []  # no replicate records: arm_stats falls back to the record itself


def card(recs, replicates=one_seed):
    return scorecard(rq2_claims.claims(), rq2.evidence(recs, replicates=replicates)).set_index("id")


def test_best_beta_excludes_degenerate_runs():
    best = rq2.best_by_objective(world())
    assert best["dpo"].beta == 0.01  # 0.001 scores higher but degenerated
    assert best["probability"].beta == 100.0
    assert best["likelihood"].beta == 0.01


def test_all_degenerate_objective_has_no_best_and_claims_say_not_testable():
    recs = [r for r in world() if r.objective != "probability"]
    recs += [rec("probability", 10.0, 50.0, degenerate=True)]
    assert rq2.best_by_objective(recs)["probability"] is None
    c = card(recs)
    assert c.loc["rq2.dpo-best", "verdict"] == NOT_TESTABLE
    assert "probability" in c.loc["rq2.dpo-best", "note"]


def test_table3_rows_values_and_paper_side_by_side():
    t = rq2.table3(world(), replicates=one_seed)
    assert list(t.index) == ["original (SFT)", "DPO (Eq. 5)", "probability (Eq. 10)", "likelihood (Eq. 15)"]
    assert t.loc["DPO (Eq. 5)", "score"] == 20.0 and t.loc["DPO (Eq. 5)", "β"] == 0.01
    assert t.loc["original (SFT)", "β"] == math.inf
    assert t.loc["DPO (Eq. 5)", "degenerate runs"] == "1 of 3"
    assert bool(t.loc["probability (Eq. 10)", "β at grid edge"])  # 100 is the largest β tried
    assert not bool(t.loc["DPO (Eq. 5)", "β at grid edge"])  # 0.01 lies inside 0.1 ... 0.001
    both = rq2.table3_with_paper(world(), replicates=one_seed)
    assert both.loc["DPO (Eq. 5)", ("paper (quoted)", "score")] == 16.25
    assert both.loc["probability (Eq. 10)", ("paper (quoted)", "β")] == 100.0
    assert both.loc["DPO (Eq. 5)", ("ours", "score")] == 20.0


def test_sweep_table_marks_degenerate():
    t = rq2.sweep_table(world())
    assert t.loc[0.001, "dpo"] == "[degenerate]"
    assert t.loc[100.0, "probability"] == 12.0
    assert pd.isna(t.loc[100.0, "dpo"])


def test_length_and_eos_claims_flip():
    c = card(world())
    assert c.loc["rq2.probability-longer", "verdict"] == AGREES
    assert c.loc["rq2.probability-extreme-eos", "verdict"] == AGREES
    assert c.loc["rq2.dpo-separates-eos", "verdict"] == AGREES
    c = card(world(prob_len=40.0, eos_prob=(-0.5, 2.0)))
    assert c.loc["rq2.probability-longer", "verdict"] == DISAGREES  # 40 / 35 < 1.5
    assert c.loc["rq2.probability-extreme-eos", "verdict"] == DISAGREES
    assert c.loc["rq2.dpo-separates-eos", "verdict"] == DISAGREES
    assert card(world())["verdict"]["rq2.beats-orpo"] == NOT_TESTABLE
    # without per-prompt values the paired criteria are not testable, never decided on means
    assert c.loc["rq2.dpo-best", "verdict"] == NOT_TESTABLE


def test_eos_table_averages_over_non_degenerate_betas():
    t = rq2.eos_table(world())
    assert t.loc["DPO (Eq. 5)", "n runs"] == 2  # the degenerate run (-50) is left out
    assert t.loc["DPO (Eq. 5)", "value"] == pytest.approx(-1.0)


def test_seed_spread_decides_whether_a_difference_is_resolved():
    recs = world()
    values = {"dpo": [20.0, 21.0, 19.0], "probability": [12.0, 22.0, 2.0], "likelihood": [14.0, 14.5, 13.5], "sft": [8.0, 8.0, 8.0]}

    def three_seeds(record):
        return [rec(record.objective, record.config.beta, v, seed=i) for i, v in enumerate(values[record.objective])]

    stats = {o: arm_stats(rq2.best_by_objective(recs)[o], replicates_of=three_seeds) for o in rq2.OBJECTIVES}
    assert stats["dpo"].n == 3 and stats["dpo"].sd == pytest.approx(1.0)
    assert compare(stats["dpo"], stats["likelihood"]).within_spread is False  # 6 points apart, sd 1 and 0.5
    assert compare(stats["dpo"], stats["probability"]).within_spread is True  # sd 10
    # one seed in one arm: a difference beyond the other arm's spread is undecided, one inside it is within
    assert compare(arm_stats(recs[4], replicates_of=one_seed), stats["dpo"]).within_spread is None  # 8 > sd 1
    assert compare(arm_stats(recs[2], replicates_of=one_seed), stats["dpo"]).within_spread is True  # 0 <= sd 1


def test_samples_table_one_prompt_per_model():
    t = rq2.samples_table(world())
    assert list(t["model"]) == ["original (SFT)", "DPO (Eq. 5)", "probability (Eq. 10)", "likelihood (Eq. 15)"]
    assert t.attrs["prompt"] == "p0" and list(t["β"])[:2] == ["∞", "0.01"]


def test_a_degenerate_seed_counts_in_the_arm():
    """Seeds are pooled with common.pool_seeds: a seed that degenerated is part of the arm's spread."""
    recs = world()

    def seeds(record):
        return [rec(record.objective, record.config.beta, v, seed=i, degenerate=i == 2)
                for i, v in enumerate((20.0, 21.0, 1.0))]

    t = rq2.table3(recs, replicates=seeds)
    assert t.loc["DPO (Eq. 5)", "score (seeds)"] == "14.00 ± 11.27 (3 seeds)"
    assert rq2.evidence(recs, replicates=seeds)["stats"]["dpo"].n_degenerate == 1


def test_one_student_only():
    assert rq2.student_of(world()) == "char"
    with pytest.raises(ValueError, match="one student"):
        rq2.student_of(world() + [rec("sft", None, 5.0, student="bpe")])


def test_committed_cpu_records_if_present():
    recs = load_grid("rq2", "cpu")
    if len(recs) < len(grid("rq2", "cpu")):
        pytest.skip("the committed cpu RQ2 grid is not complete at this code version")
    c = scorecard(rq2_claims.claims(), rq2.evidence(recs))
    assert set(c["verdict"]) <= set(OUTCOMES)
    assert len(c) == len(rq2_claims.claims())
    t = rq2.table3(recs)
    assert t["score"].notna().sum() >= 2
