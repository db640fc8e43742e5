"""The paper recipe launched for real: 2 CPU processes (gloo) under ``accelerate launch`` on a tiny model give
the losses, rewards and weights of 1 process at the same global batch and seed; every rank reads its own
rows' reference columns; one record is written, listing both ranks. FSDP on CPU is refused (accelerate)."""

import json
from argparse import Namespace

import pytest
import yaml

from dpolib.hub import launch_check as LC
from dpolib.hub import paper_recipe as PR

#: Float tolerance for per-step metrics and weights between 1 and 2 processes (measured: 0 for loss,
#: grad norm and weights; a few 1e-6 for log-prob means, which are averaged in another order).
TOL = 1e-4


def _assert_equivalent(out, steps):
    """1 process and 2 processes in ``out``: the same trajectory, rows, columns and one record each."""
    diff = LC.compare(out / "single", out / "multi")
    assert diff["steps"] == [steps, steps]
    for key, value in diff.items():
        if key.startswith("max_diff/"):
            assert value <= TOL, (key, value)
    assert diff["max_change/weights"] > 100 * TOL  # the weights moved, so equal weights mean something
    assert diff["same_rows_per_step"] and diff["same_best_checkpoint"] and diff["best_is_selected_checkpoint"]

    single, multi = LC.run_record(out / "single"), LC.run_record(out / "multi")  # exactly one record per run
    LC.check_launch(multi, "ddp", 2)
    ranks = multi["provenance"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["backend"] for r in ranks} == {"gloo"}
    assert len({r["pid"] for r in ranks}) == 2
    assert single["launch"]["global_batch"] == multi["launch"]["global_batch"] == LC.TINY_RECIPE["total_batch_size"]
    assert (single["launch"]["gradient_accumulation_steps"], multi["launch"]["gradient_accumulation_steps"]) == (2, 1)
    # each rank trained on its own shard: disjoint rows at every step, all rows of the global batch between them
    by_rank = [{step: rows for step, rows in r["batches"]} for r in ranks]
    for step in range(steps):
        a, b = by_rank[0][step], by_rank[1][step]
        assert len(a) == len(b) == 2 and not set(a) & set(b)
    assert sum(r["rows"] for r in ranks) == steps * LC.TINY_RECIPE["total_batch_size"]
    assert all(r["unmatched_rows"] == 0 and r["column_mismatches"] == 0 for r in ranks)


def test_two_processes_match_one_process(tmp_path):
    """Fast variant: precompute and the 1-process run in this process, the 2-process run launched, 2 steps."""
    world = LC.build_world(tmp_path / "world")
    argv = LC.recipe_argv(tmp_path, world, steps=2)
    assert PR.main(argv["precompute"]) == 0
    LC.share_data(tmp_path, world)
    assert PR.main(argv["single"]) == 0
    LC.launch(argv["multi"], tmp_path / "multi.log")
    _assert_equivalent(tmp_path, steps=2)


@pytest.mark.slow
def test_launch_check_cli_ddp(tmp_path):
    """The documented command, every step a process of its own, 4 steps with a checkpoint choice."""
    assert LC.main(["--out", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "configs/accelerate/cpu_ddp.yaml" in report["commands"]["train_2_processes"]
    _assert_equivalent(tmp_path / "run", steps=LC.TINY_RECIPE["max_steps"])


@pytest.mark.slow
def test_fsdp_on_cpu_is_refused_not_silently_ddp(tmp_path):
    """accelerate 1.16 applies FSDP only on GPU-like devices: on CPU the launch trains as DDP, and the check says so."""
    with pytest.raises(RuntimeError, match="not exercised.*FSDP on only for GPU"):
        LC.run(tmp_path / "run", launcher="fsdp", single=False, steps=1)


# -- fast checks of the pieces, no launch ------------------------------------------------------------


def test_cpu_accelerate_configs_parse_and_keep_the_global_batch():
    from accelerate.commands.config.config_args import load_config_from_file

    for launcher, path in LC.LAUNCHERS.items():
        config = load_config_from_file(str(LC.ROOT / path))
        raw = yaml.safe_load((LC.ROOT / path).read_text())
        assert config.num_processes == 2 and raw["mixed_precision"] == "no" and raw["use_cpu"] is False
        assert config.distributed_type.value == {"ddp": "MULTI_GPU", "fsdp": "FSDP"}[launcher]  # torchrun starts them
        tiny = LC.TINY_RECIPE
        assert tiny["total_batch_size"] % (config.num_processes * tiny["per_device_train_batch_size"]) == 0
    fsdp = yaml.safe_load((LC.ROOT / LC.LAUNCHERS["fsdp"]).read_text())["fsdp_config"]
    assert fsdp["fsdp_sync_module_states"] is False  # True raises on CPU in accelerate's FSDP plugin


def test_recipe_overrides_and_cpu_mode():
    args = Namespace(out="r", student="mistral", reference="self", beta=0.1, num_processes=2, dtype="float32",
                     attn=None, cpu=True, model="/tmp/tiny/student",
                     set=["total_batch_size=4", "per_device_train_batch_size=2", "max_steps=3", "learning_rate=0.01"])
    config = PR.train_args(args)
    assert (config["bf16"], config["use_cpu"], "tf32" in config) == (False, True, False)
    assert (config["max_steps"], config["gradient_accumulation_steps"], config["learning_rate"]) == (3, 1, 0.01)
    assert config["output_dir"].endswith("student-self-beta0.1")  # named after the --model folder
    assert PR.train_args(Namespace(**{**vars(args), "cpu": False, "set": None}))["tf32"] is True
    with pytest.raises(ValueError, match="KEY one of"):
        PR.train_args(Namespace(**{**vars(args), "set": ["epochs=1"]}))


def test_check_launch_names_what_was_not_exercised():
    rank = dict(distributed_type="DistributedType.MULTI_CPU", unmatched_rows=0, column_mismatches=0)
    record = {"provenance": {"ranks": [dict(rank, rank=0), dict(rank, rank=1)]}}
    LC.check_launch(record, "ddp", 2)
    with pytest.raises(RuntimeError, match="not exercised"):
        LC.check_launch(record, "fsdp", 2)
    with pytest.raises(ValueError, match="expected 0..2"):
        LC.check_launch(record, "ddp", 3)
    record["provenance"]["ranks"][1]["column_mismatches"] = 1
    with pytest.raises(ValueError, match=r"rank\(s\) \[1\]"):
        LC.check_launch(record, "ddp", 2)
