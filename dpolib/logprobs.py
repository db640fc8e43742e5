"""Log-probabilities of responses under a Hugging Face causal LM.

Sequence log-prob (the quantity every loss in :mod:`dpolib.losses` consumes)::

    log p(y | x) = Σ_{i=1}^{|y|} log p(y^(i) | x, y^(<i))          reduction="sum"  (the paper's choice)
                   (1/|y|) Σ_i log p(y^(i) | x, y^(<i))            reduction="mean" (length-normalised, SimPO)

The terms of the sum, per token, are what Eq. (8) compares between policy and
reference; they are returned on request (``per_token=True``) with the EOS token
included, since the paper's RQ1 analysis turns on it.

Batching for scoring (:func:`score_encoded`) sorts sequences by length so that
a batch holds sequences of similar length (little compute on padding), pads on
the left with explicit ``position_ids`` (so padding changes no log-prob), and asks
the model for logits at the last ``max response length + 1`` positions only
(``logits_to_keep``), never materialising ``(batch, seq, vocab)`` logits for the
prompt. Training batches (TRL's collator: right-padded, chosen rows first) are
scored by :func:`concatenated_sequence_logps` in one forward for chosen and rejected.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch

from .encoding import EncodedResponse
from .profile import progress_enabled

__all__ = [
    "collate_left",
    "token_logps",
    "reduce_token_logps",
    "concatenated_sequence_logps",
    "ScoredResponses",
    "score_encoded",
    "check_lengths",
]


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def check_lengths(encoded: Sequence[EncodedResponse], max_length: int | None) -> list[EncodedResponse]:
    """Apply ``max_length`` (prompt + response tokens) the way TRL does (``keep_start``).

    A response that does not fit is truncated at the end; a *prompt* that alone
    fills ``max_length`` leaves nothing to score and raises ``ValueError`` naming
    the row and what to change (TRL instead drops such rows silently).
    """
    if max_length is None:
        return list(encoded)
    out = []
    for row, enc in enumerate(encoded):
        n_ctx = len(enc.context_ids)
        if n_ctx >= max_length:
            raise ValueError(
                f"row {row}: the prompt alone is {n_ctx} tokens, which leaves no room for the response within "
                f"max_length={max_length}. Raise max_length (to at least {n_ctx + len(enc.response_ids)} to keep "
                "the whole response) or shorten/filter long prompts before training."
            )
        keep = max_length - n_ctx
        out.append(enc if len(enc.response_ids) <= keep else EncodedResponse(enc.context_ids, enc.response_ids[:keep]))
    return out


def collate_left(encoded: Sequence[EncodedResponse], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pad encoded responses into a batch.

    Returns:
        ``input_ids``, ``attention_mask``, ``completion_mask`` (1 on response ids) and
        ``position_ids`` (0 at each sequence's first real token), all ``(batch, seq)``.
    """
    length = max(len(e.input_ids) for e in encoded)
    input_ids = torch.full((len(encoded), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
    completion_mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for i, e in enumerate(encoded):
        ids = e.input_ids
        input_ids[i, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, length - len(ids) :] = 1
        completion_mask[i, length - len(e.response_ids) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": completion_mask,
        "position_ids": position_ids,
    }


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def token_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the completion tokens.

    ``out[b, j] = log p(input_ids[b, t] | input_ids[b, <t])`` for the trailing
    positions ``t`` of the batch, zero where ``completion_mask`` is 0. Only the last
    ``K = max completion length`` positions are returned (completions must end at
    the right edge for rows shorter than ``K``, as with left padding; with right
    padding every position is returned).

    Args:
        model: a causal LM whose forward returns ``.logits``.
        input_ids, attention_mask, completion_mask: ``(batch, seq)``.
        position_ids: ``(batch, seq)``; pass them with left padding.

    Returns:
        ``(token_logps, mask)``, both ``(batch, K)``; ``token_logps`` is float32 or wider.
    """
    seq = input_ids.shape[1]
    right_aligned = bool(completion_mask[:, -1].all())  # every completion ends at the last column
    n_keep = int(completion_mask.sum(1).max()) + 1 if right_aligned else seq
    n_keep = min(n_keep, seq)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    if n_keep < seq and _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = n_keep
    logits = model(**kwargs).logits[:, -n_keep:]
    logits = logits[:, :-1]  # position t predicts token t + 1
    targets = input_ids[:, seq - n_keep + 1 :]
    mask = completion_mask[:, seq - n_keep + 1 :]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    logps = (picked - torch.logsumexp(logits, dim=-1)) * mask
    return logps, mask


def reduce_token_logps(token_logps_: torch.Tensor, mask: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Sequence log-probs ``(batch,)`` from per-token ones: ``"sum"`` (Eq. 5) or ``"mean"`` over response tokens."""
    total = (token_logps_ * mask).sum(-1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / mask.sum(-1).clamp(min=1)
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def concatenated_sequence_logps(model, batch: dict[str, torch.Tensor], reduction: str = "sum"):
    """Chosen and rejected sequence log-probs from one forward over a TRL-collated batch.

    ``batch`` is the output of TRL's ``DataCollatorForPreference``: ``input_ids``,
    ``attention_mask``, ``completion_mask`` of shape ``(2 * pairs, seq)``, right-padded,
    with all chosen rows before all rejected rows.

    Returns:
        ``(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths)``, each ``(pairs,)``.
    """
    logps, mask = token_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    seq_logps = reduce_token_logps(logps, mask, reduction)
    lengths = mask.sum(-1)
    chosen, rejected = seq_logps.chunk(2, dim=0)
    chosen_len, rejected_len = lengths.chunk(2, dim=0)
    return chosen, rejected, chosen_len, rejected_len


@dataclass
class ScoredResponses:
    """Scores of a list of responses, in the order given.

    Attributes:
        sequence_logps: ``(n,)`` float64, summed over response tokens (EOS included).
        token_logps: per response, a 1-D float tensor of its tokens' log-probs (or None).
        token_ids: per response, its token ids (or None).
    """

    sequence_logps: torch.Tensor
    token_logps: list[torch.Tensor] | None = None
    token_ids: list[tuple[int, ...]] | None = None


@torch.no_grad()
def score_encoded(
    model,
    encoded: Sequence[EncodedResponse],
    pad_token_id: int,
    *,
    batch_size: int = 16,
    max_tokens: int | None = None,
    per_token: bool = False,
    progress: bool | str = False,
) -> ScoredResponses:
    """Sum of token log-probs of each encoded response under ``model`` (``torch.no_grad``).

    Sequences are sorted by length and batched (at most ``batch_size`` sequences,
    and at most ``max_tokens`` padded tokens per batch if given) so little compute
    goes to padding; results come back in the input order.

    Args:
        model: a causal LM (eval mode is the caller's responsibility; see references).
        encoded: responses with their contexts (:func:`dpolib.encoding.encode`).
        pad_token_id: id used for left padding (any id: padded positions are masked).
        batch_size: most sequences per forward.
        max_tokens: most ``batch x padded length`` tokens per forward.
        per_token: also return each response's per-token log-probs and ids (Eq. 8).
        progress: show a tqdm bar (a string is used as its description).
    """
    from tqdm.auto import tqdm

    n = len(encoded)
    order = sorted(range(n), key=lambda i: len(encoded[i].input_ids))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = len(encoded[i].input_ids)  # sorted: the newest is the longest
        if current and (len(current) >= batch_size or (max_tokens and longest * (len(current) + 1) > max_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)

    device = _model_device(model)
    seq_logps = torch.zeros(n, dtype=torch.float64)
    tok_logps: list = [None] * n if per_token else None
    bar = tqdm(
        total=n,
        desc=progress if isinstance(progress, str) else "scoring responses",
        unit="resp",
        disable=not progress_enabled(bool(progress)),
    )
    for idx in batches:
        batch = collate_left([encoded[i] for i in idx], pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        logps, mask = token_logps(model, **batch)
        sums = (logps.double() * mask).sum(-1).cpu()
        for j, i in enumerate(idx):
            seq_logps[i] = sums[j]
            if per_token:
                k = len(encoded[i].response_ids)
                tok_logps[i] = logps[j, -k:].float().cpu()
        bar.update(len(idx))
    bar.close()
    return ScoredResponses(
        seq_logps, tok_logps, [e.response_ids for e in encoded] if per_token else None
    )
