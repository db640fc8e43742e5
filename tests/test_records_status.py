"""records.grid_status: with records absent, a chapter says what is missing, how to compute it and how long it takes."""

import pytest
from record_factory import make_record

from dpolib.experiments import records as R
from dpolib.hub.profile import estimate


def _write(root, config, seconds):
    """A committed-looking record of ``config`` that took ``seconds``."""
    rec = make_record(config.student, config.objective, config.reference, config.beta, config.seed, config.profile,
                      provenance={"wall_time_s": {"total": seconds}})
    R.write_record(rec, R.record_path(config, root))


def test_complete_grid_has_no_message(tmp_path):
    configs = R.grid("rq1", "smoke")
    for c in configs:
        _write(tmp_path, c, 10.0)
    status = R.grid_status("rq1", "smoke", root=tmp_path)
    assert (status.total, status.present, status.missing) == (len(configs), len(configs), ())
    assert status.message == ""


def test_cpu_message_names_the_missing_runs_the_command_and_the_measured_time(tmp_path):
    configs = R.grid("rq1", "cpu")
    present, missing = configs[:4], configs[4:]
    for c, seconds in zip(present, (60.0, 120.0, 60.0, 120.0)):  # mean 90 s per run
        _write(tmp_path, c, seconds)
    status = R.grid_status("rq1", "cpu", root=tmp_path)
    assert status.present == 4 and status.missing == tuple(missing)
    expected = len(missing) * 90 / 60 / R.STATUS_WORKERS
    assert status.estimated_minutes == pytest.approx(expected)
    msg = status.message
    assert f"Missing records: {len(missing)} of the {len(configs)} runs of grid 'rq1' at profile 'cpu'" in msg
    assert missing[0].label() in msg and f"and {len(missing) - 3} more" in msg
    assert "python -m dpolib.experiments run --grid rq1 --profile cpu --workers 2" in msg
    assert f"about {expected:.0f} min" in msg
    assert "measured" in msg and "90 s per run" in msg and "2 workers" in msg


def test_cpu_time_falls_back_to_the_profiles_other_grids_then_says_unknown(tmp_path):
    status = R.grid_status("rq2", "cpu", root=tmp_path)
    assert status.present == 0 and status.estimated_minutes is None
    assert "an unknown time" in status.message and "no committed record" in status.message
    # a compatible-reference run: in rq3 only (rq3's self-reference runs are rq1's, hence rq2's too)
    _write(tmp_path, next(c for c in R.grid("rq3", "cpu") if c.reference == "compatible"), 30.0)
    status = R.grid_status("rq2", "cpu", root=tmp_path)
    assert status.estimated_minutes == pytest.approx(status.total * 30 / 60 / R.STATUS_WORKERS)
    assert "grids rq1, rq3, appendix-e" in status.message


def test_gpu_message_is_a_labelled_estimate_of_dpo_training(tmp_path):
    status = R.grid_status("rq1", "gpu", root=tmp_path, gpu="T4")
    n_dpo = sum(c.objective == "dpo" for c in status.missing)
    assert status.present == 0 and n_dpo > 0
    assert status.estimated_minutes == pytest.approx(n_dpo * estimate(gpu="T4")["estimated_minutes"])
    msg = status.message
    assert "ESTIMATE" in msg and "T4" in msg and "not a measurement" in msg
    assert "python -m dpolib.experiments run --grid rq1 --profile gpu\n" in msg  # serial: no --workers
    assert "hours" in msg


def test_seeds_other_than_zero_are_in_the_command(tmp_path):
    status = R.grid_status("rq1", "smoke", seeds=(1, 2), root=tmp_path)
    assert status.command.endswith("--grid rq1 --profile smoke --seeds 1 2 --workers 2")
    assert {c.seed for c in status.missing} == {1, 2}
