"""Preference losses over sequence log-probabilities.

Every loss here is a pure function of per-pair *sequence* log-probs (one scalar
per response, shape ``(batch,)``) plus scalars, in the style of
``preference_loss`` in eric-mitchell/direct-preference-optimization. Nothing
here knows about models, tokenizers or TRL.

Notation (the paper's, spelled out)::

    policy_chosen_logps    log p_θ(y_w | x)      (batch,)
    policy_rejected_logps  log p_θ(y_l | x)      (batch,)
    ref_chosen_logps       log p_ref(y_w | x)    (batch,)
    ref_rejected_logps     log p_ref(y_l | x)    (batch,)

The paper's three objectives are *one* loss with three references (see
:mod:`dpolib.references`)::

    DPO (Eq. 5)                   dpo_loss with p_ref = the SFT model
    posterior probability (Eq. 10) dpo_loss with p_ref = uniform   (ref log-probs constant)
    likelihood (Eq. 15)           dpo_loss with p_ref = p_LM(y), the unconditional prior

so no separate code exists for Eqs. 10 and 15.

Every loss returns a :class:`PreferenceLossOutput` with per-pair ``losses``
(no reduction) and the implicit rewards (Eq. 6) that TRL logs as
``rewards/chosen`` and ``rewards/rejected``. Inputs are validated: a
non-finite log-prob or length, an integer tensor, an empty batch, ``beta <= 0``
or a loss that overflows raises an error naming the row or argument, rather than
producing a silent NaN, inf or integer loss. The computation runs in the
inputs' dtype (float16/bfloat16 inputs are promoted to float32 internally and
cast back, so the loss keeps the caller's dtype).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "PreferenceLossOutput",
    "implicit_reward",
    "dpo_loss",
    "cdpo_loss",
    "robust_dpo_loss",
    "ipo_loss",
    "ipo_sum_loss",
    "hinge_loss",
    "simpo_loss",
    "LOSSES",
    "REFERENCE_FREE_LOSSES",
    "LENGTH_LOSSES",
    "get_loss",
]


class PreferenceLossOutput(NamedTuple):
    """Per-pair result of a preference loss.

    Attributes:
        losses: ``(batch,)`` per-pair loss, not reduced.
        chosen_rewards: ``(batch,)`` implicit reward of y_w (Eq. 6), detached.
        rejected_rewards: ``(batch,)`` implicit reward of y_l (Eq. 6), detached.
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


# --------------------------------------------------------------------------- checks


def _check_beta(beta: float, name: str = "beta") -> float:
    beta = float(beta)
    if not (beta > 0.0) or beta != beta or beta == float("inf"):
        raise ValueError(
            f"{name} must be a finite number > 0, got {beta!r}. beta is the KL-constraint strength "
            "(Eq. 1): larger beta keeps the policy closer to the reference; the paper sweeps 0.001 to 100."
        )
    return beta


def _check_logps(**tensors: torch.Tensor) -> torch.Tensor:
    """Validate sequence log-prob tensors; return the first one (for dtype/device)."""
    shape = None
    first = None
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (batch,), got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(
                f"{name} has dtype {t.dtype}; log-probs must be a floating-point tensor (integer arithmetic would "
                "give an integer loss). Convert it first, e.g. tensor.double()."
            )
        if t.dim() != 1:
            raise ValueError(f"{name} must have shape (batch,) (one sequence log-prob per pair), got {tuple(t.shape)}")
        if t.shape[0] == 0:
            raise ValueError(f"{name} is empty: a batch needs at least one preference pair (the mean of no losses is NaN)")
        if shape is None:
            shape, first = t.shape, t
        elif t.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but the other log-prob tensors have {tuple(shape)}: "
                "chosen and rejected lists must have one entry per preference pair"
            )
        finite = torch.isfinite(t.detach())
        if not bool(finite.all()):
            row = int((~finite).nonzero()[0, 0])
            raise ValueError(
                f"{name}[{row}] = {t[row].item()} is not finite. A log-prob of -inf means the model gives the "
                "response zero probability (check the tokenizer/template or an empty response); NaN usually "
                "comes from a diverged model."
            )
    return first


def _upcast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Half precision is computed in float32 (exp/log-sigmoid of large margins overflow in fp16)."""
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


def _lengths(lengths: torch.Tensor | None, name: str, like: torch.Tensor, hint: str = "") -> torch.Tensor:
    if lengths is None:
        raise ValueError(f"{name} is required for a length-normalised loss (reduction='mean'){hint}")
    lengths = torch.as_tensor(lengths, device=like.device)
    if lengths.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(lengths.shape)}")
    if lengths.is_floating_point() and not bool(torch.isfinite(lengths).all()):
        row = int((~torch.isfinite(lengths)).nonzero()[0, 0])
        raise ValueError(f"{name}[{row}] = {lengths[row].item()}: a response length in tokens must be a finite number")
    if bool((lengths <= 0).any()):
        row = int((lengths <= 0).nonzero()[0, 0])
        raise ValueError(f"{name}[{row}] = {lengths[row].item():g}: an empty response has no log-prob to normalise")
    return lengths.to(like.dtype)


def _check_finite_losses(losses: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(losses.detach()).all()):
        row = int((~torch.isfinite(losses.detach())).nonzero()[0, 0])
        raise ValueError(f"{what}: the loss of row {row} is {losses[row].item()} in {losses.dtype}")
    return losses


def _check_label_smoothing(label_smoothing: float) -> float:
    eps = float(label_smoothing)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
    return eps


def _pair_inputs(beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps):
    """Validate β and the four log-prob tensors; return ``(beta, dtype, upcast tensors)``."""
    beta = _check_beta(beta)
    first = _check_logps(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    return beta, first.dtype, _upcast(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)


def _output(losses, chosen_rewards, rejected_rewards, dtype) -> PreferenceLossOutput:
    return PreferenceLossOutput(
        losses.to(dtype), chosen_rewards.detach().to(dtype), rejected_rewards.detach().to(dtype)
    )


# --------------------------------------------------------------------------- rewards


def implicit_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. (6): r_θ(x, y) = β · [log p_θ(y|x) − log p_ref(y|x)].

    With a uniform reference this is Eq. (9), β log p_θ(y|x) (up to a constant);
    with the prior reference p_LM(y) it is β log p_θ(x|y) (Eq. 14, up to log p(x)).

    Args:
        policy_logps: ``(batch,)`` sequence log-probs under the policy.
        ref_logps: ``(batch,)`` sequence log-probs under the reference.
        beta: KL-constraint strength, > 0.
    """
    beta = _check_beta(beta)
    return beta * (policy_logps - ref_logps)


def _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps):
    """h = [log p_θ(y_w) − log p_ref(y_w)] − [log p_θ(y_l) − log p_ref(y_l)] (the bracket of Eq. 5)."""
    return (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)


# --------------------------------------------------------------------------- losses


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> PreferenceLossOutput:
    """Eq. (5), the DPO loss (TRL ``loss_type="sigmoid"``), per pair:

        −log σ(β [(log p_θ(y_w|x) − log p_ref(y_w|x)) − (log p_θ(y_l|x) − log p_ref(y_l|x))])

    With constant reference log-probs (a uniform reference) this is Eq. (10), the
    reference-free *posterior probability* objective; with the prior p_LM(y) as
    reference it is Eq. (15), the *likelihood* objective.

    Args:
        policy_chosen_logps, policy_rejected_logps: ``(batch,)`` summed log-probs under p_θ.
        ref_chosen_logps, ref_rejected_logps: ``(batch,)`` summed log-probs under p_ref.
        beta: KL-constraint strength β > 0 (Eq. 1).

    Returns:
        :class:`PreferenceLossOutput`; rewards are Eq. (6).
    """
    beta, dtype, (pc, pr, rc, rr) = _pair_inputs(
        beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    losses = -F.logsigmoid(beta * _margin(pc, pr, rc, rr))
    return _output(losses, beta * (pc - rc), beta * (pr - rr), dtype)


def cdpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """Conservative DPO (cDPO; Mitchell 2023): Eq. (5) with labels flipped with probability ε:

        −(1 − ε) log σ(β h) − ε log σ(−β h),   h the bracket of Eq. (5)

    ε = ``label_smoothing`` in [0, 0.5). ε = 0 is exactly :func:`dpo_loss`. This is the
    form of eric-mitchell's ``preference_loss(label_smoothing=ε)`` and of TRL's CPO
    ``sigmoid`` loss; it is *biased* (its minimiser is a finite margin).
    """
    eps = _check_label_smoothing(label_smoothing)
    beta, dtype, (pc, pr, rc, rr) = _pair_inputs(
        beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    logits = beta * _margin(pc, pr, rc, rr)
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return _output(losses, beta * (pc - rc), beta * (pr - rr), dtype)


def robust_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """Robust DPO (rDPO; Chowdhury et al. 2024), the *unbiased* label-noise correction
    (TRL ``loss_type="robust"``):

        [−(1 − ε) log σ(β h) + ε log σ(−β h)] / (1 − 2ε),   h the bracket of Eq. (5)

    ε = ``label_smoothing`` in [0, 0.5) is the assumed flip rate.
    """
    eps = _check_label_smoothing(label_smoothing)
    beta, dtype, (pc, pr, rc, rr) = _pair_inputs(
        beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    logits = beta * _margin(pc, pr, rc, rr)
    losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    return _output(losses, beta * (pc - rc), beta * (pr - rr), dtype)


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    reduction: str = "mean",
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> PreferenceLossOutput:
    """IPO (Azar et al. 2023, their Eq. 17 with τ = β), per pair:

        (h − 1/(2β))²,   h = log-ratio(y_w) − log-ratio(y_l)

    ``reduction`` says how a log-ratio aggregates tokens, and matters for IPO's scale
    (the two differ by orders of magnitude on responses of tens of tokens):

    * ``"mean"`` (default, the registered name ``"ipo"``, TRL ``loss_type="ipo"``):
      each log-ratio divided by its response length in tokens; needs
      ``chosen_lengths`` and ``rejected_lengths`` ``(batch,)``.
    * ``"sum"`` (the registered name ``"ipo_sum"``, :func:`ipo_sum_loss`): the
      sequence log-ratio as in Eq. (5) (eric-mitchell, OpenRLHF); lengths are ignored.

    Rewards are Eq. (6) on the summed log-ratios in both cases.

    Raises:
        ValueError: lengths missing for ``"mean"``; or β so small that the target
            margin 1/(2β) squared overflows the dtype (the loss would be inf).
    """
    beta, dtype, (pc, pr, rc, rr) = _pair_inputs(
        beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    chosen_logratios, rejected_logratios = pc - rc, pr - rr
    if reduction == "mean":
        hint = (
            ": IPO is length-averaged by default, as TRL's loss_type='ipo'; pass both lengths in tokens, or "
            "reduction='sum' (the loss 'ipo_sum') for the summed form"
        )
        chosen_logratios = chosen_logratios / _lengths(chosen_lengths, "chosen_lengths", pc, hint)
        rejected_logratios = rejected_logratios / _lengths(rejected_lengths, "rejected_lengths", pc, hint)
    elif reduction != "sum":
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    losses = (chosen_logratios - rejected_logratios - 1 / (2 * beta)) ** 2
    _check_finite_losses(
        losses,
        f"IPO with beta={beta!r}: the target margin 1/(2β) = {1 / (2 * beta):.3g} squared overflows "
        f"{losses.dtype} (the loss is inf); use a larger beta (IPO is usually run with beta in 1e-3..1), or float64",
    )
    return _output(losses, beta * (pc - rc), beta * (pr - rr), dtype)


def ipo_sum_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> PreferenceLossOutput:
    """IPO on summed sequence log-ratios (registered as ``"ipo_sum"``): :func:`ipo_loss` with ``reduction="sum"``::

        (h − 1/(2β))²,   h the bracket of Eq. (5)

    This is *not* TRL's ``loss_type="ipo"`` (which is length-averaged; use ``"ipo"``).
    """
    return ipo_loss(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, reduction="sum"
    )


def hinge_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> PreferenceLossOutput:
    """SLiC-style hinge on the DPO margin (TRL ``loss_type="hinge"``): max(0, 1 − β h)."""
    beta, dtype, (pc, pr, rc, rr) = _pair_inputs(
        beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    losses = torch.relu(1 - beta * _margin(pc, pr, rc, rr))
    return _output(losses, beta * (pc - rc), beta * (pr - rr), dtype)


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float,
    gamma_beta_ratio: float = 0.5,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """SimPO (Meng et al. 2024, their Eq. 6): reference-free and length-normalised::

        −log σ( β/|y_w| · log p_θ(y_w|x) − β/|y_l| · log p_θ(y_l|x) − γ ),   γ = gamma_beta_ratio · β

    The margin is named by meaning: ``gamma_beta_ratio`` = γ/β (SimPO's own
    parameter; TRL's CPO ``simpo_gamma`` is the absolute γ). Unlike Eq. (10) of the
    paper (the posterior-probability objective, summed log-probs), SimPO averages
    per token. ``label_smoothing`` ε gives the conservative form, as in TRL's CPO.
    Rewards are β times the length-averaged log-probs (SimPO's implicit reward).
    """
    beta = _check_beta(beta)
    eps = _check_label_smoothing(label_smoothing)
    if not math.isfinite(float(gamma_beta_ratio)):
        raise ValueError(f"gamma_beta_ratio must be a finite number (SimPO's γ/β, usually 0.3..1.6), got {gamma_beta_ratio!r}")
    dtype = _check_logps(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps).dtype
    pc, pr = _upcast(policy_chosen_logps, policy_rejected_logps)
    chosen_avg = pc / _lengths(chosen_lengths, "chosen_lengths", pc)
    rejected_avg = pr / _lengths(rejected_lengths, "rejected_lengths", pc)
    logits = beta * (chosen_avg - rejected_avg) - float(gamma_beta_ratio) * beta
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return _output(losses, beta * chosen_avg, beta * rejected_avg, dtype)


LOSSES: dict[str, Callable[..., PreferenceLossOutput]] = {
    "sigmoid": dpo_loss,
    "cdpo": cdpo_loss,
    "robust": robust_dpo_loss,
    "ipo": ipo_loss,
    "ipo_sum": ipo_sum_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
}
"""Losses by name. A name TRL also has means what it means in TRL 1.16's ``loss_type``:
``"sigmoid"``, ``"robust"``, ``"hinge"`` and ``"ipo"`` (length-averaged, ``reduction="mean"``).
dpolib's own names: ``"cdpo"`` (TRL's CPO ``sigmoid`` with label smoothing), ``"ipo_sum"``
(IPO on summed log-ratios, :func:`ipo_sum_loss`), ``"simpo"`` (TRL's CPO ``simpo``, with
``gamma_beta_ratio`` = γ/β)."""

#: Losses that use no reference log-probs at all.
REFERENCE_FREE_LOSSES = frozenset({"simpo"})
#: Losses that take response lengths in tokens (``chosen_lengths`` / ``rejected_lengths``).
LENGTH_LOSSES = frozenset({"simpo", "ipo"})


def get_loss(name: str) -> Callable[..., PreferenceLossOutput]:
    """The loss function registered under ``name`` (see :data:`LOSSES`)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
