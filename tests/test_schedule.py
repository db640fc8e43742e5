"""Jobs with dependencies (dpolib.experiments.schedule) and the reproduction's plan as jobs (issue 15)."""

import time

import pytest

from dpolib.experiments import reproduce as R
from dpolib.experiments.schedule import Job, critical_path, run_jobs


def _stamp(name):
    return name, time.time()


def _fail(name):
    raise RuntimeError(f"job {name} failed")


def _graph():
    return [
        Job("a", _stamp, ("a",), cost=1), Job("b", _stamp, ("b",), cost=5),
        Job("c", _stamp, ("c",), deps=frozenset({"a"}), cost=10), Job("d", _stamp, ("d",), deps=frozenset({"b", "c"})),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_runs_after_its_dependencies(workers):
    seen = []
    results = run_jobs(_graph(), workers, on_done=lambda job, result, seconds: seen.append((job.name, seconds)))
    assert set(results) == {"a", "b", "c", "d"}
    finished = [name for name, _ in seen]
    for job in _graph():
        for dep in job.deps:
            assert finished.index(dep) < finished.index(job.name)
        assert results[job.name][0] == job.name
    assert all(seconds >= 0 for _, seconds in seen)


def test_the_longest_chain_starts_first():
    # a is cheap but c (cost 10) waits on it: a's chain (1 + 10 + 1) outranks b (5 + 1)
    assert critical_path(_graph()) == {"a": 12.0, "b": 6.0, "c": 11.0, "d": 1.0}
    order = []
    run_jobs(_graph(), 1, on_done=lambda job, result, seconds: order.append(job.name))
    assert order == ["a", "c", "b", "d"]


@pytest.mark.parametrize("jobs, message", [
    ([Job("a", _stamp, ("a",)), Job("a", _stamp, ("a",))], "two jobs are named 'a'"),
    ([Job("a", _stamp, ("a",), deps=frozenset({"z"}))], "unknown jobs"),
    ([Job("a", _stamp, ("a",), deps=frozenset({"b"})), Job("b", _stamp, ("b",), deps=frozenset({"a"}))], "cycle"),
])
def test_bad_graphs_are_refused_before_anything_runs(jobs, message):
    with pytest.raises(ValueError, match=message):
        run_jobs(jobs, 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_stops_the_schedule(workers):
    jobs = [Job("ok", _stamp, ("ok",)), Job("bad", _fail, ("bad",), cost=9),
            Job("after", _stamp, ("after",), deps=frozenset({"bad"}))]
    with pytest.raises(RuntimeError, match="job bad failed"):
        run_jobs(jobs, workers)


def test_the_plan_as_jobs(tmp_path):
    """World 0's grids of the smoke profile: one job per sweep of a grid, Appendix E after RQ1, no config twice."""
    from dpolib.experiments.cpu import world_jobs
    from dpolib.experiments.records import grid
    from dpolib.world.profiles import get_profile

    plan = [(g, [0]) for g, which in R.PLAN if which != "rest"]
    jobs, by_grid = R.grid_jobs(plan, "smoke", tmp_path)
    names = [j.name for j in jobs]
    assert len(names) == len(set(names))
    configs = [c for j in jobs for c in j.args[0]]
    assert len(configs) == len(set(configs))  # a configuration in two grids runs once
    wanted = {c for g, seeds in plan for c in grid(g, "smoke", seeds, tmp_path)}
    assert set(configs) == wanted
    later = [j for j in jobs if any(c.reference == "rq1-best" for c in j.args[0])]
    assert later
    for job in later:
        student = job.args[0][0].student
        rq1 = {n for n in by_grid["rq1"] if f"/0/{student}/" in n}
        assert rq1 and rq1 <= job.deps
    for job in jobs:
        assert "data/0" in job.deps
        members = job.args[0]
        assert len({(c.student, c.seed, c.loss, c.pairs) for c in members}) == 1
    world = world_jobs(get_profile("smoke"), [0])
    run_jobs_names = {j.name for j in world} | set(names)
    assert all(set(j.deps) <= run_jobs_names for j in jobs)  # the whole first schedule is a valid graph
