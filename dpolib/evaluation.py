"""Evaluation à la AlpacaEval 2, plus the paper's ranking and token-level analyses.

* :func:`generate` — responses to held-out prompts (greedy or sampled; settings recorded).
* :class:`PairwiseJudge` — the probability that a response beats a fixed baseline
  response to the same prompt: a logistic function of the gold-score difference
  plus a *length bias*, the known bias of AlpacaEval's GPT-4 judge
  (Dubois et al. 2024). Like AlpacaEval's weighted judge it returns a
  probability per instruction, not a hard vote.
* :func:`win_rate` and :func:`length_controlled_win_rate` — the latter fits the GLM
  of Dubois et al. (2024)::

      logit P(model ≻ baseline | i) = θ + φ · tanh(Δlen_i / sd(Δlen)) [+ ψ · difficulty_i]

  to the judge's per-instruction preferences and reports
  ``100 · mean_i σ(θ [+ ψ · difficulty_i])``, the win rate predicted had the two
  outputs been equally long (Δlen = 0). This is AlpacaEval's
  ``length_controlled_minimal`` formula (with the instruction-difficulty term when
  difficulties are given); AlpacaEval additionally regularises θ toward the
  baseline and pre-fits difficulties over many models, which a single world cannot.
  Fitted on one model's outputs, φ absorbs any quality change that moves with length
  (shorter answers that drop content), so :func:`length_controlled` also takes a
  *calibrated* φ (measured where only length varies, :func:`fit_length_coef`) and
  de-biases each preference, ``q_i = σ(logit p_i − φ tanh(Δlen_i / s))``.
* :func:`ranking_accuracy` — the paper's Table 2: how often the implicit reward
  r_θ (Eq. 6) and the policy p_θ rank y_w above y_l on validation pairs.
* :func:`token_logp_differences` — Eq. (8) per token, aggregated per vocabulary
  token (Figures 1-2), and EOS statistics (Figure 3).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from .profile import progress_enabled

__all__ = [
    "Generation",
    "GenerationSettings",
    "generate",
    "encode_prompts",
    "prompt_batches",
    "to_generation",
    "is_degenerate",
    "PairwiseJudge",
    "win_rate",
    "length_controlled_win_rate",
    "LengthControlled",
    "length_controlled",
    "fit_length_coef",
    "ranking_accuracy",
    "token_logp_differences",
    "eos_statistics",
    "logratio_summary",
]


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings, recorded with every result (the paper does not report its own).

    With ``do_sample``, tokens are drawn at ``temperature`` from the ``top_k`` most likely tokens
    (Hugging Face's default, 50; ``0`` keeps every token) within nucleus ``top_p``.
    """

    max_new_tokens: int = 96
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 64
    top_k: int = 50

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generation:
    """One generated response.

    Attributes:
        text: the decoded response, special tokens removed.
        token_ids: generated ids, up to and including EOS when it was generated.
        finished: True when the model emitted EOS within ``max_new_tokens``.
    """

    text: str
    token_ids: list[int]
    finished: bool

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[dict]],
    settings: GenerationSettings = GenerationSettings(),
    progress: bool = False,
) -> list[Generation]:
    """Generate one response per conversational prompt with the model's chat template.

    Prompts are rendered with ``apply_chat_template(add_generation_prompt=True)``,
    sorted by length, left-padded and generated in batches; results return in the
    input order.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    encoded = encode_prompts(tokenizer, prompts)
    out: list[Generation | None] = [None] * len(encoded)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(settings.seed)
    batches = prompt_batches(encoded, settings.batch_size)
    for idx in tqdm(batches, desc="generating", disable=not progress_enabled(progress)):
        width = max(len(encoded[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            attention_mask[row, width - len(encoded[i]) :] = 1
        kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample, eos_token_id=eos, pad_token_id=pad)
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p,
                          top_k=settings.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        sequences = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs)
        for row, i in enumerate(idx):
            out[i] = to_generation(sequences[row, width:].tolist(), tokenizer)
    torch.random.set_rng_state(generator_state)
    model.train(was_training)
    return out  # type: ignore[return-value]


def encode_prompts(tokenizer, prompts: Sequence[Sequence[dict]]) -> list[list[int]]:
    """Each conversational prompt's ids under the chat template, ending with the generation prompt."""
    return [list(_ids(tokenizer.apply_chat_template(list(p), tokenize=True, add_generation_prompt=True)))
            for p in prompts]


def prompt_batches(encoded: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of ``encoded`` in batches of ``batch_size``, by prompt length (the order :func:`generate` uses)."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def to_generation(new_ids: Sequence[int], tokenizer) -> Generation:
    """A :class:`Generation` from the ids generated after the prompt: cut after the first EOS, decoded without
    special tokens (``finished`` when EOS was generated)."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    new = list(new_ids)
    finished = eos in new
    if finished:
        new = new[: new.index(eos) + 1]
    text = tokenizer.decode([t for t in new if t != eos and t != pad], skip_special_tokens=True)
    return Generation(text=text.strip(), token_ids=new, finished=finished)


def _ids(out):
    if hasattr(out, "keys"):
        out = out["input_ids"]
    if out and isinstance(out[0], list):
        out = out[0]
    return out


def is_degenerate(generation: Generation, repetition: float, threshold: float = 0.5) -> bool:
    """The paper's "[degenerate]": no EOS within the budget, or repetition above ``threshold``."""
    return (not generation.finished) or repetition > threshold


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class PairwiseJudge:
    """P(a ≻ b) = σ( [gold_a − gold_b + length_bias · (f(len_a) − f(len_b))] / temperature ),  f(l) = min(l / length_scale, length_cap).

    ``length_bias > 0`` makes the judge prefer longer responses at equal quality, as
    GPT-4 judges do in AlpacaEval (Dubois et al. 2024); ``length_cap`` saturates the
    bias (``None``: linear). Lengths are in characters. The lab's judge uses the same
    bias as the world's annotator (GPT-4 both graded UltraFeedback and judges AlpacaEval).
    """

    temperature: float = 0.1
    length_bias: float = 0.1
    length_scale: float = 40.0
    length_cap: float | None = 2.0

    def _f(self, lengths: np.ndarray) -> np.ndarray:
        x = np.asarray(lengths, float) / self.length_scale
        return np.minimum(x, self.length_cap) if self.length_cap is not None else x

    def prob(self, gold_a, gold_b, len_a, len_b) -> np.ndarray:
        """Per-instruction probability that response a beats response b."""
        gold_a, gold_b = np.asarray(gold_a, float), np.asarray(gold_b, float)
        z = (gold_a - gold_b + self.length_bias * (self._f(len_a) - self._f(len_b))) / self.temperature
        return 1.0 / (1.0 + np.exp(-z))


def win_rate(preferences: Sequence[float]) -> float:
    """AlpacaEval's (weighted) win rate in percent: 100 · mean P(model ≻ baseline)."""
    p = np.asarray(preferences, float)
    if p.size == 0:
        raise ValueError("no preferences to average")
    return float(100.0 * p.mean())


def _fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-8, iters: int = 100, offset: np.ndarray | None = None) -> np.ndarray:
    """Logistic regression on soft labels y ∈ [0, 1] by Newton's method (L2 penalty ``l2`` on all weights).

    ``logit p = X w + offset``: a fixed ``offset`` (default 0) enters every logit unfitted.
    """
    w = np.zeros(X.shape[1])
    off = np.zeros(len(y)) if offset is None else np.asarray(offset, float)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w + off)))
        grad = X.T @ (p - y) / len(y) + l2 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X / len(y) + l2 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


#: Preferences are clipped to [PROB_CLIP, 1 − PROB_CLIP] before any logit is taken.
PROB_CLIP = 1e-6


@dataclass(frozen=True)
class LengthControlled:
    """A length-controlled win rate and what it was computed from.

    Attributes:
        lc_win_rate: the length-controlled win rate (%), ``100 · mean(per_prompt)``.
        win_rate: the raw (weighted) win rate (%).
        theta: the fitted intercept θ (the model's quality against the baseline, in logits).
        phi: the length coefficient φ: fitted on this model's outputs, or the calibrated value given.
        length_sd: the scale of Δlen in ``tanh(Δlen / length_sd)`` (sd of this model's Δlen, or given).
        per_prompt: the per-prompt length-controlled win probabilities.
        calibrated: True when φ and the scale were given (calibrated elsewhere), not fitted here.
        psi: the instruction-difficulty coefficient ψ, when difficulties were given.
    """

    lc_win_rate: float
    win_rate: float
    theta: float
    phi: float
    length_sd: float
    per_prompt: tuple[float, ...]
    calibrated: bool
    psi: float | None = None

    def to_dict(self) -> dict:
        """The dict :func:`length_controlled_win_rate` has always returned: ``lc_win_rate``, ``win_rate``, ``theta``,
        ``phi`` (and ``psi``); a calibrated fit adds ``length_sd``."""
        out = {"lc_win_rate": self.lc_win_rate, "win_rate": self.win_rate, "theta": self.theta, "phi": self.phi}
        if self.psi is not None:
            out["psi"] = self.psi
        if self.calibrated:
            out["length_sd"] = self.length_sd
        return out


def _length_inputs(preferences, model_lengths, baseline_lengths) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(preferences, float).ravel()
    delta = np.asarray(model_lengths, float).ravel() - np.asarray(baseline_lengths, float).ravel()
    if not (len(p) == len(delta)):
        raise ValueError(f"{len(p)} preferences but {len(delta)} length pairs")
    if p.size == 0:
        raise ValueError("no preferences to average")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(delta))):
        raise ValueError("preferences and lengths must be finite")
    return np.clip(p, PROB_CLIP, 1 - PROB_CLIP), delta


def length_controlled(
    preferences: Sequence[float],
    model_lengths: Sequence[float],
    baseline_lengths: Sequence[float],
    instruction_difficulty: Sequence[float] | None = None,
    *,
    length_coef: float | None = None,
    length_sd: float | None = None,
) -> LengthControlled:
    """The length-controlled win rate of Dubois et al. (2024), per model or with a calibrated length term.

    AlpacaEval 2's GLM, fitted on the judge's preference p_i for each instruction i::

        logit p_i = θ_m − θ_b + φ_{m,b} · tanh(Δlen_i / sd(Δlen)) + (ψ_m − ψ_b) · γ_i

    has a per-model quality θ, a per-model length coefficient φ, and an instruction-difficulty
    term γ_i (pre-fitted once across many models) weighted by ψ; the fit is regularised
    (θ toward the baseline, the length and difficulty weights shrunk), and the LC win rate is
    ``100 · mean_i σ(θ_m − θ_b + (ψ_m − ψ_b) γ_i)``, the prediction at Δlen = 0.

    **Per-model fit** (``length_coef`` None; AlpacaEval's ``length_controlled_minimal`` plus ψ):
    fits ``logit p_i = θ + φ tanh(Δlen_i / sd(Δlen)) [+ ψ d_i]`` on this one model's outputs, without
    regularisation, and reports ``100 · mean_i σ(θ [+ ψ d_i])``; ``per_prompt`` holds the σ(θ [+ ψ d_i]).
    Its weakness: when the model's length and quality move together (answers that drop items are
    shorter *and* worse), φ absorbs the quality effect and the prediction at Δlen = 0 forgives the
    lost content.

    **Calibrated** (``length_coef`` = φ and ``length_sd`` = s given, measured elsewhere where only
    length varies): φ is not fitted here. Each preference is de-biased for length::

        q_i = σ(logit p_i − φ · tanh(Δlen_i / s)),

    ``per_prompt`` = q_i and the LC win rate is ``100 · mean_i q_i``. θ (and ψ, with difficulties) is
    still fitted with φ tanh(Δlen_i / s) as a fixed offset and reported, but does not enter the win
    rate. This keeps AlpacaEval's idea that the length term is *shared* (AlpacaEval shrinks φ, here
    it is fixed) and its tanh link; it leaves out the regularisation of θ, the pre-fitted γ_i, and
    the fit across models.

    Raises:
        ValueError: lengths and preferences differ in number, no preferences, a non-finite input,
            only one of ``length_coef`` / ``length_sd``, or ``length_sd <= 0``.
    """
    if (length_coef is None) != (length_sd is None):
        raise ValueError("give both length_coef and length_sd (a calibrated length term), or neither")
    if length_sd is not None and not (np.isfinite(length_sd) and length_sd > 0):
        raise ValueError(f"length_sd must be a positive number, got {length_sd}")
    p, delta = _length_inputs(preferences, model_lengths, baseline_lengths)
    calibrated = length_coef is not None
    sd = float(length_sd) if calibrated else float(delta.std())
    x_len = np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)
    columns = [np.ones_like(p)]
    difficulty = None
    if instruction_difficulty is not None:
        difficulty = np.asarray(instruction_difficulty, float).ravel()
        if difficulty.shape != p.shape:
            raise ValueError(f"{len(p)} preferences but {len(difficulty)} instruction difficulties")
    if calibrated:
        offset = float(length_coef) * x_len
        if difficulty is not None:
            columns.append(difficulty)
        w = _fit_logistic(np.stack(columns, 1), p, offset=offset)
        theta, phi = float(w[0]), float(length_coef)
        psi = float(w[1]) if difficulty is not None else None
        per_prompt = _sigmoid(np.log(p) - np.log1p(-p) - offset)
    else:
        columns.append(x_len)
        if difficulty is not None:
            columns.append(difficulty)
        w = _fit_logistic(np.stack(columns, 1), p)
        theta, phi = float(w[0]), float(w[1])
        psi = float(w[2]) if difficulty is not None else None
        per_prompt = _sigmoid(w[0] + (w[2] * difficulty if difficulty is not None else 0.0)) * np.ones_like(p)
    return LengthControlled(
        lc_win_rate=float(100.0 * per_prompt.mean()), win_rate=win_rate(p), theta=theta, phi=phi, length_sd=sd,
        per_prompt=tuple(float(q) for q in per_prompt), calibrated=calibrated, psi=psi,
    )


def length_controlled_win_rate(
    preferences: Sequence[float],
    model_lengths: Sequence[float],
    baseline_lengths: Sequence[float],
    instruction_difficulty: Sequence[float] | None = None,
    *,
    length_coef: float | None = None,
    length_sd: float | None = None,
) -> dict:
    """The length-controlled win rate of Dubois et al. (2024), in percent, as a dict (see :func:`length_controlled`).

    Without ``length_coef``: fits ``logit p_i = θ + φ tanh(Δlen_i / sd(Δlen)) [+ ψ d_i]`` to the judge's
    preferences ``p_i`` and predicts with Δlen = 0. With ``length_coef`` and ``length_sd``: φ and the
    scale are fixed and each preference is de-biased, ``q_i = σ(logit p_i − φ tanh(Δlen_i / length_sd))``.

    Returns:
        dict with ``lc_win_rate``, ``win_rate``, ``theta``, ``phi`` (and ``psi``; a calibrated fit adds
        ``length_sd``). The per-prompt values are on :func:`length_controlled`'s record, kept out of this
        dict so that callers who store its other keys as the fit's coefficients store only coefficients.
    """
    return length_controlled(
        preferences, model_lengths, baseline_lengths, instruction_difficulty, length_coef=length_coef, length_sd=length_sd
    ).to_dict()


def fit_length_coef(preferences: Sequence[float], length_deltas: Sequence[float], length_sd: float) -> float:
    """φ of ``logit p_i = φ · tanh(Δlen_i / length_sd)`` (no intercept), fitted by logistic regression.

    Meant for pairs that differ *only* in length (equal content), where the judge's preference is
    the length effect and nothing else; with no intercept, a pair and its mirror image agree.

    Raises:
        ValueError: no pairs, mismatched lengths, non-finite values, ``length_sd <= 0``, or all Δlen zero.
    """
    if not (np.isfinite(length_sd) and length_sd > 0):
        raise ValueError(f"length_sd must be a positive number, got {length_sd}")
    p, delta = _length_inputs(preferences, length_deltas, np.zeros(len(np.asarray(length_deltas).ravel())))
    if not np.any(delta != 0):
        raise ValueError("every length difference is zero: nothing to fit a length coefficient on")
    return float(_fit_logistic(np.tanh(delta / length_sd)[:, None], p)[0])


# --------------------------------------------------------------------------- ranking accuracy


def ranking_accuracy(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
) -> dict:
    """The paper's Table 2 on validation pairs.

    * ``reward_accuracy``: fraction with r_θ(y_w) > r_θ(y_l), r_θ = β log p_θ/p_ref (Eq. 6; β > 0 drops out).
    * ``policy_accuracy``: fraction with log p_θ(y_w|x) > log p_θ(y_l|x) (summed log-probs).

    Ties count as half.
    """
    def acc(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a > b).double() + 0.5 * (a == b).double()).mean())

    return {
        "reward_accuracy": acc(policy_chosen_logps - ref_chosen_logps, policy_rejected_logps - ref_rejected_logps),
        "policy_accuracy": acc(policy_chosen_logps, policy_rejected_logps),
    }


# --------------------------------------------------------------------------- token-level analysis (Eq. 8)


def token_logp_differences(
    token_ids: Sequence[Sequence[int]],
    policy_token_logps: Sequence[torch.Tensor],
    ref_token_logps: Sequence[torch.Tensor],
) -> dict[int, dict]:
    """Eq. (8) per token, averaged per vocabulary token over its occurrences (Figures 1-2).

    r̂(y^(i)) = log p_θ(y^(i) | x, y^(<i)) − log p_ref(y^(i) | x, y^(<i)); policy and
    reference must share the tokenizer (the paper computes this against the SFT model).

    Returns:
        ``{token_id: {"count": n, "mean_diff": mean r̂}}``.
    """
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, int] = defaultdict(int)
    for ids, pol, ref in zip(token_ids, policy_token_logps, ref_token_logps):
        if len(ids) != len(pol) or len(ids) != len(ref):
            raise ValueError("token ids and per-token log-probs differ in length: score both with the same tokenizer")
        diff = (pol.double() - ref.double()).tolist()
        for t, d in zip(ids, diff):
            sums[int(t)] += d
            counts[int(t)] += 1
    return {t: {"count": counts[t], "mean_diff": sums[t] / counts[t]} for t in counts}


def logratio_summary(
    policy_token_logps: Sequence[torch.Tensor], ref_token_logps: Sequence[torch.Tensor], bin_width: float = 1.0
) -> dict:
    """Eq. (8) at every position, and its sum over each sequence (the sequence-level log-ratio).

    For each response y and position i, r̂_i = log p_θ(y_i | x, y_<i) − log p_ref(y_i | x, y_<i).
    Returns ``{"hist": {"bin_width", "left_edges", "counts"}, "seq": {"mean", "mean_abs",
    "mean_per_token"}, "token": {"mean", "mean_abs", "min"}}``: a histogram of the
    per-position values (bin ``floor(r̂ / bin_width)``), the mean of Σ_i r̂_i over responses
    (a Monte-Carlo-free stand-in for the sequence-level KL term on the data), and per-token
    summaries, so that token-level extremes can be set beside the sequence-level average.
    """
    if bin_width <= 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width}")
    diffs = [(p.double() - r.double()) for p, r in zip(policy_token_logps, ref_token_logps)]
    if not diffs:
        raise ValueError("no responses to summarise")
    flat = torch.cat(diffs)
    bins = torch.floor(flat / bin_width).long()
    lo, hi = int(bins.min()), int(bins.max())
    counts = torch.bincount(bins - lo, minlength=hi - lo + 1)
    seq = torch.stack([d.sum() for d in diffs])
    lengths = torch.tensor([len(d) for d in diffs], dtype=torch.float64)
    return {
        "hist": {"bin_width": bin_width, "left_edges": [b * bin_width for b in range(lo, hi + 1)], "counts": counts.tolist()},
        "seq": {"mean": float(seq.mean()), "mean_abs": float(seq.abs().mean()), "mean_per_token": float((seq / lengths).mean())},
        "token": {"mean": float(flat.mean()), "mean_abs": float(flat.abs().mean()), "min": float(flat.min())},
    }


def eos_statistics(
    chosen_ids: Sequence[Sequence[int]],
    chosen_token_logps: Sequence[torch.Tensor],
    rejected_ids: Sequence[Sequence[int]],
    rejected_token_logps: Sequence[torch.Tensor],
    eos_token_id: int,
) -> dict:
    """Figure 3: the policy's average EOS log-prob ("value") and its chosen-minus-rejected difference.

    For each response, the log-prob of its (last) EOS token; ``value`` averages over
    all responses, ``difference`` averages log p(EOS | y_w) − log p(EOS | y_l) over pairs.
    """
    def eos_logp(ids, logps) -> float:
        ids = list(ids)
        if eos_token_id not in ids:
            return math.nan
        pos = len(ids) - 1 - ids[::-1].index(eos_token_id)
        return float(logps[pos])

    chosen = np.array([eos_logp(i, l) for i, l in zip(chosen_ids, chosen_token_logps)])
    rejected = np.array([eos_logp(i, l) for i, l in zip(rejected_ids, rejected_token_logps)])
    both = np.concatenate([chosen, rejected])
    return {
        "value": float(np.nanmean(both)),
        "difference": float(np.nanmean(chosen - rejected)),
        "n_pairs": int(np.isfinite(chosen - rejected).sum()),
    }
