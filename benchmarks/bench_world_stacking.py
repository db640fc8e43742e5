#!/usr/bin/env python
"""Benchmark: would the CPU world's pretraining and SFT gain from stacking models, as the β sweep does? (issue 15)

The sweep engine trains K DPO runs of one student as one stacked model
(:class:`dpolib.ensemble.StackedLM`). The world build has groups of same-shaped models too:
the three world seeds' models of one family and size (pretraining), and a family's SFT student
with its siblings (SFT of one base on other demonstrations). This measures, per family, a
training step of K such models

1. **serial**: K Hugging Face models one after another (forward, backward, gradient clipping,
   AdamW), as :mod:`dpolib.world.pretrain` trains them;
2. **stacked**: one :class:`~dpolib.ensemble.StackedLM` of the K models, each reading its own
   batch (:meth:`~dpolib.ensemble.StackedLM.lm_losses`, per-member clipping, one AdamW),

on the ``cpu`` profile's batches (pretraining: 16 windows of 96 tokens of the family's corpus;
SFT: 16 chat-templated demonstrations, loss on the response), with fresh weights (a step's cost
does not depend on the weights). Both run on one torch thread, the world build's setting.

Usage::

    nice .venv/bin/python benchmarks/bench_world_stacking.py                 # 40 steps per case
    nice .venv/bin/python benchmarks/bench_world_stacking.py --steps 5 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (stage, size, members): pretraining's groups are the 3 world seeds; SFT's the student and its 3 siblings.
CASES = (("pretrain", "small", 3), ("pretrain", "large", 3), ("sft", "small", 4), ("sft", "large", 3))


def _setup_env() -> None:
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))


def _batches(stage: str, family: str, profile, tok, members: int, steps: int):
    """``[step][member] -> (input_ids, labels)`` of the world's kind of batch, one stream per member."""
    import torch

    from dpolib.encoding import encode
    from dpolib.world import pretrain

    if stage == "pretrain":
        docs = pretrain.pretraining_corpus(family, profile)[:2000]
        enc = tok(docs, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([i for d in enc for i in [tok.bos_token_id] + d + [tok.eos_token_id]])
        streams = [pretrain._pretrain_batches(ids, profile, seed) for seed in range(members)]
    else:
        encoded = []
        for messages, response, _ in pretrain.sft_examples(family, profile)[:1000]:
            e = encode(tok, messages, response)
            encoded.append((list(e.context_ids), list(e.response_ids)))
        streams = [pretrain._sft_batches(encoded, tok.pad_token_id, profile.sft_batch_size, seed)
                   for seed in range(members)]
    out = []
    for step in range(steps):
        out.append([(x, labels) for x, _, labels in (s(step) for s in streams)])
    return out


def _serial(models, batches, pad: int) -> float:
    import torch

    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01) for m in models]
    start = time.perf_counter()
    for step in batches:
        for model, opt, (x, labels) in zip(models, opts, step):
            model(input_ids=x, attention_mask=(labels != -100) | (x != pad), labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def _stacked(models, batches, pad: int) -> float:
    import torch

    from dpolib.ensemble import StackedLM, clip_grad_norm_per_member

    stacked = StackedLM.from_models(models)
    params = stacked.parameters()
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
    k = len(models)
    start = time.perf_counter()
    for step in batches:
        rows, length = step[0][0].shape[0], max(x.shape[1] for x, _ in step)
        ids = torch.full((k, rows, length), pad, dtype=torch.long)
        labels = torch.full((k, rows, length), -100, dtype=torch.long)
        for m, (x, lab) in enumerate(step):
            ids[m, :, : x.shape[1]], labels[m, :, : x.shape[1]] = x, lab
        stacked.lm_losses(ids, labels).sum().backward()
        clip_grad_norm_per_member(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def bench(steps: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from dpolib.experiments.cpu import cpu_threads
    from dpolib.world import pretrain
    from dpolib.world.families import FAMILIES, build_model
    from dpolib.world.profiles import get_profile

    profile = get_profile("cpu")
    rows = []
    with cpu_threads(1):
        for family in FAMILIES:
            tok = AutoTokenizer.from_pretrained(pretrain.tokenizer_dir(family, profile))
            for stage, size, k in CASES:
                layers, hidden = pretrain._size(profile, size)
                models = []
                for seed in range(k):
                    torch.manual_seed(seed)
                    models.append(build_model(FAMILIES[family], tok, layers, hidden, n_positions=512))
                batches = _batches(stage, family, profile, tok, k, steps + 3)
                _serial(models, batches[:3], tok.pad_token_id)  # warm-up
                serial = _serial(models, batches[3:], tok.pad_token_id)
                _stacked(models, batches[:3], tok.pad_token_id)
                stacked = _stacked(models, batches[3:], tok.pad_token_id)
                rows.append({"family": family, "stage": stage, "size": size, "members": k, "steps": steps,
                             "serial_ms_per_step": 1000 * serial, "stacked_ms_per_step": 1000 * stacked,
                             "speedup": serial / stacked})
                print(f"{family:5s} {stage:8s} {size:5s} K={k}: serial {1000 * serial:6.1f} ms/step, stacked "
                      f"{1000 * stacked:6.1f} ms/step, {serial / stacked:.2f}x", flush=True)
    return {"profile": "cpu", "cases": rows}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40, help="timed steps per case (after 3 warm-up steps)")
    p.add_argument("--out", default=None, help="JSON record (default: results/benchmarks/world_stacking.json)")
    a = p.parse_args(argv)
    _setup_env()
    from dpolib import paths
    from dpolib.provenance import provenance, write_json

    load, t0 = os.getloadavg(), time.perf_counter()
    r = bench(a.steps)
    r["provenance"] = provenance(wall_time_s=time.perf_counter() - t0, load_average_at_start=load,
                                 load_average_at_end=os.getloadavg(), cpu_count=os.cpu_count(), torch_threads=1,
                                 command=" ".join(["benchmarks/bench_world_stacking.py", *(argv or sys.argv[1:])]))
    out = Path(a.out) if a.out else paths.benchmarks_root() / "world_stacking.json"
    write_json(out, r)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
