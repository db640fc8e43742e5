"""Reference policies as first-class, swappable objects.

The paper's central move (§5): its three objectives are *one* loss, Eq. (5),
with three references:

================================  ==========================  =====================
objective                         reference p_ref             here
================================  ==========================  =====================
DPO (Eq. 5)                       the SFT model p_SFT(y|x)    :class:`ModelReference`
posterior probability (Eq. 10)    uniform over responses      :class:`UniformReference`
likelihood (Eq. 15)               the prior p_LM(y)           :class:`PriorReference`
================================  ==========================  =====================

and RQ3 swaps in stronger references, one of another family and tokenizer
(:class:`ModelReference` scores with *its own* tokenizer and chat template).

A reference is anything with the :class:`Reference` protocol: a ``name``, a
``fingerprint()`` that changes whenever its scores could, and
``logps(prompts, responses) -> (n,)`` sequence log-probs. DPO needs only one
scalar per response, so references are *precomputed* once (:func:`precompute`)
into TRL's columns ``ref_chosen_logps`` / ``ref_rejected_logps`` and cached on
disk, as the paper's own code did: a β sweep scores each reference once, and no
reference model is in memory during training.

Beside the two columns, :func:`precompute` writes :data:`REF_SCORING_COLUMN`
(``"ref_scoring"``): per row, a JSON string saying how the values were scored
(reference name and fingerprint, tokenizer and chat template, ``max_length``,
truncation side, how many responses were cut). :class:`dpolib.trl_bridge.PrecomputedRefDPOTrainer`
reads it and refuses columns scored under a truncation other than the trainer's.

The cache (``<cache_dir>/ref_logps/<key>.json``) is written atomically with a
checksum, under a cross-process lock; a damaged or mismatched file, or one whose
values fail a spot check against the reference, is moved aside with a warning and
recomputed (:mod:`dpolib.provenance`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import torch

from .encoding import EncodedResponse, Prompt, Response, check_tokenizer, encode, encode_prior
from .logprobs import ScoredResponses, check_lengths, score_encoded
from .paths import cache_root
from .provenance import CorruptFileError, atomic_write_json, file_lock, quarantine, read_json, read_json_checked

__all__ = [
    "Reference",
    "ModelReference",
    "PriorReference",
    "UniformReference",
    "CachedReference",
    "precompute",
    "validate_preference_dataset",
    "default_cache_dir",
    "scoring_record",
    "tokenizer_fingerprint",
    "REF_COLUMNS",
    "REF_SCORING_COLUMN",
]

#: TRL's column names for precomputed reference log-probs.
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
#: dpolib's column saying how the reference columns were scored (a JSON string per row).
REF_SCORING_COLUMN = "ref_scoring"
#: Bump when encoding/scoring changes so that old caches are not reused.
_SCORING_VERSION = "2"
#: Format of the files under ``<cache_dir>/ref_logps``.
_CACHE_FORMAT = "dpolib.ref_logps/2"


@runtime_checkable
class Reference(Protocol):
    """What DPO needs of a reference policy: one log-prob per (prompt, response)."""

    name: str

    def logps(self, prompts: Sequence[Prompt], responses: Sequence[Response]) -> torch.Tensor:
        """``(n,)`` float64 sequence log-probs log p_ref(y_i | x_i)."""
        ...

    def fingerprint(self) -> str:
        """A string that changes whenever the scores could change (weights, tokenizer, template, mode)."""
        ...


def _sha(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _check_pairs(prompts: Sequence, responses: Sequence) -> None:
    if len(prompts) != len(responses):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(responses)} responses: pass one prompt per response"
        )


def _tensor_bytes(t: torch.Tensor):
    """The raw bytes of a tensor (any dtype, any device), as a numpy uint8 view on a CPU copy."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy()


def _model_fingerprint(model) -> str:
    """SHA-256 over every parameter and buffer: name, order, dtype, shape and exact bytes, plus the config.

    Any change of a value (in place or not), of the order of rows, or of a dtype
    changes it. Hashing reads every weight once (about 1 s per GB).
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for kind, named in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
            for name, t in named:
                h.update(f"{kind}\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
                h.update(_tensor_bytes(t).data)
    config = model.config.to_dict() if hasattr(model, "config") else {}
    config = {k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version")}
    return _sha(type(model).__name__, config, h.hexdigest())


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of a tokenizer's class, vocabulary, chat template and BOS/EOS tokens."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    return _sha(
        type(tokenizer).__name__,
        sorted(vocab.items()),
        getattr(tokenizer, "chat_template", None),
        tokenizer.bos_token,
        tokenizer.eos_token,
    )



def _context_length(model) -> int | None:
    """The longest sequence the model has positions for (``max_position_embeddings`` / ``n_positions``), if known."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class ModelReference:
    """p_ref(y|x) from a causal LM, scored with **its own** tokenizer and chat template.

    Because DPO only needs the scalar log p_ref(y|x) per response, the reference may
    come from another model family with another tokenizer than the policy (the
    paper's Llama-3-70B reference for tulu-2-7b, §6).

    Args:
        model: a Hugging Face causal LM (put in eval mode; never trained here).
        tokenizer: the model's own tokenizer (must have an EOS token).
        name: a short label for tables and cache keys (default: the model's path).
        batch_size: most sequences per forward when scoring.
        max_tokens: most padded tokens per forward (optional).
        max_length: prompt + response token limit (TRL's ``max_length``; ``keep_start``).
        progress: show a progress bar when scoring.
    """

    prior = False

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str | None = None,
        batch_size: int = 16,
        max_tokens: int | None = None,
        max_length: int | None = None,
        progress: bool = True,
    ):
        check_tokenizer(tokenizer, who="reference tokenizer")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.max_length = max_length
        self.progress = progress

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, gguf_file: str | None = None, dtype=None, device=None, **kwargs):
        """Load model and tokenizer from a local directory (or hub id when online)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        load = {"gguf_file": gguf_file} if gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(path, **load)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, **load)
        if device is not None:
            model = model.to(device)
        kwargs.setdefault("name", Path(str(path)).name if os.path.isdir(str(path)) else str(path))
        return cls(model, tokenizer, **kwargs)

    def _encode(self, prompt: Prompt, response: Response, row: int) -> EncodedResponse:
        return encode(self.tokenizer, prompt, response, row=row)

    def encode_all(self, prompts: Sequence[Prompt], responses: Sequence[Response]) -> list[EncodedResponse]:
        """Encode and truncate to ``max_length`` (TRL's ``keep_start``).

        Raises:
            ValueError: a sequence longer than the model's context (it has no positions for it), naming the row.
        """
        _check_pairs(prompts, responses)
        encoded = [self._encode(p, r, i) for i, (p, r) in enumerate(zip(prompts, responses))]
        encoded = check_lengths(encoded, self.max_length)
        context = _context_length(self.model)
        if context is not None:
            for row, enc in enumerate(encoded):
                if len(enc.input_ids) > context:
                    raise ValueError(
                        f"row {row}: prompt + response is {len(enc.input_ids)} tokens, but the reference model "
                        f"{self.name!r} has a context of {context} tokens (max_length={self.max_length}). Set "
                        f"ModelReference(..., max_length=L) with L <= {context} and the same max_length in "
                        "DPOConfig, so that reference and policy cut responses alike, or filter long pairs first."
                    )
        return encoded

    def count_truncated(self, prompts: Sequence[Prompt], responses: Sequence[Response]) -> int:
        """How many responses ``max_length`` cuts (0 when ``max_length`` is None)."""
        if self.max_length is None:
            return 0
        _check_pairs(prompts, responses)
        encoded = [self._encode(p, r, i) for i, (p, r) in enumerate(zip(prompts, responses))]
        cut = check_lengths(encoded, self.max_length)
        return sum(len(a.response_ids) != len(b.response_ids) for a, b in zip(encoded, cut))

    def score(self, prompts: Sequence[Prompt], responses: Sequence[Response], *, per_token: bool = False) -> ScoredResponses:
        """Sequence (and optionally per-token, Eq. 8) log-probs of the responses."""
        encoded = self.encode_all(prompts, responses)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        scored = score_encoded(
            self.model,
            encoded,
            pad,
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            per_token=per_token,
            progress=f"scoring with {self.name}" if self.progress else False,
        )
        bad = (~torch.isfinite(scored.sequence_logps)).nonzero()
        if len(bad):
            row = int(bad[0, 0])
            raise ValueError(f"reference {self.name!r} gave a non-finite log-prob for row {row}: {scored.sequence_logps[row]}")
        return scored

    def logps(self, prompts: Sequence[Prompt], responses: Sequence[Response]) -> torch.Tensor:
        """``(n,)`` float64: log p_ref(y_i | x_i) (or log p_LM(y_i) for the prior)."""
        return self.score(prompts, responses).sequence_logps

    def fingerprint(self) -> str:
        """A hash of weights (all values, order, dtypes), tokenizer, template, prior or not, ``max_length``; never memoised."""
        return _sha(
            _SCORING_VERSION,
            type(self).__name__,
            _model_fingerprint(self.model),
            tokenizer_fingerprint(self.tokenizer),
            self.max_length,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class PriorReference(ModelReference):
    """The unconditional prior p_LM(y) of a model (Eq. 14): the likelihood objective's reference.

    With it, the DPO reward β log p_θ(y|x)/p_LM(y) equals β log p_θ(x|y) up to
    β log p(x), which cancels within a pair, so DPO becomes Eq. (15). The response
    is scored after the tokenizer's BOS token alone (see :func:`dpolib.encoding.encode_prior`).
    """

    prior = True

    def _encode(self, prompt: Prompt, response: Response, row: int) -> EncodedResponse:
        return encode_prior(self.tokenizer, prompt, response, row=row)


class UniformReference:
    """The uniform reference over responses: the *reference-free* case.

    log p_ref(y|x) is the same constant for every response, so it cancels in
    Eq. (5) and DPO becomes Eq. (10), the posterior-probability objective; and
    D_KL[p_θ ‖ U] = −H[p_θ] + log ``|Y|``, so the KL-constrained objective (1) becomes
    maximum-entropy RL, Eq. (11). The constant is ``log_prob`` (default 0; its value
    never changes a loss or a gradient, only the logged ``rewards/*``).
    """

    def __init__(self, log_prob: float = 0.0, name: str = "uniform"):
        if not math.isfinite(log_prob):
            raise ValueError(f"log_prob must be finite, got {log_prob!r}")
        self.log_prob = float(log_prob)
        self.name = name

    def logps(self, prompts: Sequence[Prompt], responses: Sequence[Response]) -> torch.Tensor:
        _check_pairs(prompts, responses)
        return torch.full((len(responses),), self.log_prob, dtype=torch.float64)

    def fingerprint(self) -> str:
        return _sha(_SCORING_VERSION, "uniform", self.log_prob)

    def __repr__(self) -> str:
        return f"UniformReference(log_prob={self.log_prob})"


def _pair_key(prompt: Prompt, response: Response) -> str:
    return _sha(prompt, response)


class CachedReference:
    """Reference log-probs read from a table: (prompt, response) -> log p_ref(y|x).

    Build it from a dataset that already carries reference columns
    (:meth:`from_columns`, e.g. a dataset shipped with precomputed log-probs like the
    paper's ``yale-nlp/RefDPO``), from a file (:meth:`load`), or from any reference
    (:meth:`from_reference`). A (prompt, response) that is not in the table raises
    ``KeyError`` naming the row, never a silent default.
    """

    def __init__(self, table: dict[str, float], name: str = "cached"):
        self.table = {k: float(v) for k, v in table.items()}
        bad = [k for k, v in self.table.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"cached reference {name!r} holds {len(bad)} non-finite log-probs")
        self.name = name

    @classmethod
    def from_columns(
        cls,
        dataset,
        chosen_column: str = "ref_chosen_logps",
        rejected_column: str = "ref_rejected_logps",
        name: str = "cached",
    ) -> "CachedReference":
        validate_preference_dataset(dataset, extra_columns=(chosen_column, rejected_column))
        table = {}
        for row in dataset:
            table[_pair_key(row["prompt"], row["chosen"])] = row[chosen_column]
            table[_pair_key(row["prompt"], row["rejected"])] = row[rejected_column]
        return cls(table, name=name)

    @classmethod
    def from_reference(cls, reference: Reference, prompts, responses, name: str | None = None) -> "CachedReference":
        values = reference.logps(prompts, responses)
        return cls({_pair_key(p, r): float(v) for p, r, v in zip(prompts, responses, values)}, name or reference.name)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table atomically, with a checksum (:func:`dpolib.provenance.atomic_write_json`)."""
        return atomic_write_json(path, {"name": self.name, "table": self.table})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CachedReference":
        """Read a table written by :meth:`save` (its checksum verified when it has one).

        Raises:
            CorruptFileError: the file is empty, not JSON, fails its checksum or has no table.
        """
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("table"), dict):
            raise CorruptFileError(path, "no 'table' of (prompt, response) -> log-prob")
        return cls(data["table"], name=data.get("name", "cached"))

    def logps(self, prompts: Sequence[Prompt], responses: Sequence[Response]) -> torch.Tensor:
        _check_pairs(prompts, responses)
        out = torch.empty(len(responses), dtype=torch.float64)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            try:
                out[i] = self.table[_pair_key(p, r)]
            except KeyError:
                raise KeyError(
                    f"cached reference {self.name!r} has no log-prob for row {i} (prompt {str(p)[:60]!r}); "
                    "precompute it with the reference model first"
                ) from None
        return out

    def fingerprint(self) -> str:
        return _sha(_SCORING_VERSION, "cached", sorted(self.table.items()))

    def __repr__(self) -> str:
        return f"CachedReference(name={self.name!r}, n={len(self.table)})"


# --------------------------------------------------------------------------- datasets


def validate_preference_dataset(dataset, extra_columns: Iterable[str] = ()) -> None:
    """Check TRL's preference contract: ``prompt``, ``chosen``, ``rejected`` (+ extras), no empty response.

    Raises:
        ValueError: naming the missing column or the offending row.
    """
    columns = list(getattr(dataset, "column_names", None) or (dataset[0].keys() if len(dataset) else []))
    required = ["prompt", "chosen", "rejected", *extra_columns]
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(
            f"dataset is missing column(s) {missing}; it has {columns}. A preference dataset needs TRL's "
            "columns 'prompt', 'chosen', 'rejected' (strings, or message lists for conversational data)."
        )
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    for i, row in enumerate(dataset):
        for col in ("chosen", "rejected"):
            value = row[col]
            text = value if isinstance(value, str) else "".join(str(m.get("content", "")) for m in (value or []))
            if not text.strip():
                raise ValueError(f"row {i}: '{col}' is empty; every pair needs two non-empty responses")


def _dataset_fingerprint(dataset) -> str:
    h = hashlib.sha256()
    for row in dataset:
        h.update(json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    """``$DPOLIB_CACHE`` or ``~/.cache/dpolib`` (:func:`dpolib.paths.cache_root`)."""
    return cache_root()


def _check_dataset_type(dataset) -> None:
    """Refuse what is not a map-style ``datasets.Dataset``, saying how to make one."""
    from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

    if isinstance(dataset, Dataset):
        return
    fixes = [
        ((IterableDataset, IterableDatasetDict), "a streaming dataset cannot be scored into columns and cached; load "
         "it without streaming=True, or materialise a part: datasets.Dataset.from_list(list(ds.take(n)))"),
        (DatasetDict, "a DatasetDict holds splits; precompute each split, e.g. dataset['train']"),
        ((list, tuple), "wrap a list of {'prompt', 'chosen', 'rejected'} dicts with datasets.Dataset.from_list(rows)"),
        (dict, "wrap a dict of columns with datasets.Dataset.from_dict(columns)"),
        (object, "build one with datasets.Dataset.from_list / from_dict / from_pandas (a DataFrame)"),
    ]
    fix = next(text for kind, text in fixes if isinstance(dataset, kind))
    raise TypeError(f"precompute needs a datasets.Dataset with TRL's preference columns, got {type(dataset).__name__}: {fix}")


def scoring_record(reference: Reference, fingerprint: str | None = None, truncated: int | None = None) -> dict:
    """How a reference scores responses: what :data:`REF_SCORING_COLUMN` holds (as JSON) per row.

    Keys: ``reference`` (name), ``kind`` (``"model"``, ``"prior"``, ``"constant"`` for
    :class:`UniformReference`, else the class name), ``fingerprint``, ``tokenizer``
    and ``template`` (hashes; None without a tokenizer), ``max_length`` and
    ``truncation`` (``"keep_start"``; None without a tokenizer), and ``truncated``:
    how many of the scored responses ``max_length`` cut (None if unknown).
    """
    tokenizer = getattr(reference, "tokenizer", None)
    if isinstance(reference, ModelReference):
        kind = "prior" if reference.prior else "model"
    elif isinstance(reference, UniformReference):
        kind = "constant"
    else:
        kind = type(reference).__name__
    return {
        "reference": reference.name,
        "kind": kind,
        "fingerprint": fingerprint if fingerprint is not None else reference.fingerprint(),
        "tokenizer": tokenizer_fingerprint(tokenizer) if tokenizer is not None else None,
        "template": _sha(getattr(tokenizer, "chat_template", None)) if tokenizer is not None else None,
        "max_length": getattr(reference, "max_length", None),
        "truncation": "keep_start" if tokenizer is not None else None,
        "truncated": truncated if truncated is not None else (0 if kind == "constant" else None),
    }


def _tolerance(reference) -> tuple[float, float]:
    """(absolute, relative) tolerance for re-scoring a row: batching changes float32 sums slightly, half precision more."""
    dtype = next(getattr(reference, "model", torch.nn.Module()).parameters(), torch.empty(0, dtype=torch.float64)).dtype
    return (0.5, 2e-2) if dtype in (torch.float16, torch.bfloat16) else (1e-2, 1e-3)


def _read_cache(path: Path, key: str, n: int, reference: Reference, prompts, chosen_texts, rejected_texts, spot_check: int):
    """The cached columns and scoring record, or :class:`CorruptFileError` saying what is wrong with the file."""
    data = read_json_checked(path)
    if data.get("format") != _CACHE_FORMAT or data.get("key") != key:
        raise CorruptFileError(path, f"format {data.get('format')!r} / key {data.get('key')!r}, expected {_CACHE_FORMAT!r} / {key!r}")
    try:
        chosen = torch.tensor(data["chosen"], dtype=torch.float64)
        rejected = torch.tensor(data["rejected"], dtype=torch.float64)
        record = dict(data["scoring"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptFileError(path, f"malformed contents ({e})") from None
    if chosen.shape != (n,) or rejected.shape != (n,):
        raise CorruptFileError(path, f"holds {tuple(chosen.shape)} / {tuple(rejected.shape)} values for a dataset of {n} rows")
    if not bool(torch.isfinite(chosen).all() and torch.isfinite(rejected).all()):
        raise CorruptFileError(path, "holds non-finite log-probs")
    rows = sorted({round(i * (n - 1) / max(1, spot_check - 1)) for i in range(min(spot_check, n))})  # first, last, between
    if rows:
        p = [prompts[i] for i in rows]
        fresh = reference.logps(p + p, [chosen_texts[i] for i in rows] + [rejected_texts[i] for i in rows])
        cached = torch.cat([chosen[rows], rejected[rows]])
        atol, rtol = _tolerance(reference)
        bad = ((fresh - cached).abs() > atol + rtol * fresh.abs()).nonzero()
        if len(bad):
            j, which = int(bad[0, 0]), "chosen" if int(bad[0, 0]) < len(rows) else "rejected"
            raise CorruptFileError(path, f"spot check failed: row {rows[j % len(rows)]} {which} is {cached[j].item():.6g} "
                                   f"in the cache but {fresh[j].item():.6g} when re-scored with {reference.name!r}")
    return chosen, rejected, record


def precompute(
    dataset,
    reference: Reference,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    columns: tuple[str, str] = REF_COLUMNS,
    spot_check: int = 3,
):
    """Add reference log-probs to a preference dataset, as TRL's ``ref_chosen_logps`` / ``ref_rejected_logps``.

    Chosen and rejected responses are scored together (sorted by length,
    batched; a progress bar shows while a model reference scores). The result is
    cached under ``cache_dir/ref_logps/<key>.json``, keyed by the reference's
    fingerprint (weights, tokenizer, chat template, prior or not, ``max_length``) and
    the dataset's content, so a β sweep scores each reference once.

    The cache file is written atomically with a checksum, under a file lock (two
    workers never score one key twice or read a half-written file). On a hit the
    file is checked (checksum, shape, finiteness) and ``spot_check`` pairs (first,
    last, evenly between) are re-scored with the reference; a file failing any
    check is moved aside to ``*.corrupt`` with a :class:`~dpolib.provenance.CorruptFileWarning`
    and recomputed.

    Besides the two columns, :data:`REF_SCORING_COLUMN` is written: per row, the
    JSON of :func:`scoring_record` (how the values were scored), which
    :class:`~dpolib.trl_bridge.PrecomputedRefDPOTrainer` checks against its own truncation.

    Args:
        dataset: a ``datasets.Dataset`` with ``prompt``, ``chosen``, ``rejected``.
        reference: any :class:`Reference`.
        cache_dir: where to cache (default :func:`default_cache_dir`); ``use_cache=False`` skips it.
        columns: the two column names to write (TRL's by default).
        spot_check: how many pairs to re-score on a cache hit (0: none).

    Returns:
        The dataset with the two float columns and the scoring column (replacing them if present).

    Raises:
        TypeError: ``dataset`` is not a ``datasets.Dataset`` (the message says how to make one) or
            ``reference`` is not a :class:`Reference`.
        ValueError: a missing column or empty response; a non-finite log-prob.
    """
    if not isinstance(reference, Reference):
        raise TypeError(f"reference must implement dpolib.references.Reference, got {type(reference).__name__}")
    _check_dataset_type(dataset)
    validate_preference_dataset(dataset)
    n = len(dataset)
    prompts = list(dataset["prompt"])
    chosen_texts, rejected_texts = list(dataset["chosen"]), list(dataset["rejected"])

    def score(fingerprint: str | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        values = reference.logps(prompts + prompts, chosen_texts + rejected_texts)
        counter = getattr(reference, "count_truncated", None)
        truncated = counter(prompts + prompts, chosen_texts + rejected_texts) if counter else None
        return values[:n], values[n:], scoring_record(reference, fingerprint, truncated)

    if not use_cache:
        chosen, rejected, record = score(None)
    else:
        fingerprint = reference.fingerprint()
        key = _sha(_CACHE_FORMAT, fingerprint, _dataset_fingerprint(dataset))
        path = Path(cache_dir or default_cache_dir()) / "ref_logps" / f"{key}.json"
        with file_lock(path):
            cached = None
            if path.exists():
                try:
                    cached = _read_cache(path, key, n, reference, prompts, chosen_texts, rejected_texts, spot_check)
                except CorruptFileError as e:
                    quarantine(path, e.reason)
            chosen, rejected, record = cached if cached is not None else score(fingerprint)
            if cached is None and bool(torch.isfinite(chosen).all() and torch.isfinite(rejected).all()):
                contents = dict(format=_CACHE_FORMAT, key=key, reference=reference.name, n=n, scoring=record)
                atomic_write_json(path, {**contents, "chosen": chosen.tolist(), "rejected": rejected.tolist()})
    for name, values in zip(columns, (chosen, rejected)):
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            raise ValueError(f"reference {reference.name!r}: {name}[{int(bad[0, 0])}] is not finite")
    drop = [c for c in (*columns, REF_SCORING_COLUMN) if c in dataset.column_names]
    out = dataset.remove_columns(drop)
    out = out.add_column(columns[0], [float(v) for v in chosen])
    out = out.add_column(columns[1], [float(v) for v in rejected])
    return out.add_column(REF_SCORING_COLUMN, [json.dumps(record, sort_keys=True)] * n)
