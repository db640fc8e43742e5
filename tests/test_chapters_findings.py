"""Findings at a glance (dpolib.chapters.findings): one row per headline finding, every cell the claim module's verdict."""

from pathlib import Path

import pytest

from test_chapters_rq2_claims import world as rq2_world

from dpolib import paper
from dpolib.chapters import exact, findings, rq1_claims, rq2, rq2_claims, rq3, rq3_claims
from dpolib.experiments.records import load_grid
from dpolib.scorecard import AGREES, DISAGREES, INCONCLUSIVE, scorecard

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def smoke_cards():
    """The claim modules' scorecards on the committed smoke records, computed here without findings.py."""
    r1 = load_grid("rq1", "smoke", rq1_claims.world_seeds("smoke"))
    r2 = load_grid("rq2", "smoke")
    r3 = rq3.load("smoke")
    if not (r1 and r2 and any(r3.values())):
        pytest.skip("no committed smoke records of the rq1, rq2 and rq3 grids")
    return {"rq1": scorecard(rq1_claims.CLAIMS, rq1_claims.evidence(r1)),
            "rq2": scorecard(rq2_claims.claims(), rq2.evidence(r2)),
            "rq3": scorecard(rq3_claims.claims(), rq3.evidence(r3, rq3.load_compatibility("smoke")))}


def _verdict(cards, claim_id):
    for card in cards.values():
        if claim_id in set(card["id"]):
            return card.set_index("id").loc[claim_id, "verdict"]
    raise KeyError(claim_id)


def test_one_row_per_headline_finding_in_the_papers_order():
    table = findings.build(None, None, {})
    heads = paper.headline_findings()
    kept = heads[heads["rq"] != "App. B"]
    assert [f.finding for f in table] == list(kept["finding"])
    assert [f.paper for f in table] == list(kept["evidence"])
    assert len({f.claim_id for f in table}) == len(table) == len(findings.HEADLINES)
    assert len(findings.frame(table)) == len(table)
    known = set(rq1_claims.CLAIM_IDS) | set(rq2_claims.CLAIM_IDS) | set(rq3_claims.CLAIM_IDS)
    assert {f.claim_id for f in table} <= known


def test_every_cpu_cell_is_the_claim_modules_verdict(smoke_cards):
    table = findings.load("smoke")
    for f in table:
        cell = f.cells["cpu"]
        assert cell.verdict == _verdict(smoke_cards, f.claim_id), f.claim_id
        assert cell.tested == f.claim_id


def test_a_cell_changes_when_the_evidence_changes():
    spec = next(h for h in findings.HEADLINES if h.claim_id == "rq2.dpo-best")
    agree = {"rq2": scorecard(rq2_claims.claims(), rq2.evidence(rq2_world(), replicates=lambda r: []))}
    disagree = {"rq2": scorecard(rq2_claims.claims(),
                                 rq2.evidence(rq2_world(q={"likelihood": 0.6}), replicates=lambda r: []))}
    assert findings.lab_cell(spec, "cpu", agree).verdict == AGREES
    cell = findings.lab_cell(spec, "cpu", disagree)
    assert cell.verdict == DISAGREES and "[" in cell.shown  # the estimate with its interval
    before = findings.build(None, None, {"cpu": agree})
    after = findings.build(None, None, {"cpu": disagree})
    assert findings.counts(before, "cpu")[AGREES] == findings.counts(after, "cpu")[AGREES] + 1
    assert findings.summary(before) != findings.summary(after)


def test_the_gpu_column_says_no_records_when_none_exist(tmp_path):
    assert findings.lab_cards("gpu", root=tmp_path) == {}
    table = findings.build(None, None, {"cpu": {}, "gpu": {}})
    assert {f.cells["gpu"].verdict for f in table} == {findings.NO_RECORDS}
    assert all(f.cells["gpu"].doc.endswith("reproduce_paper_scale") for f in table)
    assert "GPU scale (real models) has no records yet" in findings.summary(table)


def _verdict_obj(margin):
    return exact.Verdict("a claim", margin, exact.TIE_TOLERANCE, "sentence")


@pytest.mark.parametrize("margins, expected", [
    ((0.5, 0.5), AGREES), ((0.5, -0.5), DISAGREES), ((0.5, 0.0), INCONCLUSIVE), ((-0.5, 0.0), DISAGREES),
])
def test_exact_cell_joins_its_verdicts_as_a_conjunction(margins, expected):
    spec = findings.Headline("RQ2", "rq2.dpo-best", ("a", "b"))
    verdicts = {"a": _verdict_obj(margins[0]), "b": _verdict_obj(margins[1])}
    cell = findings.exact_cell(spec, verdicts)
    assert cell.verdict == expected and f"{margins[0]:+.3f}" in cell.shown
    assert findings.exact_cell(spec, None).verdict == findings.NO_RECORDS
    assert findings.exact_cell(findings.Headline("RQ1", "rq1.best-beta-small"), verdicts).verdict == findings.NO_CRITERION


def test_exact_cells_follow_the_exact_chapters_verdicts():
    verdicts, robust = findings.exact_inputs()
    if verdicts is None:
        pytest.skip("no exact record")
    mapping = {exact.HOLDS: AGREES, exact.FAILS: DISAGREES, exact.TIE: INCONCLUSIVE}
    for f, spec in zip(findings.build(verdicts, robust, {}), findings.HEADLINES):
        if len(spec.exact_keys) == 1:
            assert f.cells["exact"].verdict == mapping[verdicts[spec.exact_keys[0]].outcome]
            assert "drawn worlds" in f.cells["exact"].note


def test_every_link_points_at_a_section_that_exists():
    table = findings.build(None, None, {"cpu": {}, "gpu": {}})
    cells = [c for f in table for c in f.cells.values()]
    for c in cells:
        if c.doc.startswith("../"):
            assert (NOTEBOOKS / f"{c.doc}.md").is_file(), c.doc
            continue
        text = (NOTEBOOKS / f"{c.doc}.md").read_text()
        assert f"({c.label})=" in text, (c.doc, c.label)
    html = findings.styled(table).to_html()
    assert 'href="rq1_beta.html#rq1-scorecard"' in html and "no records" in html


def test_the_papers_best_betas_come_from_dpolib_paper():
    betas = findings.paper_best_betas()
    t1 = paper.TABLE1.sweep()
    assert betas["rq1"].split("–") == [f"{b:g}" for b in sorted({float(t1[c].idxmax()) for c in t1.columns})]
    assert float(betas["rq3"]) == float(paper.TABLE4.sweep()["mistral-7b / ref mistral-v0.2"].idxmax())
