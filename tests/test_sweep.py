"""The sweep engine against TRL: each member of a batched β sweep follows its own TRL run (issue 15).

Parity, not trust: member k of :func:`dpolib.experiments.sweep.train_sweep` is compared
step by step with ``PrecomputedRefDPOTrainer`` run with β_k and member k's reference
columns (losses, rewards, log-probs, gradient norms, learning rates, epochs, and the
final weights). Bucketed batches, which TRL never draws, are compared with the plain loop
(:func:`dpolib.experiments.sweep.train_plain`) on the same batches.
"""

import copy

import pytest
import torch
from datasets import Dataset
from transformers.trainer_callback import PrinterCallback

import tiny
from dpolib.ensemble import StackedLM
from dpolib.experiments.sweep import (Pair, _sequence, batch_order, make_groups, recipe_from_args, train_plain,
                                     train_sweep)
from dpolib.references import ModelReference, UniformReference, precompute
from dpolib.trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config

STEPS = 12  # two epochs of 24 pairs in batches of 4: both epochs' orders are checked
DPO_ARGS = dict(learning_rate=5e-3, per_device_train_batch_size=4, max_steps=STEPS, max_length=128, warmup_steps=0.1,
                lr_scheduler_type="linear")
BETAS = (0.1, 0.5, 2.0)
CURVE_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected",
              "grad_norm", "learning_rate", "epoch")


def _columns(model, tok, ds, cache):
    self_ref = precompute(ds, ModelReference(copy.deepcopy(model), tok, progress=False, max_length=128), cache_dir=cache)
    return self_ref, precompute(ds, UniformReference(), cache_dir=cache)


@pytest.fixture(scope="module")
def char_world(tmp_path_factory):
    tok = tiny.char_tokenizer()
    model = tiny.char_model(tok, seed=3, n_layer=2, n_embd=48)
    ds = Dataset.from_list(tiny.preference_rows(24, conversational=True, seed=1))
    self_ref, uniform = _columns(model, tok, ds, tmp_path_factory.mktemp("cache"))
    return model, tok, [self_ref, self_ref, uniform]  # two DPO members and a posterior-probability member (Eq. 10)


def trl_run(model, tok, ds, beta, out, **overrides):
    torch.manual_seed(0)
    args = make_dpo_config(str(out), beta=beta, seed=0, **{**DPO_ARGS, **overrides})
    trainer = PrecomputedRefDPOTrainer(copy.deepcopy(model), args=args, train_dataset=ds, processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer.model, [h for h in trainer.state.log_history if "loss" in h]


def max_weight_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[n] - sb[n]).abs().max().item() for n in sb if sb[n].is_floating_point())


def assert_same_trajectory(ours, theirs, tol=1e-4):
    assert len(ours) == len(theirs) == STEPS
    for key in CURVE_KEYS:
        diff = max(abs(a[key] - b[key]) for a, b in zip(ours, theirs))
        scale = max(1.0, max(abs(b[key]) for b in theirs))
        assert diff <= tol * scale, f"{key}: max abs difference {diff:.2e}"
    # Until the first step with a learning rate > 0 the policy is the reference: every reward is 0 up to
    # round-off, and the accuracy a coin toss. From the step after it on, they must agree.
    start = next(i for i, b in enumerate(theirs) if b["learning_rate"] > 0) + 1
    assert [a["rewards/accuracies"] for a in ours[start:]] == [b["rewards/accuracies"] for b in theirs[start:]]
    assert [a["step"] for a in ours] == [b["step"] for b in theirs]


@pytest.fixture(scope="module")
def char_sweep(char_world):
    model, tok, datasets = char_world
    return train_sweep(model, tok, datasets, BETAS, DPO_ARGS, seed=0)


@pytest.mark.parametrize("member", range(len(BETAS)))
def test_each_member_follows_its_trl_run(char_world, char_sweep, member, tmp_path):
    model, tok, datasets = char_world
    trained, curves = char_sweep.members[member]
    trl_model, trl_curves = trl_run(model, tok, datasets[member], BETAS[member], tmp_path)
    assert_same_trajectory(curves, trl_curves)
    assert max_weight_diff(trained, trl_model) < 1e-4


def test_members_are_independent_and_the_student_untouched(char_world, char_sweep):
    model, tok, datasets = char_world
    (a, ca), (b, cb), (c, cc) = char_sweep.members
    assert ca[-1]["loss"] != cb[-1]["loss"]  # another β, another run
    assert abs(ca[0]["loss"] - 0.6931) < 1e-3 and abs(cc[0]["loss"] - 0.6931) > 1e-2  # the uniform columns are read
    assert max_weight_diff(a, model) > 1e-3
    student = tiny.char_model(tok, seed=3, n_layer=2, n_embd=48)
    assert max_weight_diff(model, student) == 0.0


def test_llama_member_follows_its_trl_run(tmp_path):
    tok = tiny.bpe_tokenizer()
    model = tiny.llama_model(tok, seed=3, hidden=32)  # untied LM head, RoPE, RMSNorm
    ds = Dataset.from_list(tiny.preference_rows(24, conversational=True, seed=1))
    self_ref, uniform = _columns(model, tok, ds, tmp_path / "cache")
    sweep = train_sweep(model, tok, [self_ref, uniform], (0.5, 0.5), DPO_ARGS, seed=0)
    trained, curves = sweep.members[0]
    trl_model, trl_curves = trl_run(model, tok, self_ref, 0.5, tmp_path)
    assert_same_trajectory(curves, trl_curves)
    assert max_weight_diff(trained, trl_model) < 1e-4


def test_bucketed_sweep_matches_the_plain_loop_on_the_same_batches(char_world):
    model, tok, datasets = char_world
    sweep = train_sweep(model, tok, datasets[:2], BETAS[:2], DPO_ARGS, seed=0, bucket=True)
    plain_model, plain_curves, _ = train_plain(model, tok, datasets[1], BETAS[1], DPO_ARGS, seed=0, bucket=True)
    trained, curves = sweep.members[1]
    assert_same_trajectory(curves, plain_curves)
    assert max_weight_diff(trained, plain_model) < 1e-4
    assert sweep.padding["efficiency"] >= sweep.padding["trl_efficiency"]


def test_bucketed_batches_are_a_seeded_reshuffle_of_the_same_pairs():
    args = make_dpo_config("unused", beta=0.1, seed=3, **{**DPO_ARGS, "max_steps": 30})
    recipe = recipe_from_args(args, 40)
    lengths = [(7 * i) % 23 for i in range(40)]
    plain, bucketed = batch_order(40, recipe), batch_order(40, recipe, lengths)
    assert len(plain) == len(bucketed) == 30
    for epoch in range(2):  # every epoch holds every pair once, in both orders
        for order in (plain, bucketed):
            assert sorted(i for batch, _ in order[epoch * 10: (epoch + 1) * 10] for i in batch) == list(range(40))
    assert plain != bucketed and bucketed == batch_order(40, recipe, lengths)
    spread = lambda order: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b, _ in order)
    assert spread(bucketed) < spread(plain) / 2


def test_length_groups_keep_every_response_token_and_cut_padding():
    args = make_dpo_config("unused", beta=0.1, seed=0, **DPO_ARGS)
    recipe = recipe_from_args(args, 8)
    pairs = [Pair((1,) * p, (2,) * c, (3,) * r) for p, c, r in
             [(5, 3, 40), (6, 2, 2), (5, 30, 3), (4, 4, 4), (7, 1, 9), (5, 60, 2), (3, 3, 3), (6, 5, 5)]]
    for cost in (0, 50, 10_000):
        for share in (True, False):
            batch, counts = make_groups(pairs, recipe, cost, share_prefix=share)
            assert len(batch.target) == sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
            assert counts["computed"] <= counts["padded"] <= counts["trl_padded"]
            assert counts["computed"] == (counts["real"] - sum(len(p.prompt_ids) - 1 for p in pairs) if share
                                          else counts["real"])
            # the token after each target's query slot is the target
            slots = torch.cat([b.offset + b.queries.reshape(-1) + torch.arange(b.rows).repeat_interleave(
                b.queries.shape[1]) * b.length for b in batch.blocks if b.queries is not None])
            assert torch.equal(batch.input_ids[slots[batch.source] + 1], batch.target)
    suffix_blocks = lambda cost: len([b for b in make_groups(pairs, recipe, cost)[0].blocks if b.queries is not None])
    assert suffix_blocks(10_000) == 1 and suffix_blocks(0) > 3


def _hf_logps(model, pairs, recipe):
    """Each sequence's summed response log-prob by the Hugging Face model, one sequence at a time."""
    out = []
    for response in ("chosen_ids", "rejected_ids"):
        for p in pairs:
            ids, start = _sequence(p.prompt_ids, getattr(p, response), recipe)
            with torch.no_grad():
                logps = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
            out.append(logps.gather(-1, torch.tensor(ids[1:])[:, None])[max(start, 1) - 1:].sum().item())
    return torch.tensor(out)


@pytest.mark.parametrize("family", ["char", "bpe"])
@pytest.mark.parametrize("truncation", ["keep_start", "keep_end"])
def test_shared_prefix_logps_equal_the_whole_sequences(family, truncation):
    tok = tiny.char_tokenizer() if family == "char" else tiny.bpe_tokenizer()
    model = tiny.char_model(tok, seed=3, n_layer=2, n_embd=48) if family == "char" else tiny.llama_model(tok, seed=3,
                                                                                                       hidden=32)
    g = torch.Generator().manual_seed(1)
    ids = lambda n: tuple(torch.randint(3, 20, (n,), generator=g).tolist())
    pairs = [Pair(ids(5), ids(3), ids(7)), Pair(ids(12), ids(4), ids(4)), Pair(ids(1), ids(6), ids(2)),
             Pair(ids(9), (4, 5, 6) + ids(3), (4, 5, 6) + ids(5)),  # responses that open alike
             Pair(ids(20), ids(10), ids(2)),  # cut into the prompt at max_length (keep_end), its response (keep_start)
             Pair(ids(7), (7,), (7, 8)), Pair(ids(3), ids(15), ids(15))]
    args = make_dpo_config("unused", beta=0.1, seed=0, **{**DPO_ARGS, "max_length": 16, "truncation_mode": truncation})
    recipe = recipe_from_args(args, len(pairs))
    stacked = StackedLM(model, 2)
    with torch.no_grad():  # a second member with other weights
        for p in stacked.params.values():
            p[1].add_(0.02 * torch.randn(p[1].shape, generator=g))
    expected = torch.stack([_hf_logps(stacked.to_model(m), pairs, recipe) for m in range(2)])
    whole = stacked.sequence_logps(make_groups(pairs, recipe, 30, share_prefix=False)[0], 2 * len(pairs))
    for cost in (0, 30, 10_000):
        batch, counts = make_groups(pairs, recipe, cost)
        assert counts["computed"] < counts["real"] and any(b.context is not None for b in batch.blocks)
        shared = stacked.sequence_logps(batch, 2 * len(pairs))
        assert torch.allclose(shared, whole, atol=2e-5, rtol=0) and torch.allclose(shared, expected, atol=5e-5, rtol=0)


def test_guards_name_the_fix(char_world):
    model, tok, datasets = char_world
    with pytest.raises(ValueError, match="only the reference columns"):
        train_sweep(model, tok, [datasets[0], datasets[0].select(range(1, 24)).add_item(datasets[0][0])],
                    BETAS[:2], DPO_ARGS)
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        train_sweep(model, tok, datasets[0].remove_columns(["ref_chosen_logps"]), BETAS[:1], DPO_ARGS)
    with pytest.raises(ValueError, match="PrecomputedRefDPOTrainer"):
        train_sweep(model, tok, datasets[0], BETAS[:1], {**DPO_ARGS, "gradient_accumulation_steps": 2})
    with pytest.raises(ValueError, match="one dataset per member"):
        train_sweep(model, tok, datasets[:2], BETAS, DPO_ARGS)
    with pytest.raises(ValueError, match="beta"):
        train_sweep(model, tok, datasets[0], (0.1, 0.0), DPO_ARGS)
    with pytest.raises(ValueError, match="one finite rate > 0 per member"):
        train_sweep(model, tok, datasets[0], BETAS[:2], DPO_ARGS, learning_rates=[1e-3])
    with pytest.raises(ValueError, match="one finite rate > 0 per member"):
        train_sweep(model, tok, datasets[0], BETAS[:2], DPO_ARGS, learning_rates=[1e-3, 0.0])
    from transformers import BertConfig, BertLMHeadModel

    bert = BertLMHeadModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=8, is_decoder=True))
    with pytest.raises(ValueError, match="train this model with TRL"):
        StackedLM(bert, 2)


def test_members_at_their_own_learning_rates_follow_their_own_runs(char_world):
    """The learning-rate rule's K candidate rates as one sweep: member k is the run at rate k alone."""
    model, tok, datasets = char_world
    rates = (1e-3, 2.5e-3, 5e-3)  # up to the TRL parity tests' rate: at much higher rates Adam amplifies round-off
    together = train_sweep(model, tok, datasets[0], [0.1] * 3, DPO_ARGS, learning_rates=rates)
    for (ours_model, ours), rate in zip(together.members, rates):
        alone_model, alone = train_sweep(model, tok, datasets[0], [0.1], {**DPO_ARGS, "learning_rate": rate}).members[0]
        assert_same_trajectory(ours, alone, tol=1e-5)
        assert max_weight_diff(ours_model, alone_model) < 1e-4  # float round-off of the rescaled steps
    # the rates matter: the fastest member moved its weights further from the student than the slowest
    moved = [max_weight_diff(m, model) for m, _ in together.members]
    assert moved[2] > 2 * moved[0]
