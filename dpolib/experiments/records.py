"""Result records: the typed view every chapter reads, and the one place records are written, found and selected.

A record is the JSON file ``results/lab/<profile>/<key>.json`` that one run writes
(:func:`dpolib.experiments.runner.run`). :class:`Record` is its typed view:
``record.config`` is the :class:`~dpolib.experiments.config.RunConfig`,
``record.metrics`` the :class:`Metrics`, ``record.beta`` the β with ``inf`` for the
SFT row. Chapters read records through this module and never by string keys.

Selection rules live here once: :func:`best_record` (the best β of an arm) and
:func:`headline_arms` (the arms rerun at more seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import paths
from ..provenance import atomic_write_json, quarantine, read_json
from .config import GRIDS, RunConfig, sweep_grid
from .metrics import Metrics

__all__ = [
    "compact_curves",
    "CURVE_KEYS",
    "Metrics",
    "Record",
    "RecordError",
    "grid",
    "record_path",
    "read_record",
    "write_record",
    "set_aside",
    "load_records",
    "load_grid",
    "GridStatus",
    "grid_status",
    "STATUS_WORKERS",
    "replicates",
    "select",
    "best_record",
    "HEADLINE_SEEDS",
    "headline_arms",
]

#: Seeds of the headline comparisons (the ``seeds`` grid reruns the headline arms at the ones after 0).
HEADLINE_SEEDS = (0, 1, 2)


class RecordError(ValueError):
    """A record file that cannot be read as a record (bad JSON or a field missing): names the file and the fault."""

    def __init__(self, path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Record:
    """One run's record (typed view of the JSON file).

    Attributes:
        config: what ran. metrics: what it measured. curves: TRL's logged training curve (one dict per log step).
        provenance: commit, machine, library versions, wall times. key: the record key. label: a readable name.
        settings: the profile's settings that keyed it. reference_name: the reference's own name.
        path: the file it was read from (``None`` when built in memory).
    """

    config: RunConfig
    metrics: Metrics
    curves: tuple = ()
    provenance: dict = field(default_factory=dict)
    key: str = ""
    label: str = ""
    settings: dict = field(default_factory=dict)
    reference_name: str = ""
    path: Path | None = None

    # the config, one hop away
    @property
    def student(self) -> str:
        return self.config.student

    @property
    def objective(self) -> str:
        return self.config.objective

    @property
    def reference(self) -> str:
        return self.config.reference

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def profile(self) -> str:
        return self.config.profile

    @property
    def beta(self) -> float:
        """β, with ``inf`` for the SFT row."""
        return self.config.beta_value

    @property
    def is_sft(self) -> bool:
        return self.config.objective == "sft"

    @property
    def lc(self) -> float:
        """The LC win rate (%)."""
        return self.metrics.lc_win_rate

    @property
    def gold(self) -> float:
        return self.metrics.gold_score

    @property
    def degenerate(self) -> bool:
        return bool(self.metrics.degenerate)

    @property
    def wall_time_s(self) -> float:
        return float(self.provenance.get("wall_time_s", {}).get("total", math.nan))

    def matches(self, **match) -> bool:
        """True when every ``name=value`` equals this record's config field (``beta`` compares :attr:`beta`)."""
        for name, value in match.items():
            mine = self.beta if name == "beta" else getattr(self.config, name)
            if mine != value:
                return False
        return True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> "Record":
        """Validate and wrap a record dict; raises :class:`RecordError` naming ``path`` and the fault."""
        try:
            config = RunConfig(**data["config"])
            metrics = Metrics.from_dict(data["metrics"])
            return cls(config, metrics, tuple(data.get("curves", ())), dict(data.get("provenance", {})),
                       data.get("key", ""), data.get("label", config.label()), dict(data.get("profile", {})),
                       data.get("reference_name", ""), path)
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(path or "<record>", f"not a valid record ({type(err).__name__}: {err})") from err

    def to_dict(self) -> dict:
        """The JSON layout (the same keys the files have always had)."""
        return {
            "config": self.config.to_dict(),
            "key": self.key,
            "label": self.label,
            "profile": self.settings,
            "reference_name": self.reference_name,
            "metrics": self.metrics.to_dict(),
            "curves": list(self.curves),
            "provenance": self.provenance,
        }

    def with_config(self, **changes) -> "Record":
        """A copy with config fields changed (tests build synthetic evidence this way)."""
        return replace(self, config=replace(self.config, **changes))


#: The training-curve keys a record keeps (TRL's log names; what the chapters read).
CURVE_KEYS = ("step", "epoch", "learning_rate", "grad_norm", "loss", "logps/chosen", "logps/rejected",
              "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
#: At most this many curve rows are kept per record (records stay small; the chapters read trends, not steps).
MAX_CURVE_ROWS = 50


def compact_curves(curves, max_rows: int = MAX_CURVE_ROWS) -> list[dict]:
    """A run's per-step log rows: the first row as logged, the rest averaged over consecutive windows, at most
    ``max_rows`` rows in all.

    Each averaged row is the mean of its window's rows over :data:`CURVE_KEYS` (``step`` is the
    window's last step); every row is rounded to 5 significant digits; a log of ``max_rows`` rows or
    fewer is only filtered and rounded. The first row stays exact because it is a check of its own:
    at step 1 the policy is its reference, so the loss is log 2 (Eq. 5 at a zero margin). Window means
    keep every later step's information in the averages (a late-training mean accuracy is the same),
    at an 8th of the size for a 375-step run.
    """
    rows = [{k: float(r[k]) for k in CURVE_KEYS if k in r and r[k] is not None} for r in curves]
    if not rows:
        return []
    first, rest = rows[:1], rows[1:]
    size = 1 if len(rows) <= max_rows else -(-len(rest) // max(max_rows - 1, 1))  # ceil
    windows = [first] + [rest[i : i + size] for i in range(0, len(rest), size)]
    out = []
    for window in windows:
        keys = [k for k in CURVE_KEYS if all(k in r for r in window)]
        row = {k: float(f"{sum(r[k] for r in window) / len(window):.5g}") for k in keys}
        if "step" in row:
            row["step"] = int(window[-1]["step"])
        out.append(row)
    return out


# --------------------------------------------------------------------------- grids


def grid(name: str, profile: str, seeds: Iterable[int] = (0,), root: Path | None = None) -> list[RunConfig]:
    """The runs of any named grid: a β sweep (:func:`~dpolib.experiments.config.sweep_grid`), or ``seeds``,
    the :func:`headline_arms` rerun at ``seeds`` (which reads the seed-0 sweeps' records under ``root``)."""
    if name == "seeds":
        arms = headline_arms(profile, root)
        return [replace(c, seed=seed) for seed in seeds for c in arms]
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; choose one of {', '.join(GRIDS)}")
    return sweep_grid(name, profile, seeds)


# --------------------------------------------------------------------------- files


def record_path(config: RunConfig, root: Path | None = None, settings=None, suffix: str = "") -> Path:
    """``<root>/<profile>/<key><suffix>.json`` (root: :func:`dpolib.paths.results_root`)."""
    return Path(root or paths.results_root()) / config.profile / f"{config.key(settings)}{suffix}.json"


def read_record(path: Path) -> Record:
    """Read and validate one record file; raises :class:`RecordError` naming the file when it is damaged.

    Damaged means: not JSON, a failed checksum (records written since the checksum was added
    carry one), or a field of the schema missing (:meth:`Record.from_dict`).
    """
    path = Path(path)
    try:
        data = read_json(path)
    except ValueError as err:  # CorruptFileError and JSONDecodeError are ValueErrors
        raise RecordError(path, f"not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise RecordError(path, f"not valid JSON (a record is an object, got {type(data).__name__})")
    return Record.from_dict(data, path)


def write_record(record: Record, path: Path) -> Path:
    """Write atomically (temporary file, then rename) with a content checksum: a reader sees all or nothing."""
    return atomic_write_json(Path(path), record.to_dict())


def set_aside(path: Path, error: RecordError) -> Path:
    """Move a damaged record to ``<name>.corrupt`` (warning once, naming it) so that it is recomputed."""
    return quarantine(path, error.reason)


def load_records(configs: Iterable[RunConfig], root: Path | None = None, missing: str = "skip",
                 settings=None, suffix: str = "", damaged: list | None = None) -> list[Record]:
    """The records of ``configs`` that exist, in order (``missing="raise"`` insists on all).

    ``settings`` keys the records when they were made under other profile settings than the
    named profile's (tests that run the gpu path on local models); ``suffix`` selects records of
    another judge (``"-alpaca_eval"``). A damaged record raises :class:`RecordError` naming it,
    unless a list is passed as ``damaged``: the error is then appended there and the record skipped
    (``show`` reports them and goes on)."""
    out = []
    for config in configs:
        path = record_path(config, root, settings, suffix)
        if path.exists():
            try:
                out.append(read_record(path))
            except RecordError as err:
                if damaged is None:
                    raise
                damaged.append(err)
        elif missing == "raise":
            raise FileNotFoundError(
                f"no record for {config.label()} at {path}; run it with "
                f"python -m dpolib.experiments run --grid <grid> --profile {config.profile}"
            )
    return out


def load_grid(name: str, profile: str, seeds: Iterable[int] = (0,), root: Path | None = None,
              complete: bool = False) -> list[Record]:
    """The committed records of a grid, never training (``complete=True``: ``[]`` unless every run has one)."""
    configs = grid(name, profile, seeds, root)
    records = load_records(configs, root)
    return [] if complete and len(records) < len(configs) else records


#: Worker processes the time estimate of a cpu-world grid assumes (``run --workers 2``, a 2-core Colab runtime).
STATUS_WORKERS = 2


@dataclass(frozen=True)
class GridStatus:
    """Which records of a grid exist, and what computing the missing ones takes (:func:`grid_status`).

    Attributes:
        name: the grid's name.
        profile: its profile.
        seeds: its seeds.
        total: its runs.
        present: the runs that have a record.
        missing: the configurations without a record, in grid order.
        estimated_minutes: about how long computing ``missing`` takes (``None``: nothing to time it by).
        basis: how ``estimated_minutes`` was obtained (shown in :attr:`message`).
    """

    name: str
    profile: str
    seeds: tuple
    total: int
    present: int
    missing: tuple = ()
    estimated_minutes: float | None = None
    basis: str = ""

    @property
    def command(self) -> str:
        """The command that computes the missing records (records already written are read back)."""
        seeds = "" if self.seeds == (0,) else " --seeds " + " ".join(map(str, self.seeds))
        workers = "" if self.profile == "gpu" else f" --workers {STATUS_WORKERS}"
        return f"python -m dpolib.experiments run --grid {self.name} --profile {self.profile}{seeds}{workers}"

    @property
    def message(self) -> str:
        """What is missing, the command that computes it and about how long that takes ("" when complete)."""
        if not self.missing:
            return ""
        labels = ", ".join(c.label() for c in self.missing[:3])
        more = f" and {len(self.missing) - 3} more" if len(self.missing) > 3 else ""
        took = ("about " + (f"{self.estimated_minutes / 60:.1f} hours" if self.estimated_minutes >= 90
                            else f"{max(self.estimated_minutes, 1):.0f} min")
                if self.estimated_minutes is not None else "an unknown time")
        return (f"Missing records: {len(self.missing)} of the {self.total} runs of grid {self.name!r} at profile "
                f"{self.profile!r} ({labels}{more}).\nCompute them with: {self.command}\n"
                f"That takes {took} ({self.basis}).")


def _gpu_kind() -> str:
    """The ``ASSUMED_TFLOPS`` entry of this machine's GPU, else the free Colab GPU (``"T4"``)."""
    import torch

    from ..hub.profile import ASSUMED_TFLOPS

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return next((kind for kind in ASSUMED_TFLOPS if kind in name), "T4")


def grid_status(name: str, profile: str, seeds: Iterable[int] = (0,), root: Path | None = None,
                gpu: str | None = None) -> GridStatus:
    """Which records of a grid are missing and about how long computing them takes; reads only.

    The time: at ``gpu``, :func:`dpolib.hub.profile.estimate` per missing DPO run on ``gpu`` (default:
    this machine's GPU kind, else a T4), an ESTIMATE from assumed throughput covering DPO training only.
    In the CPU world, the mean measured ``wall_time_s`` of this profile's committed records of the grid
    (else of its other grids) times the missing runs, over :data:`STATUS_WORKERS` workers.
    """
    seeds = tuple(seeds)
    configs = grid(name, profile, seeds, root)
    missing = tuple(c for c in configs if not record_path(c, root).exists())
    minutes, basis = None, "no committed record of this profile to time it by"
    if missing and profile == "gpu":
        from ..hub.profile import estimate

        kind = gpu or _gpu_kind()
        per_run = estimate(gpu=kind)["estimated_minutes"]
        n_dpo = sum(c.objective != "sft" for c in missing)
        minutes = n_dpo * per_run
        basis = (f"an ESTIMATE from assumed {kind} throughput, not a measurement: {n_dpo} DPO runs x about "
                 f"{per_run:.0f} min of training; building the SFT student and evaluating each model come on top")
    elif missing:
        for names in ((name,), tuple(g for g in GRIDS if g not in (name, "seeds"))):
            times = [r.wall_time_s for g in names for r in load_grid(g, profile, seeds, root)]
            times = [t for t in times if math.isfinite(t)]
            if times:
                mean = sum(times) / len(times)
                minutes = len(missing) * mean / 60 / STATUS_WORKERS
                basis = (f"measured: the committed {profile} records of grid{'s' if len(names) > 1 else ''} "
                         f"{', '.join(names)} took {mean:.0f} s per run on average; {len(missing)} runs over "
                         f"{STATUS_WORKERS} workers; building the CPU world once comes on top if it is not cached")
                break
    return GridStatus(name, profile, seeds, len(configs), len(configs) - len(missing), missing, minutes, basis)


def replicates(config: RunConfig, seeds: Iterable[int] = HEADLINE_SEEDS, root: Path | None = None) -> list[Record]:
    """The records of ``config`` at each of ``seeds`` that exist (one arm across seeds)."""
    return load_records([replace(config, seed=s) for s in seeds], root=root)


def select(records: Iterable[Record], **match) -> list[Record]:
    """The records whose config matches every ``name=value`` (see :meth:`Record.matches`)."""
    return [r for r in records if r.matches(**match)]


def best_record(records: Iterable[Record], metric: str = "lc_win_rate", **match) -> Record | None:
    """The best β of an arm: the matching record with the highest ``metric``, degenerate runs excluded.

    The one best-β rule of the book (the paper picks the best β by AlpacaEval 2 LC and
    marks degenerate models, Table 1). ``None`` when every matching run degenerated.
    """
    pool = [r for r in select(records, **match) if not r.degenerate]
    return max(pool, key=lambda r: getattr(r.metrics, metric), default=None)


def headline_arms(profile: str, root: Path | None = None) -> list[RunConfig]:
    """The seed-0 configurations of the headline comparisons, chosen from the seed-0 grids.

    Per student: the SFT model, DPO at β = 0.1 and at its best β (RQ1); DPO with a self, a
    compatible and an incompatible reference, each at its best β (RQ3); for the main
    student, the probability and likelihood objectives at their best β (RQ2) and Appendix
    E's best run. "Best" is :func:`best_record` on seed 0 (an arm whose runs all degenerate
    is left out). Raises ``FileNotFoundError`` if a seed-0 grid is missing.
    """
    arms: list[RunConfig] = []

    def best(records, **match):
        rec = best_record(records, **match)
        return [] if rec is None else [rec.config]

    rq1 = load_records(grid("rq1", profile), root, missing="raise")
    rq3 = load_records(grid("rq3", profile), root, missing="raise")
    for student in dict.fromkeys(r.student for r in rq1):
        arms.append(RunConfig(profile, student, "sft", "none", None))
        arms.append(RunConfig(profile, student, "dpo", "self", 0.1))
        arms += best(rq1, student=student, objective="dpo")
        for ref in ("self", "compatible", "incompatible"):
            arms += best(rq3, student=student, reference=ref)
    rq2 = load_records(grid("rq2", profile), root, missing="raise")
    for objective in ("probability", "likelihood"):
        arms += best(rq2, objective=objective)
    arms += best(load_records(grid("appendix-e", profile), root, missing="raise"))
    return list(dict.fromkeys(arms))
