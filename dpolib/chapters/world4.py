"""World 4 in the controlled-world chapter: what changed from world 3 and why, and whether the new world can show a
DPO gain.

World 4 (issue "World 4") replaced world 3, in which no DPO run beat its SFT student. This module
reads World 4's records, world report and learning-rate choices, and the world-3 archive, and
turns them into the chapter's tables, figure and sentences: each change with its reason tied to a
measured world-3 fact (``world3_facts``, ``changes_table``); the candidate pool per world seed
(``pool_composition``, ``pool_distance``); the learning-rate rule (``lr_table``); every RQ1
self-reference arm and on-policy control against its SFT student on gold, per world seed and pooled,
with paired 95% intervals (``gate_table``, ``plot_gate``; the rules are
:mod:`dpolib.chapters.evidence`'s); power (``power_table``); the judge (``judge_calibration``,
``degenerate_table``); the cost (``cost_table``, ``results_size``); and the opening answer
(``headline``). Nothing here trains, samples or loads a model.
"""

from __future__ import annotations

import math
from statistics import median
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import paths
from ..experiments.lr_rule import LrChoice, read_lr_choices
from ..experiments.records import Record, grid_status, load_grid, read_record
from ..provenance import read_json
from ..world.profiles import get_profile
from . import evidence
from .cost import TARGET_REPRODUCTION_MINUTES
from .world import NOT_RUN_RECORDS

__all__ = [
    "TARGET_LC_HALF_WIDTH", "LC_DESIGN", "World4Evidence", "load_evidence", "archive_dir", "read_archive_records",
    "World3Facts", "world3_facts", "changes_table", "pool_composition", "pool_distance", "lr_table", "lr_sentence",
    "gate_table", "gate_display", "plot_gate", "power_table", "JudgeCalibration", "judge_calibration",
    "degenerate_table", "Headline", "headline", "opening_table"
]

#: The issue's power target, a paired 95% half-width of a DPO − SFT difference of at most this many LC points.
TARGET_LC_HALF_WIDTH = 1.0

#: What our length-controlled win rate keeps from AlpacaEval 2's GLM and what it leaves out (aspect, theirs, ours).
LC_DESIGN = (
    ("link", "logit p = θ + φ·tanh(Δlen / sd) [+ ψ·γ]", "kept: the same tanh link of the length difference"),
    ("length term", "φ fitted per model, shrunk by regularisation", "kept as shared, but fixed: φ and sd measured once "
     "per world on pairs that differ only in length (gold-neutral detail sentences), the same for every model"),
    ("what is reported", "the predicted win rate at Δlen = 0",
     "each preference de-biased, q = σ(logit p − φ·tanh(Δlen / sd)); LC = 100 · mean q"),
    ("instruction difficulty γ", "pre-fitted across many models", "left out (one world has too few models to fit it)"),
    ("regularisation of θ", "toward the baseline", "left out (θ is not part of the calibrated LC)"),
)

# --------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class World4Evidence:
    """What the World 4 sections read for one profile.

    Attributes:
        profile: the world profile (``"cpu"`` or ``"smoke"``).
        seeds: its world seeds.
        rq1: the RQ1 grid's records (SFT and self-reference DPO) at every world seed that has them.
        controls: the on-policy control grid's records.
        lr_choices: each student's learning-rate choice, or ``None`` when the choice file is absent.
        missing: one message per missing piece (empty when everything is there).
    """

    profile: str
    seeds: tuple
    rq1: tuple
    controls: tuple
    lr_choices: Mapping[str, LrChoice] | None
    missing: tuple

    @property
    def has_records(self) -> bool:
        """True when some RQ1 record holds per-prompt scores (the gate and power need them)."""
        return any(r.metrics.prompt_scores for r in self.rq1)


def load_evidence(profile: str, root: Path | None = None) -> World4Evidence:
    """The committed World 4 records (grids ``rq1`` and ``controls`` at every world seed) and learning-rate choices.

    Reads only. ``missing`` holds :attr:`~dpolib.experiments.records.GridStatus.message` of each
    incomplete grid and a line for an absent ``lr_choice.json``. Raises ``ValueError`` for a profile
    that is not a world profile (``gpu``).
    """
    seeds = tuple(get_profile(profile).seeds)
    missing = [s.message for s in (grid_status(g, profile, seeds, root) for g in ("rq1", "controls")) if s.missing]
    choices = read_lr_choices(profile, root)
    if choices is None:
        missing.append(f"No learning-rate choices for profile {profile!r} (lr_choice.json is written by "
                       f"python -m dpolib.experiments world --profile {profile}).")
    return World4Evidence(profile, seeds, tuple(load_grid("rq1", profile, seeds, root)),
                          tuple(load_grid("controls", profile, seeds, root)), choices, tuple(missing))


def archive_dir(name: str, root: Path | None = None) -> Path | None:
    """The archived world ``name``: under ``<root>/archive`` (default :func:`dpolib.paths.results_root`), else under
    the checkout's ``results/lab/archive`` (records read from elsewhere still have the committed archive); ``None``."""
    for base in (Path(root or paths.results_root()), paths.REPO_ROOT / "results" / "lab"):
        if (base / "archive" / name).is_dir():
            return base / "archive" / name
    return None


def read_archive_records(folder: Path) -> list[Record]:
    """Every run record in an archive folder (the files of :data:`~dpolib.chapters.world.NOT_RUN_RECORDS` are
    skipped)."""
    return [read_record(p) for p in sorted(Path(folder).glob("*.json")) if p.name not in NOT_RUN_RECORDS]


# --------------------------------------------------------------------------------------- world 3 -> World 4


@dataclass(frozen=True)
class World3Facts:
    """What world 3 measured, read from its archived report and records (``results/lab/archive/world-3``).

    Attributes:
        n_test_prompts: test prompts per model.
        n_pref_val: validation pairs.
        sources: the candidate pool's sources, in words (its report's ``design``).
        seeds: the seeds its headline arms were rerun at (DPO seeds in one world).
        dpo_learning_rate: the one DPO learning rate of its ``cpu`` profile.
        writer_share_chosen: the share of the training pairs' chosen answers written by programmatic writers.
        peer_share_chosen: the share written by the students' peers (the models closest to the students).
        best_lc_gain: the largest LC gain (points) of any DPO record over its SFT student at the same seed.
        lc_se_bound: an upper bound on that SFT model's LC standard error, 100·sqrt(w(1 − w)/n) (points).
        seed_sd_lc: the median over arms rerun at several seeds of the seed-to-seed sd of LC (points).
        n_seed_arms: the arms behind ``seed_sd_lc``.
        reward_accuracy: the median validation reward accuracy of the DPO records.
        reward_accuracy_se: its binomial standard error on ``n_pref_val`` pairs.
        low_lr_ratio: the ``cpu-low-lr`` learning rate over ``dpo_learning_rate`` (NaN without those records).
        low_lr_best_lc_gain: the largest LC gain over SFT at that rate (NaN without those records).
        per_model_phi: the smallest and largest per-model length coefficient φ its LC fits found.
        n_degenerate: records flagged degenerate.
        max_degenerate_rate: the largest degenerate share of any record.
        n_records: run records read (both profiles).
        n_dirty: files (records and the report) written from a tree with uncommitted changes.
    """

    n_test_prompts: int
    n_pref_val: int
    sources: str
    seeds: tuple
    dpo_learning_rate: float
    writer_share_chosen: float
    peer_share_chosen: float
    best_lc_gain: float
    lc_se_bound: float
    seed_sd_lc: float
    n_seed_arms: int
    reward_accuracy: float
    reward_accuracy_se: float
    low_lr_ratio: float
    low_lr_best_lc_gain: float
    per_model_phi: tuple
    n_degenerate: int
    max_degenerate_rate: float
    n_records: int
    n_dirty: int


def _gains(records: Sequence[Record]) -> list[tuple[Record, Record]]:
    """``(DPO record, its SFT record at the same seed)`` for every DPO record that has one."""
    sft = {(r.student, r.seed): r for r in records if r.is_sft}
    return [(r, sft[(r.student, r.seed)]) for r in records if r.objective == "dpo" and (r.student, r.seed) in sft]


def _dirty(provenance: Mapping) -> bool:
    return str(provenance.get("git_commit", "")).endswith("+dirty")


def world3_facts(archive: Path) -> World3Facts:
    """Measure :class:`~dpolib.chapters.world4.World3Facts` on the world-3 archive folder (its report, ``cpu/``
    and ``cpu-low-lr/``).

    Raises:
        FileNotFoundError: the report or the ``cpu`` records are absent (the message names the folder).
    """
    archive = Path(archive)
    if not (archive / "world_report_cpu.json").exists() or not (archive / "cpu").is_dir():
        raise FileNotFoundError(f"{archive} lacks world_report_cpu.json or cpu/: not the world-3 archive")
    report = read_json(archive / "world_report_cpu.json")
    prof, chosen = report["profile"], report["preference_data"]["train"]["source_chosen"]
    records = read_archive_records(archive / "cpu")
    low = read_archive_records(archive / "cpu-low-lr") if (archive / "cpu-low-lr").is_dir() else []
    n_chosen = sum(chosen.values())
    design = report.get("design", {})
    models = set(design.get("model_sources", {}))
    best, best_sft = max(_gains(records), key=lambda g: g[0].lc - g[1].lc)
    w = best_sft.lc / 100.0
    arms: dict[tuple, list[float]] = {}
    for r in records:
        arms.setdefault((r.student, r.objective, r.reference, r.beta), []).append(r.lc)
    sds = [float(np.std(v, ddof=1)) for v in arms.values() if len(v) > 1]
    accuracy = median(r.metrics.reward_accuracy for r in records if r.objective == "dpo")
    low_gains = [d.lc - s.lc for d, s in _gains(low)]
    low_rate = low[0].settings.get("dpo_learning_rate", math.nan) if low else math.nan
    everything = records + low
    phis = [r.metrics.lc_fit["phi"] for r in everything if "phi" in (r.metrics.lc_fit or {})]
    return World3Facts(
        n_test_prompts=int(prof["n_test_prompts"]), n_pref_val=int(prof["n_pref_val"]),
        sources=f"{len(design.get('writers', []))} writers, {len(models)} sampled models ({', '.join(sorted(models))})",
        seeds=tuple(sorted({r.seed for r in records})), dpo_learning_rate=float(prof["dpo_learning_rate"]),
        writer_share_chosen=sum(v for k, v in chosen.items() if k not in models) / n_chosen,
        peer_share_chosen=sum(v for k, v in chosen.items() if k.endswith("-peer")) / n_chosen,
        best_lc_gain=best.lc - best_sft.lc, lc_se_bound=100.0 * math.sqrt(w * (1.0 - w) / int(prof["n_test_prompts"])),
        seed_sd_lc=median(sds) if sds else math.nan, n_seed_arms=len(sds),
        reward_accuracy=accuracy, reward_accuracy_se=math.sqrt(accuracy * (1 - accuracy) / int(prof["n_pref_val"])),
        low_lr_ratio=low_rate / float(prof["dpo_learning_rate"]),
        low_lr_best_lc_gain=max(low_gains) if low_gains else math.nan,
        per_model_phi=(min(phis), max(phis)) if phis else (math.nan, math.nan),
        n_degenerate=sum(r.degenerate for r in everything),
        max_degenerate_rate=max(r.metrics.degenerate_rate for r in everything),
        n_records=len(everything), n_dirty=sum(_dirty(r.provenance) for r in everything) + _dirty(report),
    )


def changes_table(facts: World3Facts | None, current: World4Evidence, report: Mapping | None = None,
                  old_degenerate_rate: float | None = None) -> pd.DataFrame:
    """World 3 → World 4, one row per change: the two designs and the reason, tied to a measured world-3 fact.

    ``facts`` from :func:`~dpolib.chapters.world4.world3_facts` (``None``: the reasons without their numbers);
    ``current`` the World 4 evidence (its profile's sizes, the records' φ and provenance); ``report``
    the World 4 report (its ``design.pool``); ``old_degenerate_rate`` world 3's degenerate threshold.
    Index ``change``; columns ``world 3``, ``World 4``, ``why (measured on world 3)``.
    """
    from ..world.judge import DEGENERATE_RATE_THRESHOLD as threshold

    prof, f = get_profile(current.profile), facts
    pool = (report or {}).get("design", {}).get("pool", {})
    slots = f"{pool['sibling_slots']} of a prompt's {pool['candidates']}" if pool else "most"
    records = [*current.rq1, *current.controls]
    phi = [r.metrics.lc_fit["phi"] for r in records if (r.metrics.lc_fit or {}).get("calibrated")]
    n_seeds = len(prof.seeds)
    seeds = f"{n_seeds} world seed{'s' * (n_seeds != 1)}, each a new world (models, pairs, prompts)"
    rows = [
        ("candidate pool", f.sources if f else "writers and a few sampled models",
         f"{prof.n_siblings} sibling SFT models per family fill {slots} candidates; a large model or a writer the rest",
         "the pairs were far from the students"),
        ("test prompts", f"{f.n_test_prompts:,}" if f else "fewer", f"{prof.n_test_prompts:,} per world seed",
         "too few to resolve the differences seen"),
        ("validation pairs", f"{f.n_pref_val:,}" if f else "fewer", f"{prof.n_pref_val:,}",
         "the learning-rate rule reads validation loss and accuracy"),
        ("world seeds", "one world; " + (f"seeds {', '.join(map(str, f.seeds))} " if f else "its seeds ")
         + "reseeded DPO only", seeds, "a finding could be a property of one world draw"),
        ("learning-rate rule", f"{f.dpo_learning_rate:g} (the SFT/40 ratio) for every student" if f else "SFT/40",
         "per student, the lowest validation DPO loss among "
         + ", ".join(f"{m:g}" for m in prof.dpo_lr_multipliers) + " × the SFT/40 rate",
         "a tiny model need not share the paper's optimum"),
        ("length-controlled win rate", "AlpacaEval's GLM fitted per model (φ per model)",
         "φ calibrated once per world where only length varies" + (f" (φ = {median(phi):.2f})" if phi else ""),
         "a per-model φ absorbs quality changes that move with length"),
        ("degenerate check", "generic: unterminated or repetitive outputs"
         + ("" if old_degenerate_rate is None else f", flagged above {old_degenerate_rate:.0%}"),
         f"the world's reasons (unterminated, repetition, out of lexicon); flagged above {threshold:.0%}, stated in "
         "advance", "the generic flag never fired"),
        ("records from a clean commit", "written from uncommitted changes",
         f"every record names a clean commit ({sum(_dirty(r.provenance) for r in records)} of {len(records)} present "
         "records dirty)", "the uncommitted code could not be recovered"),
    ]
    measured = {} if f is None else {
        "candidate pool": f": {f.writer_share_chosen:.0%} of chosen answers came from programmatic writers, "
                          f"{f.peer_share_chosen:.1%} from the students' peers",
        "test prompts": f": the best DPO run gained {f.best_lc_gain:+.2f} LC points over its SFT student; the LC "
                        f"standard error on {f.n_test_prompts} prompts can reach {f.lc_se_bound:.1f} points",
        "validation pairs": f"; a reward accuracy of {f.reward_accuracy:.2f} on {f.n_pref_val} pairs has a "
                            f"standard error of {f.reward_accuracy_se:.3f}",
        "world seeds": f"; reseeding DPO alone moved an arm's LC by a median sd of {f.seed_sd_lc:.2f} points "
                       f"({f.n_seed_arms} arms)",
        "learning-rate rule": f"; at {f.low_lr_ratio:g} × the rate the best LC gain over SFT was "
                              f"{f.low_lr_best_lc_gain:+.2f} points" if math.isfinite(f.low_lr_best_lc_gain) else "",
        "length-controlled win rate": f": world 3's per-model φ ranged from {f.per_model_phi[0]:.2f} to "
                                      f"{f.per_model_phi[1]:.2f}",
        "degenerate check": f": {f.n_degenerate} of {f.n_records} records flagged, the largest degenerate share "
                            f"{f.max_degenerate_rate:.0%}",
        "records from a clean commit": f": {f.n_dirty} of {f.n_records + 1} world-3 files came from a dirty tree",
    }
    why = "why (measured on world 3)"
    table = pd.DataFrame(rows, columns=["change", "world 3", "World 4", why]).set_index("change")
    table[why] = [w + measured.get(c, " (world-3 archive not found)") for c, w in table[why].items()]
    return table


# --------------------------------------------------------------------------------------- the candidate pool


def _pools(report: Mapping) -> dict:
    worlds = report.get("worlds")
    if not worlds or not all("pool" in w for w in worlds.values()):
        raise ValueError("the world report has no worlds[seed]['pool'] section (a report older than World 4); "
                         "rebuild it with python -m dpolib.experiments world --profile <profile>")
    return {int(seed): w["pool"] for seed, w in worlds.items()}


def pool_composition(report: Mapping) -> pd.DataFrame:
    """The share of chosen and of rejected answers by source kind, per world seed.

    Index ``(world seed, side)``; one column per source kind (``sibling``, ``large``, ``writer``), 0 when absent.
    Raises ``ValueError`` for a report without the pool section.
    """
    rows = [{"world seed": seed, "side": side, **pool["composition"].get(side, {})}
            for seed, pool in sorted(_pools(report).items()) for side in ("chosen", "rejected")]
    table = pd.DataFrame(rows).set_index(["world seed", "side"]).fillna(0.0)
    known = [k for k in ("sibling", "large", "writer") if k in table]
    return table[known + sorted(set(table) - set(known))]


def pool_distance(report: Mapping) -> pd.DataFrame:
    """Each student's mean log-prob per token of the chosen and rejected answers, overall and by the chosen
    answer's source kind, per world seed (higher: closer to what the student writes).

    Index ``(world seed, student, chosen answer from)`` (``all``, then each kind); columns ``chosen``,
    ``rejected``, ``chosen − rejected``. Raises ``ValueError`` for a report without the pool section.
    """
    rows = []
    for seed, pool in sorted(_pools(report).items()):
        for student, d in pool["distance"].items():
            rows.append((seed, student, "all", d["logp_per_token_chosen"], d["logp_per_token_rejected"]))
            rows += [(seed, student, kind, v["chosen"], v["rejected"])
                     for kind, v in d.get("by_chosen_source_kind", {}).items()]
    table = pd.DataFrame(rows, columns=["world seed", "student", "chosen answer from", "chosen", "rejected"])
    table["chosen − rejected"] = table["chosen"] - table["rejected"]
    return table.set_index(["world seed", "student", "chosen answer from"])


# --------------------------------------------------------------------------------------- the learning-rate rule


def lr_table(choices: Mapping[str, LrChoice]) -> pd.DataFrame:
    """Every candidate rate of every student: validation DPO loss and reward accuracy, and which was chosen.

    Index ``(student, × SFT/40)``; columns ``learning rate``, ``validation DPO loss``,
    ``validation reward accuracy``, ``train seconds``, ``chosen``. Raises ``ValueError`` without choices.
    """
    if not choices:
        raise ValueError("no learning-rate choices (results/lab/<profile>/lr_choice.json is absent)")
    rows = [{"student": s, "× SFT/40": c.multiplier, "learning rate": c.learning_rate,
             "validation DPO loss": c.val_dpo_loss, "validation reward accuracy": c.val_reward_accuracy,
             "train seconds": c.train_seconds, "chosen": c.learning_rate == choice.learning_rate}
            for s, choice in choices.items() for c in choice.candidates]
    return pd.DataFrame(rows).set_index(["student", "× SFT/40"])


def lr_sentence(choices: Mapping[str, LrChoice]) -> str:
    """One sentence: each student's chosen rate and how far its validation loss is below the runner-up's."""
    if not choices:
        raise ValueError("no learning-rate choices (results/lab/<profile>/lr_choice.json is absent)")
    parts = []
    for student, choice in choices.items():
        losses = sorted(c.val_dpo_loss for c in choice.candidates)
        margin = f", {losses[1] - losses[0]:.4f} below the next candidate" if len(losses) > 1 else ""
        parts.append(f"{student}: {choice.multiplier:g} × SFT/40 = {choice.learning_rate:.3g} "
                     f"(validation DPO loss {losses[0]:.4f}{margin})")
    seeds = ", ".join(map(str, sorted({c.world_seed for c in choices.values()})))
    return f"The rule chose, in world {seeds}: " + "; ".join(parts) + ". Every world seed uses its student's choice."


# --------------------------------------------------------------------------------------- the validity gate


def _verdict(iv, holds: bool = True) -> str:
    sign = iv.sign if holds else 0
    return "DPO > SFT" if sign > 0 else "DPO < SFT" if sign < 0 else "cannot tell"


def gate_table(records: Iterable[Record], controls: Iterable[Record] = (), metric: str = "gold") -> pd.DataFrame:
    """Every self-reference DPO arm (and on-policy control arm) minus its SFT student, per world seed and pooled.

    Long format, one row per arm and world (``world`` is the seed as text, or ``"pooled"``): ``student``,
    ``β``, ``arm`` (``"DPO"`` or ``"on-policy control (diagnostic)"``), ``world``, ``estimate``, ``low``,
    ``high`` (paired 95% interval), ``verdict`` (``"cannot tell"`` when the interval includes zero; pooled:
    also when a world seed disagrees in sign, :attr:`dpolib.chapters.evidence.ArmComparison.holds`).
    Records without per-prompt values are left out; empty when nothing is left.
    """
    pool = [r for r in [*records, *controls] if r.metrics.prompt_scores]
    rows = []
    for rec, comp in evidence.versus_sft(pool, metric, objective="dpo", reference="self"):
        arm = "DPO" if rec.config.pairs == "pool" else "on-policy control (diagnostic)"
        worlds = [(str(s), iv, _verdict(iv)) for s, iv in comp.per_world.items()]
        rows += [{"student": rec.student, "β": rec.beta, "arm": arm, "world": world, "estimate": iv.estimate,
                  "low": iv.low, "high": iv.high, "verdict": verdict}
                 for world, iv, verdict in worlds + [("pooled", comp.pooled, _verdict(comp.pooled, comp.holds))]]
    return pd.DataFrame(rows, columns=["student", "β", "arm", "world", "estimate", "low", "high", "verdict"])


def gate_display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """:func:`~dpolib.chapters.world4.gate_table` as text, one row per arm: ``estimate [low, high]`` per world and
    pooled, and the pooled verdict."""
    if table.empty:
        return pd.DataFrame()
    text = table.assign(cell=[f"{e:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
                              for e, lo, hi in zip(table["estimate"], table["low"], table["high"])])
    key = ["student", "arm", "β"]
    wide = text.pivot_table(index=key, columns="world", values="cell", aggfunc="first", sort=False)
    worlds = [w for w in wide.columns if w != "pooled"]
    wide = wide[sorted(worlds, key=int) + ["pooled"]]
    wide.columns = [f"world {w}" if w != "pooled" else "pooled" for w in wide.columns]
    wide["verdict (pooled)"] = text[text["world"] == "pooled"].set_index(key)["verdict"]
    wide = wide.sort_index(level=["student", "arm", "β"], ascending=[True, True, False])
    return wide.rename(index=lambda b: f"{b:g}", level="β")


def plot_gate(table: pd.DataFrame, ax=None, ylabel: str = "Δ gold vs SFT student (pooled, 95% CI)"):
    """Pooled Δ against β per student with interval bars; DPO filled circles, on-policy controls open squares."""
    from .. import plotting

    fig, ax = plotting.figure(width=6.8, height=3.8) if ax is None else (ax.figure, ax)
    pooled = table[table["world"] == "pooled"]
    colours = [plotting.PALETTE[c] for c in ("blue", "vermillion", "green", "purple")]
    for i, student in enumerate(dict.fromkeys(pooled["student"])):
        colour = colours[i % len(colours)]
        for arm, rows in pooled[pooled["student"] == student].groupby("arm", sort=False):
            rows, control = rows.sort_values("β"), arm != "DPO"
            ax.errorbar(rows["β"] * (1.15 if control else 1.0), rows["estimate"],
                        yerr=[rows["estimate"] - rows["low"], rows["high"] - rows["estimate"]], color=colour,
                        marker="s" if control else "o", mfc="white" if control else colour,
                        linestyle=":" if control else "-", capsize=3, label=f"{student}, {arm}")
    ax.axhline(0.0, **{k: v for k, v in plotting.series("sft", label="SFT student (Δ = 0)").items() if k != "marker"})
    plotting.beta_axis(ax)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")
    return fig, ax


# --------------------------------------------------------------------------------------- power


def power_table(records: Iterable[Record]) -> pd.DataFrame:
    """The achieved paired 95% half-widths of DPO − SFT differences
    (:func:`~dpolib.chapters.evidence.half_width_summary`).

    Index ``(metric, scope)`` (``LC points`` / ``gold``; ``per world`` / ``pooled``); columns ``intervals``, ``median``,
    ``max``, ``target`` (:data:`~dpolib.chapters.world4.TARGET_LC_HALF_WIDTH` for LC, NaN for gold) and
    ``median within target`` (``None`` without a target or intervals).
    """
    summary = evidence.half_width_summary(records)
    rows = []
    for metric, name, target in (("lc", "LC points", TARGET_LC_HALF_WIDTH), ("gold", "gold", math.nan)):
        for scope in ("per_world", "pooled"):
            values = summary[f"{metric}_{scope}"]
            middle = median(values) if values else math.nan
            within = None if (math.isnan(target) or not values) else bool(middle <= target)
            rows.append({"metric": name, "scope": scope.replace("_", " "), "intervals": len(values),
                         "median": middle, "max": max(values, default=math.nan), "target": target,
                         "median within target": within})
    return pd.DataFrame(rows).set_index(["metric", "scope"])


# --------------------------------------------------------------------------------------- the judge


@dataclass(frozen=True)
class JudgeCalibration:
    """The judge's calibrated length term, as the records used it, and the per-model fit for contrast.

    Attributes:
        phi: the calibrated φ (the median over records; one world's records share it).
        length_sd: the calibrated Δlen scale (characters).
        n_records: records with a calibrated fit.
        per_model_phi_min: the smallest φ a per-model fit found on the same preferences.
        per_model_phi_max: the largest.
        n_phi_values: distinct calibrated φ values (one per world seed).
    """

    phi: float
    length_sd: float
    n_records: int
    per_model_phi_min: float
    per_model_phi_max: float
    n_phi_values: int


def judge_calibration(records: Iterable[Record]) -> JudgeCalibration:
    """The records' calibrated length term (``metrics.lc_fit``); ``ValueError`` when no record has one."""
    fits = [r.metrics.lc_fit for r in records if (r.metrics.lc_fit or {}).get("calibrated")]
    if not fits:
        raise ValueError("no record with a calibrated length-controlled fit (metrics.lc_fit['calibrated']): "
                         "records older than World 4's judge")
    per_model = [f["per_model_phi"] for f in fits if "per_model_phi" in f]
    return JudgeCalibration(
        phi=median(f["phi"] for f in fits), length_sd=median(f["length_sd"] for f in fits),
        n_records=len(fits), per_model_phi_min=min(per_model, default=math.nan),
        per_model_phi_max=max(per_model, default=math.nan), n_phi_values=len({round(f["phi"], 9) for f in fits}))


def degenerate_table(records: Iterable[Record], threshold: float) -> pd.DataFrame:
    """Each record's degenerate share, its flag, whether the share exceeds ``threshold``, and the share per reason.

    Index: the record's label; columns ``degenerate share``, ``flagged`` (the record's own flag),
    ``above threshold``, then one ``reason: <name>`` column per reason seen (share of test prompts;
    counts over ``len(prompt_scores)``, or NaN when a record lacks per-prompt scores).
    """
    records = list(records)
    reasons = sorted({k for r in records for k in (r.metrics.degenerate_reasons or {})})
    rows = [{"record": r.config.label(), "degenerate share": r.metrics.degenerate_rate, "flagged": r.degenerate,
             "above threshold": r.metrics.degenerate_rate > threshold,
             **{f"reason: {k}": (r.metrics.degenerate_reasons or {}).get(k, 0) / len(r.metrics.prompt_scores)
                if r.metrics.prompt_scores else math.nan for k in reasons}} for r in records]
    columns = ["record", "degenerate share", "flagged", "above threshold"] + [f"reason: {k}" for k in reasons]
    return pd.DataFrame(rows, columns=columns).set_index("record")


# --------------------------------------------------------------------------------------- the answer


@dataclass(frozen=True)
class Headline:
    """The chapter's opening answer in pieces (each glued into the text).

    Attributes:
        gate_verdict: whether the validity gate passes, fails, or cannot be computed yet.
        best_arm: the best off-policy arm's pooled Δgold over its SFT student, with its interval and verdict.
        lc_half_width: the median pooled half-width of DPO − SFT LC differences, against the target.
        gold_half_width: the same for gold.
    """

    gate_verdict: str
    best_arm: str
    lc_half_width: str
    gold_half_width: str


def headline(gate: evidence.Gate | None, power: pd.DataFrame | None, missing: str = "") -> Headline:
    """The opening answer from the gate and :func:`~dpolib.chapters.world4.power_table` (``missing``: why they are
    absent)."""
    if gate is None or gate.best is None:
        why = missing or "no off-policy DPO record with per-prompt scores"
        return Headline(f"cannot be computed yet ({why})", "not available", "not available", "not available")
    iv = gate.best.pooled
    verdict = "cannot tell" if not iv.excludes_zero else ("DPO above SFT" if iv.sign > 0 else "DPO below SFT")
    best = f"{gate.best.label}, {iv.format(3)} ({verdict})"
    widths = [power.loc[(m, "pooled"), "median"] if power is not None else math.nan for m in ("LC points", "gold")]
    lc, gold = ("not available" if not math.isfinite(w) else f"{w:.3g}" for w in widths)
    return Headline("passes" if gate.passed else "fails (this world cannot test the paper's claims)", best,
                    lc if lc == "not available" else f"{lc} LC points", gold)


def opening_table(head: Headline, power: pd.DataFrame | None, cost=None) -> pd.DataFrame:
    """The chapter's compact verdict table: can DPO beat SFT here (the validity gate), are its comparisons resolved
    (the median pooled LC half-width against :data:`TARGET_LC_HALF_WIDTH`), and does the whole reproduction fit the
    book's time target (``cost``: a :class:`dpolib.chapters.cost.ReproductionCost`, ``None`` when not measured)."""
    rows = [("Can DPO beat its SFT student in this world (the validity gate)?", head.best_arm,
             head.gate_verdict.split(" (")[0])]
    lc = power.loc[("LC points", "pooled"), "median"] if power is not None else math.nan
    rows.append((f"Are DPO − SFT differences resolved (median pooled LC half-width ≤ {TARGET_LC_HALF_WIDTH:g})?",
                 head.lc_half_width, "not available" if not math.isfinite(lc) else
                 "yes" if lc <= TARGET_LC_HALF_WIDTH else "no"))
    if cost is None:
        rows.append((f"Does the whole reproduction run in {TARGET_REPRODUCTION_MINUTES:g} minutes on 2 cores?",
                     "not measured", "not available"))
    else:
        rows.append((f"Does the whole reproduction run in {TARGET_REPRODUCTION_MINUTES:g} minutes on 2 cores?",
                     f"{cost.wall_seconds / 60:.1f} minutes", "yes" if cost.within_target else "no"))
    return pd.DataFrame(rows, columns=["question", "measured", "verdict"]).set_index("question")
