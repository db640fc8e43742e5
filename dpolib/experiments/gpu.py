"""The gpu backend: real Hugging Face models and data (:mod:`dpolib.hub`), judged by a reward model or AlpacaEval 2.

Supplies :mod:`dpolib.experiments.runner` with:

1. the SFT student (:func:`dpolib.hub.sft.build_student`, cached) and UltraFeedback pairs
   that fit ``max_length`` under the student's tokenizer (:func:`dpolib.hub.data.ultrafeedback_pairs`);
2. references: ``self`` = the student, ``compatible`` / ``incompatible`` = the stronger
   models of :class:`~dpolib.hub.profile.HubProfile`, each scored with its own tokenizer and
   chat template, ``prior`` = the student's p_LM(y), ``uniform`` = reference-free;
3. the DPO recipe of the profile (autocast per :class:`~dpolib.hub.profile.Runtime`,
   gradient checkpointing, optional LoRA with the adapter-free student as "self" reference);
4. the judge: a local reward model, or the real AlpacaEval 2 (``judge="alpaca_eval"``,
   records beside the others as ``<key>-alpaca_eval.json``).
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..hub.profile import GPU_PROFILE, HubProfile, Runtime, runtime_for
from ..provenance import stable_hash
from ..references import ModelReference, PriorReference, UniformReference
from .backend import Backend, World
from .metrics import JudgeResult

__all__ = ["GpuBackend", "JUDGES"]

JUDGES = ("reward_model", "alpaca_eval")

_WORLDS: dict[str, World] = {}


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class GpuBackend(Backend):
    """One student of real models on one device.

    Args:
        profile: the gpu profile (default :data:`dpolib.hub.profile.GPU_PROFILE`; tests pass local models and data).
        judge: ``"reward_model"`` (local) or ``"alpaca_eval"`` (the real AlpacaEval 2; API key needed).
        cache_dir: cache root (default :func:`dpolib.paths.cache_root`).
        runtime: device choices (default :func:`dpolib.hub.profile.runtime_for`).
    """

    name = "gpu"

    def __init__(self, profile: HubProfile | None = None, *, judge: str = "reward_model", cache_dir=None,
                 runtime: Runtime | None = None):
        if judge not in JUDGES:
            raise ValueError(f"judge must be one of {JUDGES}, got {judge!r}")
        self.profile = profile or GPU_PROFILE
        self.judge_name = judge
        self.record_suffix = "" if judge == "reward_model" else f"-{judge}"
        self.cache = Path(cache_dir or paths.cache_root())
        self.runtime = runtime or runtime_for(self.profile)

    @property
    def settings(self) -> HubProfile:
        return self.profile

    @contextmanager
    def session(self):
        if self.runtime.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        yield

    def world(self, config=None) -> World:
        key = stable_hash({"profile": self.profile.to_dict(), "cache": str(self.cache)})
        if key not in _WORLDS:
            from transformers import AutoTokenizer

            from ..hub.data import alpaca_eval_prompts, ultrafeedback_pairs
            from ..hub.sft import build_student

            p = self.profile
            student = build_student(p, self.cache, self.runtime)
            tok = AutoTokenizer.from_pretrained(student)
            kw = dict(seed=p.data_seed, tokenizer=tok, max_length=p.max_length)
            train = ultrafeedback_pairs(p.preference_dataset, p.train_split, p.n_pref_train, **kw)
            val = ultrafeedback_pairs(p.preference_dataset, p.validation_split, p.n_pref_val, **kw)
            prompts = alpaca_eval_prompts(p.eval_dataset, p.n_test_prompts, config=p.eval_config, split=p.eval_split)
            instructions = [r["instruction"] for r in prompts]
            _WORLDS[key] = World(
                train=train, val=val, test_messages=[[{"role": "user", "content": x}] for x in instructions],
                test_texts=instructions, cache=self.cache, student=student,
                extra={"baselines": [r["output"] for r in prompts], "judge": None, "baseline_rewards": None},
            )
        return _WORLDS[key]

    def student_dir(self, config, world: World) -> Path:
        return world.student

    def load(self, path, world: World, scoring: bool = False):
        from ..models import load_causal_lm

        dtype = _dtype(self.profile.score_dtype) if scoring else torch.float32
        return load_causal_lm(path, dtype=dtype, device=self.runtime.device)

    def scorer(self, model, tokenizer, world: World, name: str | None = None, prior: bool = False):
        # One batching for every scorer: an untrained policy then ties its "self" reference exactly.
        cls = PriorReference if prior else ModelReference
        return cls(model, tokenizer, name=name, batch_size=self.runtime.eval_batch_size, max_tokens=8192, progress=False)

    def reference(self, config, world: World):
        p = self.profile
        if config.reference == "uniform":
            return UniformReference()
        if config.reference == "prior":
            return self.scorer(*self.load(world.student, world, scoring=True), world, f"{p.student}-prior", prior=True)
        if config.reference in ("self", "none"):
            return self.scorer(*self.load(world.student, world, scoring=True), world, f"{p.student}-sft")
        if config.reference in ("compatible", "incompatible"):
            path = p.compatible_reference if config.reference == "compatible" else p.incompatible_reference
            return self.scorer(*self.load(path, world, scoring=True), world, Path(str(path)).name)
        raise ValueError(f"the gpu backend does not build reference {config.reference!r} itself")

    def policy_dir(self, config) -> Path:
        return self.cache / "hub" / "policies" / config.key(self.profile)

    def dpo_args(self, config, world: World) -> dict:
        p, rt = self.profile, self.runtime
        return dict(
            learning_rate=p.dpo_learning_rate,
            max_steps=p.dpo_steps,
            warmup_steps=p.dpo_warmup_ratio,  # a float in [0, 1) is a ratio of total steps
            lr_scheduler_type="linear",
            max_length=p.max_length,
            max_grad_norm=p.max_grad_norm,
            use_cpu=rt.device == "cpu",
            logging_steps=1,
            **rt.trainer_args(p.dpo_batch_size, p.gradient_checkpointing),
        )

    def trainer_kwargs(self) -> dict:
        if not self.profile.lora:
            return {}
        try:
            from peft import LoraConfig
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("lora=True needs PEFT: pip install 'dpolib[gpu]' (or pip install peft)") from err
        p = self.profile
        return {"peft_config": LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                                          target_modules="all-linear", task_type="CAUSAL_LM")}

    def after_training(self, policy):
        if self.profile.lora:
            policy = policy.merge_and_unload()  # the adapter folded in: evaluated and saved as a plain model
        if self.profile.gradient_checkpointing:
            disable = getattr(policy, "activation_checkpointing_disable", None) or policy.gradient_checkpointing_disable
            disable()
        policy.config.use_cache = True
        return policy

    def generation_batch_size(self) -> int:
        return self.runtime.eval_batch_size

    def max_new_tokens(self) -> int:
        return self.profile.max_new_tokens

    def judge(self, config, world: World, generations) -> JudgeResult:
        instructions, baselines = world.test_texts, world.extra["baselines"]
        texts = [g.text for g in generations]
        lengths = np.array([len(t) for t in texts], float)
        base_lengths = np.array([len(b) for b in baselines], float)
        if self.judge_name == "alpaca_eval":
            from ..hub.judge import alpaca_eval_judge

            out_dir = self.cache / "hub" / "alpaca_eval" / config.key(self.profile)
            res = alpaca_eval_judge(instructions, texts, baselines, name=config.label().replace("/", "_"),
                                    output_path=out_dir)
            return JudgeResult(scores=[math.nan] * len(texts), gold_score=math.nan, baseline_gold_score=math.nan,
                               win_rate=res["win_rate"], lc_win_rate=res["lc_win_rate"], judge=res["judge"])
        from ..hub.judge import RewardModelJudge, judge_metrics, preferences

        p = self.profile
        if world.extra["judge"] is None:
            world.extra["judge"] = RewardModelJudge.from_pretrained(
                p.judge_model, dtype=_dtype(p.score_dtype), device=self.runtime.device,
                batch_size=max(1, self.runtime.eval_batch_size // 4), max_length=p.judge_max_length)
            world.extra["baseline_rewards"] = world.extra["judge"].rewards(instructions, baselines)
        judge, base = world.extra["judge"], world.extra["baseline_rewards"]
        rewards = judge.rewards(instructions, texts)
        m = judge_metrics(preferences(rewards, base), lengths, base_lengths)
        # "gold" is the judge's reward r(x, y): the gpu world has no gold score, its judge is the yardstick
        return JudgeResult(scores=[float(r) for r in rewards], gold_score=float(rewards.mean()),
                           baseline_gold_score=float(base.mean()), win_rate=m["win_rate"],
                           lc_win_rate=m["lc_win_rate"], lc_fit=m.get("lc_fit", {}), judge=judge.describe())

    def free(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def provenance_extra(self) -> dict:
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        return {"runtime": self.runtime.to_dict(), "peak_gpu_memory_gib": peak, "judge": self.judge_name}
