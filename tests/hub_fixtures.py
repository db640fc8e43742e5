"""A miniature of the gpu profile's world, built offline in a temp dir: models, tokenizers and data files.

* ``base``: a tiny Llama with a ChatML BPE tokenizer (the "base model" the student is SFT'd from);
* ``compatible``: a larger tiny Llama with the same tokenizer (same family);
* ``incompatible``: a tiny GPT-2 with a character tokenizer and another chat template (other family);
* ``judge``: a tiny ``LlamaForSequenceClassification`` reward model (``num_labels=1``);
* UltraFeedback-binarized, UltraChat (``save_to_disk`` folders with the hub's split names) and
  AlpacaEval (a ``.json`` list like ``alpaca_eval_gpt4_baseline.json``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import tiny
import torch

ITEMS = ["apples", "pears", "plums", "grapes", "lemons", "figs"]


def _question(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    fruit = rng.choice(ITEMS)
    return f"i have {a} {fruit} and get {b} more. how many {fruit}?", f"{a + b} {fruit}.", f"of course! maybe {a + b + 1} {fruit}, or more."


def ultrafeedback_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q, good, bad = _question(rng)
        rows.append({
            "prompt": q, "prompt_id": f"p{seed}-{i}",
            "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
            "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}],
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
            "score_chosen": 8.0, "score_rejected": 3.0 if i % 5 else 8.0,  # every 5th row is a tie (skipped)
        })
    return rows


def ultrachat_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q, good, _ = _question(rng)
        messages = [{"role": "user", "content": q}, {"role": "assistant", "content": good}]
        if i % 4 == 3:
            messages = messages + [{"role": "user", "content": "thanks!"}]  # ends with a user turn: skipped
        rows.append({"prompt": q, "prompt_id": str(i), "messages": messages})
    return rows


def alpaca_rows(n: int) -> list[dict]:
    rng = random.Random(7)
    rows = []
    for _ in range(n):
        q, good, _ = _question(rng)
        rows.append({"instruction": q, "output": "the answer is " + good, "generator": "gpt4_1106_preview",
                     "dataset": "fixture"})
    return rows


def _reward_model(tok, seed: int = 3):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                         num_labels=1)
    return LlamaForSequenceClassification(config).eval()


def build(root: Path) -> dict:
    """Write the miniature world under ``root``; return the paths (a dict of strings)."""
    from datasets import Dataset, DatasetDict

    root = Path(root)
    bpe = tiny.bpe_tokenizer()
    paths = {}
    for name, model, tok in (
        ("base", tiny.llama_model(bpe, seed=0), bpe),
        ("compatible", tiny.llama_model(bpe, seed=1, hidden=48), bpe),
        ("incompatible", tiny.char_model(tiny.char_tokenizer(), seed=2), tiny.char_tokenizer()),
        ("judge", _reward_model(bpe), bpe),
    ):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    DatasetDict({
        "train_prefs": Dataset.from_list(ultrafeedback_rows(24, 0)),
        "test_prefs": Dataset.from_list(ultrafeedback_rows(12, 1)),
    }).save_to_disk(str(root / "ultrafeedback"))
    DatasetDict({"train_sft": Dataset.from_list(ultrachat_rows(24, 2))}).save_to_disk(str(root / "ultrachat"))
    (root / "alpaca_eval.json").write_text(json.dumps(alpaca_rows(8)))
    paths.update(ultrafeedback=str(root / "ultrafeedback"), ultrachat=str(root / "ultrachat"),
                 alpaca_eval=str(root / "alpaca_eval.json"))
    return paths


def profile(paths: dict, **overrides):
    """A gpu profile pointing at the miniature world, sized to run in seconds on a CPU."""
    from dpolib.hub.profile import get_gpu_profile

    fields = dict(
        student="tiny-llama", student_base=paths["base"], compatible_reference=paths["compatible"],
        incompatible_reference=paths["incompatible"], judge_model=paths["judge"],
        sft_dataset=paths["ultrachat"], n_sft_examples=8, sft_max_steps=2, sft_batch_size=4, sft_max_length=128,
        preference_dataset=paths["ultrafeedback"], n_pref_train=8, n_pref_val=6, max_length=128,
        dpo_max_steps=2, dpo_batch_size=4, dpo_learning_rate=1e-3,
        eval_dataset=paths["alpaca_eval"], eval_config=None, n_test_prompts=6, max_new_tokens=12,
        judge_max_length=128,
    )
    fields.update(overrides)
    return get_gpu_profile(**fields)
