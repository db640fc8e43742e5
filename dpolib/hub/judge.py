"""Judges for the gpu profile: a local reward model, or the real AlpacaEval 2.

**The local judge** (:class:`RewardModelJudge`) is a Bradley-Terry reward model r(x, y)
(default Skywork-Reward-V2-Qwen3-0.6B, fits beside a 0.5B policy on a T4). For each
AlpacaEval instruction it gives

    P(policy ≻ baseline | x) = σ(r(x, y_policy) − r(x, y_baseline)),

the preference the reward model was trained to express; :func:`dpolib.evaluation.win_rate`
and :func:`~dpolib.evaluation.length_controlled_win_rate` turn these into the win rate and
the length-controlled win rate exactly as for the cpu world.

Its limits, next to the paper's judge (GPT-4-1106-preview via AlpacaEval 2):

* it is not GPT-4: a 0.6B reward model agrees with human or GPT-4 preferences far less often
  (its own benchmarks are in the model card), and its scores are not calibrated to AlpacaEval's;
* its numbers are **not comparable** to the paper's LC win rates: compare arms with one
  another (β curves, references), never with Table 1;
* reward models have their own length bias (usually towards longer answers) and can be
  gamed by a policy that drifts towards what the RM likes; the LC fit removes only the
  length part, as it does for GPT-4;
* responses longer than ``max_length`` tokens are cut before scoring.

**The real judge** (:func:`alpaca_eval_judge`, ``--judge alpaca_eval``) writes the outputs
in AlpacaEval's format and runs the ``alpaca_eval`` command (AlpacaEval 2's default
annotator, ``weighted_alpaca_eval_gpt4_turbo``); it needs ``pip install alpaca-eval`` and an
``OPENAI_API_KEY``, and it costs money per model (805 comparisons for the full set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import evaluation as E

__all__ = ["RewardModelJudge", "preferences", "judge_metrics", "alpaca_eval_judge", "ALPACA_EVAL_ANNOTATOR"]

#: AlpacaEval 2's default annotator (GPT-4-turbo, logprob-weighted), the paper's judge family.
ALPACA_EVAL_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"


class RewardModelJudge:
    """Scores (instruction, response) with a sequence-classification reward model and its chat template.

    Args:
        model: a ``*ForSequenceClassification`` model with one output (``num_labels=1``).
        tokenizer: its tokenizer (with a chat template and a pad token).
        name: label for records.
        batch_size: sequences per forward.
        max_length: longest scored sequence in tokens (longer ones are cut at the end).
    """

    def __init__(self, model, tokenizer, *, name: str | None = None, batch_size: int = 8, max_length: int = 2048):
        if getattr(model.config, "num_labels", 1) != 1:
            raise ValueError(f"a reward model has one output; this one has num_labels={model.config.num_labels}")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, path: str, *, dtype=torch.float32, device=None, **kwargs) -> "RewardModelJudge":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype, num_labels=1)
        if device is not None:
            model = model.to(device)
        kwargs.setdefault("name", Path(path).name if os.path.isdir(path) else path)
        return cls(model, tokenizer, **kwargs)

    def _ids(self, instruction: str, response: str) -> list[int]:
        messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        out = self.tokenizer.apply_chat_template(messages, tokenize=True)
        ids = out["input_ids"] if hasattr(out, "keys") else out
        return list(ids)[: self.max_length]

    @torch.no_grad()
    def rewards(self, instructions: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """``(n,)`` rewards r(x_i, y_i) (right-padded batches, sorted by length)."""
        if len(instructions) != len(responses):
            raise ValueError(f"{len(instructions)} instructions but {len(responses)} responses")
        device = next(self.model.parameters()).device
        encoded = [self._ids(x, y) for x, y in zip(instructions, responses)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = np.empty(len(encoded))
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            out[idx] = logits[:, 0].float().cpu().numpy()
        if not np.isfinite(out).all():
            raise ValueError(f"reward model {self.name!r} gave a non-finite reward")
        return out

    def describe(self) -> dict:
        return {"kind": "reward_model", "model": self.name, "link": "bradley-terry: sigma(r_policy - r_baseline)",
                "max_length": self.max_length}


def preferences(policy_rewards, baseline_rewards) -> np.ndarray:
    """Per-instruction P(policy ≻ baseline) = σ(r_policy − r_baseline) (the Bradley-Terry link)."""
    delta = np.asarray(policy_rewards, float) - np.asarray(baseline_rewards, float)
    return 1.0 / (1.0 + np.exp(-delta))


def judge_metrics(prefs, lengths, baseline_lengths) -> dict:
    """Win rate and LC win rate (percent) from per-instruction preferences, via :mod:`dpolib.evaluation`."""
    lc = E.length_controlled_win_rate(prefs, lengths, baseline_lengths)
    return {"win_rate": lc["win_rate"], "lc_win_rate": lc["lc_win_rate"],
            "lc_fit": {k: v for k, v in lc.items() if k not in ("win_rate", "lc_win_rate")}}


def alpaca_eval_judge(instructions: Sequence[str], outputs: Sequence[str], baselines: Sequence[str], *,
                      name: str, output_path: str | os.PathLike, annotator: str = ALPACA_EVAL_ANNOTATOR,
                      baseline_name: str = "gpt4_1106_preview") -> dict:
    """Run the real AlpacaEval 2 on ``outputs`` against ``baselines``; return its win rate and LC win rate.

    Raises:
        RuntimeError: ``alpaca_eval`` is not installed or ``OPENAI_API_KEY`` is not set (the message says what to do),
            or the command failed.
    """
    exe = shutil.which("alpaca_eval")
    if exe is None:
        raise RuntimeError(
            "--judge alpaca_eval needs the AlpacaEval package: pip install alpaca-eval (the paper pinned 0.6), "
            "then set OPENAI_API_KEY. Without them use the local judge (--judge reward_model)."
        )
    if not os.environ.get("OPENAI_API_KEY"):
        raise RuntimeError(
            "--judge alpaca_eval calls GPT-4-turbo through the OpenAI API: set OPENAI_API_KEY (this costs money per "
            "model evaluated), or use the local judge (--judge reward_model)."
        )
    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    model_file, baseline_file = out / "model_outputs.json", out / "reference_outputs.json"
    model_file.write_text(json.dumps([{"instruction": i, "output": o, "generator": name} for i, o in zip(instructions, outputs)]))
    baseline_file.write_text(json.dumps([{"instruction": i, "output": o, "generator": baseline_name} for i, o in zip(instructions, baselines)]))
    cmd = [exe, "--model_outputs", str(model_file), "--reference_outputs", str(baseline_file),
           "--annotators_config", annotator, "--output_path", str(out), "--name", name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"alpaca_eval failed ({done.returncode}): {done.stderr[-2000:]}")
    import pandas as pd

    boards = sorted(out.rglob("leaderboard.csv"))
    if not boards:
        raise RuntimeError(f"alpaca_eval wrote no leaderboard.csv under {out}")
    board = pd.read_csv(boards[0], index_col=0)
    row = board.loc[name]
    prefs = None
    annotations = sorted(out.rglob("annotations.json"))
    if annotations:
        rows = json.loads(annotations[0].read_text())
        prefs = np.array([r["preference"] - 1.0 for r in rows if r.get("preference") is not None], float)
    return {"win_rate": float(row["win_rate"]), "lc_win_rate": float(row["length_controlled_winrate"]),
            "preferences": prefs, "judge": {"kind": "alpaca_eval", "annotator": annotator, "leaderboard": str(boards[0])}}
