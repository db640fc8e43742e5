"""Every metric a record holds, computed in one place for every profile.

A backend supplies what only it knows: the judge's verdict on the test outputs
(:class:`JudgeResult`: gold or reward-model scores, win rate, LC win rate) and scorers
for the validation pairs. :func:`evaluate_policy` turns those into the record's
:class:`~dpolib.experiments.records.Metrics`:

* output statistics of the greedy test generations (length, EOS rate, the paper's
  "[degenerate]" marker, samples);
* Table 2's ranking accuracies on the validation pairs (r_θ and p_θ, Eq. 6);
* Eq. (8) token statistics against the SFT student (Figures 1-2) and Figure 3's EOS statistics.

Adding a metric: compute it in :func:`evaluate_policy` (or :func:`pair_metrics`), add the
field to :class:`~dpolib.experiments.records.Metrics`, and bump
:data:`dpolib.experiments.config.PIPELINE_VERSION` so every affected record key changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .. import evaluation as E
from ..logprobs import ScoredResponses
from ..world.task import repetition_rate
from .records import Metrics

__all__ = ["DEGENERATE_RATE", "N_SAMPLES", "JudgeResult", "score_pairs", "pair_metrics", "evaluate_policy"]

#: A model is reported as "[degenerate]" (the paper's Table 1 marker) when more than this
#: fraction of its test outputs never emit EOS or repeat themselves.
DEGENERATE_RATE = 0.5
#: Generated test responses kept in each record (the side-by-side sample tables read them).
N_SAMPLES = 24


@dataclass(frozen=True)
class JudgeResult:
    """What a backend's judge says about one policy's test outputs.

    Attributes:
        scores: per-prompt quality of the outputs (gold score, or the reward model's reward).
        gold_score, baseline_gold_score: mean quality of the outputs and of the baseline outputs.
        win_rate, lc_win_rate: win rate and length-controlled win rate against the baseline (%).
        lc_fit: the length-controlled GLM's fitted coefficients.
        judge: a description of the judge (recorded).
    """

    scores: Sequence[float]
    gold_score: float
    baseline_gold_score: float
    win_rate: float
    lc_win_rate: float
    lc_fit: dict = field(default_factory=dict)
    judge: dict = field(default_factory=dict)


def score_pairs(scorer, prompts, chosen, rejected) -> tuple[ScoredResponses, ScoredResponses]:
    """Score chosen and rejected in one call, batched exactly as :func:`dpolib.references.precompute` batches them.

    Identical batching makes an untrained policy's log-probs equal its reference's to the
    last bit, so its implicit rewards tie exactly (the paper's 0.500 for the SFT row).
    """
    both = scorer.score(list(prompts) + list(prompts), list(chosen) + list(rejected), per_token=True)
    n = len(prompts)
    halves = lambda xs: (xs[:n], xs[n:])  # noqa: E731
    (c_seq, r_seq), (c_tok, r_tok), (c_ids, r_ids) = (
        halves(both.sequence_logps), halves(both.token_logps), halves(both.token_ids)
    )
    return ScoredResponses(c_seq, c_tok, c_ids), ScoredResponses(r_seq, r_tok, r_ids)


def pair_metrics(policy_pairs, student_pairs, val, tokenizer) -> dict:
    """Table 2's ranking accuracies, Eq. (8) token statistics against the SFT student, Figure 3's EOS statistics.

    Args:
        policy_pairs: ``(chosen, rejected)`` :class:`~dpolib.logprobs.ScoredResponses` of the policy.
        student_pairs: the same for the SFT student (same tokenizer).
        val: the validation split with ``ref_chosen_logps`` / ``ref_rejected_logps``.
        tokenizer: the policy's tokenizer (token texts, EOS id).
    """
    sc, sr = policy_pairs
    rc, rr = student_pairs
    refs = [torch.tensor(list(val[c]), dtype=torch.float64) for c in ("ref_chosen_logps", "ref_rejected_logps")]
    out = E.ranking_accuracy(sc.sequence_logps, sr.sequence_logps, *refs)
    table = E.token_logp_differences(sc.token_ids + sr.token_ids, sc.token_logps + sr.token_logps,
                                     rc.token_logps + rr.token_logps)
    ranked = sorted(table.items(), key=lambda kv: kv[1]["mean_diff"])
    out["token_logp_diff"] = {tokenizer.convert_ids_to_tokens(t): v for t, v in ranked}
    logratio = E.logratio_summary(sc.token_logps + sr.token_logps, rc.token_logps + rr.token_logps)
    out["token_logp_hist"] = logratio["hist"]
    out["seq_logratio"] = {**logratio["seq"], "token": logratio["token"]}
    out["pair_length_tokens"] = {"chosen_mean": float(np.mean([len(t) for t in sc.token_ids])),
                                 "rejected_mean": float(np.mean([len(t) for t in sr.token_ids]))}
    out["eos"] = E.eos_statistics(sc.token_ids, sc.token_logps, sr.token_ids, sr.token_logps, tokenizer.eos_token_id)
    out["eos_token"] = tokenizer.eos_token
    return out


def evaluate_policy(generations: Sequence[E.Generation], prompt_texts: Sequence[str], judged: JudgeResult,
                    pairs: dict, settings: E.GenerationSettings) -> Metrics:
    """The record's metrics from the test generations, the judge's verdict and :func:`pair_metrics`'s output."""
    degenerate = np.array([E.is_degenerate(g, repetition_rate(g.text)) for g in generations])
    samples = [
        {"prompt": p, "response": g.text, "gold": float(s), "finished": g.finished}
        for p, g, s in zip(prompt_texts[:N_SAMPLES], generations[:N_SAMPLES], list(judged.scores)[:N_SAMPLES])
    ]
    return Metrics(
        gold_score=float(judged.gold_score),
        baseline_gold_score=float(judged.baseline_gold_score),
        win_rate=float(judged.win_rate),
        lc_win_rate=float(judged.lc_win_rate),
        lc_fit=dict(judged.lc_fit),
        mean_length_chars=float(np.mean([len(g.text) for g in generations])),
        mean_length_tokens=float(np.mean([g.n_tokens for g in generations])),
        finished_rate=float(np.mean([g.finished for g in generations])),
        degenerate_rate=float(degenerate.mean()),
        degenerate=bool(degenerate.mean() > DEGENERATE_RATE),
        reward_accuracy=pairs["reward_accuracy"],
        policy_accuracy=pairs["policy_accuracy"],
        eos=pairs["eos"],
        eos_token=pairs["eos_token"],
        token_logp_diff=pairs["token_logp_diff"],
        token_logp_hist=pairs["token_logp_hist"],
        seq_logratio=pairs["seq_logratio"],
        pair_length_tokens=pairs["pair_length_tokens"],
        samples=samples,
        generation=settings.to_dict(),
        judge=dict(judged.judge),
    )
