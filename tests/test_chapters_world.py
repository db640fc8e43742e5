"""dpolib.chapters.world: the controlled-world chapter's tables, on a synthetic report and on the committed one."""

import json
import math

import pytest

from record_factory import make_record

from dpolib.chapters import world as W
from dpolib.experiments.records import RecordError
from dpolib.world import task
from dpolib.world.writers import SOURCE_POLICIES

MODELS = ("char/small", "char/large", "bpe/small", "bpe/large")
#: The annotator section of a world report (the values dpolib.world.pairs uses).
ANNOTATOR = {"length_bias": 0.1, "length_scale_chars": 40.0, "noise_sd": 0.1}


def synthetic_report(date="2026-01-01T00:00:00+00:00", filler=(0.2, 0.4)):
    """A minimal world report with every section the module reads (the shape of write_world_report's JSON)."""
    gold = {"char/small": 0.6, "char/large": 0.9, "bpe/small": 0.4, "bpe/large": 0.85}
    stage_seconds = {}
    for m in MODELS:
        for stage in ("pretrain", "sft") + (("peer",) if m.endswith("small") else ()):
            stage_seconds[f"{m}/{stage}"] = {"train_seconds": 10.0 if stage == "pretrain" else 2.0,
                                             "final_loss": 0.5, "n_params": 1000 if m.endswith("small") else 5000}
    split = {
        "n_pairs": 100,
        "chars_chosen": {"mean": 30.0, "median": 25.0}, "chars_rejected": {"mean": 20.0, "median": 18.0},
        "tokens_bpe_chosen": {"mean": 12.0, "median": 10.0}, "tokens_bpe_rejected": {"mean": 9.0, "median": 8.0},
        "frac_chosen_longer": 0.6, "frac_equal_length": 0.1, "agreement": 0.8, "gold_ties": 0.05, "disagreement": 0.15,
        "gold_chosen_mean": 0.9, "gold_rejected_mean": 0.5,
        "filler_rate_chosen": filler[0], "filler_rate_rejected": filler[1],
        "degenerate_rate_chosen": 0.0, "degenerate_rate_rejected": 0.1,
        "source_chosen": {"careful": 50, "thorough": 30, "char-large": 20},
        "source_rejected": {"lazy": 40, "runon": 35, "careful": 5, "bpe-peer": 20},
        "ultrafeedback_direction": "same direction here",
    }
    return {
        "profile": {"name": "cpu", "small_layers": 2, "small_hidden": 48, "large_layers": 3, "large_hidden": 96,
                    "bpe_vocab_size": 384, "n_pref_train": 100, "n_pref_val": 20, "n_test_prompts": 50},
        "date": date,
        "git_commit": "abc",
        "versions": {"torch": "x", "transformers": "y", "trl": "z"},
        "machine": {"cpu_threads": 1, "platform": "test"},
        "stage_seconds": stage_seconds,
        "world_train_seconds_total": sum(s["train_seconds"] for s in stage_seconds.values()),
        "data_seconds": 0.5,
        "sft_quality": {m: {"mean_gold": g, "gold_by_kind": {k: g for k in task.KINDS}, "frac_terminated": 1.0,
                            "mean_chars": 12.0, "filler_rate": 0.3, "degenerate_rate": 0.0} for m, g in gold.items()},
        "preference_data": {"train": split, "validation": dict(split, n_pairs=20)},
        "compatibility": {
            "char/small vs char/large": {"logp_corr": 0.99, "margin_corr": 0.98},
            "char/small vs bpe/large": {"logp_corr": 0.8, "margin_corr": 0.7},
            "bpe/small vs bpe/large": {"logp_corr": 0.97, "margin_corr": 0.96},
            "bpe/small vs char/small": {"logp_corr": 0.81, "margin_corr": 0.75},
            "char/small ranking_accuracy": 0.45,
            "bpe/large ranking_accuracy": 0.41,
        },
        "annotator": ANNOTATOR,
        "design": {"model_sources": {"char-large": ["char", "large", "sft"], "bpe-peer": ["bpe", "small", "peer"]}},
    }


def record(student, beta, lc, gold=0.5, degenerate=False, seed=0, reference=None):
    """A typed record: the SFT row for ``beta=None``, else DPO (self reference unless given)."""
    objective = "sft" if beta is None else "dpo"
    return make_record(student, objective, reference, beta, seed, lc_win_rate=lc, gold_score=gold, degenerate=degenerate)


def archived(student, beta, lc, gold=0.5, degenerate=False, seed=0):
    """An archived record as world-2 wrote it: a config and only the metrics of its day."""
    objective = "sft" if beta is None else "dpo"
    return {"config": {"profile": "cpu", "student": student, "objective": objective,
                       "reference": "none" if beta is None else "self", "beta": beta, "loss": "sigmoid", "seed": seed},
            "metrics": {"lc_win_rate": lc, "gold_score": gold, "degenerate": degenerate}}


# ----------------------------------------------------------------------------------------------- loading


def test_load_report_falls_back_with_a_note(tmp_path):
    (tmp_path / "world_report_cpu.json").write_text(json.dumps(synthetic_report()))
    own = W.load_report("cpu", root=tmp_path)
    assert own.profile == "cpu" and own.note is None
    other = W.load_report("gpu", root=tmp_path)
    assert other.profile == "cpu" and other.requested == "gpu"
    assert "world_report_gpu.json is missing" in other.note
    with pytest.raises(FileNotFoundError, match="write_world_report"):
        W.load_report("smoke", root=tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------- tables


def test_sft_quality_students_first_and_gold_by_kind():
    rep = synthetic_report()
    t = W.sft_quality_table(rep)
    assert list(t.index) == ["char student", "bpe student", "char large", "bpe large"]
    assert t.loc["bpe student", "mean gold"] == 0.4 and t.loc["char large", "role"].startswith("large")
    g = W.gold_by_kind(rep)
    assert list(g.index) == list(task.KINDS) + ["all"]
    assert g.loc["all", "char large"] == 0.9


def test_model_and_stage_tables():
    rep = synthetic_report()
    m = W.model_table(rep)
    assert m.loc[("char", "small"), "parameters"] == 1000
    assert math.isnan(m.loc[("bpe", "large"), "peer train seconds"])  # no peer of a large model
    s = W.stage_table(rep)
    assert s.loc["char/small/peer", "seconds"] == 2.0
    assert s.loc["all model training", "seconds"] == rep["world_train_seconds_total"]


def test_preference_tables():
    rep = synthetic_report()
    summary = W.preference_summary(rep)
    assert summary["filler rate, chosen"] == 0.2 and summary["pairs"] == 100
    lengths = W.preference_lengths(rep)
    assert lengths.loc[("characters", "mean"), "chosen − rejected"] == 10.0
    assert ("bpe tokens", "median") in lengths.index
    mix = W.source_mix(rep)
    assert mix["chosen share"].sum() == pytest.approx(1.0) and mix["rejected share"].sum() == pytest.approx(1.0)
    assert mix.loc["char-large", "type"] == "model" and mix.loc["careful", "type"] == "writer"
    assert mix.loc["careful", "net"] == pytest.approx(0.45)
    assert list(mix.index)[:4] == [s for s in SOURCE_POLICIES if s in mix.index][:4]  # writers first
    assert list(mix.index)[-2:] == ["char-large", "bpe-peer"]  # models after the writers, in the design's order
    no_design = W.source_mix({k: v for k, v in rep.items() if k != "design"})
    assert no_design.loc["bpe-peer", "type"] == "model" and list(no_design.index)[-2:] == ["bpe-peer", "char-large"]


def test_compatibility_table_parses_pairs():
    rep = synthetic_report()
    c = W.compatibility_table(rep)
    assert c.loc[("char student", "char large"), "relation"] == "same family, larger"
    assert c.loc[("char student", "bpe large"), "relation"] == "other family, larger"
    assert c.loc[("bpe student", "char student"), "relation"] == "other family, same size"
    assert len(c) == 4  # ranking-accuracy entries are not pairs
    acc = W.ranking_accuracy_table(rep)
    assert dict(acc) == {"char student": 0.45, "bpe large": 0.41}


def test_plots_draw_one_bar_per_model_and_kind():
    rep = synthetic_report()
    fig, ax = W.plot_gold_by_kind(rep)
    assert len(ax.patches) == 4 * (len(task.KINDS) + 1)
    fig, ax = W.plot_source_mix(rep)
    assert len(ax.patches) == 2 * len(W.source_mix(rep))


# ----------------------------------------------------------------------------------------------- task language


def test_example_responses_are_scored_by_gold():
    p = task.make_prompt("sort", (7, 2, 9, 4))
    ex = W.example_responses(p, ANNOTATOR).set_index("source")
    assert list(ex.index) == list(SOURCE_POLICIES)
    assert ex.loc["careful", "gold"] == 1.0 and ex.loc["thorough", "gold"] == 1.0
    assert ex.loc["chatty", "gold"] < 1.0  # a filler costs gold
    assert ex.loc["thorough", "annotator (mean)"] > ex.loc["careful", "annotator (mean)"]  # length at no gold cost
    for source, row in ex.iterrows():
        assert row["gold"] == task.gold_score(p, row["response"])
    assert W.example_responses(p, ANNOTATOR).equals(W.example_responses(p, ANNOTATOR))  # deterministic
    for source, row in ex.iterrows():  # gold plus the report's length bias, saturating at twice the scale
        assert row["annotator (mean)"] == pytest.approx(row["gold"] + 0.1 * min(row["chars"] / 40.0, 2.0))


def test_writer_table_follows_the_filler_penalty(monkeypatch):
    now = W.writer_table(ANNOTATOR, n_prompts=60)
    assert now.loc["careful", "all"] == 1.0 and now.loc["careful", "filler rate"] == 0.0
    monkeypatch.setattr(task, "FILLER_PENALTY", 0.0)
    free = W.writer_table(ANNOTATOR, n_prompts=60)
    assert free.loc["chatty", "all"] > now.loc["chatty", "all"]
    assert free.loc["careful", "all"] == now.loc["careful", "all"]


def test_families_table_renders_each_template():
    t = W.families_table(synthetic_report())
    assert "<|im_start|>user" in t.loc["chat template (one turn)", "bpe"]
    assert "<|user|>" in t.loc["chat template (one turn)", "char"]
    assert t.loc["small model", "char"].startswith("1,000 parameters")


# ----------------------------------------------------------------------------------------------- history


def test_rq1_outcome_skips_degenerate_other_seeds_and_other_references():
    recs = [
        record("char", None, 30.0, gold=0.66),
        record("char", 0.1, 29.0), record("char", 0.01, 40.0, degenerate=True), record("char", 0.05, 35.0, seed=1),
        record("char", 1.0, 50.0, reference="compatible"),
        record("bpe", None, 10.0), record("bpe", 0.1, 12.0, gold=0.5),
    ]
    out = W.rq1_outcome(recs).set_index("student")
    assert list(out.index) == ["char", "bpe"]
    assert out.loc["char", "best DPO LC"] == 29.0 and out.loc["char", "best β"] == 0.1
    assert not bool(out.loc["char", "DPO beats SFT"])
    assert out.loc["char", "degenerate runs"] == 1 and out.loc["char", "βs tried"] == 2
    assert bool(out.loc["bpe", "DPO beats SFT"]) and out.loc["bpe", "DPO gold"] == 0.5
    assert W.rq1_outcome([]).empty


def test_world_history_reads_archives_and_notes_a_stale_current_report(tmp_path):
    old = tmp_path / "archive" / "world-2"
    (old / "cpu").mkdir(parents=True)
    (old / "world_report_cpu.json").write_text(json.dumps(synthetic_report(date="D1", filler=(0.6, 0.3))))
    for i, r in enumerate([archived("char", None, 30.0), archived("char", 0.1, 25.0)]):
        (old / "cpu" / f"{i}.json").write_text(json.dumps(r))
    worlds = W.archived_worlds(tmp_path)
    assert [w["name"] for w in worlds] == ["world-2"] and len(worlds[0]["records"]) == 2

    table, notes = W.world_history([], synthetic_report(date="D1"), root=tmp_path)
    assert list(table["world"]) == ["world-2", "current"]
    assert table.loc[0, "filler rate chosen"] == 0.6 and not bool(table.loc[0, "DPO beats SFT"])
    assert table.loc[0, "what changed"] == W.WORLD_CHANGES["world-2"]
    assert any("not been rebuilt" in n for n in notes) and any("'current'" in n for n in notes)

    fresh, notes = W.world_history([record("char", None, 30.0), record("char", 0.1, 33.0)],
                                   synthetic_report(date="D2"), root=tmp_path)
    assert not notes
    assert bool(fresh.loc[fresh["world"] == "current", "DPO beats SFT"].iloc[0])
    assert W.dpo_wins(fresh, "current") == (1, 1) and W.dpo_wins(fresh, "world-2") == (0, 1)
    assert W.dpo_wins(table, "current") == (0, 0)


def test_archive_reader_types_old_and_current_records(tmp_path):
    full = record("char", 0.1, 25.0, gold=0.7)
    (tmp_path / "a.json").write_text(json.dumps(full.to_dict()))
    (tmp_path / "b.json").write_text(json.dumps(archived("bpe", 0.01, 12.0, degenerate=True)))
    a, b = W.read_archived_records(tmp_path)
    assert a.metrics == full.metrics and a.path == tmp_path / "a.json"  # a valid record is read as it is
    assert (b.student, b.beta, b.lc, b.degenerate) == ("bpe", 0.01, 12.0, True)
    assert b.metrics.seq_logratio is None  # a field added after the record was written reads as None
    bad = archived("char", 0.1, 20.0)
    del bad["metrics"]["gold_score"]
    (tmp_path / "c.json").write_text(json.dumps(bad))
    with pytest.raises(RecordError, match="c.json.*gold_score"):
        W.read_archived_records(tmp_path)


def test_archives_are_ordered_by_report_date_and_skip_compatibility(tmp_path):
    for name, date in (("world-3", "2026-11-25T12:26"), ("world-3a", "2026-11-25T11:56"), ("world-2", "2026-11-25T10:54")):
        (tmp_path / "archive" / name / "cpu").mkdir(parents=True)
        (tmp_path / "archive" / name / "world_report_cpu.json").write_text(json.dumps(synthetic_report(date=date)))
        (tmp_path / "archive" / name / "cpu" / "0.json").write_text(json.dumps(archived("char", None, 30.0)))
    (tmp_path / "archive" / "world-3" / "cpu" / "compatibility.json").write_text(json.dumps({"measures": {}}))
    worlds = W.archived_worlds(tmp_path)
    assert [w["name"] for w in worlds] == ["world-2", "world-3a", "world-3"]  # not the folder names' order
    assert [len(w["records"]) for w in worlds] == [1, 1, 1]  # compatibility.json is not a run record
    table, _ = W.world_history([], None, root=tmp_path)
    assert list(table["world"]) == ["world-2", "world-3a", "world-3", "current"]
    assert table.loc[2, "what changed"] == W.WORLD_CHANGES["world-3"]


def test_committed_archives_read_as_records():
    worlds = {w["name"]: w for w in W.archived_worlds()}
    assert {"world-2", "world-3a", "world-3"} <= set(worlds)
    assert [w["name"] for w in W.archived_worlds()][:3] == ["world-2", "world-3a", "world-3"]
    for w in worlds.values():
        assert w["records"] and w["report"] is not None and w["readme"]
        assert not W.rq1_outcome(w["records"]).empty
    assert len(worlds["world-3"]["records"]) == 80  # the cpu grids' records; its compatibility.json is skipped
    assert len(W.read_archived_records(worlds["world-3"]["path"] / "cpu-low-lr")) == 54


# ----------------------------------------------------------------------------------------------- committed report


def test_committed_cpu_report_tabulates():
    from dpolib import paths

    if not paths.world_report_path("cpu").exists():
        pytest.skip("no committed cpu world report: world-3's is archived under results/lab/archive/world-3 "
                    "and World 4's is not committed yet")
    loaded = W.load_report("cpu")
    assert loaded.profile == "cpu" and loaded.note is None
    _tabulates(loaded.report)


def test_archived_world_3_report_tabulates():
    """World-3's report, archived: the chapter's tables still read it (the live cpu report is absent until World 4's)."""
    from dpolib import paths

    loaded = W.load_report("cpu", root=paths.results_root() / "archive" / "world-3")
    assert loaded.report["design"]["code_version"] == "world-3"
    _tabulates(loaded.report)


def _tabulates(rep):
    q = W.sft_quality_table(rep)
    assert len(q) == 4 and q["mean gold"].between(0, 1).all()
    for split in ("train", "validation"):
        mix = W.source_mix(rep, split)
        n = rep["preference_data"][split]["n_pairs"]
        assert mix["chosen"].sum() == n and mix["rejected"].sum() == n
    assert W.compatibility_table(rep)["margin correlation"].between(-1, 1).all()
    assert W.stage_table(rep).loc["all model training", "seconds"] > 0
