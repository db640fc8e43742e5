"""DPO training throughput: dpolib + TRL with precomputed references vs TRL with a live reference model.

Both arms train the same policy on the same pairs with the same DPOConfig, in one process,
one after the other, so the ratio is measured on one machine in one run:

* ``precomputed``: :func:`dpolib.references.precompute` scores the reference once (timed
  separately), then :class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer` trains with no
  reference model in memory;
* ``live``: ``trl.DPOTrainer`` with ``ref_model`` = a frozen copy of the policy, run forward
  on every batch.

Reported per arm: tokens/s (non-padding prompt + response tokens of chosen and rejected,
steps after the first), peak GPU memory, and MFU = 6 N tokens/s / peak bf16 FLOP/s of the
card (policy FLOPs only; the live arm's extra reference forward, 2 N per token, is the cost
being compared, so it is not counted as useful work). ``--cpu-smoke`` runs a tiny model on
the CPU in seconds (the test suite does), where memory and MFU are not reported.

    python benchmarks/bench_gpu_throughput.py --model Qwen/Qwen2.5-0.5B --steps 20 --batch 8 --out results/benchmarks/gpu_throughput.json
    python benchmarks/bench_gpu_throughput.py --cpu-smoke
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import torch

#: Dense bf16 peak FLOP/s (vendor datasheets, without sparsity) for MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12, "A10": 125e12}


def _peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def _pairs(n: int, words: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    vocab = "the a cat dog runs fast slow model answer question good bad long short very really data".split()
    text = lambda k: " ".join(rng.choice(vocab) for _ in range(k))  # noqa: E731
    return [{"prompt": [{"role": "user", "content": text(words // 4)}],
             "chosen": [{"role": "assistant", "content": text(words)}],
             "rejected": [{"role": "assistant", "content": text(words)}]} for _ in range(n)]


def _tiny():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import tiny

    tok = tiny.bpe_tokenizer()
    return tiny.llama_model(tok, hidden=64), tok


class _Clock:
    """A TrainerCallback that stamps each optimizer step's end."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self
        self.stamps: list[float] = []

        class CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                outer.stamps.append(time.perf_counter())

        self.callback = CB()


def _arm(name, make_trainer, tokens_per_step, n_params) -> dict:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    clock = _Clock()
    trainer = make_trainer([clock.callback])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    t = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t
    steady = clock.stamps[-1] - clock.stamps[0] if len(clock.stamps) > 1 else total
    steps = max(1, len(clock.stamps) - 1)
    tps = tokens_per_step * steps / steady
    peak = _peak_flops()
    out = {"arm": name, "steps": len(clock.stamps), "train_s": total, "tokens_per_s": tps,
           "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
           "mfu": 6 * n_params * tps / peak if peak else None,
           "final_loss": [h["loss"] for h in trainer.state.log_history if "loss" in h][-1]}
    del trainer
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B", help="hub id or local path of the policy")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="pairs per step (per device)")
    parser.add_argument("--words", type=int, default=200, help="words per response (length of the pairs)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny in-process model on the CPU, a few steps")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    from datasets import Dataset
    from trl import DPOTrainer

    from dpolib.encoding import encode
    from dpolib.provenance import provenance
    from dpolib.references import ModelReference, precompute
    from dpolib.trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config

    if args.cpu_smoke:
        torch.set_num_threads(1)
        args.steps, args.batch, args.words = min(args.steps, 3), min(args.batch, 2), min(args.words, 12)
        policy, tok = _tiny()
        dtype_args = {}
    else:
        from dpolib.models import load_causal_lm

        policy, tok = load_causal_lm(args.model, device="cuda" if torch.cuda.is_available() else None)
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        dtype_args = {"bf16": bf16, "fp16": torch.cuda.is_available() and not bf16}
    rows = _pairs(args.steps * args.batch, args.words)
    data = Dataset.from_list(rows)
    tokens_per_pair = sum(len(encode(tok, r["prompt"], r[c]).input_ids) for r in rows for c in ("chosen", "rejected")) / len(rows)
    tokens_per_step = tokens_per_pair * args.batch
    n_params = sum(p.numel() for p in policy.parameters())
    max_length = int(tokens_per_pair) + 64

    def config(out):
        return make_dpo_config(out, beta=0.1, learning_rate=1e-6, per_device_train_batch_size=args.batch, max_steps=args.steps,
                               max_length=max_length, gradient_checkpointing=args.gradient_checkpointing, **dtype_args)

    reference = copy.deepcopy(policy).eval()
    t = time.perf_counter()
    scored = precompute(data, ModelReference(reference, tok, progress=False, batch_size=2 * args.batch), use_cache=False)
    precompute_s = time.perf_counter() - t
    reference.to("cpu")
    start = copy.deepcopy(policy.state_dict())
    results = [{"arm": "precompute", "seconds": precompute_s, "pairs": len(rows)}]
    results.append(_arm("precomputed (dpolib + TRL)", lambda cbs: PrecomputedRefDPOTrainer(
        policy, args=config("/tmp/bench-pre"), train_dataset=scored, processing_class=tok, callbacks=cbs),
        tokens_per_step, n_params))
    policy.load_state_dict(start)
    reference.to(next(policy.parameters()).device)
    results.append(_arm("live reference (TRL)", lambda cbs: DPOTrainer(
        policy, ref_model=reference, args=config("/tmp/bench-live"), train_dataset=data, processing_class=tok, callbacks=cbs),
        tokens_per_step, n_params))
    pre, live = results[1], results[2]
    report = {
        "model": "tiny (cpu smoke)" if args.cpu_smoke else args.model, "n_params": n_params, "steps": args.steps,
        "batch_pairs": args.batch, "tokens_per_pair": tokens_per_pair, "arms": results,
        "speedup_tokens_per_s": pre["tokens_per_s"] / live["tokens_per_s"],
        "memory_ratio": (pre["peak_gpu_memory_gib"] / live["peak_gpu_memory_gib"]) if pre["peak_gpu_memory_gib"] else None,
        "provenance": provenance(),
    }
    for r in results[1:]:
        mem = f"{r['peak_gpu_memory_gib']:.2f} GiB" if r["peak_gpu_memory_gib"] is not None else "n/a (cpu)"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{r['arm']:28s} {r['tokens_per_s']:10.0f} tok/s  peak {mem:>12s}  MFU {mfu}")
    print(f"precompute of the reference: {precompute_s:.1f} s for {len(rows)} pairs (once per reference and data set)")
    print(f"precomputed / live tokens/s: {report['speedup_tokens_per_s']:.2f}x")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
