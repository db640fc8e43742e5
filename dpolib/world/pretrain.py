"""Pretraining and SFT from scratch, cached on disk by config.

:func:`model_dir` is the one entry point: it returns a directory that
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load
exactly like a hub model, training it (and its prerequisites: the tokenizer,
the pretrained base) the first time and reading it from the cache afterwards::

    tokenizer  (family)                       tok-<family>-<key>/
    pretrain   (family, size)  <- tokenizer   <family>-<size>-pretrain-<key>/
    sft        (family, size)  <- pretrain    <family>-<size>-sft-<key>/
    sibling-k  (family, size)  <- pretrain    <family>-<size>-sibling-k-<key>/

``sibling-k`` (k < ``profile.n_siblings``) is another SFT of the same base on other
demonstrations with another seed (the same recipe): a sibling of the student, like the
many fine-tunes of one base model in UltraFeedback's pool. Siblings are most of World 4's
candidate pool (:func:`dpolib.world.pairs.model_sources`), never a student or a reference.

Each key hashes exactly the config the stage depends on (the profile's world
fields it reads, the family spec, the size, :data:`CODE_VERSION`), so changing
``sft_steps`` retrains the SFT models only. Writes are atomic (a temporary
directory renamed into place). Training is deterministic: the same config and
seed give the same weights on the same machine (same torch, same thread count).

The training loop is plain PyTorch (AdamW, linear warm-up then cosine decay,
gradient clipping; the large model's learning rate is sqrt(small/large width)
times the small one's): pretraining is next-token prediction on packed windows of
the family's corpus; SFT is next-token prediction on the assistant turn only
(the response ids of :func:`dpolib.encoding.encode`, EOS included) of
chat-templated demonstrations drawn from an imperfect mix of writers.

Each model trains on its own, one after another, although a family's siblings (and the world
seeds' models of one size) have one shape and could train as one stacked model as the β sweep
does (:meth:`dpolib.ensemble.StackedLM.lm_losses`): measured on this world's batches
(``benchmarks/bench_world_stacking.py``), a stacked step is no faster than K separate ones. A
batch of 16 windows of 96 tokens already fills the kernels; the sweep's gain comes from sharing
one batch across members and from padding less, which the world build does not have to offer.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..encoding import encode
from .. import paths
from .families import FAMILIES, FamilySpec, build_model, build_tokenizer
from .profiles import Profile
from .task import KINDS, gold_score, repetition_rate, sample_prompts
from .writers import SOURCE_POLICIES, test_prompts

__all__ = [
    "CODE_VERSION",
    "SIZES",
    "STAGES",
    "model_dir",
    "tokenizer_dir",
    "pretraining_corpus",
    "sft_examples",
    "stage_key",
    "generate_greedy",
    "sft_quality_report",
]

#: Bump when anything here or in task/families/data changes what a stage produces.
CODE_VERSION = "world-4.1"
SIZES = ("small", "large")
STAGES = ("pretrain", "sft", "sibling-<k>")

_TOKENIZER_FIELDS = ("n_pretrain_docs", "bpe_vocab_size", "world_seed")
_PRETRAIN_FIELDS = _TOKENIZER_FIELDS + ("pretrain_steps", "seq_len", "pretrain_batch_size", "pretrain_lr")
_SFT_FIELDS = ("sft_steps", "n_sft_examples", "sft_batch_size", "sft_lr")


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _size(profile: Profile, size: str) -> tuple[int, int]:
    if size == "small":
        return profile.small_layers, profile.small_hidden
    if size == "large":
        return profile.large_layers, profile.large_hidden
    raise ValueError(f"size must be one of {SIZES}, got {size!r}")


def _spec(family: str) -> FamilySpec:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[family]


def stage_key(family: str, size: str | None, stage: str, profile: Profile) -> str:
    """The cache key of a stage: a hash of everything it depends on."""
    spec = _spec(family).to_dict()
    fields = {f: getattr(profile, f) for f in _TOKENIZER_FIELDS}
    if stage == "tokenizer":
        return _sha(CODE_VERSION, "tokenizer", spec, fields)
    _check_stage(stage, profile)
    fields = {f: getattr(profile, f) for f in _PRETRAIN_FIELDS}
    parts = [CODE_VERSION, "pretrain", spec, fields, size, _size(profile, size)]
    if stage == "sft":
        parts += ["sft", {f: getattr(profile, f) for f in _SFT_FIELDS}]
    elif stage != "pretrain":  # a sibling
        parts += ["sft", {f: getattr(profile, f) for f in _SFT_FIELDS}, stage]
    return _sha(*parts)


def sibling_stages(profile: Profile) -> tuple[str, ...]:
    """The sibling stages of a profile: ``("sibling-0", ..., "sibling-<n_siblings - 1>")``."""
    return tuple(f"sibling-{k}" for k in range(profile.n_siblings))


def _check_stage(stage: str, profile: Profile) -> None:
    if stage not in ("pretrain", "sft") + sibling_stages(profile):
        raise ValueError(f"stage must be 'pretrain', 'sft' or one of {sibling_stages(profile)}, got {stage!r}")


def _root(cache_dir) -> Path:
    root = Path(cache_dir) if cache_dir is not None else paths.world_cache()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _atomic_build(target: Path, build) -> Path:
    """Run ``build(tmp_dir)`` and rename the result to ``target`` (no half-written caches)."""
    if (target / "world.json").exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "world.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------------
# Data for pretraining and SFT
# ---------------------------------------------------------------------------------------------


def pretraining_corpus(family: str, profile: Profile) -> list[str]:
    """The family's pretraining documents (``profile.n_pretrain_docs`` of them), deterministic.

    Each document is one prompt of the ``pretrain`` split answered by a writer drawn
    from the family's ``pretrain_mix`` with the family's filler habits, in the
    family's document format.
    """
    spec = _spec(family)
    prompts = sample_prompts(profile.n_pretrain_docs, "pretrain", seed=profile.world_seed, weights=spec.kind_weights)
    rng = random.Random(f"corpus/{family}/{profile.world_seed}")
    names, weights = zip(*spec.pretrain_mix.items())
    docs = []
    for p in prompts:
        writer = rng.choices(names, weights=weights)[0]
        response = SOURCE_POLICIES[writer](p, rng, openers=spec.openers)
        docs.append(spec.doc_format.format(prompt=p.text, response=response))
    return docs


def sft_examples(family: str, profile: Profile, stage: str = "sft") -> list[tuple[list[dict], str, str]]:
    """The family's SFT demonstrations: ``(prompt messages, response, writer)``.

    Prompts of the ``sft`` split, uniform over kinds; responses from the family's
    ``sft_mix`` (mostly chatty, i.e. correct but opening with a stock phrase, then
    careful, and some verbose, sloppy, lazy or over-long writers): imperfect, as real
    SFT data, so that preference learning has something to improve. A sibling stage (``"sibling-k"``) draws
    another sample of the same kind of data (other prompts of the split, other writer draws).
    """
    spec = _spec(family)
    seed = profile.world_seed if stage == "sft" else f"{profile.world_seed}/{stage}"
    prompts = sample_prompts(profile.n_sft_examples, "sft", seed=seed)
    rng = random.Random(f"sft/{family}/{seed}")
    names, weights = zip(*spec.sft_mix.items())
    out = []
    for p in prompts:
        writer = rng.choices(names, weights=weights)[0]
        out.append((p.messages(), SOURCE_POLICIES[writer](p, rng, openers=spec.openers), writer))
    return out


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _seed(*parts) -> int:
    return int(_sha(*parts), 16) % (2**31)


def _lr_scale(profile: Profile, size: str) -> float:
    """Learning rates are set for the small model; a wider model takes sqrt(small/large width) of it."""
    return 1.0 if size == "small" else (profile.small_hidden / profile.large_hidden) ** 0.5


def _lr_lambda(steps: int):
    warmup = max(1, int(0.05 * steps))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _train(model, next_batch, steps: int, lr: float, desc: str) -> list[float]:
    """AdamW, 5% linear warm-up, cosine decay to 10%, clip 1.0. Returns the loss every step."""
    from tqdm.auto import tqdm

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps))
    losses = []
    bar = tqdm(range(steps), desc=desc, leave=False)  # TQDM_DISABLE=1 silences it
    for step in bar:
        input_ids, attention_mask, labels = next_batch(step)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def _pretrain_batches(ids: torch.Tensor, profile: Profile, seed: int):
    gen = torch.Generator().manual_seed(seed)
    T, B = profile.seq_len, profile.pretrain_batch_size
    if len(ids) <= T + 1:
        raise ValueError(f"pretraining corpus has {len(ids)} tokens, fewer than seq_len={T}: raise n_pretrain_docs")

    def next_batch(step):
        starts = torch.randint(0, len(ids) - T, (B,), generator=gen)
        x = torch.stack([ids[s : s + T] for s in starts.tolist()])
        return x, None, x

    return next_batch


def _sft_batches(encoded: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int, seed: int):
    gen = torch.Generator().manual_seed(seed)

    def next_batch(step):
        idx = torch.randint(0, len(encoded), (batch_size,), generator=gen).tolist()
        rows = [encoded[i] for i in idx]
        L = max(len(c) + len(r) for c, r in rows)
        x = torch.full((len(rows), L), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), L), dtype=torch.long)
        labels = torch.full((len(rows), L), -100, dtype=torch.long)
        for j, (c, r) in enumerate(rows):
            seq = c + r
            x[j, : len(seq)] = torch.tensor(seq)
            mask[j, : len(seq)] = 1
            labels[j, len(c) : len(seq)] = torch.tensor(r)
        return x, mask, labels

    return next_batch


def _write_meta(d: Path, meta: dict) -> None:
    (d / "world.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def tokenizer_dir(family: str, profile: Profile, cache_dir=None) -> Path:
    """The family's tokenizer (the BPE is trained on the family's pretraining corpus), cached."""
    spec = _spec(family)
    target = _root(cache_dir) / f"tok-{family}-{stage_key(family, None, 'tokenizer', profile)}"

    def build(tmp: Path):
        t0 = time.time()
        corpus = pretraining_corpus(family, profile) if spec.tokenizer.startswith("bpe") else None
        tok = build_tokenizer(spec, corpus, vocab_size=profile.bpe_vocab_size)
        tok.save_pretrained(tmp)
        _write_meta(tmp, {"family": family, "stage": "tokenizer", "vocab_size": len(tok), "train_seconds": time.time() - t0})

    return _atomic_build(target, build)


def model_dir(family: str, size: str, stage: str, profile: Profile, cache_dir=None) -> Path:
    """A directory with a trained model and its tokenizer, loadable with ``from_pretrained``.

    Trains the stage (and its prerequisites) if it is not cached, else returns at once.

    Args:
        family: ``"char"`` or ``"bpe"`` (``dpolib.world.families.FAMILIES``).
        size: ``"small"`` (the student) or ``"large"`` (the stronger reference).
        stage: ``"pretrain"``, ``"sft"`` or ``"sibling-k"`` (another SFT of the same base, other data and seed).
        profile: the scale profile (its world fields set corpus size, steps, widths).
        cache_dir: cache root (default ``paths.world_cache()``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = _spec(family)
    n_layer, hidden = _size(profile, size)
    key = stage_key(family, size, stage, profile)
    target = _root(cache_dir) / f"{family}-{size}-{stage}-{key}"
    if (target / "world.json").exists():
        return target

    if stage == "pretrain":
        tok_path = tokenizer_dir(family, profile, cache_dir)

        def build(tmp: Path):
            t0 = time.time()
            tok = AutoTokenizer.from_pretrained(tok_path)
            docs = pretraining_corpus(family, profile)
            enc = tok(docs, add_special_tokens=False)["input_ids"]
            stream = [i for ids in enc for i in [tok.bos_token_id] + ids + [tok.eos_token_id]]
            ids = torch.tensor(stream, dtype=torch.long)
            seed = _seed("pretrain", family, size, profile.world_seed)
            torch.manual_seed(seed)
            n_positions = max(512, profile.seq_len, profile.max_length + profile.max_new_tokens)
            model = build_model(spec, tok, n_layer, hidden, n_positions=n_positions)
            losses = _train(
                model, _pretrain_batches(ids, profile, seed + 1), profile.pretrain_steps,
                profile.pretrain_lr * _lr_scale(profile, size), desc=f"pretrain {family}/{size}",
            )  # fmt: skip
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            _write_meta(tmp, {
                "family": family, "size": size, "stage": stage, "key": key, "code_version": CODE_VERSION,
                "profile": profile.to_dict(), "n_params": sum(p.numel() for p in model.parameters()),
                "corpus_tokens": len(stream), "final_loss": sum(losses[-20:]) / len(losses[-20:]),
                "loss_every_50": losses[::50], "train_seconds": time.time() - t0,
            })  # fmt: skip

        return _atomic_build(target, build)

    _check_stage(stage, profile)
    if stage != "pretrain":
        base = model_dir(family, size, "pretrain", profile, cache_dir)

        def build(tmp: Path):
            t0 = time.time()
            tok = AutoTokenizer.from_pretrained(base)
            model = AutoModelForCausalLM.from_pretrained(base)
            examples = sft_examples(family, profile, stage)
            encoded = []
            for messages, response, _ in examples:
                e = encode(tok, messages, response)
                encoded.append((list(e.context_ids), list(e.response_ids)))
            seed = _seed(stage, family, size, profile.world_seed)
            torch.manual_seed(seed)
            losses = _train(
                model, _sft_batches(encoded, tok.pad_token_id, profile.sft_batch_size, seed + 1),
                profile.sft_steps, profile.sft_lr * _lr_scale(profile, size), desc=f"{stage} {family}/{size}",
            )  # fmt: skip
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            writers: dict = {}
            for _, _, w in examples:
                writers[w] = writers.get(w, 0) + 1
            _write_meta(tmp, {
                "family": family, "size": size, "stage": stage, "key": key, "code_version": CODE_VERSION,
                "base": base.name, "profile": profile.to_dict(), "n_params": sum(p.numel() for p in model.parameters()),
                "sft_writers": writers, "final_loss": sum(losses[-20:]) / len(losses[-20:]),
                "loss_every_50": losses[::50], "train_seconds": time.time() - t0,
            })  # fmt: skip

        return _atomic_build(target, build)


# ---------------------------------------------------------------------------------------------
# A minimal quality check (the real generation code is evaluate.py's)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def generate_greedy(model, tok, prompts, max_new_tokens: int, batch_size: int = 64) -> list[tuple[str, bool]]:
    """Greedy responses ``(text, terminated)`` to task prompts (left-padded batches, stop at EOS)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        ids = [tok.apply_chat_template(p.messages(), add_generation_prompt=True, tokenize=True) for p in chunk]
        ids = [x["input_ids"] if hasattr(x, "keys") else x for x in ids]
        L = max(map(len, ids))
        x = torch.full((len(ids), L), tok.pad_token_id, dtype=torch.long)
        m = torch.zeros((len(ids), L), dtype=torch.long)
        for j, s in enumerate(ids):
            x[j, L - len(s) :] = torch.tensor(s)
            m[j, L - len(s) :] = 1
        gen = model.generate(
            input_ids=x, attention_mask=m, max_new_tokens=max_new_tokens, do_sample=False,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        for row in gen[:, L:].tolist():
            terminated = tok.eos_token_id in row
            row = row[: row.index(tok.eos_token_id)] if terminated else row
            out.append((tok.decode(row, skip_special_tokens=True).strip(), terminated))
    return out


def sft_quality_report(profile: Profile, n_prompts: int = 100, cache_dir=None, stage: str = "sft") -> dict:
    """Mean gold of each of the 4 models' greedy outputs on held-out test prompts.

    Also per-kind gold, the fraction of responses that terminate, mean length (chars),
    filler rate and degeneration rate (repetition rate > 0.3), and 3 examples.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .task import FILLERS

    prompts = test_prompts(profile.n_test_prompts, profile.world_seed)[:n_prompts]
    report = {}
    for family in FAMILIES:
        for size in SIZES:
            d = model_dir(family, size, stage, profile, cache_dir)
            tok = AutoTokenizer.from_pretrained(d)
            model = AutoModelForCausalLM.from_pretrained(d).eval()
            t0 = time.time()
            outs = generate_greedy(model, tok, prompts, profile.max_new_tokens)
            golds = [gold_score(p, t, terminated=term) for p, (t, term) in zip(prompts, outs)]
            by_kind = {
                k: sum(g for p, g in zip(prompts, golds) if p.kind == k) / max(1, sum(p.kind == k for p in prompts))
                for k in KINDS
            }
            report[f"{family}/{size}"] = {
                "mean_gold": sum(golds) / len(golds),
                "gold_by_kind": by_kind,
                "frac_terminated": sum(t for _, t in outs) / len(outs),
                "mean_chars": sum(len(t) for t, _ in outs) / len(outs),
                "filler_rate": sum(any(f in t for f in FILLERS) for t, _ in outs) / len(outs),
                "degenerate_rate": sum(repetition_rate(t) > 0.3 for t, _ in outs) / len(outs),
                "generate_seconds": time.time() - t0,
                "examples": [(p.text, t) for p, (t, _) in list(zip(prompts, outs))[:3]],
            }
    return report
