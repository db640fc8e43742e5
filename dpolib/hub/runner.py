"""One gpu-profile run: a :class:`dpolib.lab.runner.RunConfig` in, a record in the lab's schema out.

The pipeline is the lab's (:mod:`dpolib.lab.runner`), with real models and data:

1. the SFT student (:func:`.sft.build_student`, cached) and UltraFeedback pairs that fit
   ``max_length`` under the student's tokenizer (:func:`.data.ultrafeedback_pairs`);
2. the reference's log-probs precomputed with :func:`dpolib.references.precompute`
   (``self`` = the student, ``compatible`` / ``incompatible`` = the stronger models of
   :class:`.profile.HubProfile`, scored with their own tokenizers and chat templates,
   ``prior`` = the student's p_LM(y), ``uniform`` = reference-free, ``rq1-best`` = the
   student's best RQ1 policy); the reference model is freed before training;
3. DPO through :class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer` (autocast per
   :class:`.profile.Runtime`, gradient checkpointing, optional LoRA with the adapter-free
   student as the "self" reference);
4. evaluation on the AlpacaEval prompts (:mod:`dpolib.lab.evaluate` for generation, win
   rate, LC win rate, ranking accuracy, Eq. (8) token statistics and EOS statistics), judged
   by the local reward model or by AlpacaEval 2 (:mod:`.judge`).

Records go to ``results/lab/gpu/<key>.json`` with ``key = RunConfig.key(profile)``: the
same schema as the cpu world's, so the chapters read both alike.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..lab import evaluate as E
from ..lab.runner import (
    DEGENERATE_RATE, N_SAMPLES, RunConfig, _score_pairs, best_record, config_of, make_record, results_root, save_policy,
)  # fmt: skip
from ..provenance import provenance, read_json, stable_hash, write_json
from ..references import ModelReference, PriorReference, UniformReference, default_cache_dir, precompute
from .profile import GPU_PROFILE, HubProfile, Runtime, runtime_for

__all__ = ["grid", "GRIDS", "run_gpu", "run_gpu_grid", "record_path", "HubWorld", "JUDGES"]

GRIDS = ("rq1", "rq2", "rq3", "appendix-e")
JUDGES = ("reward_model", "alpaca_eval")
#: Bump when the gpu pipeline changes in a way that changes results.
PIPELINE_VERSION = "1"


# --------------------------------------------------------------------------- grids


def grid(name: str, seeds: Iterable[int] = (0,), profile: HubProfile | None = None) -> list[RunConfig]:
    """The gpu runs of a named grid: the cpu grids' arms for the profile's one student."""
    p = profile or GPU_PROFILE
    s = p.student
    configs: list[RunConfig] = []
    for seed in seeds:
        sft = [RunConfig("gpu", s, "sft", "none", None, seed=seed)]
        rq1 = [RunConfig("gpu", s, "dpo", "self", b, seed=seed) for b in p.rq1_betas]
        if name == "rq1":
            configs += sft + rq1
        elif name == "rq2":
            configs += sft + rq1
            configs += [RunConfig("gpu", s, "probability", "uniform", b, seed=seed) for b in p.rq2_probability_betas]
            configs += [RunConfig("gpu", s, "likelihood", "prior", b, seed=seed) for b in p.rq2_likelihood_betas]
        elif name == "rq3":
            for ref in ("self", "compatible", "incompatible"):
                configs += [RunConfig("gpu", s, "dpo", ref, b, seed=seed) for b in p.rq3_betas]
        elif name == "appendix-e":
            configs += [RunConfig("gpu", s, "dpo", "rq1-best", b, seed=seed) for b in p.appendix_e_betas]
        else:
            raise ValueError(f"unknown grid {name!r}; choose one of {GRIDS}")
    return configs


def record_path(config: RunConfig, profile: HubProfile | None = None, root: Path | None = None,
                judge: str = "reward_model") -> Path:
    """``<root>/gpu/<key>.json`` with the key hashed over ``profile`` (default: the gpu profile).

    Records judged by the real AlpacaEval 2 go beside them as ``<key>-alpaca_eval.json``.
    """
    suffix = "" if judge == "reward_model" else f"-{judge}"
    return (root or results_root()) / "gpu" / f"{config.key(profile or GPU_PROFILE)}{suffix}.json"


# --------------------------------------------------------------------------- the world


@dataclass
class HubWorld:
    """What a profile's runs share in one process: student, data, prompts, baseline rewards, judge."""

    profile: HubProfile
    runtime: Runtime
    cache: Path
    student: Path
    train: object
    val: object
    prompts: list[dict]
    judge: object = None
    baseline_rewards: np.ndarray | None = None
    student_scores: dict = field(default_factory=dict)


_WORLDS: dict[str, HubWorld] = {}


def _world(profile: HubProfile, runtime: Runtime, cache: Path) -> HubWorld:
    key = stable_hash({"profile": profile.to_dict(), "cache": str(cache)})
    if key not in _WORLDS:
        from transformers import AutoTokenizer

        from .data import alpaca_eval_prompts, ultrafeedback_pairs
        from .sft import build_student

        student = build_student(profile, cache, runtime)
        tok = AutoTokenizer.from_pretrained(student)
        pairs = dict(seed=profile.data_seed, tokenizer=tok, max_length=profile.max_length)
        train = ultrafeedback_pairs(profile.preference_dataset, profile.train_split, profile.n_pref_train, **pairs)
        val = ultrafeedback_pairs(profile.preference_dataset, profile.validation_split, profile.n_pref_val, **pairs)
        prompts = alpaca_eval_prompts(profile.eval_dataset, profile.n_test_prompts, config=profile.eval_config,
                                      split=profile.eval_split)
        _WORLDS[key] = HubWorld(profile, runtime, cache, student, train, val, prompts)
    return _WORLDS[key]


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _load(path, world: HubWorld, dtype: torch.dtype = torch.float32):
    from ..models import load_causal_lm

    return load_causal_lm(path, dtype=dtype, device=world.runtime.device)


def _scorer(model, tok, world: HubWorld, cls=ModelReference, name: str | None = None) -> ModelReference:
    # One batching for every scorer: an untrained policy then ties its "self" reference exactly.
    return cls(model, tok, name=name, batch_size=world.runtime.eval_batch_size, max_tokens=8192, progress=False)


def _reference(config: RunConfig, world: HubWorld, root: Path):
    p = world.profile
    dtype = _dtype(p.score_dtype)
    if config.reference == "uniform":
        return UniformReference()
    if config.reference == "prior":
        return _scorer(*_load(world.student, world, dtype), world, PriorReference, f"{p.student}-prior")
    if config.reference in ("self", "none"):
        return _scorer(*_load(world.student, world, dtype), world, name=f"{p.student}-sft")
    if config.reference in ("compatible", "incompatible"):
        path = p.compatible_reference if config.reference == "compatible" else p.incompatible_reference
        return _scorer(*_load(path, world, dtype), world, name=Path(str(path)).name)
    if config.reference == "rq1-best":
        # as in the lab: the best beta is chosen on seed 0, its policy trained at this run's seed
        records = [read_json(q) for c in grid("rq1", (0,), p) if (q := record_path(c, p, root)).exists()]
        best = best_record(records, student=config.student, objective="dpo")
        if best is None:
            raise RuntimeError("Appendix E needs the gpu RQ1 grid first: python -m dpolib.hub run --grid rq1")
        best_config = replace(config_of(best), seed=config.seed)
        policy = _policy_dir(best_config, world)
        if not policy.exists():
            run_gpu(best_config, record_path(best_config, p, root), keep_policy=True, profile=p, cache_dir=world.cache,
                    force=True)
        return _scorer(*_load(policy, world, dtype), world, name=f"{p.student}-dpo-beta={best_config.beta:g}")
    raise ValueError(config.reference)  # pragma: no cover - guarded by RunConfig


def _policy_dir(config: RunConfig, world: HubWorld) -> Path:
    return world.cache / "hub" / "policies" / config.key(world.profile)


def _free() -> None:
    """Return freed models' memory (the caller has dropped its references)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- training


def _lora_config(p: HubProfile):
    try:
        from peft import LoraConfig
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("lora=True needs PEFT: pip install 'dpolib[gpu]' (or pip install peft)") from err
    return LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _train(policy, tok, train, config: RunConfig, world: HubWorld):
    from transformers.trainer_callback import PrinterCallback

    from ..trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config

    p, rt = world.profile, world.runtime
    torch.manual_seed(config.seed)
    args = make_dpo_config(
        str(world.cache / "hub" / "trainer_out" / config.key(p)),
        beta=config.beta,
        seed=config.seed,
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
    extra = {"peft_config": _lora_config(p)} if p.lora else {}
    trainer = PrecomputedRefDPOTrainer(policy, args=args, train_dataset=train, processing_class=tok, loss=config.loss, **extra)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    curves = [h for h in trainer.state.log_history if "loss" in h]
    policy = trainer.model
    if p.lora:
        policy = policy.merge_and_unload()  # the adapter folded in: evaluated and saved as a plain model
    if p.gradient_checkpointing:
        disable = getattr(policy, "activation_checkpointing_disable", None) or policy.gradient_checkpointing_disable
        disable()
    policy.config.use_cache = True
    return policy, curves


# --------------------------------------------------------------------------- evaluation


def _ranking_and_tokens(policy, tok, config: RunConfig, world: HubWorld, val) -> dict:
    """Table 2's ranking accuracies, Eq. (8) token statistics against the SFT student, Figure 3's EOS statistics."""
    prompts, chosen, rejected = list(val["prompt"]), list(val["chosen"]), list(val["rejected"])
    sc, sr = _score_pairs(_scorer(policy, tok, world), prompts, chosen, rejected)
    refs = [torch.tensor(list(val[c]), dtype=torch.float64) for c in ("ref_chosen_logps", "ref_rejected_logps")]
    out = E.ranking_accuracy(sc.sequence_logps, sr.sequence_logps, *refs)
    if "student" not in world.student_scores:
        student, student_tok = _load(world.student, world, _dtype(world.profile.score_dtype))
        world.student_scores["student"] = _score_pairs(_scorer(student, student_tok, world), prompts, chosen, rejected)
        del student
        _free()
    rc, rr = world.student_scores["student"]
    table = E.token_logp_differences(sc.token_ids + sr.token_ids, sc.token_logps + sr.token_logps,
                                     rc.token_logps + rr.token_logps)
    ranked = sorted(table.items(), key=lambda kv: kv[1]["mean_diff"])
    out["token_logp_diff"] = {tok.convert_ids_to_tokens(t): v for t, v in ranked}
    logratio = E.logratio_summary(sc.token_logps + sr.token_logps, rc.token_logps + rr.token_logps)
    out["token_logp_hist"] = logratio["hist"]
    out["seq_logratio"] = {**logratio["seq"], "token": logratio["token"]}
    out["pair_length_tokens"] = {"chosen_mean": float(np.mean([len(t) for t in sc.token_ids])),
                                 "rejected_mean": float(np.mean([len(t) for t in sr.token_ids]))}
    out["eos"] = E.eos_statistics(sc.token_ids, sc.token_logps, sr.token_ids, sr.token_logps, tok.eos_token_id)
    out["eos_token"] = tok.eos_token
    return out


def _judge(world: HubWorld, instructions, texts, baselines, config: RunConfig, judge: str, out_dir: Path) -> dict:
    lengths = np.array([len(t) for t in texts], float)
    base_lengths = np.array([len(b) for b in baselines], float)
    if judge == "alpaca_eval":
        from .judge import alpaca_eval_judge

        res = alpaca_eval_judge(instructions, texts, baselines, name=config.label().replace("/", "_"), output_path=out_dir)
        metrics = {"win_rate": res["win_rate"], "lc_win_rate": res["lc_win_rate"], "lc_fit": {},
                   "gold_score": math.nan, "baseline_gold_score": math.nan, "judge": res["judge"]}
        return metrics, [math.nan] * len(texts)
    from .judge import RewardModelJudge, judge_metrics, preferences

    p = world.profile
    if world.judge is None:
        world.judge = RewardModelJudge.from_pretrained(p.judge_model, dtype=_dtype(p.score_dtype), device=world.runtime.device,
                                                       batch_size=max(1, world.runtime.eval_batch_size // 4),
                                                       max_length=p.judge_max_length)
        world.baseline_rewards = world.judge.rewards(instructions, baselines)
    rewards = world.judge.rewards(instructions, texts)
    prefs = preferences(rewards, world.baseline_rewards)
    metrics = {**judge_metrics(prefs, lengths, base_lengths), "gold_score": float(rewards.mean()),
               "baseline_gold_score": float(world.baseline_rewards.mean()), "judge": world.judge.describe()}
    return metrics, [float(r) for r in rewards]


def _evaluate(policy, tok, config: RunConfig, world: HubWorld, val, judge: str) -> dict:
    from ..lab.task import repetition_rate

    p = world.profile
    settings = E.GenerationSettings(max_new_tokens=p.max_new_tokens, batch_size=world.runtime.eval_batch_size, seed=config.seed)
    instructions = [r["instruction"] for r in world.prompts]
    baselines = [r["output"] for r in world.prompts]
    gens = E.generate(policy, tok, [[{"role": "user", "content": x}] for x in instructions], settings)
    texts = [g.text for g in gens]
    judged, scores = _judge(world, instructions, texts, baselines, config, judge, world.cache / "hub" / "alpaca_eval" / config.key(p))
    degenerate = np.array([E.is_degenerate(g, repetition_rate(g.text)) for g in gens])
    # "gold" is the judge's reward r(x, y): the gpu world has no gold score, its judge is the yardstick
    samples = [{"prompt": x, "response": g.text, "gold": s, "finished": g.finished}
               for x, g, s in zip(instructions[:N_SAMPLES], gens[:N_SAMPLES], scores[:N_SAMPLES])]
    return {
        **judged,
        "mean_length_chars": float(np.mean([len(t) for t in texts])),
        "mean_length_tokens": float(np.mean([g.n_tokens for g in gens])),
        "finished_rate": float(np.mean([g.finished for g in gens])),
        "degenerate_rate": float(degenerate.mean()),
        "degenerate": bool(degenerate.mean() > DEGENERATE_RATE),
        **_ranking_and_tokens(policy, tok, config, world, val),
        "samples": samples,
        "generation": settings.to_dict(),
    }


# --------------------------------------------------------------------------- one run


def run_gpu(config: RunConfig, path: str | Path, keep_policy: bool = False, *, profile: HubProfile | None = None,
            judge: str = "reward_model", cache_dir: str | Path | None = None, force: bool = False,
            runtime: Runtime | None = None) -> dict:
    """Run one gpu-profile configuration (or read its record at ``path`` back); write and return the record.

    Args:
        config: what to run (``config.profile`` must be ``"gpu"``).
        path: the record file (``results/lab/gpu/<key>.json``; :func:`record_path` gives it).
        keep_policy: save the trained policy in the cache (Appendix E uses RQ1's best).
        profile: the gpu profile (default :data:`dpolib.hub.profile.GPU_PROFILE`; tests pass local models and data).
        judge: ``"reward_model"`` (local) or ``"alpaca_eval"`` (the real AlpacaEval 2; API key needed).
        cache_dir: cache root (default ``$DPOLIB_CACHE`` or ``~/.cache/dpolib``).
        force: recompute even when the record exists.
        runtime: device choices (default :func:`.profile.runtime_for`).
    """
    if config.profile != "gpu":
        raise ValueError(f"run_gpu runs profile 'gpu' configs, got {config.profile!r}; use dpolib.lab.runner.run")
    if judge not in JUDGES:
        raise ValueError(f"judge must be one of {JUDGES}, got {judge!r}")
    path = Path(path)
    if path.exists() and not force:
        return read_json(path)
    p = profile or GPU_PROFILE
    rt = runtime or runtime_for(p)
    if rt.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    world = _world(p, rt, Path(cache_dir or default_cache_dir()))
    times["world"] = time.perf_counter() - t0

    t = time.perf_counter()
    reference = _reference(config, world, path.parent.parent)
    train = precompute(world.train, reference, cache_dir=world.cache)
    val = precompute(world.val, reference, cache_dir=world.cache)
    reference_name = reference.name
    del reference
    _free()
    times["precompute"] = time.perf_counter() - t

    policy, tok = _load(world.student, world)
    curves: list[dict] = []
    if config.objective != "sft":
        t = time.perf_counter()
        policy, curves = _train(policy, tok, train, config, world)
        times["train"] = time.perf_counter() - t
        if keep_policy:
            save_policy(policy, tok, _policy_dir(config, world))
    t = time.perf_counter()
    policy.eval()
    metrics = _evaluate(policy, tok, config, world, val, judge)
    times["evaluate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    record = make_record(
        config, p, reference_name, metrics, curves,
        provenance(wall_time_s=times, seed=config.seed, runtime=rt.to_dict(), peak_gpu_memory_gib=peak,
                   judge=judge, pipeline=PIPELINE_VERSION),
    )
    del policy
    _free()
    write_json(path, record)
    return record


def run_gpu_grid(name: str, seeds: Iterable[int] = (0,), *, profile: HubProfile | None = None, root: Path | None = None,
                 judge: str = "reward_model", force: bool = False, cache_dir=None, progress: bool = True) -> list[dict]:
    """Run (or read back) every configuration of a gpu grid, in grid order (one process, one GPU)."""
    from tqdm.auto import tqdm

    p = profile or GPU_PROFILE
    configs = grid(name, seeds, p)
    records = []
    for config in tqdm(configs, desc=f"grid {name} (gpu)", disable=not progress):
        records.append(run_gpu(config, record_path(config, p, root, judge), keep_policy=name == "rq1", profile=p, judge=judge,
                               cache_dir=cache_dir, force=force))
    return records
