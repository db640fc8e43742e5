"""dpolib.chapters.world4: World 4's tables, gate, power, judge and cost on synthetic records and reports."""

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from record_factory import make_record

from dpolib.chapters import evidence
from dpolib.chapters import cost as COST
from dpolib.chapters import world4 as W4
from dpolib.experiments import records as R
from dpolib.experiments.lr_rule import LrCandidate, LrChoice, lr_choice_path
from dpolib.provenance import atomic_write_json

matplotlib.use("Agg")

N_PROMPTS = 300


def scores(mean, seed, sd=0.05, n=N_PROMPTS):
    """Per-prompt values around ``mean`` (a synthetic world's prompts), deterministic in ``seed``."""
    return list(np.clip(np.random.default_rng(seed).normal(mean, sd, n), 0, 1).round(4))


def arm(student, beta, world_seed, gold_shift=0.0, lc_shift=0.0, pairs="pool", **metrics):
    """A record of ``student`` at ``world_seed``: the SFT row for ``beta=None``, else DPO; the per-prompt values are
    the SFT student's prompts plus a shift (so a paired comparison sees exactly the shift, plus small noise)."""
    base = scores(0.5, world_seed)
    noise = np.random.default_rng(1000 + world_seed + int(1000 * (beta or 0))).normal(0, 0.01, N_PROMPTS)
    gold = list(np.asarray(base) + gold_shift + (noise if beta is not None else 0))
    lc = list(np.asarray(base) * 0.4 + lc_shift + (noise if beta is not None else 0))
    objective = "sft" if beta is None else "dpo"
    rec = make_record(student, objective, None, beta, world_seed, prompt_scores=gold, prompt_lc=lc, **metrics)
    return rec if pairs == "pool" else rec.with_config(pairs=pairs)


def world(gold_shift, betas=(1.0, 0.1), seeds=(0, 1, 2), students=("char", "bpe")):
    """SFT rows and DPO arms at every world seed; ``gold_shift(student, beta, seed)`` is each arm's true Δgold."""
    out = []
    for s in seeds:
        for student in students:
            out.append(arm(student, None, s))
            out += [arm(student, b, s, gold_shift(student, b, s)) for b in betas]
    return out


# ----------------------------------------------------------------------------------------------- loading


def _write(record, root):
    R.write_record(record, R.record_path(record.config, root))


def _choice(student, losses=(0.69, 0.68, 0.70)):
    cands = tuple(LrCandidate(m, 1e-5 * m, loss, 0.5 + 0.1 * i, 1.0)
                  for i, (m, loss) in enumerate(zip((0.25, 1.0, 4.0), losses)))
    best = min(cands, key=lambda c: c.val_dpo_loss)
    return LrChoice(student, "smoke", 0, 0.1, cands, best.learning_rate, best.multiplier)


def test_load_evidence_says_what_is_missing_and_reads_what_is_there(tmp_path):
    empty = W4.load_evidence("smoke", root=tmp_path)
    assert empty.rq1 == () and empty.controls == () and empty.lr_choices is None and not empty.has_records
    assert len(empty.missing) == 3
    assert "grid 'rq1'" in empty.missing[0] and "grid 'controls'" in empty.missing[1]
    assert "lr_choice.json" in empty.missing[2]

    sft = arm("char", None, 0, profile="smoke")
    dpo = arm("char", 0.1, 0, 0.1, profile="smoke")
    control = arm("char", 0.1, 0, pairs="on-policy", profile="smoke")
    for rec in (sft, dpo, control):
        _write(rec, tmp_path)
    atomic_write_json(lr_choice_path("smoke", tmp_path), {"rule": "r", "choices": {"char": _choice("char").to_dict()}})
    loaded = W4.load_evidence("smoke", root=tmp_path)
    assert len(loaded.rq1) == 2 and len(loaded.controls) == 1 and loaded.has_records
    assert loaded.lr_choices["char"].multiplier == 1.0
    assert len(loaded.missing) == 2  # both grids are incomplete, the choice is there
    with pytest.raises(ValueError, match="unknown world profile"):
        W4.load_evidence("gpu", root=tmp_path)


def test_archive_dir_and_archive_records(tmp_path):
    folder = tmp_path / "archive" / "world-x" / "cpu"
    folder.mkdir(parents=True)
    rec = make_record("char", "sft")
    (folder / "a.json").write_text(json.dumps(rec.to_dict()))
    (folder / "compatibility.json").write_text(json.dumps({"not": "a record"}))
    assert W4.archive_dir("world-x", root=tmp_path) == tmp_path / "archive" / "world-x"
    assert W4.archive_dir("no-such-world", root=tmp_path) is None
    assert [r.student for r in W4.read_archive_records(folder)] == ["char"]


# ----------------------------------------------------------------------------------------------- world 3 -> World 4


def _world3_archive(tmp_path, dirty=True):
    base = tmp_path / "world-3"
    commit = "abc+dirty" if dirty else "abc"
    report = {"profile": {"n_test_prompts": 200, "n_pref_val": 300, "dpo_learning_rate": 2.5e-5},
              "preference_data": {"train": {"source_chosen": {"careful": 60, "char-peer": 10, "char-large": 30}}},
              "design": {"writers": ["careful", "lazy"], "model_sources": {"char-peer": [], "char-large": []}},
              "git_commit": commit}
    (base / "cpu").mkdir(parents=True)
    (base / "cpu-low-lr").mkdir()
    (base / "world_report_cpu.json").write_text(json.dumps(report))
    prov = {"git_commit": commit}
    rows = {"cpu": [make_record("char", "sft", lc_win_rate=20.0, provenance=prov, seed=s) for s in (0, 1)]
            + [make_record("char", "dpo", beta=0.1, seed=s, lc_win_rate=lc, reward_accuracy=0.7, degenerate_rate=rate,
                           lc_fit={"phi": phi}, provenance=prov)
               for s, lc, rate, phi in ((0, 20.5, 0.0, -1.0), (1, 21.0, 0.2, 0.5))],
            "cpu-low-lr": [make_record("char", "sft", lc_win_rate=20.0, provenance=prov),
                           make_record("char", "dpo", beta=0.1, lc_win_rate=22.0, provenance=prov)]}
    for folder, recs in rows.items():
        for i, r in enumerate(recs):
            data = r.to_dict()
            if folder == "cpu-low-lr":
                data["profile"] = {"dpo_learning_rate": 2.5e-5 / 4}
            (base / folder / f"{i}.json").write_text(json.dumps(data))
    return base


def test_world3_facts_are_measured_on_the_archive(tmp_path):
    facts = W4.world3_facts(_world3_archive(tmp_path))
    assert (facts.n_test_prompts, facts.n_pref_val, facts.seeds) == (200, 300, (0, 1))
    assert facts.writer_share_chosen == pytest.approx(0.6) and facts.peer_share_chosen == pytest.approx(0.1)
    assert facts.best_lc_gain == pytest.approx(1.0)  # seed 1: 21.0 against its SFT's 20.0
    assert facts.lc_se_bound == pytest.approx(100 * math.sqrt(0.2 * 0.8 / 200))
    # the median over the two arms rerun at two seeds: the SFT arm (sd 0) and the DPO arm
    assert facts.seed_sd_lc == pytest.approx(np.std([20.5, 21.0], ddof=1) / 2) and facts.n_seed_arms == 2
    assert facts.reward_accuracy == pytest.approx(0.7)
    assert facts.low_lr_ratio == pytest.approx(0.25) and facts.low_lr_best_lc_gain == pytest.approx(2.0)
    assert facts.per_model_phi == (-1.0, 0.5)
    assert (facts.n_degenerate, facts.max_degenerate_rate, facts.n_records, facts.n_dirty) == (0, 0.2, 6, 7)
    assert facts.sources == "2 writers, 2 sampled models (char-large, char-peer)"
    assert W4.world3_facts(_world3_archive(tmp_path / "clean", dirty=False)).n_dirty == 0
    with pytest.raises(FileNotFoundError, match="not the world-3 archive"):
        W4.world3_facts(tmp_path / "nowhere")


def test_world3_facts_on_the_committed_archive():
    archive = W4.archive_dir("world-3")
    if archive is None:
        pytest.skip("the world-3 archive is not in this checkout")
    facts = W4.world3_facts(archive)
    assert facts.n_test_prompts == 200 and facts.n_records > 100 and facts.n_dirty == facts.n_records + 1


def test_changes_table_ties_each_reason_to_a_world3_number(tmp_path):
    facts = W4.world3_facts(_world3_archive(tmp_path))
    current = W4.World4Evidence("cpu", (0, 1, 2), (arm("char", 0.1, 0, lc_fit={"phi": 0.8, "calibrated": True}),),
                                (), None, ())
    report = {"design": {"pool": {"sibling_slots": 3, "candidates": 4}}}
    table = W4.changes_table(facts, current, report, old_degenerate_rate=0.5)
    assert list(table.columns) == ["world 3", "World 4", "why (measured on world 3)"]
    assert len(table) == 8
    why = table["why (measured on world 3)"]
    assert "60% of chosen answers came from programmatic writers" in why["candidate pool"]
    assert "+1.00 LC points" in why["test prompts"] and "2.8 points" in why["test prompts"]
    assert "from -1.00 to 0.50" in why["length-controlled win rate"]
    assert "7 of 7 world-3 files" in why["records from a clean commit"]
    assert table.loc["test prompts", "World 4"] == "2,000 per world seed"
    assert "3 world seeds" in table.loc["world seeds", "World 4"]
    assert "3 of a prompt's 4" in table.loc["candidate pool", "World 4"]
    assert "φ = 0.80" in table.loc["length-controlled win rate", "World 4"]
    assert "flagged above 50%" in table.loc["degenerate check", "world 3"]
    assert "0 of 1 present records dirty" in table.loc["records from a clean commit", "World 4"]
    blind = W4.changes_table(None, current)
    assert blind["why (measured on world 3)"].str.endswith("(world-3 archive not found)").all()
    nothing_yet = W4.changes_table(facts, W4.World4Evidence("cpu", (0, 1, 2), (), (), None, ("missing",)))
    assert nothing_yet.loc["length-controlled win rate", "World 4"].endswith("where only length varies")
    assert "0 of 0 present records" in nothing_yet.loc["records from a clean commit", "World 4"]


# ----------------------------------------------------------------------------------------------- the pool


def pool_report():
    def pool(share):
        return {"composition": {"chosen": {"sibling": share, "writer": 1 - share}, "rejected": {"sibling": 0.7,
                                                                                                "large": 0.3}},
                "distance": {"char": {"logp_per_token_chosen": -2.0, "logp_per_token_rejected": -2.5,
                                      "by_chosen_source_kind": {"sibling": {"chosen": -1.5, "rejected": -2.0}}}}}
    return {"worlds": {"0": {"pool": pool(0.6)}, "1": {"pool": pool(0.5)}}}


def test_pool_composition_and_distance_per_world_seed():
    comp = W4.pool_composition(pool_report())
    assert list(comp.columns) == ["sibling", "large", "writer"]
    assert comp.loc[(1, "chosen"), "sibling"] == 0.5 and comp.loc[(0, "chosen"), "large"] == 0.0
    dist = W4.pool_distance(pool_report())
    assert dist.loc[(0, "char", "all"), "chosen − rejected"] == pytest.approx(0.5)
    assert dist.loc[(1, "char", "sibling"), "chosen"] == -1.5
    for broken in ({}, {"worlds": {"0": {"stage_seconds": {}}}}):
        with pytest.raises(ValueError, match="older than World 4"):
            W4.pool_composition(broken)
        with pytest.raises(ValueError, match="worlds"):
            W4.pool_distance(broken)


# ----------------------------------------------------------------------------------------------- learning rate


def test_lr_table_and_sentence():
    choices = {"char": _choice("char"), "bpe": _choice("bpe", (0.70, 0.71, 0.65))}
    table = W4.lr_table(choices)
    assert table["chosen"].sum() == 2
    assert table.loc[("char", 1.0), "chosen"] and table.loc[("bpe", 4.0), "chosen"]
    assert table.loc[("bpe", 4.0), "validation DPO loss"] == 0.65
    sentence = W4.lr_sentence(choices)
    assert "char: 1 × SFT/40 = 1e-05 (validation DPO loss 0.6800, 0.0100 below the next candidate)" in sentence
    assert "in world 0" in sentence
    one = LrChoice("char", "cpu", 0, 0.1, (LrCandidate(1.0, 2.5e-5, 0.6, 0.7, 1.0),), 2.5e-5, 1.0)
    assert W4.lr_sentence({"char": one}).startswith("The rule chose, in world 0: char: 1 × SFT/40 = 2.5e-05 "
                                                   "(validation DPO loss 0.6000)")
    for fn in (W4.lr_table, W4.lr_sentence):
        with pytest.raises(ValueError, match="lr_choice.json"):
            fn({})


# ----------------------------------------------------------------------------------------------- the gate


def test_gate_agrees_when_dpo_beats_sft_in_every_world():
    records = world(lambda student, beta, seed: 0.1 if (student, beta) == ("char", 0.1) else 0.0)
    controls = [arm("char", 0.1, s, 0.0, pairs="on-policy") for s in (0, 1, 2)]
    table = W4.gate_table(records, controls)
    pooled = table[table["world"] == "pooled"].set_index(["student", "arm", "β"])
    assert pooled.loc[("char", "DPO", 0.1), "verdict"] == "DPO > SFT"
    assert pooled.loc[("char", "DPO", 0.1), "estimate"] == pytest.approx(0.1, abs=0.005)
    assert pooled.loc[("bpe", "DPO", 1.0), "verdict"] == "cannot tell"
    assert pooled.loc[("char", "on-policy control (diagnostic)", 0.1), "verdict"] == "cannot tell"
    assert set(table["world"]) == {"0", "1", "2", "pooled"}
    gate = evidence.validity_gate(records + controls)
    assert gate.passed and "passes" in gate.sentence()
    head = W4.headline(gate, W4.power_table(records))
    assert head.gate_verdict == "passes" and head.best_arm.startswith("char dpo/self β=0.1, +0.10")
    assert head.best_arm.endswith("(DPO above SFT)") and head.lc_half_width.endswith("LC points")

    shown = W4.gate_display(table)
    assert list(shown.columns) == ["world 0", "world 1", "world 2", "pooled", "verdict (pooled)"]
    assert shown.loc[("char", "DPO", "0.1"), "verdict (pooled)"] == "DPO > SFT"
    assert shown.loc[("char", "DPO", "0.1"), "pooled"].startswith("+0.10")


def test_gate_fails_and_says_cannot_tell_when_no_arm_clears_zero():
    records = world(lambda student, beta, seed: 0.0)
    gate = evidence.validity_gate(records)
    assert not gate.passed and "FAILS" in gate.sentence()
    table = W4.gate_table(records)
    lows, highs = table["low"], table["high"]
    assert ((lows <= 0) & (highs >= 0) == (table["verdict"] == "cannot tell")).all()
    assert W4.headline(gate, W4.power_table(records)).gate_verdict.startswith("fails")


def test_pooled_verdict_needs_every_world_to_agree():
    records = world(lambda student, beta, seed: (0.2 if seed < 2 else -0.02), betas=(0.1,), students=("char",))
    table = W4.gate_table(records)
    per_world = table[table["world"] != "pooled"].set_index("world")["verdict"]
    assert per_world.to_dict() == {"0": "DPO > SFT", "1": "DPO > SFT", "2": "DPO < SFT"}
    pooled = table[table["world"] == "pooled"].iloc[0]
    assert pooled["low"] > 0 and pooled["verdict"] == "cannot tell"


def test_gate_without_per_prompt_values_is_empty_and_the_headline_says_why():
    old = [make_record("char", "sft"), make_record("char", "dpo", beta=0.1)]
    assert W4.gate_table(old).empty and W4.gate_display(W4.gate_table(old)).empty
    head = W4.headline(evidence.validity_gate(old), None)
    assert head.gate_verdict.startswith("cannot be computed yet") and head.best_arm == "not available"
    assert "not committed" in W4.headline(None, None, missing="the records are not committed").gate_verdict


def test_plot_gate_marks_controls_differently():
    records = world(lambda student, beta, seed: 0.05)
    controls = [arm("char", b, s, pairs="on-policy") for s in (0, 1, 2) for b in (1.0, 0.1)]
    fig, ax = W4.plot_gate(W4.gate_table(records, controls))
    labels = ax.get_legend_handles_labels()[1]
    assert "char, on-policy control (diagnostic)" in labels and "bpe, DPO" in labels
    assert "SFT student (Δ = 0)" in labels and ax.get_xscale() == "log"
    markers = {c.get_label(): (c.lines[0].get_marker(), c.lines[0].get_markerfacecolor()) for c in ax.containers}
    assert markers["char, DPO"][0] == "o" and markers["char, on-policy control (diagnostic)"] == ("s", "white")
    matplotlib.pyplot.close(fig)


# ----------------------------------------------------------------------------------------------- power


def test_power_table_against_the_target():
    records = world(lambda student, beta, seed: 0.0)
    table = W4.power_table(records)
    assert list(table.index) == [("LC points", "per world"), ("LC points", "pooled"), ("gold", "per world"),
                                 ("gold", "pooled")]
    assert table.loc[("LC points", "per world"), "intervals"] == 4 * 3
    assert table.loc[("LC points", "pooled"), "intervals"] == 4
    # pooling three worlds narrows the interval by about sqrt(3)
    assert table.loc[("gold", "pooled"), "median"] < table.loc[("gold", "per world"), "median"]
    assert table.loc[("LC points", "pooled"), "target"] == W4.TARGET_LC_HALF_WIDTH
    assert table.loc[("LC points", "pooled"), "median within target"] is True  # noise 0.01 x 100 / sqrt(300)
    assert table.loc[("gold", "pooled"), "median within target"] is None
    empty = W4.power_table([])
    assert math.isnan(empty.loc[("gold", "pooled"), "median"]) and empty["intervals"].sum() == 0


# ----------------------------------------------------------------------------------------------- the judge


def test_judge_calibration_reads_the_records_fit():
    fits = [{"phi": 1.0, "length_sd": 30.0, "calibrated": True, "per_model_phi": p} for p in (0.2, 0.6)]
    recs = [make_record("char", "dpo", lc_fit=f) for f in fits] + [make_record("bpe", "sft", lc_fit={"phi": 9.0})]
    cal = W4.judge_calibration(recs)
    assert (cal.phi, cal.length_sd, cal.n_records, cal.n_phi_values) == (1.0, 30.0, 2, 1)
    assert (cal.per_model_phi_min, cal.per_model_phi_max) == (0.2, 0.6)
    with pytest.raises(ValueError, match="calibrated"):
        W4.judge_calibration([make_record("char", "sft", lc_fit={"phi": 0.3})])


def test_degenerate_table_shares_per_reason():
    recs = [make_record("char", "sft", prompt_scores=[0.5] * 10, degenerate_rate=0.2, degenerate=True,
                        degenerate_reasons={"unterminated": 2, "loop": 1}),
            make_record("bpe", "sft", prompt_scores=[0.5] * 10, degenerate_rate=0.05)]
    table = W4.degenerate_table(recs, threshold=0.1)
    assert list(table.columns) == ["degenerate share", "flagged", "above threshold", "reason: loop",
                                   "reason: unterminated"]
    row = table.loc["char/sft/none/beta=inf/seed=0"]
    assert row["reason: unterminated"] == 0.2 and row["reason: loop"] == 0.1 and row["above threshold"]
    assert table.loc["bpe/sft/none/beta=inf/seed=0", "reason: loop"] == 0.0
    assert not table.loc["bpe/sft/none/beta=inf/seed=0", "above threshold"]
    old = W4.degenerate_table([make_record("char", "sft", degenerate_reasons={"loop": 3})], 0.1)
    assert math.isnan(old.iloc[0]["reason: loop"])


# ----------------------------------------------------------------------------------------------- cost


def test_cost_table_and_missing_stage_times():
    table = COST.cost_table({"reproduction_seconds": {"world": 3600.0, "grid rq1": 10800.0}})
    assert table.loc["total", "seconds"] == 14400.0 and table.loc["grid rq1", "hours"] == 3.0
    assert table.loc["world", "share"] == 0.25 and table.loc["total", "share"] == 1.0
    for report in ({}, {"reproduction_seconds": {}}):
        with pytest.raises(ValueError, match="reproduction_seconds"):
            COST.cost_table(report)


def test_results_size_walks_the_folder(tmp_path):
    (tmp_path / "lab" / "cpu").mkdir(parents=True)
    (tmp_path / "lab" / "cpu" / "a.json").write_bytes(b"x" * 1000)
    (tmp_path / "lab" / "cpu" / "b.json").write_bytes(b"x" * 500)
    (tmp_path / "lab" / "report.json").write_bytes(b"x" * 2000)
    size = COST.results_size(tmp_path)
    assert (size.n_files, size.n_bytes) == (3, 3500)
    table = size.table()
    assert list(table.index) == ["lab", "lab/cpu"] and table.loc["lab/cpu", "files"] == 2
    assert table.loc["lab", "MB"] == pytest.approx(0.002)
    with pytest.raises(FileNotFoundError, match="no results folder"):
        COST.results_size(tmp_path / "nowhere")


def test_machines_in_order_of_first_appearance():
    recs = [make_record(provenance={"device": d}) for d in ("cpu: a", "cpu: b", "cpu: a")] + [make_record()]
    assert COST.machines(recs) == ("cpu: a", "cpu: b", "unknown")


def test_reproduction_cost_of_one_schedule_and_of_stages():
    scheduled = COST.reproduction_cost({
        "reproduction_seconds": {"whole reproduction (one schedule, 2 workers)": 1500.0},
        "reproduction_seconds_total": 1500.0, "reproduction_workers": 2,
        "reproduction_job_seconds": {"models": 1800.0, "run": 1200.0}})
    assert scheduled.scheduled and scheduled.workers == 2 and scheduled.wall_seconds == 1500.0
    assert scheduled.within_target  # 25 minutes
    assert scheduled.stages.loc[COST.JOB_STAGES["models"], "share"] == pytest.approx(0.6)
    staged = COST.reproduction_cost({"reproduction_seconds": {"world": 1800.0, "grid rq1": 1800.0}})
    assert not staged.scheduled and staged.wall_seconds == 3600.0 and not staged.within_target
    assert list(staged.stages.index) == ["world", "grid rq1"]
    with pytest.raises(ValueError, match="reproduction_seconds"):
        COST.reproduction_cost({})


def test_opening_table_answers_each_question_from_its_measurement():
    head = W4.Headline("passes", "bpe DPO β = 0.1, +0.058 [+0.052, +0.063] (DPO above SFT)", "0.38 LC points", "0.006")
    power = pd.DataFrame({"median": [0.38, 0.006]},
                         index=pd.MultiIndex.from_tuples([("LC points", "pooled"), ("gold", "pooled")]))
    fast = COST.reproduction_cost({"reproduction_seconds_total": 1500.0, "reproduction_job_seconds": {"run": 3000.0}})
    slow = COST.reproduction_cost({"reproduction_seconds_total": 2091.0, "reproduction_job_seconds": {"run": 4000.0}})
    table = W4.opening_table(head, power, fast)
    assert list(table["verdict"]) == ["passes", "yes", "yes"]
    assert list(W4.opening_table(head, power, slow)["verdict"])[2] == "no"
    wide = power.assign(median=[1.5, 0.02])
    assert list(W4.opening_table(W4.Headline("fails (no arm)", "x", "1.5 LC points", "0.02"), wide, None)["verdict"]) \
        == ["fails", "no", "not available"]
