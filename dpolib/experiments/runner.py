"""The one runner: a :class:`~dpolib.experiments.config.RunConfig` in, a :class:`~dpolib.experiments.records.Record` out.

One run is the paper's pipeline (§3), the same at every profile; a backend
(:mod:`.cpu` for the CPU world, :mod:`.gpu` for real models) supplies only what differs:

1. the world: the SFT student, the preference pairs, the test prompts;
2. the reference's log-probs precomputed into ``ref_chosen_logps`` / ``ref_rejected_logps``
   (:func:`dpolib.references.precompute`, cached by the reference's fingerprint);
3. DPO through TRL (:class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer`);
4. evaluation: greedy generation on the test prompts, the backend's judge, and every
   metric of :mod:`.metrics`.

A record that exists is read back, not recomputed: the book renders from committed
records and a grid reruns only what is missing.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import torch

from .. import evaluation as E
from ..provenance import provenance
from ..profile import progress_enabled
from ..references import precompute
from .backend import Backend
from .config import BETAS, PROFILES, RunConfig
from .metrics import evaluate_policy, pair_metrics, score_pairs
from ..models import reusable_model_dir, save_pretrained_atomic
from .records import (
    Record, RecordError, best_record, compact_curves, grid, load_records, read_record, record_path, set_aside,
    write_record,
)  # fmt: skip

__all__ = ["backend_for", "run", "run_sweep", "sweep_groups", "grid_units", "run_grid", "save_policy", "KEEP_POLICY_GRIDS", "ENGINES"]

#: Grids whose trained policies are kept (Appendix E's reference is the best RQ1 policy, at each seed).
KEEP_POLICY_GRIDS = ("rq1", "seeds")


def backend_for(profile: str) -> Backend:
    """The backend of a profile: :class:`.gpu.GpuBackend` at ``gpu``, :class:`.cpu.CpuBackend` otherwise."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if profile == "gpu":
        from .gpu import GpuBackend

        return GpuBackend()
    from .cpu import CpuBackend

    return CpuBackend(profile)


def save_policy(policy, tokenizer, out: Path) -> None:
    """Save a trained policy and its tokenizer where a later run loads it as a reference (Appendix E).

    Atomic: the folder is complete or absent (:func:`dpolib.models.save_pretrained_atomic`).
    """
    save_pretrained_atomic(policy, tokenizer, out)


def _best_rq1_reference(config: RunConfig, backend: Backend, world, root: Path | None):
    """Appendix E's reference: the student's best RQ1 policy (β chosen on seed 0, trained at this run's seed)."""
    arm = [RunConfig(config.profile, config.student, "dpo", "self", beta) for beta in BETAS["rq1"]]
    dpo = load_records(arm, root, settings=backend.settings)
    best = best_record(dpo) or max(dpo, key=lambda r: r.lc, default=None)  # all degenerate (smoke): best anyway
    if best is None:
        raise RuntimeError(f"Appendix E needs the RQ1 grid first: python -m dpolib.experiments run --grid rq1 "
                           f"--profile {config.profile}")
    best_config = replace(best.config, seed=config.seed)
    path = backend.policy_dir(best_config)
    if not reusable_model_dir(path):  # absent, or half-written by an interrupted run (moved aside, named once)
        run(best_config, root=root, keep_policy=True, force=True, backend=backend)
    return backend.scorer(*backend.load(path, world, scoring=True), world, f"{config.student}-dpo-beta={best_config.beta:g}")


def _train(policy, tokenizer, train, config: RunConfig, backend: Backend, world, dpo_args: dict | None = None):
    from transformers.trainer_callback import PrinterCallback

    from .. import paths
    from ..trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config

    torch.manual_seed(config.seed)
    out = paths.trainer_scratch() / config.profile / config.key(backend.settings)
    dpo_args = backend.dpo_args(config, world) if dpo_args is None else dpo_args
    args = make_dpo_config(str(out), beta=config.beta, seed=config.seed, **dpo_args)
    trainer = PrecomputedRefDPOTrainer(policy, args=args, train_dataset=train, processing_class=tokenizer,
                                       loss=config.loss, **backend.trainer_kwargs())
    trainer.remove_callback(PrinterCallback)  # the record keeps the curves; no log dicts on stdout
    trainer.train()
    curves = [h for h in trainer.state.log_history if "loss" in h]
    return backend.after_training(trainer.model), curves


def _generation_settings(config: RunConfig, backend: Backend) -> E.GenerationSettings:
    return E.GenerationSettings(max_new_tokens=backend.max_new_tokens(),
                                batch_size=backend.generation_batch_size(), seed=config.seed)


def _evaluate(policy, tokenizer, config: RunConfig, backend: Backend, world, val, generations=None):
    """The record's metrics; ``generations`` are the policy's test generations when already made (a sweep's,
    decoded by all members at once), else they are generated here."""
    settings = _generation_settings(config, backend)
    if generations is None:
        generations = E.generate(policy, tokenizer, world.test_messages, settings)
    judged = backend.judge(config, world, generations)
    prompts, chosen, rejected = list(val["prompt"]), list(val["chosen"]), list(val["rejected"])
    policy_pairs = score_pairs(backend.scorer(policy, tokenizer, world), prompts, chosen, rejected)
    if config.student not in world.student_pairs:
        student, student_tok = backend.load(backend.student_dir(config, world), world, scoring=True)
        world.student_pairs[config.student] = score_pairs(backend.scorer(student, student_tok, world),
                                                          prompts, chosen, rejected)
        del student
        backend.free()
    pairs = pair_metrics(policy_pairs, world.student_pairs[config.student], val, tokenizer)
    return evaluate_policy(generations, world.test_texts, judged, pairs, settings)


def _existing(path: Path, force: bool) -> Record | None:
    """The record at ``path`` if it exists, validates and is not to be recomputed; a damaged one is set aside."""
    if not path.exists() or force:
        return None
    try:
        return read_record(path)
    except RecordError as err:  # damaged: set aside (named once), then recomputed by the caller
        set_aside(path, err)
        return None


def _prepare(config: RunConfig, backend: Backend, world, root: Path | None):
    """Step 2: the reference's log-probs precomputed into both splits; ``(train, val, reference name, seconds)``."""
    t = time.perf_counter()
    if config.reference == "rq1-best":
        reference = _best_rq1_reference(config, backend, world, root)
    else:
        reference = backend.reference(config, world)
    train = precompute(world.train, reference, cache_dir=world.cache)
    val = precompute(world.val, reference, cache_dir=world.cache)
    name = reference.name
    del reference
    backend.free()
    return train, val, name, time.perf_counter() - t


def _finish(config: RunConfig, policy, tokenizer, curves, *, backend: Backend, world, val, path: Path,
            times: dict, reference_name: str, keep_policy: bool, trainer: dict, generations=None,
            generate_seconds: float = 0.0) -> Record:
    """Steps 4 and after: keep the policy if asked, evaluate it, write and return the record (``generations``:
    made already, in ``generate_seconds``, by a sweep's members decoding together)."""
    if keep_policy and config.objective != "sft":
        save_policy(policy, tokenizer, backend.policy_dir(config))
    t = time.perf_counter()
    policy.eval()
    metrics = _evaluate(policy, tokenizer, config, backend, world, val, generations)
    times["evaluate"] = time.perf_counter() - t + generate_seconds
    times["total"] = sum(v for k, v in times.items() if k != "total")
    record = Record(
        config=config, metrics=metrics, curves=tuple(compact_curves(curves)),
        provenance=provenance(wall_time_s=times, seed=config.seed, trainer=trainer, **backend.provenance_extra()),
        key=config.key(backend.settings), label=config.label(), settings=backend.settings.to_dict(),
        reference_name=reference_name, path=path,
    )
    write_record(record, path)
    return record


def run(config: RunConfig, *, root: Path | None = None, force: bool = False, keep_policy: bool = False,
        backend: Backend | None = None) -> Record:
    """Run one configuration (or read its record back); return the record.

    Training goes through TRL (:class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer`); the
    record's provenance says so (``trainer``). :func:`run_sweep` trains several runs of one
    student together instead.

    Args:
        config: what to run.
        root: where records live (default :func:`dpolib.paths.results_root`).
        force: recompute even when a record exists.
        keep_policy: save the trained policy (Appendix E uses RQ1's best).
        backend: the profile's backend (default :func:`backend_for`; tests pass one with local models).
    """
    backend = backend or backend_for(config.profile)
    path = record_path(config, root, backend.settings, backend.record_suffix)
    if (done := _existing(path, force)) is not None:
        return done
    with backend.session():
        t0 = time.perf_counter()
        world = backend.world(config)
        times = {"world": time.perf_counter() - t0}
        train, val, reference_name, times["precompute"] = _prepare(config, backend, world, root)
        policy, tokenizer = backend.load(backend.student_dir(config, world), world)
        curves: list[dict] = []
        if config.objective != "sft":
            t = time.perf_counter()
            policy, curves = _train(policy, tokenizer, train, config, backend, world)
            times["train"] = time.perf_counter() - t
        record = _finish(config, policy, tokenizer, curves, backend=backend, world=world, val=val, path=path,
                         times=times, reference_name=reference_name, keep_policy=keep_policy,
                         trainer={"engine": "trl" if config.objective != "sft" else "none"})
        del policy
        backend.free()
        return record


def sweep_groups(configs) -> list[list[RunConfig]]:
    """The configurations that can train as one sweep: trained runs of one student, seed, loss and kind of pairs
    (the pool's or the student's own on-policy pairs), in order."""
    groups: dict[tuple, list[RunConfig]] = {}
    for c in configs:
        if c.objective != "sft":
            groups.setdefault((c.profile, c.student, c.seed, c.loss, c.pairs), []).append(c)
    return list(groups.values())


def run_sweep(configs: list[RunConfig], *, root: Path | None = None, force: bool = False, keep_policy: bool = False,
              backend: Backend | None = None) -> list[Record]:
    """Run several trained configurations of one student, seed and loss as one batched run (the sweep engine).

    Every member sees the same batches in the same order (common random numbers) and follows
    the trajectory its own TRL run would (:mod:`dpolib.experiments.sweep`, checked against TRL in
    ``tests/test_sweep.py``); members may differ in β, objective and reference. Records already
    written are read back; the rest are written as :func:`run` writes them, with
    ``provenance["trainer"] = {"engine": "sweep", "members": K, "betas": [...], "padding": {...}}``.
    """
    from .sweep import train_sweep

    if not configs:
        return []
    keys = {(c.profile, c.student, c.seed, c.loss, c.pairs) for c in configs}
    if len(keys) != 1 or any(c.objective == "sft" for c in configs):
        raise ValueError("a sweep trains runs of one profile, student, seed, loss and kind of pairs (no SFT row); "
                         f"got {sorted(c.label() for c in configs)}")
    backend = backend or backend_for(configs[0].profile)
    paths_ = [record_path(c, root, backend.settings, backend.record_suffix) for c in configs]
    done = {c: r for c, p in zip(configs, paths_) if (r := _existing(p, force)) is not None}
    todo = [(c, p) for c, p in zip(configs, paths_) if c not in done]
    if todo:
        with backend.session():
            t0 = time.perf_counter()
            world = backend.world(todo[0][0])
            world_s = time.perf_counter() - t0
            prepared = [_prepare(c, backend, world, root) for c, _ in todo]
            student = backend.student_dir(todo[0][0], world)
            policy, tokenizer = backend.load(student, world)
            dpo_args = backend.dpo_args(todo[0][0], world)
            t = time.perf_counter()
            result = train_sweep(policy, tokenizer, [train for train, *_ in prepared], [c.beta for c, _ in todo],
                                 dpo_args, seed=todo[0][0].seed)
            train_s = (time.perf_counter() - t) / len(todo)
            models = [backend.after_training(model) for model, _ in result.members]
            t = time.perf_counter()
            generations = _generate_members(models, tokenizer, todo[0][0], backend, world)
            generate_s = (time.perf_counter() - t) / len(todo)
            trainer = {"engine": "sweep", "members": len(todo), "betas": [c.beta for c, _ in todo],
                       "padding": result.padding, "generation": "stacked" if generations else "per member"}
            for m, ((config, path), (_, val, name, pre_s), (_, curves)) in enumerate(zip(todo, prepared,
                                                                                           result.members)):
                times = {"world": world_s, "precompute": pre_s, "train": train_s}
                done[config] = _finish(config, models[m], tokenizer, curves, backend=backend,
                                       world=world, val=val, path=path, times=times, reference_name=name,
                                       keep_policy=keep_policy, trainer=trainer,
                                       generations=generations[m] if generations else None,
                                       generate_seconds=generate_s)
            backend.free()
    return [done[c] for c in configs]


def _generate_members(models: list, tokenizer, config: RunConfig, backend: Backend, world):
    """Every member's test generations decoded together (:func:`~dpolib.ensemble_generate.generate_ensemble`),
    or ``None`` where the members cannot be stacked (then each is generated on its own, as :func:`run` does)."""
    from ..ensemble import SUPPORTED
    from ..ensemble_generate import generate_ensemble

    settings = _generation_settings(config, backend)
    if settings.do_sample or any(m.config.model_type not in SUPPORTED for m in models) or \
            any(p.device.type != "cpu" for p in models[0].parameters()):
        return None
    for m in models:
        m.eval()
    return generate_ensemble(models, tokenizer, world.test_messages, settings)


def grid_units(configs: list[RunConfig], engine: str = "sweep") -> list[list[RunConfig]]:
    """A grid's units of work: one run each (``engine="trl"``), or each SFT row alone and one sweep per
    :func:`sweep_groups` group (``"sweep"``; SFT rows are never trained)."""
    if engine == "trl":
        return [[c] for c in configs]
    return [[c] for c in configs if c.objective == "sft"] + sweep_groups(configs)


def _check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def _readable(path: Path) -> bool:
    """A record that exists and validates; a damaged one is set aside (named once) and counts as missing."""
    if not path.exists():
        return False
    try:
        read_record(path)
        return True
    except RecordError as err:
        set_aside(path, err)
        return False


def _run_unit(unit: list[RunConfig], engine: str, **kw) -> list[Record]:
    """One unit of a grid's work: a sweep of one student's trained runs, or one run (module level: workers pickle it)."""
    if engine == "sweep" and unit[0].objective != "sft":
        return run_sweep(unit, **kw)
    return [run(unit[0], **kw)]


#: How a grid's trained runs are trained (one TRL run each, or the runs of one student as one batched sweep).
ENGINES = ("trl", "sweep")


def run_grid(name: str, profile: str, *, seeds: Iterable[int] = (0,), root: Path | None = None, force: bool = False,
             workers: int = 1, progress: bool = True, backend: Backend | None = None,
             engine: str = "trl") -> list[Record]:
    """Run (or read back) every configuration of a grid; return the records in grid order.

    ``engine="trl"`` trains each run through TRL; ``engine="sweep"`` trains the runs of one
    student, seed and loss together (:func:`run_sweep`; cpu world only: the gpu backend's models
    are too large to stack). ``workers > 1`` runs the units of work (runs, or sweeps) of the cpu
    world in that many processes (one torch thread each); records are independent files, so the
    result is the same as a serial run. The gpu profile runs serially (one device).
    """
    from tqdm.auto import tqdm

    _check_workers(workers)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "sweep" and profile == "gpu":
        raise ValueError("engine='sweep' stacks the cpu world's tiny students; the gpu profile trains through TRL")
    backend = backend or backend_for(profile)
    configs = grid(name, profile, seeds, root)
    keep = name in KEEP_POLICY_GRIDS
    todo = [c for c in configs if force or not _readable(record_path(c, root, backend.settings, backend.record_suffix))]
    units = grid_units(todo, engine)
    bar = tqdm(total=len(todo), desc=f"grid {name} ({profile}, {engine})", disable=not progress_enabled(progress) or not todo)
    kw = dict(engine=engine, root=root, force=force, keep_policy=keep)
    if workers > 1 and len(units) > 1 and profile != "gpu":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from .cpu import build_world

        # train each world's models (and choose the learning rates) once, before the workers load them
        build_world(profile, seeds=sorted({c.seed for c in todo}), on_policy=any(c.pairs == "on-policy" for c in todo),
                    workers=workers)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_run_unit, u, **kw): u for u in units}
            for future in as_completed(futures):
                future.result()
                bar.set_postfix_str(futures[future][0].label())
                bar.update(len(futures[future]))
    else:
        for unit in units:
            bar.set_postfix_str(unit[0].label())
            _run_unit(unit, backend=backend, **kw)
            bar.update(len(unit))
    bar.close()
    return [run(c, root=root, backend=backend) for c in configs]
