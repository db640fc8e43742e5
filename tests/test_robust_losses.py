"""dpolib.losses under bad input (issue 14, items 4, 6 and 8): the right value or a clear error, never a silent one."""

import math

import pytest
import torch

from dpolib import losses as L


def pairs(n=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g, dtype=dtype) * 20 + 1) for _ in range(4)]


# ------------------------------------------------------------------ item 4: one meaning per IPO name


def trl_ipo(pc, pr, rc, rr, beta, chosen_lengths, rejected_lengths):
    """TRL 1.16's ``loss_type="ipo"``, written out: log-ratios averaged per completion token."""
    delta = (pc - rc) / chosen_lengths.clamp(min=1) - (pr - rr) / rejected_lengths.clamp(min=1)
    return (delta - 1 / (2 * beta)) ** 2


def test_ipo_name_follows_trl_length_averaged():
    pc, pr, rc, rr = pairs(6, seed=1)
    lc, lr = torch.tensor([1, 5, 64, 3, 17, 40]), torch.tensor([64, 1, 2, 30, 9, 1])
    beta = 0.1
    ours = L.get_loss("ipo")(pc, pr, rc, rr, beta, chosen_lengths=lc, rejected_lengths=lr).losses
    assert torch.allclose(ours, trl_ipo(pc, pr, rc, rr, beta, lc.double(), lr.double()), rtol=1e-12, atol=0)
    assert L.ipo_loss(pc, pr, rc, rr, beta, chosen_lengths=lc, rejected_lengths=lr).losses.equal(ours)


def test_summed_ipo_has_its_own_name_and_differs():
    pc, pr, rc, rr = pairs(6, seed=2)
    lc, lr = torch.tensor([1, 5, 64, 3, 17, 40]), torch.tensor([64, 1, 2, 30, 9, 1])
    summed = L.get_loss("ipo_sum")(pc, pr, rc, rr, 0.1).losses
    h = (pc - rc) - (pr - rr)
    assert torch.allclose(summed, (h - 5.0) ** 2, rtol=1e-12)
    assert summed.equal(L.ipo_loss(pc, pr, rc, rr, 0.1, reduction="sum").losses)
    mean = L.get_loss("ipo")(pc, pr, rc, rr, 0.1, chosen_lengths=lc, rejected_lengths=lr).losses
    assert not torch.allclose(summed, mean)


def test_ipo_without_lengths_says_which_form():
    with pytest.raises(ValueError, match=r"chosen_lengths is required.*TRL's loss_type='ipo'.*'ipo_sum'"):
        L.get_loss("ipo")(*pairs(), 0.1)


def test_registry_documents_ipo_names():
    assert {"ipo", "ipo_sum"} <= set(L.LOSSES)
    assert "ipo" in L.LENGTH_LOSSES and "ipo_sum" not in L.LENGTH_LOSSES
    assert "TRL" in L.ipo_loss.__doc__ and "ipo_sum" in L.ipo_loss.__doc__


# ------------------------------------------------------------------ item 6: integer tensors


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_logps_refused(dtype):
    """main computed these in integer arithmetic and returned ``tensor([0, 0])``; now a TypeError says why."""
    pc, pr, rc, rr = (torch.tensor(v) for v in ([-3, -7], [-5, -6], [-4, -6], [-4, -4]))
    right = L.dpo_loss(pc.double(), pr.double(), rc.double(), rr.double(), 0.1).losses
    h = torch.tensor([2.0, 1.0], dtype=torch.float64)  # the bracket of Eq. (5), by hand
    assert torch.allclose(right, -torch.nn.functional.logsigmoid(0.1 * h), atol=1e-12)  # [0.598, 0.644]
    with pytest.raises(TypeError, match=r"policy_chosen_logps has dtype torch\.\w+; log-probs must be a floating-point"):
        L.dpo_loss(pc.to(dtype), pr.double(), rc.double(), rr.double(), 0.1)
    with pytest.raises(TypeError, match=r"ref_rejected_logps has dtype"):
        L.dpo_loss(pc.double(), pr.double(), rc.double(), rr.to(dtype), 0.1)


# ------------------------------------------------------------------ item 8: the smaller ones


def test_ipo_tiny_beta_is_a_clear_error_not_inf():
    pc, pr, rc, rr = pairs()
    with pytest.raises(ValueError, match=r"IPO with beta=1e-200: the target margin 1/\(2β\) = 5e\+199 squared overflows"):
        L.ipo_loss(pc, pr, rc, rr, 1e-200, reduction="sum")
    assert torch.isfinite(L.ipo_loss(pc, pr, rc, rr, 1e-100, reduction="sum").losses).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_simpo_non_finite_lengths_refused(bad):
    pc, pr, _, _ = pairs(3)
    lengths = torch.tensor([2.0, bad, 3.0])
    with pytest.raises(ValueError, match=r"chosen_lengths\[1\] = (nan|inf): a response length in tokens must be a finite"):
        L.simpo_loss(pc, pr, lengths, torch.ones(3), 2.0)
    with pytest.raises(ValueError, match=r"rejected_lengths\[1\]"):
        L.simpo_loss(pc, pr, torch.ones(3), lengths, 2.0)


@pytest.mark.parametrize("gamma", [float("nan"), float("inf"), -float("inf")])
def test_simpo_non_finite_gamma_refused(gamma):
    pc, pr, _, _ = pairs(3)
    with pytest.raises(ValueError, match="gamma_beta_ratio must be a finite number"):
        L.simpo_loss(pc, pr, torch.ones(3), torch.ones(3), 2.0, gamma_beta_ratio=gamma)


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_empty_batch_refused(name):
    """main gave an empty loss tensor whose mean is NaN."""
    empty = torch.zeros(0, dtype=torch.float64)
    args = (empty, empty, empty, empty)
    with pytest.raises(ValueError, match=r"is empty: a batch needs at least one preference pair"):
        L.get_loss(name)(*args, 0.1)


def test_valid_inputs_unchanged():
    """The guards change no value: DPO at equal policy and reference is ln 2, rewards 0."""
    pc, pr, _, _ = pairs(5)
    out = L.dpo_loss(pc, pr, pc.clone(), pr.clone(), 0.5)
    assert torch.allclose(out.losses, torch.full((5,), math.log(2), dtype=torch.float64))
    assert out.chosen_rewards.abs().max() == 0 and out.rejected_rewards.abs().max() == 0
