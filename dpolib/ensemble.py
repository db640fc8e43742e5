"""The stacked model: K small causal LMs of one architecture as one model, a forward pass for K members at once.

The CPU world's students are far too small to keep a core busy: a DPO step of the
84k-parameter student is a few hundred kernels on ``(32, ~100, 48)`` tensors, and one
run of a β sweep leaves the next one waiting. Runs that differ only in β (or in their
reference columns) share the student and the batches, so their weights can be stacked
along a leading member axis ``K``: every ``(tokens, in) @ (in, out)`` becomes one
``(K, tokens, in) @ (K, in, out)`` batched matmul, and every other kernel runs once
on K times the data.

:class:`StackedLM` holds the stacked parameters (leaf tensors ``(K, *shape)`` named
as in the Hugging Face model), computes the sequence log-probs ``log p_θk(y|x)`` of
every member for one batch (:meth:`StackedLM.sequence_logps`), and writes member
``k`` back into a Hugging Face model (:meth:`StackedLM.to_model`). It re-implements
the forward pass of the two architectures of the CPU world, GPT-2 (``char`` family)
and Llama (``bpe`` family), in plain ``torch`` ops, equal to the Hugging Face forward
to float round-off (``tests/test_sweep.py`` checks it against TRL on whole runs).

The sweep engine (:mod:`dpolib.experiments.sweep`) trains with it: members that share every
batch and differ in β. Members may also read their own batches (the input ids carry a leading
member axis, and :meth:`StackedLM.lm_losses` gives each member's next-token loss), as the CPU
world's pretraining and SFT would; ``benchmarks/bench_world_stacking.py`` measures that and
found no gain there, so the world trains its models one at a time. :func:`clip_grad_norm_per_member`
clips each member's gradient on its own.

Besides the stacking, it does less work than a padded ``(2 * pairs, max_len)`` batch
(:meth:`StackedLM.sequence_logps` on a :class:`Packed` batch):

* **shared prefixes**: a pair's chosen and rejected sequences open with the same prompt; its
  prefix is computed once, as a row of a prefix :class:`Block`, and both suffixes attend to
  it. This is exact, not an approximation: in a causal LM a token's hidden states depend only
  on the tokens before it, so the prefix's keys and values are the same in both sequences;
  a suffix token keeps its position in the sequence (``positions``: GPT-2's position
  embeddings, Llama's RoPE) and its attention sees the prefix's keys and values, then the
  row's own earlier ones, which is the causal attention over the whole sequence. The prefix
  stops before the position that predicts the first response token, so the last layer needs
  only its keys and values. Only float round-off differs from running the whole sequences;
  gradients reach the prefix from both suffixes through autograd;
* **length groups**: prefixes and suffixes are padded in blocks of similar length, laid end to
  end on one token axis, so a layer's token-wise work (norms, projections, MLP) is one kernel
  each over the batch and only attention runs block by block;
* the last layer computes queries, and the LM head projects, only at the positions whose next
  token is a response token.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Block", "Packed", "StackedLM", "SUPPORTED", "clip_grad_norm_per_member"]

#: Hugging Face model types the stacked forward re-implements.
SUPPORTED = ("gpt2", "llama")


@dataclass(frozen=True)
class Block:
    """``rows`` rows of tokens right-padded to ``length``, stored at ``offset`` on a :class:`Packed` batch's token axis.

    A block of shared prefixes has no ``queries``: the last layer needs only its keys and values.
    A block of sequences, or of the suffixes that follow a shared prefix, has ``queries``: the
    positions whose next token is a response token, where the last layer runs its queries,
    attention output and MLP. Its rows may first attend to a ``context``, their pair's prefix:
    row r's queries see the first ``context_len[r]`` tokens of ``context[r]``, then their own
    tokens causally.

    Attributes:
        offset: where the block's ``rows * length`` tokens start on the token axis.
        rows: the block's number of rows.
        length: the block's row length (its longest row; shorter rows are right-padded).
        queries: ``(rows, slots)`` positions in the row the last layer computes (padded slots repeat a
            valid position and are never read), or ``None``.
        context: ``(rows, width)`` token-axis indices of the prefix each row attends to first (entries beyond
            ``context_len`` are padding, masked), or ``None``.
        context_len: ``(rows,)`` how many entries of ``context`` are real.
    """

    offset: int
    rows: int
    length: int
    queries: torch.Tensor | None = None
    context: torch.Tensor | None = None
    context_len: torch.Tensor | None = None


@dataclass(frozen=True)
class Packed:
    """One batch as blocks laid end to end on one token axis (what :meth:`StackedLM.sequence_logps` reads).

    Attributes:
        input_ids: ``(tokens,)`` the blocks' ids, row after row (padding is never a target).
        positions: ``(tokens,)`` each token's position in its sequence (a suffix's starts after its prefix).
        blocks: the :class:`Block` s, in token-axis order, covering it.
        source: ``(targets,)`` index of the query slot whose final hidden state predicts each response
            token, on the axis of every query block's ``rows * slots`` slots laid end to end.
        target: ``(targets,)`` the response token ids.
        sequence: ``(targets,)`` which output sequence each target belongs to.
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    blocks: tuple[Block, ...]
    source: torch.Tensor
    target: torch.Tensor
    sequence: torch.Tensor

    @property
    def padded_tokens(self) -> int:
        return self.input_ids.numel()


def _check_supported(model) -> str:
    config = model.config
    kind = config.model_type
    if kind not in SUPPORTED:
        raise ValueError(
            f"the sweep engine's stacked model supports {SUPPORTED} (the CPU world's architectures), not "
            f"{kind!r}; train this model with TRL (dpolib.trl_bridge.PrecomputedRefDPOTrainer), one run per β"
        )
    if kind == "gpt2":
        if config.activation_function not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise ValueError(f"GPT-2 activation {config.activation_function!r} is not supported by the stacked model")
        if config.scale_attn_by_inverse_layer_idx or config.reorder_and_upcast_attn or config.add_cross_attention:
            raise ValueError("the stacked GPT-2 supports the default attention only (no inverse-layer scaling, "
                             "no upcast reordering, no cross-attention)")
        if not config.scale_attn_weights:
            raise ValueError("the stacked GPT-2 assumes scale_attn_weights=True")
    else:
        rope = getattr(config, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"the stacked Llama supports default RoPE only, not {rope.get('rope_type')!r}")
        if config.hidden_act != "silu" or config.attention_bias or config.mlp_bias:
            raise ValueError("the stacked Llama supports silu MLPs without biases only")
        if getattr(config, "pretraining_tp", 1) not in (None, 1):
            raise ValueError("the stacked Llama needs pretraining_tp=1")
    return kind


def _bmm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``(K, n, in) @ (K, in, out) [+ (K, out)]``."""
    if bias is None:
        return torch.bmm(x, weight)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)


class StackedLM:
    """K members of one architecture, initialised from one Hugging Face causal LM.

    Args:
        model: a ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` (the student; left untouched).
        k: number of members, each starting from ``model``'s weights.

    Attributes:
        params: ``{name: (k, *shape)}`` leaf tensors with ``requires_grad``, named as in
            ``model.named_parameters()`` (tied weights appear once, as there).
    """

    def __init__(self, model, k: int):
        if k < 1:
            raise ValueError(f"an ensemble needs at least one member, got k={k}")
        self.kind = _check_supported(model)
        self.k = k
        self.config = model.config
        self.template = model
        self.params = {
            name: p.detach().to(torch.float32).unsqueeze(0).repeat(k, *([1] * p.dim())).requires_grad_()
            for name, p in model.named_parameters()
        }
        self.dtype = torch.float32
        if self.kind == "gpt2":
            self.prefix, self.n_layers = "transformer", self.config.n_layer
            self.n_heads, self.eps = self.config.n_head, self.config.layer_norm_epsilon
            self.embed = "transformer.wte.weight"
        else:
            self.prefix, self.n_layers = "model", self.config.num_hidden_layers
            self.n_heads, self.eps = self.config.num_attention_heads, self.config.rms_norm_eps
            self.n_kv_heads = self.config.num_key_value_heads
            self.head_dim = getattr(self.config, "head_dim", None) or self.config.hidden_size // self.n_heads
            theta = (getattr(self.config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
            self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim))
            self.embed = "model.embed_tokens.weight"
        self.lm_head = "lm_head.weight" if "lm_head.weight" in self.params else self.embed

    # -- weights in and out -----------------------------------------------------------
    @classmethod
    def from_models(cls, models) -> "StackedLM":
        """K members holding the weights of ``models`` (K Hugging Face models of one architecture and shape)."""
        models = list(models)
        if not models:
            raise ValueError("an ensemble needs at least one member, got no models")
        stacked = cls(models[0], len(models))
        with torch.no_grad():
            for m, model in enumerate(models[1:], start=1):
                named = dict(model.named_parameters())
                if set(named) != set(stacked.params) or any(named[n].shape != p.shape[1:]
                                                            for n, p in stacked.params.items()):
                    raise ValueError(f"model {m} differs in architecture from model 0; only models of one "
                                     "configuration can be stacked")
                for name, p in stacked.params.items():
                    p[m].copy_(named[name].to(p.dtype))
        return stacked

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s weights under the Hugging Face names (detached copies)."""
        return {name: p[member].detach().clone() for name, p in self.params.items()}

    def to_model(self, member: int, model=None):
        """A Hugging Face model holding member ``member``'s weights (a copy of the student unless given)."""
        model = copy.deepcopy(self.template) if model is None else model
        missing, unexpected = model.load_state_dict(self.member_state(member), strict=False)
        named = dict(model.named_parameters())
        left = [n for n in missing if n in named]  # tied weights and buffers are not missing
        if left or unexpected:
            raise RuntimeError(f"member {member} does not fit the model: missing {left}, unexpected {unexpected}")
        return model

    # -- the forward pass -------------------------------------------------------------
    def _p(self, name: str) -> torch.Tensor:
        return self.params[f"{self.prefix}.{name}"]

    def _embed(self, name: str, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(K, rows * length, hidden)`` of ids shared by every member or ``(K, rows, length)``."""
        table = self._p(name)
        if input_ids.dim() == 2:
            return table[:, input_ids.reshape(-1)]
        if input_ids.shape[0] != self.k:
            raise ValueError(f"per-member input ids need a leading axis of {self.k} members, got {input_ids.shape}")
        index = input_ids.reshape(self.k, -1, 1).expand(-1, -1, table.shape[-1])
        return table.gather(1, index)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(K, rows * length, hidden)`` at every position of right-padded rows (causal
        attention within each row, as one :class:`Block`).

        ``input_ids`` is ``(rows, length)`` (every member reads the same rows) or ``(K, rows, length)`` (each
        member its own rows, of one common shape)."""
        rows, length = input_ids.shape[-2:]
        block = _BlockAttention(Block(0, rows, length), self.k)
        name = "wte.weight" if self.kind == "gpt2" else "embed_tokens.weight"
        return self._layers(self._embed(name, input_ids), torch.arange(length).repeat(rows),
                            lambda q, k, v, last: block(q, k, v, None), None)

    def _layers(self, h, positions, attend, at):
        """Every layer on token embeddings ``h`` ``(K, tokens, hidden)`` at ``positions`` ``(tokens,)`` (each token's
        position in its sequence, for GPT-2's position embeddings and Llama's RoPE); the final hidden states.

        ``attend(q, k, v, last)`` is the attention of a layer's per-head projections; ``at`` the token indices
        where the last layer computes queries (``None``: every token)."""
        if self.kind == "gpt2":
            h = h + self._p("wpe.weight")[:, positions]
            for i in range(self.n_layers):
                last = i == self.n_layers - 1
                h = self._gpt2_block(h, i, lambda q, k, v, last=last: attend(q, k, v, last), at if last else None)
            return self._layer_norm(h, "ln_f")
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        rope = tuple(t.to(h.dtype)[None, :, None, :] for t in (emb.cos(), emb.sin()))  # (1, tokens, 1, head_dim)
        for i in range(self.n_layers):
            last = i == self.n_layers - 1
            h = self._llama_block(h, i, rope, lambda q, k, v, last=last: attend(q, k, v, last), at if last else None)
        return self._rms_norm(h, "norm.weight")

    def _layer_norm(self, h, name):
        w, b = self._p(f"{name}.weight"), self._p(f"{name}.bias")
        return torch.addcmul(b.unsqueeze(1), F.layer_norm(h, h.shape[-1:], eps=self.eps), w.unsqueeze(1))

    def _rms_norm(self, h, name):
        return F.rms_norm(h, h.shape[-1:], eps=self.eps) * self._p(name).unsqueeze(1)

    def _gpt2_block(self, h, i, attend, at):
        p = f"h.{i}."
        x = self._layer_norm(h, p + "ln_1")
        w, b = self._p(p + "attn.c_attn.weight"), self._p(p + "attn.c_attn.bias")
        k_, hidden = h.shape[0], h.shape[-1]
        heads, hd = self.n_heads, hidden // self.n_heads
        if at is None:
            q, k, v = _bmm(x, w, b).split(hidden, dim=-1)
        else:  # keys and values everywhere, queries (and all that follows) at the query slots only
            k, v = _bmm(x, w[..., hidden:], b[..., hidden:]).split(hidden, dim=-1)
            q = _bmm(x[:, at], w[..., :hidden], b[..., :hidden])
            h = h[:, at]
        q, k, v = (t.reshape(k_, -1, heads, hd) for t in (q, k, v))
        a = attend(q, k, v)
        h = h + _bmm(a, self._p(p + "attn.c_proj.weight"), self._p(p + "attn.c_proj.bias"))
        x = self._layer_norm(h, p + "ln_2")
        x = F.gelu(_bmm(x, self._p(p + "mlp.c_fc.weight"), self._p(p + "mlp.c_fc.bias")),
                   approximate="none" if self.config.activation_function == "gelu" else "tanh")
        return h + _bmm(x, self._p(p + "mlp.c_proj.weight"), self._p(p + "mlp.c_proj.bias"))

    def _llama_block(self, h, i, rope, attend, at):
        p = f"layers.{i}."
        x = self._rms_norm(h, p + "input_layernorm.weight")
        k_, hd, heads, kv_heads = h.shape[0], self.head_dim, self.n_heads, self.n_kv_heads
        wq, wk, wv = (self._p(f"{p}self_attn.{n}.weight") for n in ("q_proj", "k_proj", "v_proj"))
        cos, sin = rope  # (1, tokens, 1, head_dim)
        if at is None:
            q, k, v = _bmm(x, torch.cat([wq, wk, wv], dim=1).transpose(1, 2)).split(
                [heads * hd, kv_heads * hd, kv_heads * hd], dim=-1)
            q_cos, q_sin = cos, sin
        else:
            k, v = _bmm(x, torch.cat([wk, wv], dim=1).transpose(1, 2)).chunk(2, dim=-1)
            q = _bmm(x[:, at], wq.transpose(1, 2))
            q_cos, q_sin = cos[:, at], sin[:, at]
            h = h[:, at]
        q = q.reshape(k_, -1, heads, hd)
        k = k.reshape(k_, -1, kv_heads, hd)
        q, k = q * q_cos + _rotate_half(q) * q_sin, k * cos + _rotate_half(k) * sin
        a = attend(q, k, v.reshape(k_, -1, kv_heads, hd))
        h = h + _bmm(a, self._p(p + "self_attn.o_proj.weight").transpose(1, 2))
        x = self._rms_norm(h, p + "post_attention_layernorm.weight")
        gate_up = _bmm(x, torch.cat([self._p(p + "mlp.gate_proj.weight"), self._p(p + "mlp.up_proj.weight")],
                                    dim=1).transpose(1, 2))
        gate, up = gate_up.chunk(2, dim=-1)
        return h + _bmm(F.silu(gate) * up, self._p(p + "mlp.down_proj.weight").transpose(1, 2))

    def sequence_logps(self, batch: Packed, n_sequences: int) -> torch.Tensor:
        """Eq. (5)'s ``log p_θk(y|x)`` summed over response tokens: ``(K, n_sequences)``.

        One pass over the whole batch: the token-wise work of a layer (norms, projections, MLP) runs
        once on the token axis of every block, attention block by block,
        and the last layer's queries only at the query slots. The final hidden states go through the
        LM head at the ``source`` slots only, and each target's log-prob is added to its ``sequence``.
        """
        plans = [_BlockAttention(b, self.k) for b in batch.blocks]
        at = torch.cat([p.query_index for p in plans if p.query_index is not None])

        def attend(q, k, v, last):
            outs, start = [], 0
            for p in plans:
                if last and p.query_index is None:
                    continue  # a prefix block: the last layer needs only its keys and values
                outs.append(p(q, k, v, start if last else None))
                start += outs[-1].shape[1]
            return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

        name = "wte.weight" if self.kind == "gpt2" else "embed_tokens.weight"
        h = self._layers(self._embed(name, batch.input_ids[None]), batch.positions, attend, at)[:, batch.source]
        head = self.params[self.lm_head]  # (K, vocab, hidden)
        logits = torch.bmm(h, head.transpose(1, 2))
        logps = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.target.repeat(self.k),
                                 reduction="none").reshape(self.k, -1)
        return head.new_zeros(self.k, n_sequences).index_add(1, batch.sequence, logps)

    def lm_losses(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each member's causal LM loss on its own rows: ``(K,)``.

        ``input_ids`` and ``labels`` are ``(K, rows, length)``, right-padded; as in Hugging Face's
        ``ForCausalLMLoss``, position t predicts ``labels[..., t + 1]`` and the loss is the mean
        cross-entropy over the labels that are not ``-100``. Only those positions go through the
        LM head (an SFT batch's prompts and padding do not).
        """
        if input_ids.dim() != 3 or labels.shape != input_ids.shape:
            raise ValueError(f"lm_losses needs (K, rows, length) ids and labels of one shape, got "
                             f"{tuple(input_ids.shape)} and {tuple(labels.shape)}")
        k, rows, length = input_ids.shape
        target = labels[..., 1:].reshape(k, -1)  # (K, rows * (length - 1))
        valid = target != -100
        counts = valid.sum(1)
        if bool((counts == 0).any()):
            raise ValueError("every member needs at least one label that is not -100")
        # flat positions (row * length + t) of each member's predicted labels, padded with position 0
        where = torch.arange(rows * (length - 1)).reshape(rows, length - 1)
        where = (where + torch.arange(rows)[:, None]).reshape(-1)  # skip each row's last position
        slots = int(counts.max())
        order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)[:, :slots]  # valid ones first
        keep = torch.arange(slots)[None, :] < counts[:, None]
        source = where[order]
        picked = torch.where(keep, target.gather(1, order), torch.full_like(order, -100))
        h = self.hidden_states(input_ids)
        h = h.gather(1, source.unsqueeze(-1).expand(-1, -1, h.shape[-1]))  # (K, slots, hidden)
        logits = torch.bmm(h, self.params[self.lm_head].transpose(1, 2))
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), picked.reshape(-1), ignore_index=-100,
                                 reduction="none").reshape(k, slots)
        return losses.sum(1) / counts


def clip_grad_norm_per_member(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for each member of stacked ``(K, ...)`` gradients; returns the K norms."""
    k = params[0].shape[0]
    norms = torch.stack([p.grad.reshape(k, -1).norm(dim=1) for p in params], dim=1)  # (K, tensors)
    total = norms.norm(dim=1)
    if max_norm > 0:
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(coef.view(k, *([1] * (p.dim() - 1))))
    return total


class _BlockAttention:
    """Causal attention of one :class:`Block` of a :class:`Packed` batch, its indices and masks made once a step.

    A row attends to its context (its pair's shared prefix, gathered from the prefix block's keys and
    values of the same layer) and then to its own earlier tokens: the keys of row r are
    ``[context[r], own tokens]``, and the mask hides the context's padding and the row's later tokens.
    This is the attention of the whole sequence, so sharing the prefix changes no value.
    """

    def __init__(self, block: Block, k: int):
        self.block, rows, length = block, block.rows, block.length
        own = block.offset + torch.arange(rows * length).reshape(rows, length)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        if block.context is None:
            self.keys, self.mask, seen = None, None, None  # keys: the block's own tokens, a slice
        else:
            width = block.context.shape[1]
            self.keys = torch.cat([block.context, own], dim=1).reshape(-1)
            seen = torch.arange(width)[None, :] < block.context_len[:, None]  # (rows, width)
            self.mask = torch.cat([seen[:, None, :].expand(rows, length, width), causal.expand(rows, -1, -1)],
                                  dim=-1).unsqueeze(1).repeat(k, 1, 1, 1)  # (K * rows, 1, length, width + length)
        self.query_index = self.query_mask = None
        if block.queries is not None:
            slots = block.queries.shape[1]
            self.query_index = own.gather(1, block.queries).reshape(-1)
            mask = torch.arange(length)[None, None, :] <= block.queries[:, :, None]  # (rows, slots, length)
            if seen is not None:
                mask = torch.cat([seen[:, None, :].expand(rows, slots, -1), mask], dim=-1)
            self.query_mask = mask.unsqueeze(1).repeat(k, 1, 1, 1)

    def __call__(self, q, k, v, start):
        """The block's attention output ``(K, positions, heads * head_dim)``: at every token of the block
        (``start=None``; ``q`` holds every token), or at its query slots (``q`` holds the last layer's
        query slots, this block's from ``start`` on)."""
        b, k_ = self.block, q.shape[0]
        n = b.rows * b.length
        if self.keys is None:
            k, v = k[:, b.offset: b.offset + n], v[:, b.offset: b.offset + n]
        else:
            k, v = k[:, self.keys], v[:, self.keys]
        if start is None:
            q, mask = q[:, b.offset: b.offset + n], self.mask
        else:
            q, mask = q[:, start: start + len(self.query_index)], self.query_mask
        q = q.reshape(k_ * b.rows, -1, *q.shape[2:]).transpose(1, 2)
        k = k.reshape(k_ * b.rows, -1, *k.shape[2:]).transpose(1, 2)
        v = v.reshape(k_ * b.rows, -1, *v.shape[2:]).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                             enable_gqa=k.shape[1] != q.shape[1])
        return out.transpose(1, 2).reshape(k_, -1, out.shape[1] * out.shape[3])


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)
