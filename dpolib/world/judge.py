"""The CPU world's judge: AlpacaEval 2's pairwise judge, a length term calibrated where only length varies,
and the degenerate-response check.

The judge (:class:`dpolib.evaluation.PairwiseJudge`, with the annotator's length bias of
:mod:`dpolib.world.pairs`) gives each test prompt i the probability p_i that the model's response
beats the baseline's. AlpacaEval 2's length control fits ``logit p_i = θ + φ tanh(Δlen_i / sd)`` and
predicts at Δlen = 0; fitted on one model's own outputs, φ also absorbs any quality change that
moves with length, so a model whose answers drop items (shorter *and* worse) has its lost content
forgiven as "length".

Here φ is measured where length is the *only* difference (:func:`calibrate_length_coef`): the
baseline's response against the same response with gold-neutral :data:`~dpolib.world.task.DETAILS`
sentences appended or removed, judged by the same judge. That φ and its Δlen scale are then fixed
for every model (the analogue of AlpacaEval's length term being regularised and shared), and each
preference is de-biased, ``q_i = σ(logit p_i − φ tanh(Δlen_i / sd))`` (:func:`judge_outputs`).

A model is flagged degenerate when more than :data:`DEGENERATE_RATE_THRESHOLD` of its test responses
are degenerate by :func:`~dpolib.world.task.degenerate_reasons` (they do not end, loop, or leave the
task's lexicon); the threshold is stated before any model is judged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .. import evaluation as E
from .pairs import LENGTH_BIAS, LENGTH_SCALE
from .task import DETAILS, TaskPrompt, degenerate_reasons, gold_score

__all__ = [
    "DEGENERATE_RATE_THRESHOLD",
    "default_judge",
    "LengthCalibration",
    "length_perturbations",
    "calibrate_length_coef",
    "JudgeOutcome",
    "judge_outputs",
]

#: A model is degenerate when more than this share of its test responses is degenerate (stated in advance).
DEGENERATE_RATE_THRESHOLD = 0.10

#: The most DETAILS sentences a calibration perturbation appends.
MAX_DETAILS = 2


def default_judge() -> E.PairwiseJudge:
    """The world's judge: the annotator's length bias (``LENGTH_BIAS`` per ``LENGTH_SCALE`` characters, capped at 2)."""
    return E.PairwiseJudge(length_bias=LENGTH_BIAS, length_scale=LENGTH_SCALE, length_cap=2.0)


# --------------------------------------------------------------------------- calibrating the length term


@dataclass(frozen=True)
class LengthCalibration:
    """The judge's length coefficient, measured on pairs that differ only in length.

    Attributes:
        coef: φ of ``logit p = φ tanh(Δlen / sd)`` fitted on the calibration pairs.
        sd: the Δlen scale, the standard deviation of the calibration pairs' Δlen (characters).
        n_pairs: the number of judged pairs (each perturbation in both orders).
        n_prompts: the number of calibration prompts.
        n_skipped: perturbations left out because they changed the gold score (0 by construction).
        mean_abs_delta: the mean absolute Δlen of the pairs (characters).
    """

    coef: float
    sd: float
    n_pairs: int
    n_prompts: int
    n_skipped: int
    mean_abs_delta: float


def _strip_details(text: str) -> str:
    for sentence in DETAILS:
        text = text.replace(sentence, " ")
    return " ".join(text.split())


def length_perturbations(prompt: TaskPrompt, text: str) -> tuple[str, ...]:
    """The gold-neutral length variants of ``text``: its DETAILS sentences removed, then 0 to 2 appended.

    The appended sentences are drawn without replacement from :data:`~dpolib.world.task.DETAILS`,
    deterministically per prompt; variants equal to ``text`` are left out.
    """
    stripped = _strip_details(text)
    chosen = random.Random(f"length-calibration/{prompt.text}").sample(DETAILS, MAX_DETAILS)
    variants = [" ".join([stripped, *chosen[:k]]) for k in range(MAX_DETAILS + 1)]
    return tuple(v for v in dict.fromkeys(variants) if v != text)


def calibrate_length_coef(
    prompts: Sequence[TaskPrompt], baseline_texts: Sequence[str], judge: E.PairwiseJudge | None = None
) -> LengthCalibration:
    """Fit φ where length is the only difference: each baseline response against its length variants.

    For prompt i with baseline response b_i, each variant v of :func:`length_perturbations` (same
    items, same fillers, DETAILS sentences added or removed) is checked to have
    ``gold(v) = gold(b_i)`` and judged in both orders, ``p = judge(v ≻ b_i)`` with Δlen = len(v) − len(b_i)
    and ``judge(b_i ≻ v)`` with −Δlen. Then ``sd`` = sd of all Δlen, and φ solves the logistic fit of
    ``logit p = φ tanh(Δlen / sd)`` (no intercept: mirrored pairs are symmetric). Deterministic.

    Raises:
        ValueError: prompts and baseline texts differ in number, or no variant keeps the gold score.
    """
    judge = judge or default_judge()
    if len(prompts) != len(baseline_texts):
        raise ValueError(f"{len(prompts)} prompts but {len(baseline_texts)} baseline texts")
    gold_a, gold_b, len_a, len_b = [], [], [], []
    skipped = 0
    for prompt, text in zip(prompts, baseline_texts):
        gold = gold_score(prompt, text)
        for variant in length_perturbations(prompt, text):
            if gold_score(prompt, variant) != gold:
                skipped += 1
                continue
            gold_a += [gold, gold]
            gold_b += [gold, gold]
            len_a += [len(variant), len(text)]
            len_b += [len(text), len(variant)]
    if not len_a:
        raise ValueError("no gold-neutral length variant to calibrate on")
    delta = np.asarray(len_a, float) - np.asarray(len_b, float)
    sd = float(delta.std())
    prefs = judge.prob(gold_a, gold_b, len_a, len_b)
    coef = E.fit_length_coef(prefs, delta, sd)
    return LengthCalibration(
        coef=coef, sd=sd, n_pairs=len(delta), n_prompts=len(prompts), n_skipped=skipped,
        mean_abs_delta=float(np.abs(delta).mean()),
    )


# --------------------------------------------------------------------------- judging a model's outputs


@dataclass(frozen=True)
class JudgeOutcome:
    """The judge's verdict on one model's test outputs against the baseline.

    Attributes:
        gold: per-prompt gold score of the model's responses (unterminated ones scored as such).
        baseline_gold: per-prompt gold score of the baseline's responses.
        win_per_prompt: per-prompt raw judge probability P(model ≻ baseline).
        lc_per_prompt: per-prompt calibrated length-controlled win probability q_i.
        reasons: per-prompt degenerate reasons (empty when the response is fine).
        degenerate: per-prompt degenerate flag (any reason).
        gold_score: mean of ``gold``.
        baseline_gold_score: mean of ``baseline_gold``.
        win_rate: the raw win rate, 100 · mean of ``win_per_prompt`` (%).
        lc_win_rate: the calibrated length-controlled win rate, 100 · mean of ``lc_per_prompt`` (%).
        per_model_lc_win_rate: AlpacaEval's per-model-fitted LC on the same preferences (%), for contrast.
        per_model_phi: the φ that per-model fit finds.
        degenerate_rate: the share of degenerate responses.
        length_coef: the calibrated φ used.
        length_sd: the calibrated Δlen scale used (characters).
        judge: the judge's settings.
    """

    gold: tuple[float, ...]
    baseline_gold: tuple[float, ...]
    win_per_prompt: tuple[float, ...]
    lc_per_prompt: tuple[float, ...]
    reasons: tuple[tuple[str, ...], ...]
    degenerate: tuple[bool, ...]
    gold_score: float
    baseline_gold_score: float
    win_rate: float
    lc_win_rate: float
    per_model_lc_win_rate: float
    per_model_phi: float
    degenerate_rate: float
    length_coef: float
    length_sd: float
    judge: E.PairwiseJudge

    @property
    def degenerate_model(self) -> bool:
        """True when more than :data:`DEGENERATE_RATE_THRESHOLD` of the responses are degenerate."""
        return self.degenerate_rate > DEGENERATE_RATE_THRESHOLD

    @property
    def n_prompts(self) -> int:
        return len(self.gold)


def judge_outputs(
    prompts: Sequence[TaskPrompt],
    texts: Sequence[str],
    finished: Sequence[bool],
    baseline_texts: Sequence[str],
    judge: E.PairwiseJudge | None = None,
    calibration: LengthCalibration | None = None,
) -> JudgeOutcome:
    """Judge a model's test responses against the baseline's, with the calibrated length control.

    ``gold_i = gold_score(prompt_i, text_i, terminated=finished_i)``, the baseline's gold as written;
    ``p_i = judge.prob(gold_i, baseline_gold_i, len(text_i), len(baseline_i))``; with the calibration's φ
    and sd, ``q_i = σ(logit p_i − φ tanh(Δlen_i / sd))`` (:func:`dpolib.evaluation.length_controlled`).
    Without ``calibration``, :func:`calibrate_length_coef` runs on these prompts and baseline texts,
    which involves no model output, so every model judged on them gets the same φ.

    Raises:
        ValueError: prompts, texts, finished flags and baseline texts differ in number, or there are none.
    """
    counts = {len(prompts), len(texts), len(finished), len(baseline_texts)}
    if len(counts) != 1:
        raise ValueError(
            f"{len(prompts)} prompts, {len(texts)} texts, {len(finished)} finished flags and "
            f"{len(baseline_texts)} baseline texts: give one of each per prompt"
        )
    if not prompts:
        raise ValueError("no prompts to judge")
    judge = judge or default_judge()
    calibration = calibration or calibrate_length_coef(prompts, baseline_texts, judge)
    gold = np.array([gold_score(p, t, terminated=bool(f)) for p, t, f in zip(prompts, texts, finished)])
    base_gold = np.array([gold_score(p, b) for p, b in zip(prompts, baseline_texts)])
    lengths = np.array([len(t) for t in texts], float)
    base_lengths = np.array([len(b) for b in baseline_texts], float)
    prefs = judge.prob(gold, base_gold, lengths, base_lengths)
    calibrated = E.length_controlled(prefs, lengths, base_lengths, length_coef=calibration.coef, length_sd=calibration.sd)
    per_model = E.length_controlled(prefs, lengths, base_lengths)
    reasons = tuple(degenerate_reasons(p, t, bool(f)) for p, t, f in zip(prompts, texts, finished))
    degenerate = tuple(bool(r) for r in reasons)
    return JudgeOutcome(
        gold=tuple(float(g) for g in gold),
        baseline_gold=tuple(float(g) for g in base_gold),
        win_per_prompt=tuple(float(p) for p in prefs),
        lc_per_prompt=calibrated.per_prompt,
        reasons=reasons,
        degenerate=degenerate,
        gold_score=float(gold.mean()),
        baseline_gold_score=float(base_gold.mean()),
        win_rate=E.win_rate(prefs),
        lc_win_rate=calibrated.lc_win_rate,
        per_model_lc_win_rate=per_model.lc_win_rate,
        per_model_phi=per_model.phi,
        degenerate_rate=float(np.mean(degenerate)),
        length_coef=calibration.coef,
        length_sd=calibration.sd,
        judge=judge,
    )
