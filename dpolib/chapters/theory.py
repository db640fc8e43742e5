"""The theory chapter's checks, read from their record: each identity's LaTeX and verdict, and the summary table.

``notebooks/theory.md`` derives Eqs. (1)-(16) and Appendix C of the paper with sympy. The
derivations and checks (every identity simplified to 0 and evaluated at random points, the
sympy gradient against ``torch.autograd`` through :mod:`dpolib.losses`) are computed once by
:mod:`dpolib.experiments.exact` (``python -m dpolib.experiments exact``) into
``results/theory/<key>.json``; ``tests/test_symbolic.py`` checks every identity again, and
mutates each one to show the checks can fail. This module only reads that record: it
imports neither sympy nor torch.
"""

from __future__ import annotations

import pandas as pd

from ..experiments.exact_records import TheoryConfig, read

__all__ = ["evidence", "CLAIMS", "SECTIONS", "identity", "show", "summary_table", "no_minimiser_lines"]

#: The identities of each section of the chapter, in the order it states them (keys of
#: :data:`dpolib.symbolic_training.ALL`).
SECTIONS = {
    "1. the KL-constrained optimum": ("kkt_stationary", "kkt_normalised", "kkt_hessian", "gibbs_value"),
    "2. from rewards to DPO": ("bradley_terry_is_sigmoid", "reparameterisation", "partition_cancels_in_bt",
                               "dpo_from_reward_mle", "token_rewards_sum"),
    "3. the uniform reference": ("kl_to_uniform", "maxent_is_uniform_reference", "probability_is_uniform_dpo",
                                 "maxent_optimum", "maxent_value"),
    "4. the prior reference": ("bayes_likelihood_ratio", "likelihood_is_prior_dpo", "likelihood_power_form"),
    "5. reward classes": ("same_class_same_preferences", "same_class_same_policy", "same_class_same_policy_reference",
                          "projection_is_log_policy", "projection_in_class"),
    "6. the gradient": ("dpo_gradient_logps", "dpo_gradient_logits", "weight_margin"),
    "7. the limits of the optimum": ("gibbs_gap_form", "gibbs_limit_zero_best", "gibbs_limit_zero_other",
                                     "gibbs_limit_zero_kl", "gibbs_limit_infinity"),
    "8. finite data": ("population_minimiser", "pair_loss_closed_form_free", "pair_loss_closed_form"),
}

#: What the chapter claims, each backed by the record's checks.
CLAIMS = {
    "identities": "every identity of Eqs. (1)-(16) and App. C: lhs − rhs simplifies to 0 and vanishes at random points",
    "autograd": "the symbolic DPO loss and gradient equal dpolib.losses.dpo_loss and torch.autograd",
    "no_finite_minimiser": "on separable data neither DPO nor the reference-free loss has a finite minimiser",
}

_SUMMARY_COLUMNS = {"identity": "identity", "paper": "paper", "says": "says",
                    "holds": "lhs - rhs simplifies to 0", "max_numeric_gap": "max numeric gap"}


def evidence(config: TheoryConfig | None = None, root=None) -> dict:
    """The theory record for ``config`` (default: the book's), from ``results/theory/``.

    Raises:
        FileNotFoundError: no record yet (the message names the command that writes it).
    """
    return read(config or TheoryConfig(), root)


def identity(record: dict, key: str) -> dict:
    """One identity's row: key, identity (name), paper, says, latex, holds, max_numeric_gap, tol, passes."""
    rows = {row["key"]: row for row in record["identities"]}
    if key not in rows:
        raise KeyError(f"identity {key!r} is not in the theory record (it has {', '.join(rows)}); "
                       "rewrite the record with `python -m dpolib.experiments exact --force`")
    return rows[key]


def _gap(row: dict) -> float:
    return float(row["max_numeric_gap"])


def show(record: dict, key: str, rows: list | None = None, display: bool = True) -> dict:
    """Display an identity as LaTeX with its recorded verdict; append its summary row to ``rows``.

    Raises ``AssertionError`` if the record says the symbolic or the numeric check failed, so a
    chapter built from a failing record stops at the identity.
    """
    row = identity(record, key)
    if not row["passes"]:
        raise AssertionError(f"{row['identity']} failed when the record was written: simplifies to 0: {row['holds']}, "
                             f"numeric gap {row['max_numeric_gap']} (tolerance {row['tol']})")
    if display:
        from IPython.display import Math
        from IPython.display import display as show_output

        show_output(Math(row["latex"]))
        points = record["config"]["points"]
        print(f"✓ {row['identity']}: lhs − rhs simplifies to 0; max |lhs − rhs| at {points} random points = {_gap(row):.1e}")
    summary_row = {label: (_gap(row) if field == "max_numeric_gap" else row[field]) for field, label in _SUMMARY_COLUMNS.items()}
    if rows is not None:
        rows.append(summary_row)
    return summary_row


def summary_table(rows: list[dict]) -> pd.DataFrame:
    """The chapter's closing table: one row per identity shown (name, paper, what it says, both verdicts)."""
    return pd.DataFrame(rows, columns=list(_SUMMARY_COLUMNS.values()))


def no_minimiser_lines(record: dict) -> list[str]:
    """§8's verdicts on separable data, one line per loss (DPO, Eq. 5; probability, Eq. 10).

    Raises ``AssertionError`` if the record says a finite minimiser might exist.
    """
    out = []
    for facts in record["no_finite_minimiser"]:
        name = "DPO (Eq. 5)" if facts["reference"] else "probability (Eq. 10)"
        if not (facts["positive"] and facts["limit"] == "0" and facts["gradient_negative"]):
            raise AssertionError(f"{name}: the record does not show the absence of a finite minimiser: {facts}")
        out.append(f"{name}: loss > 0 everywhere: {facts['positive']}; limit as p(y_l) -> 0: {facts['limit']}; "
                   f"gradient on θ_w always < 0: {facts['gradient_negative']}")
    return out
