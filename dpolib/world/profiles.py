"""The CPU world's sizes: every size of a profile (models, data, DPO recipe, evaluation) in one frozen object.

``smoke`` runs the whole pipeline in minutes (CI), ``cpu`` is the book's default (World 4),
``cpu-low-lr`` a learning-rate sensitivity check. The ``gpu`` profile is not a size of
this world: it is :class:`dpolib.hub.profile.HubProfile`.

World 4's sizes were fixed before any of its grids ran (issue "World 4"): 2,000 test
prompts and 1,000 validation pairs (power), three world seeds (a world seed reseeds
pretraining, SFT, the siblings, the candidate pool, the annotator's noise and every prompt
split), three sibling SFT models per family as most of the candidate pool, and the DPO
learning rate chosen per student from ``dpo_lr_multipliers`` x the paper's SFT/40 ratio by
the lowest validation DPO loss at β = 0.1 (:mod:`dpolib.experiments.lr_rule`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    name: str
    # --- world (task language, pretraining, SFT, preference data) ---
    n_pretrain_docs: int = 20000
    pretrain_steps: int = 1600
    sft_steps: int = 400
    small_layers: int = 2
    small_hidden: int = 48
    large_layers: int = 3
    large_hidden: int = 96
    seq_len: int = 96  # pretraining window (tokens), packed documents
    pretrain_batch_size: int = 16
    pretrain_lr: float = 3e-3
    n_sft_examples: int = 4000
    sft_batch_size: int = 16
    sft_lr: float = 1e-3
    bpe_vocab_size: int = 384
    world_seed: int = 0
    n_pref_train: int = 2000
    n_pref_val: int = 1000
    n_test_prompts: int = 2000
    #: Sibling SFT models per family (same small base, other demonstrations and seeds), the candidate pool's core.
    n_siblings: int = 3
    # --- DPO training ---
    # The paper's recipe (§3, Zephyr's): 3 epochs, batch 32, linear decay after 10% warm-up, and a DPO
    # learning rate of 5e-7 after SFT at 2e-5, i.e. 1/40 of the SFT rate. We apply that ratio to our
    # SFT learning rate rather than tuning the DPO rate.
    dpo_epochs: float = 3.0
    dpo_batch_size: int = 16
    dpo_learning_rate: float = 1e-3 / 40
    dpo_warmup_ratio: float = 0.1
    #: The DPO learning rates the rule chooses from, as multiples of ``dpo_learning_rate`` (the SFT/40 ratio).
    dpo_lr_multipliers: tuple = (0.25, 1.0, 4.0)
    max_length: int = 192
    # --- evaluation ---
    max_new_tokens: int = 96
    eval_batch_size: int = 64
    seeds: tuple = (0,)

    @property
    def dpo_steps(self) -> int:
        """Optimizer steps of one DPO run (``dpo_epochs`` passes over the training pairs)."""
        return max(1, round(self.dpo_epochs * self.n_pref_train / self.dpo_batch_size))

    def to_dict(self) -> dict:
        return asdict(self)

    def for_world(self, world_seed: int) -> "Profile":
        """This profile in world ``world_seed`` (a run's seed is its world seed)."""
        return self if world_seed == self.world_seed else replace(self, world_seed=int(world_seed))


PROFILES = {
    "smoke": Profile(
        name="smoke",
        n_pretrain_docs=1500,
        pretrain_steps=120,
        sft_steps=60,
        seq_len=64,
        pretrain_batch_size=16,
        n_sft_examples=400,
        sft_batch_size=16,
        bpe_vocab_size=320,
        small_hidden=32,
        large_layers=2,
        large_hidden=48,
        n_pref_train=96,
        n_pref_val=32,
        n_test_prompts=24,
        n_siblings=2,
        dpo_epochs=2 / 3,  # 8 steps
        dpo_batch_size=8,
        max_new_tokens=48,
    ),
    # the book's default; its seeds are world seeds (each one a whole new world, models and data and prompts)
    "cpu": Profile(name="cpu", seeds=(0, 1, 2)),
    # A sensitivity check, not the book's numbers: the cpu world with every learning-rate candidate 4x lower.
    "cpu-low-lr": Profile(name="cpu-low-lr", seeds=(0,), dpo_learning_rate=1e-3 / 40 / 4),
}


def get_profile(name: str, **overrides) -> Profile:
    """The world profile called ``name`` (``smoke``, ``cpu``, ``cpu-low-lr``), optionally with fields overridden."""
    if name not in PROFILES:
        hint = " (the gpu profile is dpolib.hub.profile.GPU_PROFILE)" if name == "gpu" else ""
        raise ValueError(f"unknown world profile {name!r}; choose one of {sorted(PROFILES)}{hint}")
    return replace(PROFILES[name], **overrides) if overrides else PROFILES[name]
