"""dpolib.chapters.rq1 (+ rq1_tokens, rq1_figures): the RQ1 chapter's tables, token statistics and seed comparison,
on synthetic records (the claims are tested in test_chapters_rq1_claims.py)."""

import math
from dataclasses import replace

import pytest
from record_factory import make_record

from dpolib import scorecard as sc
from dpolib.chapters import common, rq1, rq1_claims, rq1_figures, rq1_tokens

BETAS = (0.1, 0.05, 0.02, 0.01, 0.005, 0.001)


def record(student, beta, lc=10.0, degenerate=False, policy_acc=0.5, reward_acc=0.7, length=20.0,
           tokens=None, eos="</s>", seed=0):
    """A record with the fields rq1 reads (``beta=None``: the SFT row)."""
    tokens = tokens if tokens is not None else {eos: {"count": 600, "mean_diff": 0.0}, "a": {"count": 100, "mean_diff": 0.0}}
    return make_record(student, "sft" if beta is None else "dpo", beta=beta, seed=seed,
                       curves=[{"rewards/accuracies": 0.8, "step": 1}],
                       lc_win_rate=lc, gold_score=lc / 100, degenerate=degenerate, policy_accuracy=policy_acc,
                       reward_accuracy=0.5 if beta is None else reward_acc, mean_length_tokens=length,
                       eos_token=eos, token_logp_diff=tokens)


def with_metrics(rec, **changes):
    """A copy of ``rec`` with metric fields changed (records are frozen)."""
    return replace(rec, metrics=replace(rec.metrics, **changes))


def paper_like(student="s1", eos_first=True):
    """A sweep shaped like the paper's: interior optimum at 0.01, degeneration at 0.001, accuracy and length rising
    as β falls, EOS most down-weighted (more so at small β)."""
    lc = {0.1: 14.0, 0.05: 13.3, 0.02: 16.0, 0.01: 16.3, 0.005: 12.0, 0.001: 3.0}
    recs = [record(student, None, lc=7.6, policy_acc=0.43, length=15.0)]
    for i, b in enumerate(BETAS):
        scale = i + 1
        tokens = {
            "</s>": {"count": 600, "mean_diff": -3.0 * scale if eos_first else -0.1},
            "sure": {"count": 200, "mean_diff": -1.0 * scale},
            "x": {"count": 5000, "mean_diff": -0.05 * scale},
            "rare": {"count": 3, "mean_diff": -50.0},  # below MIN_COUNT: never ranked
        }
        recs.append(record(student, b, lc=lc[b], degenerate=(b == 0.001), policy_acc=0.49 + 0.04 * i,
                           length=20 + 5 * i, tokens=tokens))
    return recs


def test_students_and_sweep_order():
    recs = paper_like("a") + paper_like("b")
    assert rq1.students(recs) == ["a", "b"]
    betas = list(rq1.sweep_records(recs, "a"))
    assert betas[0] == math.inf and betas[1:] == sorted(BETAS, reverse=True)
    frame = rq1.sweep_frame(recs, "lc_win_rate")
    assert list(frame.columns) == ["a", "b"] and frame.shape == (7, 2)


def test_students_ignore_other_references():
    recs = paper_like("a") + [record("c", 0.1).with_config(reference="compatible")]
    assert rq1.students(recs) == ["a"]


def test_sweep_keeps_the_lowest_seed_of_each_beta():
    recs = paper_like() + [record("s1", 0.01, lc=99.0, seed=1)]
    assert rq1.sweep_records(recs, "s1")[0.01].seed == 0
    assert rq1.best_beta(recs, "s1") == 0.01


def test_best_beta_skips_degenerate_runs():
    recs = paper_like()
    assert rq1.best_beta(recs, "s1") == 0.01
    recs[4] = with_metrics(recs[4], degenerate=True)  # β = 0.01 (index 0 is SFT)
    assert recs[4].beta == 0.01
    assert rq1.best_beta(recs, "s1") == 0.02
    assert rq1.best_beta(recs, "s1", metric="gold_score") == 0.02
    every = [with_metrics(r, degenerate=True) if not r.is_sft else r for r in recs]
    assert rq1.best_beta(every, "s1") is None


def test_best_beta_is_the_records_rule():
    recs = paper_like()
    dpo = [r for r in recs if not r.is_sft]
    assert rq1.best_beta(recs, "s1") == common.best_record(dpo).beta


def test_claims_see_every_self_reference_run_including_the_rq3_grid():
    """RQ3's grid adds self-reference runs at β = 1 and 10: they join the sweep, the best β and the claims."""
    recs = paper_like()
    extra = [record("s1", 10.0, lc=20.0, policy_acc=0.3, length=12.0), record("s1", 1.0, lc=19.0, policy_acc=0.35)]
    ev = rq1.evidence(recs + extra, replicates_of=lambda r: [r])
    d = ev["per_student"]["s1"]
    assert d["betas"][:2] == [10.0, 1.0] and len(d["betas"]) == 8
    assert d["best_beta"] == 10.0
    assert rq1_claims.student_sweep(recs + extra, "s1").best_beta == 10.0
    t = rq1.table1(recs + extra, with_paper=False)
    assert list(t.index[:3]) == ["∞ (SFT)", "10", "1"] and ("10", "ours: s1") in t.attrs["best"]


def test_table1_shape_markers_and_paper_columns():
    recs = paper_like("a") + paper_like("b")
    t = rq1.table1(recs)
    assert t.shape == (7, 4)
    assert list(t.index) == ["∞ (SFT)", "0.1", "0.05", "0.02", "0.01", "0.005", "0.001"]
    assert t.loc["0.001", "ours: a"] == "[degenerate]"
    assert t.loc["0.01", "ours: a"] == "16.30"
    assert t.loc["0.005", "paper: tulu-2-7b"] == "[degenerate]"  # the paper's own marker
    assert t.loc["0.001", "paper: mistral-7b"] == "–"  # not in the paper's grid
    assert t.loc["∞ (SFT)", "paper: mistral-7b"] == "7.57"
    assert ("0.01", "ours: a") in t.attrs["best"]
    assert "[degenerate]" not in rq1.table1([r for r in recs if not r.degenerate], with_paper=False).to_numpy()
    rq1.styled(t).to_html()  # renders


def test_table1_labels_known_students():
    t = rq1.table1(paper_like("char"), with_paper=False)
    assert list(t.columns) == [f"ours: {common.STUDENT_LABELS['char']}"]


def test_table2_columns_and_sft_row():
    t = rq1.table2(paper_like("a"), with_paper=False)
    assert list(t.columns) == ["ours: a r_θ", "ours: a p_θ"]
    assert t.loc["∞ (SFT)", "ours: a r_θ"] == "0.500"
    assert t.loc["0.001", "ours: a p_θ"].endswith("†")  # degenerate, still scored


def test_eos_rank_respects_min_count_and_order():
    tokens = {"</s>": {"count": 600, "mean_diff": -2.0}, "a": {"count": 50, "mean_diff": -3.0},
              "b": {"count": 10, "mean_diff": -9.0}, "c": {"count": 400, "mean_diff": -1.0}}
    r = record("s", 0.01, tokens=tokens)
    assert rq1_tokens.eos_rank(r, min_count=30) == (2, 3)  # a, EOS, c; b is too rare
    assert rq1_tokens.eos_rank(r, min_count=1) == (3, 4)
    assert rq1_tokens.eos_rank(r, min_count=100) == (1, 2)
    assert rq1_tokens.eos_rank(r, min_count=1000) == (None, 0)
    assert rq1_tokens.eos_diff(r) == -2.0
    assert math.isnan(rq1_tokens.eos_diff(record("s", 0.01, tokens={"a": {"count": 5, "mean_diff": -1.0}})))
    top = rq1_tokens.down_weighted(r, k=2, min_count=30)
    assert list(top["token"]) == ["a", "</s>"] and list(top["rank"]) == [1, 2] and top["is_eos"].tolist() == [False, True]


def test_eos_ranks_table():
    ranks = rq1_tokens.eos_ranks(paper_like("a"))
    assert list(ranks["β"]) == sorted(BETAS, reverse=True)  # DPO runs only, no SFT row
    assert (ranks["EOS rank"] == 1).all() and ranks["most down-weighted token"].iloc[0].startswith("EOS")


def test_token_label_marks_eos_and_whitespace():
    assert rq1_tokens.token_label("</s>", "</s>").startswith("EOS")
    assert rq1_tokens.token_label(" ") == "'␣'" and rq1_tokens.token_label("\n") == "'\\n'"


def test_token_histogram_weights_by_count():
    tokens = {"a": {"count": 9, "mean_diff": -0.5}, "b": {"count": 1, "mean_diff": -3.2}}
    r = record("s", 0.01, tokens=tokens)
    h = rq1_tokens.token_histogram(r)
    assert h.loc[-1.0] == pytest.approx(0.9) and h.loc[-4.0] == pytest.approx(0.1) and h.sum() == pytest.approx(1.0)
    u = rq1_tokens.token_histogram(r, weighted=False)
    assert u.loc[-1.0] == pytest.approx(0.5)


def test_imbalance():
    tokens = {"a": {"count": 100, "mean_diff": -0.1}, "b": {"count": 100, "mean_diff": -0.1}, "c": {"count": 50, "mean_diff": -5.0}}
    ext, ratio = rq1_tokens.imbalance(record("s", 0.01, tokens=tokens), min_count=30)
    assert ext == -5.0
    assert ratio == pytest.approx(5.0 / ((100 * 0.1 + 100 * 0.1 + 50 * 5.0) / 250))
    assert math.isnan(rq1_tokens.imbalance(record("s", None))[1])  # untrained: nothing moved


def test_train_reward_accuracy_reads_the_curves():
    r = record("s", 0.01)
    assert rq1.train_reward_accuracy(r) == pytest.approx(0.8)
    assert math.isnan(rq1.train_reward_accuracy(replace(r, curves=())))


# --------------------------------------------------------------------------- seeds


def reps_from(pool):
    def replicates(rec):
        return [r for r in pool if r.student == rec.student and r.objective == rec.objective and r.beta == rec.beta]
    return replicates


def test_headline_with_one_seed_says_so():
    recs = paper_like()
    head = rq1.headline(recs, replicates_of=lambda r: [r])
    assert set(head["arm"]) == set(rq1.HEADLINE_ARMS)
    assert (head["n"] == 1).all() and head["sd"].isna().all()
    row = rq1.arm_of(head, "s1", "best β")
    assert row["β"] == 0.01 and isinstance(row["stats"], common.ArmStats)
    c = common.compare(row["stats"], rq1.arm_of(head, "s1", "SFT")["stats"])
    assert c.within_spread is None
    assert "unknown" in rq1.versus(head, "s1", "best β", "SFT")
    assert rq1.arm_of(head, "s1", "nope") is None
    assert "not both available" in rq1.versus(head, "s1", "best β", "nope")


def test_compare_within_and_outside_the_spread():
    recs = paper_like()
    extra = [record("s1", None, lc=v, seed=s) for s, v in ((1, 7.0), (2, 8.2))]
    far = [record("s1", 0.01, lc=v, seed=s) for s, v in ((1, 16.0), (2, 16.6))]
    head = rq1.headline(recs, replicates_of=reps_from(recs + extra + far))
    row = rq1.arm_of(head, "s1", "best β")
    assert row["n"] == 3 and row["seeds"] == (0, 1, 2)
    c = common.compare(row["stats"], rq1.arm_of(head, "s1", "SFT")["stats"])
    assert c.within_spread is False and "exceeds" in rq1.versus(head, "s1", "best β", "SFT")
    near = [record("s1", 0.01, lc=v, seed=s) for s, v in ((1, 7.5), (2, 9.0))]
    head = rq1.headline(recs, replicates_of=reps_from(recs + extra + near))
    c = common.compare(rq1.arm_of(head, "s1", "best β")["stats"], rq1.arm_of(head, "s1", "SFT")["stats"])
    assert c.within_spread is True and "within" in rq1.versus(head, "s1", "best β", "SFT")


def test_headline_pools_degenerate_seeds():
    """The one seed-pooling rule: a degenerate seed is counted, not dropped."""
    recs = paper_like()
    pool = recs + [record("s1", 0.01, lc=v, seed=s, degenerate=(s == 2)) for s, v in ((1, 15.0), (2, 1.0))]
    row = rq1.arm_of(rq1.headline(recs, replicates_of=reps_from(pool)), "s1", "best β")
    assert row["n"] == 3 and row["n_degenerate"] == 1 and row["mean"] == pytest.approx((16.3 + 15.0 + 1.0) / 3)


def test_compare_when_best_is_the_customary_beta():
    recs = paper_like()
    recs[1] = with_metrics(recs[1], lc_win_rate=99.0)  # β = 0.1 becomes best
    head = rq1.headline(recs, replicates_of=lambda r: [r])
    assert "same run" in rq1.versus(head, "s1", "best β", "β = 0.1")


# --------------------------------------------------------------------------- figures


def test_figures_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    recs = paper_like("a") + paper_like("b")
    rq1_figures.plot_scores(recs)
    rq1_figures.plot_accuracy(recs)
    rq1_tokens.plot_token_distribution(recs)
    fig, axes = rq1_tokens.plot_down_weighted(recs, k=1)
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels[0].startswith("EOS")
    rq1_figures.plot_length(recs)
    rq1_figures.plot_headline(rq1.headline(recs, replicates_of=lambda r: [r]))


def test_down_weighted_figure_adds_eos_with_its_rank():
    import matplotlib

    matplotlib.use("Agg")
    fig, axes = rq1_tokens.plot_down_weighted(paper_like(eos_first=False), k=1)
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert len(labels) == 2 and labels[-1].startswith("EOS") and "rank" in labels[-1]


# --------------------------------------------------------------------------- committed records


def test_on_committed_cpu_records_if_present():
    from dpolib.experiments import records

    recs = records.load_grid("rq1", "cpu")
    if len(recs) < 4:
        pytest.skip("no committed cpu RQ1 records")
    ev = rq1_claims.evidence(recs, replicates_of=lambda r: [r])
    card = sc.scorecard(rq1_claims.CLAIMS, ev)
    assert len(card) == len(rq1_claims.CLAIMS) and set(card["verdict"]) <= set(sc.OUTCOMES)
    t1 = rq1.table1(recs)
    assert t1.shape[0] == len({b for s in rq1.students(recs) for b in rq1.sweep_records(recs, s)})
    for s in rq1.students(recs):
        for b, r in rq1.sweep_records(recs, s).items():
            if b != math.inf:
                rank, n = rq1_tokens.eos_rank(r)
                assert rank is None or 1 <= rank <= n
    assert isinstance(rq1_claims.reasons(card, ev), str)
