"""The paired bootstrap over prompts: coverage, pairing, pooling over world seeds, determinism, input errors."""

import time

import numpy as np
import pytest

from dpolib.stats import Interval, paired_bootstrap, pooled_paired_bootstrap


def test_interval_properties_and_format():
    above = Interval(1.234, 0.41, 2.05, n=10)
    assert above.format() == str(above) == "+1.23 [+0.41, +2.05]"
    assert above.format(1) == "+1.2 [+0.4, +2.0]"
    assert above.half_width == pytest.approx(0.82)
    assert above.excludes_zero and above.sign == 1
    below = Interval(-0.5, -0.9, -0.1, n=10)
    assert below.excludes_zero and below.sign == -1 and str(below) == "-0.50 [-0.90, -0.10]"
    across = Interval(0.1, -0.2, 0.4, n=10)
    assert not across.excludes_zero and across.sign == 0
    with pytest.raises(AttributeError):
        above.low = 0.0  # frozen


def test_coverage_of_a_known_mean():
    """The 95% interval covers the true mean in roughly 95% of simulated datasets (90-99% of 200)."""
    rng = np.random.default_rng(123)
    true_mean, covered = 0.3, 0
    for k in range(200):
        data = rng.normal(true_mean, 1.0, 60)
        interval = paired_bootstrap(data, n_boot=1000, seed=k)
        assert interval.estimate == pytest.approx(data.mean())
        covered += interval.low <= true_mean <= interval.high
    assert 0.90 <= covered / 200 <= 0.99


def test_pairing_narrows_the_interval():
    """Two policies on the same prompts share each prompt's difficulty; pairing cancels it."""
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 1.0, 500)
    a = difficulty + 0.10 + rng.normal(0, 0.05, 500)
    b = difficulty + rng.normal(0, 0.05, 500)
    paired = paired_bootstrap(a, b)
    unpaired = paired_bootstrap(a, rng.permutation(b))  # same values, pairing broken
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.half_width < unpaired.half_width / 5
    assert paired.excludes_zero and paired.sign == 1
    assert not unpaired.excludes_zero and unpaired.sign == 0


def test_determinism_and_seed():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 200), rng.normal(0, 1, 200)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7) != paired_bootstrap(a, b, seed=8)
    worlds = [(a, b), (b[:150], a[:150])]
    assert pooled_paired_bootstrap(worlds, seed=3) == pooled_paired_bootstrap(worlds, seed=3)


def test_interval_excludes_zero_or_not():
    rng = np.random.default_rng(2)
    assert paired_bootstrap(rng.normal(0.5, 1.0, 400)).sign == 1
    assert paired_bootstrap(rng.normal(-0.5, 1.0, 400)).sign == -1
    symmetric = np.tile([-1.0, 1.0], 100)
    interval = paired_bootstrap(symmetric)
    assert interval.estimate == 0.0 and not interval.excludes_zero and interval.n == 200
    assert paired_bootstrap(symmetric, confidence=0.5).half_width < interval.half_width


def test_pooled_estimate_weighs_worlds_equally():
    rng = np.random.default_rng(3)
    worlds = [(rng.normal(mu, 1, n), rng.normal(0, 1, n)) for mu, n in ((0.2, 100), (0.6, 400), (0.4, 50))]
    pooled = pooled_paired_bootstrap(worlds)
    per_world = [np.mean(a - b) for a, b in worlds]
    assert pooled.estimate == pytest.approx(np.mean(per_world))
    assert pooled.estimate != pytest.approx(np.mean(np.concatenate([a - b for a, b in worlds])))
    assert pooled.n == 550 and pooled.low < pooled.estimate < pooled.high
    # one world pooled is that world's paired bootstrap (same seed, same draws)
    assert pooled_paired_bootstrap([worlds[0]], seed=5) == paired_bootstrap(*worlds[0], seed=5)
    # b may be None: a world's mean of a
    assert pooled_paired_bootstrap([(worlds[0][0], None)]).estimate == pytest.approx(worlds[0][0].mean())


def test_pooled_is_fast():
    """2000 replicates x 2000 prompts x 3 worlds: about 0.1-0.2 s here (bound loose for a shared machine)."""
    rng = np.random.default_rng(4)
    worlds = [(rng.normal(0.1, 1, 2000), rng.normal(0, 1, 2000)) for _ in range(3)]
    start = time.perf_counter()
    pooled_paired_bootstrap(worlds, n_boot=2000)
    assert time.perf_counter() - start < 3.0


def test_input_errors():
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        paired_bootstrap([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no values"):
        paired_bootstrap([])
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap([1.0, float("nan")])
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap([1.0, 2.0], [0.0, float("inf")])
    for confidence in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="confidence"):
            paired_bootstrap([1.0, 2.0], confidence=confidence)
    with pytest.raises(ValueError, match="no worlds"):
        pooled_paired_bootstrap([])
    with pytest.raises(ValueError, match="world 1"):
        pooled_paired_bootstrap([([1.0, 2.0], [0.0, 0.0]), ([1.0], [0.0, 0.0])])
    with pytest.raises(ValueError, match="world 0 is not an"):
        pooled_paired_bootstrap([np.zeros(3)])
