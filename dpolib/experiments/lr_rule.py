"""The DPO learning-rate rule: one rate per student, fixed from training and validation pairs before any test prompt.

The paper trains DPO at 5e-7 after SFT at 2e-5 (§3, Zephyr's recipe), i.e. 1/40 of the SFT
rate. A tiny model trained from scratch need not share that optimum, and tuning the rate on
test scores would tune toward an answer. World 4's rule, stated before its grids ran:

1. candidates: ``profile.dpo_lr_multipliers`` (¼, 1, 4) times the SFT/40 rate;
2. for each, train DPO with the SFT reference at β = 0.1 on the training pairs of world 0
   (the same recipe and engine as the grids, :func:`dpolib.experiments.sweep.train_sweep`; the
   candidates train as the members of one sweep, each at its own rate);
3. score the validation pairs with the trained policy and take the validation DPO loss
   (Eq. 5), ``mean softplus(-β[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])``;
4. the lowest loss wins (ties: the smaller rate). Every world seed uses world 0's choice.

No test prompt is generated or scored. The choice is cached in the world cache (it is a
function of the world, like its models) and written with its provenance to
``results/lab/<profile>/lr_choice.json`` by ``python -m dpolib.experiments world``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import paths
from ..provenance import atomic_write_json, file_lock, provenance, read_json, stable_hash
from ..references import precompute

__all__ = ["RULE_BETA", "LrCandidate", "LrChoice", "choose_learning_rate", "chosen_learning_rate", "write_lr_choices",
           "lr_choice_path", "read_lr_choices"]

#: The β the rule trains and scores at (the paper's default).
RULE_BETA = 0.1
#: The rule in one sentence (written into the choice record).
RULE = ("lowest validation DPO loss at beta = 0.1 after training on world 0's training pairs, among "
        "dpo_lr_multipliers x the SFT/40 rate; ties go to the smaller rate; every world seed uses the choice")


@dataclass(frozen=True)
class LrCandidate:
    """One candidate rate and what the rule measured for it (validation pairs only).

    Attributes:
        multiplier: the multiple of the SFT/40 rate.
        learning_rate: the rate itself.
        val_dpo_loss: the mean validation DPO loss at :data:`RULE_BETA` after training.
        val_reward_accuracy: the share of validation pairs whose implicit reward ranks chosen first.
        train_seconds: the training time (the candidates' sweep's, shared equally among them).
    """

    multiplier: float
    learning_rate: float
    val_dpo_loss: float
    val_reward_accuracy: float
    train_seconds: float


@dataclass(frozen=True)
class LrChoice:
    """The rule's outcome for one student: every candidate and the chosen rate."""

    student: str
    profile: str
    world_seed: int
    beta: float
    candidates: tuple[LrCandidate, ...]
    learning_rate: float
    multiplier: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LrChoice":
        return cls(**{**data, "candidates": tuple(LrCandidate(**c) for c in data["candidates"])})


def _cache_path(profile, student: str) -> Path:
    from ..world.pairs import SAMPLER, SAMPLING
    from ..world.pretrain import CODE_VERSION
    from .config import PIPELINE_VERSION

    # everything the choice depends on: the world's models (CODE_VERSION), its data (the pool's sampler) and
    # the engine (PIPELINE_VERSION)
    key = stable_hash({"profile": profile.for_world(0).to_dict(), "student": student, "beta": RULE_BETA,
                       "world": CODE_VERSION, "pipeline": PIPELINE_VERSION, "sampler": [SAMPLER, SAMPLING]})
    return paths.world_cache() / f"lr-choice-{student}-{key}.json"


def choose_learning_rate(backend, student: str) -> LrChoice:
    """Apply the rule for ``student`` in world 0 of ``backend``'s profile (trains one run per candidate)."""
    import time

    import torch

    from .config import RunConfig
    from .metrics import score_pairs
    from .sweep import train_sweep

    profile = backend.settings
    config = RunConfig(profile.name, student, "dpo", "self", RULE_BETA, seed=0)
    world = backend.world(config)
    reference = backend.reference(config, world)
    train = precompute(world.train, reference, cache_dir=world.cache)
    val = precompute(world.val, reference, cache_dir=world.cache)
    del reference
    base = backend.base_dpo_args(config, world)
    rates = [profile.dpo_learning_rate * m for m in profile.dpo_lr_multipliers]
    policy, tokenizer = backend.load(backend.student_dir(config, world), world)
    t = time.perf_counter()
    with backend.session():  # the candidates as one sweep, each member at its own rate
        sweep = train_sweep(policy, tokenizer, train, [RULE_BETA] * len(rates), base, seed=0,
                            learning_rates=rates)
    seconds = (time.perf_counter() - t) / len(rates)
    candidates = []
    for m, lr, (model, _) in zip(profile.dpo_lr_multipliers, rates, sweep.members):
        model.eval()
        with torch.no_grad():
            chosen, rejected = score_pairs(backend.scorer(model, tokenizer, world), val["prompt"], val["chosen"],
                                           val["rejected"])
        margin = RULE_BETA * ((np.asarray(chosen.sequence_logps) - np.asarray(val["ref_chosen_logps"]))
                              - (np.asarray(rejected.sequence_logps) - np.asarray(val["ref_rejected_logps"])))
        loss = float(np.mean(np.logaddexp(0.0, -margin)))
        candidates.append(LrCandidate(m, lr, loss, float(np.mean(margin > 0)), seconds))
    best = min(candidates, key=lambda c: (c.val_dpo_loss if math.isfinite(c.val_dpo_loss) else math.inf,
                                          c.learning_rate))
    return LrChoice(student, profile.name, 0, RULE_BETA, tuple(candidates), best.learning_rate, best.multiplier)


def chosen_learning_rate(backend, student: str) -> LrChoice:
    """The rule's choice for ``student``: read from the world cache, or computed once (under a lock) and cached."""
    path = _cache_path(backend.settings, student)
    if path.exists():
        return LrChoice.from_dict(read_json(path))
    with file_lock(path):
        if path.exists():
            return LrChoice.from_dict(read_json(path))
        choice = choose_learning_rate(backend, student)
        atomic_write_json(path, choice.to_dict())
        return choice


def lr_choice_path(profile: str, root: Path | None = None) -> Path:
    """``<results root>/<profile>/lr_choice.json``."""
    return Path(root or paths.results_root()) / profile / "lr_choice.json"


def write_lr_choices(backend, students, root: Path | None = None) -> Path:
    """Write every student's choice with its provenance where the book reads it (:func:`lr_choice_path`)."""
    choices = {s: chosen_learning_rate(backend, s).to_dict() for s in students}
    path = lr_choice_path(backend.settings.name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"rule": RULE, "choices": choices,
                             "provenance": provenance(seed=0)})
    return path


def read_lr_choices(profile: str, root: Path | None = None) -> dict[str, LrChoice] | None:
    """The committed choices of a profile (``None`` when absent)."""
    path = lr_choice_path(profile, root)
    if not path.exists():
        return None
    return {s: LrChoice.from_dict(c) for s, c in read_json(path)["choices"].items()}
