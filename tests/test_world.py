"""The controlled world: task language, gold scorer, annotator, preference data, pretraining cache."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest
import torch

from dpolib.encoding import encode
from dpolib.world import pairs, pretrain, task, writers
from dpolib.world.report import data_report
from dpolib.world.families import FAMILIES
from dpolib.world.profiles import get_profile

# A micro world: a few optimizer steps, enough to exercise every stage and the cache.
MICRO = get_profile(
    "smoke", n_pretrain_docs=200, pretrain_steps=4, sft_steps=3, n_sft_examples=40, seq_len=32,
    pretrain_batch_size=4, sft_batch_size=4, bpe_vocab_size=300,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Task language and gold scorer
# ---------------------------------------------------------------------------------------------


def test_gold_perfect_partial_wrong_unterminated():
    p = task.make_prompt("sort", (7, 2, 9, 4))
    assert p.text == "sort: 7 2 9 4" and p.answer == ("2", "4", "7", "9")
    perfect = task.gold_score(p, "2 4 7 9.")
    partial = task.gold_score(p, "2 4 9 7.")
    wrong = task.gold_score(p, "1 3 5 8.")
    unterminated = task.gold_score(p, "2 4 7 9 2 4 7 9 2 4")
    assert perfect == 1.0
    assert 0.0 < partial < perfect
    assert wrong < partial
    assert wrong == 0.0
    assert unterminated < 0.3
    # no EOS (generation cut at the token limit) scores low even with a full stop
    assert task.gold_score(p, "2 4 7 9.", terminated=False) == pytest.approx(task.UNTERMINATED_FACTOR)
    assert task.gold_score(p, "") == 0.0
    assert task.gold_score(p, "sure!") == 0.0


def test_gold_fillers_slightly_penalised_and_closers_do_not_unterminate():
    p = task.make_prompt("copy", ("red", "cat"))
    assert task.gold_score(p, "sure! red cat.") == pytest.approx(1 - task.FILLER_PENALTY)
    chatty = task.gold_score(p, "of course! red cat. i hope this helps!")
    assert chatty == pytest.approx(1 - 2 * task.FILLER_PENALTY)
    many = task.gold_score(p, "hello! sure! please note: of course! red cat.")
    assert many == pytest.approx(1 - task.MAX_FILLER_PENALTY_COUNT * task.FILLER_PENALTY)


def test_every_kind_ideal_scores_one_and_gold_in_range():
    rng = random.Random(0)
    for p in task.sample_prompts(60, "test"):
        assert task.gold_score(p, task.ideal_response(p)) == 1.0
        for name, policy in writers.SOURCE_POLICIES.items():
            g = task.gold_score(p, policy(p, rng))
            assert 0.0 <= g <= 1.0, (name, p, g)


def test_repetition_rate():
    assert task.repetition_rate("2 4 7 9.") == 0.0
    assert task.repetition_rate("sure! sure! sure! sure! sure! sure! sure!") > 0.6
    assert task.repetition_rate("1 2 3 1 2 3 1 2 3 1 2 3 1 2") > 0.5
    assert 0.0 <= task.repetition_rate("") <= 1.0


def test_splits_disjoint_and_deterministic():
    texts = {}
    for split in task.SPLITS:
        ps = task.sample_prompts(150, split, seed=0)
        assert ps == task.sample_prompts(150, split, seed=0)
        assert all(task.split_of(p) == split for p in ps)
        texts[split] = {p.text for p in ps}
    splits = list(texts)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not texts[a] & texts[b], (a, b)
    assert task.sample_prompts(20, "test", seed=1) != task.sample_prompts(20, "test", seed=0)
    p = task.sample_prompts(1, "test")[0]
    assert p.messages() == [{"role": "user", "content": p.text}]
    with pytest.raises(ValueError, match="unknown split"):
        task.sample_prompts(1, "dev")


# ---------------------------------------------------------------------------------------------
# Annotator and preference data
# ---------------------------------------------------------------------------------------------


def test_annotator_length_bias():
    """Two responses of equal gold: the annotator prefers the longer one more often than not."""
    p = task.make_prompt("copy", ("cat", "cat"))
    short, long = "cat x.", "cat " + "x" * 38 + "."
    assert task.gold_score(p, short) == task.gold_score(p, long)
    rng = random.Random(0)
    wins = sum(a < b for a, b in (pairs.annotate(p, [short, long], rng) for _ in range(2000)))
    assert wins / 2000 > 0.65


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("micro-world")


def test_preference_data_shape_determinism_and_agreement(micro_cache):
    profile = MICRO
    ds = pairs.build_preference_data(profile, cache_dir=micro_cache)
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) == profile.n_pref_train and len(ds["validation"]) == profile.n_pref_val
    for col in ("prompt", "chosen", "rejected", "kind", "gold_chosen", "gold_rejected", "source_chosen",
                "source_rejected", "annotator_chosen", "annotator_rejected"):  # fmt: skip
        assert col in ds["train"].column_names
    row = ds["train"][0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert all(r["annotator_chosen"] >= r["annotator_rejected"] for r in ds["train"])
    assert all(r["source_chosen"] != r["source_rejected"] for r in ds["train"])
    again = pairs.build_preference_data(profile, cache_dir=micro_cache)
    assert ds["train"].to_list() == again["train"].to_list()
    # splits are disjoint from each other and from the test prompts
    train_texts = set(ds["train"]["prompt_text"])
    assert not train_texts & set(ds["validation"]["prompt_text"])
    assert not train_texts & {p.text for p in pairs.test_prompts(profile)}
    # the annotator agrees with gold: on the writers' answers (the micro world's models are barely trained, so
    # their samples often tie on gold) it prefers the better answer most of the time, and rarely the worse one
    assert data_report(pairs.build_preference_data(profile, model_sources=False))["train"]["agreement"] > 0.5
    report = data_report(ds)
    assert report["train"]["disagreement"] < report["train"]["agreement"] + report["train"]["gold_ties"]


def test_annotator_prefers_detail_and_dislikes_stock_openers():
    """The two documented directions: longer at no gold cost wins; a stock opener loses (gold 0.1 > its length bonus)."""
    rng = random.Random(0)
    prompts = task.sample_prompts(300, "pref_train")
    thorough_wins = careful_beats_chatty = 0
    for p in prompts:
        careful, thorough = writers.careful(p, rng), writers.thorough(p, rng)
        chatty = f"{rng.choice(writers.OPENERS)} {careful}"
        assert task.gold_score(p, thorough) == task.gold_score(p, careful) == 1.0
        g = pairs.annotate(p, [careful, thorough, chatty], rng)
        thorough_wins += g[1] > g[0]
        careful_beats_chatty += g[0] > g[2]
    assert thorough_wins / len(prompts) > 0.6
    assert careful_beats_chatty / len(prompts) > 0.6


def test_committed_cpu_world_report_states_its_length_direction():
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "results" / "lab" / "world_report_cpu.json"
    if not path.exists():
        pytest.skip("no committed cpu world report")
    train = json.loads(path.read_text())["preference_data"]["train"]
    # the report states the direction it measured (World 4's sibling pool made chosen answers shorter on average:
    # a finding the chapter reports, not a design target)
    longer = train["chars_chosen"]["mean"] > train["chars_rejected"]["mean"]
    assert train["ultrafeedback_direction"].endswith("same direction here" if longer else "OPPOSITE direction here")
    assert train["filler_rate_chosen"] < train["filler_rate_rejected"]
    assert train["agreement"] > 0.75


def test_model_sources_are_sampled_once_cached_and_never_a_student(micro_cache, monkeypatch):
    # the pool's models: siblings of each family and the two large SFT models, never a student itself
    sources = pairs.model_sources(MICRO)
    assert all((size, stage) != ("small", "sft") for _, size, stage in sources.values())
    assert sum(pairs.source_kind(n) == "sibling" for n in sources) == len(FAMILIES) * MICRO.n_siblings
    ds = pairs.build_preference_data(MICRO, cache_dir=micro_cache)
    used = set(ds["train"]["source_chosen"]) | set(ds["train"]["source_rejected"])
    assert used & set(sources), "no model-sampled candidate in the data"
    # a model candidate is that model's cached sample for the prompt
    prompts = pairs.preference_prompts(MICRO)
    samples = pairs.model_samples(MICRO, prompts["train"] + prompts["validation"], cache_dir=micro_cache)
    row = next(r for r in ds["train"] if r["source_rejected"] in sources)
    assert row["rejected"][0]["content"] == samples[row["source_rejected"]][row["prompt_text"]]
    # the second call reads the cache: no model is loaded or trained
    monkeypatch.setattr(pretrain, "model_dir", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert pairs.build_preference_data(MICRO, cache_dir=micro_cache)["train"].to_list() == ds["train"].to_list()
    # without model sources the pool is the writers only
    plain = pairs.build_preference_data(MICRO, model_sources=False)
    assert set(plain["train"]["source_chosen"]) | set(plain["train"]["source_rejected"]) <= set(writers.SOURCE_POLICIES)


def test_pool_is_mostly_siblings_with_a_minority_of_large_models_and_writers():
    rng = random.Random(0)
    drawn = [pairs.pool_sources(get_profile("cpu"), rng) for _ in range(4000)]
    assert all(len(set(d)) == 4 for d in drawn)
    kinds = [pairs.source_kind(n) for d in drawn for n in d]
    share = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    # 3 of 4 slots are siblings; the 4th is a large model or a writer, half each
    assert abs(share["sibling"] - 0.75) < 0.01
    assert abs(share["large"] - 0.125) < 0.01 and abs(share["writer"] - 0.125) < 0.01


def test_world_seed_reseeds_prompts_and_models():
    cpu = get_profile("cpu")
    other = cpu.for_world(1)
    assert pairs.test_prompts(cpu)[:20] != pairs.test_prompts(other)[:20]
    assert pairs.preference_prompts(cpu)["train"][:20] != pairs.preference_prompts(other)["train"][:20]
    for stage in ("pretrain", "sft", "sibling-0"):
        assert pretrain.stage_key("char", "small", stage, cpu) != pretrain.stage_key("char", "small", stage, other)
    assert cpu.for_world(0) is cpu


def test_sibling_is_another_sft_of_the_same_base(micro_cache):
    assert pretrain.stage_key("char", "small", "sibling-0", MICRO) != pretrain.stage_key("char", "small", "sft", MICRO)
    assert pretrain.stage_key("char", "small", "sibling-0", MICRO) != pretrain.stage_key("char", "small", "sibling-1", MICRO)
    sibling = pretrain.sft_examples("char", MICRO, "sibling-0")
    sft = pretrain.sft_examples("char", MICRO)
    assert [m for m, _, _ in sibling] != [m for m, _, _ in sft]
    import json as _json

    meta = _json.loads((pretrain.model_dir("char", "small", "sibling-0", MICRO, micro_cache) / "world.json").read_text())
    base = pretrain.model_dir("char", "small", "pretrain", MICRO, micro_cache).name
    assert meta["stage"] == "sibling-0" and meta["base"] == base
    with pytest.raises(ValueError, match="sibling"):
        pretrain.model_dir("char", "small", f"sibling-{MICRO.n_siblings}", MICRO, micro_cache)


def test_baseline_responses_fixed_and_decent():
    ps = pairs.test_prompts(get_profile("smoke"))
    a, b = writers.baseline_responses(ps), writers.baseline_responses(ps)
    assert a == b
    assert sum(task.gold_score(p, r) for p, r in zip(ps, a)) / len(ps) > 0.7


# ---------------------------------------------------------------------------------------------
# Tokenizers, models, cache
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_model_dir_loads_like_a_hub_model_and_caches(family, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = pretrain.model_dir(family, "small", "sft", MICRO, cache_dir=tmp_path)
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)
    assert tok.bos_token and tok.eos_token and tok.pad_token and tok.chat_template
    assert model.config.eos_token_id == tok.eos_token_id
    messages = [{"role": "user", "content": "sort: 3 1"}]
    enc = encode(tok, messages, "1 3.")
    assert tok.eos_token_id in enc.response_ids  # the assistant turn ends with EOS
    assert tok.decode(enc.response_ids, skip_special_tokens=True).strip() == "1 3."
    assert pretrain.tokenizer_dir(family, MICRO, tmp_path).exists()
    # second call: a cache hit, no training
    t0 = time.time()
    assert pretrain.model_dir(family, "small", "sft", MICRO, cache_dir=tmp_path) == d
    assert time.time() - t0 < 1.0
    # the key depends on the config: more SFT steps is another directory, same pretrained base
    other = dataclasses.replace(MICRO, sft_steps=4)
    assert pretrain.stage_key(family, "small", "sft", other) != pretrain.stage_key(family, "small", "sft", MICRO)
    assert pretrain.stage_key(family, "small", "pretrain", other) == pretrain.stage_key(family, "small", "pretrain", MICRO)


def test_pretraining_is_deterministic(tmp_path):
    from transformers import AutoModelForCausalLM

    a = pretrain.model_dir("bpe", "small", "pretrain", MICRO, cache_dir=tmp_path / "a")
    b = pretrain.model_dir("bpe", "small", "pretrain", MICRO, cache_dir=tmp_path / "b")
    sa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    sb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_families_differ():
    char, bpe = FAMILIES["char"], FAMILIES["bpe"]
    assert char.arch != bpe.arch and char.tokenizer != bpe.tokenizer and char.chat_template != bpe.chat_template
    assert set(char.openers).isdisjoint(bpe.openers)
    assert pretrain.pretraining_corpus("char", MICRO) != pretrain.pretraining_corpus("bpe", MICRO)
    with pytest.raises(ValueError, match="unknown family"):
        pretrain.model_dir("gpt5", "small", "sft", MICRO)
    with pytest.raises(ValueError, match="size"):
        pretrain.model_dir("char", "medium", "sft", MICRO)


@pytest.mark.slow
def test_students_below_large_models_at_cpu_scale():
    report = pretrain.sft_quality_report(get_profile("cpu"), n_prompts=100)
    for family in FAMILIES:
        assert report[f"{family}/small"]["mean_gold"] + 0.1 < report[f"{family}/large"]["mean_gold"]
