"""K copies of one small causal LM as one stacked model: a forward pass for K members at once (issue 15).

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

Besides the stacking, it does less work than a padded ``(2 * pairs, max_len)`` batch:
sequences are passed in length groups (:class:`Group`), each padded only to its own
longest sequence, and the LM head projects only the positions whose next token is a
response token.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Group", "StackedLM", "SUPPORTED"]

#: Hugging Face model types the stacked forward re-implements.
SUPPORTED = ("gpt2", "llama")


@dataclass(frozen=True)
class Group:
    """Sequences of similar length padded to one ``(rows, length)`` block.

    The last layer runs its queries, attention output and MLP only at the positions whose
    next token is a response token (``queries``); every position still gives keys and values.

    Attributes:
        input_ids: ``(rows, length)`` token ids (right-padded; padding is never a target).
        queries: ``(rows, slots)`` positions the last layer computes, per row (padded slots repeat
            a valid position and are never read).
        source: ``(targets,)`` flat index ``row * slots + slot`` of the query slot whose final
            hidden state predicts each response token.
        target: ``(targets,)`` the response token ids.
        sequence: ``(targets,)`` which output sequence each target belongs to.
    """

    input_ids: torch.Tensor
    queries: torch.Tensor
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

    def hidden_states(self, input_ids: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(K, rows * slots, hidden)`` at the ``queries`` positions of right-padded rows."""
        rows, length = input_ids.shape
        flat = input_ids.reshape(-1)
        positions = torch.arange(length)
        at = Queries(queries, length)
        if self.kind == "gpt2":
            h = self._p("wte.weight")[:, flat] + self._p("wpe.weight")[:, positions.repeat(rows)]
            for i in range(self.n_layers):
                h = self._gpt2_block(h, i, rows, length, at if i == self.n_layers - 1 else None)
            return self._layer_norm(h, "ln_f")
        h = self._p("embed_tokens.weight")[:, flat]
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        rope = (emb.cos().to(h.dtype), emb.sin().to(h.dtype))
        for i in range(self.n_layers):
            h = self._llama_block(h, i, rows, length, rope, at if i == self.n_layers - 1 else None)
        return self._rms_norm(h, "norm.weight")

    def _layer_norm(self, h, name):
        w, b = self._p(f"{name}.weight"), self._p(f"{name}.bias")
        return torch.addcmul(b.unsqueeze(1), F.layer_norm(h, h.shape[-1:], eps=self.eps), w.unsqueeze(1))

    def _rms_norm(self, h, name):
        return F.rms_norm(h, h.shape[-1:], eps=self.eps) * self._p(name).unsqueeze(1)

    def _attention(self, q, k, v, rows, length, at: "Queries | None"):
        """Causal attention of per-head projections ``(K, positions, heads, head_dim)``.

        ``q`` holds every position (``at=None``) or only the query slots of ``at``; keys and
        values hold every position of the ``(rows, length)`` block.
        """
        k_ = q.shape[0]
        n, slots = k_ * rows, length if at is None else at.slots
        q = q.reshape(n, slots, -1, q.shape[-1]).transpose(1, 2)
        k = k.reshape(n, length, -1, k.shape[-1]).transpose(1, 2)
        v = v.reshape(n, length, -1, v.shape[-1]).transpose(1, 2)
        gqa = k.shape[1] != q.shape[1]
        if at is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=at.mask(k_), enable_gqa=gqa)
        return out.transpose(1, 2).reshape(k_, rows * slots, -1)

    def _gpt2_block(self, h, i, rows, length, at):
        p = f"h.{i}."
        x = self._layer_norm(h, p + "ln_1")
        w, b = self._p(p + "attn.c_attn.weight"), self._p(p + "attn.c_attn.bias")
        k_, hidden = h.shape[0], h.shape[-1]
        heads, hd = self.n_heads, hidden // self.n_heads
        if at is None:
            q, k, v = _bmm(x, w, b).split(hidden, dim=-1)
        else:  # keys and values everywhere, queries (and all that follows) at the query slots only
            k, v = _bmm(x, w[..., hidden:], b[..., hidden:]).split(hidden, dim=-1)
            q = _bmm(x[:, at.flat], w[..., :hidden], b[..., :hidden])
            h = h[:, at.flat]
        q, k, v = (t.reshape(k_, -1, heads, hd) for t in (q, k, v))
        a = self._attention(q, k, v, rows, length, at)
        h = h + _bmm(a, self._p(p + "attn.c_proj.weight"), self._p(p + "attn.c_proj.bias"))
        x = self._layer_norm(h, p + "ln_2")
        x = F.gelu(_bmm(x, self._p(p + "mlp.c_fc.weight"), self._p(p + "mlp.c_fc.bias")),
                   approximate="none" if self.config.activation_function == "gelu" else "tanh")
        return h + _bmm(x, self._p(p + "mlp.c_proj.weight"), self._p(p + "mlp.c_proj.bias"))

    def _llama_block(self, h, i, rows, length, rope, at):
        p = f"layers.{i}."
        x = self._rms_norm(h, p + "input_layernorm.weight")
        k_, hd, heads, kv_heads = h.shape[0], self.head_dim, self.n_heads, self.n_kv_heads
        wq, wk, wv = (self._p(f"{p}self_attn.{n}.weight") for n in ("q_proj", "k_proj", "v_proj"))
        cos, sin = (t.repeat(rows, 1)[None, :, None, :] for t in rope)  # (1, rows * length, 1, head_dim)
        if at is None:
            q, k, v = _bmm(x, torch.cat([wq, wk, wv], dim=1).transpose(1, 2)).split(
                [heads * hd, kv_heads * hd, kv_heads * hd], dim=-1)
            q_cos, q_sin = cos, sin
        else:
            k, v = _bmm(x, torch.cat([wk, wv], dim=1).transpose(1, 2)).chunk(2, dim=-1)
            q = _bmm(x[:, at.flat], wq.transpose(1, 2))
            q_cos, q_sin = cos[:, at.flat], sin[:, at.flat]
            h = h[:, at.flat]
        q = q.reshape(k_, -1, heads, hd)
        k = k.reshape(k_, rows * length, kv_heads, hd)
        q, k = q * q_cos + _rotate_half(q) * q_sin, k * cos + _rotate_half(k) * sin
        a = self._attention(q, k, v.reshape(k_, rows * length, kv_heads, hd), rows, length, at)
        h = h + _bmm(a, self._p(p + "self_attn.o_proj.weight").transpose(1, 2))
        x = self._rms_norm(h, p + "post_attention_layernorm.weight")
        gate_up = _bmm(x, torch.cat([self._p(p + "mlp.gate_proj.weight"), self._p(p + "mlp.up_proj.weight")],
                                    dim=1).transpose(1, 2))
        gate, up = gate_up.chunk(2, dim=-1)
        return h + _bmm(F.silu(gate) * up, self._p(p + "mlp.down_proj.weight").transpose(1, 2))

    def sequence_logps(self, groups: list[Group], n_sequences: int) -> torch.Tensor:
        """Eq. (5)'s ``log p_θk(y|x)`` summed over response tokens: ``(K, n_sequences)``.

        Every group's hidden states are projected through the LM head at its ``source``
        positions only, and each target's log-prob is added to its ``sequence``.
        """
        head = self.params[self.lm_head]  # (K, vocab, hidden)
        out = head.new_zeros(self.k, n_sequences)
        for g in groups:
            h = self.hidden_states(g.input_ids, g.queries)[:, g.source]  # (K, targets, hidden)
            logits = torch.bmm(h, head.transpose(1, 2))
            logps = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), g.target.repeat(self.k),
                                     reduction="none").reshape(self.k, -1)
            out = out.index_add(1, g.sequence, logps)
        return out


class Queries:
    """The last layer's query slots of a ``(rows, length)`` block: flat indices and the causal mask."""

    def __init__(self, queries: torch.Tensor, length: int):
        rows, self.slots = queries.shape
        self.flat = (queries + torch.arange(rows)[:, None] * length).reshape(-1)
        # slot j of row r sees key positions <= its own position: (rows, 1, slots, length)
        self._mask = (torch.arange(length)[None, None, :] <= queries[:, :, None]).unsqueeze(1)
        self._expanded: dict[int, torch.Tensor] = {}

    def mask(self, k: int) -> torch.Tensor:
        """The mask for K members stacked along the batch axis: ``(K * rows, 1, slots, length)``."""
        if k not in self._expanded:
            self._expanded[k] = self._mask.repeat(k, 1, 1, 1)
        return self._expanded[k]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)
