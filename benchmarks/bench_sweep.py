#!/usr/bin/env python
"""Benchmark: a K-value β sweep as one batched run (dpolib's sweep engine) vs K sequential runs (issue 15).

Three ways to train the same K DPO runs of one student, side by side in one process:

1. **sweep**: :func:`dpolib.experiments.sweep.train_sweep`, the K members stacked into one model;
   also with ``bucket=True`` (batches of similar length; not TRL's batches);
2. **TRL**: K sequential runs of :class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer`, the runner's path;
3. **plain**: K sequential runs of :func:`dpolib.experiments.sweep.train_plain`, a plain PyTorch loop
   (the Hugging Face model on TRL's padded batches, same recipe).

Reported per method: wall time and CPU time of the training loops, steps/s per model
(``K * steps / time`` for the sweep), and the ratios of each sequential method's total to the
sweep's. ``--runs R < K`` measures R of the K sequential runs and scales their time by K / R
(every run of a sweep costs the same: β changes no shape); the record says which.
Parity at this size: each measured TRL run against the sweep member with the same β (max abs
difference of the per-step losses and of the final weights).

Sizes: ``cpu`` is the CPU world's student (``dpolib.world.pretrain.model_dir(family, "small", "sft",
"cpu")`` on the world's preference pairs, reference = the student itself, as RQ1's runs);
``large`` is a student with about 10x the parameters (more layers and a wider hidden size,
fresh weights of the same family) on the same pairs, reference uniform (the cost of a step
does not depend on the reference's values). DPO recipe: the ``cpu`` profile's
(``CpuBackend("cpu").base_dpo_args``: the base rate, since a rate changes no cost), ``--steps`` steps.

Usage::

    nice .venv/bin/python benchmarks/bench_sweep.py --size cpu                   # full runs, K = 8
    nice .venv/bin/python benchmarks/bench_sweep.py --size large --steps 40 --runs 2
    nice .venv/bin/python benchmarks/bench_sweep.py --size cpu --steps 20 --runs 1 --out /tmp/x.json  # quick look

The cpu world is built (about 8 minutes, once) under ``$DPOLIB_CACHE`` if it is not there yet.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: K = 8 values spanning the book's grids (RQ1's six, RQ2/RQ3's 1 and 10).
BETAS = (10.0, 1.0, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001)
#: The larger student: (layers, hidden) per family; about 10x the parameters of the cpu student (2 x 48).
LARGE = {"char": (4, 128), "bpe": (4, 128)}


def _setup_env() -> None:
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    sys.path.insert(0, str(ROOT))


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start) -> dict:
    wall, cpu = _clock()
    return {"wall_s": wall - start[0], "cpu_s": cpu - start[1]}


def student(size: str, family: str):
    """(model, tokenizer, description) of the student of ``size``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dpolib.world import pretrain
    from dpolib.world.families import FAMILIES, build_model
    from dpolib.world.profiles import get_profile

    path = pretrain.model_dir(family, "small", "sft", get_profile("cpu"))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    if size == "large":
        layers, hidden = LARGE[family]
        torch.manual_seed(0)
        model = build_model(FAMILIES[family], tok, layers, hidden)
        return model, tok, f"{family} student, {layers} layers x {hidden} (fresh weights)"
    return model, tok, f"{family} cpu-world SFT student ({path.name})"


def data(model, tok, size: str):
    from dpolib.experiments.cpu import CpuBackend
    from dpolib.references import ModelReference, UniformReference, precompute

    backend = CpuBackend("cpu")
    world = backend.world()
    if size == "cpu":
        ref = ModelReference(copy.deepcopy(model), tok, max_length=backend.profile.max_length, progress=False)
    else:
        ref = UniformReference()
    return precompute(world.train, ref, cache_dir=world.cache), backend


def run_trl(model, tok, ds, beta, dpo_args, seed, out):
    import torch
    from transformers.trainer_callback import PrinterCallback

    from dpolib.trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config

    torch.manual_seed(seed)
    args = make_dpo_config(str(out), beta=beta, seed=seed, **dpo_args)
    setup = _clock()
    trainer = PrecomputedRefDPOTrainer(copy.deepcopy(model), args=args, train_dataset=ds, processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    setup = _since(setup)
    start = _clock()
    trainer.train()
    timing = _since(start)
    return trainer.model, [h for h in trainer.state.log_history if "loss" in h], {**timing, "setup_s": setup["wall_s"]}


def generation_settings(backend):
    """The grids' greedy decoding settings (the runner's)."""
    from dpolib.evaluation import GenerationSettings

    return GenerationSettings(max_new_tokens=backend.max_new_tokens(), batch_size=backend.generation_batch_size())


def weight_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[n] - sb[n]).abs().max().item() for n in sb if sb[n].is_floating_point())


def bench_size(size: str, family: str, k: int, steps: int | None, runs: int, seed: int) -> dict:
    import tempfile

    import torch

    from dpolib.evaluation import generate
    from dpolib.experiments.cpu import cpu_threads
    from dpolib.ensemble_generate import generate_ensemble
    from dpolib.experiments.sweep import train_plain, train_sweep

    betas = BETAS[:k] if k <= len(BETAS) else tuple(0.1 * (i + 1) for i in range(k))
    model, tok, description = student(size, family)
    ds, backend = data(model, tok, size)
    dpo_args = backend.base_dpo_args(None, None)  # the recipe at the base rate: a rate changes no cost
    if steps:
        dpo_args["max_steps"] = steps
    steps = dpo_args["max_steps"]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n== {size}: {description}, {n_params:,} parameters, K={k}, {steps} steps of "
          f"{dpo_args['per_device_train_batch_size']} pairs, {runs} of {k} sequential runs measured", flush=True)
    result = {"size": size, "family": family, "student": description, "parameters": n_params, "k": k,
              "betas": list(betas), "steps": steps, "dpo_args": dpo_args, "sequential_runs_measured": runs,
              "pairs": len(ds)}
    with cpu_threads(1), tempfile.TemporaryDirectory() as tmp:
        start = _clock()
        sweep = train_sweep(model, tok, ds, betas, dpo_args, seed=seed)
        result["sweep"] = {**_since(start), "train_wall_s": sweep.wall_time_s, "padding": sweep.padding}
        print(f"sweep: {result['sweep']['wall_s']:.1f} s wall ({sweep.wall_time_s:.1f} s training), padding "
              f"efficiency {sweep.padding['efficiency']:.3f} (TRL's batches: {sweep.padding['trl_efficiency']:.3f})",
              flush=True)
        start = _clock()
        bucketed = train_sweep(model, tok, ds, betas, dpo_args, seed=seed, bucket=True)
        result["sweep_bucketed"] = {**_since(start), "train_wall_s": bucketed.wall_time_s,
                                    "padding": bucketed.padding}
        print(f"sweep (bucketed batches): {result['sweep_bucketed']['wall_s']:.1f} s wall, padding efficiency "
              f"{bucketed.padding['efficiency']:.3f}", flush=True)
        del bucketed
        settings = generation_settings(backend)
        test_prompts = backend.world().test_messages
        start = _clock()
        generate_ensemble([m for m, _ in sweep.members], tok, test_prompts, settings)
        result["sweep_generate"] = {**_since(start), "prompts": len(test_prompts)}
        print(f"stacked generation, {k} members x {len(test_prompts)} prompts: "
              f"{result['sweep_generate']['wall_s']:.1f} s wall", flush=True)
        trl, plain, parity = [], [], []
        for i in range(runs):
            m = (i * (k - 1)) // max(runs - 1, 1) if runs > 1 else 0  # spread over the grid
            trained, curves, timing = run_trl(model, tok, ds, betas[m], dpo_args, seed, Path(tmp) / f"trl{i}")
            start = _clock()
            generate(trained, tok, test_prompts, settings)
            timing["generate"] = _since(start)
            trl.append({"beta": betas[m], **timing})
            ours_model, ours = sweep.members[m]
            parity.append({"beta": betas[m],
                           "max_abs_loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in zip(ours, curves)),
                           "max_abs_margin_diff": max(abs(a["rewards/margins"] - b["rewards/margins"])
                                                      for a, b in zip(ours, curves)),
                           "max_abs_weight_diff": weight_diff(ours_model, trained)})
            print(f"TRL run beta={betas[m]:g}: {timing['wall_s']:.1f} s wall; parity {parity[-1]}", flush=True)
            start = _clock()
            _, _, loop_s = train_plain(model, tok, ds, betas[m], dpo_args, seed=seed)
            plain.append({"beta": betas[m], **_since(start), "train_wall_s": loop_s})
            print(f"plain run beta={betas[m]:g}: {plain[-1]['wall_s']:.1f} s wall", flush=True)
            torch.manual_seed(seed)
    result.update(trl_runs=trl, plain_runs=plain, parity=parity)
    return summarise(result)


def summarise(r: dict) -> dict:
    k, steps, runs = r["k"], r["steps"], r["sequential_runs_measured"]
    rows = {}
    for name, runs_ in (("trl", r["trl_runs"]), ("plain", r["plain_runs"])):
        wall = sum(x["wall_s"] for x in runs_) * k / runs
        cpu = sum(x["cpu_s"] for x in runs_) * k / runs
        rows[name] = {"total_wall_s": wall, "total_cpu_s": cpu, "steps_per_s_per_model": k * steps / wall}
    for name in ("sweep", "sweep_bucketed"):
        rows[name] = {"total_wall_s": r[name]["wall_s"], "total_cpu_s": r[name]["cpu_s"],
                      "steps_per_s_per_model": k * steps / r[name]["wall_s"]}
    for name in rows:
        rows[name]["trl_over_this_wall"] = rows["trl"]["total_wall_s"] / rows[name]["total_wall_s"]
        rows[name]["trl_over_this_cpu"] = rows["trl"]["total_cpu_s"] / rows[name]["total_cpu_s"]
        rows[name]["plain_over_this_wall"] = rows["plain"]["total_wall_s"] / rows[name]["total_wall_s"]
    if "sweep_generate" in r:  # a run as the grids run it: training, then greedy generation on the test prompts
        trl_total = sum(x["wall_s"] + x["generate"]["wall_s"] for x in r["trl_runs"]) * k / runs
        trl_gen = sum(x["generate"]["wall_s"] for x in r["trl_runs"]) * k / runs
        sweep_total = r["sweep"]["wall_s"] + r["sweep_generate"]["wall_s"]
        r["with_generation"] = {
            "trl_generate_wall_s": trl_gen, "sweep_generate_wall_s": r["sweep_generate"]["wall_s"],
            "generate_ratio": trl_gen / r["sweep_generate"]["wall_s"],
            "trl_total_wall_s": trl_total, "sweep_total_wall_s": sweep_total, "total_ratio": trl_total / sweep_total,
        }
    r["summary"] = rows
    r["table"] = table(r)
    print(r["table"], flush=True)
    return r


def table(r: dict) -> str:
    lines = [f"{r['size']} student ({r['parameters']:,} parameters), K={r['k']}, {r['steps']} steps; "
             f"sequential totals from {r['sequential_runs_measured']} of {r['k']} runs",
             f"{'method':<16}{'steps/s/model':>14}{'wall s':>10}{'cpu s':>10}{'TRL/this (wall)':>17}"
             f"{'TRL/this (cpu)':>16}{'plain/this':>12}"]
    labels = {"trl": f"{r['k']} x TRL", "plain": f"{r['k']} x plain", "sweep": "sweep",
              "sweep_bucketed": "sweep, bucketed"}
    for name, row in r["summary"].items():
        lines.append(f"{labels[name]:<16}{row['steps_per_s_per_model']:>14.2f}{row['total_wall_s']:>10.1f}"
                     f"{row['total_cpu_s']:>10.1f}{row['trl_over_this_wall']:>16.2f}x{row['trl_over_this_cpu']:>15.2f}x"
                     f"{row['plain_over_this_wall']:>11.2f}x")
    lines.append(f"padding efficiency: sweep {r['sweep']['padding']['efficiency']:.3f}, bucketed "
                 f"{r['sweep_bucketed']['padding']['efficiency']:.3f}, TRL's batches "
                 f"{r['sweep']['padding']['trl_efficiency']:.3f}")
    worst = max(p["max_abs_loss_diff"] for p in r["parity"]) if r["parity"] else float("nan")
    worst_w = max(p["max_abs_weight_diff"] for p in r["parity"]) if r["parity"] else float("nan")
    lines.append(f"parity with TRL (measured runs): max |loss diff| {worst:.1e}, max |weight diff| {worst_w:.1e}")
    if "with_generation" in r:
        g = r["with_generation"]
        lines.append(f"greedy generation on {r['sweep_generate']['prompts']} test prompts: {r['k']} x generate "
                     f"{g['trl_generate_wall_s']:.1f} s, stacked {g['sweep_generate_wall_s']:.1f} s "
                     f"({g['generate_ratio']:.2f}x)")
        lines.append(f"training + generation: {r['k']} x (TRL + generate) {g['trl_total_wall_s']:.1f} s, sweep + "
                     f"stacked generation {g['sweep_total_wall_s']:.1f} s ({g['total_ratio']:.2f}x)")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=("cpu", "large", "all"), default="cpu")
    p.add_argument("--family", default="char", help="the student's family (char: GPT-2, bpe: Llama)")
    p.add_argument("--k", type=int, default=8, help="members of the sweep")
    p.add_argument("--steps", type=int, default=None, help="DPO steps (default: the cpu profile's)")
    p.add_argument("--runs", type=int, default=None, help="sequential runs measured per method (default: K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON record (default: results/benchmarks/sweep_<size>.json)")
    a = p.parse_args(argv)
    _setup_env()
    from dpolib import paths
    from dpolib.provenance import provenance, write_json

    sizes = ("cpu", "large") if a.size == "all" else (a.size,)
    for size in sizes:
        load = os.getloadavg()
        t0 = time.perf_counter()
        r = bench_size(size, a.family, a.k, a.steps, min(a.runs or a.k, a.k), a.seed)
        r["provenance"] = provenance(wall_time_s=time.perf_counter() - t0, load_average_at_start=load,
                                     load_average_at_end=os.getloadavg(), cpu_count=os.cpu_count(),
                                     torch_threads=1, command=" ".join(["benchmarks/bench_sweep.py", *(argv or sys.argv[1:])]))
        out = Path(a.out) if a.out and len(sizes) == 1 else paths.benchmarks_root() / f"sweep_{size}.json"
        write_json(out, r)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
