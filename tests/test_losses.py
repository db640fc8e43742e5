"""dpolib.losses: closed forms, parity with TRL's implementations, gradients, stability, errors."""

import math
import types
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from dpolib import losses as L

torch.set_default_dtype(torch.float32)


def random_logps(n=16, seed=0, scale=30.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g, dtype=dtype) * scale + 0.1) for _ in range(4)]


# ------------------------------------------------------------------ closed forms


def test_dpo_closed_form_value():
    # h = (-3 - -4) - (-6 - -5) = 1 - (-1) = 2 ; loss = log(1 + e^{-β h}) = log(1 + e^{-0.2})
    out = L.dpo_loss(*(torch.tensor([v], dtype=torch.float64) for v in (-3.0, -6.0, -4.0, -5.0)), beta=0.1)
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-0.2)), abs=1e-15)
    assert out.chosen_rewards.item() == pytest.approx(0.1)
    assert out.rejected_rewards.item() == pytest.approx(-0.1)


def test_equal_policy_and_reference_gives_log2():
    pc, pr, _, _ = random_logps()
    out = L.dpo_loss(pc, pr, pc, pr, beta=0.37)
    assert torch.allclose(out.losses, torch.full_like(pc, math.log(2)), atol=1e-15)


def test_uniform_reference_equals_reference_free_loss():
    """Eq. (5) with constant reference log-probs is Eq. (10) for any constant."""
    pc, pr, _, _ = random_logps()
    beta = 0.5
    ref_free = -F.logsigmoid(beta * pc - beta * pr)
    for const in (0.0, -7.3, -1e4):
        c = torch.full_like(pc, const)
        assert torch.allclose(L.dpo_loss(pc, pr, c, c, beta).losses, ref_free, atol=1e-12)


def test_prior_reference_equals_likelihood_objective():
    """Eq. (15): with p_ref = p_LM(y), DPO's logit equals β[log p(x|y_w) - log p(x|y_l)] via Bayes (Eq. 14)."""
    pc, pr, prior_c, prior_r = random_logps(seed=3)
    log_px = torch.full_like(pc, -11.0)  # log p(x): cancels within a pair
    log_x_given_yw = pc + log_px - prior_c  # Eq. (14)
    log_x_given_yl = pr + log_px - prior_r
    beta = 0.05
    likelihood = -F.logsigmoid(beta * log_x_given_yw - beta * log_x_given_yl)
    assert torch.allclose(L.dpo_loss(pc, pr, prior_c, prior_r, beta).losses, likelihood, atol=1e-12)


def test_cdpo_zero_smoothing_is_dpo_and_robust_zero_smoothing_is_dpo():
    args = random_logps(seed=4)
    base = L.dpo_loss(*args, beta=0.2).losses
    assert torch.allclose(L.cdpo_loss(*args, beta=0.2, label_smoothing=0.0).losses, base, atol=1e-14)
    assert torch.allclose(L.robust_dpo_loss(*args, beta=0.2, label_smoothing=0.0).losses, base, atol=1e-14)


def test_cdpo_has_finite_minimiser():
    """With ε > 0 the conservative loss is minimised at β h = log((1-ε)/ε), not at infinity."""
    eps, beta = 0.1, 1.0
    h = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    zero = torch.zeros_like(h)
    loss = L.cdpo_loss(h, zero, zero, zero, beta, label_smoothing=eps).losses
    assert h[loss.argmin()].item() == pytest.approx(math.log((1 - eps) / eps), abs=1e-3)


def test_ipo_minimiser_is_half_inverse_beta():
    beta = 0.25
    h = torch.linspace(-10, 10, 40001, dtype=torch.float64)
    zero = torch.zeros_like(h)
    loss = L.ipo_loss(h, zero, zero, zero, beta, reduction="sum").losses
    assert h[loss.argmin()].item() == pytest.approx(1 / (2 * beta), abs=1e-3)


def test_simpo_closed_form():
    pc, pr = torch.tensor([-10.0], dtype=torch.float64), torch.tensor([-30.0], dtype=torch.float64)
    lc, lr = torch.tensor([5]), torch.tensor([10])
    out = L.simpo_loss(pc, pr, lc, lr, beta=2.0, gamma_beta_ratio=0.5)
    logit = 2.0 * (-2.0 - -3.0) - 1.0
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-logit)), abs=1e-14)


def test_implicit_reward_eq6():
    assert L.implicit_reward(torch.tensor([-2.0]), torch.tensor([-5.0]), 0.1).item() == pytest.approx(0.3)


# ------------------------------------------------------------------ parity with TRL


class _FakeAccelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather


def trl_dpo_losses(loss_type, pc, pr, rc, rr, beta, label_smoothing=0.0, lengths=None):
    """Per-pair losses from TRL 1.16's own ``DPOTrainer._compute_loss`` on prescribed sequence log-probs.

    TRL reduces a batch with ``.mean()``, so each pair is run as its own batch of two rows
    (chosen, rejected). A stand-in model returns per-token log-probs whose sums are the given
    sequence log-probs, spread evenly over ``lengths`` completion tokens (default 3), so TRL's
    loss code runs unchanged on exactly our inputs.
    """
    from trl import DPOTrainer

    n = pc.shape[0]
    lengths = lengths if lengths is not None else torch.full((2 * n,), 3)
    seq = int(lengths.max()) + 2
    per_pair = []
    for i in range(n):
        pair_lengths = lengths[[i, n + i]]
        completion_mask = torch.zeros(2, seq, dtype=torch.long)
        per_token = torch.zeros(2, seq - 1, dtype=pc.dtype)
        for row, (k, logp) in enumerate(zip(pair_lengths.tolist(), (pc[i], pr[i]))):
            completion_mask[row, 1 : 1 + k] = 1
            per_token[row, :k] = logp / k  # position t predicts token t + 1
        zeros = torch.zeros(2, seq - 1, dtype=pc.dtype)
        model = types.SimpleNamespace(training=True)
        model_out = types.SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())
        fake_trainer = types.SimpleNamespace(
            model=model,
            accelerator=_FakeAccelerator(),
            aux_loss_enabled=False,
            precompute_ref_logps=True,
            ld_alpha=None,
            f_divergence_type="reverse_kl",
            loss_types=[loss_type],
            loss_weights=[1.0],
            beta=beta,
            label_smoothing=label_smoothing,
            use_weighting=False,
            _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
            _total_train_tokens=0,
            _tp_size=1,
            args=types.SimpleNamespace(discopop_tau=0.05),
        )
        inputs = {
            "input_ids": torch.zeros(2, seq, dtype=torch.long),
            "attention_mask": torch.ones(2, seq, dtype=torch.long),
            "completion_mask": completion_mask,
            "ref_chosen_logps": rc[i : i + 1],
            "ref_rejected_logps": rr[i : i + 1],
        }
        per_pair.append(DPOTrainer._compute_loss(fake_trainer, lambda **kw: model_out, inputs, False))
    return torch.stack(per_pair)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("beta", [1e-3, 0.1, 10.0])
def test_parity_with_trl_sigmoid(seed, beta):
    pc, pr, rc, rr = random_logps(n=6, seed=seed)
    ours = L.dpo_loss(pc, pr, rc, rr, beta).losses
    theirs = trl_dpo_losses("sigmoid", pc, pr, rc, rr, beta)
    assert (ours - theirs).abs().max().item() < 1e-6


@pytest.mark.parametrize("beta", [0.01, 0.5])
def test_parity_with_trl_ipo_mean(beta):
    pc, pr, rc, rr = random_logps(n=6, seed=5)
    lengths = torch.tensor([3, 7, 2, 9, 4, 5, 8, 1, 6, 3, 2, 7])
    ours = L.ipo_loss(pc, pr, rc, rr, beta, reduction="mean", chosen_lengths=lengths[:6], rejected_lengths=lengths[6:]).losses
    theirs = trl_dpo_losses("ipo", pc, pr, rc, rr, beta, lengths=lengths)
    assert (ours - theirs).abs().max().item() < 1e-6


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_parity_with_trl_robust(eps):
    pc, pr, rc, rr = random_logps(n=6, seed=6)
    ours = L.robust_dpo_loss(pc, pr, rc, rr, 0.2, label_smoothing=eps).losses
    theirs = trl_dpo_losses("robust", pc, pr, rc, rr, 0.2, label_smoothing=eps)
    assert (ours - theirs).abs().max().item() < 1e-6


def test_parity_with_trl_hinge():
    pc, pr, rc, rr = random_logps(n=6, seed=7, scale=3.0)
    ours = L.hinge_loss(pc, pr, rc, rr, 0.7).losses
    theirs = trl_dpo_losses("hinge", pc, pr, rc, rr, 0.7)
    assert (ours - theirs).abs().max().item() < 1e-6


def _cpo_self(loss_type, beta, label_smoothing=0.0, simpo_gamma=0.5):
    return types.SimpleNamespace(
        alpha=0.0,
        loss_type=loss_type,
        beta=beta,
        label_smoothing=label_smoothing,
        simpo_gamma=simpo_gamma,
        accelerator=_FakeAccelerator(),
    )


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_parity_simpo_with_trl_cpo(eps):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOTrainer

    pc, pr, _, _ = random_logps(n=8, seed=8)
    lc = torch.tensor([3, 9, 4, 12, 5, 7, 2, 6])
    lr = torch.tensor([8, 2, 6, 3, 11, 4, 9, 5])
    beta, ratio = 2.0, 0.4
    ours = L.simpo_loss(pc, pr, lc, lr, beta, gamma_beta_ratio=ratio, label_smoothing=eps)
    # TRL's CPO averages log-probs before the loss when loss_type="simpo"; its simpo_gamma is the absolute γ.
    theirs, tc, trr = CPOTrainer.cpo_loss(_cpo_self("simpo", beta, eps, simpo_gamma=ratio * beta), pc / lc, pr / lr)
    assert (ours.losses - theirs).abs().max().item() < 1e-6
    assert (ours.chosen_rewards - tc).abs().max().item() < 1e-6


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_parity_cdpo_with_trl_cpo_conservative_sigmoid(eps):
    """cDPO is TRL CPO's label-smoothed sigmoid applied to the DPO log-ratios (TRL's DPO sigmoid has no ε)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOTrainer

    pc, pr, rc, rr = random_logps(n=8, seed=13)
    ours = L.cdpo_loss(pc, pr, rc, rr, 0.2, label_smoothing=eps).losses
    theirs, _, _ = CPOTrainer.cpo_loss(_cpo_self("sigmoid", 0.2, eps), pc - rc, pr - rr)
    assert (ours - theirs).abs().max().item() < 1e-6


def test_uniform_reference_dpo_matches_trl_cpo_sigmoid():
    """Eq. (10), the posterior-probability objective, is CPO's preference term (Xu et al. 2024) without the NLL."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOTrainer

    pc, pr, _, _ = random_logps(n=8, seed=9)
    zero = torch.zeros_like(pc)
    ours = L.dpo_loss(pc, pr, zero, zero, 0.3).losses
    theirs, _, _ = CPOTrainer.cpo_loss(_cpo_self("sigmoid", 0.3), pc, pr)
    assert (ours - theirs).abs().max().item() < 1e-6


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("name", ["sigmoid", "cdpo", "robust", "ipo", "ipo_sum", "hinge"])
def test_gradcheck(name):
    pc, pr, rc, rr = [t[:4].clone().requires_grad_(True) for t in random_logps(seed=10, scale=3.0)]
    kwargs = {"label_smoothing": 0.1} if name in ("cdpo", "robust") else {}
    if name == "ipo":  # length-averaged (TRL's form): lengths in tokens
        kwargs = {"chosen_lengths": torch.tensor([3, 5, 1, 8]), "rejected_lengths": torch.tensor([2, 2, 7, 4])}
    fn = L.get_loss(name)
    assert torch.autograd.gradcheck(lambda a, b, c, d: fn(a, b, c, d, 0.3, **kwargs).losses, (pc, pr, rc, rr))


def test_dpo_gradient_weight_is_sigmoid_of_negative_margin():
    """d loss / d log p_θ(y_w) = -β σ(-β h): the DPO gradient weight (Rafailov et al. 2023, Eq. 7)."""
    pc, pr, rc, rr = random_logps(n=5, seed=11, scale=5.0)
    pc = pc.clone().requires_grad_(True)
    beta = 0.2
    L.dpo_loss(pc, pr, rc, rr, beta).losses.sum().backward()
    h = (pc - rc) - (pr - rr)
    assert torch.allclose(pc.grad, -beta * torch.sigmoid(-beta * h.detach()), atol=1e-12)


# ------------------------------------------------------------------ stability and dtypes


@pytest.mark.parametrize("name", ["sigmoid", "cdpo", "robust", "ipo_sum", "hinge"])
@pytest.mark.parametrize("beta", [1e-4, 1.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_extremes(name, beta, dtype):
    big = torch.tensor([-1e5, -1e-3, -1e5, -50.0], dtype=dtype)
    small = torch.tensor([-1e-3, -1e5, -1e5, -1e5], dtype=dtype)
    args = [big.clone().requires_grad_(True), small, small.flip(0), big.flip(0)]
    kwargs = {"label_smoothing": 0.1} if name in ("cdpo", "robust") else {}
    out = L.get_loss(name)(*args, beta, **kwargs)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(args[0].grad).all()
    assert out.losses.dtype == dtype


def test_simpo_finite_at_extremes():
    pc = torch.tensor([-1e5, -1e-3], requires_grad=True)
    out = L.simpo_loss(pc, torch.tensor([-1e-3, -1e5]), torch.tensor([1, 1]), torch.tensor([1, 1]), 1e4)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(pc.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_dtype_and_matches_float32(dtype):
    args = [t.to(dtype) for t in random_logps(n=8, seed=12, scale=5.0, dtype=torch.float32)]
    out = L.dpo_loss(*args, beta=0.1)
    ref = L.dpo_loss(*[a.float() for a in args], beta=0.1)
    assert out.losses.dtype == dtype
    assert torch.allclose(out.losses.float(), ref.losses, atol=1e-2)


def test_no_reduction():
    assert L.dpo_loss(*random_logps(n=7), beta=0.1).losses.shape == (7,)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        L.dpo_loss(*random_logps(n=2), beta=beta)


def test_non_finite_logp_names_the_row():
    pc, pr, rc, rr = random_logps(n=4)
    pr = pr.clone()
    pr[2] = float("-inf")
    with pytest.raises(ValueError, match=r"policy_rejected_logps\[2\] = -inf is not finite"):
        L.dpo_loss(pc, pr, rc, rr, 0.1)
    rc = rc.clone()
    rc[1] = float("nan")
    with pytest.raises(ValueError, match=r"ref_chosen_logps\[1\]"):
        L.dpo_loss(pc, pc, rc, rr, 0.1)


def test_unequal_lengths_raise():
    pc, pr, rc, rr = random_logps(n=4)
    with pytest.raises(ValueError, match="one entry per preference pair"):
        L.dpo_loss(pc, pr[:3], rc, rr, 0.1)


def test_wrong_rank_raises():
    pc, pr, rc, rr = random_logps(n=4)
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        L.dpo_loss(pc.unsqueeze(1), pr, rc, rr, 0.1)


def test_bad_label_smoothing_and_reduction_and_lengths():
    args = random_logps(n=3)
    with pytest.raises(ValueError, match="label_smoothing"):
        L.cdpo_loss(*args, 0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match="reduction must be"):
        L.ipo_loss(*args, 0.1, reduction="avg")
    with pytest.raises(ValueError, match="chosen_lengths is required"):
        L.ipo_loss(*args, 0.1, reduction="mean")
    with pytest.raises(ValueError, match=r"chosen_lengths\[1\] = 0"):
        L.simpo_loss(args[0], args[1], torch.tensor([2, 0, 1]), torch.tensor([1, 1, 1]), 0.1)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'dpo2'"):
        L.get_loss("dpo2")
