"""dpolib.experiments: config validation and hashing, grids, typed records, the smoke pipeline end to end, determinism."""

import json
import math

import pytest

from dpolib.experiments import config as C
from dpolib.experiments import cpu as CPU
from dpolib.experiments import records as R
from dpolib.experiments import runner
from dpolib.experiments.__main__ import main as cli
from dpolib.world.profiles import get_profile


def test_config_validation_messages():
    with pytest.raises(ValueError, match="objective must be one of"):
        C.RunConfig("smoke", "char", objective="ppo")
    with pytest.raises(ValueError, match="implies reference 'uniform'"):
        C.RunConfig("smoke", "char", objective="probability", reference="self")
    with pytest.raises(ValueError, match="needs a model reference"):
        C.RunConfig("smoke", "char", objective="dpo", reference="uniform")
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        C.RunConfig("smoke", "char", beta=0.0)
    with pytest.raises(ValueError, match="no beta"):
        C.RunConfig("smoke", "char", objective="sft", reference="none", beta=0.1)
    with pytest.raises(ValueError, match="unknown profile"):
        C.RunConfig("laptop", "char").key()


def test_key_is_stable_and_sensitive():
    a = C.RunConfig("smoke", "char", beta=0.1)
    assert a.key() == C.RunConfig("smoke", "char", beta=0.1).key()
    assert a.key() != C.RunConfig("smoke", "char", beta=0.05).key()
    assert a.key() != C.RunConfig("smoke", "char", beta=0.1, seed=1).key()
    assert a.key() != a.key(get_profile("smoke", dpo_epochs=1.0))  # a profile change invalidates records


def test_grids_follow_the_paper():
    rq1 = R.grid("rq1", "cpu")
    assert rq1 == C.sweep_grid("rq1", "cpu")
    # the paper's Table 1 grid and App. B's 0.001, with RQ3's 10 and 1 (reused by RQ3 and App. E, issue World 4)
    assert sorted({c.beta for c in rq1 if c.objective == "dpo"}) == [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 1.0, 10.0]
    assert {c.student for c in rq1} == {"char", "bpe"} and sum(c.objective == "sft" for c in rq1) == 2
    rq2 = R.grid("rq2", "cpu")
    assert 100.0 in {c.beta for c in rq2 if c.objective == "probability"}
    assert {c.objective for c in rq2} == {"sft", "dpo", "probability", "likelihood"}
    rq3 = R.grid("rq3", "cpu")
    assert len(rq3) == 2 * 3 * 5 and {c.reference for c in rq3} == {"self", "compatible", "incompatible"}
    assert sorted({c.beta for c in rq3}) == [0.005, 0.01, 0.1, 1.0, 10.0]
    assert len(R.grid("rq1", "cpu", seeds=(0, 1, 2))) == 3 * len(rq1)
    with pytest.raises(ValueError, match="unknown grid"):
        R.grid("rq4", "cpu")
    with pytest.raises(ValueError, match="unknown profile"):
        R.grid("rq1", "laptop")


def test_one_beta_table_serves_every_profile():
    """The gpu grids sweep the same β values as the cpu world's, arm by arm (one table: config.BETAS)."""
    for name in C.SWEEP_GRIDS:
        if name == "controls":  # the on-policy control is the cpu world's alone
            continue
        cpu = {(c.objective, c.reference, c.beta) for c in C.sweep_grid(name, "cpu")}
        gpu = {(c.objective, c.reference, c.beta) for c in C.sweep_grid(name, "gpu")}
        assert cpu == gpu, name
    assert C.students("gpu") == (C.profile_settings("gpu").student,)


def test_sft_row_beta_is_infinite():
    assert C.RunConfig("cpu", "char", "sft", "none", None).beta_value == math.inf
    assert C.RunConfig("cpu", "char", beta=0.05).beta_value == 0.05


#: Why a test that reads committed cpu records skips when there are none.
NO_CPU_RECORDS = ("no committed record of the live cpu profile: world-3's are archived under "
                  "results/lab/archive/world-3 and World 4's are not committed yet")


def _committed_rq1(profiles=("cpu", "smoke")):
    """``(profile, records)``: the committed RQ1 records of the first of ``profiles`` that has any, else skip."""
    for profile in profiles:
        records = R.load_grid("rq1", profile)
        if records:
            return profile, records
    pytest.skip(f"no committed RQ1 records at {' or '.join(profiles)} (is a profile being rerun?)")


def test_record_round_trip_and_validation(tmp_path):
    from record_factory import make_record

    records = R.load_grid("rq1", "cpu") or R.load_grid("rq1", "smoke")
    committed = records[0] if records else make_record(objective="sft")  # none committed at this code version
    assert isinstance(committed.metrics, R.Metrics) and committed.beta == math.inf
    again = R.Record.from_dict(json.loads(json.dumps(committed.to_dict())))
    assert again.config == committed.config and again.metrics == committed.metrics
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": {"profile": "cpu", "student": "char"}, "metrics": {"lc_win_rate": 1.0}}')
    with pytest.raises(R.RecordError, match=r"bad\.json: not a valid record .*metrics lack"):
        R.read_record(bad)
    bad.write_text("{not json")
    with pytest.raises(R.RecordError, match=r"bad\.json: not valid JSON"):
        R.read_record(bad)
    nan = committed.to_dict()
    nan["metrics"]["lc_win_rate"] = float("nan")  # a NaN metric is a damaged record, not a result
    bad.write_text(json.dumps(nan))
    with pytest.raises(R.RecordError, match=r"lc_win_rate=nan are not finite numbers"):
        R.read_record(bad)


def test_best_record_is_one_rule():
    from record_factory import make_record

    recs = [make_record(beta=0.1, lc_win_rate=10.0), make_record(beta=0.01, lc_win_rate=30.0, degenerate=True),
            make_record(beta=0.05, lc_win_rate=20.0), make_record(student="bpe", beta=0.1, lc_win_rate=50.0)]
    assert R.best_record(recs, student="char").beta == 0.05  # degenerate runs never win
    assert R.best_record(recs, student="char", metric="gold_score") is not None
    assert R.best_record([recs[1]]) is None


def test_cli_rejects_bad_input(capsys):
    for argv, message in ((["run", "--grid", "rq4"], "invalid choice: 'rq4'"),
                          (["run", "--grid", "rq1", "--profile", "laptop"], "invalid choice: 'laptop'"),
                          (["run", "--grid", "rq1", "--workers", "0"], "integer >= 1, got 0"),
                          (["run", "--grid", "rq1", "--workers", "two"], "integer >= 1, got 'two'")):
        with pytest.raises(SystemExit):
            cli(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="gpu only"):
        cli(["run", "--grid", "rq1", "--profile", "smoke", "--lora"])
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        runner.run_grid("rq1", "smoke", workers=0)


def test_cli_show_reads_committed_records(capsys):
    profile, records = _committed_rq1()
    assert cli(["show", "--grid", "rq1", "--profile", profile]) == 0
    out = capsys.readouterr().out
    assert f"== rq1 ({profile}): {len(records)} records" in out and "char" in out


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DPOLIB_CACHE", str(tmp_path_factory.mktemp("cache")))
    CPU._WORLDS.clear()
    yield tmp_path_factory.mktemp("results")
    CPU._WORLDS.clear()
    mp.undo()


@pytest.fixture(scope="module")
def smoke_dpo(smoke_env):
    return runner.run(C.RunConfig("smoke", "char", "dpo", "self", 0.1), root=smoke_env)


def test_smoke_pipeline_end_to_end(smoke_env, smoke_dpo):
    """World (pretrain, SFT, data) -> precompute -> DPO through TRL -> evaluation -> record with provenance."""
    rec = smoke_dpo
    m = rec.metrics
    for key in ("gold_score", "win_rate", "lc_win_rate", "reward_accuracy", "policy_accuracy", "mean_length_chars", "degenerate_rate"):
        assert math.isfinite(getattr(m, key)), key
    assert 0 <= m.win_rate <= 100 and 0 <= m.lc_win_rate <= 100
    assert len(rec.curves) == get_profile("smoke").dpo_steps
    assert rec.provenance["git_commit"] and rec.provenance["versions"]["trl"].startswith("1.16")
    assert set(rec.provenance["wall_time_s"]) >= {"world", "precompute", "train", "evaluate", "total"}
    assert m.eos_token in m.token_logp_diff  # Eq. 8 statistics include EOS
    assert R.read_record(rec.path).metrics == m  # what was written is what was returned
    assert R.record_path(C.RunConfig("smoke", "char", "dpo", "self", 0.1), smoke_env).exists()


def test_record_is_read_back_not_recomputed(smoke_env, smoke_dpo):
    again = runner.run(C.RunConfig("smoke", "char", "dpo", "self", 0.1), root=smoke_env)
    assert again.provenance["created_utc"] == smoke_dpo.provenance["created_utc"]


def test_same_config_and_seed_give_identical_metrics(smoke_env, smoke_dpo, tmp_path):
    rerun = runner.run(C.RunConfig("smoke", "char", "dpo", "self", 0.1), root=tmp_path, force=True)
    assert rerun.metrics == smoke_dpo.metrics
    assert [c["loss"] for c in rerun.curves] == [c["loss"] for c in smoke_dpo.curves]


def test_sft_row_ties_its_own_reference(smoke_env):
    """An untrained policy scored against itself: every implicit reward is 0, reward accuracy exactly 0.5 (Table 2)."""
    rec = runner.run(C.RunConfig("smoke", "char", "sft", "none", None), root=smoke_env)
    assert rec.metrics.reward_accuracy == 0.5
    assert rec.curves == ()


def test_objectives_reach_their_references(smoke_env):
    prob = runner.run(C.RunConfig("smoke", "char", "probability", "uniform", 10.0), root=smoke_env)
    lik = runner.run(C.RunConfig("smoke", "char", "likelihood", "prior", 0.1), root=smoke_env)
    assert prob.reference_name == "uniform" and lik.reference_name == "char-prior"
    # with a uniform reference the implicit reward ranks exactly as the policy does
    assert prob.metrics.reward_accuracy == prob.metrics.policy_accuracy


@pytest.mark.slow
def test_committed_cpu_record_reruns_identically(tmp_path):
    """Rerun one committed cpu-profile record from scratch and match it: exactly on the CPU model that wrote it,
    within its paired 95% intervals (gold and LC over the test prompts) on another.

    The record: the char student's self-reference DPO run at β = 0.1 when committed, else the first
    committed DPO record of the cpu profile's RQ1 grid; skipped when the live cpu profile has none. It is
    retrained with the engine that wrote it (a sweep reruns its whole unit: the student's RQ1 runs in that world).
    Slow: on a cold cache it first trains the cpu world (several minutes on 2 cores); ``tools/test.sh -m slow``.
    """
    from dpolib.provenance import cpu_model
    from dpolib.stats import paired_bootstrap

    dpo = [r for r in R.load_grid("rq1", "cpu", seeds=get_profile("cpu").seeds) if r.objective == "dpo"]
    if not dpo:
        pytest.skip(NO_CPU_RECORDS)
    committed = next((r for r in dpo if (r.student, r.reference, r.beta) == ("char", "self", 0.1)), dpo[0])
    config = committed.config
    if committed.provenance.get("trainer", {}).get("engine") == "sweep":
        unit = [c for c in C.sweep_grid("rq1", "cpu", (config.seed,)) if c.student == config.student
                and c.objective != "sft"]
        rerun = next(r for r in runner.run_sweep(unit, root=tmp_path, force=True) if r.config == config)
    else:
        rerun = runner.run(config, root=tmp_path, force=True)
    assert rerun.key == committed.key
    if committed.provenance.get("cpu_model") == cpu_model():
        assert [c["loss"] for c in rerun.curves] == [c["loss"] for c in committed.curves]
        assert rerun.metrics == committed.metrics
    else:  # another CPU model: floating-point order differs, so numbers may move, but within the record's CIs
        for name in ("prompt_scores", "prompt_lc"):
            moved = paired_bootstrap(getattr(rerun.metrics, name), getattr(committed.metrics, name))
            assert not moved.excludes_zero, f"{name} moved by {moved} on {cpu_model()!r}"


def test_load_grid_reads_and_never_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    monkeypatch.setattr(runner, "backend_for", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built a world")))
    assert R.load_grid("rq1", "smoke", root=tmp_path) == []
    one = R.grid("rq1", "smoke")[0]
    path = R.record_path(one, tmp_path)
    path.parent.mkdir(parents=True)
    committed = R.load_grid("rq1", "smoke")[0]
    path.write_text(json.dumps(committed.with_config(**{}).to_dict()))
    assert len(R.load_grid("rq1", "smoke", root=tmp_path)) == 1
    assert R.load_grid("rq1", "smoke", root=tmp_path, complete=True) == []  # 1 of 14 runs: incomplete


# --------------------------------------------------------------------------- interruption and damage

_DIE_DURING_WRITE = """
import os, signal, sys
from pathlib import Path
from dpolib import provenance
from dpolib.experiments import runner
from dpolib.experiments.config import RunConfig

target, root = sys.argv[1], Path(sys.argv[2])
real = provenance.atomic_write_bytes

def dying(path, data):
    path = Path(path)
    if (target == "cache" and "ref_logps" in path.parts) or (target == "record" and path.is_relative_to(root)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(f".{path.name}.tmp-killed").write_bytes(data[: len(data) // 2])  # half a write, then death
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data)

provenance.atomic_write_bytes = dying
runner.run(RunConfig("smoke", "bpe", "dpo", "self", 0.1), root=root)
"""


def _killed_run(target: str, root) -> int:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _DIE_DURING_WRITE, target, str(root)], capture_output=True,
                          timeout=600).returncode


def test_interrupted_and_damaged_files_are_named_and_recomputed(smoke_env, tmp_path):
    """SIGKILL during a reference-cache write and during a record write, then a corrupted cache file and a
    corrupted record: the rerun names each damaged file once and ends with records identical to an
    uninterrupted run's."""
    import os
    import signal
    import warnings

    from dpolib import paths
    from dpolib.provenance import CorruptFileWarning

    root = tmp_path / "results"
    config = C.RunConfig("smoke", "bpe", "dpo", "self", 0.1)
    path = R.record_path(config, root)
    assert _killed_run("cache", root) == -signal.SIGKILL
    assert not path.exists()
    assert _killed_run("record", root) == -signal.SIGKILL
    assert not path.exists()  # the record write was atomic: nothing half-written under its name
    assert list(path.parent.glob(".*.tmp-killed"))  # (the fake half-write our hook left beside it)

    sft = runner.run(C.RunConfig("smoke", "bpe", "sft", "none", None), root=root)
    sft.path.write_text(sft.path.read_text()[:200])  # a truncated record
    caches = sorted((paths.world_cache() / "ref_logps").glob("*.json"), key=os.path.getmtime)
    caches[-1].write_text('{"garbage')  # the newest cache file: the bpe student's scores

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for again in (config, C.RunConfig("smoke", "bpe", "sft", "none", None)):
            runner.run(again, root=root)
    named = [str(w.message) for w in caught if issubclass(w.category, CorruptFileWarning)]
    assert any(caches[-1].name in m for m in named), named
    assert any(sft.path.name in m for m in named), named

    fresh = runner.run(config, root=tmp_path / "uninterrupted", force=True)
    rerun = R.read_record(path)
    assert rerun.metrics == fresh.metrics
    assert [c["loss"] for c in rerun.curves] == [c["loss"] for c in fresh.curves]
    assert R.read_record(R.record_path(C.RunConfig("smoke", "bpe", "sft", "none", None), root)).metrics == sft.metrics


def test_sweep_engine_writes_the_records_trl_would(smoke_env, smoke_dpo, tmp_path):
    """run_sweep trains two objectives of one student as one batched run; each member's record follows its TRL run."""
    configs = [C.RunConfig("smoke", "char", "dpo", "self", 0.1), C.RunConfig("smoke", "char", "probability", "uniform", 10.0)]
    swept = runner.run_sweep(configs, root=tmp_path)
    trl = [runner.run(c, root=smoke_env) for c in configs]
    for s, t in zip(swept, trl):
        assert s.key == t.key and s.path.exists()
        assert s.provenance["trainer"]["engine"] == "sweep" and s.provenance["trainer"]["members"] == 2
        assert s.provenance["trainer"]["generation"] == "stacked"  # the members decoded the test prompts together
        assert t.provenance["trainer"]["engine"] == "trl"
        for name in ("loss", "rewards/margins", "logps/chosen"):
            assert [c[name] for c in s.curves] == pytest.approx([c[name] for c in t.curves], rel=1e-5, abs=1e-4), name
        assert s.metrics.reward_accuracy == pytest.approx(t.metrics.reward_accuracy, abs=0.05)
    assert runner.run_sweep(configs, root=tmp_path)[0].provenance == swept[0].provenance  # read back
    with pytest.raises(ValueError, match="one profile, student, seed, loss and kind of pairs"):
        runner.run_sweep([configs[0], C.RunConfig("smoke", "bpe", "dpo", "self", 0.1)], root=tmp_path)
    with pytest.raises(ValueError, match="engine must be one of"):
        runner.run_grid("rq1", "smoke", root=tmp_path, engine="jax")
    assert [len(g) for g in runner.sweep_groups(R.grid("rq1", "smoke"))] == [8, 8]  # one sweep per student, no SFT


def test_show_names_a_damaged_record_and_goes_on(tmp_path, monkeypatch, capsys):
    """One corrupted record does not break `show`: it is named, skipped, and the other records are printed."""
    import shutil

    from dpolib import paths

    profile, records = _committed_rq1()
    if len(records) < 2:
        pytest.skip(f"fewer than 2 committed RQ1 records at {profile}")
    committed = paths.results_root() / profile
    monkeypatch.setenv("DPOLIB_RECORDS", str(tmp_path))
    shutil.copytree(committed, tmp_path / "lab" / profile, ignore=shutil.ignore_patterns("compatibility.json"))
    damaged = R.record_path(records[1].config)
    damaged.write_text(f'{{"config": {{"profile": "{profile}"')
    assert cli(["show", "--grid", "rq1", "--profile", profile]) == 0
    out = capsys.readouterr().out
    assert f"== rq1 ({profile}): {len(records) - 1} records" in out
    assert f"damaged record, skipped (run recomputes it): {damaged}" in out
