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
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .. import paths
from ..provenance import stable_hash
from ..references import ModelReference, PriorReference, UniformReference
from ..world import pairs, pretrain, writers
from ..world.families import FAMILIES, reference_model
from ..world.profiles import Profile, get_profile
from .backend import Backend, World
from .config import RunConfig
from .metrics import JudgeResult
from .schedule import Job, run_jobs

__all__ = ["CpuBackend", "build_world", "world_jobs", "cpu_threads"]

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

    def world_profile(self, config=None) -> Profile:
        """The profile of the world ``config`` runs in (its seed is the world seed; ``None``: world 0)."""
        return self.profile.for_world(0 if config is None else config.seed)

    def world(self, config=None) -> World:
        p = self.world_profile(config)
        on_policy = config.student if config is not None and config.pairs == "on-policy" else None
        key = stable_hash([p.to_dict(), on_policy])
        if key not in _WORLDS:
            ds = pairs.build_preference_data(p, on_policy=on_policy)
            prompts = pairs.test_prompts(p)
            _WORLDS[key] = World(
                train=ds["train"], val=ds["validation"], test_messages=[p_.messages() for p_ in prompts],
                test_texts=[p_.text for p_ in prompts], cache=paths.world_cache(),
                extra={"prompts": prompts, "baseline": list(writers.baseline_responses(prompts)), "profile": p},
            )
        return _WORLDS[key]

    def student_dir(self, config, world: World) -> Path:
        return pretrain.model_dir(config.student, "small", "sft", world.extra["profile"])

    def load(self, path, world: World, scoring: bool = False):
        return _load(path)

    def scorer(self, model, tokenizer, world: World, name: str | None = None, prior: bool = False):
        if prior:  # p_LM(y) with a BOS-only context; no pair of this world is longer than max_length
            return PriorReference(model, tokenizer, name=name, progress=False)
        return ModelReference(model, tokenizer, name=name, max_length=self.profile.max_length, progress=False)

    def reference(self, config, world: World):
        p = world.extra["profile"]
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

    def base_dpo_args(self, config, world: World) -> dict:
        """The paper's recipe at this scale, at the profile's base rate (the SFT/40 ratio)."""
        p = self.profile
        return dict(
            learning_rate=p.dpo_learning_rate,
            per_device_train_batch_size=p.dpo_batch_size,
            max_steps=p.dpo_steps,
            warmup_steps=p.dpo_warmup_ratio,  # a float in [0, 1) is a ratio of total steps
            lr_scheduler_type="linear",
            max_length=p.max_length,
        )

    def dpo_args(self, config, world: World) -> dict:
        """The recipe at the student's rate chosen by the rule (:mod:`dpolib.experiments.lr_rule`)."""
        from .lr_rule import chosen_learning_rate

        return {**self.base_dpo_args(config, world),
                "learning_rate": chosen_learning_rate(self, config.student).learning_rate}

    def generation_batch_size(self) -> int:
        return self.profile.eval_batch_size

    def max_new_tokens(self) -> int:
        return self.profile.max_new_tokens

    def judge(self, config, world: World, generations) -> JudgeResult:
        """The world's judge (:func:`dpolib.world.judge.judge_outputs`): gold, the pairwise judge's win rate against
        the fixed baseline, the calibrated length-controlled win rate and the world's degenerate check."""
        from ..world import judge as J

        prompts, baseline = world.extra["prompts"], world.extra["baseline"]
        if "length_calibration" not in world.extra:  # no model output involved: one φ for every model of a world
            world.extra["length_calibration"] = J.calibrate_length_coef(prompts, baseline, J.default_judge())
        out = J.judge_outputs(prompts, [g.text for g in generations], [g.finished for g in generations], baseline,
                              calibration=world.extra["length_calibration"])
        reasons: dict = {}
        for rs in out.reasons:
            for r in rs:
                reasons[r] = reasons.get(r, 0) + 1
        return JudgeResult(
            scores=list(out.gold), gold_score=out.gold_score, baseline_gold_score=out.baseline_gold_score,
            win_rate=out.win_rate, lc_win_rate=out.lc_win_rate,
            lc_fit={"phi": out.length_coef, "length_sd": out.length_sd, "calibrated": True,
                    "per_model_lc_win_rate": out.per_model_lc_win_rate, "per_model_phi": out.per_model_phi},
            judge=asdict(out.judge), lc_scores=list(out.lc_per_prompt), degenerate=list(out.degenerate),
            degenerate_reasons=reasons, degenerate_threshold=J.DEGENERATE_RATE_THRESHOLD,
        )


def _build_models(profile: Profile, seed: int, family: str) -> None:
    """One family's models in world ``seed``: its SFT student and large model, and its siblings."""
    p = profile.for_world(seed)
    with cpu_threads(1):
        for size in pretrain.SIZES:
            pretrain.model_dir(family, size, "sft", p)
        for stage in pretrain.sibling_stages(p):
            pretrain.model_dir(family, "small", stage, p)


def _build_data(profile: Profile, seed: int, on_policy: bool) -> None:
    """World ``seed``'s preference data (sampling every pool model), and each student's on-policy control data."""
    backend = CpuBackend(profile)
    with cpu_threads(1):
        config = RunConfig(profile.name, next(iter(FAMILIES)), seed=seed)
        backend.world(config)
        if on_policy:
            for family in FAMILIES:
                backend.world(replace(config, student=family, pairs="on-policy"))


def _choose_rate(profile: Profile, student: str) -> None:
    from .lr_rule import chosen_learning_rate

    chosen_learning_rate(CpuBackend(profile), student)


def world_jobs(profile: Profile, seeds, on_policy: bool = True, costs: dict | None = None) -> list[Job]:
    """Each world seed's models (one job per family) and data, and each student's learning rate (world 0):
    ``models/<seed>/<family>``, ``data/<seed>`` and ``rate/<family>`` (:mod:`dpolib.experiments.schedule`)."""
    costs = {"models": 280.0, "data": 60.0, "rate": 150.0, **(costs or {})}
    seeds = list(seeds)
    jobs = []
    for seed in seeds:
        for family in FAMILIES:
            jobs.append(Job(f"models/{seed}/{family}", _build_models, (profile, seed, family), cost=costs["models"]))
        jobs.append(Job(f"data/{seed}", _build_data, (profile, seed, on_policy),
                        deps=frozenset(f"models/{seed}/{f}" for f in FAMILIES), cost=costs["data"]))
    for family in FAMILIES:
        jobs.append(Job(f"rate/{family}", _choose_rate, (profile, family), deps=frozenset({f"data/{seeds[0]}"}),
                        cost=costs["rate"]))
    return jobs


def build_world(profile: str | Profile, seeds=(0,), on_policy: bool = False, workers: int = 1) -> World:
    """Build (or load from the cache) everything a profile's runs share in each world seed: the models (SFT
    students, large models, siblings), the data (the pool's samples; with ``on_policy``, each student's control
    data) and the learning-rate choice (world 0), as jobs with dependencies (:func:`world_jobs`). ``workers > 1``
    runs each job as soon as what it needs is built, in that many processes (one torch thread each: the same
    weights as a serial build).
    Returns world 0's pool world."""
    backend = CpuBackend(profile)
    run_jobs(world_jobs(backend.profile, seeds, on_policy), workers)
    with cpu_threads(1):
        return backend.world()
