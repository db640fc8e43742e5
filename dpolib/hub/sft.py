"""The SFT student: a base model supervised-fine-tuned on UltraChat with TRL's ``SFTTrainer``.

This is how the paper made its small student (App. B: Qwen2-1.5B, SFT on UltraChat) and
how mistral-7b-sft-beta was made (Zephyr's recipe: UltraChat, lr 2e-5, one epoch, cosine
schedule with warm-up). The student is built once per SFT configuration
(:meth:`dpolib.hub.profile.HubProfile.sft_dict`) and cached under ``<cache>/hub/students/<name>-<hash>``; later
calls return the directory at once.

A base model's tokenizer is made chat-ready (:func:`chat_ready`): a ChatML template when it
has none, the end-of-turn token as EOS (so the student learns to stop, and generation,
scoring and DPO all end a response at the same token, which RQ1's EOS analysis needs), and
the pretraining document boundary as BOS when there is none (the context of the prior
p_LM(y), :func:`dpolib.encoding.prior_context_ids`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..models import is_complete_model_dir
from ..provenance import provenance, stable_hash
from ..references import default_cache_dir
from .profile import HubProfile, Runtime, runtime_for

__all__ = ["CHATML_TEMPLATE", "chat_ready", "student_dir", "build_student", "SFT_VERSION"]

#: Bump when the SFT recipe changes (invalidates cached students).
SFT_VERSION = "1"

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")
_DOCUMENT_BOUNDARY = ("<|endoftext|>", "<|end_of_text|>", "<|begin_of_text|>")


def chat_ready(tokenizer):
    """Give a base model's tokenizer a chat template, an end-of-turn EOS and a BOS (in place; returned)."""
    vocab = tokenizer.get_vocab()
    if getattr(tokenizer, "chat_template", None) is None:
        if "<|im_end|>" not in vocab:
            raise ValueError(
                "the base tokenizer has no chat template and no '<|im_end|>' token for a ChatML one; "
                "set tokenizer.chat_template before building the student"
            )
        tokenizer.chat_template = CHATML_TEMPLATE
    template = tokenizer.chat_template
    for token in _END_OF_TURN:
        if token in vocab and token in template:
            tokenizer.eos_token = token
            break
    if tokenizer.bos_token is None:
        for token in _DOCUMENT_BOUNDARY:
            if token in vocab and token != tokenizer.eos_token:
                tokenizer.bos_token = token
                break
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def student_dir(profile: HubProfile, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the student of ``profile`` is (or will be) cached."""
    key = stable_hash({"sft": profile.sft_dict(), "version": SFT_VERSION})
    return Path(cache_dir or default_cache_dir()) / "hub" / "students" / f"{profile.student}-{key}"


def build_student(profile: HubProfile, cache_dir: str | os.PathLike | None = None,
                  runtime: Runtime | None = None, progress: bool = False) -> Path:
    """SFT ``profile.student_base`` on ``profile.n_sft_examples`` UltraChat conversations; return the directory.

    Idempotent (cached by :func:`student_dir`); written atomically. The directory also holds
    ``sft_info.json``: the SFT config, the training curve and provenance.
    """
    out = student_dir(profile, cache_dir)
    if is_complete_model_dir(out):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from .data import ultrachat_conversations

    runtime = runtime or runtime_for(profile)
    t0 = time.perf_counter()
    tokenizer = chat_ready(AutoTokenizer.from_pretrained(profile.student_base))
    model = AutoModelForCausalLM.from_pretrained(profile.student_base, dtype=torch.float32)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    data = ultrachat_conversations(profile.sft_dataset, profile.sft_split, profile.n_sft_examples, seed=profile.data_seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        args = SFTConfig(
            output_dir=str(tmp / "trainer"),
            max_length=profile.sft_max_length,
            learning_rate=profile.sft_learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=profile.sft_warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
            max_steps=profile.sft_steps,
            seed=profile.data_seed,
            eos_token=tokenizer.eos_token,
            report_to=[],
            save_strategy="no",
            logging_steps=max(1, profile.sft_steps // 50),
            disable_tqdm=not progress,
            use_cpu=runtime.device == "cpu",
            dataloader_num_workers=0,
            **runtime.trainer_args(profile.sft_batch_size, profile.gradient_checkpointing, sequences_per_item=1),
        )
        trainer = SFTTrainer(model, args=args, train_dataset=data, processing_class=tokenizer)
        if not progress:
            trainer.remove_callback(PrinterCallback)
        trainer.train()
        model = trainer.model
        model.config.use_cache = True
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {
            "sft": profile.sft_dict(),
            "curves": [h for h in trainer.state.log_history if "loss" in h],
            "runtime": runtime.to_dict(),
            "provenance": provenance(wall_time_s=time.perf_counter() - t0),
        }
        (tmp / "sft_info.json").write_text(json.dumps(info, indent=1, default=str))
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
