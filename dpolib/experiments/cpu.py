"""The CPU world's backend: tiny models trained from scratch, gold-scored outputs, one torch thread a run.

Supplies :mod:`dpolib.experiments.runner` with the world of :mod:`dpolib.world` (SFT
students and large models, UltraFeedback-style pairs, test prompts and the judge's
fixed baseline outputs), its references (``self`` = the student, ``compatible`` = the
larger model of the student's family, ``incompatible`` = the larger model of the other
family and tokenizer, ``prior`` = the student's p_LM(y), ``uniform``), the paper's DPO
recipe at this scale, and the pairwise judge on gold scores with a length bias.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import evaluation as E
from .. import paths
from ..provenance import stable_hash
from ..references import ModelReference, PriorReference, UniformReference
from ..world import pairs, pretrain, writers
from ..world.families import FAMILIES, reference_model
from ..world.profiles import Profile, get_profile
from ..world.task import gold_score
from .backend import Backend, World
from .metrics import JudgeResult

__all__ = ["CpuBackend", "build_world", "cpu_threads"]

_WORLDS: dict[str, World] = {}


@contextmanager
def cpu_threads(n: int = 1):
    """Run tiny models on ``n`` torch threads: on 2 cores, 2 threads made a DPO step 8x slower than 1."""
    if torch.cuda.is_available():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


class CpuBackend(Backend):
    """The controlled CPU world at one of its profiles (``smoke``, ``cpu``, ``cpu-low-lr``)."""

    def __init__(self, profile: str | Profile):
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.name = self.profile.name

    @property
    def settings(self) -> Profile:
        return self.profile

    @contextmanager
    def session(self):
        with cpu_threads(1):
            yield

    def world(self) -> World:
        key = stable_hash(self.profile.to_dict())
        if key not in _WORLDS:
            ds = pairs.build_preference_data(self.profile)
            prompts = pairs.test_prompts(self.profile)
            _WORLDS[key] = World(
                train=ds["train"], val=ds["validation"], test_messages=[p.messages() for p in prompts],
                test_texts=[p.text for p in prompts], cache=paths.world_cache(),
                extra={"prompts": prompts, "baseline": list(writers.baseline_responses(prompts))},
            )
        return _WORLDS[key]

    def student_dir(self, config, world: World) -> Path:
        return pretrain.model_dir(config.student, "small", "sft", self.profile)

    def load(self, path, world: World, scoring: bool = False):
        return _load(path)

    def scorer(self, model, tokenizer, world: World, name: str | None = None, prior: bool = False):
        if prior:  # p_LM(y) with a BOS-only context; no pair of this world is longer than max_length
            return PriorReference(model, tokenizer, name=name, progress=False)
        return ModelReference(model, tokenizer, name=name, max_length=self.profile.max_length, progress=False)

    def reference(self, config, world: World):
        p = self.profile
        if config.reference == "uniform":
            return UniformReference()
        if config.reference == "prior":
            return self.scorer(*_load(self.student_dir(config, world)), world, f"{config.student}-prior", prior=True)
        if config.reference not in ("self", "none", "compatible", "incompatible"):
            raise ValueError(f"the cpu backend does not build reference {config.reference!r} itself")
        # the SFT row ("none") is scored against itself: r_θ = 0, as in Table 2
        family, size = reference_model(config.student, "self" if config.reference == "none" else config.reference)
        return self.scorer(*_load(pretrain.model_dir(family, size, "sft", p)), world, f"{family}-{size}-sft")

    def policy_dir(self, config) -> Path:
        return paths.policy_cache(config.profile) / config.key(self.profile)

    def dpo_args(self, config, world: World) -> dict:
        p = self.profile
        return dict(
            learning_rate=p.dpo_learning_rate,
            per_device_train_batch_size=p.dpo_batch_size,
            max_steps=p.dpo_steps,
            warmup_steps=p.dpo_warmup_ratio,  # a float in [0, 1) is a ratio of total steps
            lr_scheduler_type="linear",
            max_length=p.max_length,
        )

    def generation_batch_size(self) -> int:
        return self.profile.eval_batch_size

    def max_new_tokens(self) -> int:
        return self.profile.max_new_tokens

    def judge(self, config, world: World, generations) -> JudgeResult:
        prompts, baseline = world.extra["prompts"], world.extra["baseline"]
        gold = np.array([gold_score(p, g.text, terminated=g.finished) for p, g in zip(prompts, generations)])
        base_gold = np.array([gold_score(p, b) for p, b in zip(prompts, baseline)])
        lengths = np.array([len(g.text) for g in generations], float)
        base_lengths = np.array([len(b) for b in baseline], float)
        judge = E.PairwiseJudge(length_bias=pairs.LENGTH_BIAS, length_scale=pairs.LENGTH_SCALE, length_cap=2.0)
        lc = E.length_controlled_win_rate(judge.prob(gold, base_gold, lengths, base_lengths), lengths, base_lengths)
        return JudgeResult(
            scores=gold.tolist(), gold_score=float(gold.mean()), baseline_gold_score=float(base_gold.mean()),
            win_rate=lc["win_rate"], lc_win_rate=lc["lc_win_rate"],
            lc_fit={k: v for k, v in lc.items() if k not in ("win_rate", "lc_win_rate")}, judge=asdict(judge),
        )


def build_world(profile: str | Profile) -> World:
    """Build (or load from the cache) everything a profile's runs share: the four SFT models and the data."""
    backend = CpuBackend(profile)
    with cpu_threads(1):  # one thread: fastest here, and the same weights whoever builds them
        for family in FAMILIES:
            for size in pretrain.SIZES:
                pretrain.model_dir(family, size, "sft", backend.profile)
        return backend.world()
