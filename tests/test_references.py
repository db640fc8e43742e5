"""dpolib.encoding / logprobs / references: scores equal a naive computation, cross-tokenizer, prior, cache, errors."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

import tiny
from dpolib import losses as L
from dpolib.encoding import encode, encode_prior
from dpolib.logprobs import concatenated_sequence_logps, score_encoded
from dpolib.references import (
    CachedReference,
    ModelReference,
    PriorReference,
    Reference,
    UniformReference,
    precompute,
    validate_preference_dataset,
)


@pytest.fixture(scope="module")
def char():
    tok = tiny.char_tokenizer()
    return tiny.char_model(tok, seed=1), tok


@pytest.fixture(scope="module")
def bpe():
    tok = tiny.bpe_tokenizer()
    return tiny.llama_model(tok, seed=2), tok


def naive_logp(model, context_ids, response_ids):
    """Independent reference implementation: one unpadded sequence, full log-softmax."""
    ids = torch.tensor([list(context_ids) + list(response_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    logps = F.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    return logps[-len(response_ids) :]


@pytest.mark.parametrize("family", ["char", "bpe"])
@pytest.mark.parametrize("conversational", [False, True])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_scores_equal_naive_computation(family, conversational, batch_size, request):
    model, tok = request.getfixturevalue(family)
    rows = tiny.preference_rows(7, conversational=conversational)
    prompts = [r["prompt"] for r in rows] * 2
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    ref = ModelReference(model, tok, batch_size=batch_size, progress=False)
    scored = ref.score(prompts, responses, per_token=True)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        enc = encode(tok, p, r)
        expected = naive_logp(model, enc.context_ids, enc.response_ids)
        assert scored.sequence_logps[i].item() == pytest.approx(expected.sum().item(), abs=2e-4)
        assert torch.allclose(scored.token_logps[i].double(), expected, atol=1e-4)
        assert tok.eos_token_id in scored.token_ids[i]  # EOS is scored (Eq. 8 analysis needs it)


def test_concatenated_forward_matches_scoring(char):
    """TRL-collated (right-padded, chosen first) one-forward scoring equals left-padded batched scoring."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    model, tok = char
    rows = tiny.preference_rows(5)
    examples = []
    for r in rows:
        c, j = encode(tok, r["prompt"], r["chosen"]), encode(tok, r["prompt"], r["rejected"])
        assert c.context_ids == j.context_ids
        examples.append({"prompt_ids": list(c.context_ids), "chosen_ids": list(c.response_ids), "rejected_ids": list(j.response_ids)})
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(examples)
    with torch.no_grad():
        chosen, rejected, chosen_len, _ = concatenated_sequence_logps(model, batch)
    ref = ModelReference(model, tok, progress=False)
    assert torch.allclose(chosen.double(), ref.logps([r["prompt"] for r in rows], [r["chosen"] for r in rows]), atol=2e-4)
    assert torch.allclose(rejected.double(), ref.logps([r["prompt"] for r in rows], [r["rejected"] for r in rows]), atol=2e-4)
    assert chosen_len.tolist() == [len(encode(tok, r["prompt"], r["chosen"]).response_ids) for r in rows]


def test_left_padding_with_position_ids_changes_nothing(bpe):
    model, tok = bpe
    rows = tiny.preference_rows(4, conversational=True)
    encoded = [encode(tok, r["prompt"], r["rejected"]) for r in rows]
    alone = [score_encoded(model, [e], tok.pad_token_id).sequence_logps for e in encoded]
    together = score_encoded(model, encoded, tok.pad_token_id, batch_size=4).sequence_logps
    assert torch.allclose(torch.cat(alone), together, atol=1e-4)


def test_cross_tokenizer_reference(char, bpe):
    """A reference of another family scores the same conversational pairs with its own tokenizer and template."""
    (_, student_tok), (teacher, teacher_tok) = char, bpe
    assert student_tok.get_vocab() != teacher_tok.get_vocab()
    rows = tiny.preference_rows(6, conversational=True)
    ds = Dataset.from_list(rows)
    ref = ModelReference(teacher, teacher_tok, name="bpe-teacher", progress=False)
    out = precompute(ds, ref, use_cache=False)
    for i, r in enumerate(rows):
        enc = encode(teacher_tok, r["prompt"], r["chosen"])
        assert teacher_tok.decode(enc.context_ids).startswith("<|bos|><|im_start|>user")  # the teacher's own template
        assert out[i]["ref_chosen_logps"] == pytest.approx(naive_logp(teacher, enc.context_ids, enc.response_ids).sum().item(), abs=2e-4)
    # the student's tokenization of the same response is a different sequence
    s_len = len(encode(student_tok, rows[0]["prompt"], rows[0]["chosen"]).response_ids)
    t_len = len(encode(teacher_tok, rows[0]["prompt"], rows[0]["chosen"]).response_ids)
    assert s_len != t_len


def test_prior_reference_scores_response_after_bos_only(bpe):
    model, tok = bpe
    rows = tiny.preference_rows(4, conversational=True)
    prior = PriorReference(model, tok, progress=False)
    values = prior.logps([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    for i, r in enumerate(rows):
        enc = encode(tok, r["prompt"], r["chosen"])
        expected = naive_logp(model, (tok.bos_token_id,), enc.response_ids).sum().item()
        assert values[i].item() == pytest.approx(expected, abs=2e-4)
        assert encode_prior(tok, r["prompt"], r["chosen"]).response_ids == enc.response_ids


def test_dpo_with_uniform_and_prior_references_on_real_model_outputs(char):
    """Uniform reference ≡ reference-free loss (Eq. 10); prior reference ≡ likelihood objective (Eq. 15)."""
    sft, tok = char
    policy = copy.deepcopy(sft)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = tiny.preference_rows(6, conversational=True)
    prompts = [r["prompt"] for r in rows]
    chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    pol = ModelReference(policy, tok, progress=False)
    pc, pr = pol.logps(prompts, chosen), pol.logps(prompts, rejected)
    beta = 0.1

    uniform = UniformReference(log_prob=-42.0)
    dpo_uniform = L.dpo_loss(pc, pr, uniform.logps(prompts, chosen), uniform.logps(prompts, rejected), beta).losses
    reference_free = -F.logsigmoid(beta * (pc - pr))  # Eq. (10)
    assert torch.allclose(dpo_uniform, reference_free, atol=1e-12)

    prior = PriorReference(sft, tok, progress=False)
    dpo_prior = L.dpo_loss(pc, pr, prior.logps(prompts, chosen), prior.logps(prompts, rejected), beta).losses
    # Eq. (14)-(15), computed independently: log p(x|y) = log p(y|x) + log p(x) - log p_LM(y), p_LM(y) scored naively
    log_px = -3.0
    def log_x_given_y(p, r, seq_logp):
        enc = encode(tok, p, r)
        return seq_logp + log_px - naive_logp(sft, (tok.bos_token_id,), enc.response_ids).sum().item()
    lw = torch.tensor([log_x_given_y(p, r, v) for p, r, v in zip(prompts, chosen, pc.tolist())], dtype=torch.float64)
    ll = torch.tensor([log_x_given_y(p, r, v) for p, r, v in zip(prompts, rejected, pr.tolist())], dtype=torch.float64)
    likelihood = -F.logsigmoid(beta * lw - beta * ll)
    assert torch.allclose(dpo_prior, likelihood, atol=1e-4)
    assert not torch.allclose(dpo_prior, dpo_uniform, atol=1e-3)  # the references really differ


class CountingReference:
    def __init__(self, inner):
        self.inner, self.calls, self.scored, self.name = inner, 0, 0, "counting"

    def logps(self, prompts, responses):
        self.calls += 1
        self.scored += len(responses)
        return self.inner.logps(prompts, responses)

    def fingerprint(self):
        return self.inner.fingerprint()


def test_precompute_adds_trl_columns_and_caches(char, tmp_path):
    model, tok = char
    ds = Dataset.from_list(tiny.preference_rows(6))
    ref = CountingReference(ModelReference(model, tok, progress=False))
    assert isinstance(ref, Reference)
    out1 = precompute(ds, ref, cache_dir=tmp_path)
    assert ref.scored == 12
    out2 = precompute(ds, ref, cache_dir=tmp_path)
    assert ref.scored == 12 + 6  # the second call is a cache hit: only its spot check (3 pairs) is re-scored
    precompute(ds, ref, cache_dir=tmp_path, spot_check=0)
    assert ref.scored == 18
    assert out1["ref_chosen_logps"] == out2["ref_chosen_logps"]
    assert set(out1.column_names) >= {"prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps"}
    # replacing columns, not duplicating them
    out3 = precompute(out1, UniformReference(), cache_dir=tmp_path)
    assert out3["ref_chosen_logps"] == [0.0] * 6 and out3.column_names.count("ref_chosen_logps") == 1


def test_cache_key_changes_with_weights_and_mode(char, tmp_path):
    model, tok = char
    a = ModelReference(model, tok, progress=False)
    b = ModelReference(copy.deepcopy(model), tok, progress=False)
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        next(b.model.parameters())[0, 0] += 1e-3
    b._fingerprint = None
    assert a.fingerprint() != b.fingerprint()
    assert PriorReference(model, tok).fingerprint() != a.fingerprint()
    assert UniformReference(0.0).fingerprint() != UniformReference(-1.0).fingerprint()


def test_cached_reference_round_trip_and_missing_pair(char, tmp_path):
    model, tok = char
    ds = precompute(Dataset.from_list(tiny.preference_rows(4)), ModelReference(model, tok, progress=False), use_cache=False)
    cached = CachedReference.from_columns(ds)
    path = cached.save(tmp_path / "ref.json")
    loaded = CachedReference.load(path)
    assert loaded.logps(ds["prompt"], ds["chosen"]).tolist() == ds["ref_chosen_logps"]
    with pytest.raises(KeyError, match="no log-prob for row 0"):
        loaded.logps(["unseen prompt"], ["unseen answer"])
    with pytest.raises(ValueError, match="non-finite"):
        CachedReference({"k": math.nan})


# ------------------------------------------------------------------ bad input


def test_missing_columns_named():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rejected'\]"):
        validate_preference_dataset(Dataset.from_list([{"prompt": "a", "chosen": "b"}]))


def test_empty_response_names_row(char):
    rows = tiny.preference_rows(3)
    rows[1]["rejected"] = "   "
    with pytest.raises(ValueError, match=r"row 1: 'rejected' is empty"):
        precompute(Dataset.from_list(rows), UniformReference())
    model, tok = char
    with pytest.raises(ValueError, match=r"empty response \(row 0\)"):
        ModelReference(model, tok).logps(["q"], [""])


def test_unequal_prompt_and_response_lists(char):
    model, tok = char
    with pytest.raises(ValueError, match="got 2 prompts but 3 responses"):
        ModelReference(model, tok).logps(["a", "b"], ["x", "y", "z"])
    with pytest.raises(ValueError, match="got 1 prompts but 2 responses"):
        UniformReference().logps(["a"], ["x", "y"])


def test_prompt_longer_than_max_length(char):
    model, tok = char
    ref = ModelReference(model, tok, max_length=10, progress=False)
    with pytest.raises(ValueError, match=r"row 1: the prompt alone is \d+ tokens.*Raise max_length"):
        ref.logps(["hi ", "a much longer prompt than ten characters "], ["ok", "ok"])


def test_response_truncated_like_trl_keep_start(char):
    model, tok = char
    ref = ModelReference(model, tok, max_length=12, progress=False)
    enc = ref.encode_all(["hi "], ["a long answer that does not fit"])[0]
    assert len(enc.input_ids) == 12


def test_tokenizer_without_eos(char):
    model, _ = char
    tok = tiny.char_tokenizer()
    tok.eos_token = None
    with pytest.raises(ValueError, match="has no EOS token"):
        ModelReference(model, tok)


def test_non_finite_reference_logps_rejected():
    class Broken:
        name = "broken"

        def logps(self, prompts, responses):
            out = torch.zeros(len(responses), dtype=torch.float64)
            out[3] = float("nan")
            return out

        def fingerprint(self):
            return "broken"

    with pytest.raises(ValueError, match=r"ref_rejected_logps\[0\] is not finite"):
        precompute(Dataset.from_list(tiny.preference_rows(3)), Broken(), use_cache=False)


def test_not_a_reference():
    with pytest.raises(TypeError, match="must implement"):
        precompute(Dataset.from_list(tiny.preference_rows(2)), object())
