"""The gpu profile: what a single-GPU reproduction runs, in one frozen object.

:class:`HubProfile` fixes everything that determines a result (model ids, data subsets,
the SFT and DPO recipes, the judge; the β grids are every profile's,
:data:`dpolib.experiments.config.BETAS`); its :meth:`~HubProfile.to_dict` is what
``RunConfig.key`` hashes for ``profile="gpu"``. What only decides *how fast* a run goes on
a given card (dtype, micro-batch, gradient accumulation) lives in :class:`Runtime`, chosen
per device by :func:`runtime_for`, recorded in each record's provenance and kept out of the
key, so a record made on an A100 is read back on a Colab T4.

The design mirrors the paper's (digest §2.2, §8):

* **student**: a *base* model supervised-fine-tuned on UltraChat with TRL's ``SFTTrainer``,
  as the paper made its Qwen2-1.5B student (App. B). An already preference-tuned Instruct
  model would not be a faithful student: DPO would start from a model that has already seen
  preference optimisation.
* **compatible reference** (RQ3): a stronger model of the student's family and tokenizer
  (Qwen2.5-1.5B-Instruct for a Qwen2.5-0.5B student, as Mistral-7B-Instruct-v0.2 is for
  mistral-7b-sft-beta).
* **incompatible reference** (RQ3): a stronger model of another family and tokenizer
  (SmolLM2-1.7B-Instruct, as Llama-3-70B-Instruct is for tulu-2-7b), scored with its own
  tokenizer and chat template by :class:`dpolib.references.ModelReference`.
* **data**: UltraFeedback binarized (the paper's), a documented subset; evaluation on the
  AlpacaEval prompt set against the fixed GPT-4-1106-preview baseline outputs that
  AlpacaEval 2 uses, judged by a small local reward model (see :mod:`dpolib.hub.judge` for its limits).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

__all__ = [
    "HubProfile",
    "GPU_PROFILE",
    "get_gpu_profile",
    "Runtime",
    "runtime_for",
    "estimate",
]

@dataclass(frozen=True)
class HubProfile:
    """Everything that determines a gpu-profile result. Model and data fields take a hub id or a local path."""

    name: str = "gpu"
    # --- models ---
    student: str = "qwen2.5-0.5b"  # the RunConfig.student name of the one student
    student_base: str = "Qwen/Qwen2.5-0.5B"  # a base model, not an Instruct one
    compatible_reference: str = "Qwen/Qwen2.5-1.5B-Instruct"
    incompatible_reference: str = "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    judge_model: str = "Skywork/Skywork-Reward-V2-Qwen3-0.6B"
    # --- SFT of the student (Zephyr's / the paper's App. B recipe on an UltraChat subset) ---
    sft_dataset: str = "HuggingFaceH4/ultrachat_200k"
    sft_split: str = "train_sft"
    n_sft_examples: int = 20_000  # of 207,865: about 40 min on an A100 (estimate)
    sft_epochs: float = 1.0
    sft_max_steps: int | None = None  # None: sft_epochs over the subset (tests set a few steps)
    sft_batch_size: int = 32  # effective (micro-batch x accumulation)
    sft_learning_rate: float = 2e-5
    sft_warmup_ratio: float = 0.1
    sft_max_length: int = 1024
    # --- preference data (UltraFeedback binarized; the paper used the cleaned copy, digest §2.1) ---
    preference_dataset: str = "HuggingFaceH4/ultrafeedback_binarized"
    train_split: str = "train_prefs"
    validation_split: str = "test_prefs"
    n_pref_train: int = 2048  # of 61,135: 192 DPO steps (3 epochs x 64 steps of 32 pairs)
    n_pref_val: int = 256
    data_seed: int = 0
    max_length: int = 1024  # prompt + response tokens (student tokenizer); longer pairs are skipped, not truncated
    # --- DPO (the paper's recipe, digest §2.3; lr see below) ---
    dpo_epochs: float = 3.0
    dpo_max_steps: int | None = None  # None: dpo_epochs over the subset
    dpo_batch_size: int = 32
    # The paper's 5e-7 moves a 7B model over ~5.7k steps; the 2k-pair subset gives 192 steps, so the
    # gpu profile uses twice that (TRL's default, 1e-6). A documented choice, not tuned on results.
    dpo_learning_rate: float = 1e-6
    dpo_warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    lora: bool = False  # LoRA via PEFT; the reference of a "self" run is then the adapter-free base
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # --- evaluation (AlpacaEval prompts, GPT-4-1106-preview baseline outputs) ---
    eval_dataset: str = "tatsu-lab/alpaca_eval"
    eval_config: str | None = "alpaca_eval_gpt4_baseline"
    eval_split: str = "eval"
    n_test_prompts: int = 256  # of 805 (set 805 for the full set)
    max_new_tokens: int = 512
    score_dtype: str = "float32"  # references, prior and judge score in float32 (exact, fits a T4)
    judge_max_length: int = 2048
    # the β grids are every profile's: dpolib.experiments.config.BETAS
    seeds: tuple = (0,)

    @property
    def dpo_steps(self) -> int:
        """Optimizer steps of one DPO run."""
        if self.dpo_max_steps is not None:
            return self.dpo_max_steps
        return max(1, math.ceil(self.dpo_epochs * self.n_pref_train / self.dpo_batch_size))

    @property
    def sft_steps(self) -> int:
        if self.sft_max_steps is not None:
            return self.sft_max_steps
        return max(1, math.ceil(self.sft_epochs * self.n_sft_examples / self.sft_batch_size))

    def sft_dict(self) -> dict:
        """The fields that determine the SFT student (its cache key)."""
        keys = ("student_base", "sft_dataset", "sft_split", "n_sft_examples", "sft_epochs", "sft_max_steps",
                "sft_batch_size", "sft_learning_rate", "sft_warmup_ratio", "sft_max_length", "data_seed")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict:
        return asdict(self)


#: The gpu profile as the book runs it (its fields key the gpu records).
GPU_PROFILE = HubProfile()


def get_gpu_profile(**overrides) -> HubProfile:
    """The gpu profile, optionally with fields overridden (e.g. local paths, smaller subsets)."""
    return replace(GPU_PROFILE, **overrides) if overrides else GPU_PROFILE


# --------------------------------------------------------------------------- per-device choices


@dataclass(frozen=True)
class Runtime:
    """How a run uses its device; recorded in provenance, not part of a record's key.

    Training keeps float32 master weights and autocasts (``bf16`` where the GPU supports it,
    ``fp16`` with loss scaling on a T4): at DPO learning rates (~1e-6) an update to bfloat16
    weights would mostly round away.
    """

    device: str
    device_name: str
    bf16: bool
    fp16: bool
    micro_batch_size: int
    gradient_accumulation_steps: int
    eval_batch_size: int
    tf32: bool

    @property
    def autocast(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "none (float32)"

    def to_dict(self) -> dict:
        return {**asdict(self), "autocast": self.autocast}

    def trainer_args(self, batch_size: int, gradient_checkpointing: bool, sequences_per_item: int = 2) -> dict:
        """``TrainingArguments`` fields for an effective ``batch_size``: precision, micro-batch, accumulation.

        ``sequences_per_item`` is 2 for preference pairs (chosen and rejected share a forward), 1 for SFT.
        """
        micro = min(batch_size, self.micro_batch_size * (2 // sequences_per_item))
        while batch_size % micro:
            micro -= 1
        from transformers import TrainingArguments

        # transformers 5 renamed gradient checkpointing to activation checkpointing (the old name warns)
        name = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient_checkpointing"
        args = {"bf16": self.bf16, "fp16": self.fp16, "per_device_train_batch_size": micro,
                "gradient_accumulation_steps": batch_size // micro, name: gradient_checkpointing}
        if gradient_checkpointing:
            args[f"{name}_kwargs"] = {"use_reentrant": False}
        if self.tf32:
            args["tf32"] = True
        return args


def _micro_batch(batch: int, memory_gb: float, lora: bool) -> int:
    """Pairs per forward that fit a 0.5B policy at 1024 tokens with gradient checkpointing (estimates)."""
    micro = 2 if memory_gb < 20 else 4 if memory_gb < 40 else 8 if memory_gb < 70 else 16
    if lora:
        micro *= 2
    micro = min(micro, batch)
    while batch % micro:
        micro -= 1
    return micro


def runtime_for(profile: HubProfile, device: str | None = None) -> Runtime:
    """Dtype and batch split for ``device`` (default: CUDA if available, else CPU).

    bf16 if the GPU supports it (Ampere and later: A100, L4, H100), else fp16 (T4, V100);
    float32 on CPU. The micro-batch is chosen from the card's memory so that
    ``micro_batch_size x gradient_accumulation_steps = dpo_batch_size`` always.
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        memory_gb = props.total_memory / 2**30
        bf16 = bool(torch.cuda.is_bf16_supported())
        micro = _micro_batch(profile.dpo_batch_size, memory_gb, profile.lora)
        return Runtime(device, torch.cuda.get_device_name(0), bf16, not bf16, micro,
                       profile.dpo_batch_size // micro, 32 if memory_gb < 20 else 64, tf32=props.major >= 8)
    micro = _micro_batch(profile.dpo_batch_size, 8, profile.lora)
    return Runtime("cpu", "cpu", False, False, micro, profile.dpo_batch_size // micro, 16, tf32=False)


# --------------------------------------------------------------------------- estimates


#: Training throughput assumed by :func:`estimate` (model TFLOP/s actually achieved), ESTIMATES and not
#: measurements; no GPU run of this profile exists yet, and benchmarks/bench_gpu_throughput.py measures them.
ASSUMED_TFLOPS = {"T4": 12.0, "L4": 35.0, "A100": 120.0, "H100": 250.0}


def estimate(profile: HubProfile = GPU_PROFILE, gpu: str = "A100", n_params: float = 0.494e9,
             tokens_per_pair: int = 1100) -> dict:
    """ESTIMATED minutes of one DPO run of ``profile`` on ``gpu`` (6 N FLOPs per trained token, x4/3 for
    gradient checkpointing), from ``ASSUMED_TFLOPS``. Labelled an estimate wherever shown."""
    tokens = profile.dpo_steps * profile.dpo_batch_size * tokens_per_pair
    flops = 6 * n_params * tokens * 4 / 3
    return {"gpu": gpu, "dpo_steps": profile.dpo_steps, "trained_tokens": tokens,
            "estimated_minutes": flops / (ASSUMED_TFLOPS[gpu] * 1e12) / 60, "is_estimate": True}
