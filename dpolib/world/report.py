"""The world report: every stage's provenance and wall time, and the numbers that describe the world.

:func:`write_world_report` builds (or loads from the cache) the whole world of a profile
and writes ``results/lab/world_report_<profile>.json``: stage times, the SFT models'
quality, the preference data's length statistics and annotator agreement, a quick
compatibility check, and the world's design. The controlled-world chapter reads it
(:mod:`dpolib.chapters.world`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import paths
from .pairs import (
    ANNOTATOR_NOISE, LARGE_SHARE, LENGTH_BIAS, LENGTH_SCALE, SAMPLING, SIBLING_SLOTS, build_preference_data, model_sources,
    source_kind,
)  # fmt: skip
from .profiles import Profile
from .task import FILLERS, repetition_rate
from .writers import SOURCE_POLICIES

__all__ = ["record_reproduction", "data_report", "pool_report", "compatibility_report", "world_design", "write_world_report",
           "record_stage_seconds"]


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


def world_design(profile: Profile) -> dict:
    """What defines this world's design, so that a report says which world it describes.

    The code version of the trained stages, the gold scorer's filler penalty, the detail
    sentences, the writers and model sources of the candidate pool and how a prompt's 4
    candidates are drawn, and each family's SFT and pretraining mixes.
    """
    from . import pretrain, task
    from .families import FAMILIES

    return {
        "code_version": pretrain.CODE_VERSION,
        "filler_penalty": task.FILLER_PENALTY,
        "max_filler_penalty_count": task.MAX_FILLER_PENALTY_COUNT,
        "details": list(task.DETAILS),
        "writers": list(SOURCE_POLICIES),
        "model_sources": {k: list(v) for k, v in model_sources(profile).items()},
        "pool": {"sibling_slots": SIBLING_SLOTS, "large_share_of_other_slot": LARGE_SHARE, "candidates": 4},
        "sampling": dict(SAMPLING),
        "sft_mix": {name: dict(spec.sft_mix) for name, spec in FAMILIES.items()},
        "pretrain_mix": {name: dict(spec.pretrain_mix) for name, spec in FAMILIES.items()},
    }


def pool_report(profile: Profile, dataset, cache_dir=None) -> dict:
    """The candidate pool's composition and its distance from each student, on a preference split.

    Composition: the share of chosen and of rejected answers by source kind (sibling, large
    model, writer). Distance: each SFT student's mean log-prob per response token of the
    chosen and of the rejected answers (its own tokenizer and template), overall and by the
    chosen answer's source kind; the closer to the student's own samples, the nearer the pool.
    """
    import numpy as np

    from ..references import ModelReference
    from . import pretrain
    from .families import FAMILIES

    kinds = {side: [source_kind(s) for s in dataset[f"source_{side}"]] for side in ("chosen", "rejected")}
    out: dict = {"composition": {side: {k: ks.count(k) / len(ks) for k in sorted(set(ks))}
                                 for side, ks in kinds.items()}, "distance": {}}
    prompts = list(dataset["prompt"])
    for family in FAMILIES:
        ref = ModelReference.from_pretrained(pretrain.model_dir(family, "small", "sft", profile, cache_dir),
                                             progress=False)
        per_side = {}
        for side in ("chosen", "rejected"):
            scored = ref.score(prompts, list(dataset[side]), per_token=True)
            per_side[side] = np.array([float(seq) / max(1, len(tok)) for seq, tok in
                                       zip(scored.sequence_logps, scored.token_logps)])
        by_kind = {k: {side: float(per_side[side][[c == k for c in kinds["chosen"]]].mean())
                       for side in per_side} for k in sorted(set(kinds["chosen"]))}
        out["distance"][family] = {"logp_per_token_chosen": float(per_side["chosen"].mean()),
                                   "logp_per_token_rejected": float(per_side["rejected"].mean()),
                                   "by_chosen_source_kind": by_kind}
    return out


def record_stage_seconds(profile_name: str, stage: str, seconds: float, path=None) -> None:
    """Add one stage's wall time (a grid, a world build) to the report's ``reproduction_seconds``."""
    from ..provenance import atomic_write_json, read_json

    path = Path(path) if path else paths.world_report_path(profile_name)
    if not path.exists():
        return
    report = read_json(path)
    report.setdefault("reproduction_seconds", {})[stage] = float(seconds)
    report["reproduction_seconds_total"] = sum(report["reproduction_seconds"].values())
    atomic_write_json(path, report)


def record_reproduction(profile_name: str, wall_seconds: float, job_seconds: dict, workers: int, path=None) -> None:
    """Record a whole reproduction run as one schedule (:mod:`dpolib.experiments.reproduce`): its wall time under
    ``reproduction_seconds`` (replacing any per-stage times of an earlier, stage-by-stage run) and the seconds its
    jobs took, summed per stage, under ``reproduction_job_seconds``."""
    from ..provenance import atomic_write_json, read_json

    path = Path(path) if path else paths.world_report_path(profile_name)
    if not path.exists():
        return
    report = read_json(path)
    report["reproduction_seconds"] = {f"whole reproduction (one schedule, {workers} workers)": float(wall_seconds)}
    report["reproduction_seconds_total"] = float(wall_seconds)
    report["reproduction_job_seconds"] = {k: float(v) for k, v in sorted(job_seconds.items())}
    report["reproduction_workers"] = int(workers)
    atomic_write_json(path, report)


def write_world_report(profile: Profile, path=None, cache_dir=None, n_eval: int = 100) -> dict:
    """Build (or load from cache) the whole world for ``profile`` and write its report.

    Times every stage (a stage already cached reports the time it took when it was
    built, from its ``world.json``), measures the mean gold of the 4 SFT models'
    greedy outputs on ``n_eval`` test prompts, and the preference data's length
    statistics and annotator agreement; for every world seed of the profile, its stage times,
    the pool's composition and distance (:func:`pool_report`). Writes
    ``results/lab/world_report_<name>.json``.
    """
    import torch
    from transformers import AutoTokenizer

    from ..provenance import cpu_model, git_commit, library_versions

    from . import pretrain

    from .pairs import test_prompts

    t_all = time.time()
    worlds: dict = {}
    for seed in profile.seeds:
        p = profile.for_world(seed)
        stages: dict = {}
        for family in ("char", "bpe"):
            for size in ("small", "large"):
                for stage in ("pretrain", "sft") + (pretrain.sibling_stages(p) if size == "small" else ()):
                    t0 = time.time()
                    d = pretrain.model_dir(family, size, stage, p, cache_dir=cache_dir)
                    meta = json.loads((d / "world.json").read_text())
                    stages[f"{family}/{size}/{stage}"] = {
                        "train_seconds": meta.get("train_seconds"),
                        "call_seconds": time.time() - t0,
                        "final_loss": meta.get("final_loss"),
                        "n_params": meta.get("n_params"),
                        "dir": d.name,
                    }
        t0 = time.time()
        ds = build_preference_data(p, cache_dir=cache_dir)
        data_seconds = time.time() - t0
        worlds[str(seed)] = {
            "stage_seconds": stages,
            "world_train_seconds_total": sum(s["train_seconds"] or 0.0 for s in stages.values()),
            "data_seconds": data_seconds,
            "pool": pool_report(p, ds["validation"], cache_dir),
            "n_test_prompts_distinct": len({q.text for q in test_prompts(p)}),
        }
        if seed == profile.seeds[0]:
            first_ds = ds
    profile = profile.for_world(profile.seeds[0])
    ds = first_ds
    stages = worlds[str(profile.world_seed)]["stage_seconds"]
    data_seconds = worlds[str(profile.world_seed)]["data_seconds"]
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
        "machine": {"cpu_threads": torch.get_num_threads(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform()},
        "stage_seconds": stages,
        "world_train_seconds_total": sum(s["train_seconds"] or 0.0 for s in stages.values()),
        "data_seconds": data_seconds,
        "report_wall_seconds": time.time() - t_all,
        "sft_quality": quality,
        "preference_data": data_report(ds, toks),
        "compatibility": compat,
        "annotator": {"length_bias": LENGTH_BIAS, "length_scale_chars": LENGTH_SCALE, "noise_sd": ANNOTATOR_NOISE},
        "design": world_design(profile),
        "worlds": worlds,
    }
    path = Path(path) if path else paths.world_report_path(profile.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    if previous.get("git_commit") == report["git_commit"] and "reproduction_seconds" in previous:
        report["reproduction_seconds"] = previous["reproduction_seconds"]  # the same code's earlier stage times
        report["reproduction_seconds_total"] = previous.get("reproduction_seconds_total")
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return report
