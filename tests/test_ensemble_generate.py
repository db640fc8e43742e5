"""Stacked greedy generation against ``model.generate``, member by member (issue 15).

:func:`dpolib.experiments.ensemble_generate.generate_ensemble` decodes K models at once; each
member's tokens must equal what :func:`dpolib.evaluation.generate` (Hugging Face's ``generate``
with left padding) gives for that model alone, on GPT-2 and on Llama, whether finished rows are
dropped from the cache early, late or never.
"""

import pytest
import torch

import tiny
from dpolib import evaluation as E
from dpolib.experiments import ensemble_generate as EG
from dpolib.experiments.ensemble import StackedLM

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


def test_sampling_and_mismatched_members_are_refused():
    models, tok = _members("gpt2")
    with pytest.raises(ValueError, match="greedily only"):
        EG.generate_ensemble(models, tok, _prompts(2), E.GenerationSettings(do_sample=True))
    other = tiny.char_model(tok, seed=1, n_layer=2, n_embd=32)
    with pytest.raises(ValueError, match="differs in architecture"):
        StackedLM.from_models([models[0], other])
    with pytest.raises(ValueError, match="at least one member"):
        StackedLM.from_models([])
