"""The sweep engine: the K DPO runs of one arm that share a student, trained as one batched run (issue 15).

A β sweep of the CPU world is K runs of the same tiny student on the same pairs; they
differ only in β (Eq. 5) and, for the objectives of Eqs. 10 and 15, in the reference
columns ``ref_chosen_logps`` / ``ref_rejected_logps``. :func:`train_sweep` trains them
together: one :class:`~dpolib.ensemble.StackedLM` holds the K members'
weights, every step feeds all of them the same batch, and each member keeps its own
loss, gradient clipping and AdamW moments, so member k follows the trajectory that a
TRL run (:class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer`) with β_k and member k's
columns follows on the same batches (``tests/test_sweep.py`` checks losses, rewards and
final weights against TRL itself).

The recipe is TRL's, read from the same ``DPOConfig`` the runner builds
(:func:`dpolib.trl_bridge.make_dpo_config` with the backend's ``dpo_args``):

* **data**: TRL 1.16's tokenization (:func:`dpolib.encoding.encode`, the prompt cut where
  the prompt's and the full ids diverge), per-sequence truncation at ``max_length``;
* **order**: the HF Trainer's seedable sampler, a permutation ``randperm(n)`` drawn from a
  generator seeded ``seed + epoch`` each epoch, batches of ``per_device_train_batch_size``
  (the last one of an epoch may be short), ``max_steps`` steps;
* **loss**: Eq. (5) through :func:`dpolib.losses.dpo_loss`, the mean over the batch's pairs;
* **optimizer**: AdamW (``fused`` as the Trainer's default ``adamw_torch_fused``), the
  ``lr_scheduler_type`` schedule with ``warmup_steps`` (a float is a ratio), gradients
  clipped to ``max_grad_norm`` per member;
* **logs**: TRL's names (``loss``, ``rewards/chosen``, ``rewards/rejected``,
  ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``, ``logps/rejected``,
  ``grad_norm``, ``learning_rate``, ``epoch``, ``step``), one dict a step.

Less work per step (:func:`make_groups`): each pair's shared prefix (the prompt but its last
token, the longest common prefix of the two truncated sequences at most) is computed once and
both responses attend to it, which is the same causal attention as over the whole sequences
(only float round-off differs; the reasoning is in :mod:`dpolib.ensemble`); prefixes and the
per-sequence suffixes are passed in length groups (each padded to its own longest). On the
cpu world the sharing drops about a quarter of a step's tokens. ``bucket=True`` draws batches
of similar length (the HF length-grouped sampler's idea: sort within shuffled mega-batches,
then shuffle the batches).
Bucketed batches are not TRL's, so that mode is checked against :func:`train_plain`, a plain
PyTorch loop over the same batches with the Hugging Face model.

Members sharing the order of the batches is also the better experiment: runs that differ
only in β then see the same data (common random numbers), so a paired comparison between
β values does not carry the noise of two data orders.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import torch

from ..encoding import encode
from ..losses import dpo_loss
from ..profile import progress_enabled
from ..references import REF_COLUMNS, REF_SCORING_COLUMN, validate_preference_dataset
from ..ensemble import Block, Packed, StackedLM, clip_grad_norm_per_member

__all__ = ["Pair", "Recipe", "SweepResult", "tokenize_pairs", "batch_order", "make_groups", "train_sweep",
           "train_plain", "recipe_from_args", "MEGA_BATCHES"]

#: Columns that must agree row by row between members (only the reference columns may differ).
_SHARED_COLUMNS = ("prompt", "chosen", "rejected")
#: Pairs a bucketed mega-batch holds, in batches (the HF length-grouped sampler uses 50).
MEGA_BATCHES = 50


# ----------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Recipe:
    """What a TRL run's ``DPOConfig`` says about training, as the engine uses it."""

    learning_rate: float
    adam_betas: tuple[float, float]
    adam_epsilon: float
    weight_decay: float
    max_grad_norm: float
    batch_size: int
    max_steps: int
    warmup_steps: int
    lr_scheduler_type: str
    lr_scheduler_kwargs: dict = field(default_factory=dict)
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    data_seed: int = 0
    fused: bool = True


def recipe_from_args(args, n_pairs: int) -> Recipe:
    """Read a ``trl.DPOConfig``; refuse what the engine does not reproduce, naming the TRL path instead."""
    unsupported = []
    if list(args.loss_type) != ["sigmoid"] or list(args.loss_weights or [1.0]) != [1.0]:
        unsupported.append(f"loss_type={args.loss_type}")
    for name, default in (("gradient_accumulation_steps", 1), ("label_smoothing", 0.0), ("ld_alpha", None),
                          ("use_weighting", False), ("f_divergence_type", "reverse_kl"), ("weight_decay", 0.0),
                          ("padding_free", False), ("train_sampling_strategy", "random"),
                          ("disable_dropout", True)):
        value = getattr(args, name, default)
        if value != default and str(value) != str(default):
            unsupported.append(f"{name}={value!r}")
    if str(args.optim) not in ("adamw_torch", "adamw_torch_fused", "OptimizerNames.ADAMW_TORCH",
                               "OptimizerNames.ADAMW_TORCH_FUSED"):
        unsupported.append(f"optim={args.optim!r}")
    if unsupported:
        raise ValueError(f"the sweep engine reproduces TRL's sigmoid DPO with AdamW only; {', '.join(unsupported)} "
                         "is not supported: train these runs with dpolib.trl_bridge.PrecomputedRefDPOTrainer")
    steps_per_epoch = math.ceil(n_pairs / args.per_device_train_batch_size)
    max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    return Recipe(
        learning_rate=args.learning_rate, adam_betas=(args.adam_beta1, args.adam_beta2),
        adam_epsilon=args.adam_epsilon, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
        batch_size=args.per_device_train_batch_size, max_steps=max_steps,
        warmup_steps=args.get_warmup_steps(max_steps), lr_scheduler_type=str(getattr(args.lr_scheduler_type, "value",
                                                                                     args.lr_scheduler_type)),
        lr_scheduler_kwargs=dict(args.lr_scheduler_kwargs or {}), max_length=args.max_length,
        truncation_mode=args.truncation_mode, data_seed=args.data_seed if args.data_seed is not None else args.seed,
        fused=str(args.optim).lower().endswith("fused"),
    )


def _optimizer(params: list[torch.Tensor], recipe: Recipe):
    from transformers import get_scheduler

    opt = torch.optim.AdamW(params, lr=recipe.learning_rate, betas=recipe.adam_betas, eps=recipe.adam_epsilon,
                            weight_decay=recipe.weight_decay, **({"fused": True} if recipe.fused else {}))
    schedule = get_scheduler(recipe.lr_scheduler_type, opt, num_warmup_steps=recipe.warmup_steps,
                             num_training_steps=recipe.max_steps, scheduler_specific_kwargs=recipe.lr_scheduler_kwargs)
    return opt, schedule


# ----------------------------------------------------------------------------- the data


class Pair(NamedTuple):
    """One preference pair as TRL tokenizes it: the prompt and the two responses, token ids."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]


def tokenize_pairs(dataset, tokenizer) -> list[Pair]:
    """TRL 1.16's tokenization of ``prompt/chosen/rejected`` rows (``DPOTrainer._prepare_dataset``).

    The prompt ends where the tokenized prompt and both tokenized prompt + response
    first diverge (the shorter of the two common prefixes), as in TRL.
    """
    pairs = []
    for i, row in enumerate(dataset.select_columns(list(_SHARED_COLUMNS))):
        c = encode(tokenizer, row["prompt"], row["chosen"], row=i)
        r = encode(tokenizer, row["prompt"], row["rejected"], row=i)
        full_c, full_r = c.context_ids + c.response_ids, r.context_ids + r.response_ids
        n = min(len(c.context_ids), len(r.context_ids))
        pairs.append(Pair(full_c[:n], full_c[n:], full_r[n:]))
    return pairs


def _sequence(prompt: tuple, response: tuple, recipe: Recipe) -> tuple[tuple[int, ...], int]:
    """(ids, index of the first response token) of prompt + response after TRL's per-sequence truncation."""
    ids, start = prompt + response, len(prompt)
    if recipe.max_length is not None and len(ids) > recipe.max_length:
        if recipe.truncation_mode == "keep_end":
            cut = len(ids) - recipe.max_length
            ids, start = ids[cut:], max(0, start - cut)
        else:
            ids = ids[: recipe.max_length]
    return ids, start


def batch_order(n: int, recipe: Recipe, lengths: Sequence[int] | None = None) -> list[tuple[list[int], float]]:
    """The pairs of every step and the epoch logged after it: ``[(indices, epoch), ...]`` for ``max_steps`` steps.

    Without ``lengths``, the HF Trainer's order: a permutation per epoch from a generator
    seeded ``data_seed + epoch``, cut into batches. With ``lengths`` (bucketing), each
    epoch's permutation is cut into mega-batches of :data:`MEGA_BATCHES` batches, sorted by
    length within each, cut into batches, and the batches shuffled.
    """
    size = recipe.batch_size
    per_epoch = math.ceil(n / size)
    steps: list[tuple[list[int], float]] = []
    epoch = 0
    while len(steps) < recipe.max_steps:
        g = torch.Generator().manual_seed(recipe.data_seed + epoch)
        perm = torch.randperm(n, generator=g).tolist()
        if lengths is None:
            batches = [perm[i: i + size] for i in range(0, n, size)]
        else:
            mega = size * MEGA_BATCHES
            batches = []
            for i in range(0, n, mega):
                chunk = sorted(perm[i: i + mega], key=lambda j: -lengths[j])
                batches += [chunk[b: b + size] for b in range(0, len(chunk), size)]
            batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        for j, batch in enumerate(batches):
            steps.append((batch, epoch + (j + 1) / per_epoch))
        epoch += 1
    return steps[: recipe.max_steps]


def _length_groups(lengths: Sequence[int], group_cost: int) -> list[list[int]]:
    """Indices into ``lengths`` in groups of similar length, longest first.

    Sorted by length and split where it pays: a split costs ``group_cost`` padded tokens (the
    fixed cost of one more block), a group costs its rows times its longest length.
    """
    order = sorted(range(len(lengths)), key=lambda s: -lengths[s])
    lens = [lengths[s] for s in order]
    n = len(order)
    # best[i]: least cost of grouping order[i:]; a group order[i:j] is padded to lens[i] (the longest).
    best, cut = [0.0] * (n + 1), [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i] = math.inf
        for j in range(i + 1, n + 1):
            c = (j - i) * lens[i] + group_cost + best[j]
            if c < best[i]:
                best[i], cut[i] = c, j
    groups, i = [], 0
    while i < n:
        groups.append(order[i: cut[i]])
        i = cut[i]
    return groups


def _shared_length(chosen: tuple[tuple[int, ...], int], rejected: tuple[tuple[int, ...], int]) -> int:
    """How many leading tokens of a pair's two (truncated) sequences are computed once for both.

    The longest common prefix, cut before the position that predicts either sequence's first
    response token: every predicting position then lies in a suffix, and the prefix only gives
    keys and values. (Responses that open alike still run their common opening twice.)
    """
    (a, start_a), (b, start_b) = chosen, rejected
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return max(0, min(n, max(start_a, 1) - 1, max(start_b, 1) - 1, len(a) - 1, len(b) - 1))


def make_groups(pairs: Sequence[Pair], recipe: Recipe, group_cost: int = 0,
                share_prefix: bool = True) -> tuple[Packed, dict]:
    """The ``2 * len(pairs)`` sequences of one batch (chosen first, as TRL concatenates them) as one :class:`~dpolib.ensemble.Packed`.

    With ``share_prefix``, each pair's shared prefix (its longest common prefix, at most the prompt
    but its last token) is one row of a prefix block, computed once; the chosen and the rejected sequence are rows of
    suffix blocks that attend to it (same math as the whole sequences: the suffix tokens keep their
    positions, and the attention sees the prefix's keys and values, then the row's own). Without
    it, every sequence is one row, whole. Prefixes and suffixes are each grouped by length
    (``group_cost`` padded tokens a split must save; ``0`` still merges
    equal lengths), each block padded to its longest row.

    Returns:
        ``(batch, counts)``. The counts are ``real`` (tokens of all sequences), ``computed`` (the tokens
        the blocks hold but their padding: each shared prefix once), ``padded`` (what the blocks hold)
        and ``trl_padded`` (one ``(2 * pairs, longest)`` block, TRL's collation).
    """
    n_pairs = len(pairs)
    seqs = [_sequence(p.prompt_ids, p.chosen_ids, recipe) for p in pairs]
    seqs += [_sequence(p.prompt_ids, p.rejected_ids, recipe) for p in pairs]
    shared = [_shared_length(seqs[i], seqs[n_pairs + i]) if share_prefix else 0 for i in range(n_pairs)]
    ids, positions, blocks = [], [], []
    offset = 0
    prefix_at: dict[int, torch.Tensor] = {}  # pair -> token-axis indices of its prefix
    with_prefix = [i for i in range(n_pairs) if shared[i] > 0]
    for group in _length_groups([shared[i] for i in with_prefix], group_cost):
        rows, length = len(group), shared[with_prefix[group[0]]]
        block_ids = torch.zeros(rows, length, dtype=torch.long)
        for row, g in enumerate(group):
            i = with_prefix[g]
            block_ids[row, : shared[i]] = torch.tensor(seqs[i][0][: shared[i]])
            prefix_at[i] = offset + row * length + torch.arange(shared[i])
        ids.append(block_ids.reshape(-1))
        positions.append(torch.arange(length).repeat(rows))
        blocks.append(Block(offset, rows, length))
        offset += rows * length
    sources, targets, sequences, slot_base = [], [], [], 0
    suffix_len = [len(tokens) - shared[s % n_pairs] for s, (tokens, _) in enumerate(seqs)]
    for group in _length_groups(suffix_len, group_cost):
        rows, length = len(group), suffix_len[group[0]]
        block_ids = torch.zeros(rows, length, dtype=torch.long)
        block_pos = torch.zeros(rows, length, dtype=torch.long)  # padding sits at position 0
        # Position t - 1 predicts response token t; position 0 has no predecessor (TRL's shift).
        spans = []
        for row, s in enumerate(group):
            (tokens, start), cut = seqs[s], shared[s % n_pairs]
            block_ids[row, : len(tokens) - cut] = torch.tensor(tokens[cut:])
            block_pos[row, : len(tokens) - cut] = torch.arange(cut, len(tokens))
            spans.append((max(start, 1) - 1 - cut, len(tokens) - 1 - cut))
        slots = max(max(b - a for a, b in spans), 1)
        queries = torch.tensor([[max(min(a + q, b - 1), 0) for q in range(slots)] for a, b in spans])
        for row, (s, (a, b)) in enumerate(zip(group, spans)):
            tokens, cut = seqs[s][0], shared[s % n_pairs]
            sources += range(slot_base + row * slots, slot_base + row * slots + max(b - a, 0))
            targets += tokens[cut + a + 1: cut + b + 1]
            sequences += [s] * max(b - a, 0)
        context = context_len = None
        width = max(shared[s % n_pairs] for s in group)
        if width:
            context = torch.zeros(rows, width, dtype=torch.long)  # padding entries point at token 0, masked
            context_len = torch.tensor([shared[s % n_pairs] for s in group])
            for row, s in enumerate(group):
                if shared[s % n_pairs]:
                    context[row, : shared[s % n_pairs]] = prefix_at[s % n_pairs]
        ids.append(block_ids.reshape(-1))
        positions.append(block_pos.reshape(-1))
        blocks.append(Block(offset, rows, length, queries, context, context_len))
        offset += rows * length
        slot_base += rows * slots
    batch = Packed(torch.cat(ids), torch.cat(positions), tuple(blocks), torch.tensor(sources, dtype=torch.long),
                   torch.tensor(targets, dtype=torch.long), torch.tensor(sequences, dtype=torch.long))
    lens = [len(tokens) for tokens, _ in seqs]
    counts = {"real": sum(lens), "computed": sum(lens) - sum(shared), "padded": batch.padded_tokens,
              "trl_padded": len(seqs) * max(lens) if lens else 0}
    return batch, counts


def _ref_columns(datasets: Sequence, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, n)`` reference chosen / rejected log-probs, checked finite, one row per member."""
    cols, read = [], {}
    for m, ds in enumerate(datasets):
        if id(ds) in read:
            cols.append(read[id(ds)])
            continue
        missing = [c for c in REF_COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"member {m}'s dataset lacks the reference column(s) {missing}: add them with "
                             "dpolib.references.precompute(dataset, reference) (never train against nothing)")
        cols.append([torch.tensor(ds[c], dtype=torch.float64) for c in REF_COLUMNS])
        read[id(ds)] = cols[-1]
        for c, values in zip(REF_COLUMNS, cols[-1]):
            bad = (~torch.isfinite(values)).nonzero()
            if len(bad):
                raise ValueError(f"member {m}: {c}[{int(bad[0, 0])}] is not a finite log-prob")
    chosen = torch.stack([c for c, _ in cols]).to(torch.float32)
    rejected = torch.stack([r for _, r in cols]).to(torch.float32)
    return chosen, rejected


def _check_members(datasets: Sequence, pairs: list[Pair], args, tokenizer) -> None:
    """Same rows in every member, and reference columns scored the way the policy is trained."""
    from datasets import Dataset

    from ..trl_bridge import check_scoring

    def rows(ds):
        return ds.with_format("arrow")[:].select(list(_SHARED_COLUMNS))

    first = rows(datasets[0])
    tokenized = Dataset.from_dict({"prompt_ids": [list(p.prompt_ids) for p in pairs],
                                   "chosen_ids": [list(p.chosen_ids) for p in pairs],
                                   "rejected_ids": [list(p.rejected_ids) for p in pairs]})
    seen = set()
    for m, ds in enumerate(datasets):
        if id(ds) in seen:  # the same dataset object for several members (a plain β sweep): checked once
            continue
        seen.add(id(ds))
        validate_preference_dataset(ds, REF_COLUMNS)
        if m and not rows(ds).equals(first):
            raise ValueError(f"member {m}'s pairs differ from member 0's: a sweep trains its members on the same "
                             "batches, so only the reference columns (and β) may differ between them")
        if REF_SCORING_COLUMN in ds.column_names:
            records = [json.loads(s) for s in ds.unique(REF_SCORING_COLUMN)]
            check_scoring(records, tokenized, args, tokenizer, f"member {m}'s dataset")
    if args.max_length is not None and args.truncation_mode == "keep_start":
        long = [i for i, p in enumerate(pairs) if len(p.prompt_ids) >= args.max_length]
        if long:
            raise ValueError(f"{len(long)} training row(s) (first: {long[0]}) have a prompt of at least max_length="
                             f"{args.max_length} tokens and would train on nothing; raise max_length or drop them")


# ----------------------------------------------------------------------------- training


class SweepResult(NamedTuple):
    """What :func:`train_sweep` returns.

    Attributes:
        members: ``[(trained_model, curves), ...]`` in the order of ``betas``; ``curves`` holds one
            dict a step under TRL's names (what ``trainer.state.log_history`` holds).
        padding: token counts over the run: ``real`` (the tokens of every sequence), ``computed``
            (those the engine ran, each shared prefix once), ``padded`` (what its blocks held),
            ``trl_padded`` (TRL's ``(2 * batch, longest)`` collation), and the efficiencies
            ``computed / padded`` (of the engine's padding) and ``real / trl_padded`` (of TRL's).
        wall_time_s: seconds spent training (set-up and tokenization excluded).
    """

    members: list
    padding: dict
    wall_time_s: float


def _load(student, tokenizer):
    if isinstance(student, (str, bytes)) or hasattr(student, "__fspath__"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
        return model, tokenizer or AutoTokenizer.from_pretrained(student)
    if tokenizer is None:
        raise ValueError("pass the student's tokenizer with a model instance (or pass the student's directory)")
    return student, tokenizer


def _dpo_args(dpo_args: dict, seed: int, beta: float):
    from ..trl_bridge import make_dpo_config

    return make_dpo_config("dpolib-sweep", beta=beta, seed=seed, **dpo_args)


def _curve(step: int, epoch: float, lr: float, grad_norm: float, out, loss: float, chosen, rejected) -> dict:
    c, r = out.chosen_rewards, out.rejected_rewards
    return {"loss": loss, "grad_norm": grad_norm, "learning_rate": lr,
            "rewards/chosen": c.mean().item(), "rewards/rejected": r.mean().item(),
            "rewards/accuracies": (c > r).float().mean().item(), "rewards/margins": (c - r).mean().item(),
            "logps/chosen": chosen.detach().mean().item(), "logps/rejected": rejected.detach().mean().item(),
            "epoch": epoch, "step": step}


def train_sweep(student, tokenizer, train_datasets, betas: Sequence[float], dpo_args: dict[str, Any], seed: int = 0,
                *, bucket: bool = False, group_cost: int | None = None, learning_rates: Sequence[float] | None = None,
                progress: bool = False) -> SweepResult:
    """Train K DPO runs of one student as one batched run; member k is the run with ``betas[k]``.

    Args:
        student: the SFT student (a ``GPT2LMHeadModel`` / ``LlamaForCausalLM``, or its directory). Not modified.
        tokenizer: its tokenizer (``None`` to load it from the directory).
        train_datasets: one dataset with TRL's columns and the reference columns per member, or one
            dataset for all; rows must agree between members (only the reference columns may differ,
            e.g. the ``self``, ``uniform`` and ``prior`` references of Eqs. 5, 10 and 15).
        betas: β of each member.
        dpo_args: the ``DPOConfig`` fields of the run (the backend's ``dpo_args``: learning rate, batch
            size, ``max_steps``, warm-up, scheduler, ``max_length``).
        seed: the run seed (TRL's ``seed``; the data order's unless ``data_seed`` is given).
        bucket: draw batches of similar length (not TRL's batches; see :func:`batch_order`).
        group_cost: padded tokens one more length group must save to be worth its own attention
            call (default: 100 / K, since the fixed cost of a call is shared by the K members;
            measured on the cpu student at K = 8, where a step of 16 pairs makes about 4 prefix and
            9 suffix blocks for ``char``, 2 and 7 for ``bpe``).
        learning_rates: each member's peak learning rate (default: ``dpo_args``' for every member). The
            optimizer steps at the ``dpo_args`` rate and each member's step is rescaled by its rate over that
            one: AdamW's step, its decoupled weight decay included, is proportional to the learning rate
            and its moments do not depend on it, so member k follows the run at its own rate (to float
            round-off; the learning-rate rule trains its candidates this way).
        progress: show a progress bar.

    Returns:
        :class:`SweepResult`: ``members[k] = (model_k, curves_k)``, the padding efficiency and the time.
    """
    from tqdm.auto import tqdm

    betas = [float(b) for b in betas]
    bad = [b for b in betas if not (math.isfinite(b) and b > 0)]
    if bad or not betas:
        raise ValueError(f"every beta must be a finite number > 0 (one per member), got {list(betas)}")
    k = len(betas)
    datasets = list(train_datasets) if isinstance(train_datasets, (list, tuple)) else [train_datasets] * k
    if len(datasets) != k:
        raise ValueError(f"{len(datasets)} datasets for {k} betas: pass one dataset per member (or one for all)")
    model, tokenizer = _load(student, tokenizer)
    args = _dpo_args(dpo_args, seed, betas[0])
    for b in betas:
        _dpo_args(dpo_args, seed, b)  # each β is a valid DPOConfig, as each TRL run's would be
    pairs = tokenize_pairs(datasets[0], tokenizer)
    _check_members(datasets, pairs, args, tokenizer)
    recipe = recipe_from_args(args, len(pairs))
    ref_chosen, ref_rejected = _ref_columns(datasets, k)
    lengths = [len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs] if bucket else None
    order = batch_order(len(pairs), recipe, lengths)
    group_cost = max(1, round(100 / k)) if group_cost is None else group_cost
    rates = [recipe.learning_rate] * k if learning_rates is None else [float(r) for r in learning_rates]
    if len(rates) != k or not all(math.isfinite(r) and r > 0 for r in rates):
        raise ValueError(f"learning_rates needs one finite rate > 0 per member ({k}), got {list(learning_rates)}")
    rescale = None if all(r == recipe.learning_rate for r in rates) else \
        torch.tensor([r / recipe.learning_rate for r in rates])

    stacked = StackedLM(model, k)
    params = stacked.parameters()
    opt, schedule = _optimizer(params, recipe)
    curves: list[list[dict]] = [[] for _ in range(k)]
    counts = {"real": 0, "computed": 0, "padded": 0, "trl_padded": 0}
    t0 = time.perf_counter()
    for step, (batch, epoch) in enumerate(tqdm(order, desc=f"sweep K={k}", disable=not progress_enabled(progress)), start=1):
        packed, c = make_groups([pairs[i] for i in batch], recipe, group_cost)
        for key in counts:
            counts[key] += c[key]
        logps = stacked.sequence_logps(packed, 2 * len(batch))
        chosen, rejected = logps[:, : len(batch)], logps[:, len(batch):]
        idx = torch.tensor(batch)
        outs, losses = [], []
        for m in range(k):
            out = dpo_loss(chosen[m], rejected[m], ref_chosen[m, idx], ref_rejected[m, idx], betas[m])
            outs.append(out)
            losses.append(out.losses.mean())
        torch.stack(losses).sum().backward()  # members share no weight: each gradient is its own loss's
        norms = clip_grad_norm_per_member(params, recipe.max_grad_norm)
        before = None if rescale is None else [p.detach().clone() for p in params]
        opt.step()
        if before is not None:  # member k's step at its own rate
            with torch.no_grad():
                for p, b in zip(params, before):
                    p.sub_(b).mul_(rescale.view(k, *([1] * (p.dim() - 1)))).add_(b)
        lr = schedule.get_last_lr()[0]
        schedule.step()
        opt.zero_grad(set_to_none=True)
        for m in range(k):
            curves[m].append(_curve(step, epoch, lr * rates[m] / recipe.learning_rate, norms[m].item(), outs[m],
                                    losses[m].item(), chosen[m],
                                    rejected[m]))
    wall = time.perf_counter() - t0
    padding = dict(counts, efficiency=counts["computed"] / max(counts["padded"], 1),
                   trl_efficiency=counts["real"] / max(counts["trl_padded"], 1))
    members = [(stacked.to_model(m), curves[m]) for m in range(k)]
    return SweepResult(members, padding, wall)


def train_plain(student, tokenizer, train_dataset, beta: float, dpo_args: dict[str, Any], seed: int = 0, *,
                bucket: bool = False) -> tuple[Any, list[dict], float]:
    """One DPO run as a plain PyTorch loop: the Hugging Face model on TRL's padded batches, the same recipe.

    The peer :func:`train_sweep` is measured against (``benchmarks/bench_sweep.py``) and
    checked against when ``bucket=True`` (batches TRL never draws). Same data order,
    loss, optimizer, schedule and clipping as the engine; no stacking, no length groups.

    Returns:
        (trained model, curves, wall time of the training loop in seconds).
    """
    import copy

    model, tokenizer = _load(student, tokenizer)
    model = copy.deepcopy(model).train()
    args = _dpo_args(dpo_args, seed, beta)
    pairs = tokenize_pairs(train_dataset, tokenizer)
    _check_members([train_dataset], pairs, args, tokenizer)
    recipe = recipe_from_args(args, len(pairs))
    ref_chosen, ref_rejected = (c[0] for c in _ref_columns([train_dataset], 1))
    lengths = [len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs] if bucket else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt, schedule = _optimizer(params, recipe)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    curves = []
    t0 = time.perf_counter()
    for step, (batch, epoch) in enumerate(batch_order(len(pairs), recipe, lengths), start=1):
        seqs = [_sequence(pairs[i].prompt_ids, pairs[i].chosen_ids, recipe) for i in batch]
        seqs += [_sequence(pairs[i].prompt_ids, pairs[i].rejected_ids, recipe) for i in batch]
        length = max(len(s) for s, _ in seqs)
        ids = torch.full((len(seqs), length), pad, dtype=torch.long)
        mask = torch.zeros(len(seqs), length, dtype=torch.long)
        completion = torch.zeros(len(seqs), length, dtype=torch.bool)
        for row, (tokens, start) in enumerate(seqs):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
            completion[row, start: len(tokens)] = True
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        logps = (token_logps * completion[:, 1:]).sum(dim=1)
        chosen, rejected = logps[: len(batch)], logps[len(batch):]
        idx = torch.tensor(batch)
        out = dpo_loss(chosen, rejected, ref_chosen[idx], ref_rejected[idx], beta)
        loss = out.losses.mean()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, recipe.max_grad_norm)
        opt.step()
        lr = schedule.get_last_lr()[0]
        schedule.step()
        opt.zero_grad(set_to_none=True)
        curves.append(_curve(step, epoch, lr, norm.item(), out, loss.item(), chosen, rejected))
    return model.eval(), curves, time.perf_counter() - t0
