"""Compute the exact world's sweeps and the theory chapter's checks once, and write them as records with provenance.

The two chapters that used to recompute everything at every build read these records
instead (:mod:`dpolib.chapters.exact`, :mod:`dpolib.chapters.theory`); the configs, keys and
the reader are in :mod:`dpolib.experiments.exact_records`. :func:`write` is the one entry:
it reads a record back when one with the same key (config and code version) exists, and
computes and writes it otherwise (or with ``force``). ``python -m dpolib.experiments exact``
writes both.

* :func:`exact_record`: every sweep and table of ``notebooks/exact_world.md`` (and the RQ1
  chapter's dense curve) in :mod:`dpolib.tabular`'s world: the population check, the dense β
  sweeps of both students and three objectives, the references of varied strength and
  compatibility, the robustness worlds and the two exercises that train.
* :func:`theory_record`: every identity of ``notebooks/theory.md`` checked symbolically and
  numerically (:mod:`dpolib.symbolic`, :mod:`dpolib.symbolic_training`), the LaTeX the chapter
  displays, and the numeric cross-checks against :mod:`dpolib.losses`.

Curves are stored to 6 significant digits, the robustness numbers to 10 (they are compared
against a 0.05 threshold), and only what a chapter reads back.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

from ..paths import cache_root
from ..provenance import CorruptFileError, atomic_write_json, file_lock, provenance, quarantine, read_json
from .exact_records import (
    ExactConfig,
    TheoryConfig,
    is_current,
    record_key,
    record_path,
    version_of,
)

__all__ = ["CURVE_METRICS", "exact_record", "theory_record", "write", "write_all"]

#: The exact metrics kept for every β of a dense curve (what the chapters plot).
CURVE_METRICS = ("gold", "entropy", "length", "kl_sft", "accuracy")


def _r(x, digits: int = 6) -> float:
    return float(f"{float(x):.{digits}g}")


def _rs(values, digits: int = 6) -> list[float]:
    return [_r(v, digits) for v in values.tolist()]


# --------------------------------------------------------------------------- the exact world


def _curve(metrics: dict, keys=CURVE_METRICS) -> dict:
    return {k: _rs(metrics[k]) for k in keys}


def _summary(T, metrics: dict, betas) -> dict:
    return {k: _r(v, 10) for k, v in T.summarise(metrics, betas).items()}


def _ends(T, gold, betas) -> dict:
    """A coarse curve in four numbers: its best value, where it is, and both ends (the robustness rules read these)."""
    i = int(gold.argmax())
    return {"best": _r(gold[i], 10), "best_beta": _r(betas[i], 10), "first": _r(gold[0], 10), "last": _r(gold[-1], 10)}


def _population(T, config: ExactConfig, world_overrides: dict) -> list[dict]:
    """Infinite-data DPO (damped Newton) against the closed-form Gibbs policy, per reference and β."""
    small = T.make_world(**{**world_overrides, "n_prompts": config.population_prompts})
    rows = []
    for ref in ("sft", "uniform", "prior"):
        for beta in config.population_betas:
            trained = T.train_population(small, ref, beta)
            closed = T.gibbs_policy(small.references[ref], small.gold, [beta])[0]
            rows.append({"reference": ref, "beta": beta, "gap": float((trained.exp() - closed.exp()).abs().max())})
    return rows


def _robustness(T, config: ExactConfig, world_overrides: dict, train) -> list[dict]:
    """The same questions in independently drawn worlds (coarse grid, log-linear student, the strongest reference)."""
    betas = T.log_betas(config.robustness_betas, config.beta_low, config.beta_high)
    strength = config.strengths[-1][1]  # the strongest compatible reference ("strong" in the book)
    rows = []
    for seed in range(config.robustness_seeds):
        w = T.make_world(**{**world_overrides, "seed": seed})
        comp = w.add_reference("compatible", strength, 1.0)
        w.add_matched_reference("incompatible", comp, 0.0)
        names = ["sft", "uniform", "prior", "compatible", "incompatible"]
        gold = {r: T.expected_gold(w, lp) for r, lp in T.sweep(w, names, betas, "loglinear", train).items()}
        rows.append({"seed": seed, "references": {r: _ends(T, g, betas) for r, g in gold.items()}})
    return rows


def _budget_exercise(T, config: ExactConfig, world, betas, base_gold, train) -> list[dict]:
    """Exercise "predict the curve": the log-linear DPO curve with the step budget and with ``budget_steps``."""
    from dataclasses import replace

    longer = T.expected_gold(world, T.train(world, "sft", betas, "loglinear", replace(train, steps=config.budget_steps)))
    return [{"steps": steps, **_ends(T, gold, betas)} for steps, gold in ((train.steps, base_gold), (config.budget_steps, longer))]


def _kappa_exercise(T, config: ExactConfig, world, betas, train) -> list[dict]:
    """Exercise "an incompatibility that hurts": another base model tilted by -κ·length, rematched in gold reward."""
    import torch

    strong = world.references[f"compatible {config.strengths[-1][0]}"]
    target = float(T.expected_gold(world, strong))
    other_base = world.other_base()
    rows = []
    for kappa in config.kappas:
        base_k = torch.log_softmax(other_base - kappa * world.length, -1)
        lo, hi = -5.0, 20.0
        for _ in range(60):  # bisection on strength, as in World.add_matched_reference
            mid = (lo + hi) / 2
            ref = world.loglinear_logps(world.w_sft + mid * world.w_gold, base_k)
            lo, hi = (mid, hi) if float(T.expected_gold(world, ref)) < target else (lo, mid)
        gold = T.expected_gold(world, T.train(world, ref, betas, "loglinear", train))
        rows.append({"kappa": kappa, "reference_gold": _r(T.expected_gold(world, ref), 10), **_ends(T, gold, betas)})
    return rows


def exact_record(config: ExactConfig | None = None) -> dict:
    """Every number the exact-world chapter and the RQ1 chapter's dense curve show, computed in :mod:`dpolib.tabular`.

    Returns the record's body (no provenance): ``world`` (its full config and a few exact
    facts), ``betas``, ``population`` (the largest absolute gap ``p_trained − p_Gibbs`` per reference and β),
    ``students``/``objectives`` (their order), ``sweeps[student][objective]`` (``curve`` of
    :data:`CURVE_METRICS` per β and ``summary``, :func:`dpolib.tabular.summarise`),
    ``closed_form_gold`` (the Gibbs optimum of Eq. 1 with the SFT reference), ``references``
    (a list: name, kind, reference gold, distance to the class, gold curve, summary),
    ``robustness`` (per seed and reference: best, best β, both ends) and ``exercises``.
    """
    import torch

    from .. import tabular as T

    config = config or ExactConfig()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest
    overrides = dict(config.world)
    train = T.TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup)
    world = T.make_world(**overrides)
    betas = T.log_betas(config.n_betas, config.beta_low, config.beta_high)
    sft = T.evaluate(world, world.log_sft.unsqueeze(0), "sft")
    facts = {
        "config": asdict(world.config),
        "sft_gold": _r(T.expected_gold(world, world.log_sft), 10),
        "best_possible": _r(world.gold.max(-1).values.mean(), 10),
        "label_agrees": _r((world.gold[world.prompt, world.chosen] > world.gold[world.prompt, world.rejected]).double().mean(), 10),
        "sft": {k: _r(v, 10) for k, v in sft.items()},
    }

    students = ["full", "loglinear"]
    objectives = [[o, ref] for o, ref in T.OBJECTIVES.items()]
    sweeps = {}
    for student in students:
        trained = T.sweep(world, T.OBJECTIVES.values(), betas, student, train)
        sweeps[student] = {}
        for objective, ref in objectives:
            m = T.evaluate(world, trained[ref], ref)
            if (student, objective) == ("loglinear", "dpo"):
                base_gold = m["gold"]
            sweeps[student][objective] = {"curve": _curve(m), "summary": _summary(T, m, betas)}
    closed = T.expected_gold(world, T.gibbs_policy(world.references["sft"], world.gold, betas))

    names = ["sft"]
    kinds = {"sft": "self"}
    for name, s in config.strengths:
        comp = world.add_reference(f"compatible {name}", s, compatibility=1.0)
        world.add_matched_reference(f"incompatible {name}", comp, compatibility=0.0)
        for kind in ("compatible", "incompatible"):
            names.append(f"{kind} {name}")
            kinds[f"{kind} {name}"] = kind
    references = []
    for name, lp in T.sweep(world, names, betas, "loglinear", train).items():
        m = T.evaluate(world, lp, name)
        references.append({
            "name": name, "kind": kinds[name],
            "reference_gold": _r(T.expected_gold(world, world.references[name]), 10),
            "distance_to_class": _r(T.class_residual(world, world.references[name]), 10),
            "curve": _curve(m, ("gold",)), "summary": _summary(T, m, betas),
        })

    return {
        "world": facts,
        "betas": _rs(betas),
        "population": {"prompts": config.population_prompts, "gaps": _population(T, config, overrides)},
        "students": students,
        "objectives": objectives,
        "sweeps": sweeps,
        "closed_form_gold": {"dpo": _rs(closed)},
        "references": references,
        "robustness": {"betas": config.robustness_betas, "strength": config.strengths[-1][0],
                       "worlds": _robustness(T, config, overrides, train)},
        "exercises": {
            "budget": _budget_exercise(T, config, world, betas, base_gold, train),
            "kappa": _kappa_exercise(T, config, world, betas, train),
        },
    }


# --------------------------------------------------------------------------- the theory chapter


def _check_row(key: str, identity, config: TheoryConfig) -> dict:
    holds = bool(identity.holds())
    gap = float(identity.numeric_error(points=config.points, seed=config.seed))
    return {
        "key": key, "identity": identity.name, "paper": identity.paper, "says": identity.note,
        "latex": identity.latex(), "holds": holds, "max_numeric_gap": gap if math.isfinite(gap) else str(gap),
        "tol": identity.tol, "passes": bool(holds and gap <= identity.tol),
    }


def _autograd_gap(grad_identity, config: TheoryConfig) -> dict:
    """The symbolic DPO loss and gradient in the logits against ``dpolib.losses.dpo_loss`` and ``torch.autograd``.

    Random logits (size 4), random reference log-probs and β log-uniform in [1e-2, 10].
    """
    import sympy as sp
    import torch

    from .. import losses
    from ..symbolic import beta as beta_symbol

    loss_expr, thetas, refs = grad_identity.extra["loss"], grad_identity.extra["thetas"], grad_identity.extra["refs"]
    args = (*thetas, *refs, beta_symbol)
    f_loss = sp.lambdify(args, loss_expr, "math")
    f_grad = sp.lambdify(args, list(grad_identity.rhs), "math")
    g = torch.Generator().manual_seed(config.autograd_seed)
    worst_loss = worst_grad = 0.0
    for _ in range(config.autograd_points):
        theta = (3 * torch.randn(4, generator=g, dtype=torch.float64)).requires_grad_(True)
        ref = torch.log_softmax(3 * torch.randn(4, generator=g, dtype=torch.float64), -1)
        beta = 10 ** (3 * torch.rand(1, generator=g).item() - 2)
        logp = torch.log_softmax(theta, -1)
        out = losses.dpo_loss(logp[[0]], logp[[2]], ref[[0]], ref[[2]], beta)
        out.losses.sum().backward()
        point = (*theta.detach().tolist(), *ref.tolist(), beta)
        worst_loss = max(worst_loss, abs(f_loss(*point) - out.losses.item()))
        worst_grad = max(worst_grad, max(abs(a - b) for a, b in zip(f_grad(*point), theta.grad.tolist())))
    return {"points": config.autograd_points, "max_loss_gap": worst_loss, "max_grad_gap": worst_grad}


def _constant_reference_gap() -> float:
    """``dpo_loss`` with a constant reference 1/1000 against no reference (log-probs 0): the largest gap over 8 pairs."""
    import torch

    from .. import losses

    g = torch.Generator().manual_seed(0)
    pc, pr = -5 * torch.rand(8, generator=g, dtype=torch.float64), -5 * torch.rand(8, generator=g, dtype=torch.float64)
    const = torch.full((8,), -math.log(1000.0), dtype=torch.float64)
    zero = torch.zeros(8, dtype=torch.float64)
    return (losses.dpo_loss(pc, pr, const, const, 0.7).losses - losses.dpo_loss(pc, pr, zero, zero, 0.7).losses).abs().max().item()


def theory_record(config: TheoryConfig | None = None) -> dict:
    """Every check of the theory chapter, and the LaTeX it displays.

    Returns the record's body (no provenance): ``identities`` (one row per identity, in
    :data:`dpolib.symbolic_training.ALL` order or ``config.identities``: key, name, paper,
    says, latex, holds, max_numeric_gap, tol, passes), ``kkt`` (LaTeX of each step of the
    derivation of the Gibbs optimum), ``weight_margin`` (h_ε and the margins at ε = 0.1),
    ``pair_optimum`` (DPO's population minimiser and its curvature), ``no_finite_minimiser``
    (per reference), ``autograd`` (the sympy-versus-autograd gaps) and ``constant_reference_gap``.
    """
    import sympy as sp

    from .. import symbolic as S
    from .. import symbolic_training as ST

    config = config or TheoryConfig()
    keys = list(config.identities) or list(ST.ALL)
    unknown = [k for k in keys if k not in ST.ALL]
    if unknown:
        raise ValueError(f"unknown identities {unknown}; known: {', '.join(ST.ALL)}")
    identities = [_check_row(key, ST.ALL[key](), config) for key in keys]

    kkt = S.gibbs_kkt()
    wm = ST.weight_margin()
    h_eps = wm.extra["h_eps"]
    margins = [[b, float(h_eps.subs({S.beta: b, S.eps: sp.Rational(1, 10)}))] for b in (0.01, 0.1, 1.0)]
    h_star, curvature, _, _ = ST.pair_optimum("dpo")
    no_min = []
    for reference in (False, True):
        facts = ST.no_finite_minimiser(reference=reference)
        no_min.append({"reference": reference, "positive": facts["positive"], "limit": str(facts["limit"]),
                       "gradient_negative": facts["gradient_negative"]})
    return {
        "identities": identities,
        "kkt": {key: sp.latex(kkt[key]) for key in ("lagrangian", "gradient", "p_k", "C", "lambda_star", "p_star", "hessian_diag")},
        "weight_margin": {"h_eps": sp.latex(h_eps), "epsilon": 0.1, "margins": margins},
        "pair_optimum": {"h_star": sp.latex(h_star), "curvature": sp.latex(curvature),
                         "curvature_positive": bool(curvature.is_positive)},
        "no_finite_minimiser": no_min,
        "autograd": _autograd_gap(ST.dpo_gradient_logits(size=4, chosen=0, rejected=2), config),
        "constant_reference_gap": _constant_reference_gap(),
    }


# --------------------------------------------------------------------------- writing


def write(config, force: bool = False, root=None, progress: bool = False) -> tuple[dict, bool]:
    """The record for ``config`` (an :class:`~dpolib.experiments.exact_records.ExactConfig` or a :class:`~dpolib.experiments.exact_records.TheoryConfig`): read back, or computed and written.

    A record whose stored key, version or config does not match (an edited or stale file) is
    recomputed, never read. Returns ``(record, computed)``. ``root`` replaces ``results/``.
    """
    path = record_path(config, root)
    # the lock lives in the cache, not beside the committed record
    with file_lock(cache_root() / "locks" / f"{path.parent.name}-{path.name}"):
        if path.exists() and not force:
            try:
                record = read_json(path)
            except CorruptFileError as e:
                quarantine(path, e.reason)
            else:
                if is_current(record, config):
                    return record, False
                if progress:
                    print(f"{path} does not match its key, version or config: recomputing")
        compute = exact_record if isinstance(config, ExactConfig) else theory_record
        t = time.perf_counter()
        body = compute(config)
        record = {
            "kind": path.parent.name, "key": record_key(config), "version": version_of(config),
            "config": config.to_dict(), **body,
            "provenance": provenance(wall_time_s=round(time.perf_counter() - t, 1)),
        }
        atomic_write_json(path, record)
    return read_json(path), True


def write_all(force: bool = False, exact: ExactConfig | None = None, theory: TheoryConfig | None = None,
              root=None, progress: bool = True) -> dict:
    """Write (or read back) both records: ``{"exact": path, "theory": path}``."""
    out = {}
    for name, config in (("exact", exact or ExactConfig()), ("theory", theory or TheoryConfig())):
        t = time.perf_counter()
        record, computed = write(config, force=force, root=root, progress=progress)
        out[name] = record_path(config, root)
        if progress:
            what = f"computed in {time.perf_counter() - t:.1f} s" if computed else "read back (key unchanged)"
            print(f"{name}: {out[name]} {what}")
    return out
