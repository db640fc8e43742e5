"""Two model families: tokenizer, chat template, architecture, pretraining corpus, SFT mix.

The paper's students and references come from families that differ in base
model, tokenizer and pretraining data (Mistral vs Llama-2 vs Llama-3, §6). Ours:

==========  ===============================  ===================================  ============
family      tokenizer                        chat template                        architecture
==========  ===============================  ===================================  ============
``char``    one token per character          Zephyr-like ``<|user|>\\n...</s>``    GPT-2
``bpe``     byte-level BPE (``tokenizers``)   ChatML-like ``<|im_start|>...``       Llama
            trained on the family's corpus
==========  ===============================  ===================================  ============

The families' *pretraining corpora* differ too, in the three ways real corpora do:

* document format (``char``: ``"sort: 7 2 9 4\\n2 4 7 9."``; ``bpe``:
  ``"question: sort: 7 2 9 4\\nanswer: 2 4 7 9."``),
* filler habits (``char`` writes "sure!" / "of course!" a lot, like a chatty
  UltraChat-tuned model; ``bpe`` writes "hello!" / "great question!" / "please note:"),
* the mix of task kinds and of writers (source policies: careful, chatty, sloppy, ...).

Their SFT demonstrations differ in the same way. A same-family large model is
therefore *likely* a compatible reference for the student and the other family's
one an incompatible reference; compatibility is measured (correlation of sequence
log-probs on the preference data), never assumed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

# tokenizers and transformers are imported where a tokenizer or a model is built, so that reading the
# families' constants (what the chapters do) costs no heavy import.

__all__ = ["FamilySpec", "FAMILIES", "build_tokenizer", "build_model", "CHAR_TEMPLATE", "CHATML_TEMPLATE",
           "REFERENCE_ROLES", "reference_model"]

CHAR_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Characters of the char family's vocabulary (everything the task language writes).
CHARS = string.ascii_lowercase + string.digits + " .,:;!?'\n-"


@dataclass(frozen=True)
class FamilySpec:
    """Everything that makes a family a family.

    Attributes:
        name: ``"char"`` or ``"bpe"``.
        arch: ``"gpt2"`` or ``"llama"``.
        tokenizer: ``"char"``, ``"bpe"`` (GPT-2-style byte-level BPE) or ``"bpe-words"`` (byte-level
            BPE whose pre-tokenizer isolates whitespace and punctuation).
        chat_template: Jinja template; the assistant turn ends with the EOS token.
        doc_format: pretraining document, ``{prompt}`` and ``{response}`` filled in.
        openers: the family's habitual fillers (its writers use these).
        kind_weights: mix of task kinds in the family's pretraining corpus (KINDS order).
        pretrain_mix: mix of writers (source policy name -> weight) in its pretraining corpus.
        sft_mix: mix of source policies in its SFT demonstrations (imperfect, as real SFT data).
    """

    name: str
    arch: str
    tokenizer: str
    chat_template: str
    doc_format: str
    openers: tuple[str, ...]
    kind_weights: tuple[float, ...]
    pretrain_mix: dict = field(default_factory=dict)
    sft_mix: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


FAMILIES: dict[str, FamilySpec] = {
    "char": FamilySpec(
        name="char",
        arch="gpt2",
        tokenizer="char",
        chat_template=CHAR_TEMPLATE,
        doc_format="{prompt}\n{response}",
        openers=("sure!", "of course!"),
        # copy, reverse, sort, initials, spell
        kind_weights=(1.0, 1.2, 1.2, 0.8, 0.8),
        pretrain_mix={"careful": 0.45, "chatty": 0.25, "sloppy": 0.12, "verbose": 0.06, "lazy": 0.04,
                      "overlong": 0.04, "runon": 0.04},  # fmt: skip
        # like UltraChat's GPT-3.5 answers, most SFT demonstrations open with a stock phrase ("sure!"); a stronger
        # annotator dislikes the habit, so the preference data can teach what the SFT data did not
        sft_mix={"careful": 0.30, "chatty": 0.45, "sloppy": 0.10, "verbose": 0.10, "lazy": 0.05},
    ),
    "bpe": FamilySpec(
        name="bpe",
        arch="llama",
        tokenizer="bpe-words",
        chat_template=CHATML_TEMPLATE,
        doc_format="question: {prompt}\nanswer: {response}",
        openers=("hello!", "great question!", "please note:"),
        kind_weights=(0.8, 0.8, 1.0, 1.3, 1.2),
        pretrain_mix={"careful": 0.50, "chatty": 0.18, "sloppy": 0.12, "verbose": 0.04, "lazy": 0.04,
                      "overlong": 0.08, "runon": 0.04},  # fmt: skip
        sft_mix={"careful": 0.30, "chatty": 0.40, "sloppy": 0.12, "overlong": 0.10, "verbose": 0.08},
    ),
}


def build_tokenizer(spec: FamilySpec, corpus: list[str] | None = None, vocab_size: int = 384):
    """The family's tokenizer, with BOS/EOS/PAD and its chat template.

    ``char``: a fixed character vocabulary plus the template's role tokens.
    ``bpe``: a byte-level BPE of ``vocab_size`` trained on ``corpus`` (the family's
    own pretraining text), deterministic for a given corpus.

    Returns:
        a ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if spec.tokenizer == "char":
        specials = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
        vocab = {tok: i for i, tok in enumerate(specials + list(CHARS))}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
        tok.decoder = decoders.Fuse()
        tok.add_special_tokens(specials)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
        )
    elif spec.tokenizer in ("bpe", "bpe-words"):
        if not corpus:
            raise ValueError("a BPE tokenizer is trained on the family's corpus: pass corpus=[...] (non-empty)")
        specials = ["<|pad|>", "<|bos|>", "<|im_end|>", "<|im_start|>"]
        tok = Tokenizer(models.BPE())
        if spec.tokenizer == "bpe-words":
            # whitespace and punctuation are tokens of their own, so a word is the same token
            # wherever it stands (after a space, a newline or a colon)
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Split(Regex(r"[\s.,:;!?]"), behavior="isolated"),
                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
            )  # fmt: skip
        else:  # GPT-2's regex: a word carries its leading space
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|im_end|>", pad_token="<|pad|>"
        )
    else:
        raise ValueError(f"unknown tokenizer kind {spec.tokenizer!r}")
    fast.chat_template = spec.chat_template
    fast.model_max_length = 4096
    return fast


def build_model(spec: FamilySpec, tokenizer, n_layer: int, hidden: int, n_positions: int = 512):
    """A freshly initialised causal LM of the family's architecture (seed the RNG before calling)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    n_head = max(2, hidden // 32)
    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if spec.arch == "gpt2":
        # "gelu_pytorch_tanh" is GPT-2's own tanh approximation of GELU ("gelu_new") as one fused kernel: the same
        # function, and a training step of the world's GPT-2 models 11-18% faster (measured at world-4.1)
        config = GPT2Config(
            n_positions=n_positions, n_embd=hidden, n_layer=n_layer, n_head=n_head,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh", **common,
        )  # fmt: skip
        return GPT2LMHeadModel(config)
    if spec.arch == "llama":
        config = LlamaConfig(
            hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=n_layer,
            num_attention_heads=n_head, num_key_value_heads=n_head, max_position_embeddings=n_positions, **common,
        )  # fmt: skip
        return LlamaForCausalLM(config)
    raise ValueError(f"unknown architecture {spec.arch!r}")


#: The model references a CPU-world student can be given, and the SFT model that plays each.
REFERENCE_ROLES = ("self", "compatible", "incompatible")


def reference_model(student: str, reference: str, families=None) -> tuple[str, str]:
    """``(family, size)`` of the SFT model that plays ``reference`` for ``student``.

    ``self`` is the student (its family's ``small`` model), ``compatible`` its family's
    ``large`` model (same tokenizer and template), ``incompatible`` the other family's
    ``large`` model (another tokenizer, template and architecture). ``families`` defaults to
    ``FAMILIES`` (a report of another world passes its own two).
    """
    families = list(FAMILIES if families is None else families)
    if reference == "self":
        return student, "small"
    if reference == "compatible":
        return student, "large"
    if reference == "incompatible":
        others = [f for f in families if f != student]
        if len(others) != 1:
            raise ValueError(f"expected exactly two families, got {sorted(families)}")
        return others[0], "large"
    raise ValueError(f"reference must be one of {REFERENCE_ROLES}, got {reference!r}")
