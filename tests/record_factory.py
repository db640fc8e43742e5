"""Synthetic records for the chapter tests: a full :class:`~dpolib.experiments.records.Record` from a few fields.

Every :class:`~dpolib.experiments.records.Metrics` field gets a neutral default; pass any
of them by name to override (e.g. ``lc_win_rate=12.0, degenerate=True``).
"""

from __future__ import annotations

from dpolib.experiments.config import RunConfig
from dpolib.experiments.records import Metrics, Record

_IMPLIED = {"sft": "none", "probability": "uniform", "likelihood": "prior"}

DEFAULT_METRICS = dict(
    gold_score=0.5, baseline_gold_score=0.8, win_rate=10.0, lc_win_rate=10.0, lc_fit={}, mean_length_chars=40.0,
    mean_length_tokens=20.0, finished_rate=1.0, degenerate_rate=0.0, degenerate=False, reward_accuracy=0.5,
    policy_accuracy=0.5, eos={"value": -0.5, "difference": 0.5, "n_pairs": 10}, eos_token="</s>",
    token_logp_diff={}, token_logp_hist={"bin_width": 1.0, "left_edges": [0.0], "counts": [1]},
    seq_logratio={"mean": 0.0, "mean_abs": 0.0, "mean_per_token": 0.0, "token": {"mean": 0.0, "mean_abs": 0.0, "min": 0.0}},
    pair_length_tokens={"chosen_mean": 20.0, "rejected_mean": 20.0}, samples=[], generation={}, judge={},
    prompt_scores=[], prompt_lc=[], degenerate_reasons={},
)


def make_record(student: str = "char", objective: str = "dpo", reference: str | None = None, beta: float | None = 0.1,
                seed: int = 0, profile: str = "cpu", curves=(), provenance=None, **metrics) -> Record:
    """A record of ``student/objective/reference/beta/seed`` with the given metric fields (others neutral).

    ``reference`` defaults to ``"self"`` for DPO and to the implied one for the other objectives;
    ``objective="sft"`` forces ``beta=None``.
    """
    unknown = set(metrics) - set(DEFAULT_METRICS)
    if unknown:
        raise TypeError(f"not Metrics fields: {sorted(unknown)}")
    if objective == "sft":
        beta = None
    reference = reference or _IMPLIED.get(objective, "self")
    config = RunConfig(profile, student, objective, reference, beta, seed=seed)
    return Record(config=config, metrics=Metrics(**{**DEFAULT_METRICS, **metrics}), curves=tuple(curves),
                  provenance=dict(provenance or {}), key=config.label(), label=config.label())
