"""The theory and exact-world chapters' readers: tables and figures from records, the scorecard's rules, no computing.

Records come from the writer on tiny configs (so the readers read exactly what the writer
writes), from hand-built records where a rule needs a known answer, and from the book's
committed records.
"""

from __future__ import annotations

import copy
import sys

import matplotlib
import pytest

matplotlib.use("Agg")

from dpolib.chapters import exact, rq1_figures, theory  # noqa: E402
from dpolib.experiments import exact as writer  # noqa: E402
from dpolib.experiments.exact_records import ExactConfig, TheoryConfig  # noqa: E402

TINY_EXACT = ExactConfig(
    world=(("n_prompts", 4), ("n_responses", 5), ("n_pairs", 16)), steps=4, n_betas=3, population_prompts=2,
    population_betas=(1.0,), robustness_seeds=2, robustness_betas=3, budget_steps=8, kappas=(-3.0, 3.0),
)
TINY_THEORY = TheoryConfig(identities=("bradley_terry_is_sigmoid", "kkt_hessian"), points=2, autograd_points=2)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    writer.write(TINY_EXACT, root=root)
    writer.write(TINY_THEORY, root=root)
    return exact.evidence(TINY_EXACT, root), theory.evidence(TINY_THEORY, root)


def test_readers_import_neither_torch_nor_sympy_nor_the_writer():
    """Run in a fresh interpreter: importing the readers pulls in no computation."""
    import subprocess

    code = ("import sys; import dpolib.chapters.exact, dpolib.chapters.theory; "
            "print(sorted(m for m in ('torch', 'sympy', 'dpolib.tabular', 'dpolib.experiments.exact') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_sweep_table_has_one_row_per_student_and_objective(records):
    rec, _ = records
    table = exact.sweep_table(rec)
    assert list(table.index) == [f"{s} / {o}" for s in ("full", "loglinear") for o in ("dpo", "probability", "likelihood")]
    assert list(table.columns) == ["best β", "best gold", "gold at β=0.001", "gold at β=100", "win vs SFT at best",
                                   "KL to ref at best", "length at best", "policy accuracy at best"]
    assert table.loc["loglinear / dpo", "best gold"] == exact.summary(rec, "loglinear", "dpo")["best gold"]
    assert table.loc["full / dpo", "best gold"] == pytest.approx(exact.curve(rec, "full", "dpo")["gold"].max(), abs=1e-5)


def test_the_curve_has_one_row_per_beta_and_the_sft_model(records):
    rec, _ = records
    c = exact.curve(rec)
    assert list(c.index) == rec["betas"] and c.index.name == "β"
    assert set(c.columns) == set(writer.CURVE_METRICS)
    assert c.attrs["sft"]["gold"] == rec["world"]["sft_gold"] == pytest.approx(c.attrs["sft"]["gold"])
    assert c.attrs["length_peak"] == rec["world"]["config"]["length_peak"]
    # the RQ1 chapter's dense curve is the same sweep, read from the same record
    assert rq1_figures.tabular_curve(record=rec).equals(c)


def test_the_reference_table_lists_every_reference_with_its_distance_to_the_class(records):
    rec, _ = records
    table = exact.reference_table(rec)
    assert list(table.index) == ["sft", "compatible weak", "incompatible weak", "compatible strong", "incompatible strong"]
    assert list(table.columns) == ["reference gold", "distance to class", "best β", "best gold", "gold at β=100",
                                   "gold at β=0.001"]
    assert table.loc["sft", "distance to class"] < 1e-9 and table.loc["compatible strong", "distance to class"] < 1e-9
    assert table.loc["incompatible strong", "distance to class"] > 0.1
    # matched in gold reward by bisection
    assert table.loc["incompatible strong", "reference gold"] == pytest.approx(table.loc["compatible strong", "reference gold"], abs=1e-6)
    assert exact.reference_gold(rec, "sft") == table.loc["sft", "reference gold"]


def _world(seed, **refs):
    return {"seed": seed, "references": {name: dict(zip(("best", "best_beta", "first", "last"), v)) for name, v in refs.items()}}


def test_the_robustness_rules_on_worlds_with_known_answers():
    holds = _world(0, sft=(1.0, 0.1, 0.9, 0.9), uniform=(0.5, 0.1, 0, 0), prior=(0.6, 0.1, 0, 0),
                   compatible=(1.2, 1.0, 0, 0), incompatible=(1.1, 1.0, 0, 0))
    fails = _world(1, sft=(1.0, 0.1, 0.99, 0.5), uniform=(1.5, 0.1, 0, 0), prior=(1.1, 0.1, 0, 0),
                   compatible=(0.9, 0.01, 0, 0), incompatible=(1.0, 1.0, 0, 0))
    # every margin within its tolerance: a drop 0.01 above INTERIOR_DROP, gold 0.01 apart, the same β
    ties = _world(2, sft=(1.0, 0.1, 0.94, 0.9), uniform=(0.99, 0.1, 0, 0), prior=(1.01, 0.1, 0, 0),
                  compatible=(1.01, 0.1, 0, 0), incompatible=(1.02, 1.0, 0, 0))
    robust = exact.robustness_table({"robustness": {"worlds": [holds, fails, ties]}})
    assert list(robust.columns) == list(exact.CLAIMS)
    assert (robust.loc[0] == exact.HOLDS).all()
    assert (robust.loc[1] == exact.FAILS).all()  # a drop of 0.01 at the small end is no interior optimum
    assert (robust.loc[2] == exact.TIE).all()  # ties are never wins
    card = exact.scorecard(robust)
    assert card[[exact.HOLDS, exact.TIE, exact.FAILS, "worlds"]].values.tolist() == [[1, 1, 1, 3]] * len(exact.CLAIMS)
    assert list(card.index) == list(exact.CLAIMS)


def test_the_exercises_and_figures_come_from_the_record(records):
    rec, _ = records
    assert len(exact.budget_lines(rec)) == 2 and "8 steps" in exact.budget_lines(rec)[1]
    assert [line.split(":")[0] for line in exact.kappa_lines(rec)] == ["κ = -3.0", "κ = +3.0"]
    fig, axes = exact.plot_sweeps(rec)
    assert len(axes[0].lines) == 5  # three objectives, the closed form, the SFT line
    fig, axes = exact.plot_collapse(rec)
    assert len(axes) == 3
    fig, ax = exact.plot_references(rec)
    assert len(ax.lines) == 6  # five references and the SFT line


def test_theory_show_displays_a_recorded_identity_and_adds_its_row(records, capsys):
    _, rec = records
    rows = []
    row = theory.show(rec, "kkt_hessian", rows)
    assert "✓ kkt_hessian" in capsys.readouterr().out
    assert rows == [row] and row["lhs - rhs simplifies to 0"] and row["max numeric gap"] == 0.0
    table = theory.summary_table(rows)
    assert list(table.columns) == ["identity", "paper", "says", "lhs - rhs simplifies to 0", "max numeric gap"]
    with pytest.raises(KeyError, match="--force"):
        theory.show(rec, "gibbs_value")  # not in this tiny record


def test_theory_refuses_a_record_that_says_a_check_failed(records):
    _, rec = records
    bad = copy.deepcopy(rec)
    bad["identities"][0].update(holds=False, passes=False)
    with pytest.raises(AssertionError, match="failed"):
        theory.show(bad, bad["identities"][0]["key"], display=False)
    bad["no_finite_minimiser"][1]["limit"] = "1"
    with pytest.raises(AssertionError, match="DPO"):
        theory.no_minimiser_lines(bad)
    assert len(theory.no_minimiser_lines(rec)) == 2


def test_the_books_records_hold_every_identity_and_table_the_chapters_show():
    rec = theory.evidence()
    rows = []
    for keys in theory.SECTIONS.values():
        for key in keys:
            theory.show(rec, key, rows, display=False)
    assert len(rows) == len({row["key"] for row in rec["identities"]}) == 33
    assert all(row["lhs - rhs simplifies to 0"] for row in rows)
    book = exact.evidence()
    assert len(book["betas"]) == 40 and exact.robustness_table(book).shape == (6, len(exact.CLAIMS))
    assert exact.sweep_table(book).shape == (6, 8)
