"""What a backend supplies to the one runner: its world, its references, its training settings and its judge.

:mod:`dpolib.experiments.runner` runs the same pipeline for every profile; a
:class:`Backend` answers the questions whose answers differ between the CPU world
(:mod:`.cpu`) and real Hugging Face models (:mod:`.gpu`). Everything else (precompute,
DPO through TRL, generation, metrics, the record) is the runner's and is written once.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["World", "Backend"]


@dataclass
class World:
    """What one profile's runs share in a process.

    Attributes:
        train: the training preference split (TRL columns ``prompt``/``chosen``/``rejected``).
        val: the validation split.
        test_messages: the held-out test prompts as chat messages.
        test_texts: the same prompts as plain text (for the record's samples).
        cache: the cache folder of this world's precomputed references and scratch files.
        student: where the SFT student is (a folder).
        extra: backend-specific state (baseline outputs, judge, ...).
        student_pairs: the SFT student's scores of the validation pairs, computed once.
    """

    train: Any
    val: Any
    test_messages: list
    test_texts: list
    cache: Path
    student: Path | None = None
    extra: dict = field(default_factory=dict)
    student_pairs: dict = field(default_factory=dict)


class Backend:
    """The profile-specific part of a run. Subclasses implement every method that raises here."""

    #: The profile name(s) this backend serves.
    name: str = ""
    #: Suffix of the record file name (``""``; the gpu backend marks records judged by AlpacaEval 2).
    record_suffix: str = ""

    @property
    def settings(self):
        """The profile settings object that keys records (``to_dict()``)."""
        raise NotImplementedError

    @contextmanager
    def session(self):
        """Process-wide settings for the duration of a run (threads, matmul precision)."""
        yield

    def world(self, config=None) -> World:
        """The world ``config`` runs in (the cpu world: its world seed and its pairs; ``None``: world 0's pool)."""
        raise NotImplementedError

    def student_dir(self, config, world: World) -> Path:
        raise NotImplementedError

    def load(self, path, world: World, scoring: bool = False):
        """``(model, tokenizer)`` from a folder (``scoring=True``: in the dtype used for scoring)."""
        raise NotImplementedError

    def reference(self, config, world: World):
        """The :class:`dpolib.references.Reference` of ``config`` (every reference but ``rq1-best``)."""
        raise NotImplementedError

    def scorer(self, model, tokenizer, world: World, name: str | None = None, prior: bool = False):
        """A :class:`dpolib.references.ModelReference` (or ``PriorReference``) that batches as precompute does."""
        raise NotImplementedError

    def policy_dir(self, config) -> Path:
        """Where a trained policy is kept for later runs."""
        raise NotImplementedError

    def dpo_args(self, config, world: World) -> dict:
        """Keyword arguments of :func:`dpolib.trl_bridge.make_dpo_config` besides ``output_dir`` and ``beta``."""
        raise NotImplementedError

    def trainer_kwargs(self) -> dict:
        """Extra keyword arguments of :class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer` (e.g. ``peft_config``)."""
        return {}

    def after_training(self, policy):
        """The trained policy, ready to evaluate and save (e.g. LoRA merged)."""
        return policy

    def generation_batch_size(self) -> int:
        raise NotImplementedError

    def max_new_tokens(self) -> int:
        raise NotImplementedError

    def judge(self, config, world: World, generations):
        """A :class:`dpolib.experiments.metrics.JudgeResult` for the test generations."""
        raise NotImplementedError

    def free(self) -> None:
        """Return freed models' memory."""

    def provenance_extra(self) -> dict:
        """Extra provenance fields of a record (device runtime, judge)."""
        return {}
