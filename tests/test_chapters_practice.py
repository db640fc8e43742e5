"""dpolib.chapters.practice and practice_dynamics: the training-dynamics detectors and the Practice scorecard,
on synthetic curves and records."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from record_factory import make_record

from dpolib.chapters import practice as P
from dpolib.chapters import practice_dynamics as D
from dpolib.experiments import records as R
from dpolib.experiments.config import RunConfig
from dpolib.losses import dpo_loss
from dpolib.scorecard import scorecard


def curve_rows(beta, chosen, rejected, base_chosen=-80.0, base_rejected=-75.0, noise=0.0, ref_offset=0.0, seed=0):
    """TRL-style log rows for a run whose policy log-ratios to the reference follow ``chosen``/``rejected`` (nats).

    ``ref_offset`` shifts the reference's chosen log-prob (a reference that is not the initial policy starts with a
    non-zero margin); ``noise`` adds batch-to-batch noise to the logged sequence log-probs.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i, (c, r) in enumerate(zip(chosen, rejected)):
        eps = noise * rng.standard_normal(2)
        lc, lr = c - ref_offset, r
        h = lc - lr
        rows.append(
            {
                "step": i + 1,
                "loss": math.log1p(math.exp(-beta * h)),
                "logps/chosen": base_chosen + c + eps[0],
                "logps/rejected": base_rejected + r + eps[1],
                "rewards/chosen": beta * lc,
                "rewards/rejected": beta * lr,
                "rewards/margins": beta * h,
                "rewards/accuracies": float(h > 0),
            }
        )
    return rows


def record(student="s1", objective="dpo", reference=None, beta=0.1, seed=0, curves=None, lc=10.0, length=40.0,
           degenerate=False, eos_diff=-0.5, policy_accuracy=0.5):
    """A typed record (:func:`record_factory.make_record`) with the fields these tests vary."""
    return make_record(student, objective, reference, beta, seed, curves=curves or (), lc_win_rate=lc,
                       mean_length_chars=length, mean_length_tokens=length / 2, degenerate=degenerate,
                       policy_accuracy=policy_accuracy, eos_token="</s>",
                       token_logp_diff={"</s>": {"count": 100, "mean_diff": eos_diff}}, eos={"value": -1.0})


N = 200
T = np.linspace(0, 1, N)


# --------------------------------------------------------------------------- curves and the falling chosen log-prob


def test_run_curves_derives_log_ratios_from_rewards():
    cv = D.run_curves(record(beta=0.5, curves=curve_rows(0.5, 2 * T, -3 * T)))
    assert cv.index.name == "step" and len(cv) == N
    np.testing.assert_allclose(cv["chosen_logratio"], 2 * T)
    np.testing.assert_allclose(cv["rejected_logratio"], -3 * T)
    np.testing.assert_allclose(cv["h"], 5 * T)
    assert D.run_curves(record(objective="sft", beta=None)).empty


def test_run_curves_names_missing_trl_keys():
    rows = [{k: v for k, v in r.items() if k != "rewards/margins"} for r in curve_rows(0.1, T, -T)]
    with pytest.raises(KeyError, match="rewards/margins"):
        D.run_curves(record(curves=rows))


def test_window_change_is_exact_on_a_noise_free_series():
    start, end, change, se = D.window_change(np.arange(100.0), frac=0.1)
    assert (start, end, change, se) == (4.5, 94.5, 90.0, 0.0)


def test_detector_true_when_chosen_falls_while_margin_grows():
    cv = D.run_curves(record(curves=curve_rows(0.1, -20 * T, -60 * T)))
    assert D.chosen_falls_while_margin_grows(cv)


@pytest.mark.parametrize(
    "chosen, rejected",
    [(10 * T, -30 * T), (-20 * T, 0 * T), (0 * T, 0 * T)],  # chosen rises / margin shrinks / nothing moves
    ids=["chosen-rises", "margin-shrinks", "flat"],
)
def test_detector_false_otherwise(chosen, rejected):
    assert not D.chosen_falls_while_margin_grows(D.run_curves(record(curves=curve_rows(0.1, chosen, rejected))))


def test_detector_does_not_read_batch_noise_as_a_trend():
    noisy = D.run_curves(record(curves=curve_rows(0.1, -0.5 * T, -60 * T, noise=20.0)))
    assert not D.chosen_falls_while_margin_grows(noisy)  # a 0.5-nat drift under 20 nats of noise
    strong = D.run_curves(record(curves=curve_rows(0.1, -40 * T, -90 * T, noise=20.0)))
    assert D.chosen_falls_while_margin_grows(strong)


def test_trajectory_summary_flags_both_falling():
    recs = [record(beta=0.01, curves=curve_rows(0.01, -20 * T, -60 * T)), record(beta=0.1, curves=curve_rows(0.1, 5 * T, -20 * T)),
            record(objective="sft", beta=None)]
    s = D.trajectory_summary(recs)
    assert list(s["beta"]) == [0.01, 0.1]  # the SFT row has no curves
    assert list(s["falls_while_grows"]) == [True, False]
    assert list(s["both_fall"]) == [True, False]
    assert s["chosen_change"].iloc[0] < 0 < s["chosen_change"].iloc[1]


# --------------------------------------------------------------------------- log 2


def test_dpo_loss_at_zero_margin_is_log2_for_every_beta():
    x = torch.tensor([-50.0, -10.0], dtype=torch.float64)
    for beta in (1e-3, 0.1, 10.0):
        torch.testing.assert_close(dpo_loss(x, x + 3, x, x + 3, beta).losses, torch.full((2,), D.LOG2, dtype=torch.float64))


def test_loss_vs_log2_start_and_flatness():
    tiny = record(beta=0.001, curves=curve_rows(0.001, -10 * T, -80 * T))  # h grows to 70 nats, β·h only 0.07
    large = record(beta=0.5, curves=curve_rows(0.5, 2 * T, -10 * T))
    other_ref = record(reference="compatible", beta=0.5, curves=curve_rows(0.5, 2 * T, -10 * T, ref_offset=5.0))
    t = D.loss_vs_log2([tiny, large, other_ref]).set_index("reference", append=True)
    assert list(t["starts_at_log2"]) == [True, True, False]  # only a reference equal to the initial policy starts at 0 margin
    assert list(t["stays_flat"]) == [True, False, False]
    assert t["h_end"].iloc[0] > 60  # flat loss, yet the policy moved by tens of nats
    assert abs(t["first_order"].iloc[0] - t["loss_end"].iloc[0]) < 1e-3  # log 2 − β·h/2 holds at small β·h


def test_loss_that_passes_log2_on_the_way_down_is_not_flat():
    # a reference far from the policy: the loss starts high and ends near log 2 by coincidence
    passing = record(objective="likelihood", beta=0.1, curves=curve_rows(0.1, 20 * T, 0 * T, ref_offset=20.0))
    t = D.loss_vs_log2([passing])
    assert t["loss_start"].iloc[0] > 2 and abs(t["loss_end"].iloc[0] - D.LOG2) < 0.07
    assert not t["starts_at_log2"].iloc[0] and not t["stays_flat"].iloc[0]


def test_a_reference_that_is_the_policy_is_flat_at_exactly_log2():
    bug = D.loss_vs_log2([record(beta=0.1, curves=curve_rows(0.1, -30 * T, -30 * T))])  # margin 0 at every step
    assert bug["starts_at_log2"].iloc[0] and bug["stays_flat"].iloc[0]
    assert bug["loss_end"].iloc[0] == pytest.approx(D.LOG2, abs=1e-12) and bug["h_end"].iloc[0] == 0


# --------------------------------------------------------------------------- direction of beta, length


def test_rank_correlation():
    assert D.rank_correlation([1, 2, 3, 4], [8, 6, 4, 1]) == pytest.approx(-1.0)
    assert D.rank_correlation([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert math.isnan(D.rank_correlation([1, 2], [2, 1]))


def test_drift_falls_with_beta_while_logged_margin_rises():
    # a policy that moves 1/β^0.5 nats: smaller β, farther; but β·h grows with β
    recs = [record(beta=b, curves=curve_rows(b, (3 / b**0.5) * T, -(3 / b**0.5) * T)) for b in (0.01, 0.1, 1.0)]
    d = D.drift_table(recs)
    assert D.rank_correlation(d["beta"], d["drift"]) == pytest.approx(-1.0)
    assert D.rank_correlation(d["beta"], d["margin_end"]) == pytest.approx(1.0)
    assert (d["eos_diff"] == -0.5).all()


def test_length_table_compares_with_the_students_own_sft():
    recs = [record("a", "sft", "none", None, length=20.0), record("a", beta=0.1, length=30.0),
            record("b", "sft", "none", None, length=50.0), record("b", beta=0.1, length=30.0)]
    t = D.length_table(recs)
    assert list(t["sft_length"]) == [20.0, 20.0, 50.0, 50.0]
    assert list(t["longer_than_sft"]) == [False, True, False, False]


# --------------------------------------------------------------------------- reference-free = uniform reference


def test_uniform_reference_equals_reference_free_loss_and_gradient():
    t = D.uniform_reference_check()
    diffs = t[[c for c in t if c.startswith("max |")]]
    scale = t["mean loss (Eq. 10)"].clip(lower=1.0)
    assert (diffs.max(axis=1) <= 1e-12 * scale * 100).all()


def test_reference_free_in_records():
    beta = 0.1
    rows = curve_rows(beta, 5 * T, -5 * T)
    for r in rows:  # a uniform reference: rewards are β·log p_θ exactly
        r["rewards/chosen"], r["rewards/rejected"] = beta * r["logps/chosen"], beta * r["logps/rejected"]
    recs = [record(objective="probability", reference="uniform", beta=beta, curves=rows),
            record(beta=beta, curves=curve_rows(beta, 5 * T, -5 * T))]
    t = D.reference_free_in_records(recs)
    assert len(t) == 1 and t["max_reward_gap"].iloc[0] < 1e-12


# --------------------------------------------------------------------------- arms and the practice scorecard


def test_arms_pool_every_seed_degenerate_included():
    recs = [record(beta=0.1, seed=0, lc=10.0), record(beta=0.1, seed=1, lc=14.0),
            record(beta=0.01, seed=0, lc=99.0, degenerate=True), record(beta=0.01, seed=1, lc=1.0),
            record(objective="sft", reference="none", beta=None, lc=4.0)]
    a = P.arms(recs).set_index("beta")
    assert a.loc[0.1, "score"] == 12.0 and a.loc[0.1, "spread"] == 4.0 and a.loc[0.1, "n_seeds"] == 2
    assert not bool(a.loc[0.1, "degenerate"]) and a.loc[0.1, "n_degenerate"] == 0
    # the one seed-pooling rule (common.pool_seeds): a degenerate seed is an outcome of the arm, counted in the mean
    assert bool(a.loc[0.01, "degenerate"]) and a.loc[0.01, "n_degenerate"] == 1 and a.loc[0.01, "score"] == 50.0
    assert a.loc[math.inf, "objective"] == "sft"  # the SFT row sits at β = ∞
    assert list(P.arms(recs + recs).index) == list(P.arms(recs).index)  # a record read twice counts once


def test_best_beta_line_uses_rq1s_pooled_rule_and_best_arm_the_lowest_seed_sweep():
    # β 0.01 wins on the lowest seed (best_arm) but loses once its poor second seed is pooled (RQ1's rule, which the
    # claims and the checklist use): one best-β rule for every DPO sweep of the chapter
    recs = [record(beta=0.1, lc=11.0), record(beta=0.01, lc=12.0), record(beta=0.01, seed=1, lc=8.0),
            record(beta=0.001, lc=30.0, degenerate=True)]
    ev = P.evidence(recs)
    best = P.best_arm(ev, student="s1", objective="dpo", reference="self")
    assert best.beta == 0.01 and best.seed == 0
    stats = P.pooled(ev, best)
    assert stats.values == (12.0, 8.0) and stats.mean == 10.0
    assert "s1: β = 0.1 (LC 11.0, 1 seed(s))" == P.best_beta_line(ev, ["s1"], "self")
    assert P.best_beta_line(ev, ["s1"], "compatible") == "no runs"


def paper_like(student, best_self=0.01, best_comp=1.0):
    """A world that behaves like the paper: self optimum below 0.1 with a cliff below it; compatible helps at larger β."""
    self_lc = {10.0: 5.0, 1.0: 6.0, 0.1: 8.0, 0.05: 9.0, 0.02: 11.5, 0.01: 12.0, 0.005: 7.0, 0.001: 3.0}
    shift = {b: self_lc[b] for b in self_lc}
    if best_self != 0.01:  # move the optimum
        shift = {b: (12.0 if b == best_self else 6.0 - 0.1 * i) for i, b in enumerate(self_lc)}
    recs = [record(student, "sft", "none", None, lc=4.0)]
    recs += [record(student, beta=b, lc=v) for b, v in shift.items()]
    comp = {10.0: 13.0, 1.0: 15.0, 0.1: 13.5, 0.01: 10.0, 0.005: 8.0}
    if best_comp != 1.0:
        comp = {b: (15.0 if b == best_comp else 5.0) for b in comp}
    recs += [record(student, reference="compatible", beta=b, lc=v) for b, v in comp.items()]
    recs += [record(student, reference="incompatible", beta=b, lc=v) for b, v in {10.0: 5.0, 1.0: 6.0, 0.1: 4.0}.items()]
    return recs


# the scorecard's verdicts are tested in tests/test_chapters_practice_claims.py (records with per-prompt values)


def test_checklist_points_every_item_to_computed_evidence():
    recs = paper_like("alpha")
    recs = [replace(r, curves=tuple(curve_rows(r.beta, -5 * T, -40 * T))) if not r.is_sft else r for r in recs]
    recs.append(record("alpha", "probability", "uniform", 1.0, lc=3.0, length=80.0, curves=curve_rows(1.0, 5 * T, -5 * T)))
    ev = P.evidence(recs)
    card = scorecard(P.claims(), ev)
    cl = P.checklist(card, ev, D.trajectory_summary(recs), D.loss_vs_log2(recs), D.drift_table(recs), D.length_table(recs))
    assert list(cl.columns) == ["item", "paper", "ours", "see"]
    assert len(cl) >= 6 and cl["see"].str.len().gt(0).all() and cl["ours"].str.len().gt(0).all()
    assert "alpha 0.01" in cl["ours"].iloc[0]  # best self β, computed
    assert "best probability 3.0" in cl["ours"].iloc[5]


def test_with_replicates_reads_other_seeds(tmp_path):
    recs = []
    for seed in (0, 2):
        c = RunConfig("cpu", "char", "dpo", "self", 0.1, seed=seed)
        r = replace(record("char", beta=0.1, seed=seed), key=c.key())
        R.write_record(r, R.record_path(c, tmp_path))
        recs.append(r)
    out = P.with_replicates([recs[0]], root=tmp_path)
    assert sorted(r.seed for r in out) == [0, 2]
    assert all(isinstance(r, R.Record) for r in out)
    assert P.with_replicates([recs[0]], seeds=(0, 1), root=tmp_path) == [recs[0]]  # seed 2 not asked for


# --------------------------------------------------------------------------- figures


def test_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    recs = [record(beta=b, curves=curve_rows(b, -5 * T, -40 * T)) for b in (0.01, 0.1)]
    recs += [record(objective="sft", reference="none", beta=None),
             record(objective="probability", reference="uniform", beta=1.0, curves=curve_rows(1.0, T, -T))]
    for fig, _ in (D.plot_trajectories(recs), D.plot_loss_vs_log2(recs), D.plot_drift(D.drift_table(recs)),
                   D.plot_length(D.length_table(recs)), P.plot_sweeps(P.arms(recs))):
        assert fig.axes
