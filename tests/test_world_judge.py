"""The CPU world's judge: a length term calibrated on gold-neutral perturbations, LC that does not forgive lost
content, the degenerate check, and the calibrated length-controlled win rate of :mod:`dpolib.evaluation`."""

import math
import random

import numpy as np
import pytest

from dpolib import evaluation as E
from dpolib.stats import paired_bootstrap, spearman
from dpolib.world import judge as J
from dpolib.world.task import (
    DETAILS, degenerate_reasons, gold_score, ideal_response, is_degenerate_response, make_prompt,
)
from dpolib.world import writers  # the module, not test_prompts itself: pytest would collect it

N_PROMPTS = 300


@pytest.fixture(scope="module")
def world():
    prompts = writers.test_prompts(N_PROMPTS)
    baseline = writers.baseline_responses(prompts)
    return prompts, baseline, J.calibrate_length_coef(prompts, baseline)


def _writer(name, prompts):
    return [writers.SOURCE_POLICIES[name](p, random.Random(f"{name}/{p.text}")) for p in prompts]


def _judge(world, texts, finished=None):
    prompts, baseline, calibration = world
    finished = [True] * len(texts) if finished is None else finished
    return J.judge_outputs(prompts, texts, finished, baseline, calibration=calibration)


# --------------------------------------------------------------------------- calibration


def test_calibration_is_gold_neutral_and_positive(world):
    prompts, baseline, calibration = world
    assert calibration.n_skipped == 0 and calibration.n_prompts == N_PROMPTS
    assert calibration.n_pairs == 4 * N_PROMPTS  # 1 and 2 DETAILS appended, each in both orders
    assert 0.5 < calibration.coef < 2.0 and 20 < calibration.sd < 60  # measured: φ ≈ 1.15, sd ≈ 36 characters
    for p, b in zip(prompts[:50], baseline[:50]):
        for variant in J.length_perturbations(p, b):
            assert gold_score(p, variant) == gold_score(p, b) and variant != b
    # a response that has details gets them removed as one of its variants
    p = prompts[0]
    with_details = ideal_response(p) + " " + DETAILS[0]
    assert ideal_response(p) in J.length_perturbations(p, with_details)


# --------------------------------------------------------------------------- the key test


def test_lc_falls_when_items_are_dropped(world):
    """Shorter *and* worse answers: the calibrated LC falls with gold; the per-model fit forgives much of it."""
    prompts = world[0]
    full = _writer("careful", prompts)
    dropped = [" ".join(p.answer[:-1]) + "." for p in prompts]  # the last item dropped: shorter, lower gold
    assert all(len(d) < len(f) and gold_score(p, d) < gold_score(p, f) for p, f, d in zip(prompts, full, dropped))
    before, after = _judge(world, full), _judge(world, dropped)
    assert after.gold_score < before.gold_score - 0.15  # measured 1.000 -> 0.814
    assert after.lc_win_rate < before.lc_win_rate - 25  # measured 82.3 -> 48.9
    fall = paired_bootstrap(after.lc_per_prompt, before.lc_per_prompt)
    assert fall.sign == -1 and fall.estimate * 100 == pytest.approx(after.lc_win_rate - before.lc_win_rate)
    per_model_fall = before.per_model_lc_win_rate - after.per_model_lc_win_rate  # measured 86.2 -> 72.0
    assert per_model_fall < 0.5 * (before.lc_win_rate - after.lc_win_rate)


def test_per_model_lc_can_rise_while_gold_falls(world):
    """The measured failure, rebuilt: a chatty writer loses its filler and an item (collapse-like: shorter, worse).

    Gold falls (0.858 -> 0.814) and the calibrated LC falls (56.2 -> 48.9), but AlpacaEval's per-model fit
    *rises* (56.9 -> 72.0): fitted on the model's own outputs, φ absorbs the quality lost with the length.
    """
    prompts = world[0]
    before = _judge(world, _writer("chatty", prompts))
    after = _judge(world, [" ".join(p.answer[:-1]) + "." for p in prompts])
    assert after.gold_score < before.gold_score
    assert after.lc_win_rate < before.lc_win_rate - 4
    assert after.per_model_lc_win_rate > before.per_model_lc_win_rate + 10
    assert after.per_model_phi > before.per_model_phi


def test_details_raise_the_raw_win_rate_not_the_calibrated_lc(world):
    """Appending gold-neutral DETAILS (the thorough writer) buys raw wins; the calibrated LC moves by < 2 points."""
    prompts = world[0]
    plain = [ideal_response(p) for p in prompts]
    padded = [
        " ".join([ideal_response(p)] + random.Random(p.text).sample(DETAILS, random.Random(p.text).choice((1, 2))))
        for p in prompts
    ]
    before, after = _judge(world, plain), _judge(world, padded)
    assert after.gold == before.gold
    assert after.win_rate > before.win_rate + 8  # measured 74.6 -> 86.6
    assert abs(after.lc_win_rate - before.lc_win_rate) < 2.0  # measured 82.3 -> 81.8


def test_calibrated_lc_orders_writers_by_gold(world):
    """Over seven writers of varied quality and length, calibrated LC follows gold; the per-model fit does not."""
    prompts = world[0]
    names = ("careful", "chatty", "thorough", "sloppy", "verbose", "lazy", "overlong")
    outcomes = [_judge(world, _writer(n, prompts)) for n in names]
    gold = [o.gold_score for o in outcomes]
    assert spearman(gold, [o.lc_win_rate for o in outcomes]) > 0.95  # measured 0.99
    assert spearman(gold, [o.per_model_lc_win_rate for o in outcomes]) < 0.85  # measured 0.77: lazy 52.9, verbose 2.7


# --------------------------------------------------------------------------- degenerate responses


def test_degenerate_reasons():
    sort = make_prompt("sort", ("7", "2", "9", "4"))
    assert degenerate_reasons(sort, "sure! 1 3 4 10e. i hope this at unore.", True) == ("out-of-lexicon",)
    assert degenerate_reasons(sort, "2 4 7 9 2 4 7 9 2 4 7 9 2 4 7", False) == ("unterminated", "repetition")
    assert degenerate_reasons(sort, "2 4 7 9", True) == ("unterminated",)  # no final full stop
    assert degenerate_reasons(sort, "2 4 7 9.", False) == ("unterminated",)  # no EOS
    assert degenerate_reasons(sort, "2 4 7 9 #.", True) == ("out-of-lexicon",)  # a character the task never writes
    for text in ("2 4 7 9.", "sure! 2 4 7 9. i hope this helps!", "2 4 7 9. nothing is left out.", "2 4 7 10 12."):
        assert degenerate_reasons(sort, text, True) == () and not is_degenerate_response(sort, text, True)
    spell = make_prompt("spell", ("tomek",))
    assert not is_degenerate_response(spell, "spell: tomek. t o m e k.", True)  # the prompt's own words
    same = make_prompt("copy", ("red",) * 5)
    assert not is_degenerate_response(same, ideal_response(same), True)  # repeats no more than the ideal answer


def test_degenerate_model_flag(world):
    prompts = world[0]
    runon = _judge(world, _writer("runon", prompts), finished=[False] * N_PROMPTS)
    assert runon.degenerate_rate == 1.0 and runon.degenerate_model
    careful = _judge(world, _writer("careful", prompts))
    assert careful.degenerate_rate == 0.0 and not careful.degenerate_model
    texts = [ideal_response(p) for p in prompts]
    k = int(J.DEGENERATE_RATE_THRESHOLD * N_PROMPTS)  # exactly at the threshold: not flagged
    at = _judge(world, texts, finished=[False] * k + [True] * (N_PROMPTS - k))
    assert at.degenerate_rate == pytest.approx(0.10) and not at.degenerate_model
    over = _judge(world, texts, finished=[False] * (k + 1) + [True] * (N_PROMPTS - k - 1))
    assert over.degenerate_model and over.reasons[0] == ("unterminated",)


# --------------------------------------------------------------------------- the record, determinism, errors


def test_outcome_fields_agree(world):
    prompts, baseline, calibration = world
    outcome = _judge(world, _writer("sloppy", prompts))
    assert outcome.n_prompts == N_PROMPTS
    assert outcome.lc_win_rate == pytest.approx(100 * np.mean(outcome.lc_per_prompt))
    assert outcome.win_rate == pytest.approx(100 * np.mean(outcome.win_per_prompt))
    assert outcome.gold_score == pytest.approx(np.mean(outcome.gold))
    assert outcome.baseline_gold == tuple(gold_score(p, b) for p, b in zip(prompts, baseline))
    assert (outcome.length_coef, outcome.length_sd) == (calibration.coef, calibration.sd)
    assert outcome.judge == J.default_judge()
    # without a calibration, judge_outputs calibrates on the same prompts and baseline: the same result
    texts = _writer("sloppy", prompts)
    assert J.judge_outputs(prompts, texts, [True] * N_PROMPTS, baseline) == outcome


def test_determinism(world):
    prompts, baseline, _ = world
    assert J.calibrate_length_coef(prompts, baseline) == J.calibrate_length_coef(prompts, baseline)
    texts = _writer("verbose", prompts)
    assert _judge(world, texts) == _judge(world, texts)


def test_errors(world):
    prompts, baseline, calibration = world
    texts = [ideal_response(p) for p in prompts]
    with pytest.raises(ValueError, match="give one of each per prompt"):
        J.judge_outputs(prompts, texts[:-1], [True] * N_PROMPTS, baseline, calibration=calibration)
    with pytest.raises(ValueError, match="give one of each per prompt"):
        J.judge_outputs(prompts, texts, [True] * N_PROMPTS, baseline[:10], calibration=calibration)
    with pytest.raises(ValueError, match="no prompts"):
        J.judge_outputs([], [], [], [])
    with pytest.raises(ValueError, match="300 prompts but 2 baseline texts"):
        J.calibrate_length_coef(prompts, baseline[:2])


# --------------------------------------------------------------------------- the calibrated LC in dpolib.evaluation


def test_calibrated_lc_removes_a_known_length_term():
    rng = np.random.default_rng(0)
    n, phi, sd = 2000, 1.2, 30.0
    quality = rng.normal(0.3, 1.0, n)
    delta = rng.normal(-20, 30, n)  # shorter than the baseline on average
    p = 1 / (1 + np.exp(-(quality + phi * np.tanh(delta / sd))))
    fit = E.length_controlled(p, 100 + delta, np.full(n, 100.0), length_coef=phi, length_sd=sd)
    np.testing.assert_allclose(fit.per_prompt, 1 / (1 + np.exp(-quality)), atol=1e-9)
    assert fit.calibrated and fit.phi == phi and fit.length_sd == sd
    assert fit.lc_win_rate == pytest.approx(100 * np.mean(fit.per_prompt))
    as_dict = E.length_controlled_win_rate(p, 100 + delta, np.full(n, 100.0), length_coef=phi, length_sd=sd)
    assert as_dict == {"lc_win_rate": fit.lc_win_rate, "win_rate": fit.win_rate, "theta": fit.theta, "phi": phi,
                       "length_sd": sd}
    # the per-model fit keeps its old keys; its per-prompt values average to its LC
    old = E.length_controlled(p, 100 + delta, np.full(n, 100.0))
    assert not old.calibrated and set(old.to_dict()) == {"lc_win_rate", "win_rate", "theta", "phi"}
    assert old.lc_win_rate == pytest.approx(100 * np.mean(old.per_prompt))
    # φ recovered from pairs that differ only in length
    assert E.fit_length_coef(1 / (1 + np.exp(-phi * np.tanh(delta / sd))), delta, sd) == pytest.approx(phi, abs=1e-6)


def test_calibrated_lc_errors():
    with pytest.raises(ValueError, match="both length_coef and length_sd"):
        E.length_controlled([0.5, 0.6], [1, 2], [1, 1], length_coef=1.0)
    with pytest.raises(ValueError, match="positive"):
        E.length_controlled([0.5, 0.6], [1, 2], [1, 1], length_coef=1.0, length_sd=0.0)
    with pytest.raises(ValueError, match="2 preferences but 3 instruction difficulties"):
        E.length_controlled([0.5, 0.6], [1, 2], [1, 1], [0, 1, 2], length_coef=1.0, length_sd=1.0)
    with pytest.raises(ValueError, match="every length difference is zero"):
        E.fit_length_coef([0.5, 0.5], [0.0, 0.0], 1.0)
    assert math.isfinite(E.length_controlled([0.5, 0.6], [1, 2], [1, 1], [0.0, 1.0], length_coef=1.0,
                                             length_sd=1.0).psi)
