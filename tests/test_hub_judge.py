"""dpolib.hub.judge: the reward-model judge, its win rates, and the AlpacaEval option's guards."""

import json
import os
import stat

import hub_fixtures as F
import numpy as np
import pytest
import tiny
import torch

from dpolib.hub import judge as J
from dpolib import evaluation as E


@pytest.fixture(scope="module")
def rm_judge():
    torch.set_num_threads(1)
    tok = tiny.bpe_tokenizer()
    return J.RewardModelJudge(F._reward_model(tok), tok, name="tiny-rm", batch_size=3, max_length=64)


def test_rewards_are_per_row_and_independent_of_batching(rm_judge):
    xs = ["what is 2 plus 2?", "name a fruit.", "count to three."] * 2
    ys = ["4.", "of course! a pear, a plum and many more fruits.", "one two three.", "5", "figs", "1 2 3"]
    r = rm_judge.rewards(xs, ys)
    assert r.shape == (6,) and np.isfinite(r).all()
    single = np.array([rm_judge.rewards([x], [y])[0] for x, y in zip(xs, ys)])
    np.testing.assert_allclose(r, single, atol=1e-5)  # right padding does not leak into the score
    assert rm_judge.describe()["kind"] == "reward_model"
    with pytest.raises(ValueError, match="2 instructions but 1"):
        rm_judge.rewards(xs[:2], ys[:1])


def test_a_classifier_with_several_labels_is_refused():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = tiny.bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=2)
    with pytest.raises(ValueError, match="num_labels=2"):
        J.RewardModelJudge(LlamaForSequenceClassification(config), tok)


def test_preferences_and_win_rates_reuse_the_lab_formulas():
    policy, baseline = np.array([1.0, 0.0, -1.0, 2.0]), np.array([0.0, 0.0, 0.0, 0.0])
    prefs = J.preferences(policy, baseline)
    np.testing.assert_allclose(prefs, 1 / (1 + np.exp(-policy)))
    lengths, base = np.array([10, 20, 30, 40.0]), np.array([20, 20, 20, 20.0])
    m = J.judge_metrics(prefs, lengths, base)
    lc = E.length_controlled_win_rate(prefs, lengths, base)
    assert m["win_rate"] == E.win_rate(prefs) == lc["win_rate"]
    assert m["lc_win_rate"] == lc["lc_win_rate"] and set(m["lc_fit"]) == {"theta", "phi"}


def test_alpaca_eval_needs_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(J.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install alpaca-eval"):
        J.alpaca_eval_judge(["x"], ["y"], ["z"], name="m", output_path=tmp_path)


def test_alpaca_eval_needs_an_api_key(monkeypatch, tmp_path):
    monkeypatch.setattr(J.shutil, "which", lambda name: "/usr/bin/true")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        J.alpaca_eval_judge(["x"], ["y"], ["z"], name="m", output_path=tmp_path)


def test_alpaca_eval_result_is_read_from_its_leaderboard(monkeypatch, tmp_path):
    """A stand-in ``alpaca_eval`` executable writes what the real one writes; we parse it."""
    fake = tmp_path / "bin" / "alpaca_eval"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do case "$1" in --output_path) out="$2";; --name) name="$2";; esac; shift; done\n'
        'mkdir -p "$out/weighted_alpaca_eval_gpt4_turbo"\n'
        'printf ",win_rate,standard_error,length_controlled_winrate\\n%s,12.5,1.0,15.25\\n" "$name" '
        '> "$out/weighted_alpaca_eval_gpt4_turbo/leaderboard.csv"\n'
        'echo \'[{"preference": 1.25}, {"preference": 2.0}]\' > "$out/weighted_alpaca_eval_gpt4_turbo/annotations.json"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-key")
    res = J.alpaca_eval_judge(["q1", "q2"], ["a1", "a2"], ["b1", "b2"], name="my-model", output_path=tmp_path / "ae")
    assert res["win_rate"] == 12.5 and res["lc_win_rate"] == 15.25
    np.testing.assert_allclose(res["preferences"], [0.25, 1.0])
    written = json.loads((tmp_path / "ae" / "model_outputs.json").read_text())
    assert written[1] == {"instruction": "q2", "output": "a2", "generator": "my-model"}
