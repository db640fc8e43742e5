"""Measured compatibility: how close each CPU-world student is to each candidate reference (the paper's §7 question).

RQ3 (§6) finds that a stronger reference helps only when it is *compatible* with the
student, and §7 asks how to measure compatibility. For every student (a family's small
SFT model) and every reference role — ``self`` (the student), ``compatible`` (its
family's large SFT model), ``incompatible`` (the other family's large SFT model) — this
module measures, on the validation split of the preference data (:mod:`dpolib.world.pairs`):

* ``logp_corr``: Pearson correlation of log p_s(y|x) and log p_ref(y|x) over all responses;
* ``margin_corr``: the same for the pair margins log p(y_w|x) − log p(y_l|x), the only reference
  quantity DPO (Eq. 5) uses;
* ``kl``: a Monte-Carlo estimate of the sequence-level KL(p_s ‖ p_ref) =
  E_{y∼p_s}[log p_s(y|x) − log p_ref(y|x)] (Eq. 2 with p_θ = p_s, DPO's start point), from one
  sampled response per validation prompt (responses that end with EOS), with its standard error
  ``kl_se``, per character ``kl_per_char`` and sample count ``kl_n``.

Each model scores text with its own tokenizer and template (:class:`dpolib.references.ModelReference`),
so the measures work across tokenizers. :func:`write_compatibility` stores the result, with
provenance and the stage keys of the models it measured, in
``results/lab/<profile>/compatibility.json``; the RQ3 chapter only reads that file.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .. import evaluation, paths
from ..provenance import provenance, read_json, write_json
from ..references import ModelReference
from . import pairs, pretrain
from .families import FAMILIES, reference_model
from .profiles import Profile

__all__ = [
    "REFERENCES",
    "reference_model",
    "world_keys",
    "cached",
    "measure_compatibility",
    "write_compatibility",
]

#: The reference roles of RQ3, in the chapter's order.
REFERENCES = ("self", "compatible", "incompatible")
_SIZES = ("small", "large")


def world_keys(profile: Profile) -> dict[str, str]:
    """``{"family/size": stage key}`` of the SFT models measured (what makes a stored measurement current)."""
    return {f"{f}/{size}": pretrain.stage_key(f, size, "sft", profile) for f in FAMILIES for size in _SIZES}


def cached(profile: Profile, root: Path | None = None) -> dict | None:
    """The stored measurement of ``profile`` if its models' stage keys match today's world, else ``None``."""
    path = paths.compatibility_path(profile.name, root)
    if not path.exists():
        return None
    stored = read_json(path)
    return stored if stored.get("world") == world_keys(profile) else None


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def measure_compatibility(profile: Profile, sample_seed: int = 0, cache_dir=None) -> dict:
    """Measure every student-reference pair (see the module docstring); trains the world first if needed.

    Args:
        profile: the world profile whose SFT models are measured.
        sample_seed: seed of the students' sampled responses (the KL estimate).
        cache_dir: the world's model cache (default :func:`dpolib.paths.world_cache`).

    Returns:
        A dict with keys ``profile``, ``split`` (``"validation"``), ``world`` (:func:`world_keys`),
        ``measures`` (student, then reference, then ``reference_model``, ``logp_corr``, ``margin_corr``,
        ``kl``, ``kl_se``, ``kl_per_char``, ``kl_n``, ``n_samples``) and ``provenance``.
    """
    t0 = time.perf_counter()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and the same numbers on every machine
    try:
        val = pairs.build_preference_data(profile, cache_dir=cache_dir)["validation"]
        prompts = list(val["prompt"])
        n = len(prompts)
        models = {
            (f, size): ModelReference.from_pretrained(pretrain.model_dir(f, size, "sft", profile, cache_dir),
                                                      max_length=profile.max_length, progress=False)
            for f in FAMILIES for size in _SIZES
        }
        responses = list(val["chosen"]) + list(val["rejected"])
        pair_logps = {k: m.logps(prompts + prompts, responses).numpy() for k, m in models.items()}
        settings = evaluation.GenerationSettings(max_new_tokens=profile.max_new_tokens, do_sample=True,
                                                 seed=sample_seed, batch_size=profile.eval_batch_size)
        measures: dict = {}
        for s in FAMILIES:
            student = models[(s, "small")]
            gens = evaluation.generate(student.model, student.tokenizer, prompts, settings)
            keep = [i for i, g in enumerate(gens) if g.finished]
            sampled_prompts = [prompts[i] for i in keep]
            sampled = [[{"role": "assistant", "content": gens[i].text}] for i in keep]
            own = student.logps(sampled_prompts, sampled).numpy()
            lengths = np.array([len(gens[i].text) + 1 for i in keep], float)  # + 1: the EOS
            measures[s] = {}
            for ref in REFERENCES:
                a, b = pair_logps[(s, "small")], pair_logps[reference_model(s, ref)]
                log_ratio = own - models[reference_model(s, ref)].logps(sampled_prompts, sampled).numpy()
                measures[s][ref] = {
                    "reference_model": "/".join(reference_model(s, ref)),
                    "logp_corr": _correlation(a, b),
                    "margin_corr": _correlation(a[:n] - a[n:], b[:n] - b[n:]),
                    "kl": float(log_ratio.mean()),
                    "kl_se": float(log_ratio.std(ddof=1) / math.sqrt(len(log_ratio))) if len(log_ratio) > 1 else math.nan,
                    "kl_per_char": float(log_ratio.sum() / lengths.sum()),
                    "kl_n": len(keep),
                    "n_samples": n,
                }
    finally:
        torch.set_num_threads(before)
    return {
        "profile": profile.name,
        "split": "validation",
        "world": world_keys(profile),
        "measures": measures,
        "provenance": provenance(wall_time_s=time.perf_counter() - t0, seed=sample_seed),
    }


def write_compatibility(profile: Profile, root: Path | None = None, force: bool = False) -> Path:
    """Measure ``profile``'s compatibility and store it at :func:`dpolib.paths.compatibility_path`; returns the path.

    A stored measurement of the same world (:func:`cached`) is kept unless ``force``.
    """
    path = paths.compatibility_path(profile.name, root)
    if force or cached(profile, root) is None:
        write_json(path, measure_compatibility(profile))
    return path
