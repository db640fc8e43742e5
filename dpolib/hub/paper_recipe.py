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
"""

from __future__ import annotations

import argparse
import json
import sys
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


def _run_dir(out: str, student: str, reference: str, beta: float | None = None) -> Path:
    name = f"{student}-{reference}" + (f"-beta{beta:g}" if beta is not None else "")
    return Path(out) / name


def _data_dir(out: str, student: str, reference: str) -> Path:
    return Path(out) / "data" / f"{student}-{reference}"


def _reference(student: str, reference: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..references import ModelReference, PriorReference, UniformReference

    if reference == "uniform":
        return UniformReference()
    path = STUDENTS[student] if reference in ("self", "prior") else REFERENCES[reference]
    tok = AutoTokenizer.from_pretrained(path)
    # device_map="auto" spreads a 70B reference over the node's GPUs for scoring (inference only).
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="auto")
    cls = PriorReference if reference == "prior" else ModelReference
    return cls(model, tok, name=f"{reference}:{path}", batch_size=8, max_tokens=16384)


def precompute_cmd(args) -> dict:
    plan = {"step": "precompute", "student": STUDENTS[args.student], "reference": args.reference,
            "data": str(_data_dir(args.out, args.student, args.reference)), **RECIPE}
    if args.dry_run:
        return plan
    from transformers import AutoTokenizer

    from ..references import precompute
    from .data import ultrafeedback_pairs

    tok = AutoTokenizer.from_pretrained(STUDENTS[args.student])
    reference = _reference(args.student, args.reference)
    for split, key in (("train", "train_split"), ("validation", "validation_split")):
        pairs = ultrafeedback_pairs(RECIPE["dataset"], RECIPE[key], args.limit, seed=0, tokenizer=tok,
                                    max_length=RECIPE["max_length"], allow_fewer=True)
        precompute(pairs, reference).save_to_disk(str(Path(plan["data"]) / split))
    return plan


def train_args(args) -> dict:
    """The DPOConfig fields of the paper's recipe for this launch (``world_size`` processes)."""
    import os

    world_size = int(os.environ.get("WORLD_SIZE", args.num_processes))
    per_device = RECIPE["per_device_train_batch_size"]
    if RECIPE["total_batch_size"] % (per_device * world_size):
        raise ValueError(f"{world_size} processes x {per_device} pairs do not divide a batch of {RECIPE['total_batch_size']}")
    return dict(
        output_dir=str(_run_dir(args.out, args.student, args.reference, args.beta)), beta=args.beta,
        learning_rate=RECIPE["learning_rate"], lr_scheduler_type=RECIPE["lr_scheduler_type"],
        warmup_steps=RECIPE["warmup_ratio"], num_train_epochs=RECIPE["num_train_epochs"],
        per_device_train_batch_size=per_device, per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=RECIPE["total_batch_size"] // (per_device * world_size),
        max_length=RECIPE["max_length"], max_grad_norm=RECIPE["max_grad_norm"], seed=RECIPE["seed"],
        bf16=True, tf32=True, activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False},
        eval_strategy="steps", eval_steps=RECIPE["eval_steps"], save_strategy="steps", save_steps=RECIPE["eval_steps"],
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False, save_total_limit=2,
        logging_steps=10, report_to=[], use_cpu=False,
        model_init_kwargs={"dtype": args.dtype, **({"attn_implementation": args.attn} if args.attn else {})},
    )


def train_cmd(args) -> dict:
    config = train_args(args)
    plan = {"step": "train", "student": STUDENTS[args.student], "reference": args.reference,
            "data": str(_data_dir(args.out, args.student, args.reference)), "dpo_config": config}
    if args.dry_run:
        return plan
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from ..trl_bridge import make_dpo_config, train_dpo

    data = Path(plan["data"])
    train, val = load_from_disk(str(data / "train")), load_from_disk(str(data / "validation"))
    tok = AutoTokenizer.from_pretrained(STUDENTS[args.student])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dpo_args = make_dpo_config(**config)
    # The model goes in as a path so that ZeRO-3 / FSDP shard it while loading.
    trainer = train_dpo(STUDENTS[args.student], tok, train, None, dpo_args, eval_dataset=val)
    trainer.save_model(str(Path(config["output_dir"]) / "best"))  # the lowest-validation-loss checkpoint
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(Path(config["output_dir"]) / "best"))
        (Path(config["output_dir"]) / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    return plan


def evaluate_cmd(args) -> dict:
    plan = {"step": "evaluate", "run": args.run, "judge": args.judge, "prompts": RECIPE["alpaca_eval_prompts"]}
    if args.dry_run:
        return plan
    import torch

    from ..lab import evaluate as E
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
    sub.choices["precompute"].add_argument("--limit", type=int, default=None, help="at most this many pairs per split")
    t = sub.choices["train"]
    t.add_argument("--beta", type=float, required=True)
    t.add_argument("--num-processes", type=int, default=8, help="used when WORLD_SIZE is unset (dry runs)")
    t.add_argument("--dtype", default="bfloat16", help="policy load dtype (float32 for FSDP mixed precision)")
    t.add_argument("--attn", default=None, help="attention implementation, e.g. flash_attention_2 (the paper's)")
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
