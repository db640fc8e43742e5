"""The stacked model's per-member training path: :meth:`dpolib.ensemble.StackedLM.lm_losses` and
:func:`dpolib.ensemble.clip_grad_norm_per_member` against the Hugging Face model, member by member."""

import pytest
import torch

import tiny
from dpolib.ensemble import StackedLM, clip_grad_norm_per_member


def _models(kind, n=3):
    if kind == "gpt2":
        tok = tiny.char_tokenizer()
        return [tiny.char_model(tok, seed=s, n_layer=2, n_embd=48) for s in range(1, n + 1)], tok
    tok = tiny.bpe_tokenizer()
    return [tiny.llama_model(tok, seed=s, hidden=32) for s in range(1, n + 1)], tok


def _batch(vocab, k=3, rows=4, length=12, seed=0):
    """Per-member right-padded rows with labels only on a per-row span (an SFT batch's shape)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (k, rows, length), generator=g)
    labels = torch.full_like(ids, -100)
    for m in range(k):
        for r in range(rows):
            start, end = int(torch.randint(0, 4, (1,), generator=g)), int(torch.randint(6, length + 1, (1,), generator=g))
            labels[m, r, start:end] = ids[m, r, start:end]
            ids[m, r, end:] = 0  # padding after the row's end is never a label
    return ids, labels


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_each_members_loss_and_gradient_are_the_hugging_face_models(kind):
    models, tok = _models(kind)
    ids, labels = _batch(len(tok))
    stacked = StackedLM.from_models(models)
    losses = stacked.lm_losses(ids, labels)
    losses.sum().backward()
    for m, model in enumerate(models):
        mask = (ids[m] != 0).long()
        loss = model(input_ids=ids[m], attention_mask=mask, labels=labels[m]).loss
        loss.backward()
        assert torch.allclose(losses[m], loss, atol=1e-5)
        for name, p in model.named_parameters():
            assert torch.allclose(stacked.params[name].grad[m], p.grad, atol=1e-5), name


def test_a_members_loss_does_not_depend_on_the_others():
    models, tok = _models("gpt2")
    ids, labels = _batch(len(tok))
    together = StackedLM.from_models(models).lm_losses(ids, labels)
    alone = StackedLM.from_models(models[1:2]).lm_losses(ids[1:2], labels[1:2])
    assert torch.allclose(together[1], alone[0], atol=1e-6)


def test_bad_shapes_and_empty_labels_are_refused():
    models, tok = _models("gpt2")
    stacked = StackedLM.from_models(models)
    ids, labels = _batch(len(tok))
    with pytest.raises(ValueError, match="one shape"):
        stacked.lm_losses(ids[0], labels[0])
    with pytest.raises(ValueError, match="leading axis of 3"):
        stacked.lm_losses(ids[:2], labels[:2])
    with pytest.raises(ValueError, match="at least one label"):
        stacked.lm_losses(ids, torch.full_like(labels, -100))


def test_clipping_is_per_member():
    models, tok = _models("llama", n=2)
    stacked = StackedLM.from_models(models)
    ids, labels = _batch(len(tok), k=2)
    (stacked.lm_losses(ids, labels) * torch.tensor([1.0, 1000.0])).sum().backward()
    params = stacked.parameters()
    before = [torch.cat([p.grad[m].flatten() for p in params]).norm() for m in range(2)]
    norms = clip_grad_norm_per_member(params, max_norm=before[0].item() * 2)
    after = [torch.cat([p.grad[m].flatten() for p in params]).norm() for m in range(2)]
    assert torch.allclose(norms, torch.stack(before))
    assert torch.allclose(after[0], before[0])  # under the limit: untouched
    assert torch.allclose(after[1], torch.tensor(before[0].item() * 2), rtol=1e-4)  # over it: scaled to the limit
