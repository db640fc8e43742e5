"""Stacked generation: K models of one architecture decode the same prompts at once, greedily or by sampling.

Evaluating a β sweep means K greedy decodes of the same ≥ 2,000 test prompts by K
models of one architecture. Run one after another through ``model.generate``, each
decoding step of each member is a few hundred tiny kernels plus Hugging Face's
per-step bookkeeping; here the K members decode together through
:class:`dpolib.ensemble.StackedLM`'s stacked weights, so a step costs one
pass of ``(K, rows, ...)`` batched kernels. The CPU world samples its candidate pool the
same way (:func:`dpolib.world.pairs.model_samples`: a family's siblings as one stack, the
student's on-policy samples as K copies of it).

What it computes is :func:`dpolib.evaluation.generate`'s greedy decode, member by
member (``tests/test_ensemble_generate.py`` checks token-for-token equality with
``model.generate`` on both architectures):

* prompts are rendered with the chat template, sorted by length and cut into the same
  batches (:func:`dpolib.evaluation.prompt_batches`), left-padded;
* a row's positions count from its first real token (Hugging Face's
  ``position_ids = cumsum(attention_mask) - 1``) and padding is never attended to;
* each step appends ``argmax`` of the next-token logits; a row stops at EOS or after
  ``max_new_tokens``.

Two things make it cheaper than K separate decodes besides the stacking: the keys and
values of every layer are cached in preallocated ``(K, rows, heads, length, head_dim)``
blocks, and rows that have finished are dropped from the block once a quarter of it is
done (a member with fewer rows left repeats one of its finished rows, whose output is
ignored), so a batch with a few long answers does not keep paying for the short ones.

**Sampling** (``settings.do_sample``) is ancestral sampling at ``settings.temperature``, from the
``settings.top_k`` most likely tokens as ``model.generate`` samples (Hugging Face's default 50), by
the inverse CDF: the token drawn at step t for prompt i by member m is the first token whose
cumulative probability exceeds ``u[m][i, t]``, where ``u[m]`` is a ``(prompts, max_new_tokens)``
block of uniforms drawn once from a generator seeded ``seeds[m]``, in the prompts' input
order. A sample is therefore a function of the member's weights, its seed and its prompt
only: it does not depend on the batch size, on which rows finished first, or on which
other models share the stack (``tests/test_ensemble_generate.py`` checks that a member of a
stack samples what it samples alone). It draws from the same distribution as
``model.generate(do_sample=True)``, not the same tokens (Hugging Face draws with
``torch.multinomial`` from the global generator, batch by batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .evaluation import Generation, GenerationSettings, encode_prompts, prompt_batches, to_generation
from .ensemble import StackedLM, _bmm, _rotate_half

__all__ = ["generate_ensemble", "decode_batch", "sampling_noise"]

#: Drop finished rows from the cache once the busiest member has this fraction of its rows left.
COMPACT_BELOW = 0.75


class _Cache:
    """Keys and values of every layer for ``(K, rows)`` sequences, preallocated to the longest decode."""

    def __init__(self, n_layers: int, k: int, rows: int, heads: int, length: int, head_dim: int):
        shape = (k, rows, heads, length, head_dim)
        self.keys = [torch.zeros(shape) for _ in range(n_layers)]
        self.values = [torch.zeros(shape) for _ in range(n_layers)]

    def keep(self, member: torch.Tensor, row: torch.Tensor) -> None:
        """Keep rows ``row[k, j]`` of member ``member[k, 0]`` (``(K, rows')`` indices)."""
        self.keys = [c[member, row] for c in self.keys]
        self.values = [c[member, row] for c in self.values]


@dataclass(frozen=True)
class _Layer:
    """One layer's stacked weights as a decoding step uses them, fused and transposed once per generation
    (``(K, in, out)`` matrices; biases ``(K, out)`` or ``None``)."""

    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    out: torch.Tensor
    out_bias: torch.Tensor | None
    up: torch.Tensor  # GPT-2's c_fc; Llama's gate and up projections side by side
    up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None


def _layers(s: StackedLM) -> list[_Layer]:
    """Every layer's :class:`_Layer` (Llama's separate projections concatenated here, not at every step)."""
    layers = []
    for i in range(s.n_layers):
        if s.kind == "gpt2":
            p = f"h.{i}."
            layers.append(_Layer(
                s._p(p + "attn.c_attn.weight"), s._p(p + "attn.c_attn.bias"),
                s._p(p + "attn.c_proj.weight"), s._p(p + "attn.c_proj.bias"),
                s._p(p + "mlp.c_fc.weight"), s._p(p + "mlp.c_fc.bias"),
                s._p(p + "mlp.c_proj.weight"), s._p(p + "mlp.c_proj.bias")))
        else:
            p = f"layers.{i}."
            qkv = torch.cat([s._p(f"{p}self_attn.{n}.weight") for n in ("q_proj", "k_proj", "v_proj")], dim=1)
            up = torch.cat([s._p(p + "mlp.gate_proj.weight"), s._p(p + "mlp.up_proj.weight")], dim=1)
            layers.append(_Layer(
                qkv.transpose(1, 2), None, s._p(p + "self_attn.o_proj.weight").transpose(1, 2), None,
                up.transpose(1, 2), None, s._p(p + "mlp.down_proj.weight").transpose(1, 2), None))
    return layers


class _Decoder:
    """One batch of left-padded prompts decoded greedily by every member of ``stacked``."""

    def __init__(self, stacked: StackedLM, layers: list[_Layer], prompts: Sequence[Sequence[int]],
                 max_new_tokens: int, eos: int, pad: int, noise: torch.Tensor | None = None,
                 temperature: float = 1.0, top_k: int = 0):
        self.s, self.layers, self.k, self.eos = stacked, layers, stacked.k, eos
        self.noise, self.temperature, self.top_k = noise, temperature, top_k
        rows, width = len(prompts), max(len(p) for p in prompts)
        self.width, self.max_new = width, max_new_tokens
        ids = torch.full((rows, width), pad, dtype=torch.long)
        valid = torch.zeros((rows, width), dtype=torch.bool)
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            valid[r, width - len(p):] = True
        self.prompt_ids, self.prompt_valid = ids, valid
        self.positions0 = (valid.long().cumsum(-1) - 1).clamp(min=0)  # HF: cumsum(mask) - 1, pads at 0
        kv_heads = stacked.n_heads if stacked.kind == "gpt2" else stacked.n_kv_heads
        head_dim = stacked.config.hidden_size // stacked.n_heads if stacked.kind == "gpt2" else stacked.head_dim
        self.cache = _Cache(stacked.n_layers, self.k, rows, kv_heads, width + max_new_tokens, head_dim)
        # per slot (K, rows): which original row it holds, whether it still decodes, its next position
        self.row = torch.arange(rows).repeat(self.k, 1)
        self.active = torch.ones((self.k, rows), dtype=torch.bool)
        self.key_valid = torch.zeros((self.k, rows, width + max_new_tokens), dtype=torch.bool)
        self.key_valid[:, :, :width] = valid
        self.out = torch.full((self.k, rows, max_new_tokens), pad, dtype=torch.long)

    # -- one layer, every position of the prompt (prefill) or one new position (step) ----------------
    def _block(self, i: int, h: torch.Tensor, positions: torch.Tensor, write_at: slice, mask: torch.Tensor):
        """Layer ``i`` on ``h`` ``(K, rows, n, hidden)`` at ``positions`` ``(K, rows, n)``; keys and values are
        written to cache columns ``write_at``; ``mask`` ``(K * rows, 1, n, keys)`` says who attends to whom."""
        s, w = self.s, self.layers[i]
        k_, rows, n, hidden = h.shape
        flat = h.reshape(k_, rows * n, hidden)
        gpt2 = s.kind == "gpt2"
        p = f"h.{i}." if gpt2 else f"layers.{i}."
        x = s._layer_norm(flat, p + "ln_1") if gpt2 else s._rms_norm(flat, p + "input_layernorm.weight")
        heads, kv_heads = s.n_heads, (s.n_heads if gpt2 else s.n_kv_heads)
        hd = hidden // heads if gpt2 else s.head_dim
        q, key, value = _bmm(x, w.qkv, w.qkv_bias).split([heads * hd, kv_heads * hd, kv_heads * hd], -1)
        q = q.reshape(k_, rows, n, heads, hd)
        key = key.reshape(k_, rows, n, kv_heads, hd)
        value = value.reshape(k_, rows, n, kv_heads, hd)
        if not gpt2:
            freqs = positions.float()[..., None] * s.inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos()[..., None, :], emb.sin()[..., None, :]
            q, key = q * cos + _rotate_half(q) * sin, key * cos + _rotate_half(key) * sin
        keys, values = self.cache.keys[i], self.cache.values[i]
        keys[:, :, :, write_at] = key.transpose(2, 3)
        values[:, :, :, write_at] = value.transpose(2, 3)
        length = mask.shape[-1]
        kk = keys[:, :, :, :length].reshape(k_ * rows, kv_heads, length, hd)
        vv = values[:, :, :, :length].reshape(k_ * rows, kv_heads, length, hd)
        qq = q.permute(0, 1, 3, 2, 4).reshape(k_ * rows, heads, n, hd)
        a = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask, enable_gqa=kv_heads != heads)
        a = a.reshape(k_, rows, heads, n, hd).permute(0, 1, 3, 2, 4).reshape(k_, rows * n, hidden)
        flat = flat + _bmm(a, w.out, w.out_bias)
        if gpt2:
            x = F.gelu(_bmm(s._layer_norm(flat, p + "ln_2"), w.up, w.up_bias),
                       approximate="none" if s.config.activation_function == "gelu" else "tanh")
        else:
            gate, up = _bmm(s._rms_norm(flat, p + "post_attention_layernorm.weight"), w.up).chunk(2, dim=-1)
            x = F.silu(gate) * up
        return (flat + _bmm(x, w.down, w.down_bias)).reshape(k_, rows, n, hidden)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, write_at, mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(K, rows, vocab)`` after the last of ``ids`` ``(K, rows, n)``."""
        s = self.s
        k_, rows, n = ids.shape
        member = torch.arange(k_)[:, None, None]
        embed = s.params[s.embed]
        h = embed[member, ids]
        if s.kind == "gpt2":
            h = h + s.params[f"{s.prefix}.wpe.weight"][member, positions]
        for i in range(s.n_layers):
            h = self._block(i, h, positions, write_at, mask)
        last = h[:, :, -1].reshape(k_, rows, -1)
        last = s._layer_norm(last, "ln_f") if s.kind == "gpt2" else s._rms_norm(last, "norm.weight")
        return torch.bmm(last, s.params[s.lm_head].transpose(1, 2))

    # -- decoding ----------------------------------------------------------------------------------
    def run(self) -> torch.Tensor:
        """The generated ids ``(K, rows, max_new_tokens)`` (pad after EOS and after the last step)."""
        k_, rows, width = self.k, self.prompt_ids.shape[0], self.width
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        # a pad query sees itself only (its output is never read; no row of the mask is empty)
        mask = (causal & self.prompt_valid[:, None, :]) | torch.eye(width, dtype=torch.bool)
        mask = mask.repeat(k_, 1, 1).reshape(k_ * rows, 1, width, width)
        logits = self._forward(self.prompt_ids.repeat(k_, 1, 1), self.positions0.repeat(k_, 1, 1),
                               slice(0, width), mask)
        next_pos = self.positions0[:, -1].repeat(k_, 1) + 1
        for t in range(self.max_new):
            member = torch.arange(k_)[:, None].expand_as(self.row)
            token = logits.argmax(-1) if self.noise is None else self._sample(logits, member, t)  # (K, slots)
            live = self.active
            self.out[member[live], self.row[live], t] = token[live]
            self.active = live & (token != self.eos)
            if t == self.max_new - 1 or not self.active.any():
                break
            token, next_pos = self._compact(token, next_pos)
            column = width + t
            self.key_valid[:, :, column] = True
            mask = self.key_valid[:, :, : column + 1].reshape(-1, 1, 1, column + 1)
            logits = self._forward(token[..., None], next_pos[..., None], slice(column, column + 1), mask)
            next_pos = next_pos + 1
        return self.out

    def _sample(self, logits: torch.Tensor, member: torch.Tensor, t: int) -> torch.Tensor:
        """Inverse-CDF draws ``(K, slots)``: the first token whose cumulative probability exceeds the slot's uniform
        (among the ``top_k`` most likely tokens, as Hugging Face's top-k warper keeps them: ties with the k-th kept)."""
        logits = logits / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        cdf = torch.softmax(logits, dim=-1).cumsum(-1)
        u = self.noise[member, self.row, t] * cdf[..., -1]
        return torch.searchsorted(cdf, u.unsqueeze(-1), right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)

    def _compact(self, token: torch.Tensor, next_pos: torch.Tensor):
        """Drop finished rows when the busiest member has fewer than :data:`COMPACT_BELOW` of its slots busy;
        returns ``token`` and ``next_pos`` in the kept slots' order."""
        slots = self.row.shape[1]
        counts = self.active.sum(1)
        busiest = int(counts.max())
        if busiest > COMPACT_BELOW * slots:
            return token, next_pos
        keep = torch.empty((self.k, busiest), dtype=torch.long)
        for m in range(self.k):
            live = self.active[m].nonzero().flatten()
            filler = live[:1] if len(live) else torch.zeros(1, dtype=torch.long)
            keep[m] = torch.cat([live, filler.repeat(busiest - len(live))])
        member = torch.arange(self.k)[:, None]
        self.cache.keep(member, keep)
        self.row, self.key_valid = self.row[member, keep], self.key_valid[member, keep]
        self.active = torch.arange(busiest)[None, :] < counts[:, None]
        return token[member, keep], next_pos[member, keep]


def decode_batch(stacked: StackedLM, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos: int,
                 pad: int, layers: list | None = None, noise: torch.Tensor | None = None,
                 temperature: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """Continuations of one batch of prompt ids by every member: ``(K, len(prompts), max_new_tokens)``.

    Greedy without ``noise``; with ``noise`` (``(K, len(prompts), max_new_tokens)`` uniforms in [0, 1)),
    inverse-CDF samples at ``temperature`` from the ``top_k`` most likely tokens (``0``: all). ``layers``: each
    layer's fused weights, prepared once by
    :func:`generate_ensemble` for all its batches (``None`` prepares them here)."""
    return _Decoder(stacked, layers or _layers(stacked), prompts, max_new_tokens, eos, pad, noise,
                    temperature, top_k).run()


def sampling_noise(seed: int, n_prompts: int, max_new_tokens: int) -> torch.Tensor:
    """The uniforms a member with ``seed`` samples by: ``(n_prompts, max_new_tokens)``, row i for prompt i."""
    return torch.rand((n_prompts, max_new_tokens), generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def generate_ensemble(models: Sequence, tokenizer, prompts: Sequence[Sequence[dict]],
                      settings: GenerationSettings = GenerationSettings(), seeds: Sequence[int] | None = None,
                      progress: bool = False) -> list[list[Generation]]:
    """:func:`dpolib.evaluation.generate`'s decode for each of ``models`` at once: ``[member][prompt]``.

    Args:
        models: K Hugging Face causal LMs of one architecture (GPT-2 or Llama, as
            :class:`~dpolib.ensemble.StackedLM`) sharing ``tokenizer``; a model may appear more than once
            (K samples of one model).
        tokenizer: their tokenizer (chat template, EOS and pad ids).
        prompts: conversational prompts.
        settings: decoding settings: greedy, or (``do_sample``) sampling at ``temperature`` from the
            ``top_k`` most likely tokens, with ``top_p = 1``.
        seeds: with sampling, one seed per member (default: ``settings.seed`` for every member, i.e.
            each member samples what it would sample alone with that seed; give distinct seeds for
            independent samples of one model).
        progress: a progress bar over batches (never in the rendered book).
    """
    from tqdm.auto import tqdm

    from .profile import progress_enabled

    models = list(models)
    noise = None
    if settings.do_sample:
        if settings.top_p != 1.0:
            raise ValueError(f"generate_ensemble samples with top_p=1 only, got top_p={settings.top_p}")
        if not settings.temperature > 0:
            raise ValueError(f"sampling needs a positive temperature, got {settings.temperature}")
        if settings.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 keeps every token), got {settings.top_k}")
        seeds = [settings.seed] * len(models) if seeds is None else list(seeds)
        if len(seeds) != len(models):
            raise ValueError(f"one seed per member: {len(models)} models, {len(seeds)} seeds")
    elif seeds is not None:
        raise ValueError("seeds are for sampling; greedy decoding (do_sample=False) draws nothing")
    stacked = StackedLM.from_models(models)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    encoded = encode_prompts(tokenizer, prompts)
    if settings.do_sample:
        noise = torch.stack([sampling_noise(seed, len(encoded), settings.max_new_tokens) for seed in seeds])
    layers = _layers(stacked)
    out: list[list[Generation | None]] = [[None] * len(encoded) for _ in models]
    batches = prompt_batches(encoded, settings.batch_size)
    for idx in tqdm(batches, desc="generating", disable=not progress_enabled(progress)):
        ids = decode_batch(stacked, [encoded[i] for i in idx], settings.max_new_tokens, eos, pad, layers,
                           None if noise is None else noise[:, idx], settings.temperature, settings.top_k)
        for m in range(stacked.k):
            for row, i in enumerate(idx):
                out[m][i] = to_generation(ids[m, row].tolist(), tokenizer)
    return out  # type: ignore[return-value]
