"""Paper scale: the accelerate configs parse, the documented command names existing files, the recipe's
settings are the paper's and valid DPOConfig fields; the throughput benchmark runs on CPU (--cpu-smoke)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dpolib.hub import paper_recipe as PR

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"zero3": "DEEPSPEED", "fsdp": "FSDP", "single_gpu": "NO"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    config = load_config_from_file(str(path))  # accelerate's own loader and validation
    assert config.distributed_type.value == CONFIGS[name] and raw["mixed_precision"] == "bf16"
    assert config.num_processes in (1, 8)
    if name == "zero3":
        assert raw["deepspeed_config"]["zero_stage"] == 3
    if name == "fsdp":
        assert raw["fsdp_config"]["fsdp_sharding_strategy"] == "FULL_SHARD"
    # 8 processes x 4 pairs per GPU = the paper's 32 pairs per step
    assert 32 % (config.num_processes * PR.RECIPE["per_device_train_batch_size"]) == 0


def _referenced_files(text: str) -> set[str]:
    return set(re.findall(r"(?:configs|scripts|benchmarks)/[\w./-]+\.(?:yaml|sh|py)", text))


def test_documented_commands_name_existing_files():
    script = (ROOT / "scripts" / "paper_scale.sh").read_text()
    book = (ROOT / "book" / "reproduce_paper_scale.md").read_text()
    named = _referenced_files(script) | _referenced_files(book)
    named |= {f"configs/accelerate/{n}.yaml" for n in CONFIGS}
    assert "configs/accelerate/zero3.yaml" in _referenced_files(book)
    missing = [f for f in sorted(named) if not (ROOT / f).exists() and "${" not in f]
    assert not missing, f"named but missing: {missing}"
    assert 'configs/accelerate/${LAUNCHER}.yaml' in script
    assert "python -m dpolib.hub.paper_recipe" in book and "accelerate launch --config_file" in book
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "paper_scale.sh")]).returncode == 0


def test_paper_script_dry_run_resolves_the_papers_recipe(tmp_path):
    env = {"DRY_RUN": "1", "PYTHON": sys.executable, "BETAS": "0.01", "OUT": str(tmp_path), "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "paper_scale.sh")], env=env, capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    plans = [json.loads(chunk) for chunk in re.split(r"(?m)^(?=\{)", done.stdout) if chunk.strip()]
    assert [p["step"] for p in plans] == ["precompute", "train", "evaluate"]
    train = plans[1]["dpo_config"]
    assert plans[1]["student"] == "HuggingFaceH4/mistral-7b-sft-beta"
    assert (train["learning_rate"], train["num_train_epochs"], train["warmup_steps"]) == (5e-7, 3, 0.1)
    assert train["per_device_train_batch_size"] * train["gradient_accumulation_steps"] * 8 == 32
    assert (train["eval_steps"], train["metric_for_best_model"], train["load_best_model_at_end"]) == (500, "eval_loss", True)
    assert train["beta"] == 0.01 and train["max_length"] == 2048 and train["max_grad_norm"] == 1.0


def test_recipe_fields_are_dpo_config_fields_and_grids_are_the_papers():
    from argparse import Namespace

    from trl import DPOConfig

    args = PR.train_args(Namespace(out="runs", student="tulu2", reference="llama3", beta=1.0, num_processes=4,
                                   dtype="bfloat16", attn=None))
    unknown = [k for k in args if k not in DPOConfig.__dataclass_fields__]
    assert not unknown
    assert args["gradient_accumulation_steps"] == 2  # 4 GPUs x 4 pairs x 2 = 32
    assert PR.PAPER_BETAS["self"] == (0.1, 0.05, 0.02, 0.01, 0.005)
    assert PR.PAPER_BETAS["llama3"] == PR.PAPER_BETAS["mistralv2"] == (10.0, 1.0, 0.1, 0.01, 0.005)
    with pytest.raises(ValueError, match="do not divide"):
        PR.train_args(Namespace(out="r", student="mistral", reference="self", beta=0.1, num_processes=3,
                                dtype="bfloat16", attn=None))


def test_throughput_benchmark_cpu_smoke(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu_throughput as bench

    report = bench.main(["--cpu-smoke", "--out", str(tmp_path / "bench.json")])
    arms = {a["arm"]: a for a in report["arms"]}
    pre, live = arms["precomputed (dpolib + TRL)"], arms["live reference (TRL)"]
    assert pre["tokens_per_s"] > 0 and live["tokens_per_s"] > 0 and report["speedup_tokens_per_s"] > 0
    assert pre["peak_gpu_memory_gib"] is None and pre["mfu"] is None  # no GPU: not reported
    assert abs(pre["final_loss"] - live["final_loss"]) < 1e-4  # the same trajectory, precomputed or live
    assert json.loads((tmp_path / "bench.json").read_text())["steps"] == 3


def test_book_estimates_match_the_estimate_function():
    from dpolib.hub.profile import ASSUMED_TFLOPS, estimate

    book = (ROOT / "book" / "reproduce_paper_scale.md").read_text()
    rows = re.findall(r"^\| (T4|L4|A100|H100)\b[^|]*\| (\d+) \| about (\d+) min \|$", book, flags=re.M)
    assert len(rows) == 4 and "estimate" in book.lower()
    for gpu, tflops, minutes in rows:
        assert float(tflops) == ASSUMED_TFLOPS[gpu]
        assert abs(int(minutes) - estimate(gpu=gpu)["estimated_minutes"]) <= 3, gpu
