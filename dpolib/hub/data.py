"""The paper's data through ``datasets``: UltraFeedback binarized, UltraChat, the AlpacaEval prompts.

Every loader takes ``source`` as a hub id, a local path (a ``save_to_disk`` folder, or a
``.json`` / ``.jsonl`` / ``.parquet`` file) or a ``Dataset`` / ``DatasetDict`` already in
memory, so tests pass small fixtures and nothing downloads at run time in CI.

Subsets are deterministic: rows are shuffled with ``seed`` and taken in order, skipping the
ones that do not qualify (documented per loader), until ``n`` are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["load_split", "ultrafeedback_pairs", "ultrachat_conversations", "alpaca_eval_prompts"]


def load_split(source, split: str, config: str | None = None):
    """One split of ``source`` (hub id, local path, ``Dataset`` or ``DatasetDict``) as a ``Dataset``."""
    import datasets

    if isinstance(source, datasets.Dataset):
        return source
    if isinstance(source, (datasets.DatasetDict, dict)):
        if split not in source:
            raise KeyError(f"split {split!r} not in the given dataset; it has {sorted(source)}")
        return source[split]
    path = Path(str(source))
    if path.exists():
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            return load_split(loaded, split)
        suffix = path.suffix.lower()
        if suffix in (".json", ".jsonl"):
            return datasets.Dataset.from_json(str(path))
        if suffix == ".parquet":
            return datasets.Dataset.from_parquet(str(path))
        raise ValueError(f"{path}: expected a save_to_disk folder or a .json/.jsonl/.parquet file")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise FileNotFoundError(
            f"{source!r} is neither a local path nor reachable: the hub is offline (HF_HUB_OFFLINE / "
            "HF_DATASETS_OFFLINE). Download it once online, or pass a local copy."
        )
    return datasets.load_dataset(str(source), config, split=split)


def _text(message_or_text) -> str:
    if isinstance(message_or_text, str):
        return message_or_text
    return str(message_or_text.get("content", ""))


def _last_assistant(messages) -> dict | None:
    if isinstance(messages, str):
        return {"role": "assistant", "content": messages}
    if not messages or messages[-1].get("role") != "assistant":
        return None
    return {"role": "assistant", "content": messages[-1]["content"]}


def ultrafeedback_pairs(source, split: str, n: int | None, *, seed: int = 0, tokenizer=None,
                        max_length: int | None = None, allow_fewer: bool = False):
    """``n`` UltraFeedback-binarized pairs in TRL's conversational format (``n=None``: all that qualify).

    Input rows have ``prompt`` (a string), ``chosen`` / ``rejected`` (message lists ending
    with the assistant's answer, as in ``HuggingFaceH4/ultrafeedback_binarized``) and
    optionally ``score_chosen`` / ``score_rejected`` and ``prompt_id``. Output rows have
    ``prompt`` = ``[{"role": "user", ...}]``, ``chosen`` / ``rejected`` = one assistant
    message, plus ``prompt_id``, ``score_chosen``, ``score_rejected``.

    Skipped: ties (equal scores), empty answers, identical answers, and, when ``tokenizer``
    and ``max_length`` are given, pairs whose prompt + response exceeds ``max_length``
    tokens under that tokenizer's chat template: such a pair would be truncated by TRL
    while its reference scored the whole response. Fewer than ``n`` qualifying rows raise
    ``ValueError`` unless ``allow_fewer``.
    """
    from datasets import Dataset

    from ..encoding import encode

    raw = load_split(source, split).shuffle(seed=seed)
    rows = []
    for row in raw:
        prompt = row["prompt"] if isinstance(row["prompt"], str) else _text(row["prompt"][-1])
        chosen, rejected = _last_assistant(row["chosen"]), _last_assistant(row["rejected"])
        if not prompt.strip() or chosen is None or rejected is None:
            continue
        if not chosen["content"].strip() or not rejected["content"].strip() or chosen["content"] == rejected["content"]:
            continue
        sc, sr = row.get("score_chosen"), row.get("score_rejected")
        if sc is not None and sr is not None and sc == sr:
            continue
        messages = [{"role": "user", "content": prompt}]
        if tokenizer is not None and max_length is not None:
            if any(len(encode(tokenizer, messages, [r]).input_ids) > max_length for r in (chosen, rejected)):
                continue
        rows.append({
            "prompt": messages, "chosen": [chosen], "rejected": [rejected],
            "prompt_id": str(row.get("prompt_id", len(rows))),
            "score_chosen": float(sc) if sc is not None else float("nan"),
            "score_rejected": float(sr) if sr is not None else float("nan"),
        })
        if len(rows) == n:
            break
    if n is not None and len(rows) < n and not allow_fewer:
        raise ValueError(f"only {len(rows)} of the requested {n} pairs of split {split!r} qualify; lower n")
    return Dataset.from_list(rows)


def ultrachat_conversations(source, split: str, n: int, *, seed: int = 0):
    """``n`` UltraChat conversations as a ``messages`` column (SFTTrainer's conversational format).

    Kept: conversations that start with a user turn, alternate user/assistant, end with an
    assistant turn and have no empty turn (as ``HuggingFaceH4/ultrachat_200k`` does).
    """
    from datasets import Dataset

    raw = load_split(source, split).shuffle(seed=seed)
    rows = []
    for row in raw:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        roles = [m["role"] for m in messages]
        if len(messages) < 2 or roles[-1] != "assistant" or any(not m["content"].strip() for m in messages):
            continue
        if roles != ["user", "assistant"] * (len(roles) // 2):
            continue
        rows.append({"messages": messages})
        if len(rows) == n:
            break
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} of the requested {n} conversations of split {split!r} qualify; lower n")
    return Dataset.from_list(rows)


def alpaca_eval_prompts(source, n: int | None = None, *, config: str | None = "alpaca_eval_gpt4_baseline",
                        split: str = "eval") -> list[dict]:
    """The AlpacaEval instructions with the fixed baseline's outputs, in the set's order.

    Rows have ``instruction``, ``output`` (the baseline's answer: gpt-4-1106-preview in the
    ``alpaca_eval_gpt4_baseline`` config, the AlpacaEval 2 baseline) and ``generator``;
    ``n`` takes the first ``n`` (the whole set has 805).
    """
    ds = load_split(source, split, config)
    missing = [c for c in ("instruction", "output") if c not in ds.column_names]
    if missing:
        raise ValueError(f"AlpacaEval rows need 'instruction' and 'output'; missing {missing}")
    if n is not None:
        if n > len(ds):
            raise ValueError(f"asked for {n} AlpacaEval prompts but the set has {len(ds)}")
        ds = ds.select(range(n))
    return [
        {"instruction": r["instruction"], "output": r["output"], "generator": r.get("generator", "baseline"),
         "dataset": r.get("dataset", "")}
        for r in ds
    ]
