"""dpolib.hub.profile and the gpu grids: same arms and β grids as the cpu world, keys, runtime choices."""

import pytest

from dpolib.experiments.config import BETAS, SWEEP_GRIDS, sweep_grid
from dpolib.experiments.gpu import GpuBackend
from dpolib.experiments.records import record_path
from dpolib.hub import profile as P


def grid(name, seeds=(0,)):
    return sweep_grid(name, "gpu", seeds)


def _arms(configs):
    return sorted({(c.objective, c.reference, c.beta) for c in configs}, key=str)


@pytest.mark.parametrize("name", [g for g in SWEEP_GRIDS if g != "controls"])
def test_gpu_grids_have_the_cpu_grids_structure(name):
    gpu = grid(name, seeds=(0, 1))
    cpu = sweep_grid(name, "cpu", seeds=(0, 1))
    assert all(c.profile == "gpu" and c.student == P.GPU_PROFILE.student for c in gpu)
    assert _arms(gpu) == _arms(cpu)  # same objectives, references and betas, arm by arm
    assert {c.seed for c in gpu} == {0, 1}
    assert len(set(gpu)) == len(gpu)


def test_rq1_is_the_papers_qwen2_grid_and_unknown_grid_is_refused():
    # App. B's Table 6 grid, widened to RQ3's 10 and 1 so that RQ3 and App. E reuse RQ1's self-reference runs
    assert BETAS["rq1"] == (10.0, 1.0, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001)
    assert BETAS["rq3"] == (10.0, 1.0, 0.1, 0.01, 0.005) and set(BETAS["rq3"]) <= set(BETAS["rq1"])
    with pytest.raises(ValueError, match="unknown sweep grid"):
        grid("rq9")
    with pytest.raises(ValueError, match="on-policy control is the cpu world's"):
        grid("controls")


def test_keys_follow_the_profile_not_the_device(tmp_path):
    config = grid("rq1")[1]
    k = config.key(P.GPU_PROFILE)
    assert k == config.key(P.get_gpu_profile()) and len(k) == 16
    assert config.key(P.get_gpu_profile(n_pref_train=1000)) != k
    assert config.key(P.get_gpu_profile(lora=True)) != k
    assert record_path(config, root=tmp_path) == tmp_path / "gpu" / f"{k}.json"
    judged = GpuBackend(judge="alpaca_eval", runtime=P.runtime_for(P.GPU_PROFILE, device="cpu"))
    assert record_path(config, tmp_path, judged.settings, judged.record_suffix).name == f"{k}-alpaca_eval.json"
    with pytest.raises(ValueError, match="judge must be one of"):
        GpuBackend(judge="gpt4", runtime=P.runtime_for(P.GPU_PROFILE, device="cpu"))
    assert "micro_batch_size" not in P.GPU_PROFILE.to_dict()  # hardware choices stay out of the key


def test_the_student_is_a_base_model_and_references_mirror_the_paper():
    p = P.GPU_PROFILE
    assert "Instruct" not in p.student_base  # an SFT student made from a base model, not a preference-tuned one
    assert p.compatible_reference.split("/")[1].startswith("Qwen2.5")  # same family and tokenizer
    assert not p.incompatible_reference.split("/")[1].startswith("Qwen")  # other family and tokenizer
    assert p.dpo_steps == 192 and p.dpo_batch_size == 32 and p.dpo_warmup_ratio == 0.1
    assert p.sft_dict()["student_base"] == p.student_base


def test_cpu_runtime_and_batch_split():
    rt = P.runtime_for(P.GPU_PROFILE, device="cpu")
    assert not rt.bf16 and not rt.fp16 and rt.autocast.startswith("none")
    assert rt.micro_batch_size * rt.gradient_accumulation_steps == 32
    args = rt.trainer_args(32, True)
    assert args["per_device_train_batch_size"] * args["gradient_accumulation_steps"] == 32
    assert any(k.endswith("checkpointing_kwargs") for k in args)
    sft = rt.trainer_args(24, False, sequences_per_item=1)
    assert 24 % sft["per_device_train_batch_size"] == 0 and not any(k.endswith("_kwargs") for k in sft)
    for memory, lora in ((15, False), (24, False), (80, False), (15, True)):
        micro = P._micro_batch(32, memory, lora)
        assert 32 % micro == 0 and 1 <= micro <= 32


def test_estimates_are_labelled():
    e = P.estimate(gpu="T4")
    assert e["is_estimate"] is True and e["estimated_minutes"] > P.estimate(gpu="H100")["estimated_minutes"] > 0
