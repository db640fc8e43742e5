"""Source policies, the GPT-4-like annotator, UltraFeedback-style binarised preference data.

UltraFeedback (Cui et al., 2023) has, per prompt, 4 responses from different
LLMs, each graded by GPT-4; the binarised version (Tunstall et al., 2023) takes
the best-graded response as ``chosen`` and a uniformly random one of the other
three as ``rejected`` (digest §2.1). Ours does the same with:

* :data:`~dpolib.world.writers.SOURCE_POLICIES`: 8 programmatic writers of varied quality (careful,
  thorough, chatty, verbose, sloppy, lazy, over-long, run-on), and
* :data:`MODEL_SOURCES`: 4 trained models sampled at temperature 1: the two
  large SFT models (the stronger models of the pool, as GPT-4 and GPT-3.5 were in
  UltraFeedback's) and a *peer* of each student (a second SFT of the same small
  base on another sample of SFT data, like the many fine-tunes of one base model
  in UltraFeedback's pool). Their answers fail the way trained models fail
  (a wrong item where the model is unsure, a response that does not stop), which
  the programmatic writers only imitate. None of the 12 sources is a student, so
  the data is *off-policy*, as in the paper.
* :func:`annotate`: gold score + a **length bias** + noise (documented below),
  the analogue of GPT-4's known preference for longer answers.
* :func:`build_preference_data`: 4 distinct sources per prompt (of 12), annotate, binarise.

The model samples are generated once per world and cached on disk
(:func:`model_samples`); everything else is pure Python and is **regenerated
deterministically** from ``(profile, seed)`` on every call.
"""

from __future__ import annotations

import json
import os
import random

from . import pretrain
from .. import evaluation
from .profiles import Profile
from .task import TaskPrompt, gold_score, sample_prompts
from . import writers
from .writers import SOURCE_POLICIES

__all__ = [
    "MODEL_SOURCES",
    "SAMPLING",
    "model_samples",
    "LENGTH_BIAS",
    "LENGTH_SCALE",
    "ANNOTATOR_NOISE",
    "annotate",
    "generate_responses",
    "build_preference_data",
    "test_prompts",
]

#: The trained models of the candidate pool, name -> (family, size, stage) of :func:`dpolib.world.pretrain.model_dir`.
MODEL_SOURCES: dict[str, tuple[str, str, str]] = {
    "char-large": ("char", "large", "sft"),
    "bpe-large": ("bpe", "large", "sft"),
    "char-peer": ("char", "small", "peer"),
    "bpe-peer": ("bpe", "small", "peer"),
}

#: How the model sources are sampled (ancestral sampling, as UltraFeedback's models were).
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "seed": 1234, "batch_size": 64}


def generate_responses(
    prompt: TaskPrompt, sources: list[str], rng: random.Random, openers=None, samples: dict | None = None
) -> list[str]:
    """One response per named source: a programmatic writer, or a model's cached sample (``samples``)."""
    out = []
    for s in sources:
        if s in SOURCE_POLICIES:
            out.append(SOURCE_POLICIES[s](prompt, rng, openers=openers))
        elif samples is not None and s in samples:
            out.append(samples[s][prompt.text])
        else:
            raise KeyError(f"unknown source {s!r}, or no samples given for a model source")
    return out


def model_samples(profile: Profile, prompts: list[TaskPrompt], cache_dir=None, progress: bool = False) -> dict:
    """``{source: {prompt text: response}}``: one sampled response per prompt from each of :data:`MODEL_SOURCES`.

    Generated with :func:`dpolib.evaluation.generate` (the model's chat template,
    temperature 1, seed fixed in :data:`SAMPLING`, ``profile.max_new_tokens``) and
    cached as JSON next to the models, keyed by the models' cache keys, the prompts
    and the settings. A response that hits the token limit is kept as cut (no final
    full stop, so gold scores it as unterminated), as a run-on writer's is.
    """
    import hashlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer


    texts = [p.text for p in prompts]
    keys = {name: pretrain.stage_key(f, size, stage, profile) for name, (f, size, stage) in MODEL_SOURCES.items()}
    digest = hashlib.sha256(
        json.dumps([keys, texts, SAMPLING, profile.max_new_tokens], sort_keys=True).encode()
    ).hexdigest()[:16]
    root = pretrain._root(cache_dir)
    path = root / f"samples-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    settings = evaluation.GenerationSettings(max_new_tokens=profile.max_new_tokens, do_sample=True, **SAMPLING)
    out: dict = {}
    unique = list(dict.fromkeys(texts))
    by_text = {p.text: p for p in prompts}
    for name, (family, size, stage) in MODEL_SOURCES.items():
        d = pretrain.model_dir(family, size, stage, profile, cache_dir)
        tok = AutoTokenizer.from_pretrained(d)
        with torch.random.fork_rng():
            model = AutoModelForCausalLM.from_pretrained(d).eval()
            gens = evaluation.generate(model, tok, [by_text[t].messages() for t in unique], settings, progress=progress)
        out[name] = {t: g.text for t, g in zip(unique, gens)}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
    return out


# ---------------------------------------------------------------------------------------------
# The annotator (GPT-4's role in UltraFeedback)
# ---------------------------------------------------------------------------------------------

#: The annotator's length bias, + LENGTH_BIAS * min(len(response) / LENGTH_SCALE, 2) (characters).
LENGTH_BIAS = 0.1
LENGTH_SCALE = 40.0
#: The annotator's noise is Gaussian with this standard deviation.
ANNOTATOR_NOISE = 0.1


def annotate(prompt: TaskPrompt, responses: list[str], rng: random.Random) -> list[float]:
    """The GPT-4-like grade of each response.

    ``grade = gold + 0.1 * min(len_chars / 40, 2) + N(0, 0.1^2)``

    The length bias is the documented analogue of LLM judges preferring longer
    answers: 40 more characters (two detail sentences) are worth +0.1, about the
    value of one wrong item in a five-item answer; it saturates at +0.2 (80 chars)
    so a degenerate run-on cannot buy its way to the top. Gold charges each stock
    opener or closer 0.1, more than the length it adds is worth (a 12-character
    "of course!" gains 0.03), so to the annotator a filler is a net loss while a
    gold-neutral detail sentence is a net gain: preferred answers are longer,
    and stock openers are dispreferred, the two directions the paper reports for
    UltraFeedback (longer outputs; "Sure", "Of course", "Hello" down-weighted).
    """
    return [
        gold_score(prompt, r) + LENGTH_BIAS * min(len(r) / LENGTH_SCALE, 2.0) + rng.gauss(0.0, ANNOTATOR_NOISE)
        for r in responses
    ]


# ---------------------------------------------------------------------------------------------
# Preference data
# ---------------------------------------------------------------------------------------------


def _pairs(prompts: list[TaskPrompt], rng: random.Random, samples: dict | None = None) -> list[dict]:
    rows = []
    names = list(SOURCE_POLICIES) + sorted(samples or {})
    for p in prompts:
        sources = rng.sample(names, 4)
        responses = generate_responses(p, sources, rng, samples=samples)
        grades = annotate(p, responses, rng)
        best = max(range(4), key=lambda i: grades[i])
        other = rng.choice([i for i in range(4) if i != best])
        rows.append(
            {
                "prompt": p.messages(),
                "chosen": [{"role": "assistant", "content": responses[best]}],
                "rejected": [{"role": "assistant", "content": responses[other]}],
                "kind": p.kind,
                "prompt_text": p.text,
                "gold_chosen": gold_score(p, responses[best]),
                "gold_rejected": gold_score(p, responses[other]),
                "source_chosen": sources[best],
                "source_rejected": sources[other],
                "annotator_chosen": float(grades[best]),
                "annotator_rejected": float(grades[other]),
            }
        )
    return rows


def build_preference_data(profile: Profile, seed: int = 0, cache_dir=None, model_sources: bool = True):
    """UltraFeedback-style binarised preference data, a ``datasets.DatasetDict``.

    Splits ``train`` (``profile.n_pref_train`` prompts of the ``pref_train`` split) and
    ``validation`` (``profile.n_pref_val`` of ``pref_val``). Columns: ``prompt`` (messages),
    ``chosen`` / ``rejected`` (one assistant message each), and metadata ``kind``,
    ``prompt_text``, ``gold_chosen``, ``gold_rejected``, ``source_chosen``,
    ``source_rejected``, ``annotator_chosen``, ``annotator_rejected``.

    Binarisation as in the paper: chosen = best by the annotator among 4 responses
    from 4 distinct sources (uniformly drawn from the 8 writers and, with
    ``model_sources``, the 4 models of :data:`MODEL_SOURCES`, which are trained and
    sampled on first use and cached under ``cache_dir``); rejected = uniformly
    random among the other 3. Deterministic in ``(profile world fields, seed)``.
    """
    from datasets import Dataset, DatasetDict

    splits = (("train", "pref_train", profile.n_pref_train), ("validation", "pref_val", profile.n_pref_val))
    prompts = {split: sample_prompts(n, name, seed=seed) for split, name, n in splits}
    samples = model_samples(profile, prompts["train"] + prompts["validation"], cache_dir) if model_sources else None
    out = {}
    for split, _, _ in splits:
        rng = random.Random(f"pref/{split}/{seed}")
        out[split] = Dataset.from_list(_pairs(prompts[split], rng, samples))
    return DatasetDict(out)




def test_prompts(profile: Profile) -> list[TaskPrompt]:
    """The held-out evaluation prompts (``profile.n_test_prompts`` of the ``test`` split)."""
    return writers.test_prompts(profile.n_test_prompts)
