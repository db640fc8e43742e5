"""Where the reference enters DPO, derived with a computer algebra system.

Each function returns an :class:`Identity` (``lhs == rhs``) for one step of the
paper's theory (Liu, Liu & Cohan 2024, Eqs. 1-16 and Appendix C), over a finite
response space of symbolic size ``n`` where sympy can work with it and a concrete
``n`` where it needs one. An identity is *checked*, not asserted:

* :meth:`Identity.holds` simplifies ``lhs - rhs`` (after applying the identity's
  constraints, e.g. that a distribution sums to one) and asks for exactly 0;
* :meth:`Identity.numeric_error` evaluates both sides at random points of their
  domains (distributions drawn from a Dirichlet) and returns the largest gap.

Some steps are *derived* by sympy rather than written down: :func:`gibbs_kkt`
differentiates the Lagrangian and solves for the optimum, :func:`~dpolib.symbolic_training.pair_optimum`
solves for the minimiser of an expected pair loss
(in :mod:`dpolib.symbolic_training`, with the gradient, the optimum's limits and the registry :data:`~dpolib.symbolic_training.ALL`).

Notation (the paper's): ``p`` the policy p_θ(y|x), ``q`` the reference p_ref(y|x),
``r`` the reward r(x, y), ``beta`` β, ``n`` the number of responses, ``i, j, k``
response indices. The prompt x is fixed throughout (every statement holds per x),
so a function of x alone is a constant ``f``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import sympy as sp
from sympy import Sum, exp, log

__all__ = [
    "Identity",
    "check",
    "sigmoid",
    "simplify_sums",
    "bradley_terry_is_sigmoid",
    "gibbs_kkt",
    "gibbs_value",
    "reparameterisation",
    "partition_cancels_in_bt",
    "dpo_from_reward_mle",
    "kl_to_uniform",
    "maxent_is_uniform_reference",
    "probability_is_uniform_dpo",
    "maxent_optimum",
    "maxent_value",
    "bayes_likelihood_ratio",
    "likelihood_is_prior_dpo",
    "likelihood_power_form",
    "same_class_same_preferences",
    "same_class_same_policy",
    "projection_is_log_policy",
    "projection_in_class",
    "token_rewards_sum",
    "objective",
    "dpo_loss_expr",
    "probability_loss_expr",
]

# --------------------------------------------------------------------------- symbols

n = sp.Symbol("n", integer=True, positive=True)
i, j, k = sp.symbols("i j k", integer=True, positive=True)
p = sp.IndexedBase("p", positive=True)  # policy p_θ(y_i|x)
q = sp.IndexedBase("q", positive=True)  # reference p_ref(y_i|x)
r = sp.IndexedBase("r", real=True)  # reward r(x, y_i)
beta = sp.Symbol("beta", positive=True)
lam = sp.Symbol("lambda", real=True)  # Lagrange multiplier
f = sp.Symbol("f", real=True)  # a function of the prompt alone, f(x)
h = sp.Symbol("h", real=True)  # the log-ratio margin of Eq. (5)
eps = sp.Symbol("epsilon", positive=True)


def sigmoid(z):
    """σ(z) = 1 / (1 + e^{-z}), written out so sympy can simplify through it."""
    return 1 / (1 + exp(-z))


def _Z(reward=r, ref=q, index=j):
    """The partition function Z(x) = Σ_j p_ref(y_j|x) exp(r(x, y_j)/β) (App. C.1, Eq. 19 with a reference)."""
    return Sum(ref[index] * exp(reward[index] / beta), (index, 1, n))


def _Z_uniform(reward=r, index=j):
    """Z(x) = Σ_j exp(r(x, y_j)/β), App. C.1 Eq. (19)."""
    return Sum(exp(reward[index] / beta), (index, 1, n))


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identity:
    """A claimed equality ``lhs == rhs``, with what it takes to check it.

    Attributes:
        name: short name (used in tests and in the chapter).
        paper: where the paper states or uses it, e.g. ``"Eq. (5)"`` or ``"App. C.3, Eq. (28)"``.
        lhs: a sympy expression (or matrix).
        rhs: a sympy expression (or matrix of the same shape).
        domains: ``((thing, kind), ...)``: what each free symbol ranges over, for the numeric check.
            ``thing`` is a Symbol, an IndexedBase or a tuple of Symbols; ``kind`` is ``"real"``,
            ``"positive"``, ``"unit"`` (0 < t < 1), ``"beta"`` or ``"simplex"`` (a distribution).
        constraints: substitutions ``(old, new)`` applied in the symbolic check, e.g.
            ``(Sum(p[i], (i, 1, n)), 1)``; the numeric check satisfies them by sampling.
        note: one line on what the identity says.
        tol: tolerance of the numeric check.
    """

    name: str
    paper: str
    lhs: object
    rhs: object
    domains: tuple = ()
    constraints: tuple = ()
    note: str = ""
    tol: float = 1e-9
    extra: dict = field(default_factory=dict, compare=False)

    # -- symbolic
    def residual(self):
        """``lhs - rhs`` after splitting sums, applying the constraints and simplifying."""
        if isinstance(self.lhs, sp.MatrixBase):
            return (self.lhs - self.rhs).applyfunc(lambda e: _reduce(e, self.constraints))
        return _reduce(self.lhs - self.rhs, self.constraints)

    def holds(self) -> bool:
        """True iff sympy reduces ``lhs - rhs`` to exactly 0."""
        res = self.residual()
        if isinstance(res, sp.MatrixBase):
            return all(e == 0 for e in res)
        return res == 0

    # -- numeric
    def numeric_error(self, points: int = 20, seed: int = 0, size: int = 4) -> float:
        """Largest ``|lhs - rhs|`` over ``points`` random points (a symbolic ``n`` is set to ``size``)."""
        rng = random.Random(seed)
        worst = 0.0
        for _ in range(points):
            subs = _sample(self.domains, rng, size)
            # free response indices (i, k) get random values; bound ones (inside a Sum) are untouched
            index = {t: 1 + rng.randrange(size) for t in (i, k)}
            for a, b in zip(_flat(self.lhs), _flat(self.rhs)):
                va, vb = _evaluate(a, subs, size, index), _evaluate(b, subs, size, index)
                gap = abs(complex(va) - complex(vb))
                worst = max(worst, gap) if gap == gap else float("inf")  # NaN fails the check
        return worst

    def numerically_holds(self, points: int = 20, seed: int = 0, size: int = 4) -> bool:
        return self.numeric_error(points, seed, size) <= self.tol

    def latex(self) -> str:
        """``lhs = rhs`` in LaTeX (for ``display(Math(...))`` in the chapter)."""
        return sp.latex(self.lhs) + " = " + sp.latex(self.rhs)


def check(identity: Identity, points: int = 12, seed: int = 0, show: bool = True, rows: list | None = None) -> dict:
    """Check ``identity`` symbolically and numerically; raise ``AssertionError`` if either check fails.

    With ``show`` (in a notebook) the identity is displayed as LaTeX and a one-line verdict is
    printed. Returns a summary row (name, paper reference, what it says, both results), also
    appended to ``rows`` when given.
    """
    if show:
        from IPython.display import Math, display

        display(Math(identity.latex()))
    symbolic = identity.holds()
    gap = identity.numeric_error(points=points, seed=seed)
    if not (symbolic and gap <= identity.tol):
        raise AssertionError(f"{identity.name} failed: residual {identity.residual()}, numeric gap {gap:.3g}")
    if show:
        print(f"✓ {identity.name}: lhs − rhs simplifies to 0; max |lhs − rhs| at {points} random points = {gap:.1e}")
    row = {"identity": identity.name, "paper": identity.paper, "says": identity.note,
           "lhs - rhs simplifies to 0": symbolic, "max numeric gap": gap}
    if rows is not None:
        rows.append(row)
    return row


def _reduce(expr, constraints):
    """Plain :func:`sympy.simplify` first; if that does not give 0, the sum-aware :func:`simplify_sums`."""
    plain = sp.simplify(expr)
    if plain == 0 or not (plain.has(Sum) or constraints):
        return plain
    return simplify_sums(expr, constraints)


def _flat(e):
    return list(e) if isinstance(e, sp.MatrixBase) else [e]


def _sample(domains, rng: random.Random, size: int) -> dict:
    subs = {n: size}
    for thing, kind in domains:
        if isinstance(thing, tuple) and kind == "simplex":
            w = [rng.gammavariate(1.0, 1.0) for _ in thing]
            subs.update({s: sp.Float(v / sum(w), 60) for s, v in zip(thing, w)})
            continue
        things = thing if isinstance(thing, tuple) else (thing,)
        if isinstance(thing, sp.IndexedBase):
            things = tuple(thing[t] for t in range(1, size + 1))
        if kind == "simplex":
            w = [rng.gammavariate(1.0, 1.0) for _ in things]
            subs.update({s: sp.Float(v / sum(w), 60) for s, v in zip(things, w)})
        else:
            for s in things:
                subs[s] = sp.Float(_draw(kind, rng), 60)
    return subs


def _draw(kind: str, rng: random.Random) -> float:
    if kind == "real":
        return rng.uniform(-3, 3)
    if kind == "positive":
        return rng.uniform(0.1, 3)
    if kind == "unit":
        return rng.uniform(0.05, 0.95)
    if kind == "beta":
        return 10 ** rng.uniform(-1, 0.7)
    raise ValueError(f"unknown domain kind {kind!r}")


def _evaluate(expr, subs: dict, size: int, index: dict):
    expr = sp.sympify(expr)
    if isinstance(expr, sp.Limit):
        fn, var, point, direction = expr.args
        # near the limit point: β = 2e-3 puts exp(-d/β) below 1e-21 for gaps d >= 0.1. evalf with
        # subs tracks precision adaptively (up to maxn digits), so 1 - (1 - 1e-650) is not lost.
        at = sp.Float("2e-3", 60) if point == 0 else sp.Float("1e7", 60)
        return fn.subs(var, at).evalf(30, subs=subs, maxn=2000)
    expr = expr.subs(index).subs(n, size).doit()
    return sp.N(expr.subs(subs), 60)


def simplify_sums(expr, constraints=()):
    """Simplify an expression with symbolic-length sums.

    Expands logs and exponentials, splits every ``Sum`` of a sum into sums, pulls
    factors that do not depend on the summation index out of each ``Sum``, applies
    ``constraints`` (e.g. Σ_i p_i = 1) and calls :func:`sympy.simplify`.
    """
    expr = sp.expand(sp.expand_log(sp.sympify(expr), force=True))

    def split(s):
        body = sp.expand(sp.expand_log(s.function, force=True))
        return sp.Add(*[sp.factor_terms(Sum(t, *s.limits)) for t in sp.Add.make_args(body)])

    for _ in range(3):  # nested sums (a partition function inside a sum) need a second pass
        expr = expr.replace(lambda e: isinstance(e, Sum), split)
        for old, new in constraints:
            expr = expr.subs(old, new)
        expr = sp.expand(expr)
    return sp.simplify(expr.replace(lambda e: isinstance(e, Sum), _canonical_dummy))


_CANON = sp.Symbol("iota", integer=True, positive=True)


def _canonical_dummy(s):
    """Rename the index of an innermost one-index Sum, so that Σ_i a_i and Σ_j a_j compare equal."""
    if len(s.limits) != 1 or s.function.has(Sum):
        return s
    var, lo, hi = s.limits[0]
    return Sum(s.function.subs(var, _CANON), (_CANON, lo, hi))


_DIST_P = ((p, "simplex"),)
_REAL_R = ((r, "real"),)


# ---- Eq. (3): Bradley-Terry


def bradley_terry_is_sigmoid() -> Identity:
    """Eq. (3): exp(r1) / (exp(r1) + exp(r2)) = σ(r1 − r2)."""
    r1, r2 = sp.symbols("r_1 r_2", real=True)
    return Identity(
        "bradley_terry_is_sigmoid", "Eq. (3)-(4)", exp(r1) / (exp(r1) + exp(r2)), sigmoid(r1 - r2),
        ((r1, "real"), (r2, "real")), note="the Bradley-Terry probability is a sigmoid of the reward difference",
    )


# ---- Eq. (1): the KL-constrained optimum, derived (KKT)


def objective(policy=p, ref=q, reward=r):
    """Eq. (1) for one prompt: J(p) = Σ_i p_i r_i − β Σ_i p_i log(p_i / q_i)."""
    return Sum(policy[i] * reward[i], (i, 1, n)) - beta * Sum(policy[i] * log(policy[i] / ref[i]), (i, 1, n))


def gibbs_kkt() -> dict:
    """Derive the maximiser of Eq. (1) over the simplex by Lagrange multipliers (KKT).

    Steps, each computed by sympy:

    1. Lagrangian  L = J(p) + λ (Σ_i p_i − 1)   (J from :func:`objective`).
    2. Stationarity ∂L/∂p_k = 0, solved for p_k: p_k = q_k exp((r_k + λ − β)/β).
    3. The factor C = exp((λ − β)/β) does not depend on k; Σ_k p_k = 1 gives C = 1/Z.
    4. Hence p*_k = q_k exp(r_k/β) / Z (the Gibbs policy), λ* = β − β log Z.
    5. Second order: ∂²L/∂p_k² = −β/p_k < 0 and the Hessian is diagonal, so L is strictly
       concave and the stationary point is the unique maximiser on the simplex.

    Returns a dict with the expressions of each step and the :class:`Identity`
    objects ``stationary`` (∂L/∂p_k at p*, λ* is 0), ``normalised`` (Σ_k p*_k = 1) and
    ``hessian`` (∂²L/∂p_k² = −β/p_k).
    """
    lagrangian = objective() + lam * (Sum(p[i], (i, 1, n)) - 1)
    grad = sp.diff(lagrangian, p[k]).doit()
    # sympy returns Piecewise((expr, 1 <= k <= n), (0, True)) for each sum: keep the in-range branch
    grad = grad.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[0][0])
    grad = sp.expand_log(grad, force=True)
    (p_k,) = sp.solve(sp.Eq(grad, 0), p[k])
    C = sp.simplify(p_k / (q[k] * exp(r[k] / beta)))
    if C.has(q[k]) or C.has(r[k]):
        raise AssertionError(f"the normalising factor should not depend on k, got {C}")
    Z = _Z()
    (lam_star,) = sp.solve(sp.Eq(C * Z, 1), lam)  # Σ_k p_k = C Z = 1, solved for λ
    lam_star = sp.simplify(lam_star)
    p_star = q[k] * exp(r[k] / beta) / Z
    hess = sp.diff(grad, p[k])
    return {
        "lagrangian": lagrangian,
        "gradient": grad,
        "p_k": p_k,
        "C": C,
        "lambda_star": lam_star,
        "p_star": p_star,
        "hessian_diag": hess,
        "stationary": Identity(
            "kkt_stationary", "Eq. (1) -> Gibbs optimum", grad.subs(p[k], p_star).subs(lam, lam_star), sp.Integer(0),
            ((q, "simplex"), (r, "real"), (beta, "beta")), note="the gradient of the Lagrangian vanishes at p*, λ*",
        ),
        "normalised": Identity(
            "kkt_normalised", "Eq. (1) -> Gibbs optimum", Sum(p_star.subs(k, i), (i, 1, n)), sp.Integer(1),
            ((q, "simplex"), (r, "real"), (beta, "beta")), note="the Gibbs policy sums to one",
        ),
        "hessian": Identity(
            "kkt_hessian", "Eq. (1) -> Gibbs optimum", hess, -beta / p[k],
            ((p, "simplex"), (beta, "beta")), note="the Lagrangian is strictly concave in each p_k",
        ),
    }


def gibbs_value() -> Identity:
    """App. C.1, Eqs. (21)-(22) with a reference: J(p) = β log Z − β KL(p ‖ p*) for every p on the simplex.

    Since KL ≥ 0 with equality iff p = p* (Gibbs' inequality), p* maximises Eq. (1) and the
    maximum is β log Z.
    """
    Z = _Z()
    p_star_i = q[i] * exp(r[i] / beta) / Z
    rhs = beta * log(Z) - beta * Sum(p[i] * log(p[i] / p_star_i), (i, 1, n))
    return Identity(
        "gibbs_value", "Eq. (1); App. C.1 Eqs. (18)-(22)", objective(), rhs,
        ((p, "simplex"), (q, "simplex"), (r, "real"), (beta, "beta")),
        constraints=((Sum(p[i], (i, 1, n)), 1),), note="Eq. (1) equals β log Z minus β times the KL to the Gibbs policy",
    )


# ---- the reparameterisation (Eq. 6; App. C.2) and DPO (Eqs. 4-5)


def reparameterisation() -> Identity:
    """App. C.2, Eq. (24) (Rafailov et al. 2023): r_k = β log(p*_k / q_k) + β log Z for the Gibbs policy p*."""
    Z = _Z()
    p_star_k = q[k] * exp(r[k] / beta) / Z
    return Identity(
        "reparameterisation", "Eq. (6); App. C.2 Eq. (24)", beta * log(p_star_k / q[k]) + beta * log(Z), r[k],
        ((q, "simplex"), (r, "real"), (beta, "beta")), note="the reward is β log(p*/p_ref) up to β log Z(x)",
        extra={"index": k},
    )


def _bt_reward(pi, ref, Z):
    return beta * log(pi / ref) + beta * log(Z)


_pw, _pl, _qw, _ql, _Zs = sp.symbols("p_w p_l q_w q_l Z", positive=True)


def partition_cancels_in_bt() -> Identity:
    """App. C.2, Eq. (25): Z(x) cancels in the Bradley-Terry probability of the reparameterised reward."""
    lhs = sigmoid(_bt_reward(_pw, _qw, _Zs) - _bt_reward(_pl, _ql, _Zs))
    rhs = sigmoid(beta * log(_pw / _qw) - beta * log(_pl / _ql))
    return Identity(
        "partition_cancels_in_bt", "App. C.2 Eq. (25); Eq. (5)", lhs, rhs,
        ((_pw, "unit"), (_pl, "unit"), (_qw, "unit"), (_ql, "unit"), (_Zs, "positive"), (beta, "beta")),
        note="p(y_w ≻ y_l) no longer involves the intractable Z(x)",
    )


def dpo_loss_expr(pw=_pw, pl=_pl, qw=_qw, ql=_ql, b=beta):
    """Eq. (5) for one pair: −log σ(β log(p_w/q_w) − β log(p_l/q_l))."""
    return -log(sigmoid(b * log(pw / qw) - b * log(pl / ql)))


def dpo_from_reward_mle() -> Identity:
    """Eq. (4) -> Eq. (5): the reward MLE with the reparameterised reward is the DPO loss."""
    lhs = -log(sigmoid(_bt_reward(_pw, _qw, _Zs) - _bt_reward(_pl, _ql, _Zs)))
    return Identity(
        "dpo_from_reward_mle", "Eq. (4) -> Eq. (5)", lhs, dpo_loss_expr(),
        ((_pw, "unit"), (_pl, "unit"), (_qw, "unit"), (_ql, "unit"), (_Zs, "positive"), (beta, "beta")),
        note="substituting r = β log(p/p_ref) + β log Z into Eq. (4) gives Eq. (5)",
    )


# ---- the uniform reference: MaxEnt RL (Eq. 11) and the probability objective (Eq. 10)


def kl_to_uniform() -> Identity:
    """Eqs. (2), (11)-(12): KL(p ‖ U) = −H(p) + log n for the uniform distribution U = 1/n."""
    kl = Sum(p[i] * log(p[i] / (1 / n)), (i, 1, n))
    entropy = -Sum(p[i] * log(p[i]), (i, 1, n))
    return Identity(
        "kl_to_uniform", "Eqs. (2), (11), (12)", kl, -entropy + log(n), _DIST_P,
        constraints=((Sum(p[i], (i, 1, n)), 1),), note="the KL to a uniform reference is a negative entropy plus a constant",
    )


def maxent_is_uniform_reference() -> Identity:
    """Eq. (1) with p_ref = 1/n equals Eq. (11), MaxEnt RL, minus the constant β log n."""
    lhs = Sum(p[i] * r[i], (i, 1, n)) - beta * Sum(p[i] * log(p[i] / (1 / n)), (i, 1, n))
    entropy = -Sum(p[i] * log(p[i]), (i, 1, n))
    rhs = Sum(p[i] * r[i], (i, 1, n)) + beta * entropy - beta * log(n)
    return Identity(
        "maxent_is_uniform_reference", "Eq. (1) with p_ref uniform = Eq. (11)", lhs, rhs,
        _DIST_P + _REAL_R + ((beta, "beta"),), constraints=((Sum(p[i], (i, 1, n)), 1),),
        note="KL-constrained RL with a uniform reference is maximum-entropy RL",
    )


def probability_loss_expr(pw=_pw, pl=_pl, b=beta):
    """Eq. (10) for one pair: −log σ(β log p_w − β log p_l)."""
    return -log(sigmoid(b * log(pw) - b * log(pl)))


def probability_is_uniform_dpo() -> Identity:
    """Eq. (10): DPO (Eq. 5) with a reference that is constant in y (e.g. 1/n) is the probability objective."""
    c = sp.Symbol("c", positive=True)  # any reference constant in y: p_ref(y|x) = c(x)
    return Identity(
        "probability_is_uniform_dpo", "Eq. (5) with p_ref uniform = Eq. (10)", dpo_loss_expr(qw=c, ql=c),
        probability_loss_expr(), ((_pw, "unit"), (_pl, "unit"), (c, "unit"), (beta, "beta")),
        note="a constant reference cancels inside the margin",
    )


def maxent_optimum() -> Identity:
    """App. C.1, Eq. (23): the Gibbs optimum with p_ref = 1/n is softmax(r/β)."""
    u = 1 / n
    lhs = u * exp(r[k] / beta) / Sum(u * exp(r[j] / beta), (j, 1, n))
    rhs = exp(r[k] / beta) / _Z_uniform()
    return Identity(
        "maxent_optimum", "App. C.1 Eqs. (19)-(20), (23)", lhs, rhs, _REAL_R + ((beta, "beta"),),
        note="the MaxEnt-RL optimum is softmax(r/β)", extra={"index": k},
    )


def maxent_value() -> Identity:
    """App. C.1, Eqs. (18)-(22): E_p[r] + β H(p) = β log Z − β KL(p ‖ softmax(r/β))."""
    Z = _Z_uniform()
    lhs = Sum(p[i] * r[i], (i, 1, n)) - beta * Sum(p[i] * log(p[i]), (i, 1, n))
    rhs = beta * log(Z) - beta * Sum(p[i] * log(p[i] / (exp(r[i] / beta) / Z)), (i, 1, n))
    return Identity(
        "maxent_value", "App. C.1 Eqs. (17)-(22)", lhs, rhs, _DIST_P + _REAL_R + ((beta, "beta"),),
        constraints=((Sum(p[i], (i, 1, n)), 1),), note="MaxEnt RL is a KL projection onto softmax(r/β)",
    )


# ---- the prior reference: the likelihood objective (Eqs. 13-16)


_px, _mw, _ml = sp.symbols("p_x m_w m_l", positive=True)  # p(x), p_LM(y_w), p_LM(y_l)


def bayes_likelihood_ratio() -> Identity:
    """Eqs. (13)-(14): with p(x|y) = p(y|x) p(x) / p_LM(y), β log p(x|y_w) − β log p(x|y_l) = β log(p_w/m_w) − β log(p_l/m_l).

    p(x) cancels within a pair, so it never needs a model.
    """
    lhs = beta * log(_pw * _px / _mw) - beta * log(_pl * _px / _ml)
    rhs = beta * log(_pw / _mw) - beta * log(_pl / _ml)
    return Identity(
        "bayes_likelihood_ratio", "Eqs. (13)-(14)", lhs, rhs,
        ((_pw, "unit"), (_pl, "unit"), (_px, "unit"), (_mw, "unit"), (_ml, "unit"), (beta, "beta")),
        note="Bayes' rule turns the likelihood p(x|y) into p(y|x)/p_LM(y); p(x) cancels",
    )


def likelihood_is_prior_dpo() -> Identity:
    """Eq. (15): the likelihood objective is DPO (Eq. 5) with the prior p_LM(y) as reference."""
    lhs = -log(sigmoid(beta * log(_pw * _px / _mw) - beta * log(_pl * _px / _ml)))
    return Identity(
        "likelihood_is_prior_dpo", "Eq. (15)", lhs, dpo_loss_expr(qw=_mw, ql=_ml),
        ((_pw, "unit"), (_pl, "unit"), (_px, "unit"), (_mw, "unit"), (_ml, "unit"), (beta, "beta")),
        note="L_Likelihood = L_DPO(p_θ; p_ref = p_LM)",
    )


def likelihood_power_form() -> Identity:
    """Eq. (15), second line: σ(β log(a) − β log(b)) = a^β / (a^β + b^β), a = p_w/m_w, b = p_l/m_l."""
    a, b = _pw / _mw, _pl / _ml
    return Identity(
        "likelihood_power_form", "Eq. (15)", sigmoid(beta * log(a) - beta * log(b)), a**beta / (a**beta + b**beta),
        ((_pw, "unit"), (_pl, "unit"), (_mw, "unit"), (_ml, "unit"), (beta, "beta")),
        note="the ratio form of Eq. (15)",
    )


# ---- Appendix C.3: reward classes


def same_class_same_preferences() -> Identity:
    """Rafailov et al. (2023) Lemma 1, used in App. C.3: r and r + f(x) give the same Bradley-Terry preferences."""
    r1, r2 = sp.symbols("r_1 r_2", real=True)
    return Identity(
        "same_class_same_preferences", "App. C.3 (Rafailov et al. Lemma 1)", sigmoid((r1 + f) - (r2 + f)),
        sigmoid(r1 - r2), ((r1, "real"), (r2, "real"), (f, "real")), note="a shift by f(x) cancels in Eq. (3)",
    )


def same_class_same_policy(uniform: bool = True) -> Identity:
    """App. C.3, Eq. (28): r and r + f(x) give the same optimal policy (the paper's lemma, MaxEnt case).

    With ``uniform=False`` the same statement for the optimum of Eq. (1) with any reference.
    """
    ref = (lambda t: 1) if uniform else (lambda t: q[t])
    lhs = ref(k) * exp((r[k] + f) / beta) / Sum(ref(j) * exp((r[j] + f) / beta), (j, 1, n))
    rhs = ref(k) * exp(r[k] / beta) / Sum(ref(j) * exp(r[j] / beta), (j, 1, n))
    dom = _REAL_R + ((f, "real"), (beta, "beta")) + (() if uniform else ((q, "simplex"),))
    return Identity(
        "same_class_same_policy" + ("" if uniform else "_reference"), "App. C.3 Eq. (28)", lhs, rhs, dom,
        note="exp(f(x)/β) cancels between numerator and partition function", extra={"index": k},
    )


def _projection(index):
    """App. C.3, Eq. (31): f(r; β)_index = r_index − β log Σ_j exp(r_j/β)."""
    return r[index] - beta * log(_Z_uniform())


def projection_is_log_policy() -> Identity:
    """App. C.3, Eqs. (29)-(32): f(r; β) = β log p_r with p_r = softmax(r/β)."""
    p_r = exp(r[k] / beta) / _Z_uniform()
    return Identity(
        "projection_is_log_policy", "App. C.3 Eqs. (29)-(32)", _projection(k), beta * log(p_r),
        _REAL_R + ((beta, "beta"),), note="every reward has a representative of the form β log p(y|x)",
        extra={"index": k},
    )


def projection_in_class() -> Identity:
    """App. C.3: r − f(r; β) is the same for every response (a function of x alone), so f(r; β) is in r's class."""
    return Identity(
        "projection_in_class", "App. C.3 Eq. (31)", r[i] - _projection(i), r[k] - _projection(k),
        _REAL_R + ((beta, "beta"),), note="the projection only subtracts β log Z(x)",
    )


# ---- Eq. (7): dense token-level rewards add up to the sequence reward


def token_rewards_sum(length: int = 3) -> Identity:
    """Eq. (7): the sequence implicit reward (Eq. 6) is the sum of the token-level rewards, for a response of ``length`` tokens."""
    pt = sp.symbols(f"p_1:{length + 1}", positive=True)
    qt = sp.symbols(f"q_1:{length + 1}", positive=True)
    lhs = beta * log(sp.Mul(*pt) / sp.Mul(*qt))
    rhs = sp.Add(*[beta * log(a / b) for a, b in zip(pt, qt)])
    return Identity(
        "token_rewards_sum", "Eqs. (6)-(7)", lhs, rhs, tuple((s, "unit") for s in pt + qt) + ((beta, "beta"),),
        note="log p(y|x) = Σ_t log p(y_t | x, y_<t), so Eq. (6) is a sum of Eq. (7) over tokens",
    )
