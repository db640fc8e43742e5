"""World 4's candidate pool, the GPT-4-like annotator, UltraFeedback-style binarised preference data.

UltraFeedback (Cui et al., 2023) has, per prompt, 4 responses from different
LLMs, each graded by GPT-4; the binarised version (Tunstall et al., 2023) takes
the best-graded response as ``chosen`` and a uniformly random one of the other
three as ``rejected`` (digest §2.1). Ours does the same. World 4's pool
(:func:`model_sources`, :func:`pool_sources`), fixed before any grid ran:

* **Siblings, most of the pool.** ``n_siblings`` same-size SFT models per family
  (the student's base, other demonstrations, other seeds; sampled at temperature 1):
  3 of the 4 candidates of a prompt are distinct siblings of either family. World 3's
  pool (51% of chosen answers perfect writer output the students could not produce)
  taught the implicit reward but not the policy; a measured check on world 3 showed
  near-policy pairs move gold where the far pool did not.
* **A minority of stronger or programmatic answers.** The 4th candidate is a large SFT
  model's sample (half the time) or one of the 8 writers of
  :data:`~dpolib.world.writers.SOURCE_POLICIES` (the other half).
* **Never the student.** The data stays off-policy, as in the paper.
  :func:`build_preference_data` with ``on_policy=<student>`` builds the labelled
  diagnostic control instead: 4 samples of the student itself, same annotator.
* :func:`annotate`: gold score + a **length bias** + noise (documented below),
  the analogue of GPT-4's known preference for longer answers.

Model samples are generated once per world and cached on disk (:func:`model_samples`);
everything else is pure Python and is **regenerated deterministically** from the profile
(its ``world_seed`` included) on every call.
"""

from __future__ import annotations

import json
import os
import random

from . import pretrain
from .. import evaluation
from .families import FAMILIES
from .profiles import Profile
from .task import TaskPrompt, gold_score, sample_prompts
from . import writers
from .writers import SOURCE_POLICIES

__all__ = [
    "model_sources",
    "source_kind",
    "pool_sources",
    "preference_prompts",
    "SIBLING_SLOTS",
    "LARGE_SHARE",
    "ON_POLICY_SAMPLES",
    "SAMPLING",
    "SAMPLER",
    "source_seed",
    "model_samples",
    "LENGTH_BIAS",
    "LENGTH_SCALE",
    "ANNOTATOR_NOISE",
    "annotate",
    "generate_responses",
    "build_preference_data",
    "test_prompts",
]

#: How the model sources are sampled (ancestral sampling at temperature 1 from the 50 most likely tokens, which is
#: what Hugging Face's ``generate`` did for world-4 with its default top-k); each source's seed is derived from this
#: seed, the world seed and the source's name (:func:`source_seed`).
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "seed": 1234, "batch_size": 64}
#: The sampler (:func:`dpolib.ensemble_generate.generate_ensemble`: inverse-CDF draws, one stream of uniforms per
#: source); part of the samples' cache key.
SAMPLER = "stacked-inverse-cdf-2"
#: Candidates per prompt that are distinct siblings; the rest is a large model or a writer (:func:`pool_sources`).
SIBLING_SLOTS = 3
#: The chance that a prompt's other candidate is a large model's sample rather than a writer's answer.
LARGE_SHARE = 0.5
#: Samples of the student per prompt in the on-policy control.
ON_POLICY_SAMPLES = 4


def model_sources(profile: Profile) -> dict[str, tuple[str, str, str]]:
    """The trained models of the candidate pool: name -> ``(family, size, stage)`` of
    :func:`dpolib.world.pretrain.model_dir` (every family's siblings, then its large SFT model)."""
    out: dict[str, tuple[str, str, str]] = {}
    for family in FAMILIES:
        for stage in pretrain.sibling_stages(profile):
            out[f"{family}-{stage}"] = (family, "small", stage)
    for family in FAMILIES:
        out[f"{family}-large"] = (family, "large", "sft")
    return out


def source_kind(name: str) -> str:
    """``"sibling"``, ``"large"``, ``"student"`` (the on-policy control) or ``"writer"``."""
    for kind in ("sibling", "large", "student"):
        if f"-{kind}" in name:
            return kind
    return "writer"


def pool_sources(profile: Profile, rng: random.Random) -> list[str]:
    """The 4 distinct sources of one prompt: :data:`SIBLING_SLOTS` siblings, then a large model or a writer."""
    names = model_sources(profile)
    siblings = [n for n in names if source_kind(n) == "sibling"]
    large = [n for n in names if source_kind(n) == "large"]
    chosen = rng.sample(siblings, min(SIBLING_SLOTS, len(siblings)))
    while len(chosen) < 4:
        pick = rng.choice(large) if rng.random() < LARGE_SHARE else rng.choice(list(SOURCE_POLICIES))
        if pick not in chosen:
            chosen.append(pick)
    return chosen


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


def _on_policy_sources(student: str) -> dict[str, tuple[str, str, str, int]]:
    return {f"{student}-student-{k}": (student, "small", "sft", k) for k in range(ON_POLICY_SAMPLES)}


def source_seed(profile: Profile, name: str) -> int:
    """The sampling seed of model source ``name`` in ``profile``'s world: distinct per source and world seed, so no
    two sources (two siblings, or two on-policy samples of one student) share their random draws."""
    return pretrain._seed("sample", SAMPLING["seed"], profile.world_seed, name)


def model_samples(profile: Profile, prompts: list[TaskPrompt], cache_dir=None, progress: bool = False,
                  on_policy: str | None = None) -> dict:
    """``{source: {prompt text: response}}``: one sampled response per prompt from each model source.

    The sources are :func:`model_sources` (or, with ``on_policy=<student>``, that student's SFT
    model sampled :data:`ON_POLICY_SAMPLES` times). Sources of one family and size are sampled
    together as one stack (:func:`dpolib.ensemble_generate.generate_ensemble`: the model's chat
    template, :data:`SAMPLING`, seed :func:`source_seed`, ``profile.max_new_tokens``); a source's
    samples do not depend on which sources share its stack. Cached as JSON next to the models,
    keyed by the models' cache keys, the prompts, the settings and :data:`SAMPLER`. A response
    that hits the token limit is kept as cut (no final full stop, so gold scores it as unterminated).
    """
    import hashlib

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..ensemble_generate import generate_ensemble

    texts = [p.text for p in prompts]
    sources = ({n: (*v, 0) for n, v in model_sources(profile).items()} if on_policy is None
               else _on_policy_sources(on_policy))
    keys = {name: [pretrain.stage_key(f, size, stage, profile), k] for name, (f, size, stage, k) in sources.items()}
    seeds = {name: source_seed(profile, name) for name in sources}
    digest = hashlib.sha256(
        json.dumps([keys, texts, SAMPLING, SAMPLER, seeds, profile.max_new_tokens], sort_keys=True).encode()
    ).hexdigest()[:16]
    root = pretrain._root(cache_dir)
    path = root / f"samples-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    unique = list(dict.fromkeys(texts))
    by_text = {p.text: p for p in prompts}
    messages = [by_text[t].messages() for t in unique]
    settings = evaluation.GenerationSettings(max_new_tokens=profile.max_new_tokens, do_sample=True,
                                             temperature=SAMPLING["temperature"], top_p=SAMPLING["top_p"],
                                             top_k=SAMPLING["top_k"], batch_size=SAMPLING["batch_size"])
    stacks: dict[tuple[str, str], list[str]] = {}
    for name, (family, size, _, _) in sources.items():
        stacks.setdefault((family, size), []).append(name)
    out: dict = {}
    for names in stacks.values():
        dirs = [pretrain.model_dir(*sources[n][:3], profile, cache_dir) for n in names]
        loaded = {d: AutoModelForCausalLM.from_pretrained(d).eval() for d in dict.fromkeys(dirs)}
        tok = AutoTokenizer.from_pretrained(dirs[0])
        gens = generate_ensemble([loaded[d] for d in dirs], tok, messages, settings,
                                 seeds=[seeds[n] for n in names], progress=progress)
        for name, member in zip(names, gens):
            out[name] = {t: g.text for t, g in zip(unique, member)}
    out = {name: out[name] for name in sources}
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


def _pairs(prompts: list[TaskPrompt], rng: random.Random, draw_sources, samples: dict | None = None) -> list[dict]:
    rows = []
    for p in prompts:
        sources = draw_sources(rng)
        responses = generate_responses(p, sources, rng, samples=samples)
        # an empty sample (the model ended its turn at once) is no response: it leaves the candidates, and a
        # writer steps in while fewer than two remain (a pair needs two answers)
        kept = [(s, r) for s, r in zip(sources, responses) if r.strip()]
        while len(kept) < 2:
            writer = rng.choice([w for w in SOURCE_POLICIES if w not in {s for s, _ in kept}])
            kept.append((writer, generate_responses(p, [writer], rng)[0]))
        sources, responses = [s for s, _ in kept], [r for _, r in kept]
        grades = annotate(p, responses, rng)
        best = max(range(len(responses)), key=lambda i: grades[i])
        other = rng.choice([i for i in range(len(responses)) if i != best])
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


def preference_prompts(profile: Profile) -> dict[str, list[TaskPrompt]]:
    """The prompts of the ``train`` and ``validation`` preference splits in the profile's world."""
    splits = (("train", "pref_train", profile.n_pref_train), ("validation", "pref_val", profile.n_pref_val))
    return {split: sample_prompts(n, name, seed=profile.world_seed) for split, name, n in splits}


def build_preference_data(profile: Profile, cache_dir=None, model_sources: bool = True, on_policy: str | None = None):
    """UltraFeedback-style binarised preference data of the profile's world, a ``datasets.DatasetDict``.

    Splits ``train`` (``profile.n_pref_train`` prompts of the ``pref_train`` split) and
    ``validation`` (``profile.n_pref_val`` of ``pref_val``). Columns: ``prompt`` (messages),
    ``chosen`` / ``rejected`` (one assistant message each), and metadata ``kind``,
    ``prompt_text``, ``gold_chosen``, ``gold_rejected``, ``source_chosen``,
    ``source_rejected``, ``annotator_chosen``, ``annotator_rejected``.

    Binarisation as in the paper: chosen = best by the annotator among the (up to) 4 responses of 4
    distinct sources (an empty model sample is dropped from the candidates) (:func:`pool_sources`: 3 siblings and a large model or a writer; with
    ``model_sources=False``, 4 of the 8 writers; with ``on_policy=<student>``, 4 samples of
    that student: the diagnostic control); rejected = uniformly random among the other 3.
    Model sources are trained and sampled on first use and cached under ``cache_dir``.
    Deterministic in the profile's world fields (``world_seed`` included).
    """
    from datasets import Dataset, DatasetDict

    prompts = preference_prompts(profile)
    every = prompts["train"] + prompts["validation"]
    if on_policy is not None:
        samples = model_samples(profile, every, cache_dir, on_policy=on_policy)
        names = sorted(samples)
        draw = lambda rng: rng.sample(names, 4)  # noqa: E731
    elif model_sources:
        samples = model_samples(profile, every, cache_dir)
        draw = lambda rng: pool_sources(profile, rng)  # noqa: E731
    else:
        samples = None
        draw = lambda rng: rng.sample(list(SOURCE_POLICIES), 4)  # noqa: E731
    out = {}
    tag = "" if on_policy is None else f"/on-policy/{on_policy}"
    for split in ("train", "validation"):
        rng = random.Random(f"pref/{split}/{profile.world_seed}{tag}")
        out[split] = Dataset.from_list(_pairs(prompts[split], rng, draw, samples))
    return DatasetDict(out)


def test_prompts(profile: Profile) -> list[TaskPrompt]:
    """The held-out evaluation prompts (``profile.n_test_prompts`` of the ``test`` split)."""
    return writers.test_prompts(profile.n_test_prompts, profile.world_seed)
