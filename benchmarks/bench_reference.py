#!/usr/bin/env python
"""Benchmark: precomputed reference log-probs (dpolib) vs TRL's live reference and TRL's own precompute.

Three measurements per model, side by side in one run:

(i)   Training: TRL ``DPOTrainer`` with a live reference model vs dpolib's
      ``PrecomputedRefDPOTrainer`` fed by ``dpolib.references.precompute`` (same
      data, batch size, steps, seed). Steps/s (first step excluded as warm-up),
      peak memory (CPU: peak RSS of the worker process; GPU:
      ``torch.cuda.max_memory_allocated``) and, separately, the precompute time.
(ii)  Reference scoring throughput: dpolib ``precompute`` (length-sorted batches,
      left padding, ``logits_to_keep``) vs TRL's ``_precompute_ref_logps`` (what
      ``precompute_ref_log_probs=True`` runs in the constructor), with the same
      number of sequences per forward; also dpolib with a token budget. Tokens
      are counted the same way for both: real (unpadded) prompt + response tokens.
(iii) A 6-value beta sweep: 6 runs with a live reference vs 1 precompute + 6 runs
      reading the columns. Measured directly, or (``--sweep extrapolate``, the
      default for SmolLM2) computed from the run of (i).

Each measurement runs in its own worker process (``--worker``), so that peak RSS
belongs to one configuration and no cache is shared between them (TRL's
precompute cache lives next to an in-memory dataset's temporary files, fresh in
every process; the worker checks that it was not hit).

Data: synthetic conversational pairs through the model's chat template, prompt
lengths uniform in [10, 60] tokens, response lengths log-normal (median 30)
clipped to [5, 200] tokens, chosen and rejected drawn independently.

Usage::

    nice python benchmarks/bench_reference.py --quick            # tiny model only, about 1 min on 2 cores
    nice python benchmarks/bench_reference.py --model all        # tiny + SmolLM2 (~10-15 min on 2 CPU cores)
    python benchmarks/bench_reference.py --model smollm --steps 6 --out results/benchmarks/reference_smollm.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import gc
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BETAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)

# --------------------------------------------------------------------------- sizes

SIZES = {
    # score_pairs: pairs scored in (ii); score_batch: sequences per forward (both libraries); repeats: timings
    # of (ii) are the best of this many (each TRL repeat with a fresh cache file); budget: also run
    # dpolib with a token budget; batch, steps: pairs per training step and steps in (i) and in each sweep run;
    # sweep: "measure" runs 6 betas in the training workers, "extrapolate" computes (iii) from the beta-0.1 run.
    "tiny": dict(score_pairs=256, score_batch=8, repeats=2, budget=True, batch=8, steps=12, sweep="measure"),
    "smollm": dict(score_pairs=32, score_batch=8, repeats=1, budget=False, batch=2, steps=6, sweep="extrapolate"),
}
QUICK = {"tiny": dict(score_pairs=64, score_batch=8, repeats=2, budget=True, batch=4, steps=4, sweep="extrapolate")}
MAX_LENGTH = 512  # prompt + response tokens; no synthetic pair is truncated at this length

WORDS = (
    "the of and to in is it that for on with as was at by this be from or have an are not but what all were "
    "when we there can your which their said if do will each about how up out them then she many some so these "
    "would other into has more her two like him see time could no make than first been its who now people my "
    "made over did down only way find use may water long little very after words called just where most know "
    "get through back much before go good new write our used me man too any day same right look think also "
    "around another came come work three word must because does part even place well such here take why things "
    "help put years different away again off went old number great tell men say small every found still between "
    "name should home big give air line set own under read last never us left end along while might next sound "
    "below saw something thought both few those always looked show large often together asked house world going"
).split()


# --------------------------------------------------------------------------- environment


def _setup_env(threads: int) -> None:
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MKL_NUM_THREADS"] = str(threads)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))  # tests/tiny.py: the offline char tokenizer


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# --------------------------------------------------------------------------- models and data


def load_model(name: str, cache_dir: str | None):
    """``(model, tokenizer, description)``; the same weights in every worker."""
    import torch

    if name == "tiny":
        import tiny
        from transformers import GPT2Config, GPT2LMHeadModel

        tok = tiny.char_tokenizer()
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=len(tok), n_positions=MAX_LENGTH + 64, n_embd=256, n_layer=4, n_head=4,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )
        model = GPT2LMHeadModel(config).eval()
        n = sum(p.numel() for p in model.parameters())
        return model, tok, f"GPT-2 4 layers x 256 hidden, char tokenizer ({n / 1e6:.2f}M params, random init)"
    if name == "smollm":
        from dpolib.models import load_causal_lm, smollm2_135m_instruct

        model, tok = load_causal_lm(smollm2_135m_instruct(cache_dir))
        n = sum(p.numel() for p in model.parameters())
        return model, tok, f"SmolLM2-135M-Instruct, dequantised Q4_1 GGUF, float32 ({n / 1e6:.1f}M params)"
    raise ValueError(name)


def _text(tok, rng: random.Random, n_tokens: int, sentence_end: str = ".") -> str:
    """Synthetic lowercase text that encodes to about ``n_tokens`` tokens under ``tok``."""
    words = [rng.choice(WORDS) for _ in range(n_tokens + 4)]
    for i in range(7, len(words), rng.randint(6, 12)):
        words[i] = words[i] + ","
    ids = tok(" ".join(words), add_special_tokens=False)["input_ids"][: max(1, n_tokens - 1)]
    return tok.decode(ids).strip().rstrip(",") + sentence_end


def make_rows(tok, n_pairs: int, seed: int) -> list[dict]:
    """Conversational pairs with long-tailed response lengths (see module docstring)."""
    rng = random.Random(seed)

    def response_len() -> int:
        return int(min(200, max(5, round(rng.lognormvariate(math.log(30), 0.8)))))

    rows = []
    for _ in range(n_pairs):
        prompt = _text(tok, rng, rng.randint(10, 60), "?")
        rows.append(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": _text(tok, rng, response_len())}],
                "rejected": [{"role": "assistant", "content": _text(tok, rng, response_len())}],
            }
        )
    return rows


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _reset_gpu_peak():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mb():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _dataset_stats(encoded) -> dict:
    lengths = sorted(len(e.input_ids) for e in encoded)
    resp = sorted(len(e.response_ids) for e in encoded)
    q = lambda xs, f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    return {
        "sequences": len(lengths),
        "tokens": sum(lengths),
        "seq_len_median": q(lengths, 0.5),
        "seq_len_p90": q(lengths, 0.9),
        "seq_len_max": lengths[-1],
        "response_len_min": resp[0],
        "response_len_median": q(resp, 0.5),
        "response_len_p90": q(resp, 0.9),
        "response_len_max": resp[-1],
    }


# --------------------------------------------------------------------------- worker tasks


def _padded_tokens_dpolib(lengths, batch_size, max_tokens):
    """Padded tokens of score_encoded's batching (same rule: sorted by length, size and token caps)."""
    total, current = 0, []
    for n in sorted(lengths):
        if current and (len(current) >= batch_size or (max_tokens and n * (len(current) + 1) > max_tokens)):
            total += len(current) * current[-1]
            current = []
        current.append(n)
    if current:
        total += len(current) * current[-1]
    return total


def _encode_rows(ref, rows):
    prompts = [r["prompt"] for r in rows] * 2
    return ref.encode_all(prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows])


def task_precompute_dpolib(spec):
    """dpolib precompute: the scoring set once per batching variant, then the training set (columns to a file)."""
    import torch
    from datasets import Dataset

    from dpolib.logprobs import score_encoded
    from dpolib.references import ModelReference, precompute

    model, tok, desc = load_model(spec["model"], spec.get("cache_dir"))
    model = model.to(_device())
    rows = make_rows(tok, spec["score_pairs"], seed=0)
    train_rows = make_rows(tok, spec["train_pairs"], seed=1)
    probe = ModelReference(model, tok, max_length=MAX_LENGTH, progress=False)
    encoded = _encode_rows(probe, rows)
    lengths = [len(e.input_ids) for e in encoded]
    info = {
        "description": desc,
        "score_data": _dataset_stats(encoded),
        "train_data": _dataset_stats(_encode_rows(probe, train_rows)),
        "torch_threads": torch.get_num_threads(),
    }
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    score_encoded(model, sorted(encoded, key=lambda e: len(e.input_ids))[:8], pad, batch_size=8)  # warm-up
    variants = []
    for variant in spec["variants"]:
        batch_size, max_tokens = variant["batch_size"], variant.get("max_tokens")
        if max_tokens == "auto":  # as many tokens per forward as batch_size sequences of mean length
            max_tokens = int(spec["score_batch"] * sum(lengths) / len(lengths))
        ref = ModelReference(
            model, tok, name=spec["model"], batch_size=batch_size, max_tokens=max_tokens, max_length=MAX_LENGTH,
            progress=False,
        )
        _reset_gpu_peak()
        t = time.perf_counter()
        ref.fingerprint()
        t_fingerprint = time.perf_counter() - t
        times = []
        for _ in range(spec["repeats"]):
            _sync()
            t = time.perf_counter()
            out = precompute(Dataset.from_list(rows), ref, use_cache=False)
            _sync()
            times.append(time.perf_counter() - t)  # encode + score + add columns (the fingerprint is cached by now)
        seconds = min(times)
        variants.append(
            {
                "batch_size": batch_size,
                "max_tokens": max_tokens,
                "seconds": seconds,
                "seconds_all_repeats": times,
                "seconds_fingerprint": t_fingerprint,
                "tokens": sum(lengths),
                "padded_tokens": _padded_tokens_dpolib(lengths, batch_size, max_tokens),
                "tokens_per_s": sum(lengths) / seconds,
                "gpu_peak_mb": _gpu_peak_mb(),
                "chosen": list(out["ref_chosen_logps"]),
                "rejected": list(out["ref_rejected_logps"]),
            }
        )
    # the training set, as a user would: fingerprint + precompute, columns handed to the training workers
    ref = ModelReference(model, tok, name=spec["model"], batch_size=spec["score_batch"], max_length=MAX_LENGTH, progress=False)
    t = time.perf_counter()
    out = precompute(Dataset.from_list(train_rows), ref, use_cache=False)
    train_seconds = time.perf_counter() - t
    Path(spec["columns_out"]).write_text(
        json.dumps({"chosen": list(out["ref_chosen_logps"]), "rejected": list(out["ref_rejected_logps"])})
    )
    t = time.perf_counter()
    _encode_rows(probe, rows)
    info["seconds_encode_score_set"] = time.perf_counter() - t
    return {**info, "variants": variants, "train_set": {"pairs": len(train_rows), "seconds": train_seconds}, "peak_rss_mb": _peak_rss_mb()}


def _dpo_config(out_dir, spec, beta, **kw):
    from dpolib.trl_bridge import make_dpo_config

    return make_dpo_config(
        out_dir, beta=beta, learning_rate=1e-5, per_device_train_batch_size=spec["batch"],
        max_steps=spec["steps"], max_length=MAX_LENGTH, logging_steps=1, seed=0, **kw,
    )


def task_precompute_trl(spec):
    """TRL 1.16's own reference precompute (``_precompute_ref_logps``) on the same rows."""
    from datasets import Dataset
    from trl import DPOTrainer
    from trl.trainer.utils import hash_module

    model, tok, _ = load_model(spec["model"], spec.get("cache_dir"))
    ref_model = copy.deepcopy(model)
    rows = make_rows(tok, spec["score_pairs"], seed=0)
    ds = Dataset.from_list(rows)
    pairs_per_batch = spec["score_batch"] // 2  # TRL's batch counts pairs; the collator stacks chosen + rejected
    with tempfile.TemporaryDirectory() as tmp:
        args = _dpo_config(
            tmp, dict(batch=pairs_per_batch, steps=1), 0.1,
            precompute_ref_log_probs=False, precompute_ref_batch_size=pairs_per_batch,
        )
        t = time.perf_counter()
        trainer = DPOTrainer(model, ref_model=ref_model, args=args, train_dataset=ds, processing_class=tok)
        t_init = time.perf_counter() - t  # tokenisation (_prepare_dataset) and set-up
        tokenized = trainer.train_dataset
        short = sorted(range(len(tokenized)), key=lambda i: len(tokenized[i]["prompt_ids"]) + len(tokenized[i]["chosen_ids"]))
        warm = trainer.data_collator([tokenized[i] for i in short[:pairs_per_batch]])
        trainer.compute_ref_log_probs(trainer.ref_model, {k: v.to(_device()) for k, v in warm.items()})  # warm-up
        rss0 = _rss_mb()
        _reset_gpu_peak()
        t = time.perf_counter()
        trainer._precompute_model_hash = hash_module(trainer.ref_model)
        t_hash = time.perf_counter() - t
        from datasets.fingerprint import Hasher

        model_hash = trainer._precompute_model_hash
        times, cache_hit = [], False
        for rep in range(spec["repeats"]):
            # a new hash per repeat: a fresh cache file, so TRL's dataset cache never makes a repeat free
            trainer._precompute_model_hash = f"{model_hash}-{rep}"
            cache_file = tokenized._get_cache_file_path(Hasher.hash((tokenized._fingerprint, trainer._precompute_model_hash)))
            cache_hit = cache_hit or os.path.exists(cache_file)
            _sync()
            t = time.perf_counter()
            out = trainer._precompute_ref_logps(tokenized, "train", pairs_per_batch)
            _sync()
            times.append(time.perf_counter() - t)
        t_precompute = min(times)
    lengths = [len(p) + len(c) for p, c in zip(tokenized["prompt_ids"], tokenized["chosen_ids"])]
    lengths += [len(p) + len(r) for p, r in zip(tokenized["prompt_ids"], tokenized["rejected_ids"])]
    padded = 0
    for i in range(0, len(tokenized), pairs_per_batch):
        j = min(i + pairs_per_batch, len(tokenized))
        longest = max(max(lengths[i:j]), max(lengths[len(tokenized) + i : len(tokenized) + j]))
        padded += 2 * (j - i) * longest
    return {
        "seconds": t_precompute,
        "seconds_all_repeats": times,
        "seconds_hash": t_hash,
        "seconds_tokenize_init": t_init,
        "cache_hit": cache_hit,
        "tokens": sum(lengths),
        "padded_tokens": padded,
        "tokens_per_s": sum(lengths) / t_precompute,
        "rows_kept": len(tokenized),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": rss0,
        "gpu_peak_mb": _gpu_peak_mb(),
        "chosen": list(out["ref_chosen_logps"]),
        "rejected": list(out["ref_rejected_logps"]),
    }


def task_train(spec):
    """One or more training runs (one per beta), live reference (TRL) or precomputed columns (dpolib)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from dpolib.trl_bridge import PrecomputedRefDPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            self.ends.append(time.perf_counter())

    base, tok, _ = load_model(spec["model"], spec.get("cache_dir"))
    del base  # each run loads its own models, so that no spare copy counts in the peak memory
    gc.collect()
    rows = make_rows(tok, spec["batch"] * spec["steps"], seed=1)
    ds = Dataset.from_list(rows)
    if spec["method"] == "precomputed":
        cols = json.loads(Path(spec["columns"]).read_text())
        ds = ds.add_column("ref_chosen_logps", cols["chosen"]).add_column("ref_rejected_logps", cols["rejected"])
    rss0 = _rss_mb()
    runs = []
    _reset_gpu_peak()
    for beta in spec["betas"]:
        t0 = time.perf_counter()
        policy = load_model(spec["model"], spec.get("cache_dir"))[0]  # the same for both methods
        with tempfile.TemporaryDirectory() as tmp:
            args = _dpo_config(tmp, spec, beta)
            timer = StepTimer()
            if spec["method"] == "live":
                trainer = DPOTrainer(
                    policy, ref_model=load_model(spec["model"], spec.get("cache_dir"))[0], args=args, train_dataset=ds, processing_class=tok,
                    callbacks=[timer],
                )
            else:
                trainer = PrecomputedRefDPOTrainer(policy, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer])
            t_init = time.perf_counter() - t0
            torch.manual_seed(0)
            t = time.perf_counter()
            trainer.train()
            t_train = time.perf_counter() - t
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        ends = timer.ends
        steady = (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 else float("nan")
        runs.append(
            {
                "beta": beta,
                "steps": len(ends),
                "seconds_setup": t_init,
                "seconds_train": t_train,
                "seconds_run": time.perf_counter() - t0,
                "steps_per_s": steady,
                "first_step_s": ends[0] - t if ends else float("nan"),
                "losses": losses,
            }
        )
        del trainer, policy
        gc.collect()
    return {"runs": runs, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss0, "gpu_peak_mb": _gpu_peak_mb()}


TASKS = {
    "precompute_dpolib": task_precompute_dpolib,
    "precompute_trl": task_precompute_trl,
    "train": task_train,
}


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    _setup_env(spec.get("threads", 0))
    import torch

    if spec.get("threads", 0) > 0:
        torch.set_num_threads(spec["threads"])
    import logging

    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    result = TASKS[spec["task"]](spec)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- driver


def run_worker(spec: dict, log) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    wall = time.perf_counter() - t
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"worker {spec['task']} failed (exit {proc.returncode})")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["worker_wall_s"] = wall
    log(f"  {spec['task']:<18} {spec.get('method', '')[:11]:<11} done in {wall:6.1f} s")
    return result


def provenance(threads: int) -> dict:
    from dpolib.provenance import git_commit
    import datasets
    import torch
    import transformers
    import trl

    cuda = torch.cuda.is_available()
    return {
        "git_commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})",
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads > 0 else "torch default",
        "load_average_at_start": os.getloadavg(),
    }


def bench_model(name: str, sizes: dict, args, log) -> dict:
    common = {"model": name, "threads": args.threads, "cache_dir": args.cache_dir, "score_pairs": sizes["score_pairs"],
              "score_batch": sizes["score_batch"], "repeats": sizes["repeats"]}
    bs = sizes["score_batch"]
    steps = sizes["steps"]
    measure_sweep = sizes["sweep"] == "measure"
    res = {"model": name, "sizes": sizes}
    with tempfile.TemporaryDirectory() as tmp:
        cols = str(Path(tmp) / "cols.json")
        # (ii) scoring throughput, plus the training set's precompute for (i) and (iii)
        log(f"[{name}] (ii) reference log-probs of {sizes['score_pairs']} pairs, {bs} sequences per forward: TRL, then dpolib")
        trl_pre = run_worker({**common, "task": "precompute_trl"}, log)
        variants = [{"batch_size": bs}] + ([{"batch_size": 64, "max_tokens": "auto"}] if sizes["budget"] else [])
        ours = run_worker(
            {**common, "task": "precompute_dpolib", "variants": variants, "train_pairs": sizes["batch"] * steps,
             "columns_out": cols},
            log,
        )
        values_trl = trl_pre.pop("chosen") + trl_pre.pop("rejected")
        for v in ours["variants"]:
            v["max_abs_logp_diff_vs_trl"] = max(abs(a - b) for a, b in zip(v.pop("chosen") + v.pop("rejected"), values_trl))
        res["description"] = ours.pop("description")
        res["data"] = {"score": ours.pop("score_data"), "train": ours.pop("train_data")}
        res["precompute"] = {"trl": trl_pre, "dpolib": ours, "tokens_same_count": trl_pre["tokens"] == ours["variants"][0]["tokens"]}

        # (i) training, live reference vs precomputed columns; (iii) the beta sweep reuses these workers when measured
        betas = list(BETAS) if measure_sweep else [0.1]
        what = f"x {len(betas)} betas " if measure_sweep else ""
        log(f"[{name}] (i) training {steps} steps x {sizes['batch']} pairs {what}: TRL live reference, then dpolib precomputed")
        tspec = {**common, "task": "train", "batch": sizes["batch"], "steps": steps, "betas": betas}
        live = run_worker({**tspec, "method": "live"}, log)
        pre = run_worker({**tspec, "method": "precomputed", "columns": cols}, log)
    res["train"] = {"trl_live_ref": live, "dpolib_precomputed": pre}
    pick = lambda w: next(r for r in w["runs"] if r["beta"] == 0.1)  # noqa: E731
    lr, pr = pick(live), pick(pre)
    res["train"]["summary"] = {"trl_live_ref": lr, "dpolib_precomputed": pr}
    t_pc = ours["train_set"]["seconds"]
    if measure_sweep:
        with_runs = sum(r["seconds_run"] for r in pre["runs"])
        res["sweep"] = {
            "mode": "measured",
            "seconds_without_precompute": sum(r["seconds_run"] for r in live["runs"]),
            "seconds_training_with_precompute": with_runs,
            "final_losses_without": [r["losses"][-1] for r in live["runs"]],
            "final_losses_with": [r["losses"][-1] for r in pre["runs"]],
        }
    else:
        run_cost = lambda r: r["seconds_setup"] + r["first_step_s"] + (steps - 1) / r["steps_per_s"]  # noqa: E731
        with_runs = len(BETAS) * run_cost(pr)
        res["sweep"] = {
            "mode": "extrapolated from the single runs of (i)",
            "seconds_without_precompute": len(BETAS) * run_cost(lr),
            "seconds_training_with_precompute": with_runs,
        }
    res["sweep"].update(
        betas=list(BETAS), steps_per_run=steps, seconds_precompute=t_pc, seconds_with_precompute=t_pc + with_runs
    )
    return res


def _fmt(x, nd=2):
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}"


def table(res: dict) -> str:
    p, t, s = res["precompute"], res["train"], res["sweep"]
    d = res["data"]["score"]
    live, pre = t["summary"]["trl_live_ref"], t["summary"]["dpolib_precomputed"]
    gpu = t["trl_live_ref"]["gpu_peak_mb"] is not None
    mem_key = "gpu_peak_mb" if gpu else "peak_rss_mb"
    mem_name = "peak GPU memory allocated (MB)" if gpu else "peak RSS of the process (MB)"
    sz = res["sizes"]
    out = []
    w = out.append
    w(f"== {res['model']}: {res['description']}")
    w(
        f"   scoring set: {sz['score_pairs']} pairs = {d['sequences']} sequences, {d['tokens']:,} tokens; sequence length "
        f"median {d['seq_len_median']}, p90 {d['seq_len_p90']}, max {d['seq_len_max']}; response length "
        f"{d['response_len_min']}-{d['response_len_max']} (median {d['response_len_median']}); torch threads {p['dpolib']['torch_threads']}"
    )
    w("")
    w(f"(i) training, {sz['steps']} steps x {sz['batch']} pairs, beta 0.1      TRL live ref   dpolib precomputed   ours/TRL")
    w(f"    steps/s (first step excluded)               {_fmt(live['steps_per_s'], 3):>12}   {_fmt(pre['steps_per_s'], 3):>18}   {pre['steps_per_s'] / live['steps_per_s']:7.2f}x")
    w(f"    train() wall time (s)                       {_fmt(live['seconds_train']):>12}   {_fmt(pre['seconds_train']):>18}   {pre['seconds_train'] / live['seconds_train']:7.2f}x")
    lm, pm = t["trl_live_ref"][mem_key], t["dpolib_precomputed"][mem_key]
    w(f"    {mem_name:<44}{_fmt(lm, 0):>12}   {_fmt(pm, 0):>18}   {pm / lm:7.2f}x")
    if not gpu:
        lb, pb = t["trl_live_ref"]["rss_before_mb"], t["dpolib_precomputed"]["rss_before_mb"]
        w(f"      peak minus RSS before the models (MB)     {_fmt(lm - lb, 0):>12}   {_fmt(pm - pb, 0):>18}   {(pm - pb) / (lm - lb):7.2f}x")
    w(f"    precompute of the {p['dpolib']['train_set']['pairs']} training pairs (s)     {'-':>12}   {_fmt(s['seconds_precompute']):>18}   (separate, not in train time)")
    w(f"    loss at first / last step                   {live['losses'][0]:.4f}/{live['losses'][-1]:.4f}   {pre['losses'][0]:>11.4f}/{pre['losses'][-1]:.4f}")
    w("")
    tr = p["trl"]
    vs = p["dpolib"]["variants"]
    names = [f"dpolib bs={v['batch_size']}" + (f" max_tokens={v['max_tokens']}" if v["max_tokens"] else "") for v in vs]
    w(f"(ii) reference log-probs, {d['sequences']} sequences   {'TRL precompute':>16}" + "".join(f"   {n:>26}" for n in names))
    row = lambda label, a, f: w(f"    {label:<42}{a:>16}" + "".join(f"   {f(v):>26}" for v in vs))  # noqa: E731
    row("tokens/s (real prompt+response tokens)", _fmt(tr["tokens_per_s"], 0), lambda v: _fmt(v["tokens_per_s"], 0))
    row("ratio ours/TRL", "1.00x", lambda v: f"{v['tokens_per_s'] / tr['tokens_per_s']:.2f}x")
    row(f"seconds (best of {sz['repeats']})", _fmt(tr["seconds"]), lambda v: _fmt(v["seconds"]))
    row("padding efficiency (real/padded tokens)", f"{tr['tokens'] / tr['padded_tokens']:.2f}", lambda v: f"{v['tokens'] / v['padded_tokens']:.2f}")
    row("hashing the reference (s, not above)", _fmt(tr["seconds_hash"]), lambda v: _fmt(v["seconds_fingerprint"]))
    row("tokens counted", f"{tr['tokens']:,}", lambda v: f"{v['tokens']:,}")
    row("max |logp - logp_TRL|", "-", lambda v: f"{v['max_abs_logp_diff_vs_trl']:.1e}")
    w(f"    TRL precompute cache hit: {tr['cache_hit']} (must be False)")
    w("")
    ratio = s["seconds_with_precompute"] / s["seconds_without_precompute"]
    w(f"(iii) beta sweep {s['betas']}, {s['steps_per_run']} steps each ({s['mode']})")
    w(f"    without precompute: 6 runs with a live reference       {_fmt(s['seconds_without_precompute'], 1):>8} s")
    w(f"    with precompute: 1 precompute + 6 runs on the columns  {_fmt(s['seconds_with_precompute'], 1):>8} s"
      f"   ours/TRL {ratio:.2f}x  (precompute {s['seconds_precompute']:.1f} s)")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model only, small sizes (about 1 min on 2 cores)")
    parser.add_argument("--model", choices=["tiny", "smollm", "all"], default="all")
    parser.add_argument("--steps", type=int, default=None, help="training steps in (i) and per sweep run (default per model)")
    parser.add_argument("--sweep", choices=["measure", "extrapolate"], default=None, help="(iii) mode (default per model)")
    parser.add_argument("--score-pairs", type=int, default=None, help="pairs scored in (ii)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads per worker (default 1: on a shared 2-core machine more threads oversubscribe "
        "and make timings erratic; 0 = torch's default)",
    )
    parser.add_argument("--cache-dir", default=None, help="dpolib cache root for the converted SmolLM2 (default: $DPOLIB_CACHE or ~/.cache/dpolib)")
    parser.add_argument(
        "--out", default=None,
        help="JSON path (default results/benchmarks/reference_<model>.json, reference_quick.json with --quick; "
        "with several models, _<model> is added to the given name)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0

    _setup_env(args.threads)
    names = ["tiny"] if args.quick else (["tiny", "smollm"] if args.model == "all" else [args.model])
    if args.quick and args.model == "smollm":
        parser.error("--quick runs the tiny model only")
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    prov = provenance(args.threads)
    results = {}
    for name in names:
        sizes = dict((QUICK if args.quick else SIZES)[name])
        for key, val in (("steps", args.steps), ("sweep", args.sweep), ("score_pairs", args.score_pairs)):
            if val is not None:
                sizes[key] = val
        t0 = time.perf_counter()
        results[name] = bench_model(name, sizes, args, log)
        results[name]["wall_s"] = time.perf_counter() - t0
    prov["load_average_at_end"] = os.getloadavg()
    print()
    for name in names:
        print(table(results[name]))
        print()
    wall = time.perf_counter() - t_start
    command = " ".join(["python", "benchmarks/bench_reference.py", *(argv if argv is not None else sys.argv[1:])])
    for name in names:
        label = "quick" if args.quick else name
        if args.out and len(names) > 1:
            out = Path(args.out).with_name(f"{Path(args.out).stem}_{name}{Path(args.out).suffix}")
        else:
            from dpolib import paths

            out = Path(args.out) if args.out else paths.benchmarks_root() / f"reference_{label}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "benchmarks/bench_reference.py",
            "command": command,
            "provenance": prov,
            "config": {"quick": args.quick, "models_in_run": names, "threads": args.threads, "max_length": MAX_LENGTH,
                       "betas": list(BETAS), "sizes": results[name]["sizes"]},
            "wall_s_model": results[name]["wall_s"],
            "wall_s_run": wall,
            "table": table(results[name]),
            "results": results[name],
        }
        out.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {out.relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out}")
    print(f"total wall time {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
