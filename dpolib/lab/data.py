"""Source policies, the GPT-4-like annotator, UltraFeedback-style binarised preference data.

UltraFeedback (Cui et al., 2023) has, per prompt, 4 responses from different
LLMs, each graded by GPT-4; the binarised version (Tunstall et al., 2023) takes
the best-graded response as ``chosen`` and a uniformly random one of the other
three as ``rejected`` (digest §2.1). Ours does the same with:

* :data:`SOURCE_POLICIES`: 8 programmatic writers of varied quality (careful,
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
import platform
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .profiles import Profile
from .task import DETAILS, FILLERS, TaskPrompt, gold_score, ideal_response, repetition_rate, sample_prompts

__all__ = [
    "SOURCE_POLICIES",
    "MODEL_SOURCES",
    "SAMPLING",
    "model_samples",
    "OPENERS",
    "CLOSERS",
    "LENGTH_BIAS",
    "LENGTH_SCALE",
    "ANNOTATOR_NOISE",
    "annotate",
    "generate_responses",
    "build_preference_data",
    "test_prompts",
    "baseline_responses",
    "data_report",
    "compatibility_report",
    "write_world_report",
    "world_design",
]

OPENERS = ("sure!", "of course!", "hello!", "great question!", "please note:", "here is the answer:", "the answer is:")
CLOSERS = ("i hope this helps!", "let me know if you need more.")
assert set(OPENERS + CLOSERS) <= set(FILLERS)


# ---------------------------------------------------------------------------------------------
# Source policies: (prompt, rng, openers=None) -> response. Each is a kind of writer.
# ---------------------------------------------------------------------------------------------


def _items(prompt: TaskPrompt) -> list[str]:
    return list(prompt.answer)


def _distractor(prompt: TaskPrompt, rng: random.Random, item: str) -> str:
    if item.isdigit():
        return str(int(item) + rng.choice((-1, 1, 2))).replace("-", "")
    if len(item) == 1:
        return rng.choice("abcdefghijklmnopqrstuvwxyz")
    from .task import WORDS

    return rng.choice([w for w in WORDS if w != item])


def _corrupt(prompt: TaskPrompt, rng: random.Random, n_errors: int = 1) -> list[str]:
    items = _items(prompt)
    for _ in range(n_errors):
        op = rng.choice(("swap", "drop", "sub", "sub"))
        if op == "swap" and len(items) >= 2:
            i = rng.randrange(len(items) - 1)
            items[i], items[i + 1] = items[i + 1], items[i]
        elif op == "drop" and len(items) >= 2:
            items.pop(rng.randrange(len(items)))
        else:
            i = rng.randrange(len(items))
            items[i] = _distractor(prompt, rng, items[i])
    return items


def careful(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Concise and correct: the ideal response."""
    return ideal_response(prompt)


def chatty(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Correct, wrapped in a stock opener and sometimes a closer ("sure! 2 4 7 9. i hope this helps!")."""
    text = f"{rng.choice(openers or OPENERS)} {ideal_response(prompt)}"
    if rng.random() < 0.4:
        text += " " + rng.choice(CLOSERS)
    return text


def verbose(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Long: two openers, the answer (an error one time in four), closers."""
    a, b = rng.sample(openers or OPENERS, 2) if len(openers or OPENERS) >= 2 else (openers[0], "here is the answer:")
    items = _corrupt(prompt, rng) if rng.random() < 0.25 else _items(prompt)
    return f"{a} {b} {' '.join(items)}. {' '.join(CLOSERS)}"


def thorough(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Correct, followed by one or two detail sentences ("2 4 7 9. each item was checked."): longer at no gold cost."""
    return " ".join([ideal_response(prompt)] + rng.sample(DETAILS, rng.choice((1, 2))))


def sloppy(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """One or two errors (swapped, dropped or wrong items); sometimes an opener."""
    items = _corrupt(prompt, rng, n_errors=rng.choice((1, 1, 2)))
    text = " ".join(items) + "."
    return f"{rng.choice(openers or OPENERS)} {text}" if rng.random() < 0.3 else text


def lazy(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Too short: stops after about half of the items."""
    items = _items(prompt)
    k = max(1, len(items) // 2)
    return " ".join(items[:k]) + "."


def overlong(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Over-long list: the answer, then one to three extra items."""
    items = _items(prompt)
    extra = [_distractor(prompt, rng, items[-1]) for _ in range(rng.randint(1, 3))]
    return " ".join(items + extra) + "."


def runon(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Degenerate: the answer, then repeats itself and never ends (cut off, no full stop)."""
    items = _items(prompt)
    text = ""
    if rng.random() < 0.5:
        text = " ".join([rng.choice(openers or OPENERS)] * rng.randint(1, 3)) + " "
    limit = rng.randint(50, 90)
    words: list[str] = []
    while len(" ".join(words)) < limit:
        words.extend(items)
    return (text + " ".join(words))[: limit + len(text)].rstrip()


#: The pool of 8 writers of varied quality, by name; each is ``(prompt, rng, openers=None) -> response``.
SOURCE_POLICIES: dict[str, Callable[..., str]] = {
    "careful": careful,
    "chatty": chatty,
    "verbose": verbose,
    "thorough": thorough,
    "sloppy": sloppy,
    "lazy": lazy,
    "overlong": overlong,
    "runon": runon,
}


#: The trained models of the candidate pool, name -> (family, size, stage) of :func:`dpolib.lab.pretrain.model_dir`.
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

    Generated with :func:`dpolib.lab.evaluate.generate` (the model's chat template,
    temperature 1, seed fixed in :data:`SAMPLING`, ``profile.max_new_tokens``) and
    cached as JSON next to the models, keyed by the models' cache keys, the prompts
    and the settings. A response that hits the token limit is kept as cut (no final
    full stop, so gold scores it as unterminated), as a run-on writer's is.
    """
    import hashlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import pretrain
    from .evaluate import GenerationSettings, generate

    texts = [p.text for p in prompts]
    keys = {name: pretrain.stage_key(f, size, stage, profile) for name, (f, size, stage) in MODEL_SOURCES.items()}
    digest = hashlib.sha256(
        json.dumps([keys, texts, SAMPLING, profile.max_new_tokens], sort_keys=True).encode()
    ).hexdigest()[:16]
    root = pretrain._root(cache_dir)
    path = root / f"samples-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    settings = GenerationSettings(max_new_tokens=profile.max_new_tokens, do_sample=True, **SAMPLING)
    out: dict = {}
    unique = list(dict.fromkeys(texts))
    by_text = {p.text: p for p in prompts}
    for name, (family, size, stage) in MODEL_SOURCES.items():
        d = pretrain.model_dir(family, size, stage, profile, cache_dir)
        tok = AutoTokenizer.from_pretrained(d)
        with torch.random.fork_rng():
            model = AutoModelForCausalLM.from_pretrained(d).eval()
            gens = generate(model, tok, [by_text[t].messages() for t in unique], settings, progress=progress)
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
    return sample_prompts(profile.n_test_prompts, "test", seed=0)


def baseline_responses(prompts: list[TaskPrompt]) -> list[str]:
    """Fixed baseline outputs for the pairwise judge (the analogue of AlpacaEval's GPT-4-turbo outputs).

    A good, chatty, not perfect writer, deterministic per prompt: 75% ``chatty``
    (correct with a filler), 25% ``sloppy`` (one or two errors).
    """
    out = []
    for p in prompts:
        rng = random.Random(f"baseline/{p.text}")
        out.append(chatty(p, rng) if rng.random() < 0.75 else sloppy(p, rng))
    return out


def _content(x) -> str:
    if isinstance(x, str):
        return x
    return "".join(m["content"] for m in x)


def data_report(dataset, tokenizers: dict | None = None) -> dict:
    """Length statistics and annotator-vs-gold agreement of a preference split (or DatasetDict).

    Returns, per split: chosen / rejected mean and median length in characters (and
    in tokens of each tokenizer in ``tokenizers``, name -> tokenizer), the fraction of
    pairs where the chosen response is longer, the agreement rate (fraction with
    ``gold_chosen > gold_rejected``), the tie rate and the disagreement rate, mean
    gold of chosen and rejected, filler and degeneration rates, and the source mix.

    In UltraFeedback the chosen response is on average longer than the rejected one:
    the commonly reported length bias of GPT-4-graded preference data (the reason for
    length-controlled AlpacaEval); we compare our direction with that, not a number.
    """
    if isinstance(dataset, dict):  # a DatasetDict
        return {split: data_report(dataset[split], tokenizers) for split in dataset.keys()}
    chosen = [_content(c) for c in dataset["chosen"]]
    rejected = [_content(r) for r in dataset["rejected"]]
    gc, gr = dataset["gold_chosen"], dataset["gold_rejected"]
    n = len(chosen)

    def stats(lengths):
        return {"mean": statistics.fmean(lengths), "median": statistics.median(lengths)}

    def filler_rate(texts):
        return statistics.fmean(any(f in t.lower() for f in FILLERS) for t in texts)

    rep = {
        "n_pairs": n,
        "chars_chosen": stats([len(c) for c in chosen]),
        "chars_rejected": stats([len(r) for r in rejected]),
        "frac_chosen_longer": sum(len(c) > len(r) for c, r in zip(chosen, rejected)) / n,
        "frac_equal_length": sum(len(c) == len(r) for c, r in zip(chosen, rejected)) / n,
        "agreement": sum(a > b for a, b in zip(gc, gr)) / n,
        "gold_ties": sum(a == b for a, b in zip(gc, gr)) / n,
        "disagreement": sum(a < b for a, b in zip(gc, gr)) / n,
        "gold_chosen_mean": statistics.fmean(gc),
        "gold_rejected_mean": statistics.fmean(gr),
        "filler_rate_chosen": filler_rate(chosen),
        "filler_rate_rejected": filler_rate(rejected),
        "degenerate_rate_chosen": statistics.fmean(repetition_rate(c) > 0.3 for c in chosen),
        "degenerate_rate_rejected": statistics.fmean(repetition_rate(r) > 0.3 for r in rejected),
        "source_chosen": _counts(dataset["source_chosen"]),
        "source_rejected": _counts(dataset["source_rejected"]),
        "ultrafeedback_direction": "chosen longer than rejected on average (commonly reported); "
        + ("same direction here" if statistics.fmean(map(len, chosen)) > statistics.fmean(map(len, rejected)) else "OPPOSITE direction here"),
    }
    for name, tok in (tokenizers or {}).items():
        lc = [len(tok(c, add_special_tokens=False)["input_ids"]) for c in chosen]
        lr = [len(tok(r, add_special_tokens=False)["input_ids"]) for r in rejected]
        rep[f"tokens_{name}_chosen"] = stats(lc)
        rep[f"tokens_{name}_rejected"] = stats(lr)
    return rep


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------
# The world report (provenance + numbers), results/lab/world_report_<profile>.json
# ---------------------------------------------------------------------------------------------


def compatibility_report(profile: Profile, cache_dir=None, split: str = "validation") -> dict:
    """Pearson correlation of sequence log-probs between each SFT student and each SFT large model.

    On the preference ``split``, each model scores chosen and rejected responses
    with its own tokenizer and template (:class:`dpolib.references.ModelReference`);
    reported: the correlation of log p(y|x) over all responses, and of the pair
    margin log p(y_w|x) - log p(y_l|x). A quick check that compatibility is a
    measurable property of this world (the lab's own analysis measures it properly).
    """
    import torch

    from ..references import ModelReference
    from . import pretrain

    ds = build_preference_data(profile, cache_dir=cache_dir)[split]
    prompts = list(ds["prompt"]) * 2
    responses = list(ds["chosen"]) + list(ds["rejected"])
    n = len(ds)
    logps = {}
    for family in ("char", "bpe"):
        for size in ("small", "large"):
            ref = ModelReference.from_pretrained(pretrain.model_dir(family, size, "sft", profile, cache_dir), progress=False)
            logps[f"{family}/{size}"] = ref.logps(prompts, responses)

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    out = {}
    for student in ("char/small", "bpe/small"):
        for ref in ("char/large", "bpe/large", "char/small" if student == "bpe/small" else "bpe/small"):
            a, b = logps[student], logps[ref]
            out[f"{student} vs {ref}"] = {
                "logp_corr": corr(a, b),
                "margin_corr": corr(a[:n] - a[n:], b[:n] - b[n:]),
            }
    for name, lp in logps.items():
        out[f"{name} ranking_accuracy"] = float((lp[:n] > lp[n:]).double().mean())
    return out


def world_design() -> dict:
    """What defines this world's design, so that a report says which world it describes.

    The code version of the trained stages, the gold scorer's filler penalty, the detail
    sentences, the writers and model sources of the candidate pool, and each family's
    SFT and pretraining mixes.
    """
    from . import pretrain, task
    from .families import FAMILIES

    return {
        "code_version": pretrain.CODE_VERSION,
        "filler_penalty": task.FILLER_PENALTY,
        "max_filler_penalty_count": task.MAX_FILLER_PENALTY_COUNT,
        "details": list(task.DETAILS),
        "writers": list(SOURCE_POLICIES),
        "model_sources": {k: list(v) for k, v in MODEL_SOURCES.items()},
        "sampling": dict(SAMPLING),
        "sft_mix": {name: dict(spec.sft_mix) for name, spec in FAMILIES.items()},
        "pretrain_mix": {name: dict(spec.pretrain_mix) for name, spec in FAMILIES.items()},
    }


def write_world_report(profile: Profile, path=None, cache_dir=None, n_eval: int = 100) -> dict:
    """Build (or load from cache) the whole world for ``profile`` and write its report.

    Times every stage (a stage already cached reports the time it took when it was
    built, from its ``world.json``), measures the mean gold of the 4 SFT models'
    greedy outputs on ``n_eval`` test prompts, and the preference data's length
    statistics and annotator agreement. Writes ``results/lab/world_report_<name>.json``.
    """
    import torch
    from transformers import AutoTokenizer

    from ..provenance import git_commit, library_versions

    from . import pretrain

    stages: dict = {}
    t_all = time.time()
    for family in ("char", "bpe"):
        for size in ("small", "large"):
            for stage in ("pretrain", "sft", "peer") if size == "small" else ("pretrain", "sft"):
                t0 = time.time()
                d = pretrain.model_dir(family, size, stage, profile, cache_dir=cache_dir)
                meta = json.loads((d / "world.json").read_text())
                stages[f"{family}/{size}/{stage}"] = {
                    "train_seconds": meta.get("train_seconds"),
                    "call_seconds": time.time() - t0,
                    "final_loss": meta.get("final_loss"),
                    "n_params": meta.get("n_params"),
                    "dir": d.name,
                }
    t0 = time.time()
    ds = build_preference_data(profile, cache_dir=cache_dir)
    data_seconds = time.time() - t0
    toks = {
        f: AutoTokenizer.from_pretrained(pretrain.model_dir(f, "small", "sft", profile, cache_dir=cache_dir))
        for f in ("char", "bpe")
    }
    quality = pretrain.sft_quality_report(profile, n_prompts=n_eval, cache_dir=cache_dir)
    compat = compatibility_report(profile, cache_dir=cache_dir)
    report = {
        "profile": profile.to_dict(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform()},
        "stage_seconds": stages,
        "world_train_seconds_total": sum(s["train_seconds"] or 0.0 for s in stages.values()),
        "data_seconds": data_seconds,
        "report_wall_seconds": time.time() - t_all,
        "sft_quality": quality,
        "preference_data": data_report(ds, toks),
        "compatibility": compat,
        "annotator": {"length_bias": LENGTH_BIAS, "length_scale_chars": LENGTH_SCALE, "noise_sd": ANNOTATOR_NOISE},
        "design": world_design(),
    }
    path = Path(path) if path else Path(__file__).resolve().parents[2] / "results" / "lab" / f"world_report_{profile.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return report
