"""Jobs with dependencies on a pool of worker processes: the CPU world's builds and grids without idle barriers.

Building a world and running its grids is a graph of jobs: a world seed's data needs its
models, the learning-rate rule needs world 0's data, Appendix E's runs need RQ1's best
policy. Run stage by stage, every stage ends with workers idle while the last job of the
stage finishes (on 2 workers, about half a job per stage). :func:`run_jobs` instead starts
each job as soon as its dependencies are done, on ``workers`` processes of one torch thread
each; of the ready jobs, the one with the longest chain of expected cost still behind it
(its own cost plus its costliest path of dependents, the critical path) starts first.

Jobs are independent processes writing to caches and records by atomic renames, so the
result does not depend on the order in which they ran; ``workers=1`` runs them in the
same priority order in this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Job", "run_jobs", "critical_path"]


@dataclass(frozen=True)
class Job:
    """One unit of work.

    Attributes:
        name: unique name (dependencies refer to it).
        fn: a module-level function (workers pickle it) called as ``fn(*args, **kwargs)``.
        args: positional arguments.
        kwargs: keyword arguments.
        deps: names of the jobs that must finish first.
        cost: the expected cost (any unit); it sets the priority (see :func:`run_jobs`).
    """

    name: str
    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    deps: frozenset = frozenset()
    cost: float = 1.0


def _check(jobs: list[Job]) -> dict[str, Job]:
    by_name: dict[str, Job] = {}
    for job in jobs:
        if job.name in by_name:
            raise ValueError(f"two jobs are named {job.name!r}")
        by_name[job.name] = job
    for job in jobs:
        missing = set(job.deps) - set(by_name)
        if missing:
            raise ValueError(f"job {job.name!r} depends on unknown jobs {sorted(missing)}")
    done: set[str] = set()
    left = dict(by_name)
    while left:  # a graph with a cycle never empties
        ready = [n for n, j in left.items() if set(j.deps) <= done]
        if not ready:
            raise ValueError(f"the jobs {sorted(left)} depend on each other in a cycle")
        done.update(ready)
        for n in ready:
            del left[n]
    return by_name


def critical_path(jobs: list[Job]) -> dict[str, float]:
    """Each job's cost plus the costliest chain of jobs that depend on it (its upward rank)."""
    by_name = {j.name: j for j in jobs}
    dependents: dict[str, list[str]] = {n: [] for n in by_name}
    for j in jobs:
        for d in j.deps:
            dependents[d].append(j.name)
    rank: dict[str, float] = {}

    def visit(name: str) -> float:
        if name not in rank:
            rank[name] = by_name[name].cost + max((visit(d) for d in dependents[name]), default=0.0)
        return rank[name]

    for name in by_name:
        visit(name)
    return rank


def _ready(by_name: dict[str, Job], done: set[str], started: set[str], rank: dict[str, float]) -> list[Job]:
    ready = [j for n, j in by_name.items() if n not in started and set(j.deps) <= done]
    return sorted(ready, key=lambda j: (-rank[j.name], j.name))


def run_jobs(jobs: list[Job], workers: int = 1,
             on_done: Callable[[Job, Any, float], Any] | None = None) -> dict[str, Any]:
    """Run ``jobs`` respecting their dependencies; return ``{name: result}``.

    Args:
        jobs: the jobs (unique names; dependencies among them, no cycle).
        workers: processes (``spawn``); 1 runs everything here, in the same order of priority.
        on_done: called with each job, its result and its seconds (start to finish) as it finishes, in this
            process.

    Raises:
        ValueError: on duplicate names, unknown dependencies or a cycle (before anything runs).
        Exception: the first failing job's exception, once the running jobs have finished.
    """
    by_name = _check(list(jobs))
    rank = critical_path(list(by_name.values()))
    done: set[str] = set()
    started: set[str] = set()
    results: dict[str, Any] = {}
    if workers <= 1 or len(by_name) <= 1:
        while len(done) < len(by_name):
            job = _ready(by_name, done, started, rank)[0]
            started.add(job.name)
            t = time.perf_counter()
            results[job.name] = job.fn(*job.args, **job.kwargs)
            done.add(job.name)
            if on_done:
                on_done(job, results[job.name], time.perf_counter() - t)
        return results

    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(min(workers, len(by_name)), mp_context=mp.get_context("spawn")) as pool:
        running: dict = {}
        while len(done) < len(by_name):
            for job in _ready(by_name, done, started, rank)[: max(0, workers - len(running))]:
                started.add(job.name)
                running[pool.submit(job.fn, *job.args, **job.kwargs)] = (job, time.perf_counter())
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                job, t = running.pop(future)
                results[job.name] = future.result()  # a failure stops the schedule here
                done.add(job.name)
                if on_done:
                    on_done(job, results[job.name], time.perf_counter() - t)
    return results
