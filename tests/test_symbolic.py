"""Every identity the theory chapter states, checked symbolically and numerically.

Each identity is also *mutated* (its right-hand side perturbed) and the mutant must
fail both checks, so a test here cannot pass vacuously.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

from dpolib import losses
from dpolib import symbolic as S
from dpolib import symbolic_training as T

NAMES = sorted(T.ALL)


class _Lazy(dict):
    """Build each identity on first use, so a broken derivation fails its own tests only."""

    def __missing__(self, name):
        self[name] = T.ALL[name]()
        return self[name]


_BUILT = _Lazy()


@pytest.fixture()
def identities():
    return _BUILT


@pytest.mark.parametrize("name", NAMES)
def test_identity_holds_symbolically(identities, name):
    idn = identities[name]
    assert idn.holds(), f"{name} ({idn.paper}): residual {idn.residual()}"


@pytest.mark.parametrize("name", NAMES)
def test_identity_holds_numerically(identities, name):
    idn = identities[name]
    err = idn.numeric_error(points=8, seed=1)
    assert err <= idn.tol, f"{name} ({idn.paper}): numeric gap {err:.3g} > {idn.tol}"


def _mutant(idn: S.Identity) -> S.Identity:
    """The identity with its right-hand side perturbed by a term that is never 0 on the domain."""
    limit = isinstance(idn.lhs, sp.Limit)  # β is the limit variable there, not a free symbol
    uses_beta = not limit and (idn.rhs.has(S.beta) or idn.lhs.has(S.beta))
    bump = sp.Rational(1, 7) * (1 + S.beta**2) if uses_beta else sp.Rational(1, 7)
    rhs = idn.rhs + (sp.ones(*idn.rhs.shape) * bump if isinstance(idn.rhs, sp.MatrixBase) else bump)
    return S.Identity(idn.name + "_mutant", idn.paper, idn.lhs, rhs, idn.domains, idn.constraints, tol=idn.tol)


@pytest.mark.parametrize("name", NAMES)
def test_mutated_identity_fails(identities, name):
    bad = _mutant(identities[name])
    assert not bad.numerically_holds(points=4, seed=2), f"the numeric check of {name} cannot tell a wrong identity"
    if not isinstance(bad.lhs, sp.Limit):  # a Limit's residual is not simplified to a number, only evaluated
        assert not bad.holds(), f"the symbolic check of {name} cannot tell a wrong identity"


def test_sign_error_is_caught():
    """The kind of slip a derivation makes: a flipped sign in the KL term of Eq. (1)."""
    good = S.gibbs_value()
    flipped = S.Identity("flipped", good.paper, good.lhs.subs(S.beta, -S.beta), good.rhs, good.domains, good.constraints)
    assert not flipped.holds()
    assert not flipped.numerically_holds(points=4)


# --------------------------------------------------------------------------- derivations, not assertions


def test_kkt_derivation_finds_the_gibbs_policy():
    d = S.gibbs_kkt()
    k, q, r, beta, lam = S.k, S.q, S.r, S.beta, S.lam
    assert sp.simplify(d["p_k"] - q[k] * sp.exp((r[k] + lam - beta) / beta)) == 0
    Z = sp.Sum(q[S.j] * sp.exp(r[S.j] / beta), (S.j, 1, S.n))
    assert sp.simplify(sp.expand_log(d["lambda_star"] - (beta - beta * sp.log(Z)), force=True)) == 0
    assert sp.simplify(d["hessian_diag"] + beta / S.p[k]) == 0
    assert (d["hessian_diag"]).is_negative


def test_weight_margin_grows_like_one_over_beta():
    h_eps = T.weight_margin().extra["h_eps"]
    assert sp.simplify(h_eps * S.beta - sp.log((1 - S.eps) / S.eps)) == 0


@pytest.mark.parametrize("reference", [False, True])
def test_no_finite_minimiser_on_separable_data(reference):
    facts = T.no_finite_minimiser(reference=reference)
    assert facts["positive"] is True
    assert facts["limit"] == 0
    assert facts["gradient_negative"] is True


def test_pair_optima():
    h, d2, _, P = T.pair_optimum("dpo")
    assert sp.simplify(h - sp.log(P / (1 - P)) / S.beta) == 0
    assert d2.is_positive
    h, d2, _, _ = T.pair_optimum("cdpo")
    assert sp.simplify(h - sp.log((1 - S.eps) / S.eps) / S.beta) == 0
    assert d2.is_positive
    h, d2, _, P = T.pair_optimum("ipo")
    assert sp.simplify(h - (P - sp.Rational(1, 2)) / S.beta) == 0
    assert d2 == 2
    with pytest.raises(ValueError, match="loss must be"):
        T.pair_optimum("kto")


# --------------------------------------------------------------------------- the symbols agree with dpolib.losses


@pytest.mark.parametrize("seed", range(5))
def test_symbolic_gradient_equals_autograd_through_dpolib_losses(seed):
    size, chosen, rejected = 4, 0, 2
    idn = T.dpo_gradient_logits(size, chosen, rejected)
    loss, thetas, refs = idn.extra["loss"], idn.extra["thetas"], idn.extra["refs"]
    args = (*thetas, *refs, S.beta)
    f_loss = sp.lambdify(args, loss, "math")
    f_grad = sp.lambdify(args, list(idn.rhs), "math")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(size, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.log_softmax(torch.randn(size, generator=g, dtype=torch.float64), -1)
    beta = float(10 ** (torch.rand(1, generator=g).item() * 3 - 2))
    logp = torch.log_softmax(theta, -1)
    out = losses.dpo_loss(logp[chosen:chosen + 1], logp[rejected:rejected + 1], ref[chosen:chosen + 1], ref[rejected:rejected + 1], beta)
    out.losses.sum().backward()
    point = (*theta.detach().tolist(), *ref.tolist(), beta)
    assert math.isclose(f_loss(*point), out.losses.item(), rel_tol=1e-12, abs_tol=1e-14)
    assert torch.allclose(theta.grad, torch.tensor(f_grad(*point), dtype=torch.float64), rtol=1e-10, atol=1e-14)


def test_uniform_reference_loss_is_the_probability_loss_in_dpolib():
    g = torch.Generator().manual_seed(0)
    pc, pr = -torch.rand(6, generator=g, dtype=torch.float64) * 5, -torch.rand(6, generator=g, dtype=torch.float64) * 5
    const = torch.full((6,), -math.log(7), dtype=torch.float64)
    a = losses.dpo_loss(pc, pr, const, const, 0.3).losses
    f = sp.lambdify((S._pw, S._pl, S.beta), S.probability_loss_expr(), "math")
    b = torch.tensor([f(math.exp(x), math.exp(y), 0.3) for x, y in zip(pc.tolist(), pr.tolist())], dtype=torch.float64)
    assert torch.allclose(a, b, rtol=1e-12)


def test_check_returns_a_row_and_refuses_a_wrong_identity():
    rows = []
    row = S.check(S.kl_to_uniform(), points=3, show=False, rows=rows)
    assert rows == [row] and row["lhs - rhs simplifies to 0"] is True
    wrong = _mutant(S.kl_to_uniform())
    with pytest.raises(AssertionError, match="failed"):
        S.check(wrong, points=3, show=False)
