"""dpolib.evaluation: generation, judge, (length-controlled) win rate, ranking accuracy, Eq. 8 statistics."""

import math

import numpy as np
import pytest
import torch

import tiny
from dpolib import evaluation as E


@pytest.fixture(scope="module")
def char():
    tok = tiny.char_tokenizer()
    return tiny.char_model(tok, seed=4), tok


def prompts(n):
    return [r["prompt"] for r in tiny.preference_rows(n, conversational=True, seed=5)]


def test_generate_preserves_order_and_marks_unfinished(char):
    model, tok = char
    ps = prompts(6)
    settings = E.GenerationSettings(max_new_tokens=12, batch_size=4)
    together = E.generate(model, tok, ps, settings)
    alone = [E.generate(model, tok, [p], E.GenerationSettings(max_new_tokens=12, batch_size=1))[0] for p in ps]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    for g in together:
        assert g.finished == (tok.eos_token_id in g.token_ids)
        assert g.n_tokens <= 12
        if not g.finished:
            assert g.n_tokens == 12


def test_sampling_is_seeded(char):
    model, tok = char
    ps = prompts(4)
    s = E.GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.0, seed=3)
    a, b = E.generate(model, tok, ps, s), E.generate(model, tok, ps, s)
    c = E.generate(model, tok, ps, E.GenerationSettings(max_new_tokens=10, do_sample=True, seed=4))
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]


def test_degenerate_flag():
    done = E.Generation("4.", [1, 2], True)
    assert not E.is_degenerate(done, repetition=0.1)
    assert E.is_degenerate(E.Generation("4 4 4", [1] * 5, False), repetition=0.1)
    assert E.is_degenerate(done, repetition=0.9)


def test_judge_prefers_better_and_longer():
    judge = E.PairwiseJudge(temperature=0.1, length_bias=0.1, length_scale=40, length_cap=2.0)
    assert judge.prob([0.9], [0.5], [10], [10])[0] > 0.95
    assert judge.prob([0.5], [0.5], [10], [10])[0] == pytest.approx(0.5)
    # 40 more characters are worth +0.1 gold: logit 0.1 / 0.1 = 1
    assert judge.prob([0.5], [0.5], [50], [10])[0] == pytest.approx(1 / (1 + math.exp(-1.0)))
    # the bias saturates at length_cap * length_scale = 80 characters
    assert judge.prob([0.5], [0.5], [500], [0])[0] == pytest.approx(1 / (1 + math.exp(-2.0)))
    linear = E.PairwiseJudge(length_cap=None)
    assert linear.prob([0.5], [0.5], [500], [0])[0] > judge.prob([0.5], [0.5], [500], [0])[0]


def test_lc_win_rate_recovers_glm_parameters():
    rng = np.random.default_rng(0)
    n = 4000
    delta = rng.normal(0, 40, n)
    model_len, base_len = 100 + delta, np.full(n, 100.0)
    theta, phi = 0.4, 1.5
    sd = delta.std()
    p = 1 / (1 + np.exp(-(theta + phi * np.tanh(delta / sd))))
    out = E.length_controlled_win_rate(p, model_len, base_len)
    assert out["theta"] == pytest.approx(theta, abs=1e-3)
    assert out["phi"] == pytest.approx(phi, abs=1e-3)
    assert out["lc_win_rate"] == pytest.approx(100 / (1 + math.exp(-theta)), abs=0.05)


def test_lc_removes_pure_length_gaming():
    """A model that wins only by being longer has a high raw win rate and an LC win rate near 50."""
    rng = np.random.default_rng(1)
    judge = E.PairwiseJudge(length_cap=None)
    gold = rng.uniform(0.4, 0.6, 500)
    base_len = rng.uniform(20, 120, 500)
    model_len = base_len + rng.normal(60, 50, 500)  # longer on average, sometimes shorter
    p = judge.prob(gold, gold, model_len, base_len)
    out = E.length_controlled_win_rate(p, model_len, base_len)
    assert out["win_rate"] > 60
    assert abs(out["lc_win_rate"] - 50) < 1.0


def test_lc_with_instruction_difficulty():
    rng = np.random.default_rng(2)
    n = 3000
    delta, diff = rng.normal(0, 30, n), rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-(0.2 + 0.8 * np.tanh(delta / delta.std()) - 0.7 * diff)))
    out = E.length_controlled_win_rate(p, 100 + delta, np.full(n, 100.0), instruction_difficulty=diff)
    assert out["psi"] == pytest.approx(-0.7, abs=1e-3)
    expected = 100 * np.mean(1 / (1 + np.exp(-(0.2 - 0.7 * diff))))
    assert out["lc_win_rate"] == pytest.approx(expected, abs=0.05)


def test_lc_input_errors():
    with pytest.raises(ValueError, match="3 preferences but 2 length pairs"):
        E.length_controlled_win_rate([0.5, 0.5, 0.5], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="no preferences"):
        E.win_rate([])


def test_ranking_accuracy_table2_definitions():
    pc = torch.tensor([-5.0, -9.0, -4.0, -7.0])
    pr = torch.tensor([-6.0, -8.0, -4.0, -3.0])
    rc = torch.tensor([-6.0, -12.0, -5.0, -7.0])
    rr = torch.tensor([-6.0, -8.0, -4.0, -2.0])
    out = E.ranking_accuracy(pc, pr, rc, rr)
    # policy: -5>-6 yes, -9>-8 no, tie (half), -7>-3 no  -> 1.5/4
    assert out["policy_accuracy"] == pytest.approx(1.5 / 4)
    # reward margins: (1-0)=1 > 0 yes; (3 - 0)=3>0 yes; (1 - 0) yes; (0 - -1)=... chosen 0 vs rejected -1 -> yes
    assert out["reward_accuracy"] == pytest.approx(1.0)


def test_token_logp_differences_and_eos():
    ids = [[5, 6, 2], [6, 2]]
    pol = [torch.tensor([-1.0, -2.0, -9.0]), torch.tensor([-1.0, -7.0])]
    ref = [torch.tensor([-1.5, -1.0, -1.0]), torch.tensor([-2.0, -1.0])]
    table = E.token_logp_differences(ids, pol, ref)
    assert table[6] == {"count": 2, "mean_diff": pytest.approx(((-2 + 1) + (-1 + 2)) / 2)}
    assert table[2]["mean_diff"] == pytest.approx(((-9 + 1) + (-7 + 1)) / 2)
    eos = E.eos_statistics([ids[0]], [pol[0]], [ids[1]], [pol[1]], eos_token_id=2)
    assert eos["value"] == pytest.approx(-8.0) and eos["difference"] == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="same tokenizer"):
        E.token_logp_differences([[1, 2]], [torch.zeros(3)], [torch.zeros(3)])
