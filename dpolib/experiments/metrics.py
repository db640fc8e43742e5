"""Every metric a record holds, computed in one place for every profile.

A backend supplies what only it knows: the judge's verdict on the test outputs
(:class:`JudgeResult`: gold or reward-model scores, win rate, LC win rate) and scorers
for the validation pairs. :func:`evaluate_policy` turns those into the record's
:class:`~dpolib.experiments.records.Metrics`:

* output statistics of the greedy test generations (length, EOS rate, the paper's
  "[degenerate]" marker, samples);
* Table 2's ranking accuracies on the validation pairs (r_θ and p_θ, Eq. 6);
* Eq. (8) token statistics against the SFT student (Figures 1-2) and Figure 3's EOS statistics.

Adding a metric is one edit in this module (a field of :class:`Metrics` and its line in
:func:`evaluate_policy` or :func:`pair_metrics`) plus a bump of
:data:`dpolib.experiments.config.PIPELINE_VERSION`, which changes every record key of every
profile so that no record without the metric is read back. The heavy imports (torch, the
evaluation code) happen inside the functions, so reading records never pays for them.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["DEGENERATE_RATE", "N_SAMPLES", "FINITE", "Metrics", "JudgeResult", "score_pairs", "pair_metrics", "evaluate_policy"]

#: A model is reported as "[degenerate]" (the paper's Table 1 marker) when more than this
#: fraction of its test outputs never emit EOS or repeat themselves.
DEGENERATE_RATE = 0.5
#: Generated test responses kept in each record (the side-by-side sample tables read them).
N_SAMPLES = 24


#: Metrics every record must hold as finite numbers (a NaN here is a damaged record, never a result). The gold
#: score may be NaN (the gpu path judged by AlpacaEval 2 has no gold score).
FINITE = ("win_rate", "lc_win_rate", "reward_accuracy", "policy_accuracy", "degenerate_rate", "mean_length_chars",
          "finished_rate")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Metrics:
    """What one run measured (:func:`dpolib.experiments.metrics.evaluate_policy` computes every field).

    Attributes:
        gold_score: mean gold score of the greedy test outputs (the gpu world: the judge's reward).
        baseline_gold_score: the same for the fixed baseline outputs.
        win_rate: the judge's win rate against the baseline (%).
        lc_win_rate: the length-controlled win rate against the baseline (%).
        lc_fit: the fitted coefficients of the length-controlled GLM.
        mean_length_chars: mean length of the test outputs in characters.
        mean_length_tokens: the same in tokens.
        finished_rate: fraction of test outputs that emitted EOS.
        degenerate_rate: fraction of degenerate outputs.
        degenerate: whether that fraction exceeds the threshold
            (the paper's "[degenerate]" marker).
        reward_accuracy: Table 2's r_θ ranking accuracy on the validation pairs.
        policy_accuracy: Table 2's p_θ ranking accuracy
            (r_θ = β-free log-ratio margin > 0; p_θ: log p_θ(y_w|x) > log p_θ(y_l|x)).
        eos: Figure 3's EOS statistics.
        eos_token: the EOS token's text.
        token_logp_diff: Eq. (8) per-token mean log-prob change against the SFT student, by token text.
        token_logp_hist: the occurrence-weighted histogram of per-token means (Figure 1).
        seq_logratio: summaries of sequence-level and token-level log-ratios against the SFT student.
        pair_length_tokens: mean token length of chosen and rejected validation responses.
        samples: the first test prompts with their generated responses.
        generation: the generation settings; judge: the judge's description.
        prompt_scores: per-test-prompt gold (or reward) scores, rounded to 4 decimals, in test-prompt order
            (paired bootstrap CIs over prompts read them; empty in records older than World 4).
        prompt_lc: per-test-prompt length-controlled win probabilities, rounded to 4 decimals (their mean x 100 is
            the LC win rate when the judge supplies them; else empty).
        degenerate_reasons: how many test outputs were degenerate for each reason (the world's check).
    """

    gold_score: float
    baseline_gold_score: float
    win_rate: float
    lc_win_rate: float
    lc_fit: dict
    mean_length_chars: float
    mean_length_tokens: float
    finished_rate: float
    degenerate_rate: float
    degenerate: bool
    reward_accuracy: float
    policy_accuracy: float
    eos: dict
    eos_token: str
    token_logp_diff: dict
    token_logp_hist: dict
    seq_logratio: dict
    pair_length_tokens: dict
    samples: list
    generation: dict
    judge: dict
    prompt_scores: list = field(default_factory=list)
    prompt_lc: list = field(default_factory=list)
    degenerate_reasons: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Metrics":
        """Validate and wrap a record's ``metrics``: every field present, the fields of
        :data:`~dpolib.experiments.metrics.FINITE` finite numbers."""
        names = [f.name for f in fields(cls) if f.name in data or f.default_factory is MISSING]
        missing = [n for n in names if n not in data]
        if missing:
            raise KeyError(f"metrics lack {', '.join(missing)}")
        bad = [n for n in FINITE if not _finite(data[n])]
        if bad:
            raise ValueError(f"metrics {', '.join(f'{n}={data[n]!r}' for n in bad)} are not finite numbers")
        return cls(**{n: data[n] for n in names})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class JudgeResult:
    """What a backend's judge says about one policy's test outputs.

    Attributes:
        scores: per-prompt quality of the outputs (gold score, or the reward model's reward).
        gold_score: mean quality of the outputs.
        baseline_gold_score: mean quality of the baseline outputs.
        win_rate: win rate against the baseline (%).
        lc_win_rate: length-controlled win rate against the baseline (%).
        lc_fit: the length-controlled GLM's fitted coefficients.
        judge: a description of the judge (recorded).
        lc_scores: per-prompt length-controlled win probabilities (``None``: the judge gives none).
        degenerate: per-prompt degenerate flags from the world's own check (``None``: the generic check,
            non-termination or repetition, is used).
        degenerate_reasons: counts of degenerate outputs by reason.
        degenerate_threshold: the share of degenerate outputs above which the model is flagged.
    """

    scores: Sequence[float]
    gold_score: float
    baseline_gold_score: float
    win_rate: float
    lc_win_rate: float
    lc_fit: dict = field(default_factory=dict)
    judge: dict = field(default_factory=dict)
    lc_scores: Sequence[float] | None = None
    degenerate: Sequence[bool] | None = None
    degenerate_reasons: dict = field(default_factory=dict)
    degenerate_threshold: float | None = None


def score_pairs(scorer, prompts, chosen, rejected) -> tuple:
    """Score chosen and rejected in one call, batched exactly as :func:`dpolib.references.precompute` batches them.

    Identical batching makes an untrained policy's log-probs equal its reference's to the
    last bit, so its implicit rewards tie exactly (the paper's 0.500 for the SFT row).
    """
    from ..logprobs import ScoredResponses

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
    import torch

    from .. import evaluation as E

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


def evaluate_policy(generations: Sequence, prompt_texts: Sequence[str], judged: JudgeResult,
                    pairs: dict, settings) -> Metrics:
    """The record's metrics from the test generations (:class:`dpolib.evaluation.Generation`), the judge's verdict
    and :func:`pair_metrics`'s output; ``settings`` are the :class:`dpolib.evaluation.GenerationSettings` used."""
    from .. import evaluation as E
    from ..world.task import repetition_rate

    if judged.degenerate is not None:
        degenerate = np.asarray(judged.degenerate, bool)
        threshold = judged.degenerate_threshold if judged.degenerate_threshold is not None else DEGENERATE_RATE
    else:
        degenerate = np.array([E.is_degenerate(g, repetition_rate(g.text)) for g in generations])
        threshold = DEGENERATE_RATE
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
        degenerate=bool(degenerate.mean() > threshold),
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
        prompt_scores=[round(float(x), 4) for x in judged.scores],
        prompt_lc=[] if judged.lc_scores is None else [round(float(x), 4) for x in judged.lc_scores],
        degenerate_reasons=dict(judged.degenerate_reasons),
    )
