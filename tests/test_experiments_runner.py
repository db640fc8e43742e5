"""dpolib.lab.runner: config validation and hashing, grids, the smoke pipeline end to end, determinism."""

import math

import pytest

from dpolib.lab import runner as R
from dpolib.lab.profiles import get_profile


def test_config_validation_messages():
    with pytest.raises(ValueError, match="objective must be one of"):
        R.RunConfig("smoke", "char", objective="ppo")
    with pytest.raises(ValueError, match="implies reference 'uniform'"):
        R.RunConfig("smoke", "char", objective="probability", reference="self")
    with pytest.raises(ValueError, match="needs a model reference"):
        R.RunConfig("smoke", "char", objective="dpo", reference="uniform")
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        R.RunConfig("smoke", "char", beta=0.0)
    with pytest.raises(ValueError, match="no beta"):
        R.RunConfig("smoke", "char", objective="sft", reference="none", beta=0.1)
    with pytest.raises(ValueError, match="unknown profile"):
        R.RunConfig("laptop", "char").key()


def test_key_is_stable_and_sensitive():
    a = R.RunConfig("smoke", "char", beta=0.1)
    assert a.key() == R.RunConfig("smoke", "char", beta=0.1).key()
    assert a.key() != R.RunConfig("smoke", "char", beta=0.05).key()
    assert a.key() != R.RunConfig("smoke", "char", beta=0.1, seed=1).key()
    assert a.key() != a.key(get_profile("smoke", dpo_epochs=1.0))  # a profile change invalidates records


def test_grids_follow_the_paper():
    rq1 = R.grid("rq1", "cpu")
    assert sorted({c.beta for c in rq1 if c.objective == "dpo"}) == [0.001, 0.005, 0.01, 0.02, 0.05, 0.1]
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


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DPOLIB_CACHE", str(tmp_path_factory.mktemp("cache")))
    R._WORLDS.clear()
    yield tmp_path_factory.mktemp("results")
    R._WORLDS.clear()
    mp.undo()


@pytest.fixture(scope="module")
def smoke_dpo(smoke_env):
    return R.run(R.RunConfig("smoke", "char", "dpo", "self", 0.1), root=smoke_env)


def test_smoke_pipeline_end_to_end(smoke_env, smoke_dpo):
    """World (pretrain, SFT, data) -> precompute -> DPO through TRL -> evaluation -> record with provenance."""
    rec = smoke_dpo
    m = rec["metrics"]
    for key in ("gold_score", "win_rate", "lc_win_rate", "reward_accuracy", "policy_accuracy", "mean_length_chars", "degenerate_rate"):
        assert math.isfinite(m[key]), key
    assert 0 <= m["win_rate"] <= 100 and 0 <= m["lc_win_rate"] <= 100
    assert len(rec["curves"]) == get_profile("smoke").dpo_steps
    assert rec["provenance"]["git_commit"] and rec["provenance"]["versions"]["trl"].startswith("1.16")
    assert set(rec["provenance"]["wall_time_s"]) >= {"world", "precompute", "train", "evaluate", "total"}
    assert m["eos_token"] in m["token_logp_diff"]  # Eq. 8 statistics include EOS
    assert R.record_path(R.RunConfig("smoke", "char", "dpo", "self", 0.1), smoke_env).exists()


def test_record_is_read_back_not_recomputed(smoke_env, smoke_dpo):
    again = R.run(R.RunConfig("smoke", "char", "dpo", "self", 0.1), root=smoke_env)
    assert again["provenance"]["created_utc"] == smoke_dpo["provenance"]["created_utc"]


def test_same_config_and_seed_give_identical_metrics(smoke_env, smoke_dpo, tmp_path):
    rerun = R.run(R.RunConfig("smoke", "char", "dpo", "self", 0.1), root=tmp_path, force=True)
    assert rerun["metrics"] == smoke_dpo["metrics"]
    assert [c["loss"] for c in rerun["curves"]] == [c["loss"] for c in smoke_dpo["curves"]]


def test_sft_row_ties_its_own_reference(smoke_env):
    """An untrained policy scored against itself: every implicit reward is 0, reward accuracy exactly 0.5 (Table 2)."""
    rec = R.run(R.RunConfig("smoke", "char", "sft", "none", None), root=smoke_env)
    assert rec["metrics"]["reward_accuracy"] == 0.5
    assert rec["curves"] == []


def test_objectives_reach_their_references(smoke_env):
    prob = R.run(R.RunConfig("smoke", "char", "probability", "uniform", 10.0), root=smoke_env)
    lik = R.run(R.RunConfig("smoke", "char", "likelihood", "prior", 0.1), root=smoke_env)
    assert prob["reference_name"] == "uniform" and lik["reference_name"] == "char-prior"
    # with a uniform reference the implicit reward ranks exactly as the policy does
    assert prob["metrics"]["reward_accuracy"] == prob["metrics"]["policy_accuracy"]


@pytest.mark.slow
def test_committed_cpu_record_reruns_identically(tmp_path):
    """Rerun one committed cpu-profile record from scratch (same machine kind) and match it exactly.

    Slow: on a cold cache it first trains the cpu world (about 7 min on 2 cores); ``tools/test.sh -m slow``.
    """
    config = R.RunConfig("cpu", "char", "dpo", "self", 0.1)
    committed = R.load_records([config], missing="raise")[0]
    rerun = R.run(config, root=tmp_path, force=True)
    assert rerun["key"] == committed["key"]
    assert [c["loss"] for c in rerun["curves"]] == [c["loss"] for c in committed["curves"]]
    assert rerun["metrics"] == committed["metrics"]


def test_load_grid_reads_and_never_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "_run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert R.load_grid("rq1", "smoke", root=tmp_path) == []
    one = R.grid("rq1", "smoke")[0]
    path = R.record_path(one, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"config": {}, "metrics": {}}')
    assert len(R.load_grid("rq1", "smoke", root=tmp_path)) == 1
    assert R.load_grid("rq1", "smoke", root=tmp_path, complete=True) == []  # 1 of 14 runs: incomplete
