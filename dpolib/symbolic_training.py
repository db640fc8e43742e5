"""What training does to the policy, derived: DPO's gradient and its weight, the optimum's limits in β, finite data.

The second half of the theory chapter's identities (:mod:`dpolib.symbolic` holds the
machinery and Eqs. 1-16 with Appendix C): the DPO gradient in log-probs and logits
(Rafailov et al. 2023, Eq. 7), the weight σ(r̂_l − r̂_w) against the margin, the limits of the
optimal policy as β → 0 and β → ∞, and the pair loss on finite data, its infimum and its
minimiser (:func:`pair_optimum` solves for it). :data:`ALL` registers every identity the
chapter states, of both modules.
"""

from __future__ import annotations

import sympy as sp
from sympy import exp, log

from . import symbolic as base
from .symbolic import Identity, _pl, _pw, _ql, _qw, beta, dpo_loss_expr, eps, h, sigmoid

__all__ = [
    "dpo_gradient_logps",
    "dpo_gradient_logits",
    "weight_margin",
    "gibbs_limits",
    "pair_loss_closed_form",
    "no_finite_minimiser",
    "pair_optimum",
    "population_minimiser",
    "dpo_logit_loss",
    "ALL",
    "all_identities",
]


# ---- the DPO gradient and its weight


_u, _v, _a, _b = sp.symbols("u v a b", real=True)  # log p_θ(y_w), log p_θ(y_l), log p_ref(y_w), log p_ref(y_l)


def dpo_gradient_logps() -> Identity:
    """Rafailov et al. (2023) Eq. (7): ∂L/∂ log p_θ(y_w) = −β σ(r̂_l − r̂_w), ∂L/∂ log p_θ(y_l) = +β σ(r̂_l − r̂_w).

    r̂ = β (log p_θ − log p_ref) is the implicit reward (Eq. 6).
    """
    loss = -log(sigmoid(beta * (_u - _a) - beta * (_v - _b)))
    weight = sigmoid(beta * (_v - _b) - beta * (_u - _a))
    lhs = sp.Matrix([sp.diff(loss, _u), sp.diff(loss, _v)])
    rhs = sp.Matrix([-beta * weight, beta * weight])
    return Identity(
        "dpo_gradient_logps", "Eq. (5) (gradient: Rafailov et al. Eq. 7)", lhs, rhs,
        ((_u, "real"), (_v, "real"), (_a, "real"), (_b, "real"), (beta, "beta")),
        note="the gradient is β times the weight σ(r̂_l − r̂_w) on ∇log p(y_w) − ∇log p(y_l)",
    )


def dpo_logit_loss(size: int = 4, chosen: int = 0, rejected: int = 1):
    """Eq. (5) for one pair as a function of softmax logits θ_1..θ_size and reference log-probs a_1..a_size.

    Returns ``(loss, thetas, ref_logps)``. The normaliser log Σ exp θ cancels inside the
    margin, but it is kept here so that sympy has to find that out.
    """
    thetas = sp.symbols(f"theta_1:{size + 1}", real=True)
    refs = sp.symbols(f"a_1:{size + 1}", real=True)
    lse = log(sp.Add(*[exp(t) for t in thetas]))
    logp = [t - lse for t in thetas]
    loss = -log(sigmoid(beta * (logp[chosen] - refs[chosen]) - beta * (logp[rejected] - refs[rejected])))
    return loss, thetas, refs


def dpo_gradient_logits(size: int = 4, chosen: int = 0, rejected: int = 1) -> Identity:
    """∂L_DPO/∂θ_j = −β σ(r̂_l − r̂_w) (1[j = w] − 1[j = l]) for a softmax policy p = softmax(θ).

    Responses other than y_w and y_l get no gradient: the softmax normaliser cancels in Eq. (5).
    """
    loss, thetas, refs = dpo_logit_loss(size, chosen, rejected)
    margin = (thetas[chosen] - refs[chosen]) - (thetas[rejected] - refs[rejected])
    weight = sigmoid(-beta * margin)
    lhs = sp.Matrix([sp.diff(loss, t) for t in thetas])
    rhs = sp.Matrix([-beta * weight * ((idx == chosen) - (idx == rejected)) for idx in range(size)])
    return Identity(
        "dpo_gradient_logits", "Eq. (5), gradient in the logits", lhs, rhs,
        tuple((t, "real") for t in thetas + refs) + ((beta, "beta"),),
        note="only the two logits of the pair move, by equal and opposite amounts",
        extra={"loss": loss, "thetas": thetas, "refs": refs},
    )


def weight_margin() -> Identity:
    """The weight σ(−βh) falls to ε only at the log-ratio margin h_ε = log((1 − ε)/ε) / β, which grows like 1/β.

    Derived: sympy solves σ(−βh) = ε for h.
    """
    sol = sp.solve(sp.Eq(sigmoid(-beta * h), eps), h)
    (h_eps,) = sol
    return Identity(
        "weight_margin", "Eq. (5): why small β is aggressive", sigmoid(-beta * h_eps), eps,
        ((beta, "beta"), (eps, "unit")), note="a pair stops pulling only once its log-ratio margin is ~ 1/β",
        extra={"h_eps": sp.simplify(h_eps)},
    )


# ---- the limits of the optimal policy


def gibbs_limits() -> list[Identity]:
    """β → 0 and β → ∞ of the Gibbs policy p* ∝ q exp(r/β) on n = 3 responses, response 1 the best.

    r = (r_1, r_1 − d_2, r_1 − d_3) with gaps d > 0, q on the simplex:

    * β → 0+: p*_1 → 1, p*_2 → 0 (collapse onto the best response in the support of q),
      and KL(p* ‖ q) → −log q_1 (finite: the collapse costs −log q(best) nats);
    * β → ∞: p*_k → q_k (the reference).
    """
    r1 = sp.Symbol("r_1", real=True)
    d2, d3 = sp.symbols("d_2 d_3", positive=True)
    qs = sp.symbols("q_1:4", positive=True)
    rs = (r1, r1 - d2, r1 - d3)
    Z = sum(qq * exp(rr / beta) for qq, rr in zip(qs, rs))
    pstar = [qq * exp(rr / beta) / Z for qq, rr in zip(qs, rs)]
    # the same, divided through by exp(r_1/β) so that the limits are of exp(-d/β) terms
    p1 = qs[0] / (qs[0] + qs[1] * exp(-d2 / beta) + qs[2] * exp(-d3 / beta))
    # the other responses: on n = 2 (sympy's limit cannot order d_2 against d_3 on n = 3)
    p2 = (1 - qs[0]) * exp(-d2 / beta) / (qs[0] + (1 - qs[0]) * exp(-d2 / beta))
    # the KL limit on n = 2 responses (sympy's limit cannot order d_2 against d_3)
    a1 = qs[0] / (qs[0] + (1 - qs[0]) * exp(-d2 / beta))
    kl2 = a1 * log(a1 / qs[0]) + (1 - a1) * log((1 - a1) / (1 - qs[0]))
    dom = ((qs, "simplex"), (r1, "real"), (d2, "positive"), (d3, "positive"))
    total = sum(qs)
    return [
        Identity("gibbs_gap_form", "Eq. (1)", pstar[0], p1, dom + ((beta, "beta"),),
                 note="p*_1 written with the reward gaps d_k = r_1 - r_k", tol=1e-9),
        Identity("gibbs_limit_zero_best", "Eq. (1), β → 0", sp.Limit(p1, beta, 0, "+"), sp.Integer(1), dom,
                 note="the optimum collapses onto the best response", tol=1e-12),
        Identity("gibbs_limit_zero_other", "Eq. (1), β → 0 (n = 2)", sp.Limit(p2, beta, 0, "+"), sp.Integer(0),
                 ((qs[0], "unit"), (d2, "positive")),
                 note="every other response gets probability 0", tol=1e-12),
        Identity("gibbs_limit_zero_kl", "Eq. (1), β → 0 (n = 2)", sp.Limit(kl2, beta, 0, "+"), -log(qs[0]),
                 ((qs[0], "unit"), (d2, "positive")), note="the collapse costs KL = −log p_ref(best)", tol=1e-12),
        Identity("gibbs_limit_infinity", "Eq. (1), β → ∞", sp.Limit(p1, beta, sp.oo), qs[0] / total, dom,
                 note="the optimum is the reference", tol=1e-5),
    ]


# ---- finite data: the pair loss, its infimum and its minimiser


def pair_loss_closed_form(reference: bool = True) -> Identity:
    """Eqs. (5)/(10) for one pair: L = log(1 + (ρ_l / ρ_w)^β), ρ = p_θ/p_ref (ρ = p_θ without a reference)."""
    qw, ql = (_qw, _ql) if reference else (1, 1)
    lhs = dpo_loss_expr(qw=qw, ql=ql)
    rhs = log(1 + ((_pl / ql) / (_pw / qw)) ** beta)
    dom = ((_pw, "unit"), (_pl, "unit"), (beta, "beta")) + (((_qw, "unit"), (_ql, "unit")) if reference else ())
    return Identity(
        "pair_loss_closed_form" + ("" if reference else "_free"), "Eq. (5)" if reference else "Eq. (10)", lhs, rhs, dom,
        note="the loss of one pair is positive and vanishes only as p_θ(y_l) → 0",
    )


def no_finite_minimiser(reference: bool = False) -> dict:
    """On a data set where y_w always beats y_l, the pair loss has infimum 0 and no finite minimiser.

    By :func:`pair_loss_closed_form` the pair loss is log(1 + t^β) with
    t = ρ_l/ρ_w (ρ = p_θ/p_ref, or p_θ without a reference), and t → 0 exactly when p_θ(y_l) → 0
    (t is p_θ(y_l) times a positive factor). Returns sympy facts: ``positive`` (L > 0 for
    every finite policy), ``limit`` (L → 0 as t → 0+), ``gradient`` (∂L/∂θ_w in the logits,
    −β σ(−β h)) and ``gradient_negative`` (it is never 0, so there is no stationary point).
    With ``reference=True`` the same holds for DPO: the reference shifts the margin but
    does not bound it on separable data. Finite minimisers need both outcomes of a pair
    in the data, or infinitely many samples (:func:`pair_optimum`).
    """
    t = sp.Symbol("t", positive=True)
    loss = log(1 + t**beta)
    grad_w = -beta * sigmoid(-beta * h)
    return {
        "t": ((_pl / _ql) / (_pw / _qw)) if reference else _pl / _pw,
        "loss": loss,
        "positive": bool(loss.is_positive),
        "limit": sp.limit(loss, t, 0, "+"),
        "gradient": grad_w,
        "gradient_negative": bool(grad_w.is_negative),
    }


def pair_optimum(loss: str = "dpo"):
    """The minimiser of the expected loss of one pair whose first response wins with probability P.

    ``loss``: ``"dpo"`` (−P log σ(βh) − (1−P) log σ(−βh)), ``"cdpo"`` (label smoothing ε, observed
    labels always y_w: −(1−ε) log σ(βh) − ε log σ(−βh)) or ``"ipo"`` (P (h − 1/(2β))² + (1 − P)(h + 1/(2β))²).
    Returns ``(h_star, second_derivative, expected_loss, P)``: sympy solves the
    first-order condition; the second derivative shows the loss is convex in h.
    For DPO, P = σ(r_w − r_l) gives β h* = r_w − r_l: the implicit reward recovers the
    true reward difference, i.e. p = p_ref exp(r/β)/Z (anchored at the reference).
    """
    P = sp.Symbol("P", positive=True)
    if loss == "dpo":
        L = -P * log(sigmoid(beta * h)) - (1 - P) * log(sigmoid(-beta * h))
    elif loss == "cdpo":
        L = -(1 - eps) * log(sigmoid(beta * h)) - eps * log(sigmoid(-beta * h))
    elif loss == "ipo":
        L = P * (h - 1 / (2 * beta)) ** 2 + (1 - P) * (-h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"loss must be 'dpo', 'cdpo' or 'ipo', got {loss!r}")
    sols = sp.solve(sp.Eq(sp.diff(L, h), 0), h)
    h_star = sp.simplify(sols[0]) if len(sols) == 1 else sols
    return h_star, sp.simplify(sp.diff(L, h, 2)), L, P


def population_minimiser() -> Identity:
    """With P = σ(r_w − r_l), the expected DPO pair loss is minimised at β h* = r_w − r_l (derived by :func:`pair_optimum`)."""
    rw, rl = sp.symbols("r_w r_l", real=True)
    h_star, _, _, P = pair_optimum("dpo")
    return Identity(
        "population_minimiser", "Eqs. (4)-(5), infinite data", beta * h_star.subs(P, sigmoid(rw - rl)), rw - rl,
        ((rw, "real"), (rl, "real"), (beta, "beta")), note="the implicit reward recovers the true reward difference",
        tol=1e-8,
    )


# --------------------------------------------------------------------------- registry


def _named(identities: list[Identity], name: str) -> Identity:
    (found,) = [x for x in identities if x.name == name]
    return found

#: Every identity the theory chapter states, by name (constructors, so building is lazy).
ALL = {
    "bradley_terry_is_sigmoid": base.bradley_terry_is_sigmoid,
    "kkt_stationary": lambda: base.gibbs_kkt()["stationary"],
    "kkt_normalised": lambda: base.gibbs_kkt()["normalised"],
    "kkt_hessian": lambda: base.gibbs_kkt()["hessian"],
    "gibbs_value": base.gibbs_value,
    "reparameterisation": base.reparameterisation,
    "partition_cancels_in_bt": base.partition_cancels_in_bt,
    "dpo_from_reward_mle": base.dpo_from_reward_mle,
    "kl_to_uniform": base.kl_to_uniform,
    "maxent_is_uniform_reference": base.maxent_is_uniform_reference,
    "probability_is_uniform_dpo": base.probability_is_uniform_dpo,
    "maxent_optimum": base.maxent_optimum,
    "maxent_value": base.maxent_value,
    "bayes_likelihood_ratio": base.bayes_likelihood_ratio,
    "likelihood_is_prior_dpo": base.likelihood_is_prior_dpo,
    "likelihood_power_form": base.likelihood_power_form,
    "same_class_same_preferences": base.same_class_same_preferences,
    "same_class_same_policy": base.same_class_same_policy,
    "same_class_same_policy_reference": lambda: base.same_class_same_policy(uniform=False),
    "projection_is_log_policy": base.projection_is_log_policy,
    "projection_in_class": base.projection_in_class,
    "token_rewards_sum": base.token_rewards_sum,
    "dpo_gradient_logps": dpo_gradient_logps,
    "dpo_gradient_logits": dpo_gradient_logits,
    "weight_margin": weight_margin,
    "gibbs_gap_form": lambda: _named(gibbs_limits(), "gibbs_gap_form"),
    "gibbs_limit_zero_best": lambda: _named(gibbs_limits(), "gibbs_limit_zero_best"),
    "gibbs_limit_zero_other": lambda: _named(gibbs_limits(), "gibbs_limit_zero_other"),
    "gibbs_limit_zero_kl": lambda: _named(gibbs_limits(), "gibbs_limit_zero_kl"),
    "gibbs_limit_infinity": lambda: _named(gibbs_limits(), "gibbs_limit_infinity"),
    "pair_loss_closed_form": pair_loss_closed_form,
    "pair_loss_closed_form_free": lambda: pair_loss_closed_form(reference=False),
    "population_minimiser": population_minimiser,
}


def all_identities() -> list[Identity]:
    """Every identity in :data:`ALL`, built."""
    return [make() for make in ALL.values()]
