"""Stacked generation against ``model.generate``, member by member (issue 15).

:func:`dpolib.ensemble_generate.generate_ensemble` decodes K models at once; each
member's tokens must equal what :func:`dpolib.evaluation.generate` (Hugging Face's ``generate``
with left padding) gives for that model alone, on GPT-2 and on Llama, whether finished rows are
dropped from the cache early, late or never. Sampling draws from the model's distribution at the
temperature, and a member samples the same tokens in a stack, alone, or in other batches.
"""

import pytest
import torch

import tiny
from dpolib import evaluation as E
from dpolib import ensemble_generate as EG
from dpolib.ensemble import StackedLM

SETTINGS = E.GenerationSettings(max_new_tokens=24, batch_size=5)


def _prompts(n=13):
    """Prompts of many lengths, so rows are left-padded by different amounts."""
    return [[{"role": "user", "content": f"what is {'very ' * (i % 7)}big {i} plus {3 * i}?"}] for i in range(n)]


def _members(kind):
    if kind == "gpt2":
        tok = tiny.char_tokenizer()
        models = [tiny.char_model(tok, seed=s, n_layer=2, n_embd=48) for s in (1, 2, 3)]
    else:
        tok = tiny.bpe_tokenizer()
        models = [tiny.llama_model(tok, seed=s, hidden=32) for s in (1, 2, 3)]
    scale = 0.08 if kind == "gpt2" else 0.02
    for m in models:  # make EOS likely, so rows finish at different steps and the cache is compacted
        with torch.no_grad():
            head = m.get_output_embeddings().weight
            head[tok.eos_token_id] += scale * torch.randn(head.shape[1], generator=torch.Generator().manual_seed(7))
        m.eval()
    return models, tok


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("compact_below", [0.0, 0.75, 1.0])
def test_each_member_decodes_as_generate_does(kind, compact_below, monkeypatch):
    monkeypatch.setattr(EG, "COMPACT_BELOW", compact_below)
    models, tok = _members(kind)
    prompts = _prompts()
    ours = EG.generate_ensemble(models, tok, prompts, SETTINGS)
    for model, generations in zip(models, ours):
        reference = E.generate(model, tok, prompts, SETTINGS)
        assert [g.token_ids for g in generations] == [g.token_ids for g in reference]
        assert [g.text for g in generations] == [g.text for g in reference]
        assert [g.finished for g in generations] == [g.finished for g in reference]
    finished = [g.finished for gs in ours for g in gs]
    assert any(finished) and not all(finished)  # both kinds of rows were decoded


def test_prompt_lengths_differ_so_left_padding_is_exercised():
    _, tok = _members("gpt2")
    lengths = {len(ids) for ids in E.encode_prompts(tok, _prompts())}
    assert len(lengths) > 3


def test_bad_settings_and_mismatched_members_are_refused():
    models, tok = _members("gpt2")
    with pytest.raises(ValueError, match="top_p=1 only"):
        EG.generate_ensemble(models, tok, _prompts(2), E.GenerationSettings(do_sample=True, top_p=0.9))
    with pytest.raises(ValueError, match="top_k must be"):
        EG.generate_ensemble(models, tok, _prompts(2), E.GenerationSettings(do_sample=True, top_k=-1))
    with pytest.raises(ValueError, match="positive temperature"):
        EG.generate_ensemble(models, tok, _prompts(2), E.GenerationSettings(do_sample=True, temperature=0.0))
    with pytest.raises(ValueError, match="one seed per member"):
        EG.generate_ensemble(models, tok, _prompts(2), E.GenerationSettings(do_sample=True), seeds=[1])
    with pytest.raises(ValueError, match="draws nothing"):
        EG.generate_ensemble(models, tok, _prompts(2), SETTINGS, seeds=[1, 2, 3])
    other = tiny.char_model(tok, seed=1, n_layer=2, n_embd=32)
    with pytest.raises(ValueError, match="differs in architecture"):
        StackedLM.from_models([models[0], other])
    with pytest.raises(ValueError, match="at least one member"):
        StackedLM.from_models([])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("compact_below", [0.0, 1.0])
def test_a_member_samples_alone_what_it_samples_in_a_stack(kind, compact_below, monkeypatch):
    monkeypatch.setattr(EG, "COMPACT_BELOW", compact_below)
    models, tok = _members(kind)
    prompts = _prompts()
    sampling = E.GenerationSettings(max_new_tokens=24, batch_size=5, do_sample=True)
    stacked = EG.generate_ensemble(models + [models[0]], tok, prompts, sampling, seeds=[11, 12, 13, 14])
    for m, seed in enumerate([11, 12, 13]):
        for batch_size in (5, 13):
            alone = EG.generate_ensemble([models[m]], tok, prompts,
                                         E.GenerationSettings(max_new_tokens=24, batch_size=batch_size,
                                                              do_sample=True), seeds=[seed])[0]
            assert [g.token_ids for g in alone] == [g.token_ids for g in stacked[m]]
    # two seeds of one model give other samples; the same seed the same ones
    assert [g.token_ids for g in stacked[3]] != [g.token_ids for g in stacked[0]]
    again = EG.generate_ensemble([models[0]], tok, prompts, sampling, seeds=[14])[0]
    assert [g.token_ids for g in again] == [g.token_ids for g in stacked[3]]
    greedy = EG.generate_ensemble(models, tok, prompts, SETTINGS)
    assert [g.token_ids for g in stacked[0]] != [g.token_ids for g in greedy[0]]


@pytest.mark.parametrize("temperature, top_k", [(1.0, 0), (0.5, 0), (1.0, 8)])
def test_samples_follow_the_models_distribution(temperature, top_k):
    """The first sampled token of one prompt, drawn 3,000 times, against softmax(logits / T) over the top k."""
    models, tok = _members("gpt2")
    model, prompt, n = models[0], _prompts(1)[0], 3000
    ids = torch.tensor([E.encode_prompts(tok, [prompt])[0]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1] / temperature
    if top_k:
        logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    settings = E.GenerationSettings(max_new_tokens=1, batch_size=n, do_sample=True, temperature=temperature,
                                    top_k=top_k)
    first = [g.token_ids[0] for g in EG.generate_ensemble([model], tok, [prompt] * n, settings, seeds=[5])[0]]
    freq = torch.bincount(torch.tensor(first), minlength=len(probs)).double() / n
    bound = 4 * (probs.double() * (1 - probs.double()) / n).sqrt() + 1e-3
    assert bool(((freq - probs.double()).abs() <= bound).all())
    assert (probs > 0.02).sum() >= 5  # a spread-out distribution, so the check has something to check
    if top_k:  # nothing outside the top k, and the k kept tokens are not all there is
        assert freq[probs == 0].sum() == 0 and (probs > 0).sum() == top_k < len(probs)


def test_a_cold_temperature_samples_the_greedy_tokens():
    models, tok = _members("llama")
    prompts = _prompts()
    cold = EG.generate_ensemble(models, tok, prompts, E.GenerationSettings(
        max_new_tokens=24, batch_size=5, do_sample=True, temperature=1e-7), seeds=[1, 2, 3])
    greedy = EG.generate_ensemble(models, tok, prompts, SETTINGS)
    for a, b in zip(cold, greedy):
        assert [g.token_ids for g in a] == [g.token_ids for g in b]
