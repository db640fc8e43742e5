"""The whole CPU-world reproduction as one schedule of jobs: every world seed, every grid, no idle barriers.

``python -m dpolib.experiments reproduce --profile cpu --workers 2`` (``tools/reproduce_cpu.sh``)
runs :data:`PLAN`: the world of every world seed (models, preference data with the
on-policy controls, the learning-rate rule), then RQ1 and the controls in every world,
RQ2, RQ3 and Appendix E in world 0, and the headline arms in the other worlds. Every
piece is a :class:`~dpolib.experiments.schedule.Job` with its dependencies (a world's runs
need its data and the learning rates; Appendix E needs world 0's RQ1 policies; the
headline arms are chosen from world 0's grids once they are done), run by
:func:`~dpolib.experiments.schedule.run_jobs`, so a worker starts the next ready job
instead of waiting for the end of a stage.

Each grid's runs of one student, world seed, loss and kind of pairs train as one sweep, exactly
as ``run --grid ... --engine sweep`` trains them (the members of a sweep, and so every record,
are the same as a stage-by-stage run's); a configuration two grids share is run once, in the
first grid of the plan.

The world report records the whole schedule's wall time under ``reproduction_seconds``,
and the seconds its jobs took, summed per stage, under ``reproduction_job_seconds``
(on ``w`` workers the stages overlap, so their sum is about ``w`` times the wall time).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from .config import RunConfig, students
from .cpu import world_jobs
from .schedule import Job, run_jobs

__all__ = ["PLAN", "grid_jobs", "reproduce"]

#: The reproduction's grids in the book's order, each as ``(grid, which world seeds)``, where
#: "all" means the profile's seeds, "first" world 0 and "rest" the others.
PLAN = (("rq1", "all"), ("controls", "all"), ("rq2", "first"), ("rq3", "first"), ("appendix-e", "first"),
        ("seeds", "rest"))
#: Expected seconds of each kind of run job on the cpu profile (they only order the ready jobs; the world's jobs
#: carry :func:`~dpolib.experiments.cpu.world_jobs`' own).
_COST = {"report": 40.0, "sft": 8.0, "sweep": 10.0, "member": 14.0}


def grid_jobs(plan: list[tuple[str, list[int]]], profile: str, root: Path | None = None,
              world_deps: bool = True) -> tuple[list[Job], dict[str, list[str]]]:
    """The runs of ``plan`` (``(grid, seeds)`` pairs) as jobs: one per SFT row, one per sweep of a grid
    (:func:`~dpolib.experiments.runner.grid_units`); records that exist are skipped, a configuration in two grids
    runs once (its policy kept if either grid keeps it). A run depends on its world's data and its student's
    learning rate (``world_deps=False``: already built), Appendix E's on RQ1's runs of its student and world.

    Returns the jobs and, per grid, the names of the jobs that run its configurations.
    """
    from .records import grid, record_path
    from .runner import KEEP_POLICY_GRIDS, _readable, _run_unit, backend_for, grid_units

    backend = backend_for(profile)
    seen: set[Path] = set()
    keep: set[Path] = set()
    grid_of: dict[Path, set[str]] = defaultdict(set)
    units: list[list[RunConfig]] = []
    path_of: dict[RunConfig, Path] = {}
    for name, seeds in plan:
        todo = []
        for c in grid(name, profile, seeds, root):
            path = record_path(c, root, backend.settings, backend.record_suffix)
            grid_of[path].add(name)
            if name in KEEP_POLICY_GRIDS:
                keep.add(path)
            if path not in seen and not _readable(path):
                todo.append(c)
                path_of[c] = path
            seen.add(path)
        units += grid_units(todo)  # a grid's own sweeps, as run_grid trains them: the records do not change
    jobs: list[Job] = []
    by_grid: dict[str, list[str]] = defaultdict(list)
    names = []
    for unit in units:
        first = unit[0]
        kind = "sft" if first.objective == "sft" else "from-rq1-best" if first.reference == "rq1-best" else "sweep"
        base = f"run/{first.seed}/{first.student}/{kind}/{first.pairs}/{first.loss}"
        names.append(base + ("" if base not in names else f"/{sum(n.startswith(base) for n in names)}"))
        for c in unit:
            for g in grid_of[path_of[c]]:
                by_grid[g].append(names[-1])
    for name, unit in zip(names, units):
        first = unit[0]
        deps = set()
        if world_deps:
            deps = {f"data/{first.seed}"} | ({f"rate/{first.student}"} if first.objective != "sft" else set())
        if first.reference == "rq1-best":  # RQ1's runs of this student and world, and its SFT row
            deps |= {j for j in by_grid.get("rq1", []) if f"/{first.seed}/{first.student}/" in j and j != name}
        cost = _COST["sft"] if first.objective == "sft" else _COST["sweep"] + _COST["member"] * len(unit)
        unit_keep = any(path_of[c] in keep for c in unit)
        jobs.append(Job(name, _run_unit, (unit, "sweep"), dict(root=root, keep_policy=unit_keep),
                        deps=frozenset(deps), cost=cost))
    return jobs, dict(by_grid)


def _write_reports(profile) -> None:
    """The world report and the compatibility record (every world seed's models and data are built)."""
    from ..world.compatibility import write_compatibility
    from ..world.report import write_world_report

    write_world_report(profile)
    write_compatibility(profile)


def reproduce(profile: str = "cpu", workers: int = 2, root: Path | None = None) -> dict:
    """Run :data:`PLAN` for ``profile`` on ``workers`` processes; write the world report, the compatibility
    record and the learning-rate choices; return ``{"wall_seconds", "job_seconds"}``.

    Two schedules: the world and every grid but ``seeds``; then the headline arms of the other world
    seeds, which are chosen from world 0's records and so known only once the first has run.
    """
    from ..world.profiles import get_profile
    from ..world.report import record_reproduction
    from .cpu import CpuBackend
    from .lr_rule import write_lr_choices

    p = get_profile(profile)
    seeds = list(p.seeds)
    which = {"all": seeds, "first": seeds[:1], "rest": seeds[1:]}
    job_seconds: dict[str, float] = defaultdict(float)

    def on_done(job: Job, result, seconds: float) -> None:
        job_seconds[job.name.split("/")[0]] += seconds

    t0 = time.perf_counter()
    jobs = world_jobs(p, seeds, on_policy=True)
    jobs.append(Job("report/world", _write_reports, (p,), deps=frozenset(f"data/{s}" for s in seeds),
                    cost=_COST["report"]))
    runs, _ = grid_jobs([(g, which[s]) for g, s in PLAN if g != "seeds" and which[s]], profile, root)
    run_jobs(jobs + runs, workers, on_done=on_done)
    later = [(g, which[s]) for g, s in PLAN if g == "seeds" and which[s]]
    if later:
        run_jobs(grid_jobs(later, profile, root, world_deps=False)[0], workers, on_done=on_done)
    write_lr_choices(CpuBackend(p), students(profile))
    wall = time.perf_counter() - t0
    record_reproduction(profile, wall, dict(job_seconds), workers)
    return {"wall_seconds": wall, "job_seconds": dict(job_seconds)}
