"""The Colab path, emulated offline (issue 17): every ``notebooks/*.ipynb`` of ``HEAD`` run as a Colab reader runs it.

``tools/colab_emulation.py`` makes a fresh Python 3.12 environment outside the checkout, points the set-up
cell at this repository (``DPOLIB_BOOK_SOURCE`` / ``DPOLIB_BOOK_REF``) and executes every chapter with nbclient
from a scratch folder on a CPU runtime. Slow (a fresh environment with torch and every chapter: about
10 minutes on 2 cores; the times are in ``results/benchmarks/colab_emulation.json``). Run it before each release::

    tools/test.sh -m slow tests/test_colab_emulation.py

It runs the *committed* chapters (``HEAD``; ``DPOLIB_EMULATION_REF`` picks another commit).
"""

import os
import sys
from pathlib import Path

import pytest

from dpolib.chapters import practice as P
from dpolib.chapters import rq1, rq3
from dpolib.chapters.common import student_label
from dpolib.experiments import records as R

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_emulation  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    from dpolib import paths

    if not R.load_grid("rq1", "cpu") or not paths.world_report_path("cpu").exists():
        pytest.skip("no committed records or world report of the live cpu profile, which the chapters read at the "
                    "cpu profile (world-3's are archived under results/lab/archive/world-3; World 4's are not "
                    "committed yet)")
    try:
        python = colab_emulation.find_python("3.12")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return colab_emulation.emulate(os.environ.get("DPOLIB_EMULATION_REF", "HEAD"), python,
                                   tmp_path_factory.mktemp("colab"))


def _out(emulated, name):
    return emulated["notebooks"][name]


def test_every_notebook_runs_on_python_3_12_at_the_cpu_profile(emulated):
    assert emulated["runtime"]["python"].startswith("3.12.")
    assert set(emulated["notebooks"]) == {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    errors = {name: nb["error"] for name, nb in emulated["notebooks"].items() if nb["error"]}
    assert not errors, errors
    first = next(iter(emulated["notebooks"].values()))["stdout"]
    assert emulated["fetched"] and "Fetching " in first  # the set-up cell fetched the repository at the commit
    for name, nb in emulated["notebooks"].items():
        assert "Scale profile: cpu (no GPU was found)" in nb["stdout"], name


def test_the_chapters_read_the_committed_records_and_train_nothing(emulated):
    assert emulated["training_calls"] == []  # the guard logs any call of a training entry point
    assert emulated["written"] == []  # no record, report or cached model appeared or changed
    for name, nb in emulated["notebooks"].items():
        assert "Missing records" not in nb["stdout"], name


def test_headline_numbers_are_the_books(emulated):
    """A few headline numbers, recomputed here (main environment) from the committed records."""
    rq1_records = R.load_grid("rq1", "cpu")
    ev = rq1.evidence(rq1_records)
    best = {s: ev["per_student"][s]["best_beta"] for s in rq1.students(rq1_records)}
    line = " and ".join(f"{'none (every run degenerate)' if b is None else f'{b:g}'} for the {student_label(s)}"
                        for s, b in best.items())
    assert _out(emulated, "rq1_beta")["glued"]["rq1_best_betas"] == repr(line)
    assert f"{len(rq1_records)} records at profile 'cpu'" in _out(emulated, "rq1_beta")["stdout"]

    assert f"{len(R.load_grid('rq2', 'cpu'))} runs of student" in _out(emulated, "rq2_reference")["stdout"]
    runs = {k: len(v) for k, v in rq3.load("cpu").items()}
    assert f"runs: {runs}" in _out(emulated, "rq3_stronger_reference")["stdout"]

    grids = [r for name in ("rq1", "rq2", "rq3") for r in R.load_grid(name, "cpu")]
    evidence = P.evidence(P.with_replicates(grids))
    expected = P.best_beta_line(evidence, evidence.students, "self")
    assert _out(emulated, "practice")["glued"]["best_self_betas"] == repr(expected)

    present = R.load_records(R.grid("rq1", "cpu"))
    assert (f"current world: {len(present)} of the {len(R.grid('rq1', 'cpu'))} cpu RQ1 records are present"
            in _out(emulated, "controlled_world")["stdout"])
