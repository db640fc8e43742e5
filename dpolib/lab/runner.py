"""The experiment runner: a frozen config in, a result record with provenance out.

A :class:`RunConfig` names everything that determines a run (profile, student,
objective, reference, β, loss, seed). Its hash keys the record
``results/lab/<profile>/<hash>.json``; a record that exists is read back, not
recomputed, so the book renders from committed results and a grid reruns only
what is missing.

One run is the paper's pipeline (§3):

1. the SFT student and the preference data of the world (cached, :mod:`dpolib.lab.pretrain`, :mod:`dpolib.lab.data`);
2. the reference's log-probs precomputed into ``ref_chosen_logps`` / ``ref_rejected_logps``
   (:func:`dpolib.references.precompute`, cached by reference fingerprint);
3. DPO through TRL (:class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer`), the same
   path the GPU profile uses;
4. evaluation (:mod:`.evaluate`): greedy generation on held-out prompts, the pairwise
   judge against fixed baseline outputs, win rate and LC win rate, gold score,
   length, degeneration, ranking accuracies (Table 2), Eq. (8) token statistics
   against the SFT student, and the EOS statistics of Figure 3.

The paper's objectives map to references (§5): ``dpo`` → the reference named by
``reference`` (``self`` = the SFT student, ``compatible`` = the larger model of the
same family, ``incompatible`` = the larger model of the other family and tokenizer,
``rq1-best`` = the student's best RQ1 DPO policy, Appendix E); ``probability`` → the
uniform reference (Eq. 10); ``likelihood`` → the student's prior p_LM(y) (Eq. 15);
``sft`` evaluates the SFT student untrained (the paper's β = ∞ row).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..references import ModelReference, PriorReference, UniformReference, default_cache_dir, precompute
from .profiles import Profile, get_profile
from ..provenance import provenance, read_json, stable_hash, write_json

__all__ = [
    "RunConfig",
    "World",
    "OBJECTIVES",
    "REFERENCES",
    "DEGENERATE_RATE",
    "run",
    "run_grid",
    "build_world",
    "grid",
    "GRIDS",
    "record_path",
    "load_records",
    "load_grid",
    "replicates",
    "config_of",
    "HEADLINE_SEEDS",
    "headline_arms",
    "best_record",
    "results_root",
]

OBJECTIVES = ("dpo", "probability", "likelihood", "sft")
REFERENCES = ("self", "compatible", "incompatible", "rq1-best", "uniform", "prior", "none")
#: A model is reported as "[degenerate]" (the paper's Table 1 marker) when more than this
#: fraction of its test outputs never emit EOS or repeat themselves.
DEGENERATE_RATE = 0.5
#: Generated test responses kept in each record (the side-by-side sample tables read them).
N_SAMPLES = 24
#: Bump when the pipeline changes in a way that changes results (invalidates records).
PIPELINE_VERSION = "2"


def results_root() -> Path:
    """``<repo>/results/lab`` (committed records)."""
    return Path(__file__).resolve().parents[2] / "results" / "lab"


def _other(family: str) -> str:
    from .families import FAMILIES

    others = [f for f in FAMILIES if f != family]
    if len(others) != 1:
        raise ValueError(f"expected exactly two families, got {sorted(FAMILIES)}")
    return others[0]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run. Frozen and hashable; its hash keys the record."""

    profile: str
    student: str
    objective: str = "dpo"
    reference: str = "self"
    beta: float | None = 0.1
    loss: str = "sigmoid"
    seed: int = 0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        expected = {"probability": "uniform", "likelihood": "prior", "sft": "none"}.get(self.objective)
        if expected and self.reference != expected:
            raise ValueError(f"objective {self.objective!r} implies reference {expected!r}, got {self.reference!r}")
        if self.objective == "dpo" and self.reference not in ("self", "compatible", "incompatible", "rq1-best"):
            raise ValueError(f"a DPO run needs a model reference, got {self.reference!r}")
        if self.objective == "sft":
            if self.beta is not None:
                raise ValueError("the SFT row has no beta (the paper's beta = infinity); pass beta=None")
        elif self.beta is None or not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number > 0, got {self.beta!r}")

    def key(self, profile: Profile | None = None) -> str:
        if profile is None:
            if self.profile == "gpu":  # real Hugging Face models: dpolib.hub's profile keys the record
                from ..hub.profile import GPU_PROFILE

                profile = GPU_PROFILE
            else:
                profile = get_profile(self.profile)
        return stable_hash({"config": asdict(self), "profile": profile.to_dict(), "pipeline": PIPELINE_VERSION})

    def label(self) -> str:
        beta = "inf" if self.beta is None else f"{self.beta:g}"
        return f"{self.student}/{self.objective}/{self.reference}/beta={beta}/seed={self.seed}"


def record_path(config: RunConfig, root: Path | None = None) -> Path:
    return (root or results_root()) / config.profile / f"{config.key()}.json"


# --------------------------------------------------------------------------- grids


def grid(name: str, profile: str, seeds: Iterable[int] = (0,)) -> list[RunConfig]:
    """The runs of a named grid (``rq1``, ``rq2``, ``rq3``, ``appendix-e``, ``seeds``) at a profile.

    At the ``gpu`` profile the grids are :func:`dpolib.hub.runner.grid`'s (one student, real models).
    """
    if profile == "gpu" and name != "seeds":
        from ..hub.runner import grid as gpu_grid

        return gpu_grid(name, seeds)
    from .families import FAMILIES

    families = list(FAMILIES)
    main = families[0]
    configs: list[RunConfig] = []
    for seed in seeds:
        if name == "rq1":
            for s in families:
                configs.append(RunConfig(profile, s, "sft", "none", None, seed=seed))
                configs += [RunConfig(profile, s, "dpo", "self", b, seed=seed) for b in (0.1, 0.05, 0.02, 0.01, 0.005, 0.001)]
        elif name == "rq2":
            configs.append(RunConfig(profile, main, "sft", "none", None, seed=seed))
            configs += [RunConfig(profile, main, "dpo", "self", b, seed=seed) for b in (0.1, 0.05, 0.02, 0.01, 0.005, 0.001)]
            configs += [RunConfig(profile, main, "probability", "uniform", b, seed=seed) for b in (100.0, 10.0, 1.0, 0.1, 0.01)]
            configs += [RunConfig(profile, main, "likelihood", "prior", b, seed=seed) for b in (1.0, 0.1, 0.05, 0.02, 0.01, 0.005)]
        elif name == "rq3":
            for s in families:
                for ref in ("self", "compatible", "incompatible"):
                    configs += [RunConfig(profile, s, "dpo", ref, b, seed=seed) for b in (10.0, 1.0, 0.1, 0.01, 0.005)]
        elif name == "appendix-e":
            configs += [RunConfig(profile, main, "dpo", "rq1-best", b, seed=seed) for b in (10.0, 1.0, 0.1, 0.01, 0.005)]
        elif name == "seeds":
            configs += [replace(c, seed=seed) for c in headline_arms(profile)]
        else:
            raise ValueError(f"unknown grid {name!r}; choose one of {GRIDS}")
    return configs


GRIDS = ("rq1", "rq2", "rq3", "appendix-e", "seeds")


def headline_arms(profile: str, root: Path | None = None) -> list[RunConfig]:
    """The seed-0 configurations of the headline comparisons, chosen from the seed-0 grids.

    Per student: the SFT model, DPO at beta = 0.1 and at its best beta (RQ1); DPO with a
    self, a compatible and an incompatible reference, each at its best beta (RQ3); for the
    main student, the probability and likelihood objectives at their best beta (RQ2) and
    Appendix E's best run. "Best" is by LC win rate on seed 0, degenerate runs excluded
    (an arm whose runs all degenerate has no best and is left out); the ``seeds`` grid reruns
    these arms at seeds 1 and 2, so the comparison is checked on seeds the selection never
    saw. Raises if a seed-0 grid is missing.
    """
    arms: list[RunConfig] = []

    def best(records, **match):
        rec = best_record(records, **match)
        return [] if rec is None else [config_of(rec)]  # every run of the arm degenerate: nothing to replicate

    rq1 = load_records(grid("rq1", profile), root, missing="raise")
    rq3 = load_records(grid("rq3", profile), root, missing="raise")
    for student in dict.fromkeys(r["config"]["student"] for r in rq1):
        arms.append(RunConfig(profile, student, "sft", "none", None))
        arms.append(RunConfig(profile, student, "dpo", "self", 0.1))
        arms += best(rq1, student=student, objective="dpo")
        for ref in ("self", "compatible", "incompatible"):
            arms += best(rq3, student=student, reference=ref)
    rq2 = load_records(grid("rq2", profile), root, missing="raise")
    for objective in ("probability", "likelihood"):
        arms += best(rq2, objective=objective)
    app_e = load_records(grid("appendix-e", profile), root, missing="raise")
    arms += best(app_e)
    return list(dict.fromkeys(arms))


# --------------------------------------------------------------------------- one run


@dataclass
class World:
    """What a profile's runs share, loaded once per process: data, test prompts, baseline outputs, cache."""

    profile: Profile
    data: object
    test_prompts: list
    baseline: list[str]
    cache: Path
    student_tokens: dict = field(default_factory=dict)


_WORLDS: dict[str, World] = {}


def _world(profile: Profile) -> World:
    key = stable_hash(profile.to_dict())
    if key not in _WORLDS:
        from . import data as world_data

        cache = default_cache_dir() / "lab"
        ds = world_data.build_preference_data(profile)
        prompts = world_data.test_prompts(profile)
        _WORLDS[key] = World(profile, ds, prompts, list(world_data.baseline_responses(prompts)), cache)
    return _WORLDS[key]


def build_world(profile: Profile) -> World:
    """Build (or load from the cache) everything a profile's runs share: the four SFT models and the data."""
    from .families import FAMILIES
    from .pretrain import model_dir

    with _cpu_threads(1):  # one thread: fastest here, and the same weights whoever builds them
        for family in FAMILIES:
            for size in ("small", "large"):
                model_dir(family, size, "sft", profile)
        return _world(profile)


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tok


def _reference(config: RunConfig, profile: Profile, world: World):
    from .pretrain import model_dir

    if config.reference == "uniform":
        return UniformReference()
    if config.reference == "prior":
        return PriorReference(*_load(model_dir(config.student, "small", "sft", profile)), name=f"{config.student}-prior", progress=False)
    if config.reference in ("self", "none"):  # the SFT row is scored against itself: r_θ = 0, as in Table 2
        path, name = model_dir(config.student, "small", "sft", profile), f"{config.student}-small-sft"
    elif config.reference == "compatible":
        path, name = model_dir(config.student, "large", "sft", profile), f"{config.student}-large-sft"
    elif config.reference == "incompatible":
        other = _other(config.student)
        path, name = model_dir(other, "large", "sft", profile), f"{other}-large-sft"
    elif config.reference == "rq1-best":
        # the best beta is chosen on seed 0; a run at another seed uses that beta's policy trained at its own seed
        rq1 = load_records(grid("rq1", config.profile, seeds=(0,)))
        best = best_record(rq1, student=config.student, objective="dpo") or max(  # all degenerate (smoke): best anyway
            (r for r in rq1 if r["config"]["student"] == config.student and r["config"]["objective"] == "dpo"),
            key=lambda r: r["metrics"]["lc_win_rate"], default=None,
        )  # fmt: skip
        if best is None:
            raise RuntimeError("Appendix E needs the RQ1 grid first: python -m dpolib.lab run --grid rq1")
        best_config = replace(config_of(best), seed=config.seed)
        path, name = _policy_dir(best_config, world), f"{config.student}-dpo-beta={best_config.beta:g}"
        if not path.exists():
            run(best_config, keep_policy=True, force=True)
    else:  # pragma: no cover - guarded by RunConfig
        raise ValueError(config.reference)
    return ModelReference(*_load(path), name=name, max_length=profile.max_length, progress=False)


def _policy_dir(config: RunConfig, world: World) -> Path:
    return world.cache / "policies" / config.profile / config.key()


def _repetition(text: str) -> float:
    from .task import repetition_rate

    return repetition_rate(text)


def _score_pairs(scorer: ModelReference, prompts, chosen, rejected):
    """Score chosen and rejected in one call, batched exactly as :func:`precompute` batches them.

    Identical batching makes an untrained policy's log-probs equal its reference's to the
    last bit, so its implicit rewards tie exactly (the paper's 0.500 for the SFT row).
    """
    from ..logprobs import ScoredResponses

    both = scorer.score(prompts + prompts, chosen + rejected, per_token=True)
    n = len(prompts)
    split = lambda xs: (xs[:n], xs[n:])  # noqa: E731
    (c_seq, r_seq), (c_tok, r_tok), (c_ids, r_ids) = split(both.sequence_logps), split(both.token_logps), split(both.token_ids)
    return ScoredResponses(c_seq, c_tok, c_ids), ScoredResponses(r_seq, r_tok, r_ids)


def _evaluate(policy, tok, config: RunConfig, profile: Profile, world: World, val) -> dict:
    """Everything the chapters report about one policy (see the module docstring)."""
    from . import evaluate as E
    from .pretrain import model_dir
    from .task import gold_score

    settings = E.GenerationSettings(max_new_tokens=profile.max_new_tokens, batch_size=profile.eval_batch_size, seed=config.seed)
    gens = E.generate(policy, tok, [p.messages() for p in world.test_prompts], settings)
    gold = np.array([gold_score(p, g.text, terminated=g.finished) for p, g in zip(world.test_prompts, gens)])
    base_gold = np.array([gold_score(p, b) for p, b in zip(world.test_prompts, world.baseline)])
    lengths = np.array([len(g.text) for g in gens], float)
    base_lengths = np.array([len(b) for b in world.baseline], float)
    from .data import LENGTH_BIAS, LENGTH_SCALE

    judge = E.PairwiseJudge(length_bias=LENGTH_BIAS, length_scale=LENGTH_SCALE, length_cap=2.0)
    prefs = judge.prob(gold, base_gold, lengths, base_lengths)
    lc = E.length_controlled_win_rate(prefs, lengths, base_lengths)
    degenerate = np.array([E.is_degenerate(g, _repetition(g.text)) for g in gens])

    # ranking accuracy and token statistics on the validation pairs
    prompts = list(val["prompt"])
    scorer = ModelReference(policy, tok, max_length=profile.max_length, progress=False)
    sc, sr = _score_pairs(scorer, prompts, list(val["chosen"]), list(val["rejected"]))
    ref_c = torch.tensor(list(val["ref_chosen_logps"]), dtype=torch.float64)
    ref_r = torch.tensor(list(val["ref_rejected_logps"]), dtype=torch.float64)
    ranking = E.ranking_accuracy(sc.sequence_logps, sr.sequence_logps, ref_c, ref_r)
    key = config.student
    if key not in world.student_tokens:
        sft = ModelReference(*_load(model_dir(config.student, "small", "sft", profile)), max_length=profile.max_length, progress=False)
        world.student_tokens[key] = _score_pairs(sft, prompts, list(val["chosen"]), list(val["rejected"]))
    rc, rr = world.student_tokens[key]
    token_table = E.token_logp_differences(sc.token_ids + sr.token_ids, sc.token_logps + sr.token_logps, rc.token_logps + rr.token_logps)
    logratio = E.logratio_summary(sc.token_logps + sr.token_logps, rc.token_logps + rr.token_logps)
    eos = E.eos_statistics(sc.token_ids, sc.token_logps, sr.token_ids, sr.token_logps, tok.eos_token_id)
    tokens = {
        tok.convert_ids_to_tokens(t): v for t, v in sorted(token_table.items(), key=lambda kv: kv[1]["mean_diff"])
    }
    samples = [
        {"prompt": p.text, "response": g.text, "gold": float(s), "finished": g.finished}
        for p, g, s in zip(world.test_prompts[:N_SAMPLES], gens[:N_SAMPLES], gold[:N_SAMPLES])
    ]
    return {
        "gold_score": float(gold.mean()),
        "baseline_gold_score": float(base_gold.mean()),
        "win_rate": lc["win_rate"],
        "lc_win_rate": lc["lc_win_rate"],
        "lc_fit": {k: v for k, v in lc.items() if k not in ("win_rate", "lc_win_rate")},
        "mean_length_chars": float(lengths.mean()),
        "mean_length_tokens": float(np.mean([g.n_tokens for g in gens])),
        "finished_rate": float(np.mean([g.finished for g in gens])),
        "degenerate_rate": float(degenerate.mean()),
        "degenerate": bool(degenerate.mean() > DEGENERATE_RATE),
        **ranking,
        "eos": eos,
        "eos_token": tok.eos_token,
        "token_logp_diff": tokens,
        "token_logp_hist": logratio["hist"],
        "seq_logratio": {**logratio["seq"], "token": logratio["token"]},
        "pair_length_tokens": {
            "chosen_mean": float(np.mean([len(t) for t in sc.token_ids])),
            "rejected_mean": float(np.mean([len(t) for t in sr.token_ids])),
        },
        "samples": samples,
        "generation": settings.to_dict(),
        "judge": asdict(judge),
    }


@contextmanager
def _cpu_threads(n: int = 1):
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


def run(config: RunConfig, *, root: Path | None = None, force: bool = False, keep_policy: bool = False) -> dict:
    """Run one configuration (or read its record back); return the record.

    Args:
        config: what to run.
        root: where records live (default ``results/lab``).
        force: recompute even when a record exists.
        keep_policy: save the trained policy to the cache (Appendix E uses RQ1's best).
    """
    path = record_path(config, root)
    if path.exists() and not force:
        return read_json(path)
    if config.profile == "gpu":  # the same record, from real models on a GPU (dpolib.hub)
        from ..hub.runner import run_gpu

        return run_gpu(config, path, keep_policy=keep_policy, force=True)
    with _cpu_threads(1):
        return _run(config, path, keep_policy)


def _run(config: RunConfig, path: Path, keep_policy: bool) -> dict:
    from transformers.trainer_callback import PrinterCallback

    from ..trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config
    from .pretrain import model_dir

    profile = get_profile(config.profile)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    world = _world(profile)
    student_path = model_dir(config.student, "small", "sft", profile)
    times["world"] = time.perf_counter() - t0

    t = time.perf_counter()
    reference = _reference(config, profile, world)
    train = precompute(world.data["train"], reference, cache_dir=world.cache)
    val = precompute(world.data["validation"], reference, cache_dir=world.cache)
    times["precompute"] = time.perf_counter() - t

    policy, tok = _load(student_path)
    curves: list[dict] = []
    if config.objective != "sft":
        t = time.perf_counter()
        torch.manual_seed(config.seed)
        args = make_dpo_config(
            str(world.cache / "trainer_out" / config.key()),
            beta=config.beta,
            seed=config.seed,
            learning_rate=profile.dpo_learning_rate,
            per_device_train_batch_size=profile.dpo_batch_size,
            max_steps=profile.dpo_steps,
            warmup_steps=profile.dpo_warmup_ratio,  # a float in [0, 1) is a ratio of total steps
            lr_scheduler_type="linear",
            max_length=profile.max_length,
        )
        trainer = PrecomputedRefDPOTrainer(
            policy, args=args, train_dataset=train, processing_class=tok, loss=config.loss
        )
        trainer.remove_callback(PrinterCallback)  # the record keeps the curves; no log dicts on stdout
        trainer.train()
        curves = [h for h in trainer.state.log_history if "loss" in h]
        policy = trainer.model
        times["train"] = time.perf_counter() - t
        if keep_policy:
            save_policy(policy, tok, _policy_dir(config, world))
    t = time.perf_counter()
    policy.eval()
    metrics = _evaluate(policy, tok, config, profile, world, val)
    times["evaluate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    record = make_record(config, profile, reference.name, metrics, curves, provenance(wall_time_s=times, seed=config.seed))
    write_json(path, record)
    return record


def save_policy(policy, tokenizer, out: Path) -> None:
    """Save a trained policy and its tokenizer where a later run loads it as a reference (Appendix E)."""
    policy.save_pretrained(out)
    tokenizer.save_pretrained(out)


def make_record(config: RunConfig, profile, reference_name: str, metrics: dict, curves: list, provenance_: dict) -> dict:
    """A run's result record (the schema every profile writes; ``profile`` is the one that keys it)."""
    return {
        "config": asdict(config),
        "key": config.key(profile),
        "label": config.label(),
        "profile": profile.to_dict(),
        "reference_name": reference_name,
        "metrics": metrics,
        "curves": curves,
        "provenance": provenance_,
    }


def run_grid(
    name: str,
    profile: str,
    *,
    seeds: Iterable[int] = (0,),
    root: Path | None = None,
    force: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> list[dict]:
    """Run (or read back) every configuration of a grid; returns the records in grid order.

    ``workers > 1`` runs configurations in that many processes (one torch thread each);
    records are independent files, so the result is the same as a serial run.
    """
    from tqdm.auto import tqdm

    configs = grid(name, profile, seeds)
    keep = name in ("rq1", "seeds")  # Appendix E uses RQ1's best policy (at each seed) as its reference
    todo = [c for c in configs if force or not record_path(c, root).exists()]
    bar = tqdm(total=len(todo), desc=f"grid {name} ({profile})", disable=not progress)
    if workers > 1 and len(todo) > 1 and profile != "gpu":  # one GPU: serial
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        build_world(get_profile(profile))  # train the four models once, before workers load them
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(run, c, root=root, force=force, keep_policy=keep): c for c in todo}
            for future in as_completed(futures):
                future.result()
                bar.set_postfix_str(futures[future].label())
                bar.update()
    else:
        for config in todo:
            bar.set_postfix_str(config.label())
            run(config, root=root, force=force, keep_policy=keep)
            bar.update()
    bar.close()
    return [run(c, root=root) for c in configs]


# --------------------------------------------------------------------------- reading results


def load_grid(name: str, profile: str, seeds: Iterable[int] = (0,), root: Path | None = None, complete: bool = False) -> list[dict]:
    """The committed records of a grid, never training (``complete=True``: ``[]`` unless every run has a record)."""
    configs = grid(name, profile, seeds)
    records = load_records(configs, root)
    return [] if complete and len(records) < len(configs) else records


def load_records(configs: Iterable[RunConfig], root: Path | None = None, missing: str = "skip") -> list[dict]:
    """Records of the given configs that exist (``missing="raise"`` to insist on all)."""
    out = []
    for config in configs:
        path = record_path(config, root)
        if path.exists():
            out.append(read_json(path))
        elif missing == "raise":
            raise FileNotFoundError(f"no record for {config.label()} at {path}; run it with python -m dpolib.lab run")
    return out


#: Seeds of the headline comparisons (the ``seeds`` grid reruns the headline arms at the ones after 0).
HEADLINE_SEEDS = (0, 1, 2)


def replicates(config: RunConfig, seeds: Iterable[int] = HEADLINE_SEEDS, root: Path | None = None) -> list[dict]:
    """The records of ``config`` at each of ``seeds`` that exist (seed-to-seed spread of one arm)."""
    return load_records([replace(config, seed=s) for s in seeds], root=root)


def config_of(record: dict) -> RunConfig:
    """The :class:`RunConfig` a record was produced from."""
    return RunConfig(**record["config"])


def best_record(records: list[dict], metric: str = "lc_win_rate", **match) -> dict | None:
    """The record with the highest ``metric`` among those whose config matches ``match`` (degenerate ones excluded)."""
    pool = [
        r
        for r in records
        if all(r["config"].get(k) == v for k, v in match.items()) and not r["metrics"]["degenerate"]
    ]
    return max(pool, key=lambda r: r["metrics"][metric], default=None)
