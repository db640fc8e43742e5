"""The one place that adapts TRL's ``DPOTrainer`` (TRL 1.16).

What we need and TRL 1.16 lacks:

1. **Reference log-probs from any dpolib reference**, with no reference model in
   memory: TRL can precompute only with its own reference model and the policy's
   tokenizer, and with ``precompute_ref_log_probs=True`` it fails on a dataset that
   already has the columns ("duplicated columns"); with it off, it ignores them and
   runs a reference model. We set ``precompute_ref_log_probs=True`` (so TRL keeps
   ``ref_model=None`` and reads ``ref_chosen_logps`` / ``ref_rejected_logps`` from
   each batch) and override ``_precompute_ref_logps`` to *check* the columns instead of
   recomputing them. This is the only private method we override.
2. **Any dpolib loss**: TRL has no loss hook. When ``loss`` is TRL's built-in name
   with an identical formula (``"sigmoid"``), TRL's own ``compute_loss`` runs
   unchanged. Otherwise we override the public ``compute_loss``: policy log-probs
   come from the same fused forward TRL uses (``fused_lm_head=True``, which TRL
   patches onto the policy in ``__init__``), the loss from :mod:`dpolib.losses`, and
   the metrics under TRL's names (``rewards/chosen``, ``rewards/rejected``,
   ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``, ``logps/rejected``).

3. **Columns scored like the policy is trained.** The reference columns must score
   the same tokens the policy sees: if either side cuts responses at ``max_length``
   and the other does not (or cuts elsewhere), every margin is silently wrong. The
   trainer reads :data:`dpolib.references.REF_SCORING_COLUMN` (written by
   :func:`~dpolib.references.precompute`) and refuses such columns, naming both
   settings and the fix.

``tests/test_trl_bridge.py`` checks both against TRL's own built-in losses on the
same batch and over a 20-step run, so a TRL upgrade that changes either breaks loudly.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import warnings
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer

from . import losses as dpolib_losses
from .references import (
    REF_COLUMNS,
    REF_SCORING_COLUMN,
    Reference,
    precompute,
    tokenizer_fingerprint,
    validate_preference_dataset,
)

__all__ = ["PrecomputedRefDPOTrainer", "check_scoring", "make_dpo_config", "train_dpo"]

#: dpolib losses whose formula equals TRL 1.16's built-in loss of the same name (checked in the tests).
_TRL_NATIVE = {"sigmoid"}


def _check_ref_columns(dataset, name: str) -> None:
    if dataset is None:
        return
    missing = [c for c in REF_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{name} lacks the reference column(s) {missing}. PrecomputedRefDPOTrainer trains against "
            "precomputed reference log-probs only (it never loads a reference model); add them with "
            "dpolib.references.precompute(dataset, reference), with reference = ModelReference(...) for DPO, "
            "UniformReference() for the reference-free objective, PriorReference(...) for the likelihood objective."
        )
    for col in REF_COLUMNS:
        values = dataset[col]
        for i, v in enumerate(values):
            if v is None or not math.isfinite(float(v)):
                raise ValueError(f"{name}: {col}[{i}] = {v!r} is not a finite log-prob")


#: Arguments of a dpolib loss that the trainer supplies itself.
_SUPPLIED = {
    "policy_chosen_logps": "computed by the trainer from the policy",
    "policy_rejected_logps": "computed by the trainer from the policy",
    "ref_chosen_logps": "read from the dataset's ref_chosen_logps column",
    "ref_rejected_logps": "read from the dataset's ref_rejected_logps column",
    "chosen_lengths": "counted by the trainer from the completion mask",
    "rejected_lengths": "counted by the trainer from the completion mask",
    "beta": "set it with DPOConfig(beta=...)",
}


def _check_loss_kwargs(name: str, loss, loss_kwargs: dict, beta: float) -> None:
    """Catch a misspelt or invalid ``loss_kwargs`` at construction, not at the first training step."""
    params = inspect.signature(loss).parameters
    allowed = [p for p in params if p not in _SUPPLIED]
    for key in loss_kwargs:
        if key in _SUPPLIED:
            raise ValueError(f"loss_kwargs[{key!r}] cannot be passed for loss {name!r}: it is {_SUPPLIED[key]}")
        if key not in params:
            near = difflib.get_close_matches(key, allowed, n=1)
            raise ValueError(
                f"loss {name!r} has no argument {key!r}{f' (did you mean {near[0]!r}?)' if near else ''}; "
                f"its loss_kwargs are {allowed}"
            )
    # One dummy pair runs the loss's own checks on the values (label_smoothing range, reduction, gamma, ...).
    one = torch.tensor([-1.0], dtype=torch.float64)
    n = torch.tensor([1.0], dtype=torch.float64)
    if name in dpolib_losses.REFERENCE_FREE_LOSSES:
        loss(one, one - 1, n, n, beta, **loss_kwargs)
    elif "chosen_lengths" in params:
        loss(one, one - 1, one, one, beta, **loss_kwargs, chosen_lengths=n, rejected_lengths=n)
    else:
        loss(one, one - 1, one, one, beta, **loss_kwargs)


def _scoring_records(dataset, name: str) -> list[dict] | None:
    """The distinct scoring records of a dataset's reference columns, or None if it has no scoring column."""
    if REF_SCORING_COLUMN not in dataset.column_names:
        return None
    try:
        return [json.loads(s) for s in dataset.unique(REF_SCORING_COLUMN)]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: the {REF_SCORING_COLUMN!r} column is not dpolib's scoring record ({e})") from None


def _trainer_truncation(tokenized, max_length: int | None) -> tuple[int, int]:
    """(pairs whose chosen or rejected sequence exceeds ``max_length``, pairs) in TRL's tokenized dataset."""
    n = len(tokenized)
    if max_length is None or n == 0:
        return 0, n
    import pyarrow.compute as pc

    table = tokenized.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]).with_format("arrow")[:]
    prompt = pc.list_value_length(table.column("prompt_ids"))
    longest = pc.max_element_wise(
        pc.list_value_length(table.column("chosen_ids")), pc.list_value_length(table.column("rejected_ids"))
    )
    return int(pc.sum(pc.greater(pc.add(prompt, longest), max_length)).as_py() or 0), n


def _describe(record: dict) -> str:
    cut = record.get("truncated")
    cut = "an unknown number of" if cut is None else str(cut)
    return (
        f"reference {record.get('reference')!r} ({record.get('kind')}) scored with max_length={record.get('max_length')} "
        f"({record.get('truncation')}), cutting {cut} responses, tokenizer {record.get('tokenizer')}"
    )


def check_scoring(records: list[dict] | None, tokenized, args: DPOConfig, tokenizer, name: str) -> None:
    """Refuse reference columns scored under another truncation than the trainer's.

    The columns are consistent with training when no side cuts any response, or
    when a model reference (not the prior) was scored with the policy's tokenizer,
    the trainer's ``max_length`` and its truncation side. Anything else would give
    margins between log-probs of different token sequences.

    Args:
        records: the distinct :func:`dpolib.references.scoring_record` s of the dataset (None: no record).
        tokenized: the dataset as TRL tokenized it (``prompt_ids``, ``chosen_ids``, ``rejected_ids``).
        args: the trainer's config (``max_length``, ``truncation_mode``).
        tokenizer: the policy's tokenizer.
        name: the dataset's name, for messages.

    Raises:
        ValueError: naming the reference's and the trainer's settings and how to make them agree.
    """
    cut, n = _trainer_truncation(tokenized, args.max_length)
    trainer = f"the trainer cuts {cut} of {n} pairs (DPOConfig max_length={args.max_length}, {args.truncation_mode})"
    if records is None:
        warnings.warn(
            f"{name}: the reference columns carry no {REF_SCORING_COLUMN!r} record (added by hand or by an older "
            f"dpolib), so nothing checks that they were scored under the trainer's truncation; {trainer}. "
            "Recompute them with dpolib.references.precompute to have it checked.",
            UserWarning,
            stacklevel=3,
        )
        return
    policy_tokenizer = tokenizer_fingerprint(tokenizer) if tokenizer is not None else None
    for record in records:
        if record.get("kind") == "constant":
            continue  # a constant log-prob does not depend on the tokens scored
        ref_cut = record.get("truncated")
        if ref_cut is None:
            if cut:
                warnings.warn(
                    f"{name}: {_describe(record)}; {trainer}. Whether the reference saw the same tokens cannot be "
                    "checked for this kind of reference.",
                    UserWarning,
                    stacklevel=3,
                )
            continue
        if ref_cut == 0 and cut == 0:
            continue
        same = (
            record.get("kind") == "model"
            and record.get("tokenizer") == policy_tokenizer
            and record.get("max_length") == args.max_length
            and record.get("truncation") == args.truncation_mode
        )
        if same:
            continue
        raise ValueError(
            f"{name}: the reference columns were scored differently from how the policy is trained: "
            f"{_describe(record)}, but {trainer} (policy tokenizer {policy_tokenizer}). The margins would compare "
            "log-probs of different token sequences. Fix: precompute the reference with the trainer's setting "
            f"(ModelReference(..., max_length={args.max_length}) with the policy's own tokenizer), or set "
            "DPOConfig(max_length=None) or a max_length no pair reaches, or drop the long pairs before both."
        )


class PrecomputedRefDPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` fed by precomputed reference log-probs and any dpolib loss.

    Args:
        model: the policy (a model instance or a local path, as for ``DPOTrainer``).
        args: a :class:`trl.DPOConfig`; ``precompute_ref_log_probs`` is forced on and
            ``beta`` is read from it.
        train_dataset, eval_dataset: datasets with TRL's columns plus
            ``ref_chosen_logps`` / ``ref_rejected_logps`` (see :func:`dpolib.references.precompute`).
        loss: a name in :data:`dpolib.losses.LOSSES` (default ``"sigmoid"``, Eq. 5). ``"ipo"``
            is TRL's length-averaged IPO; ``"ipo_sum"`` the summed form.
        loss_kwargs: extra keyword arguments for that loss (e.g. ``label_smoothing``,
            ``reduction`` for IPO, ``gamma_beta_ratio`` for SimPO); a misspelt or invalid
            one raises ``ValueError`` here, not at the first step. Response lengths are
            passed by the trainer to every loss that takes them.

    Raises:
        ValueError: besides the guards above, reference columns whose
            :data:`~dpolib.references.REF_SCORING_COLUMN` says they were scored under
            another truncation than ``args.max_length`` / ``args.truncation_mode``
            (see :func:`check_scoring`). Columns without that record are accepted with a warning.

    Other keyword arguments are passed to ``DPOTrainer`` (``processing_class``, ``callbacks``, ...);
    ``ref_model`` is refused: the reference lives in the dataset.
    """

    def __init__(
        self,
        model,
        args: DPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        *,
        loss: str = "sigmoid",
        loss_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ):
        if kwargs.get("ref_model") is not None:
            raise ValueError(
                "PrecomputedRefDPOTrainer takes no ref_model: precompute the reference's log-probs into the "
                "dataset with dpolib.references.precompute(dataset, ModelReference(ref_model, ref_tokenizer)); "
                "or use trl.DPOTrainer for a live reference model."
            )
        kwargs.pop("ref_model", None)
        self.dpolib_loss_name = loss
        self.dpolib_loss = dpolib_losses.get_loss(loss)
        self.dpolib_loss_kwargs = dict(loss_kwargs or {})
        args = args if args is not None else DPOConfig(output_dir="dpolib-dpo")
        dpolib_losses._check_beta(args.beta)
        _check_loss_kwargs(loss, self.dpolib_loss, self.dpolib_loss_kwargs, args.beta)
        if list(args.loss_type) != ["sigmoid"]:
            raise ValueError(
                f"set the loss with loss={args.loss_type!r} (a dpolib loss name), not DPOConfig.loss_type; "
                f"dpolib losses: {sorted(dpolib_losses.LOSSES)}"
            )
        if args.sync_ref_model:
            raise ValueError("sync_ref_model needs a live reference model; precomputed references are fixed")
        args.precompute_ref_log_probs = True
        records = {}  # dataset name -> scoring records (None: no record), checked once TRL has tokenized

        def checked(dataset, name):
            validate_preference_dataset(dataset, REF_COLUMNS)
            _check_ref_columns(dataset, name)
            records[name] = _scoring_records(dataset, name)
            # TRL sees exactly its contract: the scoring record is ours.
            return dataset.remove_columns(REF_SCORING_COLUMN) if records[name] is not None else dataset

        if train_dataset is not None:
            train_dataset = checked(train_dataset, "train_dataset")
        if isinstance(eval_dataset, dict):
            eval_dataset = {key: checked(value, f"eval_dataset[{key!r}]") for key, value in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = checked(eval_dataset, "eval_dataset")
        n_train = len(train_dataset) if train_dataset is not None else None
        super().__init__(model, ref_model=None, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        if n_train is not None and len(self.train_dataset) != n_train:
            raise ValueError(
                f"{n_train - len(self.train_dataset)} training row(s) have a prompt of at least "
                f"max_length={args.max_length} tokens and would be dropped by TRL; raise DPOConfig.max_length "
                "or filter long prompts first (dpolib.logprobs.check_lengths names the rows)."
            )
        assert self.ref_model is None, "a reference model was loaded; the precomputed path must not hold one"
        tokenized = {"train_dataset": self.train_dataset}
        if isinstance(self.eval_dataset, dict):
            tokenized.update({f"eval_dataset[{k!r}]": v for k, v in self.eval_dataset.items()})
        elif self.eval_dataset is not None:
            tokenized["eval_dataset"] = self.eval_dataset
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)  # a processor holds one
        for name, dataset_records in records.items():
            check_scoring(dataset_records, tokenized[name], args, tokenizer, name)

    # -- the one private override: the columns are already there --------------------
    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        _check_ref_columns(dataset, f"{name} dataset")
        return dataset

    # -- the public override: any dpolib loss ----------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.dpolib_loss_name in _TRL_NATIVE and not self.dpolib_loss_kwargs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            raise NotImplementedError("return_outputs=True is not supported with a dpolib loss")
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        model_kwargs = {k: v for k, v in inputs.items() if k not in ("completion_mask", *REF_COLUMNS)}
        outputs = model(**model_kwargs, labels=labels, use_cache=False, fused_lm_head=True)
        shift_mask = completion_mask[:, 1:]
        per_token_logps = outputs.log_probs[:, -shift_mask.size(1) :]
        logps = per_token_logps.sum(dim=1)
        lengths = shift_mask.sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        chosen_lengths, rejected_lengths = lengths.chunk(2, dim=0)
        ref_chosen = inputs["ref_chosen_logps"].to(chosen_logps.dtype)
        ref_rejected = inputs["ref_rejected_logps"].to(chosen_logps.dtype)

        loss_kwargs = dict(self.dpolib_loss_kwargs)
        if self.dpolib_loss_name in dpolib_losses.REFERENCE_FREE_LOSSES:
            out = self.dpolib_loss(
                chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, self.beta, **loss_kwargs
            )
        else:
            if "chosen_lengths" in inspect.signature(self.dpolib_loss).parameters:
                loss_kwargs.update(chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
            out = self.dpolib_loss(chosen_logps, rejected_logps, ref_chosen, ref_rejected, self.beta, **loss_kwargs)
        loss = out.losses.mean()

        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        chosen_rewards, rejected_rewards = out.chosen_rewards, out.rejected_rewards
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        return loss


def make_dpo_config(output_dir: str, *, beta: float, seed: int = 0, **overrides) -> DPOConfig:
    """A ``DPOConfig`` with CPU-friendly, reproducible defaults (float32, no bf16 autocast, no reporting).

    TRL's defaults differ from ``TrainingArguments`` in ways that surprise on CPU
    (``bf16=True``, gradient checkpointing on); these are switched off unless overridden.
    """
    defaults = dict(
        output_dir=output_dir,
        beta=beta,
        seed=seed,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    defaults.update(overrides)
    return DPOConfig(**defaults)


def train_dpo(
    model,
    tokenizer,
    train_dataset,
    reference: Reference | None,
    args: DPOConfig,
    *,
    eval_dataset=None,
    loss: str = "sigmoid",
    loss_kwargs: dict[str, Any] | None = None,
    cache_dir=None,
    **trainer_kwargs,
) -> PrecomputedRefDPOTrainer:
    """Precompute ``reference`` into the datasets, then train with TRL; returns the trained trainer.

    ``reference=None`` means the datasets already carry the reference columns.
    """
    if reference is not None:
        train_dataset = precompute(train_dataset, reference, cache_dir=cache_dir)
        if eval_dataset is not None:
            eval_dataset = precompute(eval_dataset, reference, cache_dir=cache_dir)
    trainer = PrecomputedRefDPOTrainer(
        model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        loss=loss,
        loss_kwargs=loss_kwargs,
        **trainer_kwargs,
    )
    trainer.train()
    return trainer
