"""The paper's exact recipe on a node of GPUs: precompute, train (``accelerate launch``), evaluate.

Three steps, each a subcommand of ``python -m dpolib.hub.paper_recipe``::

    # 1. reference log-probs, once per (student, reference): one process, the reference on all GPUs
    python -m dpolib.hub.paper_recipe precompute --student mistral --reference self --out runs/paper
    # 2. DPO, once per beta: 8 processes, DeepSpeed ZeRO-3 (or FSDP: configs/accelerate/fsdp.yaml)
    accelerate launch --config_file configs/accelerate/zero3.yaml -m dpolib.hub.paper_recipe \
        train --student mistral --reference self --beta 0.01 --out runs/paper
    # 3. AlpacaEval 2 outputs and judging of the selected checkpoint
    python -m dpolib.hub.paper_recipe evaluate --run runs/paper/mistral-self-beta0.01 --judge alpaca_eval

``scripts/paper_scale.sh`` runs a whole β grid this way. The recipe (digest §2.3, §7.2):
UltraFeedback binarized (``allenai/ultrafeedback_binarized_cleaned``, 60,829 training pairs),
3 epochs, 32 pairs per step (8 GPUs x 4), AdamW lr 5e-7 with 10% linear warm-up then linear
decay, bf16, gradient checkpointing, gradient clipping 1.0, 2048 tokens, seed 18890426, the
checkpoint with the lowest validation DPO loss evaluated every 500 steps. Objectives map to
references as in the paper's ``--data_split`` (``self`` = the student, ``prior`` = its
unconditional prior, ``uniform`` = ``--ref_free``, ``mistralv2`` / ``llama3`` = RQ3).

Differences from the paper's own code, all deliberate: pairs longer than 2048 tokens are
skipped rather than truncated (a truncated response would be scored whole by its reference),
responses are encoded with each tokenizer's own chat template (the paper's scoring script is
not released, digest §7.5), and training runs through TRL's ``DPOTrainer``
(:mod:`dpolib.trl_bridge`) instead of the paper's loop. ``--dry-run`` prints the resolved
settings without loading anything (the tests use it).

``train`` writes one ``record.json`` (rank 0 only) whose provenance lists every rank of the
launch. For small checks without a GPU, ``--model`` names a local student, ``--set KEY=VALUE``
changes a recipe field (e.g. ``--set total_batch_size=4``) and ``--cpu`` trains in float32 on
CPU (gloo); :mod:`dpolib.hub.launch_check` runs the recipe that way under ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["STUDENTS", "REFERENCES", "PAPER_BETAS", "RECIPE", "main"]

#: The paper's students (§3) and their stronger references (§6), by the paper's short names.
STUDENTS = {"mistral": "HuggingFaceH4/mistral-7b-sft-beta", "tulu2": "allenai/tulu-2-7b"}
REFERENCES = {"mistralv2": "mistralai/Mistral-7B-Instruct-v0.2", "llama3": "meta-llama/Meta-Llama-3-70B-Instruct"}
#: The β grids of digest §2.3, RQ1 for the SFT reference, RQ3 / App. E for stronger ones; RQ2's optima only.
PAPER_BETAS = {
    "self": (0.1, 0.05, 0.02, 0.01, 0.005),
    "mistralv2": (10.0, 1.0, 0.1, 0.01, 0.005),
    "llama3": (10.0, 1.0, 0.1, 0.01, 0.005),
    "uniform": (100.0,),
    "prior": (0.01,),
}
RECIPE = dict(
    dataset="allenai/ultrafeedback_binarized_cleaned", train_split="train_prefs", validation_split="test_prefs",
    num_train_epochs=3, total_batch_size=32, per_device_train_batch_size=4, learning_rate=5e-7,
    lr_scheduler_type="linear", warmup_ratio=0.1, max_length=2048, max_grad_norm=1.0, seed=18890426,
    eval_steps=500, alpaca_eval_prompts=805,
)
#: Fields ``--set`` may change besides RECIPE's (a short check run, its logging), with their defaults.
_SETTABLE_EXTRAS = dict(max_steps=-1, logging_steps=10)


def _recipe(args) -> dict:
    """RECIPE with the launch's ``--set KEY=VALUE`` overrides (none: the paper's numbers)."""
    recipe = {**RECIPE, **_SETTABLE_EXTRAS}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep or key not in recipe:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(recipe)}")
        recipe[key] = type(recipe[key])(value)
    return recipe


def _student_path(args) -> str:
    return getattr(args, "model", None) or STUDENTS[args.student]


def _student_name(args) -> str:
    """The student's short name in folder names: the paper's, or a ``--model`` folder's own name."""
    model = getattr(args, "model", None)
    return Path(model).name if model else args.student


def _run_dir(out: str, student: str, reference: str, beta: float | None = None) -> Path:
    name = f"{student}-{reference}" + (f"-beta{beta:g}" if beta is not None else "")
    return Path(out) / name


def _data_dir(out: str, student: str, reference: str) -> Path:
    return Path(out) / "data" / f"{student}-{reference}"


def _reference(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..references import ModelReference, PriorReference, UniformReference

    reference = args.reference
    if reference == "uniform":
        return UniformReference()
    path = _student_path(args) if reference in ("self", "prior") else REFERENCES[reference]
    tok = AutoTokenizer.from_pretrained(path)
    # device_map="auto" spreads a 70B reference over the node's GPUs for scoring (inference only).
    load = {"dtype": torch.float32} if args.cpu else {"dtype": torch.bfloat16, "device_map": "auto"}
    model = AutoModelForCausalLM.from_pretrained(path, **load)
    cls = PriorReference if reference == "prior" else ModelReference
    return cls(model, tok, name=f"{reference}:{path}", batch_size=8, max_tokens=16384)


def precompute_cmd(args) -> dict:
    recipe = _recipe(args)
    plan = {"step": "precompute", "student": _student_path(args), "reference": args.reference,
            "data": str(_data_dir(args.out, _student_name(args), args.reference)), **recipe}
    if args.dry_run:
        return plan
    from transformers import AutoTokenizer

    from ..references import precompute
    from .data import ultrafeedback_pairs

    tok = AutoTokenizer.from_pretrained(_student_path(args))
    reference = _reference(args)
    for split, key in (("train", "train_split"), ("validation", "validation_split")):
        pairs = ultrafeedback_pairs(recipe["dataset"], recipe[key], args.limit, seed=0, tokenizer=tok,
                                    max_length=recipe["max_length"], allow_fewer=True)
        precompute(pairs, reference).save_to_disk(str(Path(plan["data"]) / split))
    return plan


def train_args(args) -> dict:
    """The DPOConfig fields of the paper's recipe for this launch (``world_size`` processes)."""
    import os

    recipe = _recipe(args)
    world_size = int(os.environ.get("WORLD_SIZE", args.num_processes))
    per_device = recipe["per_device_train_batch_size"]
    if recipe["total_batch_size"] % (per_device * world_size):
        raise ValueError(f"{world_size} processes x {per_device} pairs do not divide a batch of {recipe['total_batch_size']}")
    # --cpu: float32 throughout (no bf16 autocast, no TF32), gloo between processes.
    cpu = getattr(args, "cpu", False)
    return dict(
        output_dir=str(_run_dir(args.out, _student_name(args), args.reference, args.beta)), beta=args.beta,
        learning_rate=recipe["learning_rate"], lr_scheduler_type=recipe["lr_scheduler_type"],
        warmup_steps=recipe["warmup_ratio"], num_train_epochs=recipe["num_train_epochs"], max_steps=recipe["max_steps"],
        per_device_train_batch_size=per_device, per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=recipe["total_batch_size"] // (per_device * world_size),
        max_length=recipe["max_length"], max_grad_norm=recipe["max_grad_norm"], seed=recipe["seed"],
        bf16=not cpu, **({} if cpu else {"tf32": True}),
        activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False},
        eval_strategy="steps", eval_steps=recipe["eval_steps"], save_strategy="steps", save_steps=recipe["eval_steps"],
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False, save_total_limit=2,
        logging_steps=recipe["logging_steps"], report_to=[], use_cpu=cpu,
        model_init_kwargs={"dtype": args.dtype, **({"attn_implementation": args.attn} if args.attn else {})},
    )


def _rank_entry(trainer) -> dict:
    """What one process of the launch was and what it trained on (its column audit, when run with one)."""
    import os
    import platform

    import torch

    a = trainer.args
    return {"rank": a.process_index, "local_rank": a.local_process_index, "world_size": a.world_size,
            "host": platform.node(), "pid": os.getpid(), "device": str(a.device),
            "distributed_type": str(trainer.accelerator.distributed_type), "backend": trainer.accelerator.state.backend,
            "torch_threads": torch.get_num_threads(), **getattr(trainer, "column_audit", {})}


def _train_record(args, trainer, config: dict, ranks: list, wall_s: float) -> dict:
    """The run's one record: recipe, launch shape, selected checkpoint, eval losses, final metrics, provenance."""
    from ..provenance import provenance

    history = trainer.state.log_history
    best = trainer.state.best_model_checkpoint
    return {
        "step": "train", "student": _student_path(args), "reference": args.reference, "beta": args.beta,
        "recipe": _recipe(args),
        "launch": {"world_size": len(ranks), "per_device_train_batch_size": config["per_device_train_batch_size"],
                   "gradient_accumulation_steps": config["gradient_accumulation_steps"],
                   "global_batch": config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * len(ranks),
                   "optimizer_steps": trainer.state.global_step},
        "best_checkpoint": Path(best).name if best else None, "best_eval_loss": trainer.state.best_metric,
        "eval_loss": [[h["step"], h["eval_loss"]] for h in history if "eval_loss" in h],
        "final_train": next((h for h in reversed(history) if "loss" in h), None),
        "provenance": provenance(ranks=ranks, wall_s=round(wall_s, 2)),
    }


def train_cmd(args) -> dict:
    config = train_args(args)
    plan = {"step": "train", "student": _student_path(args), "reference": args.reference,
            "data": str(_data_dir(args.out, _student_name(args), args.reference)), "dpo_config": config}
    if args.dry_run:
        return plan
    from accelerate.utils import gather_object
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from ..provenance import write_json
    from ..trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config

    start = time.time()
    data = Path(plan["data"])
    train, val = load_from_disk(str(data / "train")), load_from_disk(str(data / "validation"))
    tok = AutoTokenizer.from_pretrained(_student_path(args))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dpo_args = make_dpo_config(**config)
    trainer_cls = PrecomputedRefDPOTrainer
    if args.audit_columns:  # a check run: every rank also logs which rows and reference values it trained on
        from .launch_check import ColumnAuditTrainer as trainer_cls
    # The model goes in as a path so that ZeRO-3 / FSDP shard it while loading.
    trainer = trainer_cls(_student_path(args), args=dpo_args, train_dataset=train, eval_dataset=val,
                          processing_class=tok)
    trainer.train()
    out = Path(config["output_dir"])
    trainer.save_model(str(out / "best"))  # the lowest-validation-loss checkpoint (every rank takes part)
    ranks = gather_object([_rank_entry(trainer)])  # every rank takes part; rank 0 writes
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(out / "best"))
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        write_json(out / "record.json", _train_record(args, trainer, config, ranks, time.time() - start))
    return plan


def evaluate_cmd(args) -> dict:
    plan = {"step": "evaluate", "run": args.run, "judge": args.judge, "prompts": RECIPE["alpaca_eval_prompts"]}
    if args.dry_run:
        return plan
    import torch

    from .. import evaluation as E
    from ..models import load_causal_lm
    from .data import alpaca_eval_prompts
    from .judge import alpaca_eval_judge

    model, tok = load_causal_lm(Path(args.run) / "best", dtype=torch.bfloat16, device="cuda")
    prompts = alpaca_eval_prompts("tatsu-lab/alpaca_eval")
    gens = E.generate(model, tok, [[{"role": "user", "content": p["instruction"]}] for p in prompts],
                      E.GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=32), progress=True)
    outputs = [g.text for g in gens]
    (Path(args.run) / "alpaca_eval_outputs.json").write_text(json.dumps(
        [{"instruction": p["instruction"], "output": o, "generator": Path(args.run).name} for p, o in zip(prompts, outputs)]))
    if args.judge == "alpaca_eval":
        result = alpaca_eval_judge([p["instruction"] for p in prompts], outputs, [p["output"] for p in prompts],
                                   name=Path(args.run).name, output_path=Path(args.run) / "alpaca_eval")
        plan.update(win_rate=result["win_rate"], lc_win_rate=result["lc_win_rate"])
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpolib.hub.paper_recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("precompute", "train"):
        p = sub.add_parser(name)
        p.add_argument("--student", choices=sorted(STUDENTS), default="mistral")
        p.add_argument("--reference", choices=["self", "prior", "uniform", *sorted(REFERENCES)], default="self")
        p.add_argument("--out", default="runs/paper")
        p.add_argument("--dry-run", action="store_true", help="print the resolved settings; load nothing")
        p.add_argument("--model", default=None, help="the student's path instead of the hub's (e.g. a local tiny model)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a recipe field (small checks)")
        p.add_argument("--cpu", action="store_true", help="float32 on CPU, gloo between processes (no GPU)")
    sub.choices["precompute"].add_argument("--limit", type=int, default=None, help="at most this many pairs per split")
    t = sub.choices["train"]
    t.add_argument("--beta", type=float, required=True)
    t.add_argument("--num-processes", type=int, default=8, help="used when WORLD_SIZE is unset (dry runs)")
    t.add_argument("--dtype", default="bfloat16", help="policy load dtype (float32 for FSDP mixed precision)")
    t.add_argument("--attn", default=None, help="attention implementation, e.g. flash_attention_2 (the paper's)")
    t.add_argument("--audit-columns", action="store_true",
                   help="record per rank which rows and reference log-probs each batch held (small checks)")
    e = sub.add_parser("evaluate")
    e.add_argument("--run", required=True)
    e.add_argument("--judge", choices=["alpaca_eval", "none"], default="alpaca_eval")
    e.add_argument("--max-new-tokens", type=int, default=2048)
    e.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    plan = {"precompute": precompute_cmd, "train": train_cmd, "evaluate": evaluate_cmd}[args.command](args)
    print(json.dumps(plan, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
