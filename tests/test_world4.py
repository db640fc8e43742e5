"""World 4's pieces: on-policy control configs, compact curves, the learning-rate rule, the evidence rules and gate."""

from __future__ import annotations

import numpy as np
import pytest

from dpolib.chapters import evidence as EV
from dpolib.experiments import config as C
from dpolib.experiments.records import MAX_CURVE_ROWS, compact_curves
from record_factory import make_record


def test_on_policy_control_is_dpo_with_the_sft_reference_only():
    c = C.RunConfig("cpu", "char", "dpo", "self", 0.1, pairs="on-policy")
    assert c.label().endswith("/pairs=on-policy")
    assert c.key() != C.RunConfig("cpu", "char", "dpo", "self", 0.1).key()
    with pytest.raises(ValueError, match="on-policy control is DPO with the SFT reference"):
        C.RunConfig("cpu", "char", "probability", "uniform", 0.1, pairs="on-policy")
    with pytest.raises(ValueError, match="pairs must be one of"):
        C.RunConfig("cpu", "char", pairs="self-play")
    controls = C.sweep_grid("controls", "cpu")
    assert {c.pairs for c in controls} == {"on-policy"} and {c.beta for c in controls} == set(C.BETAS["controls"])
    with pytest.raises(ValueError, match="cpu world"):
        C.sweep_grid("controls", "gpu")


def test_rq3_self_runs_are_rq1_runs():
    rq1 = set(C.sweep_grid("rq1", "cpu"))
    rq3_self = [c for c in C.sweep_grid("rq3", "cpu") if c.reference == "self"]
    assert rq3_self and all(c in rq1 for c in rq3_self)
    assert set(C.BETAS["rq1"]) == {10.0, 1.0, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001}


def test_compact_curves_averages_windows_and_keeps_the_read_keys():
    rows = [{"step": i + 1, "loss": float(i), "rewards/accuracies": (i % 2) * 1.0, "entropy": 3.0} for i in range(400)]
    out = compact_curves(rows)
    assert len(out) <= MAX_CURVE_ROWS and out[-1]["step"] == 400
    assert "entropy" not in out[0]  # not read back, not kept
    assert out[0] == {"step": 1, "loss": 0.0, "rewards/accuracies": 0.0}  # step 1 as logged: the log-2 check
    assert out[1]["step"] > 2  # the rest is window means
    widths = np.diff([0] + [r["step"] for r in out])  # each row stands for the steps since the previous one
    assert np.average([r["loss"] for r in out], weights=widths) == pytest.approx(np.mean([r["loss"] for r in rows]))
    assert compact_curves(rows[:10]) == [{k: v for k, v in r.items() if k != "entropy"} for r in rows[:10]]
    assert compact_curves([]) == []


def _arm(student, beta, seeds, shift, n=400, pairs="pool", objective="dpo", noise=0.3):
    out = []
    for s in seeds:
        rng = np.random.default_rng(1000 * s + 7)
        base = rng.uniform(0.3, 0.7, n)  # per-prompt difficulty shared by the arms of one world
        gold = np.clip(base + shift + rng.normal(0, noise, n) * 0.1, 0, 1)
        rec = make_record(student, objective, beta=beta, seed=s, prompt_scores=gold.round(4).tolist(),
                          prompt_lc=(gold * 0.5).round(4).tolist())
        out.append(rec.with_config(pairs=pairs) if pairs != "pool" else rec)
    return out


def _sft(student, seeds, n=400):
    return _arm(student, None, seeds, 0.0, n, objective="sft")


def test_gate_passes_when_an_arm_beats_sft_in_every_world():
    seeds = (0, 1, 2)
    records = _sft("char", seeds) + _arm("char", 0.1, seeds, +0.03) + _arm("char", 1.0, seeds, 0.0)
    gate = EV.validity_gate(records)
    assert gate.passed and "β=0.1" in gate.best.label and gate.best.holds
    assert "passes" in gate.sentence()


def test_gate_fails_when_nothing_beats_sft_and_controls_do_not_count():
    seeds = (0, 1, 2)
    records = (_sft("char", seeds) + _arm("char", 0.1, seeds, -0.02) + _arm("char", 1.0, seeds, 0.0)
               + _arm("char", 1.0, seeds, +0.05, pairs="on-policy"))
    gate = EV.validity_gate(records)
    assert not gate.passed and "FAILS" in gate.sentence()
    assert len(gate.controls) == 1 and gate.controls[0].pooled.low > 0  # the control gains, but is no headline


def test_a_finding_needs_its_direction_in_every_world():
    sft = _sft("char", (0, 1, 2))
    mixed = _arm("char", 0.1, (0, 1), +0.05) + _arm("char", 0.1, (2,), -0.05)
    c = EV.compare_arms(mixed, sft, "gold")
    assert set(c.per_world) == {0, 1, 2} and not c.holds and c.verdict == "cannot tell"
    assert EV.compare_arms(_arm("char", 0.1, (0, 1, 2), +0.05), sft).verdict == "A > B"
    assert EV.compare_arms(_arm("char", 0.1, (0, 1, 2), -0.05), sft).verdict == "A < B"


def test_evidence_refuses_records_without_per_prompt_values():
    old = make_record("char", "dpo", beta=0.1)
    with pytest.raises(ValueError, match="no per-prompt"):
        EV.prompt_values(old, "gold")
    with pytest.raises(ValueError, match="metric must be one of"):
        EV.prompt_values(old, "bleu")
    with pytest.raises(ValueError, match="share no world seed"):
        EV.compare_arms(_arm("char", 0.1, (0,), 0.0), _sft("char", (1,)))
    assert EV.validity_gate([old]).best is None


def test_half_widths_are_reported_per_world_and_pooled():
    seeds = (0, 1, 2)
    hw = EV.half_width_summary(_sft("char", seeds) + _arm("char", 0.1, seeds, 0.01))
    assert len(hw["lc_per_world"]) == 3 and len(hw["lc_pooled"]) == 1
    assert hw["lc_pooled"][0] < max(hw["lc_per_world"])  # three worlds pin the mean down better than one
