"""What the CPU reproduction costs: its wall time, each stage's seconds, the machines and the size of ``results/``.

Read by the controlled-world chapter (``notebooks/controlled_world.md``, "What the reproduction
costs") from the world report that :mod:`dpolib.experiments.reproduce` writes, from the records'
provenance and from the results folder itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..experiments.records import Record

__all__ = ["TARGET_REPRODUCTION_MINUTES", "JOB_STAGES", "ReproductionCost", "reproduction_cost", "cost_table",
           "ResultsSize", "results_size", "machines"]


def cost_table(report: Mapping) -> pd.DataFrame:
    """Wall time of each stage of the whole reproduction (``reproduction_seconds``) and its total.

    Index ``stage``; columns ``seconds``, ``hours``, ``share``. Raises ``ValueError`` when the report has no
    ``reproduction_seconds`` (tools/reproduce_cpu.sh adds each stage's time as it finishes).
    """
    stages = report.get("reproduction_seconds")
    if not stages:
        raise ValueError("the world report has no reproduction_seconds: tools/reproduce_cpu.sh has not run "
                         "(or not finished a stage) for this profile")
    table = pd.DataFrame({"seconds": pd.Series(stages, dtype=float)}).rename_axis("stage")
    table.loc["total"] = total = float(table["seconds"].sum())
    table["hours"], table["share"] = table["seconds"] / 3600.0, table["seconds"] / total if total > 0 else math.nan
    return table


#: The book's target for the whole cpu reproduction from scratch on 2 cores (issue 15), in minutes.
TARGET_REPRODUCTION_MINUTES = 30.0

#: What each kind of job of the reproduction's schedule does (:mod:`dpolib.experiments.reproduce`).
JOB_STAGES = {
    "models": "models: pretraining, SFT, siblings, large models (every world seed)",
    "data": "preference data and on-policy control data (every world seed)",
    "rate": "learning-rate rule (world 0)",
    "report": "world report and compatibility",
    "run": "grid runs: training and evaluation",
}


@dataclass(frozen=True)
class ReproductionCost:
    """What the last whole reproduction cost, as the world report records it.

    Attributes:
        wall_seconds: the whole reproduction's wall time.
        workers: worker processes (``None`` when the report does not say).
        scheduled: ``True`` when it ran as one schedule (stages overlap; ``stages`` holds seconds of work),
            ``False`` for a stage-by-stage run (``stages`` holds each stage's wall time).
        stages: index ``stage``; columns ``seconds`` and ``share`` (of the stages' sum).
    """

    wall_seconds: float
    workers: int | None
    scheduled: bool
    stages: pd.DataFrame

    @property
    def within_target(self) -> bool:
        return self.wall_seconds <= 60.0 * TARGET_REPRODUCTION_MINUTES


def reproduction_cost(report: Mapping) -> ReproductionCost:
    """The world report's reproduction cost: the one-schedule form (``reproduction_job_seconds``) or the older
    stage-by-stage form (``reproduction_seconds`` per stage). Raises ``ValueError`` when neither is there."""
    jobs = report.get("reproduction_job_seconds")
    if jobs:
        stages = pd.DataFrame({"seconds": pd.Series({JOB_STAGES.get(k, k): v for k, v in jobs.items()},
                                                    dtype=float)}).rename_axis("stage")
        stages["share"] = stages["seconds"] / stages["seconds"].sum()
        return ReproductionCost(float(report["reproduction_seconds_total"]), report.get("reproduction_workers"),
                                True, stages)
    table = cost_table(report)
    return ReproductionCost(float(table.loc["total", "seconds"]), None, False, table.drop(index="total")[["seconds", "share"]])


@dataclass(frozen=True)
class ResultsSize:
    """The size of a results folder, measured by walking it.

    Attributes:
        root: the folder.
        n_files: the files in it (at any depth).
        n_bytes: their total size.
        by_folder: ``(sub-folder path relative to root, files, bytes)`` per folder that holds files directly.
    """

    root: Path
    n_files: int
    n_bytes: int
    by_folder: tuple

    def table(self) -> pd.DataFrame:
        """``by_folder`` as a table (index ``folder``; columns ``files``, ``MB``), largest first."""
        table = pd.DataFrame([(f, n, b / 1e6) for f, n, b in self.by_folder], columns=["folder", "files", "MB"])
        return table.set_index("folder").sort_values("MB", ascending=False)


def results_size(root: Path) -> ResultsSize:
    """Walk ``root`` with :mod:`pathlib` and count its files and bytes; ``FileNotFoundError`` when it is absent."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no results folder at {root}")
    folders: dict[str, list[int]] = {}
    for p in (p for p in root.rglob("*") if p.is_file()):
        counts = folders.setdefault(str(p.parent.relative_to(root)), [0, 0])
        counts[0], counts[1] = counts[0] + 1, counts[1] + p.stat().st_size
    by_folder = tuple((name, n, size) for name, (n, size) in sorted(folders.items()))
    return ResultsSize(root, sum(n for _, n, _ in by_folder), sum(s for _, _, s in by_folder), by_folder)


def machines(records: Iterable[Record]) -> tuple[str, ...]:
    """The distinct machines (``provenance["device"]``) that wrote ``records``, in order of first appearance."""
    return tuple(dict.fromkeys(str(r.provenance.get("device", "unknown")) for r in records))


