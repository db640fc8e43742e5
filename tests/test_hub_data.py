"""dpolib.hub.data: the loaders on fixtures in the hub's formats (no network)."""

import json

import hub_fixtures as F
import pytest
import tiny
from datasets import Dataset, DatasetDict

from dpolib.encoding import encode
from dpolib.hub.data import alpaca_eval_prompts, load_split, ultrachat_conversations, ultrafeedback_pairs


def test_ultrafeedback_rows_become_trl_conversational_pairs(tmp_path):
    DatasetDict({"train_prefs": Dataset.from_list(F.ultrafeedback_rows(20, 0))}).save_to_disk(str(tmp_path / "uf"))
    ds = ultrafeedback_pairs(str(tmp_path / "uf"), "train_prefs", 10, seed=0)
    assert len(ds) == 10 and {"prompt", "chosen", "rejected", "prompt_id"} <= set(ds.column_names)
    row = ds[0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant" and len(row["chosen"]) == 1
    assert all(r["score_chosen"] != r["score_rejected"] for r in ds)  # ties skipped
    again = ultrafeedback_pairs(str(tmp_path / "uf"), "train_prefs", 10, seed=0)
    assert again["prompt_id"] == ds["prompt_id"]  # deterministic subset
    assert ultrafeedback_pairs(str(tmp_path / "uf"), "train_prefs", 10, seed=1)["prompt_id"] != ds["prompt_id"]
    with pytest.raises(ValueError, match="only 16 of the requested 30"):
        ultrafeedback_pairs(str(tmp_path / "uf"), "train_prefs", 30)
    assert len(ultrafeedback_pairs(str(tmp_path / "uf"), "train_prefs", 30, allow_fewer=True)) == 16


def test_length_filter_keeps_only_pairs_that_fit_the_student():
    tok = tiny.bpe_tokenizer()
    raw = Dataset.from_list(F.ultrafeedback_rows(20, 0))
    lengths = sorted(len(encode(tok, r["prompt"], r["rejected"]).input_ids) for r in ultrafeedback_pairs(raw, "x", None))
    limit = lengths[len(lengths) // 2]
    kept = ultrafeedback_pairs(raw, "x", None, tokenizer=tok, max_length=limit)
    assert 0 < len(kept) < len(lengths)
    for r in kept:
        assert max(len(encode(tok, r["prompt"], r[c]).input_ids) for c in ("chosen", "rejected")) <= limit


def test_ultrachat_keeps_well_formed_conversations():
    ds = ultrachat_conversations(DatasetDict({"train_sft": Dataset.from_list(F.ultrachat_rows(12, 0))}), "train_sft", 9)
    assert ds.column_names == ["messages"] and len(ds) == 9
    assert all(m["messages"][-1]["role"] == "assistant" for m in ds)
    with pytest.raises(ValueError, match="only 9 of the requested 10"):
        ultrachat_conversations(Dataset.from_list(F.ultrachat_rows(12, 0)), "train_sft", 10)


def test_alpaca_eval_prompts_from_a_json_file(tmp_path):
    path = tmp_path / "alpaca_eval_gpt4_baseline.json"
    path.write_text(json.dumps(F.alpaca_rows(5)))
    prompts = alpaca_eval_prompts(str(path), 3)
    assert [p["instruction"] for p in prompts] == [r["instruction"] for r in F.alpaca_rows(3)]
    assert prompts[0]["generator"] == "gpt4_1106_preview" and prompts[0]["output"].startswith("the answer")
    with pytest.raises(ValueError, match="the set has 5"):
        alpaca_eval_prompts(str(path), 6)


def test_a_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline"):
        load_split("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")
    with pytest.raises(KeyError, match="train_prefs"):
        load_split(DatasetDict({"test": Dataset.from_list([{"a": 1}])}), "train_prefs")
