"""The paper recipe under ``accelerate launch`` on CPU: several processes, checked against one.

``configs/accelerate/{zero3,fsdp}.yaml`` are for GPU nodes. This module runs the same
:mod:`dpolib.hub.paper_recipe` code (precomputed reference columns, ``PrecomputedRefDPOTrainer``,
checkpoint selection by validation loss, the record writer) with 2 CPU processes over gloo, on a
tiny model and data built here offline, and compares it with 1 process at the same global batch
and seed::

    python -m dpolib.hub.launch_check --out runs/launch_cpu              # DDP, 2 processes
    python -m dpolib.hub.launch_check --out runs/launch_cpu --launcher fsdp

Steps (each command is printed and kept in the report):

1. :func:`build_world`: a tiny Llama with a character tokenizer and an UltraFeedback-shaped
   dataset (``train_prefs`` / ``test_prefs``), written as local folders.
2. ``python -m dpolib.hub.paper_recipe precompute --model <world>/student --cpu ...``: the
   reference columns, once, in one process (as at paper scale).
3. ``python -m dpolib.hub.paper_recipe train ... --num-processes 1``: one process, gradient
   accumulation over the global batch.
4. ``accelerate launch --config_file configs/accelerate/cpu_ddp.yaml -m dpolib.hub.paper_recipe train``:
   the same global batch as 2 processes x fewer accumulation steps.
5. :func:`compare`: per-step losses and rewards, validation losses, the selected checkpoint and
   the final weights; each rank's column audit (:class:`ColumnAuditTrainer`); one record.

Each process gets one torch thread (``OMP_NUM_THREADS=1``), so two processes fit two cores.

``--launcher fsdp`` (``configs/accelerate/cpu_fsdp.yaml``) is refused by :func:`check_launch`: accelerate
1.16 turns FSDP on only for GPU-like devices, so on CPU that launch trains as plain DDP (with the GPU
config's ``fsdp_sync_module_states: true`` it fails at start instead: "FSDP parameter initialization with
`sync_module_states=True` is not supported on cpu"). ZeRO-3 needs GPUs and DeepSpeed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..provenance import provenance, write_json
from ..trl_bridge import PrecomputedRefDPOTrainer

__all__ = ["ColumnAuditTrainer", "TINY_RECIPE", "LAUNCHERS", "build_world", "recipe_argv", "share_data", "launch_argv",
           "launch", "run_record", "check_launch", "compare", "run", "main"]

ROOT = Path(__file__).resolve().parents[2]
#: The recipe at toy size, 4 pairs a step (1 process x 2 pairs x 2 accumulation, or 2 x 2 x 1),
#: 4 steps over 16 pairs, validation every 2 steps (the best of two checkpoints is kept).
TINY_RECIPE = dict(total_batch_size=4, per_device_train_batch_size=2, max_steps=4, eval_steps=2, logging_steps=1,
                   learning_rate=1e-2, max_length=128, warmup_ratio=0.0, seed=18890426)
LAUNCHERS = {"ddp": "configs/accelerate/cpu_ddp.yaml", "fsdp": "configs/accelerate/cpu_fsdp.yaml"}
#: Logged per step by TRL (and the Trainer's loss), compared between the launches.
COMPARED = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected")


# --------------------------------------------------------------------------- the tiny world

_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
_FRUIT = ["apples", "pears", "plums", "figs"]


def _tokenizer():
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + list(string.ascii_lowercase + string.digits + " .,:?!\n"))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # one token per character
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = _TEMPLATE
    return fast


def _pairs(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        a, b, k = (int(torch.randint(1, 9, (1,), generator=g)) for _ in range(3))
        fruit = _FRUIT[i % len(_FRUIT)]
        q = f"i have {a} {fruit} and get {b} more. how many?"
        good, bad = f"{a + b} {fruit}.", "well, " * (1 + k % 3) + f"maybe {a + b + k}."
        rows.append({"prompt": q, "prompt_id": f"{seed}-{i}", "score_chosen": 8.0, "score_rejected": 3.0,
                     "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
                     "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}]})
    return rows


def build_world(root: str | os.PathLike, n_train: int = 16, n_validation: int = 8) -> dict:
    """A tiny Llama student (2 layers, width 32) and UltraFeedback-shaped pairs, written offline under ``root``."""
    from datasets import Dataset, DatasetDict
    from transformers import LlamaConfig, LlamaForCausalLM

    root = Path(root)
    tok = _tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(root / "student")
    tok.save_pretrained(root / "student")
    DatasetDict({"train_prefs": Dataset.from_list(_pairs(n_train, 0)),
                 "test_prefs": Dataset.from_list(_pairs(n_validation, 1))}).save_to_disk(str(root / "ultrafeedback"))
    return {"student": str(root / "student"), "dataset": str(root / "ultrafeedback")}


# --------------------------------------------------------------------------- the column audit


class ColumnAuditTrainer(PrecomputedRefDPOTrainer):
    """``PrecomputedRefDPOTrainer`` that records, for every training batch this rank computes a loss on,
    which dataset rows it holds and whether the ``ref_chosen_logps`` / ``ref_rejected_logps`` that came
    with them are those rows' own values.

    Rows are found by their tokens (prompt + chosen, prompt + rejected), so the check does not trust
    the order the sampler, the sharding or the collator put them in. ``column_audit`` (a dict) goes into
    the rank's provenance entry of the run's record.
    """

    def _row_index(self) -> dict:
        cut = slice(None, self.args.max_length)
        index: dict = {}
        for i, row in enumerate(self.train_dataset):
            key = (tuple((row["prompt_ids"] + row["chosen_ids"])[cut]), tuple((row["prompt_ids"] + row["rejected_ids"])[cut]))
            index.setdefault(key, []).append(i)
        return index

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self._audit(inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _audit(self, inputs) -> None:
        if not hasattr(self, "column_audit"):
            self._index = self._row_index()
            self.column_audit = {"batches": [], "rows": 0, "unmatched_rows": 0, "column_mismatches": 0}
        ids, mask = inputs["input_ids"].cpu(), inputs["attention_mask"].cpu().bool()
        half = ids.shape[0] // 2  # chosen rows first, then the rejected rows of the same pairs
        ref = {c: inputs[c].detach().cpu() for c in ("ref_chosen_logps", "ref_rejected_logps")}
        rows = []
        for i in range(half):
            key = (tuple(ids[i][mask[i]].tolist()), tuple(ids[half + i][mask[half + i]].tolist()))
            found = self._index.get(key)
            if not found:
                self.column_audit["unmatched_rows"] += 1
                rows.append(None)
                continue
            j = found[0]  # identical tokens have identical reference values
            rows.append(j)
            row = self.train_dataset[j]
            for c, values in ref.items():  # the dataset's value cast as the batch's: must be equal, bit for bit
                if torch.tensor(row[c], dtype=values.dtype) != values[i]:
                    self.column_audit["column_mismatches"] += 1
        self.column_audit["rows"] += half
        self.column_audit["batches"].append([self.state.global_step, rows])


# --------------------------------------------------------------------------- comparing two runs


def _max_diff(a, b) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def _rows_per_step(record: dict) -> dict[int, list[int]]:
    """Optimizer step -> the sorted rows trained on at that step, over every rank and micro-batch."""
    steps: dict[int, list] = {}
    for rank in record["provenance"]["ranks"]:
        for step, rows in rank.get("batches", []):
            steps.setdefault(step, []).extend(rows)
    return {s: sorted(r, key=lambda x: -1 if x is None else x) for s, r in sorted(steps.items())}


def compare(single: str | os.PathLike, multi: str | os.PathLike) -> dict:
    """Largest differences between two runs of the recipe (output folders): per-step losses and TRL's
    rewards and log-probs, validation losses, and the final (selected) weights; whether both trained on
    the same rows at every step and selected the same checkpoint."""
    from safetensors.torch import load_file

    runs = [next(Path(d).rglob("record.json")).parent for d in (single, multi)]
    hist = [json.loads((r / "log_history.json").read_text()) for r in runs]
    records = [json.loads((r / "record.json").read_text()) for r in runs]
    train = [[h for h in hh if "loss" in h] for hh in hist]
    out = {"steps": [len(t) for t in train]}
    for key in COMPARED:
        out[f"max_diff/{key}"] = _max_diff([h[key] for h in train[0]], [h[key] for h in train[1]])
    out["max_diff/eval_loss"] = _max_diff([v for _, v in records[0]["eval_loss"]], [v for _, v in records[1]["eval_loss"]])
    weights = [load_file(str(r / "best" / "model.safetensors")) for r in runs]
    if weights[0].keys() != weights[1].keys():
        raise ValueError(f"the two runs saved different tensors: {sorted(weights[0].keys() ^ weights[1].keys())}")
    out["max_diff/weights"] = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    initial = load_file(str(Path(records[0]["student"]) / "model.safetensors"))
    out["max_change/weights"] = max(float((weights[0][k] - initial[k]).abs().max()) for k in initial)
    out["same_rows_per_step"] = _rows_per_step(records[0]) == _rows_per_step(records[1])
    out["same_best_checkpoint"] = records[0]["best_checkpoint"] == records[1]["best_checkpoint"]
    # load_best_model_at_end: the saved weights are the selected checkpoint's, in both runs
    out["best_is_selected_checkpoint"] = all(
        all(torch.equal(w[k], v) for k, v in load_file(str(r / rec["best_checkpoint"] / "model.safetensors")).items())
        for r, rec, w in zip(runs, records, weights))
    return out


# --------------------------------------------------------------------------- running it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accelerate() -> list[str]:
    exe = Path(sys.executable).parent / "accelerate"
    return [str(exe), "launch"] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


def _show(cmd: list[str]) -> str:
    """The command as typed from the repository root in the activated environment."""
    exe = {sys.executable: "python", str(Path(sys.executable).parent / "accelerate"): "accelerate"}
    return " ".join(exe.get(c, c.replace(f"{ROOT}/", "")) for c in cmd)


def _run(cmd: list[str], log: Path, env: dict) -> float:
    print("$", _show(cmd), flush=True)
    start = time.time()
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.time() - start
    if done.returncode:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"exit {done.returncode} after {wall:.1f} s: {' '.join(cmd)}\n--- {log} (tail) ---\n{tail}")
    return wall


#: The ``distributed_type`` each launcher must give every rank; anything else means it was not exercised.
EXPECTED_TYPE = {"ddp": "DistributedType.MULTI_CPU", "fsdp": "DistributedType.FSDP"}
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}


def recipe_argv(out: str | os.PathLike, world: dict, *, steps: int | None = None, beta: float = 0.1) -> dict:
    """The ``dpolib.hub.paper_recipe`` arguments of the check: ``precompute`` (into ``out/data``), and ``train``
    for the one-process run (``out/single``) and the launched one (``out/multi``). Both train runs read the one
    precomputed copy (:func:`share_data` links it)."""
    out = Path(out)
    recipe = dict(TINY_RECIPE, dataset=world["dataset"], **({"max_steps": steps} if steps else {}))
    common = ["--model", world["student"], "--reference", "self", "--cpu",
              *(a for k, v in recipe.items() for a in ("--set", f"{k}={v}"))]
    train = ["train", *common, "--beta", f"{beta:g}", "--dtype", "float32", "--audit-columns"]
    return {"precompute": ["precompute", *common, "--out", str(out / "data")],
            "single": [*train, "--num-processes", "1", "--out", str(out / "single")],
            "multi": [*train, "--out", str(out / "multi")]}


def share_data(out: str | os.PathLike, world: dict) -> None:
    """Link the precomputed data (``out/data``) into both train runs' folders."""
    out = Path(out)
    name = f"{Path(world['student']).name}-self"
    for run_dir in ("single", "multi"):
        (out / run_dir / "data").mkdir(parents=True, exist_ok=True)
        (out / run_dir / "data" / name).symlink_to((out / "data" / "data" / name).resolve())


def launch_argv(launcher: str = "ddp", num_processes: int = 2, port: int | None = None) -> list[str]:
    """``accelerate launch --config_file configs/accelerate/cpu_<launcher>.yaml ... -m dpolib.hub.paper_recipe``."""
    return _accelerate() + ["--config_file", LAUNCHERS[launcher], "--num_processes", str(num_processes),
                            "--main_process_port", str(port or _free_port()), "-m", "dpolib.hub.paper_recipe"]


def launch(argv: list[str], log: str | os.PathLike, *, launcher: str = "ddp", num_processes: int = 2) -> float:
    """Run the recipe under ``accelerate launch`` (from the repository root, ``OMP_NUM_THREADS=1``); wall seconds."""
    return _run(launch_argv(launcher, num_processes) + argv, Path(log), {**os.environ, **ENV})


def run_record(run_dir: str | os.PathLike) -> dict:
    """The one ``record.json`` of a train run folder (``out/single`` or ``out/multi``)."""
    found = sorted(Path(run_dir).rglob("record*.json"))
    if len(found) != 1:
        raise ValueError(f"{run_dir}: expected exactly one record, found {[str(p) for p in found]}")
    return json.loads(found[0].read_text())


def check_launch(record: dict, launcher: str, num_processes: int) -> None:
    """Raise unless every rank of the launch ran as ``launcher`` asks and read only its rows' own columns."""
    ranks = record["provenance"]["ranks"]
    if sorted(r["rank"] for r in ranks) != list(range(num_processes)):
        raise ValueError(f"the record lists ranks {[r['rank'] for r in ranks]}, expected 0..{num_processes - 1}")
    seen = {r["distributed_type"] for r in ranks}
    if seen != {EXPECTED_TYPE[launcher]}:
        raise RuntimeError(
            f"--launcher {launcher} ran as {sorted(seen)}, not {EXPECTED_TYPE[launcher]}: it was not exercised. "
            "accelerate (1.16) turns FSDP on only for GPU-like devices; on CPU the same launch trains with DDP. "
            "Use --launcher ddp here and configs/accelerate/fsdp.yaml on GPUs."
        )
    bad = [r["rank"] for r in ranks if r.get("unmatched_rows") or r.get("column_mismatches")]
    if bad:
        raise ValueError(f"rank(s) {bad} trained on reference columns that are not their rows' own")


def run(out: str | os.PathLike, *, launcher: str = "ddp", num_processes: int = 2, steps: int | None = None,
        single: bool = True, beta: float = 0.1) -> dict:
    """Build the world, precompute, train with ``num_processes`` under ``accelerate launch`` (and with one
    plain process unless ``single=False``), check and compare; returns (and writes to ``out/report.json``) the
    report. Raises when the launch did not run as asked (:func:`check_launch`)."""
    start = time.time()
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = {**os.environ, **ENV}
    world = build_world(out / "world")
    argv = recipe_argv(out, world, steps=steps, beta=beta)
    py = [sys.executable, "-m", "dpolib.hub.paper_recipe"]
    report: dict = {"launcher": launcher, "num_processes": num_processes, "commands": {}, "wall_s": {}}
    plan = [("precompute", py + argv["precompute"])]
    if single:
        plan.append(("train_1_process", py + argv["single"]))
    plan.append((f"train_{num_processes}_processes", launch_argv(launcher, num_processes) + argv["multi"]))
    for name, cmd in plan:
        report["commands"][name] = _show(cmd)
        report["wall_s"][name] = round(_run(cmd, out / f"{name}.log", env), 1)
        if name == "precompute":
            share_data(out, world)
    multi = run_record(out / "multi")
    report["ranks"] = [{f: r.get(f) for f in ("rank", "world_size", "distributed_type", "backend", "rows",
                                         "unmatched_rows", "column_mismatches")} for r in multi["provenance"]["ranks"]]
    report["global_batch"] = multi["launch"]["global_batch"]
    if single:
        report["compare"] = compare(out / "single", out / "multi")
    report["wall_s"]["total"] = round(time.time() - start, 1)
    report["provenance"] = provenance(load_average_1min=round(os.getloadavg()[0], 2))
    write_json(out / "report.json", report)
    check_launch(multi, launcher, num_processes)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpolib.hub.launch_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/launch_cpu")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="ddp")
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {TINY_RECIPE['max_steps']})")
    parser.add_argument("--no-single", action="store_true", help="skip the one-process run and the comparison")
    parser.add_argument("--report", default=None, help="also write the report here (e.g. under results/benchmarks/)")
    args = parser.parse_args(argv)
    report = run(args.out, launcher=args.launcher, num_processes=args.num_processes, steps=args.steps,
                 single=not args.no_single)
    if args.report:
        write_json(args.report, report)
    print(json.dumps({k: v for k, v in report.items() if k != "provenance"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
